r"""Closed forms of Model C, Gaussian-equivalent layer 1 (docs/theory.md §3; g_star = id).

.. math::
    \theta_i = \frac{b_i}{\sqrt{2\sum_j b_j^2}},\qquad
    \sigma^2 = \frac{D}{4n},\qquad
    n_i^* = \frac{D}{4\theta_i^2} = \frac{D}{2}\Big(\sum_j b_j^2\Big) i^{2\gamma},\qquad
    \rho_i^2 \simeq (1 - n_i^*/n)_+ .

Examples
--------
>>> from theory.model import CompositionalModel
>>> m = CompositionalModel(d=16, q=2, eps=0.5, gamma=1)   # D = 136, d1 = 4
>>> thresholds_n(m)[0]         # D * (1 + 1/4 + 1/9 + 1/16) / 2 = 136 * 205/288
3485/36
>>> separation(m)
{'layerwise': 3, 'kernel': 4}
"""
from __future__ import annotations

import numbers

import numpy as np
import sympy as sp

from .model import CompositionalModel, finite_array, require
from .parsing import Z
from .symbols import n as n_sym

__all__ = [
    "label_scale",
    "spike_strengths",
    "noise_variance",
    "thresholds_n",
    "threshold_exponents",
    "staircase",
    "refined_overlap",
    "layer1_overlaps",
    "nmse_law",
    "separation",
]

_HALF = sp.Rational(1, 2)


def _require_identity(model):
    if not isinstance(model, CompositionalModel):
        raise TypeError(f"model: expected a CompositionalModel, got {type(model).__name__}")
    if not model.is_identity_link:
        raise ValueError("g_star: the layer-1 closed forms of docs/theory.md §3 hold for g_star = z (identity) only")


def _sum_b2(model):
    return sp.Add(*[sp.Integer(i) ** (-2 * model.gamma) for i in range(1, model.d1 + 1)])


def label_scale(model: CompositionalModel):
    r"""Standard deviation :math:`\sqrt{2\sum_j b_j^2}` of :math:`s = \sum_j b_j He_2(h_j)` for Gaussian
    h (the GE model), the scale that standardises y for g_* = identity and sets the spike
    strengths :math:`\theta_i = b_i/\text{label\_scale}` (exact).

    >>> label_scale(CompositionalModel(d=16, gamma=1))    # d1 = 4: sqrt(2 (1 + 1/4 + 1/9 + 1/16))
    sqrt(410)/12
    """
    return sp.sqrt(2 * _sum_b2(model))


def spike_strengths(model: CompositionalModel) -> list:
    r""":math:`|\theta_i| = i^{-\gamma}/\sqrt{2\sum_j j^{-2\gamma}}`, i = 1..d1 (exact).

    The signs of :math:`\theta_i` are those of :math:`b_i`. :math:`\sum\theta_i^2 = 1/2`.

    >>> sum(t**2 for t in spike_strengths(CompositionalModel(d=16, gamma=1)))
    1/2
    """
    _require_identity(model)
    s = label_scale(model)
    return [sp.Integer(i) ** (-model.gamma) / s for i in range(1, model.d1 + 1)]


def noise_variance(model: CompositionalModel, n):
    r""":math:`\sigma^2 = D/(4n)`, the squared semicircle half-radius of the layer-1 noise."""
    require(model, CompositionalModel)
    return sp.Integer(model.D) / (4 * _samples(n))


def _samples(n):
    if isinstance(n, sp.Basic) and n.free_symbols:
        return n
    if isinstance(n, bool) or not isinstance(n, (numbers.Real, sp.Number)) or not n > 0:
        raise ValueError(f"n: the number of samples must be a positive number, got {n!r}")
    return sp.Integer(n) if isinstance(n, numbers.Integral) else sp.nsimplify(n)


def thresholds_n(model: CompositionalModel) -> list:
    r"""Sample thresholds :math:`n_i^* = D/(4\theta_i^2)`, i = 1..d1 (exact).

    >>> # D = 10, d1 = 2, sum b^2 = 5/4: n_1* = 10 * 5/4 / 2, n_2* = 4 n_1*
    >>> thresholds_n(CompositionalModel(d=4, eps=0.5, gamma=1))
    [25/4, 25]
    """
    return [sp.Integer(model.D) / (4 * t**2) for t in spike_strengths(model)]


def threshold_exponents(model: CompositionalModel) -> list:
    r"""Leading-order exponents :math:`\kappa_i` with :math:`n_i^* \approx d^{\kappa_i}`.

    .. math::
        \kappa_i = q + 2\gamma\log_d i \ (\gamma \ge 1/2),\quad
        q + (1-2\gamma)\epsilon + 2\gamma\log_d i \ (0 < \gamma < 1/2),\quad
        q + \epsilon \ (\gamma = 0).

    >>> threshold_exponents(CompositionalModel(d=100, eps=0.5, gamma=1))[:2]
    [2, 2*log(2)/log(100) + 2]
    """
    require(model, CompositionalModel)
    d, q, g, eps = sp.Integer(model.d), model.q, model.gamma, model.eps
    if g == 0:
        return [q + eps] * model.d1
    base = q if g >= _HALF else q + (1 - 2 * g) * eps
    return [base + 2 * g * sp.log(i) / sp.log(d) if i > 1 else sp.nsimplify(base) for i in range(1, model.d1 + 1)]


def staircase(model: CompositionalModel, n):
    r"""Number of features past their threshold,
    :math:`m_{th}(n) = \mathrm{clip}(\lfloor d^{(\kappa_n-\kappa_1)/(2\gamma)} + 10^{-12}\rfloor, 0, d_1)`,
    :math:`\kappa_n = \log n/\log d`.

    ``n`` may be a number (an exact Integer is returned) or an array (a numpy int
    array; the 1e-12 guard keeps :math:`d^{\log_d i}` from flooring to i - 1).
    For gamma = 0 every feature has the same exponent: the count jumps from 0 to d1.

    >>> m = CompositionalModel(d=100, eps=0.5, gamma=1)
    >>> staircase(m, 100**2 * 9), staircase(m, 100**2 * 9 - 1)
    (3, 2)
    """
    require(model, CompositionalModel)
    d, g, d1 = model.d, model.gamma, model.d1
    k1 = threshold_exponents(model)[0]
    if isinstance(n, np.ndarray) or isinstance(n, (list, tuple)):
        nn = np.asarray(n, dtype=float)
        if np.any(~(nn > 0)):
            raise ValueError("n: every sample size must be positive")
        kn = np.log(nn) / np.log(d)
        if g == 0:
            return np.where(kn >= float(k1) - 1e-12, d1, 0)
        count = np.floor(float(d) ** ((kn - float(k1)) / (2 * float(g))) + 1e-12)
        return np.clip(count, 0, d1).astype(int)
    nn = _samples(n)
    if g == 0:
        return sp.Integer(d1) if sp.log(nn) / sp.log(d) >= k1 else sp.Integer(0)
    # exact: d^((log_d n - k1)/(2 gamma)) = (n d^(-k1))^(1/(2 gamma))
    value = (nn * sp.Integer(d) ** (-k1)) ** (1 / (2 * g))
    return sp.Min(d1, sp.Max(0, sp.floor(sp.nsimplify(value) if not value.free_symbols else value)))


def refined_overlap(theta, sigma2):
    r"""Refined layer-1 overlap :math:`\rho^2` of a spike :math:`\theta` in noise :math:`\sigma^2`.

    With :math:`\kappa = 1 + 8\theta^2`,
    :math:`g = 2/(|\theta| + \sqrt{\theta^2 + 4(\kappa-1)\sigma^2})`: an outlier iff
    :math:`\sigma g < 1`, and then
    :math:`\rho^2 = (1 - \sigma^2 g^2)/(1 + (\kappa-1)\sigma^2 g^2)`; otherwise 0.
    Works on sympy numbers and on numpy arrays (broadcast).

    >>> float(refined_overlap(0.5, 0.0))
    1.0
    >>> float(refined_overlap(0.1, 1.0))
    0.0
    """
    if isinstance(theta, sp.Basic) or isinstance(sigma2, sp.Basic):
        th, s2 = sp.Abs(sp.nsimplify(theta)), sp.nsimplify(sigma2)
        kap = 1 + 8 * th**2
        g = 2 / (th + sp.sqrt(th**2 + 4 * (kap - 1) * s2))
        rho2 = (1 - s2 * g**2) / (1 + (kap - 1) * s2 * g**2)
        return sp.Piecewise((rho2, sp.sqrt(s2) * g < 1), (0, True))
    th = np.abs(finite_array(theta, "theta"))
    s2 = finite_array(sigma2, "sigma2")
    if np.any(s2 < 0):
        raise ValueError("sigma2: the noise variance must be >= 0")
    kap = 1 + 8 * th**2
    with np.errstate(divide="ignore", invalid="ignore"):
        g = 2 / (th + np.sqrt(th**2 + 4 * (kap - 1) * s2))
        rho2 = (1 - s2 * g**2) / (1 + (kap - 1) * s2 * g**2)
    return np.where((np.sqrt(s2) * g < 1) & (th > 0), rho2, 0.0)


def layer1_overlaps(model: CompositionalModel, n, refined: bool = True) -> np.ndarray:
    r"""Predicted :math:`\rho_i^2`, i = 1..d1, at n samples (float array).

    ``refined=False`` gives the leading form :math:`(1 - n_i^*/n)_+`.
    """
    nn = float(_samples(n))
    theta = np.array([float(t) for t in spike_strengths(model)])
    if refined:
        return refined_overlap(theta, model.D / (4 * nn))
    return np.clip(1 - np.array([float(t) for t in thresholds_n(model)]) / nn, 0, None)


def nmse_law(model: CompositionalModel):
    r""":math:`\mathrm{NMSE}(n) = \sum_i w_i(1-\rho_i^4)/\sum_i w_i`,
    :math:`w_i = i^{-2\gamma}`, :math:`\rho_i^2 = (1 - n_i^*/n)_+`, in the symbol ``n``.

    >>> # rho^2 = 15/16, 3/4 at n = 100: (31/256 + (1/4)(7/16)) / (5/4)
    >>> nmse_law(CompositionalModel(d=4, eps=0.5, gamma=1)).subs(n_sym, 100)
    59/320
    """
    require(model, CompositionalModel)
    w = [sp.Integer(i) ** (-2 * model.gamma) for i in range(1, model.d1 + 1)]
    rho2 = [sp.Max(0, 1 - t / n_sym) for t in thresholds_n(model)]
    return sp.Add(*[wi * (1 - r**2) for wi, r in zip(w, rho2)]) / sp.Add(*w)


def separation(model: CompositionalModel) -> dict:
    r"""Sample-complexity exponents (:math:`n \sim d^{\kappa}`) of two learners.

    ``layerwise``: :math:`q + \max(1, 2\gamma)\,\epsilon` (all d1 features recovered;
    :math:`q+\epsilon` for :math:`\gamma\le 1/2`, :math:`q + 2\gamma\epsilon` above).
    ``kernel``: :math:`2q\deg g_*` (a kernel method on x must fit the full
    polynomial; ``oo`` for a non-polynomial g_star).
    """
    if not isinstance(model, CompositionalModel):
        raise TypeError(f"model: expected a CompositionalModel, got {type(model).__name__}")
    q, g, eps = model.q, model.gamma, model.eps
    layer = q + sp.Max(1, 2 * g) * eps
    if model.g.is_polynomial(Z):
        kernel = 2 * q * sp.Poly(model.g, Z).degree()
    else:
        kernel = sp.oo
    return {"layerwise": sp.simplify(layer), "kernel": sp.Integer(kernel) if kernel != sp.oo else kernel}
