r"""Closed forms of the Bayes-optimal side of Model S (docs/bayes.md, section 6).

**Residual variance.** A direction known with overlap q leaves, by Mehler's formula
(:math:`E[He_l(z)\mid\omega] = q^{l/2} He_l(\omega/\sqrt q)`),

.. math::  r_g(q) = E\big[\mathrm{Var}(g(z)\mid\omega)\big] = \sum_{l\ge1}\frac{\mu_l(g)^2}{l!}(1 - q^l)

of unexplained label variance (:math:`r_g(0) = \mathrm{Var}\,g`, :math:`r_g(1) = 0`). The same sum
is the two-stage network's excess risk (docs/theory.md, section 2.4).

**Weak-signal thresholds.** For a weak direction k every other term acts on y as Gaussian
noise of variance

.. math::  \sigma_k^2 = \Delta + \sum_{j\ne k} a_j^2\, r_{g_j}(q_j),

and the linear stability of :math:`q_k = 0` (docs/bayes.md, section 5) becomes
:math:`\alpha\, a_k^2\mu_2(g_k)^2/\sigma_k^2 > 1`:

.. math::  \alpha_k^{BO} \simeq \frac{\sigma_k^2}{a_k^2\,\mu_2(g_k)^2}.

In the same picture a direction j of signal-to-noise ratio :math:`s_j = \alpha a_j^2/\sigma^2`
solves the scalar state evolution :math:`\hat q = s\,\phi_g(q)`, :math:`q = \hat q/(1+\hat q)`, with
:math:`\phi_g(q) = E_\omega[(E[g'(z)\mid\omega])^2] = \sum_{l\ge0}\mu_{l+1}^2 q^l/l!`; at the threshold
of k, :math:`s_j = (a_j/a_k)^2/\mu_2(g_k)^2` does not depend on :math:`\sigma`. This closes the
law: the overlaps of the learned directions are fixed numbers (``numerics.bayes`` solves them).

* :math:`\Delta > 0`, large k: :math:`\sigma_k^2 \to \Delta`, so
  :math:`\alpha_k^{BO} \simeq \Delta Z k^{2\gamma}/\mu_2^2`, the :math:`k^{2\gamma}` law of the spectral
  threshold :math:`\kappa_T Z k^{2\gamma}/\mu_2^2`; their ratio tends to :math:`\kappa_T/\Delta`, and the
  error exponent is the same, :math:`1 - 1/(2\gamma)`.
* :math:`\Delta = 0`, :math:`m = \infty`: with :math:`x = j/k`, both the unlearned tail and the
  imperfectly learned directions contribute :math:`O(k^{1-2\gamma})`:

  .. math::  \sigma_k^2 \simeq \frac{k^{1-2\gamma}}{Z}\Big(\frac{\mathrm{Var}\,g}{2\gamma-1} + I_g\Big),\qquad
             I_g = \int_0^1 x^{-2\gamma}\, r_g\big(Q_g(x^{-2\gamma}/\mu_2^2)\big)\,dx,

  so :math:`\alpha_k^{BO} \simeq C_g k` with :math:`C_g = (\mathrm{Var}\,g/(2\gamma-1) + I_g)/\mu_2^2`:
  thresholds grow linearly in k, :math:`K(\alpha) \simeq \alpha/C_g` directions are learned, and the
  error :math:`\sum_j a_j^2(1 - q_j^2) = O(K^{1-2\gamma})` decays as :math:`\alpha^{-(2\gamma-1)}`, faster
  than the spectral :math:`\alpha^{-(1-1/(2\gamma))}` for every :math:`\gamma > 1/2`.

>>> import sympy as sp
>>> from theory import HierarchicalModel
>>> bayes_mse_exponent("13/10", noiseless=True), bayes_mse_exponent("13/10", noiseless=False)
(8/5, 8/13)
>>> residual_variance("He2/2 + He4/48", 0)          # Var g = 1/2 + (1/2)^2/24
49/96
>>> bayes_threshold_law_noisy(HierarchicalModel(gamma=1, m=2, link="He2/2", delta="1/10"), 2)   # Delta Z_2 k^2 / mu_2^2
1/2
"""
from __future__ import annotations

import sympy as sp

from .hermite import hermite_moments
from .links import as_link
from .model import HierarchicalModel, as_exact, require
from .parsing import Z
from .symbols import kappa_T

__all__ = ["residual_variance", "slope_response", "effective_noise", "bayes_threshold_law",
           "bayes_threshold_law_noisy", "noiseless_threshold_slope", "bayes_mse_exponent",
           "spectral_bayes_ratio", "hermite_degree"]

#: the constant I_g of the noiseless law (computed by numerics.bayes)
I_g = sp.Symbol("I_g", nonnegative=True)


def hermite_degree(link, jmax: int | None = None) -> int:
    """Highest Hermite degree to sum: the degree of a polynomial link, else ``jmax`` (default 12)."""
    g = as_link(link)
    if jmax is not None:
        return int(jmax)
    return int(sp.Poly(g, Z).degree()) if g.is_polynomial(Z) else 12


def residual_variance(link, q, jmax: int | None = None):
    r""":math:`r_g(q) = \sum_{l\ge1}\mu_l^2(1 - q^l)/l!`, the label variance a direction known with
    overlap q leaves unexplained (exact for polynomial links; other links are truncated at
    ``jmax``, default 12). ``q`` may be a number or a sympy expression.

    >>> residual_variance("z**2", 1), residual_variance("z**2", sp.Symbol("q"))
    (0, 2 - 2*q**2)
    """
    g = as_link(link)
    J = hermite_degree(g, jmax)
    mus = hermite_moments(g, J)
    qv = sp.nsimplify(q) if isinstance(q, (int, float)) else q
    if getattr(qv, "is_number", False) and not (0 <= qv <= 1):
        raise ValueError(f"q: an overlap must lie in [0, 1], got {q}")
    return sp.expand(sum(mus[l] ** 2 / sp.factorial(l) * (1 - qv**l) for l in range(1, J + 1)))


def slope_response(link, q, jmax: int | None = None):
    r""":math:`\phi_g(q) = E_\omega[(E[g'(z)\mid\omega])^2] = \sum_{l\ge0}\mu_{l+1}^2 q^l/l!`: the Fisher
    information per unit signal-to-noise ratio of a weak direction known with overlap q.

    >>> slope_response("z**2", 0), slope_response("z**2", 1)    # E[g']^2 = 0, E[g'^2] = E[4 z^2] = 4
    (0, 4)
    """
    g = as_link(link)
    J = hermite_degree(g, jmax)
    mus = hermite_moments(g, J + 1)
    qv = sp.nsimplify(q) if isinstance(q, (int, float)) else q
    return sp.expand(sum(mus[l + 1] ** 2 * qv**l / sp.factorial(l) for l in range(0, J)))


def _direction(model, k):
    if isinstance(k, bool) or not isinstance(k, (int, sp.Integer)) or k < 1 or (model.m != sp.oo and k > model.m):
        raise ValueError(f"k: must be an integer direction in [1, {model.m}], got {k!r}")
    return int(k)


def effective_noise(model: HierarchicalModel, k: int, q=None, jmax: int | None = None):
    r""":math:`\sigma_k^2 = \Delta + \sum_{j\ne k} a_j^2 r_{g_j}(q_j)` (finite m). ``q`` is a sequence of
    m overlaps (entry k is ignored); by default the directions j < k carry symbols
    :math:`Q_j` and j > k are unlearned (q_j = 0), the sequential picture.

    >>> m = HierarchicalModel(gamma=1, m=2, link="He2/2", normalize=False, delta="1/10")
    >>> effective_noise(m, 2)                     # Delta + a_1^2 (1/2)(1 - Q_1^2)
    3/5 - Q_1**2/2
    """
    require(model, HierarchicalModel)
    if model.m == sp.oo:
        raise ValueError("m: effective_noise needs a finite m (the tail of m = inf is in noiseless_threshold_slope)")
    k = _direction(model, k)
    if q is None:
        q = [sp.Symbol(f"Q_{j}", nonnegative=True) if j < k else 0 for j in range(1, model.m + 1)]
    q = list(q)
    if len(q) != model.m:
        raise ValueError(f"q: expected {model.m} overlaps, got {len(q)}")
    total = model.delta
    for j in range(1, model.m + 1):
        if j != k:
            total += model.weight(j) ** 2 * residual_variance(model.link_of(j), q[j - 1], jmax)
    return sp.expand(total)


def _mu2_sq(model, k):
    mu = hermite_moments(model.link_of(k), 2)[2]
    if mu == 0:
        raise ValueError(f"link: mu_2(g_{k}) = 0, so q_{k} = 0 is stable at every alpha in the weak-signal picture "
                         "(no threshold at n ~ d)")
    return mu**2


def bayes_threshold_law(model: HierarchicalModel, k: int, q=None, jmax: int | None = None):
    r"""Weak-signal law :math:`\alpha_k^{BO} \simeq \sigma_k^2/(a_k^2\mu_2(g_k)^2)` with
    :math:`\sigma_k^2` from :func:`effective_noise` (the same ``q`` convention).

    >>> m = HierarchicalModel(gamma=1, m=2, link="He2/2", normalize=False, delta="1/10")
    >>> bayes_threshold_law(m, 1)                 # (Delta + a_2^2 Var g) / (a_1^2 mu_2^2) = 1/10 + 1/8
    9/40
    """
    require(model, HierarchicalModel)
    k = _direction(model, k)
    return sp.simplify(effective_noise(model, k, q, jmax) / (model.weight(k) ** 2 * _mu2_sq(model, k)))


def bayes_threshold_law_noisy(model: HierarchicalModel, k):
    r""":math:`\Delta > 0`, large k: :math:`\alpha_k^{BO} \simeq \Delta Z k^{2\gamma}/\mu_2^2`
    (``k`` may be a symbol)."""
    require(model, HierarchicalModel)
    if model.delta == 0:
        raise ValueError("delta: the noisy law needs Delta > 0; for Delta = 0 use noiseless_threshold_slope")
    kk = k if isinstance(k, sp.Basic) and k.free_symbols else sp.Integer(_direction(model, k))
    return model.delta * model.weight_normalization * kk ** (2 * model.gamma) / _mu2_sq(model, 1 if kk.free_symbols else int(kk))


def noiseless_threshold_slope(model: HierarchicalModel, integral=I_g):
    r""":math:`C_g = (\mathrm{Var}\,g/(2\gamma-1) + I_g)/\mu_2^2`, the slope of :math:`\alpha_k^{BO} \simeq C_g k`
    for :math:`\Delta = 0`, :math:`m = \infty` and one shared link. ``integral`` is :math:`I_g`
    (a symbol by default; ``numerics.bayes.noiseless_integral`` evaluates it).

    >>> noiseless_threshold_slope(HierarchicalModel(gamma=1, m="inf", link="He2/2"))   # Var g = 1/2, mu_2 = 1
    I_g + 1/2
    """
    require(model, HierarchicalModel)
    if not model.shared_link:
        raise ValueError("link: the noiseless slope needs one shared link")
    g = as_exact(model.gamma, "gamma")
    if not g.free_symbols and g <= sp.Rational(1, 2):
        raise ValueError(f"gamma: the tail sum needs gamma > 1/2, got {g}")
    link = model.link_of(1)
    return sp.simplify((residual_variance(link, 0) / (2 * g - 1) + integral) / _mu2_sq(model, 1))


def bayes_mse_exponent(gamma, noiseless: bool):
    r"""Exponent of the Bayes-optimal error in alpha: :math:`1 - 1/(2\gamma)` with noise (the spectral
    one), :math:`2\gamma - 1` without (derived in the module docstring).

    >>> bayes_mse_exponent(sp.Symbol("gamma", positive=True), noiseless=True)
    2*gamma - 1
    """
    if not isinstance(noiseless, bool):
        raise TypeError(f"noiseless: expected True or False, got {noiseless!r}")
    g = as_exact(gamma, "gamma")
    if not g.free_symbols and g <= sp.Rational(1, 2):
        raise ValueError(f"gamma: the power-law window needs gamma > 1/2, got {g}")
    return 2 * g - 1 if noiseless else 1 - 1 / (2 * g)


def spectral_bayes_ratio(model: HierarchicalModel):
    r"""Large-k ratio of the spectral to the Bayes-optimal threshold, :math:`\kappa_T/\Delta`
    (``kappa_T`` is :data:`theory.symbols.kappa_T`; substitute ``numerics.kappa_T(model)``).

    >>> spectral_bayes_ratio(HierarchicalModel(delta="1/10"))
    10*kappa_T
    """
    require(model, HierarchicalModel)
    if model.delta == 0:
        raise ValueError("delta: with Delta = 0 the ratio grows like k^(2 gamma - 1) (no constant limit)")
    return kappa_T / model.delta
