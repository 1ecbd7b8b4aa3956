r"""The law of (T(Y), z_k) for Model S, as a discrete measure (docs/theory.md §2.2).

Every d = infinity formula is an expectation of :math:`f(\mathrm{T}(Y))` or of
:math:`z_k^2 f(\mathrm{T}(Y))`. We represent the law by atoms :math:`\tau_j` with masses

.. math::  p_j \approx P(\tau \approx \tau_j), \qquad r_{kj} \approx E[z_k^2;\ \tau\approx\tau_j],

so each expectation is a dot product. Three constructions:

* ``"quadrature"`` (m = 1, Delta = 0): Gauss-Legendre panels in z, split at the
  zeros of g (where T(a g(z)) may have a kink), :math:`y = a_1 g(z)`.
* ``"grid"`` (any m, any Delta): each term :math:`a_k g_k(z_k)` is deposited on a
  uniform y-grid of spacing h (linear, mass and mean preserving), once with weight
  :math:`\varphi(z)` and once with :math:`z^2\varphi(z)`; the law of Y and the
  z_k^2-weighted laws are FFT convolutions (``scipy.signal.fftconvolve``) of these.
  Noise enters as one more Gaussian term. The error is O(h^2) and is estimated by
  repeating the construction at 2h (:attr:`LabelLaw.grid_error`).
* ``"montecarlo"``: i.i.d. samples (a cross-check only).

Examples
--------
>>> from theory import HierarchicalModel
>>> law = label_law(HierarchicalModel(m=1, link="He2/2 + He4/48"))
>>> law.method, round(float(law.p.sum()), 12), round(float(law.r[0].sum()), 12)
('quadrature', 1.0, 1.0)
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from scipy.signal import fftconvolve

from theory import HierarchicalModel
from theory.links import is_even, kinks
from theory.model import require
from theory.parsing import Y, Z

from .tail_closure import CLOSURE_TOL, MAX_EXACT, MIN_TAIL, tail_plan

__all__ = ["check_model", "coupled_pairs", "LabelLaw", "label_law", "link_function", "preprocessing_function", "sup_preprocessing",
           "clear_cache", "grid_cost"]

_ZMAX = 9.0  # P(|z| > 9) = 2e-19: below float64 resolution of every expectation here
_PANEL = 0.25
_GL_NODES = 24


@dataclass(frozen=True, eq=False)
class LabelLaw:
    """Atoms of the law of (T(Y), z_k^2), see the module docstring."""

    tau: np.ndarray
    p: np.ndarray
    r: np.ndarray  # shape (m, n_atoms)
    y: np.ndarray
    method: str
    grid_error: float
    tau_sup: float = float("nan")  # ess sup T(Y) of the exact law (>= every atom)
    settings: dict = field(default_factory=dict)
    pairs: tuple = ()  # the (j, k), j < k (0-based), whose cross moments are held in ``cross``
    cross: np.ndarray | None = None  # shape (len(pairs), n_atoms): E[z_j z_k; tau ~ tau_atom]
    # large m (docs/numerics.md §"Large m"): the tail plan, and per Chebyshev node a_j of each tail
    # link the row E[(z^2 - 1); tau ~ tau_atom] of a tail direction of weight a_j
    tail: object = None
    tail_rows: np.ndarray | None = None

    @property
    def m(self) -> int:
        """The number of exact directions (rows of ``r``): all of them unless the law has a tail."""
        return self.r.shape[0]

    @property
    def tau_max(self) -> float:
        return float(self.tau.max())

    def expect(self, f, weight="p"):
        """E[f(tau)] (weight="p") or E[z_k^2 f(tau)] for every k (weight="r")."""
        vals = f(self.tau)
        return (self.p @ vals) if weight == "p" else (self.r @ vals)


# --- sympy -> numpy ----------------------------------------------------------------------
def link_function(expr):
    """Vectorised numpy callable z -> g(z) for a parsed link (lambdified once per expression)."""
    fn = _LINKS.get(expr)
    if fn is None:
        f = sp.lambdify(Z, expr, modules=["numpy", {"Heaviside": lambda x: np.heaviside(x, 0.5)}])
        fn = lambda z: np.broadcast_to(np.asarray(f(z), dtype=float), np.shape(z)).copy()  # noqa: E731
        if len(_LINKS) > 256:
            _LINKS.clear()
        _LINKS[expr] = fn
    return fn


_LINKS: dict = {}


def preprocessing_function(expr):
    """Vectorised numpy callable y -> T(y) for a parsed preprocessing."""
    f = sp.lambdify(Y, expr, modules="numpy")

    def T(y):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.broadcast_to(np.asarray(f(y), dtype=float), np.shape(y)).copy()
        return out

    return T


def limit_at_infinity(expr, var, side):
    """lim expr as var -> side (sp.oo or -sp.oo): sympy first, a numeric probe if sympy fails.

    The probe evaluates at |var| = 1e6, 1e9, 1e12 and reports +-oo when the values keep
    growing past 1e6 in magnitude, else the value at 1e12.
    """
    try:
        lim = sp.limit(expr, var, side)
        if lim.is_real or lim in (sp.oo, -sp.oo):
            return lim
    except Exception:  # noqa: BLE001 - sympy's gruntz raises assorted errors on Min/Max/sign
        pass
    f = sp.lambdify(var, expr, modules="numpy")
    sgn = 1.0 if side == sp.oo else -1.0
    with np.errstate(all="ignore"):
        v = [float(f(sgn * x)) for x in (1e6, 1e9, 1e12)]
    if abs(v[2]) > 1e6 and abs(v[2]) > abs(v[1]) > abs(v[0]):
        return sp.oo if v[2] > 0 else -sp.oo
    return sp.Float(v[2])


@functools.lru_cache(maxsize=256)
def _unbounded_above(expr, var):
    """True if expr -> +oo as var -> +oo or -oo. Cached: each sympy limit takes about 0.1 s, and
    :func:`label_law` checks the preprocessing on every call, also where its law is cached."""
    return any(limit_at_infinity(expr, var, side) == sp.oo for side in (sp.oo, -sp.oo))


@functools.lru_cache(maxsize=256)
def _unbounded_sides(model):
    """(Y unbounded above, Y unbounded below): weights are positive, so a link tending
    to +oo (-oo) at either end of R makes Y unbounded above (below); so does noise."""
    if model.delta > 0:
        return True, True
    up = down = False
    for g in model.links:
        for side in (sp.oo, -sp.oo):
            lim = limit_at_infinity(g, Z, side)
            up |= lim == sp.oo
            down |= lim == -sp.oo
    return up, down


def _label_bounded(model):
    return not any(_unbounded_sides(model))


def _tau_sup(model, tau):
    """ess sup T(Y): the atoms' maximum, or the limit of T where Y is unbounded.

    The atoms stop where the truncated law does (|z| <= 9); T may keep rising beyond
    (y/(1+|y|) -> 1), and the d = infinity formulas need lambda > the exact ess sup."""
    sup = float(np.max(tau))
    up, down = _unbounded_sides(model)
    for flag, side in ((up, sp.oo), (down, -sp.oo)):
        if flag:
            lim = limit_at_infinity(model.T, Y, side)
            if lim.is_finite and lim.is_real:
                sup = max(sup, float(lim))
    return sup


def sup_preprocessing(model: HierarchicalModel) -> None:
    r"""Refuse a preprocessing that is unbounded above on the label support.

    The d = infinity formulas need :math:`\tau = \mathrm{ess\,sup}\, T(Y) < \infty`.

    >>> from theory import HierarchicalModel
    >>> sup_preprocessing(HierarchicalModel(m=1, preprocessing="y"))
    Traceback (most recent call last):
    ...
    ValueError: preprocessing: T(y) = y is unbounded above on the label support, and the d = infinity formulas need sup T < infinity; clip it, e.g. 'clip(y, -5, 5)' or 'y/(1+|y|)' (or pass support='effective' for the large-alpha regime)
    """
    if _unbounded_above(model.T, Y) and not _label_bounded(model):
        raise ValueError(
            f"preprocessing: T(y) = {model.T} is unbounded above on the label support, and the d = infinity "
            "formulas need sup T < infinity; clip it, e.g. 'clip(y, -5, 5)' or 'y/(1+|y|)' "
            "(or pass support='effective' for the large-alpha regime)"
        )


# --- quadrature in z --------------------------------------------------------------------
def _z_rule(kinks=(), zmax=_ZMAX, panel=_PANEL, nodes=_GL_NODES):
    """Gauss-Legendre panels on [-zmax, zmax] split at kinks: (z, w) with w = phi(z) dz."""
    edges = set(np.arange(-zmax, zmax + 1e-12, panel)) | {k for k in kinks if -zmax < k < zmax}
    edges = np.array(sorted(edges))
    x, wx = np.polynomial.legendre.leggauss(nodes)
    a, b = edges[:-1, None], edges[1:, None]
    z = ((b - a) / 2 * x + (b + a) / 2).ravel()
    w = ((b - a) / 2 * wx).ravel() * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    return z, w


def _zeros_of(expr, levels=(0.0,)):
    """Real solutions of g(z) = c for each level c, plus the kinks of g itself.

    T(a g(z)) can kink where a g(z) sits at a kink of T (0 for |y|, the clip points...).
    """
    pts = set(kinks(expr))
    for c in levels:
        h = expr - sp.nsimplify(c)
        if h.is_polynomial(Z) and sp.Poly(h, Z).degree() > 0:
            roots = np.roots([float(v) for v in sp.Poly(h, Z).all_coeffs()])
            pts.update(float(r.real) for r in roots if abs(r.imag) < 1e-12)
        else:
            zz = np.linspace(-_ZMAX, _ZMAX, 20001)
            g = link_function(h)(zz)
            idx = np.nonzero(np.diff(np.sign(g)))[0]
            pts.update(zz[idx].tolist())
    return sorted(p for p in pts if np.isfinite(p))


def z_kinks(model: HierarchicalModel, k: int = 1):
    """Points where z -> T(a_k g_k(z)) may kink (used to split z-quadratures)."""
    a = float(model.weight_array[k - 1])
    levels = {0.0} | {y / a for y in kinks(model.T, Y)}
    return _zeros_of(model.link_of(k), sorted(levels))


# --- constructions ----------------------------------------------------------------------
def _weights(model):
    return np.array(model.weight_array)


def _weight(model, k):
    """a_k as a float: the model's float64 weights at finite m, the zeta-normalised ones at m = infinity."""
    if model.m == sp.oo:
        from .tail_closure import weights_of

        return float(weights_of(model, [k])[0])
    return float(model.weight_array[k - 1])


def _quadrature_law(model):
    g = model.link_of(1)
    z, w = _z_rule(z_kinks(model, 1))
    a = float(model.weight_array[0])
    y = a * link_function(g)(z)
    tau = preprocessing_function(model.T)(y)
    return y, tau, w, (w * z**2)[None, :]


def _deposit(values, weights, y0, h, n):
    """Linear (cloud-in-cell) deposit: preserves the mass and the mean of the atoms."""
    u = (values - y0) / h
    i = np.floor(u).astype(np.int64)
    frac = u - i
    out = np.bincount(i, weights=weights * (1 - frac), minlength=n + 1)
    out += np.bincount(i + 1, weights=weights * frac, minlength=n + 1)
    return out[:n]


def _deposit_cubic(values, weights, y0, h, n):
    """Four-point (cubic Lagrange) deposit: preserves the moments 0..3 of the atoms, so a law much
    narrower than a cell (a tail direction's a g(z) with a << h) keeps its first moments exact."""
    u = (values - y0) / h
    i = np.floor(u).astype(np.int64)
    t = u - i
    L = ((-t * (t - 1) * (t - 2) / 6), ((t + 1) * (t - 1) * (t - 2) / 2), (-(t + 1) * t * (t - 2) / 2),
         ((t + 1) * t * (t - 1) / 6))
    out = np.zeros(n + 3)
    for j, Lj in enumerate(L):  # points i-1 .. i+2, shifted by one so that index 0 is y0 - h
        out += np.bincount(i + j, weights=weights * Lj, minlength=n + 3)[: n + 3]
    return out


def coupled_pairs(model: HierarchicalModel, upto: int | None = None) -> tuple:
    """Pairs (j, k), j < k (0-based, among the first ``upto`` directions, default all), whose cross
    moments E[f(tau) z_j z_k] may be nonzero.

    Flipping z_j leaves Y unchanged when g_j is even, so E[f(tau) z_j z_k] = 0 unless both
    g_j and g_k are not even (docs/theory.md §2.2: the per-direction split holds otherwise).
    """
    odd = [k for k in range(model.m if upto is None else upto) if not is_even(model.link_of(k + 1))]
    return tuple((j, k) for i, j in enumerate(odd) for k in odd[i + 1:])


def _local_deposit(v, w, h):
    """Deposit atoms v with weights w (a tuple of weight arrays) on a local grid: (lo, pmfs...)."""
    lo = np.floor(v.min() / h) * h
    n = int(np.ceil((v.max() - lo) / h)) + 2
    return (lo, *(_deposit(v, wi, lo, h, n) for wi in w))


def _bath(cum, delta, h, order=2):
    """The tail closure (cumulants ``cum``, docs/numerics.md §"Large m") and the noise as one
    component: a second-order Edgeworth density of mean cum[0] and variance cum[1] + delta
    (``order=3``: the third-order terms alone, the first ones the closure leaves out)."""
    from .tail_closure import edgeworth_weights

    sigma = float(np.sqrt(max(cum[1], 0.0) + delta))
    if sigma == 0:
        return _local_deposit(np.array([cum[0]]), (np.ones(1) if order == 2 else np.zeros(1),), h)
    x, w = _z_rule()
    return _local_deposit(cum[0] + sigma * x, (edgeworth_weights(x, w, cum, sigma, order),), h)


class _Ticker:
    """Counts built rows and reports them to a ``progress(done, total)`` callback (or nothing)."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _grid_law(model, h, pairs=(), tail=None, tick=lambda: None):
    m = model.m if tail is None else tail.K
    comps = []  # (lo, p_pmf, s_pmf, z_pmf) on local grids of spacing h
    for k in range(1, m + 1):
        g = model.link_of(k)
        z, w = _z_rule(_zeros_of(g))
        v = _weight(model, k) * link_function(g)(z)
        comps.append(_local_deposit(v, (w, w * z**2, w * z), h))
    noise = None
    if tail is not None:
        noise = _bath(tail.cumulants, float(model.delta), h)
    elif model.delta > 0:
        s = float(sp.sqrt(model.delta))
        z, w = _z_rule()
        noise = _local_deposit(s * z, (w,), h)

    def conv(x, y):
        # FFT round-off leaves +-1e-16 * max everywhere; it would fake a support reaching
        # far into the tails (and so a wrong sup T). Entries below 1e-14 of the peak go to 0.
        out = fftconvolve(x, y)
        out[out < 1e-14 * out.max()] = 0.0
        return out

    def conv_signed(x, y):  # the z-weighted pmfs change sign: trim by magnitude
        out = fftconvolve(x, y)
        out[np.abs(out) < 1e-14 * np.abs(out).max()] = 0.0
        return out

    # prefix/suffix convolutions give every leave-one-out law with O(m) FFTs
    prefix = [(0.0, np.ones(1))]
    for lo, p, *_ in comps:
        plo, pp = prefix[-1]
        prefix.append((plo + lo, conv(pp, p)))
    suffix = [(0.0, np.ones(1))]
    for lo, p, *_ in reversed(comps):
        slo, sp_ = suffix[-1]
        suffix.append((slo + lo, conv(sp_, p)))
    suffix = suffix[::-1]  # suffix[k] = conv of comps[k:]
    total_lo, total = prefix[-1]
    if noise is not None:
        total_lo, total = total_lo + noise[0], conv(total, noise[1])
    n_tot = total.size
    r = np.zeros((m, n_tot))
    for k, (lo, _, s, _z) in enumerate(comps):
        olo = prefix[k][0] + suffix[k + 1][0]
        other = conv(prefix[k][1], suffix[k + 1][1])
        if noise is not None:
            olo, other = olo + noise[0], conv(other, noise[1])
        rk = conv(other, s)
        off = int(round((olo + lo - total_lo) / h))
        r[k, off: off + rk.size] = rk[: n_tot - off]
        tick()
    cross = np.zeros((len(pairs), n_tot))
    for i, (j, k) in enumerate(pairs):
        # all components but j and k with weight 1, then z_j- and z_k-weighted ones
        lo_c, pmf = prefix[j]
        for t in range(j + 1, k):
            lo_c, pmf = lo_c + comps[t][0], conv(pmf, comps[t][1])
        lo_c, pmf = lo_c + suffix[k + 1][0], conv(pmf, suffix[k + 1][1])
        if noise is not None:
            lo_c, pmf = lo_c + noise[0], conv(pmf, noise[1])
        lo_c, pmf = lo_c + comps[j][0] + comps[k][0], conv_signed(conv_signed(pmf, comps[j][3]), comps[k][3])
        off = int(round((lo_c - total_lo) / h))
        cross[i, off: off + pmf.size] = pmf[: n_tot - off]
    D = np.zeros((0, n_tot))
    if tail is not None:
        D = np.vstack([_tail_rows(model, tail, grp, prefix[-1], total_lo, n_tot, h, conv, conv_signed, tick)
                       for grp in tail.groups]
                      + [_closure_rows(model, tail, prefix, suffix, comps, total_lo, n_tot, h, conv, conv_signed)])
    y = total_lo + h * np.arange(n_tot)
    keep = total > 0
    tau = preprocessing_function(model.T)(y[keep])
    return y[keep], tau, total[keep], r[:, keep], cross[:, keep], D[:, keep]


def _closure_rows(model, tail, prefix, suffix, comps, total_lo, n_tot, h, conv, conv_signed):
    """The first terms the closure leaves out, as two signed rows on the label grid: their share of
    the law of Y and of E[(z_1^2 - 1); Y] (the a posteriori closure check of docs/numerics.md §"Large m")."""
    lo_b, bath3 = _bath(tail.cumulants, float(model.delta), h, order=3)
    rows = np.zeros((2, n_tot))
    p3 = conv_signed(prefix[-1][1], bath3)
    lo1, _, s1, _ = comps[0]
    r3 = conv_signed(conv_signed(suffix[1][1], bath3), s1)
    for i, (lo, row) in enumerate(((prefix[-1][0] + lo_b, p3), (suffix[1][0] + lo_b + lo1, r3))):
        off = int(round((lo - total_lo) / h))
        start, stop = max(off, 0), min(off + row.size, n_tot)
        rows[i, start:stop] = row[start - off: stop - off]
    rows[1] -= rows[0]
    return rows


def _tail_rows(model, tail, grp, exact, total_lo, n_tot, h, conv, conv_signed, tick=lambda: None):
    r"""Rows :math:`E[(z^2-1); Y \approx y]` of a tail direction of weight a at the Chebyshev nodes
    of its link: the exact part, the closure of the tail without that direction, and the law of
    a g(z) weighted by z^2 - 1 (docs/numerics.md §"Large m")."""
    z, w = _z_rule(_zeros_of(grp.link))
    gz = link_function(grp.link)(z)
    rows = np.zeros((grp.nodes.size, n_tot))
    for i, a in enumerate(grp.nodes):
        lo_b, bath = _bath(tail.cumulants - a ** np.arange(1, tail.cumulants.size + 1) * grp.kappa,
                           float(model.delta), h)
        v = a * gz
        lo_d = np.floor(v.min() / h) * h
        dep = _deposit_cubic(v, w * (z**2 - 1), lo_d, h, int(np.ceil((v.max() - lo_d) / h)) + 2)
        lo_d -= h  # the cubic deposit starts one cell below
        row = conv_signed(conv(exact[1], bath), dep)
        off = int(round((exact[0] + lo_b + lo_d - total_lo) / h))
        # the closure is narrower than a g(z) at |z| ~ 9 on the far side: mass below 1e-16, cut at the grid
        start, stop = max(off, 0), min(off + row.size, n_tot)
        rows[i, start:stop] = row[start - off: stop - off]
        tick()
    return rows


def draw_latents(model, n_samples: int, seed: int):
    """``n_samples`` seeded draws of Model S's latents and label: (y, tau = T(y), z) with z of shape
    (n_samples, m). The Monte Carlo law and ``numerics.outlier_fluctuation`` average over them."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    zs = rng.standard_normal((n_samples, model.m))
    a = _weights(model)
    y = sum(a[k] * link_function(model.link_of(k + 1))(zs[:, k]) for k in range(model.m))
    if model.delta > 0:
        y = y + float(sp.sqrt(model.delta)) * rng.standard_normal(n_samples)
    return y, preprocessing_function(model.T)(y), zs


def _montecarlo_law(model, n_samples, seed, pairs=()):
    y, tau, zs = draw_latents(model, n_samples, seed)
    w = np.full(n_samples, 1.0 / n_samples)
    cross = np.array([zs[:, j] * zs[:, k] * w for j, k in pairs]).reshape(len(pairs), n_samples)
    return y, tau, w, (zs.T**2) * w, cross


_CACHE: dict = {}


def clear_cache() -> None:
    """Forget every cached label law (benchmarks time a cold start with it)."""
    _CACHE.clear()


def check_model(model, allow_infinite_m: bool = False) -> None:
    """Numerics and simulation need a numeric Model S: a HierarchicalModel with numeric gamma and finite m
    (m = infinity where ``allow_infinite_m``: the spectral d = infinity solver)."""
    if not isinstance(model, HierarchicalModel):
        raise TypeError(f"model: expected a theory.HierarchicalModel, got {type(model).__name__}")
    if allow_infinite_m and model.m == sp.oo and model.gamma.is_number:
        return
    if not model.is_numeric:
        raise ValueError("model: numerics needs a numeric gamma and a finite m"
                         + ("" if allow_infinite_m else " (m = infinity: only the spectral predict)"))


def label_law(model: HierarchicalModel, method: str = "auto", h: float | None = None,
              n_samples: int = 200_000, seed: int = 0, support: str = "exact",
              max_bytes: float | None = None, closure_tol: float | None = None,
              exact_directions: int | None = None, progress=None) -> LabelLaw:
    """Build (and cache per model and settings) the discrete law of (T(Y), z_k^2).

    Parameters
    ----------
    model : theory.HierarchicalModel (numeric gamma, finite m)
    method : "auto" | "quadrature" | "grid" | "montecarlo"
        "auto" uses quadrature for m = 1 without noise and the grid otherwise.
    h : float, optional
        Grid spacing of the y-grid (default: range/2^17, at most 2e-3).
    n_samples, seed : Monte Carlo settings.
    support : "exact" | "effective"
        ``"exact"`` (default) refuses a T that is unbounded above on the label support
        (the formulas need sup T < inf). ``"effective"`` accepts it and takes sup T over
        the truncated law (|z_k| <= 9, mass lost < 1e-18): the large-alpha regime where
        the bulk edge sits far above the tail of T(Y) (Model C layer 1, T(y) = y).
        ``predict`` then checks that the tail beyond the truncation cannot move the
        result and raises ``ConvergenceError`` otherwise.
    max_bytes : refuse up front (ValueError with the estimate) a grid law whose cost model
        (:func:`grid_cost`) exceeds this many bytes; default half the machine's memory.
    closure_tol, exact_directions : the large-m path (grid only; docs/numerics.md §"Large m").
        Past K exact directions the tail of the label is one Edgeworth component and the tail
        directions are interpolated from per-link tables (:mod:`numerics.tail_closure`). K is
        ``exact_directions`` or the smallest K whose closure bound is at most ``closure_tol``
        (default ``tail_closure.CLOSURE_TOL``); finite m with fewer than ``MIN_TAIL`` directions
        past K keeps every direction exact. m = infinity always uses it.
    progress : callable ``progress(done, total)``, optional
        Called as the grid law's rows (exact directions and tail nodes, at h and 2h) are built.
    """
    check_model(model, allow_infinite_m=True)
    if max_bytes is None:
        max_bytes = _memory_budget()
    if method not in ("auto", "quadrature", "grid", "montecarlo"):
        raise ValueError(f"method: must be 'auto', 'quadrature', 'grid' or 'montecarlo', got {method!r}")
    if method == "auto":
        method = "quadrature" if (model.m == 1 and model.delta == 0) else "grid"
    if method == "quadrature" and (model.m != 1 or model.delta != 0):
        raise ValueError("method: 'quadrature' applies to m = 1 without noise; use 'grid'")
    tail = None
    # the tail closure is built and tested for the exact support; an effective support (Model C layer 1,
    # T(y) = y clipped at sample quantiles) keeps every direction exact at finite m
    # per-direction links (Model C layer 1's signed He2) also stay exact unless asked for
    if method == "grid" and (model.m == sp.oo or (support == "exact" and (
            closure_tol is not None or exact_directions is not None or (model.m > MIN_TAIL and model.shared_link)))):
        tail = tail_plan(model, CLOSURE_TOL if closure_tol is None else closure_tol, K=exact_directions)
    elif model.m == sp.oo:
        raise ValueError(f"method: m = infinity needs the grid label law, got {method!r}")
    if h is not None and not (np.isfinite(h) and h > 0):
        raise ValueError(f"h: the grid spacing must be a positive number, got {h!r}")
    if support not in ("exact", "effective"):
        raise ValueError(f"support: must be 'exact' or 'effective', got {support!r}")
    if support == "exact":
        sup_preprocessing(model)
    if method == "grid":
        cost = grid_cost(model, h, tail)
        if cost["bytes"] > max_bytes:
            raise ValueError(
                f"m: the label law of {cost['rows']} exact rows (m = {model.m}) on {cost['grid']} y-points needs an "
                f"estimated {cost['bytes'] / 2**30:.1f} GiB and {cost['seconds']:.0f} s (cost model: 28 rows N bytes, "
                f"about {_SECONDS_PER_DIRECTION} s per row per 2^18 points), above max_bytes = "
                f"{max_bytes / 2**30:.1f} GiB; use fewer exact directions (exact_directions, or a larger closure_tol), "
                "a coarser grid h, or raise max_bytes")
    key = (model, method, h, n_samples if method == "montecarlo" else None, seed if method == "montecarlo" else None,
           support, None if tail is None else (tail.K, closure_tol))
    if key in _CACHE:
        return _CACHE[key]
    law = _build(model, method, h, n_samples, seed, support, tail, progress)
    tol = CLOSURE_TOL if closure_tol is None else closure_tol
    # a posteriori: the first omitted Edgeworth terms, measured on G2 and F_1; more exact directions
    # until they are below the target (K given by the caller is kept as it is)
    while (tail is not None and exact_directions is None and law.settings["closure_error"] > tol
           and tail.K < MAX_EXACT):
        tail = tail_plan(model, tol, K=min(MAX_EXACT, int(np.ceil(1.5 * tail.K))))
        law = _build(model, method, h, n_samples, seed, support, tail, progress)
    if tail is not None:
        law.settings["closure_tol"] = tol
        law.settings["closure_tol_met"] = bool(law.settings["closure_error"] <= tol)
        if not law.settings["closure_tol_met"] and exact_directions is None:
            warnings.warn(f"closure_tol: {law.settings['exact_directions']} exact directions leave a closure error "
                          f"of {law.settings['closure_error']:.2e} > closure_tol = {tol:g} (the automatic K stops at "
                          f"{MAX_EXACT}); pass exact_directions for more", RuntimeWarning, stacklevel=2)
    _CACHE[key] = law
    return law


def _build(model, method, h, n_samples, seed, support, tail, progress=None):
    """One label law for the settings of :func:`label_law` (no cache, no checks)."""
    settings = {"method": method, "support": support}
    pairs = coupled_pairs(model, None if tail is None else tail.K)
    cross = np.zeros((0, 1))
    D = np.zeros((0, 1))
    if method == "quadrature":
        y, tau, p, r = _quadrature_law(model)
        cross, D = np.zeros((0, tau.size)), np.zeros((0, tau.size))
        err = 0.0
        settings.update(zmax=_ZMAX, panel=_PANEL, gl_nodes=_GL_NODES)
    elif method == "montecarlo":
        y, tau, p, r, cross = _montecarlo_law(model, int(n_samples), seed, pairs)
        D = np.zeros((0, tau.size))
        err = float(1 / np.sqrt(n_samples))
        settings.update(n_samples=int(n_samples), seed=seed)
    else:
        if h is None:
            h = min(1e-3, _span(model, tail) / 2**18)
        # Richardson at the level of the measure: every expectation is linear in it, so
        # (4 law(h) - law(2h)) / 3 cancels the O(h^2) deposition error of each one.
        rows = (model.m if tail is None else tail.K + sum(g.nodes.size for g in tail.groups))
        tick = _Ticker(progress, 2 * rows)
        y1, t1, p1, r1, c1, D1 = _grid_law(model, h, pairs, tail, tick)
        y2, t2, p2, r2, c2, D2 = _grid_law(model, 2 * h, pairs, tail, tick)
        y, tau = np.concatenate([y1, y2]), np.concatenate([t1, t2])
        p, r = np.concatenate([4 / 3 * p1, -1 / 3 * p2]), np.hstack([4 / 3 * r1, -1 / 3 * r2])
        cross = np.hstack([4 / 3 * c1, -1 / 3 * c2])
        D = np.hstack([4 / 3 * D1, -1 / 3 * D2])
        # size of the correction (an upper bound on the error left): E[tau], E[tau z_k^2]
        err = float(max(abs(p1 @ t1 - p2 @ t2), np.max(np.abs(r1 @ t1 - r2 @ t2), initial=0.0)) / 3)
        settings.update(h=h, zmax=_ZMAX, richardson=True)
        if tail is not None:
            settings.update(tail.settings())
    if not np.all(np.isfinite(tau[p != 0])):
        raise ValueError("preprocessing: T(y) is not finite on the label support (division by zero?)")
    keep = np.isfinite(tau) & (p != 0)  # Richardson weights are signed
    y, tau, p, r, cross, D = y[keep], tau[keep], p[keep], r[:, keep], cross[:, keep], D[:, keep]
    if support == "effective":
        y, tau, p, r, cross, D = _trim_top(y, tau, p, r, cross, D)
    tau_sup = _tau_sup(model, tau) if support == "exact" else float(tau.max())
    if tail is not None:  # the last two rows are the closure check's, not directions
        D, C = D[:-2], D[-2:]
        settings["closure_error"] = _closure_check(tau, p, r[0], C, tau_sup)
        settings["closure_error_predicted"] = tail.error
    law = LabelLaw(tau=tau, p=p, r=r, y=y, method=method, grid_error=err, tau_sup=tau_sup, settings=settings,
                   pairs=pairs if method != "quadrature" else (), cross=cross, tail=tail,
                   tail_rows=D if tail is not None else None)
    return law


def _closure_check(tau, p, r1, C, tau_sup, n=61):
    r"""The closure's a posteriori error: max over :math:`\lambda` of the omitted third-order terms'
    share of :math:`G_2` (relative to :math:`G_2`) and of :math:`F_1` (relative to
    max(:math:`G_2`, :math:`|F_1|`)), on n points with :math:`\lambda - \sup T` from 1e-7 to 1e6 times
    the spread of tau (the range of the solver's tables)."""
    scale = max(float(np.ptp(tau)), 1e-6)
    lam = tau_sup + scale * np.geomspace(1e-7, 1e6, n)
    K1 = tau[None, :] / (lam[:, None] - tau[None, :])
    K2 = K1**2
    G2 = K2 @ p
    F1 = K1 @ (r1 - p)
    err = np.maximum(np.abs(K2 @ C[0]) / G2, np.abs(K1 @ C[1]) / np.maximum(G2, np.abs(F1)))
    return float(err.max())


def _trim_top(y, tau, p, r, cross, D, mass=1e-14):
    """Drop the top ``mass`` of the law of tau, then any negative (Richardson) atoms left on
    top: an unbounded T has no sup, and a signed top atom would make G2 < 0 near it."""
    order = np.argsort(tau)[::-1]
    cut = int(np.searchsorted(np.cumsum(np.abs(p[order])), mass))
    while cut < order.size and p[order[cut]] <= 0:
        cut += 1
    keep = np.sort(order[cut:])
    return y[keep], tau[keep], p[keep], r[:, keep], cross[:, keep], D[:, keep]


_SECONDS_PER_DIRECTION = 0.2  # measured on 2 cores: m = 10, 20, 40 took 1.4, 2.2, 6.6 s at 2^18 points


def _memory_budget() -> float:
    """Half the physical memory (bytes), or 8 GiB where it cannot be read."""
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8.0 * 2**30


def grid_cost(model: HierarchicalModel, h: float | None = None, tail=None) -> dict:
    """Cost model of the grid label law: N y-points (span / h), and about 28 rows N bytes (the
    Richardson pair, the prefix and suffix convolutions and the z_k^2-weighted laws) and
    0.2 rows (N / 2^18) seconds on 2 cores, where rows = m when every direction is exact, and
    K + the Chebyshev nodes with a tail plan (``tail``, docs/numerics.md §"Large m").

    >>> from theory import HierarchicalModel
    >>> c = grid_cost(HierarchicalModel(m=100000))     # every direction exact
    >>> c["bytes"] > 2**40, c["seconds"] > 3600        # > 1 TiB and hours: label_law refuses it up front
    (True, True)
    """
    require(model, HierarchicalModel)
    span = _span(model, tail)
    if h is None:
        h = min(1e-3, span / 2**18)
    n = int(np.ceil(span / h))
    rows = model.m if tail is None else tail.K + sum(g.nodes.size for g in tail.groups)
    return {"grid": n, "rows": rows, "bytes": 28.0 * rows * n, "seconds": _SECONDS_PER_DIRECTION * rows * n / 2**18}


def _span(model, tail=None):
    """Width of the label's support (|z_k| <= 9 and 9 noise standard deviations; with a tail plan, the
    exact directions and 9 standard deviations of the tail and noise): one link evaluation per
    distinct link, not per direction."""
    z = np.linspace(-_ZMAX, _ZMAX, 2001)
    ranges = {}
    total = 0.0
    kmax = model.m if tail is None else tail.K
    a = _weights(model) if tail is None else [_weight(model, k) for k in range(1, kmax + 1)]
    for k in range(1, kmax + 1):
        g = model.link_of(k)
        if g not in ranges:
            v = link_function(g)(z)
            ranges[g] = float(v.max() - v.min())
        total += a[k - 1] * ranges[g]
    if tail is not None:
        total += 2 * _ZMAX * float(np.sqrt(tail.variance + float(model.delta)))
    elif model.delta > 0:
        total += 2 * _ZMAX * float(sp.sqrt(model.delta))
    return total
