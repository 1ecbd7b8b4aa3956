"""Two-stage network (docs/theory.md §2.4): ridge readout on fresh samples vs readout_excess_risk."""
import numpy as np
import pytest

from numerics import predict
from theory import HierarchicalModel, readout_excess_risk
from validation.readout import hermite_product_features, two_stage


def test_features_are_orthonormal_under_the_gaussian():
    # E[F^T F] = I for z ~ N(0, I): checked on 2e5 draws, entry by entry within 5 standard errors
    # (the sample variance of F_i F_j is E[F_i^2 F_j^2] - E[F_i F_j]^2)
    z = np.random.default_rng(0).standard_normal((200_000, 3))
    F = hermite_product_features(z, 3)
    assert F.shape[1] == 20  # C(3 + 3, 3)
    n = len(z)
    mean = F.T @ F / n
    sem = np.sqrt(((F**2).T @ F**2 / n - mean**2) / n)
    assert np.all(np.abs(mean - np.eye(20)) <= 5 * sem)


def test_readout_risk_formula_identities():
    m = HierarchicalModel(m=3, gamma=1)
    assert readout_excess_risk(m, [1, 1, 1]) == 0
    # q = 0 everywhere: the whole variance of the target, sum a_k^2 E[g^2] (E[g] = 0 here) = 49/96
    assert readout_excess_risk(m, [0, 0, 0]) == pytest.approx(49 / 96)
    with pytest.raises(ValueError, match="q:"):
        readout_excess_risk(m, [0.5, 2, 0])


def test_fitted_excess_risk_matches_the_formula_at_the_measured_projections():
    # The readout sees p_k = ||P_hat w_k||^2 exactly (fresh samples): the only gaps are the test-set
    # error (3 sem) and the ridge overhead ~ features/n_fit * risk (reported; allowed once more).
    r = two_stage(HierarchicalModel(m=4, gamma=1), d=200, alphas=[30.0, 150.0], seed=1)
    gap = np.abs(r["excess_risk"] - r["theory_at_proj"] - r["estimation_overhead"])
    assert np.all(gap <= 3 * r["excess_risk_sem"] + r["estimation_overhead"])
    assert r["excess_risk"].iloc[1] < r["excess_risk"].iloc[0]


@pytest.mark.slow
def test_two_stage_risk_approaches_the_d_infinity_prediction():
    # At d = 600 the projections are within O(d^-1/2) of q_k (docs/theory.md §4), so the risk is within
    # the readout formula's sensitivity to q (first order: sum a_k^2 sum_j j mu_j^2/j! |dq_k|).
    model = HierarchicalModel()
    r = two_stage(model, d=600, alphas=[100.0, 400.0], seed=0)
    p = predict(model, [100.0, 400.0])
    for i in range(2):
        th = float(readout_excess_risk(model, list(p.q[i]), jmax=4))
        dq = 600**-0.5
        sens = float(readout_excess_risk(model, list(np.clip(p.q[i] - dq, 0, 1)), jmax=4)) - th
        assert abs(r["excess_risk"].iloc[i] - th) <= sens + 3 * r["excess_risk_sem"].iloc[i]


def test_bad_input():
    with pytest.raises(ValueError, match="degree"):
        two_stage(HierarchicalModel(m=2), d=50, alphas=[10], seed=0, degree=0)
    with pytest.raises(ValueError, match="n_test"):
        two_stage(HierarchicalModel(m=2), d=50, alphas=[10], seed=0, n_test=5)
