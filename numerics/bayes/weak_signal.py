r"""Numbers for the weak-signal closed forms of theory.bayes (docs/bayes.md, section 6).

In the weak-signal picture a direction of signal-to-noise ratio :math:`s = \alpha a^2/\sigma^2`
has the scalar state evolution :math:`\hat q = s\,\phi_g(q)`, :math:`q = \hat q/(1+\hat q)`
(:func:`theory.bayes.slope_response`). :func:`weak_signal_overlap` solves it (the uninformed
branch: the smallest fixed point reached from q = 0+), and the threshold laws of
:mod:`theory.bayes` become numbers:

>>> from theory import HierarchicalModel
>>> round(weak_signal_overlap("He2/2", 0.5), 12)     # s mu_2^2 = 1/2 < 1: q = 0 is stable
0.0
>>> round(noiseless_integral("He2/2", 1.3), 4)    # Q(s) = 1 - 1/s here: I = 1 - 1/(2 (2 gamma + 1))
0.8611
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.integrate import quad
from scipy.optimize import brentq

from theory import HierarchicalModel
from theory.bayes import hermite_degree, residual_variance, slope_response
from theory.hermite import hermite_moments
from theory.links import as_link

from ..label_law import check_model

__all__ = ["weak_signal_overlap", "threshold_asymptotics", "noiseless_integral"]

_Q = sp.Symbol("q")


def _poly(expr):
    """A numpy polynomial (highest power first) in q of a sympy polynomial expression."""
    return np.array([float(c) for c in sp.Poly(expr, _Q).all_coeffs()])


def _functions(link):
    g = as_link(link)
    J = hermite_degree(g)
    phi = _poly(slope_response(g, _Q, J))
    r = _poly(residual_variance(g, _Q, J))
    return (lambda q: np.polyval(phi, q)), (lambda q: np.polyval(r, q))


def weak_signal_overlap(link, s) -> float:
    r"""Uninformed fixed point of :math:`q = s\phi_g(q)/(1 + s\phi_g(q))` (the smallest root above 0)."""
    s = float(s)
    if not (np.isfinite(s) and s >= 0):
        raise ValueError(f"s: the signal-to-noise ratio must be a finite number >= 0, got {s!r}")
    phi, _ = _functions(link)
    h = lambda q: s * phi(q) / (1 + s * phi(q)) - q  # noqa: E731
    if phi(0.0) == 0:  # mu_1 = 0: q = 0 is a fixed point, unstable iff s phi'(0) = s mu_2^2 > 1
        if s * (phi(1e-8) - phi(0.0)) / 1e-8 <= 1:
            return 0.0
    grid = np.concatenate([np.geomspace(1e-9, 1e-2, 40), np.linspace(1e-2, 1 - 1e-12, 400)[1:]])
    vals = h(grid)
    idx = np.nonzero(vals <= 0)[0]
    if not idx.size:
        return 1.0
    j = int(idx[0])
    if j == 0:
        return float(grid[0])
    return float(brentq(h, grid[j - 1], grid[j], xtol=1e-15))


def threshold_asymptotics(model: HierarchicalModel) -> np.ndarray:
    r"""The weak-signal sequential law :math:`\alpha_k \simeq \sigma_k^2/(a_k^2\mu_2(g_k)^2)` for k = 1..m,
    with :math:`\sigma_k^2 = \Delta + \sum_{j>k} a_j^2\mathrm{Var}\,g_j + \sum_{j<k} a_j^2 r_{g_j}(Q_j)` and
    :math:`Q_j` the weak-signal overlap at :math:`s_j = (a_j/a_k)^2/\mu_2(g_k)^2`."""
    check_model(model)
    m = model.m
    a2 = model.weight_array**2
    funcs = [_functions(model.link_of(k)) for k in range(1, m + 1)]
    mu2 = np.array([float(hermite_moments(model.link_of(k), 2)[2]) ** 2 for k in range(1, m + 1)])
    var = np.array([f[1](0.0) for f in funcs])
    out = np.full(m, np.inf)
    for k in range(m):
        if mu2[k] == 0:
            continue
        sig = float(model.delta) + float(np.sum(a2[k + 1:] * var[k + 1:]))
        for j in range(k):
            Qj = weak_signal_overlap(model.link_of(j + 1), a2[j] / (a2[k] * mu2[k]))
            sig += a2[j] * funcs[j][1](Qj)
        out[k] = sig / (a2[k] * mu2[k])
    return out


def noiseless_integral(link, gamma) -> float:
    r""":math:`I_g = \int_0^1 x^{-2\gamma} r_g(Q_g(x^{-2\gamma}/\mu_2^2))\,dx` of the noiseless law
    :math:`\alpha_k^{BO} \simeq C_g k` (theory.bayes.noiseless_threshold_slope)."""
    g = float(gamma)
    if not g > 0.5:
        raise ValueError(f"gamma: must be > 1/2, got {gamma!r}")
    mu2 = float(hermite_moments(as_link(link), 2)[2]) ** 2
    if mu2 == 0:
        raise ValueError("link: mu_2 = 0, no threshold at n ~ d")
    _, r = _functions(link)
    f = lambda x: x ** (-2 * g) * r(weak_signal_overlap(link, x ** (-2 * g) / mu2))  # noqa: E731
    val, err = quad(f, 0.0, 1.0, limit=200, epsabs=1e-10, epsrel=1e-8)
    return float(val)
