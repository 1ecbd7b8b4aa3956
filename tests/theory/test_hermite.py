"""Hermite moments: identities over random polynomial links and independent references."""
import math

import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from theory import (Z, gaussian_expectation, generative_exponent, hermite_coefficients, hermite_moments,
                    information_exponent, is_piecewise_polynomial)

coeffs = st.lists(st.integers(-5, 5), min_size=1, max_size=6)


def poly(cs):
    return sp.Add(*[sp.Integer(c) * Z**i for i, c in enumerate(cs)])


@settings(max_examples=25, deadline=None)
@given(coeffs, coeffs, st.integers(-3, 3))
def test_linearity(c1, c2, lam):
    g1, g2 = poly(c1), poly(c2)
    m1, m2, m12 = (hermite_moments(g, 6) for g in (g1, g2, lam * g1 + g2))
    assert all(sp.simplify(m12[k] - lam * m1[k] - m2[k]) == 0 for k in range(7))


@settings(max_examples=25, deadline=None)
@given(coeffs)
def test_stein_identity(cs):
    # mu_k(g') = mu_{k+1}(g)  (Gaussian integration by parts)
    g = poly(cs)
    mg, mdg = hermite_moments(g, 7), hermite_moments(sp.diff(g, Z), 6)
    assert all(sp.simplify(mdg[k] - mg[k + 1]) == 0 for k in range(7))


@settings(max_examples=25, deadline=None)
@given(coeffs)
def test_parseval(cs):
    g = poly(cs)
    deg = len(cs) - 1
    mus = hermite_moments(g, deg)
    assert sp.simplify(gaussian_expectation(g**2) - sum(mus[k] ** 2 / sp.factorial(k) for k in mus)) == 0


@settings(max_examples=25, deadline=None)
@given(coeffs)
def test_parity(cs):
    # an even polynomial has vanishing odd moments, an odd one vanishing even moments
    g = poly(cs)
    even, odd = (g + g.subs(Z, -Z)) / 2, (g - g.subs(Z, -Z)) / 2
    me, mo = hermite_moments(even, 6), hermite_moments(odd, 6)
    assert all(me[k] == 0 for k in (1, 3, 5)) and all(mo[k] == 0 for k in (0, 2, 4, 6))


def test_reference_link_of_D():
    mus = hermite_moments("He2/2 + He4/48", 4)
    assert mus == {0: 0, 1: 0, 2: 1, 3: 0, 4: sp.Rational(1, 2)}
    assert all(isinstance(v, sp.Rational) for v in mus.values())
    assert gaussian_expectation("(He2/2 + He4/48)**2") == sp.Rational(49, 96)  # docs/theory.md §1


def _mp_moment(f, k, points=(0,)):
    """Independent 30-digit reference: mpmath.quad of f(z) He_k(z) phi(z), split at kinks."""
    with mpmath.workdps(40):
        he = lambda z: mpmath.hermite(k, z / mpmath.sqrt(2)) * mpmath.mpf(2) ** (-mpmath.mpf(k) / 2)
        pts = [-mpmath.inf, *[mpmath.mpf(p) for p in points], mpmath.inf]
        return mpmath.quad(lambda z: f(z) * he(z) * mpmath.npdf(z), pts)


LITERATURE = {
    # docs/theory.md §1: relu mu_0 = 1/sqrt(2 pi), mu_1 = 1/2, mu_2 = 1/sqrt(2 pi)
    "relu(z)": (lambda z: max(z, 0), {0: 1 / sp.sqrt(2 * sp.pi), 1: sp.Rational(1, 2), 2: 1 / sp.sqrt(2 * sp.pi)}),
    # |z|: mu_0 = mu_2 = sqrt(2/pi)
    "|z|": (abs, {0: sp.sqrt(2 / sp.pi), 1: 0, 2: sp.sqrt(2 / sp.pi)}),
    # sign: mu_1 = sqrt(2/pi), mu_3 = -sqrt(2/pi)
    "sign(z)": (mpmath.sign, {1: sp.sqrt(2 / sp.pi), 2: 0, 3: -sp.sqrt(2 / sp.pi)}),
}


@pytest.mark.parametrize("link", sorted(LITERATURE))
def test_kinked_links_exact_against_literature_and_mpmath(link):
    f, lit = LITERATURE[link]
    mus = hermite_moments(link, 5)
    for k, v in lit.items():
        assert sp.simplify(mus[k] - v) == 0
    for k in range(6):
        ref = _mp_moment(f, k)
        with mpmath.workdps(40):
            assert abs(mpmath.mpf(sp.N(mus[k], 40)) - ref) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize(
    "link, f, exact",
    [
        # E[tanh'(z)] = E[sech^2 z]: 0.605706... (docs/theory.md §1), compared with its own quadrature below
        ("tanh(z)", mpmath.tanh, {}),
        # erf: mu_1 = E[erf'] = (2/sqrt(pi)) E[exp(-z^2)] = 2/sqrt(3 pi);
        #      mu_3 = E[erf'''] = (2/sqrt(pi)) E[(4z^2-2) e^{-z^2}] = -4/(3 sqrt(3 pi))
        ("erf(z)", mpmath.erf, {1: 2 / sp.sqrt(3 * sp.pi), 3: -4 / (3 * sp.sqrt(3 * sp.pi))}),
    ],
)
def test_smooth_links_at_30_digits(link, f, exact):
    mus = hermite_moments(link, 5, dps=30)
    assert all(isinstance(v, sp.Float) or v == 0 for v in mus.values())  # odd integrands cancel exactly
    for k in range(6):
        ref = _mp_moment(f, k)
        with mpmath.workdps(40):
            assert abs(mpmath.mpf(mus[k]) - ref) < mpmath.mpf(10) ** -28
    with mpmath.workdps(40):
        for k, v in exact.items():
            assert abs(mpmath.mpf(mus[k]) - mpmath.mpf(sp.N(v, 40))) < mpmath.mpf(10) ** -28
    if link == "tanh(z)":
        with mpmath.workdps(40):
            sech2 = mpmath.quad(lambda z: mpmath.sech(z) ** 2 * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
            assert abs(mpmath.mpf(mus[1]) - sech2) < mpmath.mpf(10) ** -28
        assert abs(float(mus[1]) - 0.605706) < 1e-6  # regression value: the mpmath result above, rounded


def test_shifted_kink_is_exact():
    # relu(z - 1): mu_1 = P(z > 1) (Stein), mu_2 = phi(1)
    mus = hermite_moments("relu(z - 1)", 2)
    assert sp.simplify(mus[1] - (1 - sp.erf(1 / sp.sqrt(2))) / 2) == 0
    assert sp.simplify(mus[2] - sp.exp(-sp.Rational(1, 2)) / sp.sqrt(2 * sp.pi)) == 0


def test_coefficients_are_orthonormal_normalisation():
    c = hermite_coefficients("He3", 4)
    assert c[3] == sp.sqrt(6) and c[1] == 0


def test_exponents():
    assert information_exponent("He3") == 3
    assert generative_exponent("He3") == 1  # [D]/docs/theory.md §1: k* <= k_IE, here strictly
    assert information_exponent("He2/2 + He4/48") == 2 and generative_exponent("He2/2 + He4/48") == 2
    assert information_exponent("7") == sp.oo and generative_exponent("7") == sp.oo
    assert information_exponent("He5", kmax=4) == sp.oo
    assert information_exponent("tanh(z)") == 1


@pytest.mark.parametrize("link, kstar", [("He2", 2), ("He3", 1), ("He4", 2), ("He2 + He3", 1), ("z**3 + z", 1)])
@pytest.mark.parametrize("delta", [0, 0.3])
def test_generative_exponent_numeric_agrees_with_exact_rule(link, kstar, delta):
    assert generative_exponent(link, delta=delta, method="numeric") == kstar
    assert generative_exponent(link, delta=delta) == kstar


def test_generative_exponent_numeric_links():
    assert generative_exponent("|z|") == 2 and generative_exponent("cos(z)") == 2
    assert generative_exponent("relu(z)") == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="kmax"):
        hermite_moments("z", -1)
    with pytest.raises(TypeError, match="kmax"):
        hermite_moments("z", 2.5)
    with pytest.raises(ValueError, match="delta"):
        generative_exponent("He2", delta=-1)
    with pytest.raises(ValueError, match="method"):
        generative_exponent("tanh(z)", method="exact")


def test_piecewise_detection():
    assert is_piecewise_polynomial("relu(z)**2 - clip(z, -1, 2)")
    assert not is_piecewise_polynomial("exp(z)")
    assert math.isclose(float(gaussian_expectation("clip(z, -1, 1)**2")),
                        float(mpmath.quad(lambda z: min(max(z, -1), 1) ** 2 * mpmath.npdf(z), [-mpmath.inf, -1, 1, mpmath.inf])),
                        rel_tol=1e-14)
