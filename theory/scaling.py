r"""Closed-form thresholds, overlaps and error laws of Model S (docs/theory.md §2.3-2.4).

Weak-signal laws (large k, large alpha):

.. math::
    \alpha_k \simeq \kappa_T Z\, k^{2\gamma} / \mu_2(g_k)^2, \qquad
    q_k \simeq (1 - \alpha_k/\alpha)_+, \qquad
    \mathrm{MSE}_\gamma \simeq \frac{C_\gamma}{Z}\Big(\frac{\alpha}{\kappa}\Big)^{-(1-\frac{1}{2\gamma})},

with :math:`C_\gamma = 2 - \frac{1}{2\gamma+1} + \frac{1}{2\gamma-1}` and
:math:`\kappa = \kappa_T Z/\mu_2^2`. Z is :math:`Z_m` for normalized weights, 1 otherwise.

Examples
--------
>>> import sympy as sp
>>> mse_exponent(sp.Rational(13, 10))
8/13
>>> sp.latex(mse_exponent(sp.Symbol("gamma", positive=True)))
'1 - \\frac{1}{2 \\gamma}'
>>> c_gamma(1)
8/3
"""
from __future__ import annotations

import warnings

import sympy as sp

from .hermite import hermite_moments
from .model import HierarchicalModel, as_exact, require
from .symbols import alpha, kappa_T

__all__ = [
    "readout_excess_risk",
    "NoSpectralTransition",
    "mse_exponent",
    "c_gamma",
    "mu2",
    "critical_alpha_law",
    "overlap_law",
    "learned_directions",
    "mse_law",
    "mse_staircase",
]


class NoSpectralTransition(UserWarning):
    """A direction whose link has mu_2 = 0: no spectral transition at n ~ d."""


def _gamma(gamma, need_window=True):
    g = as_exact(gamma, "gamma")
    if g == sp.oo:
        raise ValueError("gamma: must be finite")
    if need_window and not g.free_symbols and g <= sp.Rational(1, 2):
        raise ValueError(
            f"gamma: the power-law window needs gamma > 1/2 (got {g}); for gamma <= 1/2 "
            "Z_m grows like m^(1 - 2 gamma) and there is no power-law decay"
        )
    return g


def mse_exponent(gamma):
    r"""Scaling exponent :math:`1 - 1/(2\gamma)` of the error in alpha (and in n).

    Exact for exact input; a sympy expression for a symbol.

    >>> mse_exponent("13/10"), mse_exponent(1)
    (8/13, 1/2)
    """
    g = _gamma(gamma)
    return 1 - 1 / (2 * g)


def c_gamma(gamma):
    r""":math:`C_\gamma = 2 - 1/(2\gamma+1) + 1/(2\gamma-1)`, prefactor of the power-law window.

    It is the continuum limit of :math:`\sum_k k^{-2\gamma}(1-q_k^2)` over
    learned (:math:`2u-u^2`, :math:`u=(k/K)^{2\gamma}`) and unlearned (1) directions,
    in units of :math:`K^{1-2\gamma}`.

    >>> c_gamma("13/10")
    169/72
    """
    g = _gamma(gamma)
    return sp.nsimplify(2 - 1 / (2 * g + 1) + 1 / (2 * g - 1)) if not g.free_symbols else \
        2 - 1 / (2 * g + 1) + 1 / (2 * g - 1)


def mu2(model: HierarchicalModel, k: int = 1):
    r""":math:`\mu_2(g_k)`, exact where possible."""
    require(model, HierarchicalModel)
    return hermite_moments(model.link_of(k), 2)[2]


def _common_mu2(model):
    values = {sp.simplify(mu2(model, k)) for k in range(1, len(model.links) + 1)}
    if len(values) != 1:
        raise ValueError("link: the asymptotic error law needs a common mu_2 for every direction; "
                         "use mse_staircase or numerics.predict for mixed links")
    return values.pop()


def _check_direction(model, k):
    if isinstance(k, sp.Basic) and k.free_symbols:
        if not model.shared_link:
            raise ValueError("k: a symbolic direction needs one shared link")
        return k
    if isinstance(k, bool) or not isinstance(k, (int, sp.Integer)) or k < 1:
        raise ValueError(f"k: must be an integer >= 1, got {k!r}")
    if model.m != sp.oo and k > model.m:
        raise ValueError(f"k: must lie in [1, {model.m}], got {k}")
    return sp.Integer(k)


def critical_alpha_law(model: HierarchicalModel, k):
    r"""Weak-signal law :math:`\alpha_k \simeq \kappa_T Z k^{2\gamma}/\mu_2(g_k)^2`.

    ``kappa_T`` is the symbol :data:`theory.symbols.kappa_T`; substitute the value of
    ``numerics.kappa_T(model)``. A link with :math:`\mu_2 = 0` has no spectral
    transition at n ~ d: the result is ``oo`` and a :class:`NoSpectralTransition`
    warning says why.

    >>> from theory.symbols import kappa_T
    >>> m = HierarchicalModel(gamma=1, m=2, link="He2/2")  # mu_2 = 1, Z_2 = 5/4
    >>> critical_alpha_law(m, 2)
    5*kappa_T
    >>> critical_alpha_law(m, 2).subs(kappa_T, 2)
    10
    """
    require(model, HierarchicalModel)
    k = _check_direction(model, k)
    idx = 1 if k.free_symbols else int(k)
    mu = mu2(model, idx)
    if mu == 0:
        warnings.warn(f"direction {k}: mu_2(g_k) = 0, so there is no spectral transition at n ~ d "
                      "(the threshold is infinite at this scale)", NoSpectralTransition, stacklevel=2)
        return sp.oo
    return kappa_T * model.weight_normalization * k ** (2 * model.gamma) / mu**2


def overlap_law(model: HierarchicalModel, k):
    r""":math:`q_k \simeq (1 - \alpha_k/\alpha)_+` as ``Max(0, ...)`` in :data:`alpha`.

    >>> overlap_law(HierarchicalModel(gamma=1, m=2, link="He2/2"), 1)  # alpha_1 = kappa_T Z_2
    Max(0, 1 - 5*kappa_T/(4*alpha))
    """
    require(model, HierarchicalModel)
    ak = critical_alpha_law(model, k)
    if ak == sp.oo:
        return sp.Integer(0)
    return sp.Max(0, 1 - ak / alpha)


def _kappa(model):
    return kappa_T * model.weight_normalization / _common_mu2(model) ** 2


def learned_directions(model: HierarchicalModel):
    r""":math:`k_\star(\alpha) = \min(m, \lfloor(\alpha/\kappa)^{1/(2\gamma)}\rfloor)`.

    >>> # kappa = Z_5 = 1.4636: floor(sqrt(16 / 1.4636)) = floor(3.31) = 3
    >>> from theory.symbols import alpha, kappa_T
    >>> learned_directions(HierarchicalModel(gamma=1, m=5, link="He2/2")).subs({alpha: 16, kappa_T: 1})
    3
    """
    require(model, HierarchicalModel)
    expr = sp.floor((alpha / _kappa(model)) ** (1 / (2 * model.gamma)))
    return expr if model.m == sp.oo else sp.Min(model.m, expr)


def mse_law(model: HierarchicalModel):
    r"""The piecewise asymptotic error law of docs/theory.md §2.4 (optimal-shrinkage form).

    Plateau :math:`\sum a_k^2` below :math:`\alpha_1 = \kappa`, the power-law window
    :math:`(C_\gamma/Z)(\alpha/\kappa)^{-(1-1/(2\gamma))}`, and beyond
    :math:`\alpha_m = \kappa m^{2\gamma}` the tail :math:`2m\kappa/(Z\alpha)`.

    >>> # kappa = 1, alpha_m = 16, window value C_1 * 4^(-1/2) = (8/3)/2
    >>> law = mse_law(HierarchicalModel(gamma=1, m=4, link="He2/2", normalize=False))
    >>> from theory.symbols import alpha, kappa_T
    >>> law.subs({kappa_T: 1, alpha: 4})
    4/3
    """
    require(model, HierarchicalModel)
    g = _gamma(model.gamma)
    kappa = _kappa(model)
    Z = model.weight_normalization
    plateau = sp.Integer(1) if model.normalize else model.Z_m
    window = c_gamma(g) / Z * (alpha / kappa) ** (-(1 - 1 / (2 * g)))
    if model.m == sp.oo:
        return sp.Piecewise((plateau, alpha <= kappa), (window, True))
    tail = 2 * model.m * kappa / (Z * alpha)
    return sp.Piecewise((plateau, alpha <= kappa), (window, alpha <= kappa * model.m ** (2 * g)), (tail, True))


def mse_staircase(model: HierarchicalModel, form: str = "optimal"):
    r"""The finite-m sum :math:`\sum_k a_k^2 (1 - q_k^2)` (``form="optimal"``) or
    :math:`2\sum_k a_k^2(1-q_k)` (``form="plugin"``) with :math:`q_k = (1-\alpha_k/\alpha)_+`.

    >>> # alpha_1 = 1, q_1 = 1/2 at alpha = 2, so 1 - q^2 = 3/4
    >>> from theory.symbols import alpha, kappa_T
    >>> mse_staircase(HierarchicalModel(gamma=1, m=1, link="He2/2")).subs({kappa_T: 1, alpha: 2})
    3/4
    """
    require(model, HierarchicalModel)
    if model.m == sp.oo:
        raise ValueError("m: mse_staircase needs a finite m")
    if form not in ("optimal", "plugin"):
        raise ValueError(f"form: must be 'optimal' or 'plugin', got {form!r}")
    terms = []
    for k in range(1, model.m + 1):
        q = overlap_law(model, k)
        a2 = model.weight(k) ** 2
        terms.append(a2 * (1 - q**2) if form == "optimal" else 2 * a2 * (1 - q))
    return sp.Add(*terms)


def readout_excess_risk(model: HierarchicalModel, q, jmax: int | None = None):
    r"""Excess risk of the best readout from :math:`\hat z_k = \sqrt{q_k} z_k + \sqrt{1-q_k}\,\xi_k`
    (docs/theory.md §2.4, two-stage network):

    .. math:: R = \sum_k a_k^2 \sum_{j\ge 1} \frac{\mu_j(g_k)^2}{j!}\,(1 - q_k^j)

    (by Mehler's formula :math:`E[He_j(z)|\hat z] = q^{j/2} He_j(\hat z)`; the sum starts at
    j = 1, and the mean j = 0 costs nothing). ``q`` is a sequence of m overlaps (numbers or
    sympy expressions); ``jmax`` defaults to the link's degree for polynomial links and 12
    otherwise. Exact where the inputs are.

    >>> from theory import HierarchicalModel
    >>> readout_excess_risk(HierarchicalModel(m=1), [0])       # E[g^2] = 49/96 for He2/2 + He4/48
    49/96
    >>> readout_excess_risk(HierarchicalModel(m=1), [1])
    0
    """
    require(model, HierarchicalModel)
    from .bayes import residual_variance

    if model.m == sp.oo:
        raise ValueError("m: readout_excess_risk needs a finite m")
    q = list(q)
    if len(q) != model.m:
        raise ValueError(f"q: expected {model.m} overlaps, got {len(q)}")
    total = sp.Integer(0)
    for k in range(1, model.m + 1):
        total += model.weight(k) ** 2 * residual_variance(model.link_of(k), q[k - 1], jmax)
    return sp.simplify(total) if model.m <= 3 else total
