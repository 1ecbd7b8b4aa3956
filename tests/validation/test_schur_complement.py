"""validation.schur_complement: the exact F(zeta) of one simulated D_n (docs/theory.md §4.3, "Checking the block on
simulated samples"), checked against the full eigendecomposition of the same D_n, an independent route."""
import numpy as np
import pytest

from theory import HierarchicalModel
from validation.schur_complement import schur_complement
from validation.simulate import simulate_task

M3 = HierarchicalModel(m=3, gamma="1/2", link="He2", preprocessing="tanh(y)", delta="1/2")


def test_the_outlier_eigenvalues_are_the_zeros_of_F_and_their_overlaps_follow_from_its_slope():
    # Every eigenvalue of D_n above B's spectrum makes F singular, and its eigenvector's overlaps with the w_k are
    # c_k^2 / (c^T (-F') c) for F's null vector c. The reference is eigh of the whole d x d matrix, and
    # simulate_task's q_rank and eigenvalue on the same seed (the same samples).
    d, alpha, seed = 120, 7.0, 3
    first = schur_complement(M3, d, alpha, seed, [1.0])
    top = [e for e in first["eigenvalues"] if e > first["bulk"][-1]]
    assert len(top) == 3  # three outliers on this seed: every direction is checked
    r = schur_complement(M3, d, alpha, seed, top)
    for j, (F, S) in enumerate(zip(r["F"], r["slope"])):
        w, V = np.linalg.eigh(F)
        i = int(np.argmin(np.abs(w)))
        assert abs(w[i]) < 1e-12 and np.sort(np.abs(w))[1] > 1e-3  # singular, with a one-dimensional null space
        c = V[:, i]
        np.testing.assert_allclose(c**2 / (c @ S @ c), r["overlaps"][:, j], rtol=1e-8, atol=1e-12)
    sim = simulate_task(M3, d, [alpha], seed)[0]
    np.testing.assert_allclose(np.diag(r["overlaps"]), sim["q_rank"], rtol=1e-8)
    np.testing.assert_allclose(r["eigenvalues"][:3], sim["eigenvalue"], rtol=1e-10)


def test_the_slope_is_the_derivative_of_F_and_the_same_seed_gives_the_same_matrices():
    # -F' against a central difference of F itself (step 1e-5, error O(1e-10) against entries of order 1).
    z, h = 0.62, 1e-5
    r = schur_complement(M3, 100, 6.0, 1, [z - h, z, z + h])
    np.testing.assert_allclose(-(r["F"][2] - r["F"][0]) / (2 * h), r["slope"][1], rtol=1e-6)
    again = schur_complement(M3, 100, 6.0, 1, [z - h, z, z + h])
    keys = ("F", "slope", "bulk", "weights", "eigenvalues", "overlaps")
    assert all(np.array_equal(r[key], again[key]) for key in keys)
    # The weights are C's spectral measure on B. Far above the spectrum, 1/(b - zeta)^2 = zeta^-2 (1 + 2 b/zeta + ...),
    # so zeta^2 (-F'_kk - 1) is |C_k|^2, the weights' sum, within 3 max|b| / zeta (rounding: 1e-16 / 1e-8 here).
    zeta = 1e4
    far = schur_complement(M3, 100, 6.0, 1, [zeta])
    np.testing.assert_allclose(zeta**2 * (np.diag(far["slope"][0]) - 1), far["weights"].sum(axis=0),
                               rtol=3 * np.abs(far["bulk"]).max() / zeta)


@pytest.mark.parametrize("kwargs, name", [({"d": 3}, "d"), ({"alpha": 0.0}, "alpha"),
                                          ({"alpha": float("nan")}, "alpha"),
                                          ({"zetas": [float("nan")]}, "zetas"), ({"zetas": []}, "zetas"),
                                          ({"seed": -1}, "seed"), ({"chunk": 0}, "chunk")])
def test_bad_input_names_the_parameter(kwargs, name):
    args = dict(model=M3, d=40, alpha=4.0, seed=0, zetas=[1.0]) | kwargs
    with pytest.raises(ValueError, match=name):
        schur_complement(**args)


def test_a_point_on_the_bulk_spectrum_is_refused():
    bulk = schur_complement(M3, 40, 4.0, 0, [1.0])["bulk"]
    with pytest.raises(ValueError, match="zetas"):
        schur_complement(M3, 40, 4.0, 0, [bulk[-1]])
