"""Closed-form laws of Model S against direct summation and identities."""
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from theory import (HierarchicalModel, NoSpectralTransition, c_gamma, critical_alpha_law, learned_directions,
                    mse_exponent, mse_law, mse_staircase, overlap_law)
from theory.symbols import alpha, kappa_T


def test_exponent_is_exact():
    assert mse_exponent(sp.Rational(13, 10)) == sp.Rational(8, 13)
    assert mse_exponent(1.3) == sp.Rational(8, 13)
    assert sp.latex(mse_exponent("13/10")) == r"\frac{8}{13}"
    g = sp.Symbol("gamma", positive=True)
    assert mse_exponent(g).subs(g, 2) == sp.Rational(3, 4)
    assert mse_exponent(g)._repr_latex_().startswith("$")


@settings(max_examples=50, deadline=None)
@given(st.fractions(min_value="0.51", max_value=20), st.fractions(min_value="0.51", max_value=20))
def test_exponent_monotone_in_gamma(g1, g2):
    if g1 < g2:
        assert mse_exponent(g1) < mse_exponent(g2) < 1


def test_gamma_at_most_half_is_refused():
    with pytest.raises(ValueError, match="gamma > 1/2"):
        mse_exponent("1/2")


def _direct_mse(gamma, K, m):
    """Direct sum of a_k^2 (1 - q_k^2) with Z = 1, alpha/kappa = K^(2 gamma)."""
    k = np.arange(1, m + 1, dtype=float)
    q = np.clip(1 - (k / K) ** (2 * gamma), 0, None)
    return np.sum(k ** (-2 * gamma) * (1 - q**2))


@pytest.mark.parametrize("gamma", [0.8, 1.0, 1.3, 2.0])
def test_c_gamma_against_direct_summation(gamma):
    # window: 1 << K << m; MSE = C_gamma K^(1 - 2 gamma)
    K, m = 2000.0, 2_000_000
    direct = _direct_mse(gamma, K, m) / K ** (1 - 2 * gamma)
    assert abs(direct / float(c_gamma(gamma)) - 1) < 0.01


def test_mse_law_against_direct_summation_in_window_and_tail():
    model = HierarchicalModel(link="He2/2", gamma=sp.Rational(13, 10), m=4000, normalize=False)
    law = mse_law(model)
    for K in (50.0, 200.0):  # window
        a = K ** 2.6
        assert abs(float(law.subs({kappa_T: 1, alpha: a})) / _direct_mse(1.3, K, 4000) - 1) < 0.03
    # beyond alpha_m the tail 2 m kappa / alpha
    m_small = HierarchicalModel(link="He2/2", gamma=sp.Rational(13, 10), m=5, normalize=False)
    a = 1e6
    tail = float(mse_law(m_small).subs({kappa_T: 1, alpha: a}))
    assert abs(tail / _direct_mse(1.3, a ** (1 / 2.6), 5) - 1) < 1e-3
    # below alpha_1 the plateau sum a_k^2
    assert mse_law(m_small).subs({kappa_T: 1, alpha: sp.Rational(1, 2)}) == m_small.Z_m


def test_critical_law_and_overlap():
    model = HierarchicalModel(link="He2/2 + He4/48", gamma=1, m=3)
    law = critical_alpha_law(model, 2)
    assert law == kappa_T * model.Z_m * 4  # mu_2 = 1
    assert overlap_law(model, 1).subs({kappa_T: 1, alpha: 100 * model.Z_m}) == sp.Rational(99, 100)
    assert overlap_law(model, 1).subs({kappa_T: 1, alpha: model.Z_m / 2}) == 0
    assert "kappa_{T}" in sp.latex(law)


def test_mu2_zero_gives_infinity_with_a_reason():
    model = HierarchicalModel(link="He3", gamma=1, m=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert critical_alpha_law(model, 1) == sp.oo
    assert issubclass(w[0].category, NoSpectralTransition) and "mu_2" in str(w[0].message)


def test_learned_directions_and_staircase_sum():
    model = HierarchicalModel(link="He2/2", gamma=1, m=6, normalize=False)
    ks = learned_directions(model)
    for a in (0.5, 1, 3.9, 4, 24.9, 25, 1e4):
        brute = sum(1 for k in range(1, 7) if k**2 <= a)  # alpha_k = k^2 with kappa_T = 1
        assert ks.subs({kappa_T: 1, alpha: sp.nsimplify(a)}) == brute
    mse = mse_staircase(model)
    assert mse.subs({kappa_T: 1, alpha: 1}) == model.Z_m  # nothing learned at alpha = alpha_1
    plug = mse_staircase(model, form="plugin").subs({kappa_T: 1, alpha: 4})
    assert plug == 2 * (1 * sp.Rational(1, 4) + sp.Rational(1, 4) * 1) + 2 * sum(sp.Rational(1, k**2) for k in range(3, 7))


def test_bad_direction():
    with pytest.raises(ValueError, match="k: must lie in"):
        critical_alpha_law(HierarchicalModel(m=3), 4)
    with pytest.raises(ValueError, match="k: must be an integer"):
        critical_alpha_law(HierarchicalModel(m=3), 0)
