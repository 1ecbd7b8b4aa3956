"""numerics.typical_bulk: the bulk's density and each direction's spectral density inside the bulk, and the
typical (classical) eigenvalue locations (docs/theory.md §4.3, "The same from the theory alone")."""
import numpy as np
import pytest

from numerics.edge_overlap import _tau_sup
from numerics.label_law import label_law
from numerics.outlier_fluctuation import _exact_diagonal
from numerics.resolvent import edge_of_atoms, outlier_of_atoms, resolvent_sums
from numerics.typical_bulk import spectral_densities, typical_bulk
from theory import HierarchicalModel

M3 = HierarchicalModel(m=3, gamma="1/2", link="He2", preprocessing="tanh(y)", delta="1/2")


def test_the_densities_carry_the_moments_of_the_d_infinity_functions():
    # Independent routes, all from the real-axis formulas of numerics.resolvent above the edge (no continuation):
    # rho is a probability; rho_k's mass is |C_k|^2 = E[tau^2 z_k^2] / alpha (zeta^2 (-F'_kk - 1) as zeta -> inf);
    # its second moment about an outlier is the d = infinity slope there, -f_k' = 1 + H_k / psi' at zeta_3*.
    # The trapezoids on 2 x 600 points err by about 1e-5 (measured against 2 x 1500: 4e-6).
    alpha, law = 7.0, label_law(M3)
    R = np.asarray(law.r)
    lbar, edge, _ = edge_of_atoms(law.tau, law.p, alpha, _tau_sup(law))
    x = np.concatenate([np.linspace(-1.3, edge - 0.05, 600, endpoint=False), edge - np.geomspace(0.05, 1e-9, 600)])
    r = spectral_densities(M3, alpha, x)
    integral = lambda y: float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))  # noqa: E731
    assert abs(integral(r["rho"]) - 1) < 1e-4
    mass = [integral(row) for row in r["rho_k"]]
    np.testing.assert_allclose(mass, (R * law.tau**2).sum(axis=1) / alpha, rtol=1e-4)
    lam3 = outlier_of_atoms(law.tau, law.p, R[2], alpha, lbar)
    zeta3 = lam3 * (1 / alpha + resolvent_sums(law.tau, law.p, R[:0], lam3)[0][0])
    slopes = [1 + integral(row / (x - zeta3) ** 2) for row in r["rho_k"]]
    np.testing.assert_allclose(slopes, -_exact_diagonal(law, alpha, 2, lbar)["fp"], rtol=1e-4)


def test_the_typical_bulk_splits_the_densities_into_cells():
    r = typical_bulk(M3, 7.0, 400, points=200)
    loc, w = r["locations"], r["weights"]
    assert loc.shape == (397,) and w.shape == (3, 397)
    assert np.all(np.diff(loc) < 0) and loc[0] < r["edge"] and np.all(w >= 0)
    law = label_law(M3)
    np.testing.assert_allclose(w.sum(axis=1), (np.asarray(law.r) * law.tau**2).sum(axis=1) / 7.0, rtol=1e-4)
    # the top cells: rho ~ sqrt(edge - x) makes the j-th location's depth grow like (j - 1/2)^(2/3)
    depth = r["edge"] - loc[:4]
    np.testing.assert_allclose(depth / depth[0], (np.arange(4) + 0.5) ** (2 / 3) / 0.5 ** (2 / 3), rtol=0.05)


@pytest.mark.slow  # 1-2 min: 80 seeds at d = 400
def test_the_typical_bulk_meets_the_simulated_bulk_near_the_edge():
    # Simulated B (validation.schur_complement, seeds 130000-130079, m = 3 model at alpha = 7, d = 400): the mean of
    # each of its top three eigenvalues must be within 3 standard errors of its classical location, and the mean
    # weight of direction 3 on the top eigenvector within 3 se of the top cell's weight (measured over 300 seeds
    # in docs/theory.md §4.3: -0.0389 / -0.0531 / -0.0638 against -0.0393 / -0.0525 / -0.0627 about zeta_3*).
    from validation.schur_complement import schur_complement

    r = typical_bulk(M3, 7.0, 400)
    tops, weights = [], []
    for seed in range(130000, 130080):
        s = schur_complement(M3, 400, 7.0, seed, [1.0])
        tops.append(s["bulk"][::-1][:3])
        weights.append(s["weights"][::-1][0, 2])
    tops, weights = np.array(tops), np.array(weights)
    se = tops.std(axis=0, ddof=1) / np.sqrt(len(tops))
    assert np.all(np.abs(tops.mean(axis=0) - r["locations"][:3]) < 3 * se), (tops.mean(axis=0), r["locations"][:3], se)
    se_w = weights.std(ddof=1) / np.sqrt(len(weights))
    assert abs(weights.mean() - r["weights"][2, 0]) < 3 * se_w, (weights.mean(), r["weights"][2, 0], se_w)


@pytest.mark.parametrize("call, name", [
    (lambda: typical_bulk(M3, 0.0, 400), "alpha"), (lambda: typical_bulk(M3, 7.0, 4), "d"),
    (lambda: typical_bulk(M3, 7.0, 400, points=3), "points"), (lambda: spectral_densities(M3, 7.0, [np.nan]), "x"),
    (lambda: spectral_densities(M3, -1.0, [0.1]), "alpha")])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
