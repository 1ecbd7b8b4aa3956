"""The m x m matrix form of docs/theory.md §2.2 (coupled directions), checked three ways."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from numerics import label_law, predict
from numerics.label_law import coupled_pairs
from theory import HierarchicalModel

COUPLED = HierarchicalModel(m=3, gamma=1, link="He1 + He2/2")  # odd part: every pair couples


def test_symmetry_decides_which_pairs_can_couple():
    assert coupled_pairs(HierarchicalModel()) == ()  # even links: the split holds
    assert coupled_pairs(COUPLED) == ((0, 1), (0, 2), (1, 2))
    assert coupled_pairs(HierarchicalModel(m=3, link=("He1 + He2", "He2", "He3 + He2"))) == ((0, 2),)


def test_even_links_use_the_diagonal_split_and_the_matrix_path_agrees():
    alphas = [2.0, 5.0, 20.0, 50.0, 300.0]
    diag = predict(HierarchicalModel(), alphas)
    mat = predict(HierarchicalModel(), alphas, solver="matrix")
    assert diag.settings["solver"] == "diagonal"
    assert np.array_equal(diag.is_outlier, mat.is_outlier)
    np.testing.assert_allclose(mat.q, diag.q, atol=1e-9)
    np.testing.assert_allclose(mat.thresholds, diag.thresholds, rtol=1e-9)


def test_cross_moments_agree_with_monte_carlo():
    # E[f(tau) z_j z_k] from FFT convolutions vs 2e6 i.i.d. samples (error ~ 1/sqrt(2e6) = 7e-4)
    grid = label_law(COUPLED)
    mc = label_law(COUPLED, method="montecarlo", n_samples=2_000_000, seed=3)
    for f in (lambda t: t, lambda t: t / (1.5 - t)):
        np.testing.assert_allclose(grid.cross @ f(grid.tau), mc.cross @ f(mc.tau), atol=3e-3)


def test_coupled_links_are_detected_and_change_the_answer():
    p = predict(COUPLED, [20.0, 100.0])
    assert p.settings["solver"] == "matrix" and p.settings["coupling"] > 0.01
    law = label_law(COUPLED)
    uncoupled = predict(COUPLED, [20.0, 100.0], law=dataclasses.replace(law, pairs=(), cross=np.zeros((0, law.tau.size))))
    assert np.abs(p.q - uncoupled.q).max() > 5e-3
    # each outlier branch's vector is a unit vector; projections add up to the branch overlaps
    nb = p.n_outliers[1]
    np.testing.assert_allclose(np.linalg.norm(p.branch_vectors[1, :nb], axis=1), 1.0, atol=1e-12)
    assert p.q[1].sum() == pytest.approx(np.nansum(p.branch_q[1]), abs=1e-12)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(a=st.floats(1.0, 400.0))
def test_matrix_path_properties(a):
    p = predict(COUPLED, [a, 1.5 * a])
    assert np.all((p.q >= 0) & (p.q <= 1)) and np.all(p.q[1] >= p.q[0] - 1e-9)
    assert np.all(np.isfinite(p.mse))


@pytest.mark.slow
def test_matrix_form_matches_simulation_where_the_split_does_not():
    # d = 1000, alpha = 100, 4 seeds: outlier region, so |sim - theory| <= d^-1/2 + 2 sem (docs/theory.md §4).
    # The per-direction (uncoupled) formula is off by ~0.01 = 10 sem at k = 1, 2 (measured); the
    # matrix form must be the closer one.
    import pandas as pd

    from validation.simulate import simulate_task

    d = 1000
    p = predict(COUPLED, [100.0])
    law = label_law(COUPLED)
    wrong = predict(COUPLED, [100.0], law=dataclasses.replace(law, pairs=(), cross=np.zeros((0, law.tau.size))))
    df = pd.concat([simulate_task(COUPLED, d, [100.0], s)[0] for s in range(4)])
    g = df.groupby("k")["proj"]
    mean, sem = g.mean().to_numpy(), g.sem().to_numpy()
    assert np.all(np.abs(mean - p.q[0]) <= d**-0.5 + 2 * sem)
    assert np.all(np.abs(mean - p.q[0])[:2] < np.abs(mean - wrong.q[0])[:2])


@pytest.mark.slow
def test_tables_against_nested_mpmath_quadrature_for_m_2():
    # An independent route (nested tanh-sinh in mpmath, no atoms/FFT) for an m = 2 model with
    # coupled directions and a kinked T. The grid law's own error is ~1e-7 relative (halving test),
    # so the two must agree to 1e-6 relative (measured: <= 5e-8); G1 ~ E[tau] can be near 0, so it
    # is compared in absolute terms.
    from numerics import resolvent_mp
    from numerics.predict import matrix_functions, spectral_functions

    model = HierarchicalModel(m=2, gamma=1, link="He1 + He2/2")
    lam = 1.05  # close to sup T = 1: where the kernel tau/(lam - tau) is most demanding
    ref = resolvent_mp(model, [lam], dps=15)
    assert ref["error"] < 1e-7
    sf = spectral_functions(label_law(model))
    G1, G2, F, H = sf.exact(np.array([lam]))
    C1, C2 = matrix_functions(sf)._cross_exact(np.array([lam]))
    assert abs(float(ref["G1"][0]) - G1[0]) < 1e-8
    for mp_val, f64 in [(ref["G2"][0], G2[0]), (ref["F"][0][0], F[0, 0]), (ref["F"][1][0], F[1, 0]),
                        (ref["H"][0][0], H[0, 0]), (ref["H"][1][0], H[1, 0]), (ref["C1"][0], C1[0, 0]),
                        (ref["C2"][0], C2[0, 0])]:
        assert abs(float(mp_val) / f64 - 1) < 1e-6
