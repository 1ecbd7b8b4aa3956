"""Model C (GE) layer 1 through the Model S solver (docs/theory.md §3), against the closed form and simulation."""
import numpy as np
import pytest

from numerics import ConvergenceError, label_law, layer1_model, layer1_prediction, predict
from theory import CompositionalModel, HierarchicalModel

SMALL = CompositionalModel(d=16, eps=0.5, gamma=1)  # D = 136, d1 = 4


def test_large_alpha_limit_is_the_refined_closed_form():
    # The closed form of docs/theory.md §3 is the semicircle (alpha -> inf) limit; at alpha = 1000 the exact
    # formula differs from it by O(1/alpha) relative corrections of the tail of T(y) = y (measured 1e-4).
    for signs in (None, [1, -1, 1, -1]):
        r = layer1_prediction(SMALL, n=[136 * 1000.0], signs=signs)
        np.testing.assert_allclose(r["rho2"], r["rho2_closed_form"], atol=1e-3)


def test_sign_symmetry_breaks_at_moderate_alpha():
    # He2 is not symmetric: a spike with b_i < 0 (below the bulk) has a different law from b_i > 0,
    # which the closed form (a function of |theta_i| only) cannot see.
    plus = layer1_prediction(SMALL, n=[136 * 30.0])["rho2"][0]
    mixed = layer1_prediction(SMALL, n=[136 * 30.0], signs=[1, -1, 1, -1])["rho2"][0]
    assert abs(mixed[1] - plus[1]) > 0.02
    assert np.all(np.diff(plus) < 0)  # weaker features are recovered less


def test_mapping_is_model_s_in_dimension_D():
    hm = layer1_model(SMALL, signs=[1, -1, 1, -1])
    assert hm.m == 4 and str(hm.T) == "y"
    # E[y^2] = 1: sum a_k^2 E[(He2/sqrt 2)^2] = 1
    law = label_law(hm, support="effective")
    assert float(law.p @ law.y**2) == pytest.approx(1.0, abs=1e-8)


def test_unbounded_T_needs_the_effective_support_and_is_checked():
    hm = layer1_model(SMALL)
    with pytest.raises(ValueError, match="support='effective'"):
        predict(hm, [100.0])
    # at alpha = 100 the edge sits inside the far tail of T(Y) = Y: no d = inf limit
    with pytest.raises(ConvergenceError, match="far tail"):
        predict(hm, [100.0], support="effective")


def test_bad_input():
    with pytest.raises(ValueError, match="signs"):
        layer1_prediction(SMALL, n=[1e4], signs=[1, 1])
    with pytest.raises(ValueError, match="D: must be"):
        layer1_prediction(SMALL, n=[1e4], D=2)
    with pytest.raises(ValueError, match="n:"):
        layer1_prediction(SMALL, n=[-1.0])
    with pytest.raises(ValueError, match="g_star"):
        layer1_prediction(CompositionalModel(d=16, g_star="z**2"), n=[1e4])
    with pytest.raises(TypeError, match="model"):
        layer1_model(HierarchicalModel())


@pytest.mark.slow
def test_solver_matches_gaussian_equivalent_simulation():
    # GE layer 1 in an abstract dimension D = 800 at alpha = n/D = 30, signs (+,-,+,-), 6 seeds.
    # Outside the critical windows the overlap is within O(D^-1/2) of the d = inf value (docs/theory.md §4),
    # plus 2 standard errors. The closed form is off by 0.15 at i = 3 here (0.766 vs 0.62).
    D, alpha, d1 = 800, 30, 4
    signs = np.array([1, -1, 1, -1.0])
    n = alpha * D
    theory = layer1_prediction(SMALL, n=[n], signs=signs, D=D)["rho2"][0]
    b = signs * np.arange(1, d1 + 1) ** -1.0
    qs = []
    for seed in range(6):
        rng = np.random.default_rng(np.random.SeedSequence([seed, D]))
        A = np.linalg.qr(rng.standard_normal((D, d1)))[0]
        M, ysum = np.zeros((D, D)), 0.0
        for _ in range(0, n, 4000):
            Z = rng.standard_normal((4000, D))
            y = ((Z @ A) ** 2 - 1) @ b / np.sqrt(2 * np.sum(b**2))
            ysum += y.sum()
            M += (Z.T * y) @ Z
        M = M / (2 * n) - ysum / (2 * n) * np.eye(D)
        V = np.linalg.eigh(M)[1]
        qs.append(((A.T @ V) ** 2).max(axis=1))
    qs = np.array(qs)
    sem = qs.std(axis=0, ddof=1) / np.sqrt(len(qs))
    assert np.all(np.abs(qs.mean(axis=0) - theory) <= D**-0.5 + 2 * sem)
