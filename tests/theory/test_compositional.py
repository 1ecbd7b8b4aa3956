"""Model C closed forms against brute-force counts and limits."""
import numpy as np
import pytest
import sympy as sp

from theory import (CompositionalModel, layer1_overlaps, nmse_law, refined_overlap, separation, spike_strengths,
                    staircase, threshold_exponents, thresholds_n)
from theory.symbols import n


@pytest.mark.parametrize("gamma", [0, "1/4", "1/2", 1, "3/2"])
def test_theta_normalisation_and_thresholds(gamma):
    m = CompositionalModel(d=64, q=2, eps=0.5, gamma=gamma)
    th = spike_strengths(m)
    # identities among sums of surds: checked at 50 digits (sympy.simplify would chase minimal polynomials)
    assert abs(sp.N(sum(t**2 for t in th) - sp.Rational(1, 2), 50)) < 1e-45
    sb2 = sum(sp.Integer(i) ** (-2 * m.gamma) for i in range(1, m.d1 + 1))
    for i, t in enumerate(thresholds_n(m), 1):
        ref = m.D * sb2 * sp.Integer(i) ** (2 * m.gamma) / 2
        assert abs(sp.N(t / ref - 1, 50)) < 1e-45


@pytest.mark.parametrize("gamma", [0, "1/4", 1, 2])
@pytest.mark.parametrize("d", [30, 100, 1000])
def test_staircase_matches_brute_force_count(gamma, d):
    m = CompositionalModel(d=d, q=2, eps=sp.Rational(2, 3), gamma=gamma)
    kap = [float(k) for k in threshold_exponents(m)]
    ns = np.unique(np.round(np.geomspace(d**1.5, d**4, 60)))
    for nn in ns:
        kn = np.log(nn) / np.log(d)
        brute = sum(1 for k in kap if k <= kn + 1e-12)
        assert staircase(m, int(nn)) == brute
    assert list(staircase(m, ns)) == [staircase(m, int(x)) for x in ns]


def test_staircase_floor_guard_at_exact_powers():
    m = CompositionalModel(d=100, q=2, eps=0.5, gamma=1)
    for i in range(1, 11):
        nn = 100**2 * i**2  # exactly at the exponent of feature i
        assert staircase(m, nn) == i and staircase(m, np.array([nn]))[0] == i


def test_refined_overlap_limits_and_continuity():
    assert refined_overlap(0.3, 0.0) == pytest.approx(1.0)
    # weak-signal limit: rho^2 -> 1 - n*/n (sigma^2/theta^2 = r = n*/n). Expanding g to
    # O(theta^2) gives rho^2 = 1 - r + 16 theta^2 r^2 + ..., i.e. relative 1.3e-6 at theta = 1e-4.
    theta = 1e-4
    for r in (0.1, 0.5, 0.9):
        assert refined_overlap(theta, r * theta**2) == pytest.approx(1 - r, rel=1e-5)
        assert refined_overlap(theta, theta**2 / r) == 0
    # continuous at the transition (rho^2 -> 0 from above)
    th = 0.2
    s2 = np.linspace(0.0, 0.2, 20001)
    rho = refined_overlap(th, s2)
    jump = np.max(np.abs(np.diff(rho)))
    assert jump < 1e-3 and rho[-1] == 0
    exact = refined_overlap(sp.Rational(1, 5), sp.Rational(1, 100))
    assert abs(float(exact) - float(refined_overlap(0.2, 0.01))) < 1e-14


def test_layer1_overlaps_forms():
    m = CompositionalModel(d=20, q=2, eps=0.5, gamma=1)
    nstar = np.array([float(t) for t in thresholds_n(m)])
    lead = layer1_overlaps(m, 10 * nstar[0], refined=False)
    assert lead[0] == pytest.approx(0.9) and np.all(np.diff(lead) <= 0)
    assert np.all(layer1_overlaps(m, 10 * nstar[0]) <= 1)


def test_nmse_law_limits():
    m = CompositionalModel(d=30, q=2, eps=0.5, gamma=1)
    law = nmse_law(m)
    assert law.subs(n, 1) == 1
    assert float(law.subs(n, 10**12)) < 1e-6
    assert "max" in sp.latex(law)


def test_separation_exponents():
    assert separation(CompositionalModel(d=100, q=2, eps=0.5, gamma=0)) == {"layerwise": sp.Rational(5, 2), "kernel": 4}
    assert separation(CompositionalModel(d=100, q=2, eps=0.5, gamma=2))["layerwise"] == 4
    assert separation(CompositionalModel(d=100, q=3, eps=0.5, gamma=1, g_star="z**3"))["kernel"] == 18
    assert separation(CompositionalModel(d=100, g_star="tanh(z)"))["kernel"] == sp.oo


def test_closed_forms_need_identity_link():
    with pytest.raises(ValueError, match="g_star"):
        thresholds_n(CompositionalModel(d=30, g_star="z**3"))


def test_local_nmse_slope_approaches_the_scaling_exponent_as_d1_grows():
    # NMSE = sum w_i (1 - rho_i^4)/sum w_i with the refined layer-1 overlaps (docs/theory.md §3), gamma = 1: the local
    # slope at the geometric middle of the power-law window n_1* << n << n_d1* tends to -(1 - 1/(2 gamma))
    # = -1/2 as d1 grows. Measured: -0.486, -0.550, -0.509 at d1 = 30, 300, 3e4: at small d1 the window is
    # too short for a clean power law and the slope wanders by +-0.05; at d1 = 3e4 it is within 0.01.
    import numpy as np

    from theory import refined_overlap

    def mid_slope(d1):
        i = np.arange(1, d1 + 1)
        theta = i**-1.0 / np.sqrt(2 * np.sum(i**-2.0))
        w = i**-2.0
        nstar = 1 / (4 * theta**2)
        a = np.geomspace(np.sqrt(nstar[0] * nstar[-1]) / 3, np.sqrt(nstar[0] * nstar[-1]) * 3, 2)
        nm = [np.sum(w * (1 - refined_overlap(theta, 1 / (4 * x)) ** 2)) / w.sum() for x in a]
        return np.diff(np.log(nm))[0] / np.diff(np.log(a))[0]

    assert abs(mid_slope(30000) + 0.5) < 0.02


def test_a_bad_outer_link_is_refused_under_its_own_name():
    # parse_link reports "link: ..."; for Model C the parameter is g_star
    with pytest.raises(ValueError, match=r"^g_star: unexpected"):
        CompositionalModel(d=10, g_star="exp(")
