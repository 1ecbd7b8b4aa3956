r"""The weak tail of Model S's label at large m (docs/numerics.md §"Large m").

Split the label into the K strongest directions and the tail,

.. math::  Y = \sum_{k\le K} a_k g_k(z_k) + S_K + \sqrt\Delta\,\xi, \qquad S_K = \sum_{K<k\le m} a_k g_k(z_k).

**The tail as one component.** :math:`S_K` is a sum of many small independent terms. Its cumulants
are exact power sums, :math:`\kappa_n(S_K) = \sum_{k>K} a_k^n \kappa_n(g_k)` (Hurwitz zeta values at
m = infinity), and its law is replaced by the second-order Edgeworth density

.. math::  f(s) = \frac1\sigma\varphi(x)\Big[1 + \frac{\lambda_3}{6}He_3(x) + \frac{\lambda_4}{24}He_4(x)
           + \frac{\lambda_3^2}{72}He_6(x)\Big],\qquad x = \frac{s-\mu}{\sigma},\ \lambda_n = \kappa_n/\sigma^n,

with :math:`\mu = \kappa_1`, :math:`\sigma^2 = \kappa_2 + \Delta` (the noise joins it). The terms left
out are of third order: :math:`\lambda_5/120`, :math:`\lambda_3\lambda_4/144`, :math:`\lambda_3^3/1296`.
An expectation :math:`E[f(Y)]` feels them through :math:`f` smoothed by the rest of the label, whose
scale is the label's standard deviation :math:`s_Y`; the bound reported is

.. math::  \epsilon_K = \frac{|\kappa_5|}{120\,s_Y^5} + \frac{|\kappa_3\kappa_4|}{144\,s_Y^7} + \frac{|\kappa_3|^3}{1296\,s_Y^9}

(the tail's cumulants), and K is the smallest number of exact directions with
:math:`\epsilon_K \le` ``closure_tol``. It decays like :math:`K^{1-5\gamma}`.

**Tail directions from one per-link table.** For a tail direction with weight a and link g,
:math:`E[(z_k^2-1) f(Y)] = \langle p_{Y\setminus k} \star w_a, f\rangle` with :math:`w_a` the law of
:math:`a g(z)` weighted by :math:`z^2 - 1` and :math:`Y\setminus k` the label without that term (its tail
closure has cumulants :math:`\kappa_n(S_K) - a^n\kappa_n(g)`). This is a smooth function of the one
number a, so it is computed at Chebyshev nodes :math:`a_j \in (0, a_{K+1}]` once per distinct link and
interpolated, divided by a, at every :math:`a_k`: the cost is a few convolutions whatever m is, and
the :math:`a\to0` end is the weak-signal law :math:`E[(z^2-1) f] \approx a\,\mu_2 E[f'(Y)]` of
docs/theory.md §2.3, which the interpolant reproduces exactly in the limit.

>>> from theory import HierarchicalModel
>>> t = tail_plan(HierarchicalModel(m="inf"), closure_tol=1e-8)   # the default model, gamma = 13/10
>>> t.K, t.error <= 1e-9, t.variance > 0
(36, True, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
from numpy.polynomial.hermite_e import hermeval
from scipy.special import zeta

from theory import HierarchicalModel
from theory.links import is_even

__all__ = ["TailPlan", "tail_plan", "weights_of", "link_cumulants", "chebyshev_nodes", "interpolation_matrix",
           "edgeworth_weights", "CLOSURE_TOL", "MIN_TAIL"]

CLOSURE_TOL = 1e-8  #: default target for the closure's a posteriori error (docs/numerics.md §"Large m")
_PREDICTOR_MARGIN = 10.0  #: the a posteriori error measured 8-11x the formula's; K starts from tol / margin
MIN_TAIL = 16  #: fewer tail directions than this: every direction is exact
MAX_EXACT = 200  #: at most this many exact directions are chosen automatically
N_NODES = 12  #: Chebyshev nodes in a per tail link
_ORDERS = 5


def _numeric_gamma(model) -> float:
    return float(model.gamma)


def _zeta_sum(s: float, start: int, m) -> float:
    r""":math:`\sum_{k=start}^{m} k^{-s}` (m may be sympy oo: Hurwitz zeta, needs s > 1)."""
    if m == sp.oo:
        if s <= 1:
            return float("inf")
        return float(zeta(s, start))
    if start > m:
        return 0.0
    k = np.arange(int(m), start - 1, -1, dtype=float)  # smallest terms first
    return float(np.sum(k ** (-s)))


def weight_normalization(model: HierarchicalModel) -> float:
    """Z (float): Z_m for normalized weights (zeta(2 gamma) at m = infinity), else 1."""
    if not model.normalize:
        return 1.0
    return _zeta_sum(2 * _numeric_gamma(model), 1, model.m)


def weights_of(model: HierarchicalModel, ks) -> np.ndarray:
    r"""The weights :math:`a_k = k^{-\gamma}/\sqrt{Z}` at the directions ``ks`` (1-based), finite or infinite m.

    >>> import numpy as np
    >>> m = HierarchicalModel(m=5)
    >>> bool(np.allclose(weights_of(m, [1, 2, 5]), m.weight_array[[0, 1, 4]], rtol=1e-14))
    True
    """
    ks = np.asarray(ks, dtype=float)
    return ks ** (-_numeric_gamma(model)) / np.sqrt(weight_normalization(model))


def power_sum(model: HierarchicalModel, n: int, K: int) -> float:
    r""":math:`P_n(K) = \sum_{K<k\le m} a_k^n`."""
    return _zeta_sum(n * _numeric_gamma(model), K + 1, model.m) / weight_normalization(model) ** (n / 2)


def link_cumulants(g, orders: int = _ORDERS) -> np.ndarray:
    r"""Cumulants :math:`\kappa_1..\kappa_{orders}` of g(z), z ~ N(0, 1), by Gauss-Legendre panels.

    >>> from theory.parsing import parse_link
    >>> np.round(link_cumulants(parse_link("z**2")), 10)      # chi^2_1: kappa_n = 2^(n-1) (n-1)!
    array([ 1.,  2.,  8., 48., 384.])
    """
    from .label_law import _z_rule, _zeros_of, link_function

    z, w = _z_rule(_zeros_of(g))
    v = link_function(g)(z)
    mom = [float(w @ v**n) for n in range(orders + 1)]  # raw moments, mom[0] = 1
    kap = np.zeros(orders)
    # kappa_n = mu_n - sum_{j=1}^{n-1} C(n-1, j-1) kappa_j mu_{n-j}
    from math import comb

    for n in range(1, orders + 1):
        kap[n - 1] = mom[n] - sum(comb(n - 1, j - 1) * kap[j - 1] * mom[n - j] for j in range(1, n))
    return kap


def chebyshev_nodes(a_max: float, n: int = N_NODES) -> np.ndarray:
    """Chebyshev points of the first kind on (0, a_max] (no node at a = 0)."""
    j = np.arange(n)
    return a_max * (1 - np.cos((2 * j + 1) * np.pi / (2 * n))) / 2


def interpolation_matrix(nodes: np.ndarray, a) -> np.ndarray:
    r"""L with :math:`L_{ij}` = the j-th Lagrange basis polynomial on ``nodes`` at ``a[i]`` (barycentric form).

    >>> x = chebyshev_nodes(1.0, 8)
    >>> bool(np.allclose(interpolation_matrix(x, [0.3, 0.7]) @ x**3, [0.027, 0.343]))
    True
    """
    nodes = np.asarray(nodes, dtype=float)
    a = np.atleast_1d(np.asarray(a, dtype=float))
    n = nodes.size
    w = np.array([1.0 / np.prod(nodes[j] - np.delete(nodes, j)) for j in range(n)])
    diff = a[:, None] - nodes[None, :]
    exact = diff == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = w[None, :] / diff
        L = t / t.sum(axis=1, keepdims=True)
    rows = exact.any(axis=1)
    L[rows] = exact[rows].astype(float)
    return L


def edgeworth_weights(x: np.ndarray, w: np.ndarray, cum: np.ndarray, sigma: float, order: int = 2) -> np.ndarray:
    """Weights of the second-order Edgeworth density on standardized nodes x (Gaussian weights w);
    ``order=3``: the third-order terms alone (what the closure leaves out, for its error check).

    >>> x, w = np.array([0.0, 1.0]), np.ones(2)
    >>> edgeworth_weights(x, w, np.array([0.0, 1.0, 0.0, 0.0, 0.0]), 1.0).tolist()   # Gaussian: unchanged
    [1.0, 1.0]
    """
    if sigma == 0:
        return w
    lam = np.asarray(cum, dtype=float) / sigma ** np.arange(1, len(cum) + 1)
    l3, l4, l5 = lam[2], lam[3], lam[4]
    if order == 2:
        c = {0: 1.0, 3: l3 / 6, 4: l4 / 24, 6: l3**2 / 72}
    elif order == 3:
        c = {5: l5 / 120, 7: l3 * l4 / 144, 9: l3**3 / 1296}
    else:
        raise ValueError(f"order: 2 or 3, got {order!r}")
    coef = np.zeros(max(c) + 1)
    for n, v in c.items():
        coef[n] = v
    return w * hermeval(x, coef)


@dataclass(frozen=True, eq=False)
class TailGroup:
    """The tail directions that share one link: their per-link cumulants and the Chebyshev nodes in a."""

    link: sp.Expr
    kappa: np.ndarray
    nodes: np.ndarray


@dataclass(frozen=True, eq=False)
class TailPlan:
    """K exact directions; the tail's cumulants (noise excluded); the closure bound; the link groups."""

    K: int
    m: object
    model: HierarchicalModel
    cumulants: np.ndarray  # kappa_1..kappa_5 of S_K
    error: float
    label_sd: float
    groups: tuple

    @property
    def variance(self) -> float:
        return float(self.cumulants[1])

    def group_of(self, k: int) -> int:
        """Index of the link group of tail direction k (all tail links are one group unless m is finite
        with per-direction links)."""
        return 0 if len(self.groups) == 1 else self._group_index[k]

    def settings(self) -> dict:
        return {"exact_directions": self.K, "tail_variance": self.variance, "tail_links": len(self.groups)}


def _closure_error(cum, sd):
    return float(abs(cum[4]) / (120 * sd**5) + abs(cum[2] * cum[3]) / (144 * sd**7) + abs(cum[2]) ** 3 / (1296 * sd**9))


def tail_plan(model: HierarchicalModel, closure_tol: float = CLOSURE_TOL, K: int | None = None,
              max_exact: int = MAX_EXACT) -> TailPlan | None:
    """The split of ``model`` into K exact directions and a closed tail, or None when every direction
    stays exact (finite m with fewer than ``MIN_TAIL`` directions past K).

    K is the smallest number of exact directions whose closure bound (module docstring) is at most
    ``closure_tol``, unless given. Refused with ValueError where the tail is not defined: infinite
    m with a link of nonzero mean and gamma <= 1 (the label's mean diverges), or unnormalized weights
    with gamma <= 1/2 (its variance diverges); and where tail directions could couple (two non-even
    links in the tail: docs/theory.md §2.2's m x m form needs every pair).
    """
    if not (isinstance(closure_tol, (int, float)) and np.isfinite(closure_tol) and closure_tol > 0):
        raise ValueError(f"closure_tol: must be a number > 0, got {closure_tol!r}")
    m = model.m
    inf = m == sp.oo
    gamma = _numeric_gamma(model)
    links = model.links
    if inf and gamma <= 0.5:
        raise ValueError(f"gamma: m = infinity needs gamma > 1/2 (sum a_k^2 diverges), got {model.gamma}")
    # cumulants at quadrature round-off (E[g] = 0 to 1e-17) are exact zeros
    kap = {g: np.where(np.abs(c) < 1e-12 * max(1.0, float(np.abs(c).max())), 0.0, c)
           for g, c in ((g, link_cumulants(g)) for g in set(links))}
    if inf and gamma <= 1 and kap[links[0]][0] != 0:
        raise ValueError(f"gamma: m = infinity with gamma = {model.gamma} <= 1 and a link of mean "
                         f"E[g] = {kap[links[0]][0]:.4g} != 0 has a label of infinite mean (sum a_k diverges); "
                         "center the link or use a finite m")
    if len(links) == 1:
        var_y = power_sum(model, 2, 0) * kap[links[0]][1] + float(model.delta)
    else:
        a2 = weights_of(model, np.arange(1, m + 1)) ** 2
        var_y = float(sum(a2[k] * kap[links[k]][1] for k in range(m))) + float(model.delta)
    sd = float(np.sqrt(var_y))

    def cumulants(K):
        if len(links) == 1:  # a cumulant that vanishes (E[g] = 0) needs no power sum (it may diverge)
            kg = kap[links[0]]
            return np.array([power_sum(model, n, K) * kg[n - 1] if kg[n - 1] != 0 else 0.0
                             for n in range(1, _ORDERS + 1)])
        a = weights_of(model, np.arange(K + 1, m + 1))
        return sum(((a[i] ** np.arange(1, _ORDERS + 1)) * kap[links[K + i]] for i in range(a.size)),
                   np.zeros(_ORDERS))

    if K is None:
        K = 1
        while (_closure_error(cumulants(K), sd) > closure_tol / _PREDICTOR_MARGIN and K < max_exact
               and (inf or K < m)):
            K += 1 if K < 32 else max(1, K // 8)
    if not inf and m - K < MIN_TAIL:
        return None
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K: the number of exact directions must be an integer >= 1, got {K!r}")
    tail_links = links[:1] if len(links) == 1 else tuple(dict.fromkeys(links[K:]))
    odd = [g for g in tail_links if not is_even(g)]
    if len(odd) > 1 or (odd and (inf or len(links) == 1 or links[K:].count(odd[0]) > 1)):
        raise ValueError("link: the large-m tail needs even links (two non-even tail links couple, and the "
                         "m x m form of docs/theory.md §2.2 needs every pair); use a finite m, which keeps "
                         "every direction exact")
    cum = cumulants(K)
    a_max = float(weights_of(model, [K + 1])[0])
    groups = tuple(TailGroup(link=g, kappa=kap[g], nodes=chebyshev_nodes(a_max, N_NODES)) for g in tail_links)
    plan = TailPlan(K=int(K), m=m, model=model, cumulants=cum, error=_closure_error(cum, sd), label_sd=sd, groups=groups)
    if len(groups) > 1:
        object.__setattr__(plan, "_group_index", {k: tail_links.index(links[k - 1]) for k in range(K + 1, m + 1)})
    return plan
