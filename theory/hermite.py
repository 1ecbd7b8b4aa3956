r"""Hermite moments, information and generative exponents (docs/theory.md §1).

Conventions: probabilists' Hermite polynomials :math:`He_k`, :math:`z\sim N(0,1)`,

.. math::  \mu_k(g) = E[g(z) He_k(z)], \qquad c_k = \mu_k/\sqrt{k!},
           \qquad E[g^2] = \sum_k \mu_k^2/k!.

Exact route: a link built from polynomials, ``relu``, ``abs``, ``sign``, ``min``,
``max`` and ``clip`` is piecewise polynomial. We split the real line at the real
roots of the arguments of the non-smooth functions and integrate each polynomial
piece against the Gaussian with the truncated-moment recursion

.. math::  M_n(a,b) = \int_a^b z^n\varphi(z)\,dz = a^{n-1}\varphi(a) - b^{n-1}\varphi(b)
           + (n-1) M_{n-2}(a,b),

with :math:`M_0 = \Phi(b)-\Phi(a)`, :math:`M_1 = \varphi(a)-\varphi(b)`. Everything else
(tanh, erf, exp, ...) is integrated by ``mpmath.quad`` at ``dps`` digits.

Examples
--------
>>> hermite_moments("He2/2 + He4/48", 4)
{0: 0, 1: 0, 2: 1, 3: 0, 4: 1/2}
>>> hermite_moments("relu(z)", 2)
{0: sqrt(2)/(2*sqrt(pi)), 1: 1/2, 2: sqrt(2)/(2*sqrt(pi))}
>>> information_exponent("He3")
3
>>> generative_exponent("He3")
1
"""
from __future__ import annotations

import numbers

import mpmath
import numpy as np
import sympy as sp

from .links import NotPiecewisePolynomial, as_link as _as_link, is_even, is_piecewise_polynomial, kinks, pieces
from .parsing import MAX_HERMITE_DEGREE, Z

__all__ = [
    "gaussian_expectation",
    "hermite_moments",
    "hermite_coefficients",
    "information_exponent",
    "generative_exponent",
    "is_piecewise_polynomial",
]


def _check_int(value, name, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must lie in [{lo}, {hi}], got {value}")
    return int(value)


def _phi(x):
    return sp.Integer(0) if x in (sp.oo, -sp.oo) else sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


def _Phi(x):
    if x == sp.oo:
        return sp.Integer(1)
    if x == -sp.oo:
        return sp.Integer(0)
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def _truncated_moments(a, b, nmax):
    """[M_0, ..., M_nmax] with M_n = int_a^b z^n phi(z) dz, exact."""
    pa, pb = _phi(a), _phi(b)
    M = [_Phi(b) - _Phi(a), pa - pb]
    for n in range(2, nmax + 1):
        ta = 0 if a == -sp.oo else a ** (n - 1) * pa
        tb = 0 if b == sp.oo else b ** (n - 1) * pb
        M.append(ta - tb + (n - 1) * M[n - 2])
    return M[: nmax + 1]


def _exact_expectation(pieces):
    total = sp.Integer(0)
    for a, b, poly in pieces:
        if poly == 0:
            continue
        coeffs = sp.Poly(poly, Z).all_coeffs()[::-1]
        M = _truncated_moments(a, b, len(coeffs) - 1)
        total += sum(c * M[n] for n, c in enumerate(coeffs) if c != 0)
    return sp.simplify(total)


def _numeric_expectation(expr, dps):
    with mpmath.workdps(dps + 10):
        f = sp.lambdify(Z, expr * sp.exp(-Z**2 / 2), modules="mpmath")
        pts = [mpmath.mpf(p) for p in kinks(expr)]
        edges = [-mpmath.inf, *sorted(set(pts) | {mpmath.mpf(0)}), mpmath.inf]
        val = mpmath.quad(f, edges) / mpmath.sqrt(2 * mpmath.pi)
        if isinstance(val, mpmath.mpc):
            if abs(val.imag) > mpmath.mpf(10) ** (-dps):
                raise ValueError("link: the Gaussian expectation is complex; the link must be real-valued")
            val = val.real
        return sp.Float(val, dps)


def gaussian_expectation(expr, dps: int = 30):
    """E[f(z)] for z ~ N(0, 1): exact for piecewise polynomials, mpmath otherwise.

    >>> gaussian_expectation("|z|")
    sqrt(2)/sqrt(pi)
    >>> gaussian_expectation("tanh(z)**2", dps=15)   # = 1 - E[sech^2 z] = 1 - 0.605706
    0.39429449...
    """
    dps = _check_int(dps, "dps", 5, 1000)
    expr = _as_link(expr)
    try:
        parts = list(pieces(expr))
    except NotPiecewisePolynomial:
        return _numeric_expectation(expr, dps)
    return _exact_expectation(parts)


def hermite_moments(link, kmax: int, dps: int = 30) -> dict:
    r"""Hermite moments :math:`\mu_k = E[g(z)He_k(z)]`, k = 0..kmax.

    Exact sympy numbers for piecewise-polynomial links (polynomials, relu, abs,
    sign, min, max, clip); sympy Floats computed by mpmath at ``dps`` digits
    otherwise.

    >>> hermite_moments("sign(z)", 3)
    {0: 0, 1: sqrt(2)/sqrt(pi), 2: 0, 3: -sqrt(2)/sqrt(pi)}
    >>> round(float(hermite_moments("tanh(z)", 1, dps=20)[1]), 6)
    0.605706
    """
    kmax = _check_int(kmax, "kmax", 0, MAX_HERMITE_DEGREE)
    dps = _check_int(dps, "dps", 5, 1000)
    g = _as_link(link)
    try:
        parts = list(pieces(g))
    except NotPiecewisePolynomial:
        parts = None
    out = {}
    for k in range(kmax + 1):
        he = sp.expand(sp.hermite_prob(k, Z))
        if parts is not None:
            out[k] = _exact_expectation([(a, b, sp.expand(p * he)) for a, b, p in parts])
        else:
            out[k] = _numeric_expectation(g * he, dps)
    return out


def hermite_coefficients(link, kmax: int, dps: int = 30) -> dict:
    r"""Orthonormal-basis coefficients :math:`c_k = \mu_k/\sqrt{k!}`.

    >>> hermite_coefficients("He2", 3)
    {0: 0, 1: 0, 2: sqrt(2), 3: 0}
    """
    return {k: sp.simplify(mu / sp.sqrt(sp.factorial(k))) for k, mu in hermite_moments(link, kmax, dps).items()}


def _is_zero(mu, dps):
    if isinstance(mu, sp.Float):
        return abs(mu) < sp.Float(10) ** (-(dps // 2))
    return bool(sp.simplify(mu) == 0)


def information_exponent(link, kmax: int = 20, dps: int = 30):
    r"""Information exponent :math:`k_{IE} = \min\{k\ge 1: \mu_k \ne 0\}`.

    Returns ``sympy.oo`` if every :math:`\mu_k`, 1 <= k <= kmax, vanishes (exactly,
    or below 10^(-dps/2) for numerically integrated links).

    >>> information_exponent("He2/2 + He4/48"), information_exponent("1")
    (2, oo)
    """
    kmax = _check_int(kmax, "kmax", 1, MAX_HERMITE_DEGREE)
    mus = hermite_moments(link, kmax, dps)
    for k in range(1, kmax + 1):
        if not _is_zero(mus[k], dps):
            return k
    return sp.oo


def generative_exponent(link, delta=0, kmax: int = 8, method: str = "auto"):
    r"""Generative exponent :math:`k^* = \min\{k\ge1: E[(E[He_k(z)\mid y])^2] > 0\}`,
    with :math:`y = g(z) + \sqrt{\Delta}\xi`.

    ``method="exact"`` (the default for polynomial links) uses parity: a constant
    link has :math:`k^* = \infty`; a non-constant even polynomial has
    :math:`k^*=2` (odd moments of z vanish given y by symmetry, while
    :math:`E[z^2\mid y]` is not constant); any other polynomial has :math:`k^*=1`
    (for large :math:`|y|` the preimages of y are not symmetric, so
    :math:`E[z\mid y]\ne0` on a set of positive probability). ``method="numeric"``
    evaluates the conditional expectations on a z-grid (level-set binning for
    Delta = 0, a Gaussian likelihood for Delta > 0); binning only lowers the
    quantity, so a positive value is a certificate.

    >>> generative_exponent("He3"), generative_exponent("He2/2 + He4/48"), generative_exponent("z**3 + z")
    (1, 2, 1)
    >>> generative_exponent("|z|", method="numeric"), generative_exponent("tanh(z)")
    (2, 1)
    """
    g = _as_link(link)
    kmax = _check_int(kmax, "kmax", 1, 20)
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"delta: expected a number >= 0, got {delta!r}") from None
    if not delta >= 0 or not np.isfinite(delta):
        raise ValueError(f"delta: the noise variance must be a finite number >= 0, got {delta}")
    if method not in ("auto", "exact", "numeric"):
        raise ValueError(f"method: must be 'auto', 'exact' or 'numeric', got {method!r}")
    polynomial = g.is_polynomial(Z)
    if method == "exact" and not polynomial:
        raise ValueError("method: 'exact' needs a polynomial link; use method='numeric'")
    if method in ("auto", "exact") and polynomial:
        if sp.Poly(g, Z).degree() <= 0:
            return sp.oo
        return 2 if is_even(g) else 1
    return _generative_exponent_numeric(g, delta, kmax)


def _generative_exponent_numeric(g, delta, kmax, tol=1e-8):
    zs = 0.0025 * np.arange(-4000, 4001)  # exactly symmetric, so z and -z give equal y for even g
    w = np.exp(-zs**2 / 2)
    w /= w.sum()
    y = np.asarray(sp.lambdify(Z, g, modules="numpy")(zs), dtype=float) * np.ones_like(zs)
    he = np.polynomial.hermite_e.hermevander(zs, kmax)  # He_0..He_kmax at the nodes
    if delta == 0:
        # condition on y through equal-mass level-set bins; ties (z, -z) share a bin.
        # Rounding merges levels closer than 1e-10: a coarser conditioning only lowers
        # E[(E[He_k|bin])^2], so a positive value stays a certificate.
        y = np.round(y, 10)
        order = np.argsort(y, kind="stable")
        cum = np.cumsum(w[order])
        edges = y[order][np.searchsorted(cum, np.linspace(0, 1, 401)[1:-1])]
        bins = np.searchsorted(np.unique(edges), y, side="right")
        mass = np.bincount(bins, weights=w)
        keep = mass > 0
        for k in range(1, kmax + 1):
            cond = np.bincount(bins, weights=w * he[:, k])[keep] / mass[keep]
            if np.sum(mass[keep] * cond**2) > tol:
                return k
        return sp.oo
    s = np.sqrt(delta)
    ygrid = np.linspace(y.min() - 8 * s, y.max() + 8 * s, 1500)
    lik = np.exp(-((ygrid[:, None] - y[None, :]) ** 2) / (2 * delta)) * w[None, :]
    py = lik.sum(axis=1)
    keep = py > 1e-300
    py_mass = py[keep] / py[keep].sum()
    for k in range(1, kmax + 1):
        cond = (lik[keep] @ he[:, k]) / py[keep]
        if np.sum(py_mass * cond**2) > tol:
            return k
    return sp.oo
