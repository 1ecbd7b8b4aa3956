"""numerics.fit_exponent: the exponent read off a d = infinity MSE curve."""
import pytest
import sympy as sp

from numerics import fit_exponent
from theory import HierarchicalModel


def test_past_every_threshold_the_error_falls_like_one_over_alpha():
    # BBP: past its threshold 1 - q_k = c_k/alpha + O((alpha_k/alpha)^2) (docs/theory.md §2.2), so
    # with m = 3 (alpha_3 ~ 12) the fit on [1e4, 1e5] is 1 up to ~alpha_3/1e4 ~ 1e-3
    f = fit_exponent(HierarchicalModel(m=3), (1e4, 1e5), n_alphas=9)
    assert abs(f.exponent - 1) < 5e-3 and f.rms_residual < 1e-3
    assert f.exact == sp.Rational(8, 13) and f.window == (1e4, 1e5)
    assert f.local_slope_range[0] <= -f.exponent <= f.local_slope_range[1]


def test_more_directions_bring_the_fit_towards_the_envelope_exponent():
    # the staircase window [10, 1000]: a finite m mixes in the 1/alpha tail of the learned
    # directions, which fades as m grows (docs/numerics.md); the exponent falls towards 8/13
    fits = [fit_exponent(HierarchicalModel(m=m), (10, 1000), n_alphas=21).exponent for m in (5, 10, 20)]
    assert fits[0] > fits[1] > fits[2] > 8 / 13


@pytest.mark.parametrize("kw, name", [
    ({"alpha_range": (5, 1)}, "alpha_range"),
    ({"alpha_range": (0, 1)}, "alpha_range"),
    ({"alpha_range": "ab"}, "alpha_range"),
    ({"alpha_range": (1, 10), "n_alphas": 2}, "n_alphas"),
    ({"alpha_range": (1, 10), "estimator": "amp"}, "estimator"),
])
def test_bad_input_names_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        fit_exponent(HierarchicalModel(m=2), **kw)


def test_infinite_m_and_perfect_recovery_are_refused():
    # the Bayes-optimal state evolution has no tail closure (docs/numerics.md, Limits)
    with pytest.raises(ValueError, match="model.m: the Bayes-optimal state evolution needs a finite m"):
        fit_exponent(HierarchicalModel(m="inf"), (1, 10), estimator="bayes")
    # noiseless phase retrieval: q = 1 from alpha ~ 1.13 on (docs/bayes.md §7), so MSE = 0 there
    with pytest.raises(ValueError, match="perfect recovery"):
        fit_exponent(HierarchicalModel(link="z**2", m=1, preprocessing="y"), (1.5, 3), n_alphas=3, estimator="bayes")


def test_infinite_m_fit_approaches_the_exponent_from_above():
    # at m = inf there is no 1/alpha tail: on [1e5, 1e6] at gamma = 2 the local slope is -0.775 ... -0.764
    # (docs/numerics.md, exponent section: the correction A alpha^(-1/(2 gamma)) with A > 0), so the fit
    # lies above the exact 3/4 and within 0.03 of it; at m = 20 the same window is in the 1/alpha tail
    f = fit_exponent(HierarchicalModel(m="inf", gamma=2), (1e5, 1e6), n_alphas=5)
    assert f.exact == sp.Rational(3, 4) and 0.75 < f.exponent < 0.78
    assert fit_exponent(HierarchicalModel(m=20, gamma=2), (1e5, 1e6), n_alphas=5).exponent > 0.95
