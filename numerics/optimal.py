r"""Optimal preprocessing for one direction (docs/theory.md §2.3, Mondelli-Montanari / Luo-Alghamdi-Lu).

With :math:`f(y) = E[z^2\mid y]`, :math:`y = g(z) + \sqrt\Delta\,\xi`:

.. math::  \alpha_c = 1/E[(f(Y)-1)^2], \qquad T_{opt}(y) = 1 - 1/f(y).

Noiseless links use the exact conditional law (atoms and monotone pieces,
:mod:`numerics.conditional_law`); noisy links a Gaussian likelihood on a y-grid.

>>> round(optimal_threshold("z**2"), 12)      # noiseless phase retrieval
0.5
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from theory.parsing import Z, parse_link

from .conditional_law import NoiselessLaw
from .label_law import _z_rule, link_function

__all__ = ["conditional_second_moment", "optimal_threshold", "optimal_preprocessing"]


def _link(link):
    return link if isinstance(link, sp.Expr) else parse_link(link)


_MIN_DELTA = 1e-4


def _delta(delta):
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"delta: expected a number >= 0, got {delta!r}") from None
    if not (np.isfinite(d) and d >= 0):
        raise ValueError(f"delta: the noise variance must be a finite number >= 0, got {delta!r}")
    if 0 < d < _MIN_DELTA:
        raise ValueError(f"delta: noisy labels need delta >= {_MIN_DELTA:g} (the likelihood is resolved on a grid); "
                         "use delta = 0 for the noiseless limit")
    return d


def _noisy_rule(d):
    """z-rule and y-grid resolving the likelihood of width sqrt(delta)."""
    s = np.sqrt(d)
    z, w = _z_rule(panel=float(np.clip(2 * s, 0.02, 0.25)))
    return z, w, s


def _likelihood_moments(gz, z, w, ys, d):
    """(p(y), E[z^2 1{y}]) at ys, chunked over y."""
    py = np.empty(ys.size)
    pz2 = np.empty(ys.size)
    for c in range(0, ys.size, 1000):
        L = np.exp(-((ys[c:c + 1000, None] - gz[None, :]) ** 2) / (2 * d)) * w[None, :]
        py[c:c + 1000] = L.sum(axis=1) / np.sqrt(2 * np.pi * d)
        pz2[c:c + 1000] = (L @ z**2) / np.sqrt(2 * np.pi * d)
    return py, pz2


def _check_nonconstant(g):
    if not g.has(Z):
        raise ValueError(f"link: a constant link g = {g} carries no information about z")


def conditional_second_moment(link, y, delta=0.0):
    """f(y) = E[z^2 | y] at the points y."""
    g, d = _link(link), _delta(delta)
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if d == 0:
        _check_nonconstant(g)
        return NoiselessLaw(g).second_moment(y)
    z, w, _ = _noisy_rule(d)
    py, pz2 = _likelihood_moments(link_function(g)(z), z, w, y, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pz2 / py


def optimal_threshold(link, delta=0.0) -> float:
    r"""Weak-recovery threshold with the optimal preprocessing, :math:`1/E[(f(Y)-1)^2]`.

    ``inf`` (with no division by zero) when :math:`f \equiv 1`, e.g. for an odd link
    whose label carries no :math:`z^2` information. Noiseless labels: the atoms and strictly
    monotone pieces of :class:`~numerics.conditional_law.NoiselessLaw` (polynomials, relu, abs,
    sign, clip, tanh, ...).

    For a link that is not even (He1, He3, relu, tanh, ...) this is the threshold of the
    *spectral* method, which looks at z^2 only: the Bayes-optimal weak-recovery threshold is
    0 there, since :math:`E[z\mid y] \ne 0` (``numerics.bayes.bayes_thresholds`` reports it so).

    >>> round(optimal_threshold("relu(z)"), 12), optimal_threshold("sign(z)")   # atom at y = 0 of mass 1/2; f = 1
    (1.0, inf)
    """
    g, d = _link(link), _delta(delta)
    if d == 0:
        _check_nonconstant(g)
        var = NoiselessLaw(g).expect_he2_squared()
    else:
        z, w, s = _noisy_rule(d)
        gz = link_function(g)(z)
        ys = np.arange(gz.min() - 9 * s, gz.max() + 9 * s, s / 4)
        py, pz2 = _likelihood_moments(gz, z, w, ys, d)
        keep = py > 1e-300
        f = pz2[keep] / py[keep]
        var = float(np.trapezoid(py[keep] * (f - 1) ** 2, ys[keep]))
    return float("inf") if var <= 1e-15 else float(1.0 / var)


def optimal_preprocessing(link, delta=0.0):
    r"""The overlap-optimal preprocessing :math:`T(y) = 1 - 1/E[z^2\mid y]` as a numpy callable.

    >>> T = optimal_preprocessing("z**2")
    >>> np.round(T(np.array([0.5, 1.0, 4.0])), 12)    # f(y) = y, so T = 1 - 1/y
    array([-1.  ,  0.  ,  0.75])
    """
    g, d = _link(link), _delta(delta)

    def T(y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - 1.0 / conditional_second_moment(g, y, d)

    return T
