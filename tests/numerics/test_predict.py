"""d = infinity solver: literature values, independent references and properties."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from numerics import (ConvergenceError, bulk_density, bulk_edge, kappa_T, label_law, optimal_preprocessing,
                      optimal_threshold, outliers, predict, predict_mp, thresholds)
from theory import HierarchicalModel, critical_alpha_law
from theory.symbols import kappa_T as KT

DEFAULT = HierarchicalModel()  # gamma = 1.3, m = 10, He2/2 + He4/48, T = y/(1+|y|), delta = 0


def test_reference_numbers_of_the_issue():
    # Independent Monte Carlo evaluation of the same formulas, accurate to +-0.01 (issue 3 / docs/theory.md §2.2)
    p = predict(DEFAULT, [20.0, 50.0])
    np.testing.assert_allclose(p.q[0, :3], [0.91, 0.80, 0.53], atol=0.01)
    np.testing.assert_allclose(p.q[1, :5], [0.97, 0.92, 0.83, 0.65, 0.37], atol=0.01)
    assert p.n_outliers.tolist() == [3, 5]
    assert not np.any(p.is_outlier[0, 3:]) and not np.any(p.is_outlier[1, 5:])


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 4.0, 100.0, 1e6])
def test_marchenko_pastur_edge_for_constant_T(alpha):
    # T = 1: D_n = X^T X / n, Marchenko-Pastur with ratio 1/alpha: edge (1 + 1/sqrt(alpha))^2.
    # The float path interpolates tabulated functions (cubic splines, step 0.025 in log(lambda - sup T)):
    # accurate to about 1e-9 relative (2e-10 measured at alpha = 0.1).
    model = HierarchicalModel(m=1, preprocessing="1")
    assert bulk_edge(model, alpha)[0] == pytest.approx((1 + alpha**-0.5) ** 2, rel=1e-9)
    assert outliers(model, alpha)[0]["eigenvalue"] is None


def test_phase_retrieval_weak_recovery_threshold_is_one_half():
    # Mondelli-Montanari / Luo-Alghamdi-Lu: y = z^2 with T = 1 - 1/y has alpha_c = 1/2
    assert thresholds(HierarchicalModel(m=1, link="z**2", preprocessing="1 - 1/y"))[0] == pytest.approx(0.5, abs=1e-9)
    # the same with y = He2 = z^2 - 1: f(y) = y + 1, T = y/(y+1)
    assert thresholds(HierarchicalModel(m=1, link="He2", preprocessing="y/(y+1)"))[0] == pytest.approx(0.5, abs=1e-9)
    assert optimal_threshold("z**2") == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(optimal_preprocessing("z**2")(np.array([0.5, 2.0])), [-1.0, 0.5], atol=1e-12)


def test_optimal_threshold_with_noise_tends_to_noiseless():
    vals = [optimal_threshold("z**2", d) for d in (1.0, 0.1, 0.01)]
    assert vals[0] > vals[1] > vals[2] > 0.5 and vals[2] - 0.5 < 0.01
    assert optimal_threshold("He3") > 0.5  # an odd link still carries z^2 information


@pytest.mark.parametrize("model", [HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")])
def test_float64_against_mpmath_reference(model):
    # Away from thresholds the two independent routes agree to 1e-8 (relative)
    alphas = [3.0, 100.0]
    ref = predict_mp(model, alphas, dps=20)
    p = predict(model, alphas)
    assert abs(float(ref["threshold"]) / p.thresholds[0] - 1) < 1e-8
    for i in range(2):
        assert abs(float(ref["bulk_edge"][i]) / p.bulk_edge[i] - 1) < 1e-8
        assert abs(float(ref["eigenvalue"][i]) / p.eigenvalues[i, 0] - 1) < 1e-8
        assert abs(float(ref["q"][i]) - p.q[i, 0]) < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("model", [HierarchicalModel(m=1), HierarchicalModel(m=1, link="|z|", preprocessing="clip(y, 0, 3)")])
def test_float64_against_mpmath_reference_kinked(model):
    test_float64_against_mpmath_reference(model)


def test_grid_refinement_changes_less_than_1e_6():
    alphas = [20.0, 50.0, 164.0]
    coarse, fine = predict(DEFAULT, alphas), predict(DEFAULT, alphas, h=5e-4)
    assert np.abs(coarse.q - fine.q).max() < 1e-6
    assert np.max(np.abs(coarse.thresholds / fine.thresholds - 1)) < 1e-6
    assert coarse.settings["grid_error"] < 1e-6


def test_monte_carlo_cross_check():
    # an i.i.d. sample of 4e5 labels: statistical error of q about 1e-2 / sqrt(4) here
    mc = predict(DEFAULT, [50.0], method="montecarlo", n_samples=400_000, seed=1)
    np.testing.assert_allclose(mc.q[0, :5], predict(DEFAULT, [50.0]).q[0, :5], atol=0.02)


def test_weak_signal_law_with_kappa_T():
    model = HierarchicalModel(m=40)
    thr, kt = thresholds(model), kappa_T(model)
    ratios = [float(critical_alpha_law(model, k).subs(KT, kt)) / thr[k - 1] for k in (5, 10, 20, 40)]
    assert all(a < b for a, b in zip(ratios, ratios[1:]))  # the law is asymptotic in k
    assert abs(ratios[-1] - 1) < 0.05


def test_bulk_density_is_a_probability_on_the_bulk():
    alpha = 20.0
    edge = bulk_edge(DEFAULT, alpha)[0]
    x = np.linspace(-1.0, edge + 0.2, 600)
    rho = bulk_density(DEFAULT, alpha, x)
    assert np.trapezoid(rho, x) == pytest.approx(1.0, abs=5e-3)
    assert np.all(rho[x > edge + 0.01] < 1e-6) and np.all(rho >= 0)


def test_no_nan_and_continuity_at_thresholds():
    p = predict(DEFAULT, np.geomspace(1, 3000, 400))
    assert np.all(np.isfinite(p.q)) and np.all(np.isfinite(p.bulk_edge)) and np.all(np.isfinite(p.mse))
    assert np.array_equal(np.isnan(p.eigenvalues), ~p.is_outlier)
    for k in range(3):
        below = p.alphas < p.thresholds[k]
        assert np.all(p.q[below, k] == 0)
    assert np.all(np.diff(p.mse) <= 1e-12) and np.all(p.mse_plugin >= p.mse - 1e-12)


def test_continuity_at_interior_thresholds_and_jump_in_the_boundary_regime():
    # Interior regime (alpha_k > alpha_b = 1/G2(sup T)): q rises linearly from 0 at alpha_k.
    # Boundary regime (lambda_bar = sup T, here alpha_1 = 1.26 < alpha_b = 2.36 for T = y/(1+|y|)):
    # psi' > 0 at lambda* -> sup T, so q jumps to psi'/(psi' + H) > 0 at the threshold.
    thr = predict(DEFAULT, [1.0]).thresholds
    for k in (1, 2):
        q = predict(DEFAULT, thr[k] * np.array([1 + 1e-6, 1 + 1e-4])).q[:, k]
        assert q[0] < 1e-5 and q[1] < 1e-3 and q[1] / q[0] == pytest.approx(100, rel=0.01)
    q1 = predict(DEFAULT, thr[0] * np.array([1 - 1e-6, 1 + 1e-6])).q[:, 0]
    assert q1[0] == 0 and 0.1 < q1[1] < 0.2


def test_prediction_frame():
    df = predict(DEFAULT, [20.0, 50.0]).to_frame()
    assert len(df) == 20 and {"alpha", "k", "q", "eigenvalue", "alpha_k", "bulk_edge", "mse", "mse_plugin"} <= set(df)


_EVEN_LINKS = ["He2", "He2/2 + He4/48", "|z|", "z**2", "He4/4 + He2"]
_PREPROC = ["y/(1+|y|)", "tanh(y)", "clip(y, -2, 2)"]


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(0.8, 2.0), st.integers(2, 4), st.sampled_from(_EVEN_LINKS), st.sampled_from(_PREPROC))
def test_properties_on_random_models(gamma, m, link, pre):
    model = HierarchicalModel(link=link, gamma=round(gamma, 2), m=m, preprocessing=pre)
    alphas = np.geomspace(0.5, 5e4, 60)
    p = predict(model, alphas)
    assert np.all((p.q >= 0) & (p.q <= 1))
    assert np.all(np.diff(p.q, axis=0) >= -1e-9)  # non-decreasing in alpha
    finite = p.thresholds[np.isfinite(p.thresholds)]
    assert np.all(np.diff(finite) > 0)  # weaker directions need more samples


def test_threshold_over_k_power_tends_to_a_constant():
    model = HierarchicalModel(gamma=1.0, m=30)
    thr = thresholds(model)
    c = thr / np.arange(1, 31) ** 2.0
    assert abs(c[-1] / c[-2] - 1) < abs(c[1] / c[0] - 1) / 10 and abs(c[-1] / c[-2] - 1) < 0.01


@pytest.mark.parametrize(
    "call, exc, text",
    [
        (lambda: predict(DEFAULT, [0.0]), ValueError, "alphas"),
        (lambda: predict(DEFAULT, [np.nan]), ValueError, "alphas"),
        (lambda: predict(DEFAULT, []), ValueError, "alphas"),
        (lambda: predict("model", [1.0]), TypeError, "model"),
        (lambda: predict(HierarchicalModel(m=1, preprocessing="y"), [1.0]), ValueError, "clip"),
        (lambda: predict(HierarchicalModel(m=2, link="He1 + He2"), [1.0], solver="diagonal"), ValueError, "couple"),
        (lambda: predict(DEFAULT, [1.0], solver="exact"), ValueError, "solver"),
        (lambda: label_law(DEFAULT, support="none"), ValueError, "support"),
        (lambda: label_law(DEFAULT, h=-1), ValueError, "h:"),
        (lambda: optimal_threshold("z**2", 1e-9), ValueError, "delta"),
        (lambda: predict_mp(DEFAULT, [1.0]), ValueError, "m = 1"),
    ],
)
def test_bad_input(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_convergence_error_is_a_runtime_error():
    assert issubclass(ConvergenceError, RuntimeError)


def test_mu2_zero_direction_has_no_transition():
    # He3 (odd, mu_2 = 0) alone: no z^2 information in T(y) for this T, so no outlier above the bulk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HierarchicalModel(m=1, link="He3", preprocessing="y/(1+|y|)")
        thr = thresholds(model)
        p = predict(model, [1e2, 1e4, 1e6])
    # tau = T(He3(z)) is odd in z and He2 even, so the spike strength E[tau He2(z)] vanishes by
    # parity: no alpha separates an outlier (threshold inf, q = 0 however large alpha is)
    assert np.isinf(thr[0])
    assert np.all(p.q == 0) and np.all(p.n_outliers == 0)


def test_huge_m_is_refused_up_front_with_the_estimate():
    # the cost model says 28 rows N bytes; m = 100000 exact directions need over a TiB: refused in
    # seconds, not a hang (the default large-m path closes the tail instead: tests/numerics/test_large_m.py)
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"m: the label law of 100000 exact rows \(m = 100000\) .* GiB and .* s"):
        predict(HierarchicalModel(m=100000), [10.0], exact_directions=100000)
    assert time.perf_counter() - t0 < 30
