"""Reliability of the d = infinity solver on many random valid Model S models (slow: 200 models in
CI, about 14 minutes serial on 2 cores; CASCADE_RELIABILITY_N=500 for the full set).

Every model the strategy draws is valid, so predict must return numbers: no NaN, 0 <= q_k <= 1,
q_k non-decreasing in alpha, MSE in [0, sum a_k^2], and the thresholds of uncoupled directions
increasing in k for a shared link. Exceptions, each named where it is allowed:
- coupled directions (a non-even link, matrix solver): columns are eigen-branches, so the per-k
  threshold order is not asserted (docs/numerics.md, "Coupled directions");
- a spike that never leaves the bulk has threshold inf (and q = 0 at every alpha);
- coupled directions (matrix solver): q_k is the projection of w_k on the outlier eigenvectors, and
  the projection of a direction not yet learned on an earlier branch falls as that branch's
  eigenvector turns towards its own direction (z + He2/2, gamma = 3/2, m = 4, Delta = 0.1: q_2 falls
  from 6.9e-4 to 7.6e-5 between alpha = 3.2 and 5.7). q_k is not monotone there; the error is.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from numerics import predict
from theory import HierarchicalModel

LINKS = ["He2", "He2/2 + He4/48", "|z|", "z**2", "He4/4 + He2", "He2 + He3/6", "relu(z)", "tanh(z)**2",
         "z + He2/2", "He3/6 + He2/2", "He1/2 + He2", "1 - exp(-z**2/2)"]
PRE = ["y/(1+|y|)", "tanh(y)", "clip(y, -2, 2)", "clip(y, -1, 3)", "1 - exp(-y**2)", "tanh(2*y)"]


@st.composite
def models(draw):
    link = draw(st.sampled_from(LINKS))
    gamma = draw(st.sampled_from(["3/5", "4/5", "1", "13/10", "3/2", "2", "3"]))
    big = draw(st.integers(0, 19)) == 0  # one model in 20 goes through the large-m path
    even = link in ("He2", "He2/2 + He4/48", "|z|", "z**2", "He4/4 + He2", "tanh(z)**2", "1 - exp(-z**2/2)")
    if big and even:
        m = draw(st.sampled_from([40, 200, "inf"]))
        if gamma in ("3/5", "4/5"):
            gamma = "1"  # gamma < 1 needs ~200 exact directions (minutes each): docs/numerics.md runs it once
        if m == "inf" and gamma == "1" and link not in ("He2", "He2/2 + He4/48", "He4/4 + He2"):
            # not a valid model: sum a_k E[g] diverges, and tail_plan refuses it by name
            # (test_large_m); the 500-model run drew tanh(z)**2 at m = inf, gamma = 1
            gamma = "13/10"
    else:
        m = draw(st.integers(1, 6))
    delta = draw(st.sampled_from(["0", "1/100", "1/10", "1"]))
    pre = draw(st.sampled_from(PRE))
    return HierarchicalModel(link=link, gamma=gamma, m=m, delta=delta, preprocessing=pre)


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("CASCADE_RELIABILITY_N", 200)), deadline=None, derandomize=True,
          database=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(models())
def test_predict_on_random_models(model):
    alphas = np.geomspace(0.3, 3e4, 40)
    p = predict(model, alphas)
    assert np.all(np.isfinite(p.q)) and np.all((p.q >= 0) & (p.q <= 1))
    if p.settings["solver"] == "diagonal":
        assert np.all(np.diff(p.q, axis=0) >= -1e-9)
    assert np.all(np.isfinite(p.bulk_edge)) and np.all(np.isfinite(p.mse))
    total = 1.0 if model.normalize else None
    assert np.all(p.mse >= -1e-12) and (total is None or np.all(p.mse <= total + 1e-9))
    assert np.all(np.diff(p.mse) <= 1e-9)  # more samples never hurt at d = infinity
    assert not np.any(np.isnan(p.thresholds))
    if p.settings["solver"] == "diagonal":
        finite = p.thresholds[np.isfinite(p.thresholds)]
        if model.shared_link:
            assert np.all(np.diff(finite) > 0)
        assert np.all(p.q[:, ~np.isfinite(p.thresholds)] == 0)
