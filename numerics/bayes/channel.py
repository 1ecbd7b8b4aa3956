r"""The output channel of Model S at partial overlap (docs/bayes.md, section 2).

Given overlaps :math:`q_k` (diagonal :math:`Q`, :math:`V = I - Q`) and one draw of
:math:`\omega`, the label is

.. math::  y = \sum_k a_k g_k(\omega_k + \sqrt{1-q_k}\,u_k) + \sqrt\Delta\,\xi, \qquad u, \xi \sim N(0, 1),

so its density :math:`Z_{out}(y;\omega)` is the convolution of the m laws
:math:`p_k(\cdot;\omega_k)` of :math:`a_k g_k(\omega_k + \sqrt{1-q_k}u)` and of
:math:`N(0,\Delta)`. By Stein's lemma
:math:`\partial_{\omega_k} p_k(s) = E_u[(u/\sqrt{1-q_k})\,\delta(s - a_kg_k(\omega_k+\sqrt{1-q_k}u))]`,
so :math:`\partial_{\omega_k} Z_{out}` is the same convolution with the k-th law replaced by this
signed measure. This module returns, per draw of :math:`\omega`,

* the Fisher integrals :math:`F_k = \int (\partial_{\omega_k} Z_{out})^2/Z_{out}\,dy
  = E_{y|\omega}[g_{out,k}^2]` (the state evolution's :math:`\hat q_k = \alpha E_\omega F_k`);
* the He2 responses :math:`R_k = \int (Z^{(2)}_k)^2/Z_{out}\,dy = E_{y|\omega}[(E[He_2(z_k)\mid y,\omega])^2]`
  for directions with :math:`q_k = 0` (the linear stability of :math:`q_k = 0`), where
  :math:`Z^{(2)}_k` carries the weight :math:`He_2(u)` on the k-th law;
* the entropy integral :math:`\int Z_{out}\log Z_{out}\,dy` (free entropy).

Numerics (one y-grid per draw, N points): each law is the push-forward of
:math:`N(0, 1)` by a piecewise-linear interpolation of
:math:`u \mapsto a_kg_k(\omega_k + \sqrt{1-q_k}u)` on uniform u-segments of width ``du``
on :math:`|u| \le` ``u_cut``, each segment's exact Gaussian mass (and Stein / He2 weight)
spread uniformly over its image and assigned to the grid with the hat kernel. Unlike point
masses, this stays smooth when a segment's image is wider than a grid cell, and the hat
kernel keeps the first moment, so the dipole of a nearly known direction survives. The
laws are convolved by FFT (prefix/suffix products give every leave-one-out convolution
with O(m) transforms), the noise enters exactly as :math:`e^{-\Delta t^2/2}`, and every
integral is Richardson-extrapolated from N and N/2 points (the hat kernel's error is
O(h^2)); :attr:`ChannelIntegrals.error` is the size of that correction.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy.special import ndtr

from theory import HierarchicalModel
from theory.links import is_even
from theory.parsing import Z, parse_link  # noqa: F401 (doctest)

from ..conditional_law import NoiselessLaw
from ..label_law import check_model, link_function

__all__ = ["ChannelResolution", "ChannelIntegrals", "OutputChannel", "leave_one_out", "turning_points"]

_SQRT2PI = np.sqrt(2 * np.pi)
_NOISE_SIGMAS = 8.0  # the noise law is held on +-8 sd (mass outside 1e-15)
_ZERO = 1e-12        # grid masses below this fraction of the peak count as empty (FFT round-off)
_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class ChannelResolution:
    """Discretisation of the channel (the defaults give F_k to about 1e-3 relative or better).

    n_grid : least y-grid points per draw (a power of two >= 64; Richardson with half as many)
    cells_per_sigma : with noise (Delta > 0), the grid is refined (doubling n) until the noise
        standard deviation spans at least this many cells, up to ``max_grid`` points
    max_grid : the largest grid (a power of two >= n_grid)
    u_cut  : each u_k is held on [-u_cut, u_cut] (Gaussian mass outside: 2 Phi(-u_cut))
    du     : width of the u-segments of the piecewise-linear push-forward
    """

    n_grid: int = 1024
    u_cut: float = 5.0
    du: float = 0.04
    cells_per_sigma: float = 8.0
    max_grid: int = 65536

    def __post_init__(self):
        for name in ("n_grid", "max_grid"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 64 or n & (n - 1):
                raise ValueError(f"{name}: must be a power of two >= 64, got {n!r}")
        if self.max_grid < self.n_grid:
            raise ValueError(f"max_grid: must be >= n_grid = {self.n_grid}, got {self.max_grid}")
        if not (np.isfinite(self.u_cut) and 3.0 <= self.u_cut <= 12.0):
            raise ValueError(f"u_cut: must lie in [3, 12], got {self.u_cut!r}")
        if not (np.isfinite(self.du) and 1e-4 <= self.du <= 0.25):
            raise ValueError(f"du: must lie in [1e-4, 0.25], got {self.du!r}")
        if not (np.isfinite(self.cells_per_sigma) and 0 <= self.cells_per_sigma <= 1000):
            raise ValueError(f"cells_per_sigma: must lie in [0, 1000], got {self.cells_per_sigma!r}")

    def refined(self) -> "ChannelResolution":
        """Twice the resolution in every discretisation parameter (for accuracy checks)."""
        return ChannelResolution(n_grid=2 * self.n_grid, u_cut=self.u_cut + 0.5, du=self.du / 2,
                                 cells_per_sigma=2 * self.cells_per_sigma, max_grid=2 * self.max_grid)


@dataclass(frozen=True)
class ChannelIntegrals:
    """Per-draw integrals (rows: draws of omega); see the module docstring."""

    fisher: np.ndarray           # (M, m); inf for known directions
    response: np.ndarray         # (M, len(response directions))
    entropy: np.ndarray | None   # (M,) int Z log Z dy, or None
    error: float                 # largest Richardson correction, relative to the integral
    n_grid: int = 0              # the largest y-grid used


class OutputChannel:
    r"""The channel of one Model S (weights, links, noise), ready for repeated evaluation.

    >>> import numpy as np
    >>> from theory import HierarchicalModel
    >>> ch = OutputChannel(HierarchicalModel(m=1, link="z**2", gamma=1))
    >>> # q = 0, omega = 0: E[(E[He2(z)|y])^2] = E[(z^2 - 1)^2] = 2 for y = z^2
    >>> r = ch.integrals(np.zeros(1), np.zeros((1, 1)), response=[0])
    >>> round(float(r.response[0, 0]), 2)
    2.0
    """

    def __init__(self, model: HierarchicalModel, resolution: ChannelResolution | None = None):
        check_model(model)
        self.model = model
        self.resolution = resolution or ChannelResolution()
        self.m = model.m
        self.a = np.array(model.weight_array)
        self.links = [link_function(model.link_of(k + 1)) for k in range(self.m)]
        self.even = np.array([is_even(model.link_of(k + 1)) for k in range(self.m)])
        self.delta = float(model.delta)
        r = self.resolution
        n = int(np.ceil(2 * r.u_cut / r.du))
        self.u = np.linspace(-r.u_cut, r.u_cut, n + 1)
        self.turning = [turning_points(model.link_of(k + 1)) for k in range(self.m)]

    # -- public -------------------------------------------------------------------------
    def integrals(self, q, omega, *, known=(), response=(), entropy: bool = False,
                  chunk: int = 128, n_min: int = 0) -> ChannelIntegrals:
        """Fisher integrals (and He2 responses, entropy) for each row of ``omega``.

        Parameters
        ----------
        q : (m,) overlaps in [0, 1); directions in ``known`` are ignored (treated as q = 1).
        omega : (M, m) draws of omega (rows).
        known : directions (0-based) whose term is known exactly and removed from y.
        response : directions (0-based, q_k = 0, not known) whose He2 response is wanted.
        entropy : also return int Z log Z dy.
        n_min : use at least this many grid points (a solver keeps the grid fixed across its
            iterations with it, so that the integrals stay continuous in q).
        """
        q = np.asarray(q, dtype=float)
        omega = np.atleast_2d(np.asarray(omega, dtype=float))
        m = self.m
        if q.shape != (m,) or omega.ndim != 2 or omega.shape[1] != m:
            raise ValueError(f"q, omega: expected shapes ({m},) and (M, {m}), got {q.shape} and {omega.shape}")
        known = sorted({int(k) for k in known})
        response = [int(k) for k in response]
        if any(not 0 <= k < m for k in known + response):
            raise ValueError(f"known, response: directions must lie in [0, {m - 1}]")
        if any(k in known or q[k] != 0 for k in response):
            raise ValueError("response: the He2 response is the stability of q_k = 0; give directions with "
                             "q_k = 0 that are not known")
        free = [k for k in range(m) if k not in known]
        if np.any(~np.isfinite(q[free])) or np.any(q[free] < 0) or np.any(q[free] >= 1):
            raise ValueError("q: every overlap of a direction that is not known must lie in [0, 1)")
        M = omega.shape[0]
        fisher = np.full((M, m), np.inf)
        resp = np.zeros((M, len(response)))
        ent = np.zeros(M) if entropy else None
        err = 0.0
        slices = [slice(s, min(M, s + chunk)) for s in range(0, M, chunk)]
        work = lambda sl: self._chunk(q, omega[sl], free, response, entropy, n_min)  # noqa: E731
        if len(slices) > 1 and _THREADS > 1:  # numpy and scipy.fft release the GIL in the heavy loops
            with ThreadPoolExecutor(_THREADS) as pool:
                results = list(pool.map(work, slices))
        else:
            results = [work(sl) for sl in slices]
        n_used = 0
        for sl, (f, r, e, er, n) in zip(slices, results):
            fisher[sl][:, free] = f
            resp[sl] = r
            if entropy:
                ent[sl] = e
            err = max(err, er)
            n_used = max(n_used, n)
        return ChannelIntegrals(fisher=fisher, response=resp, entropy=ent, error=err, n_grid=n_used)

    def _segments(self, k, omega_k, c_k, response, curvature=False):
        r"""Segment ends and exact segment weights (mass, d mass/d omega_k[, He2][, d^2 mass/d omega_k^2])
        for one direction (the last one with ``curvature``, for the posterior of
        :mod:`numerics.bayes.posterior`).

        Even link: y depends on t = |z| only, and t has the folded density
        :math:`(\varphi((t-\omega)/c) + \varphi((t+\omega)/c))/c`; the segments are laid in t (the
        folded u-grid plus 0 and g's turning points) and their weights are exact differences of
        Phi and phi, so both branches z > 0 and z < 0 share one discretisation and the
        O(omega) difference that carries the information about omega is exact (a separate
        discretisation of the two branches leaves an O(du) error in it, 3% at q = 1e-3).
        Other links: segments in u (the uniform grid plus the preimages of g's turning points,
        so no segment straddles a fold) with Stein weights :math:`\int u\varphi/c`.
        """
        M = omega_k.size
        turning = self.turning[k]
        om = omega_k[:, None]
        if self.even[k]:
            t_turn = np.concatenate([[0.0], turning[turning > 0]])
            t = np.abs(om + c_k * self.u[None, :])
            # the folded range is [0, |omega| + c U] when the u-range covers z = 0, else
            # [|omega| - c U, |omega| + c U]; turning points are added inside it only (outside
            # they would stretch the span)
            U = c_k * self.u[-1]
            t_lo = np.maximum(np.abs(om) - U, 0.0)
            extra = np.clip(np.broadcast_to(t_turn, (M, t_turn.size)), t_lo, t.max(axis=1, keepdims=True))
            t = np.sort(np.concatenate([t, extra], axis=1), axis=1)
            am, ap = (t - om) / c_k, (t + om) / c_k
            phm, php = np.exp(-am**2 / 2) / _SQRT2PI, np.exp(-ap**2 / 2) / _SQRT2PI
            mass = np.diff(ndtr(am), axis=1) + np.diff(ndtr(ap), axis=1)
            dmass = (-np.diff(phm, axis=1) + np.diff(php, axis=1)) / c_k
            weights = [mass, dmass]
            if k in response:  # q_k = 0: omega_k = 0, c_k = 1, weight 2 (t^2 - 1) phi(t)
                weights.append(-2 * np.diff(t * np.exp(-t**2 / 2) / _SQRT2PI, axis=1))
            if curvature:  # d/d omega of -phi(a_-)/c + phi(a_+)/c
                weights.append(np.diff(-am * phm - ap * php, axis=1) / c_k**2)
            return t, weights
        u = np.broadcast_to(self.u, (M, self.u.size))
        if turning.size:
            extra = np.clip((turning[None, :] - om) / c_k, self.u[0], self.u[-1])
            u = np.sort(np.concatenate([u, extra], axis=1), axis=1)
        phi = np.exp(-u**2 / 2) / _SQRT2PI
        weights = [np.diff(ndtr(u), axis=1), -np.diff(phi, axis=1) / c_k]
        if k in response:
            weights.append(-np.diff(u * phi, axis=1))
        if curvature:  # Stein twice: int (u^2 - 1) phi / c^2 = [-u phi] / c^2
            weights.append(-np.diff(u * phi, axis=1) / c_k**2)
        return om + c_k * u, weights

    # -- one chunk of draws ------------------------------------------------------------
    def _layout(self, omega, c, free, response=(), n_min=0, curvature=False):
        """Segment images and weights of every free direction, each law's lower end ``lo``, the
        total span of y and the grid size N (the noise resolved by ``cells_per_sigma``).
        On a grid of N points and spacing h, law k's node j sits at ``lo[k] + j h``."""
        pos, weights = {}, {}
        for k in free:
            ck = c[:, k:k + 1] if np.ndim(c) == 2 else c[k]   # per draw (M, m) or per direction (m,)
            z, weights[k] = self._segments(k, omega[:, k], ck, response, curvature)
            # each segment's image from just inside its ends: at a kink node the value of g is
            # that of either side (sign(0) = 0), and a segment must take the one of its own side
            dz = 1e-9 * np.diff(z, axis=1)
            pos[k] = (self.a[k] * self.links[k](z[:, :-1] + dz), self.a[k] * self.links[k](z[:, 1:] - dz))
        lo = {k: np.minimum(pos[k][0].min(axis=1), pos[k][1].min(axis=1)) for k in free}
        sd = np.sqrt(self.delta)
        span = sum(np.maximum(pos[k][0].max(axis=1), pos[k][1].max(axis=1)) - lo[k] for k in free) \
            + 2 * _NOISE_SIGMAS * sd
        span = np.maximum(span, 1e-300)
        return pos, weights, lo, span, int(np.max(self.grid_sizes(span, n_min)))

    def grid_sizes(self, span, n_min=0):
        """The y-grid size for each draw's span: at least ``n_grid`` (and ``n_min``) points, and
        with noise the power of two that puts ``cells_per_sigma`` cells in one noise standard
        deviation, up to ``max_grid``."""
        res = self.resolution
        span = np.asarray(span, dtype=float)
        N = np.full(span.shape, max(res.n_grid, int(n_min)), dtype=np.int64)
        sd = np.sqrt(self.delta)
        if sd > 0 and res.cells_per_sigma > 0:  # resolve the noise: sd >= cells_per_sigma cells
            need = np.maximum(span * res.cells_per_sigma / sd, 1.0)
            N = np.minimum(res.max_grid, np.maximum(N, 2 ** np.ceil(np.log2(need)).astype(np.int64)))
        return N

    def _noise_factor(self, n, h):
        r"""The noise's characteristic function on an n-point grid of spacing h (M,), shifted by
        +8 sd so that its law sits on the grid: the convolution's node J is at
        :math:`\sum_k lo_k - 8\sqrt\Delta + J h`."""
        freq = np.arange(n // 2 + 1)
        if self.delta <= 0:
            return np.ones((h.size, freq.size))
        sd = np.sqrt(self.delta)
        t = 2 * np.pi * freq[None, :] / (n * h[:, None])
        shift = _NOISE_SIGMAS * sd / h
        return np.exp(-self.delta * t**2 / 2 - 2j * np.pi * freq[None, :] * shift[:, None] / n)

    def _chunk(self, q, omega, free, response, entropy, n_min=0):
        pos, weights, lo, span, N = self._layout(omega, np.sqrt(1.0 - q), free, response, n_min)
        est = {}
        for n in (N, N // 2):
            # each law occupies (its span)/h + 2 cells, the noise 2*8 sd/h: leave that room
            h = span / (n - 2 * len(free) - 8)
            est[n] = self._on_grid(n, h, pos, weights, lo, free, response, entropy)
        out = []
        err = 0.0
        for fine, coarse in zip(est[N], est[N // 2]):
            if fine is None:
                out.append(None)
                continue
            out.append((4 * fine - coarse) / 3)
            if fine.size:
                scale = max(float(np.max(np.abs(out[-1]))), 1e-300)
                err = max(err, float(np.max(np.abs(fine - coarse))) / 3 / scale)
        return (*out, err, N)

    def _on_grid(self, n, h, pos, weights, lo, free, response, entropy):
        M = h.size
        P, D, R = {}, {}, {}
        for k in free:
            pmfs = _hat_pushforward(pos[k], weights[k], n, lo[k], h)
            P[k] = sfft.rfft(pmfs[0], n=n, axis=1)
            D[k] = sfft.rfft(pmfs[1], n=n, axis=1)
            if k in response:
                R[k] = sfft.rfft(pmfs[2], n=n, axis=1)
        total, loo = leave_one_out(self._noise_factor(n, h), [P[k] for k in free])
        Zg = sfft.irfft(total, n=n, axis=1)
        ok = Zg > _ZERO * Zg.max(axis=1, keepdims=True)
        inv = np.where(ok, 1.0 / np.where(ok, Zg, 1.0), 0.0)
        fisher = np.empty((M, len(free)))
        resp = np.empty((M, len(response)))
        for i, k in enumerate(free):
            dZ = sfft.irfft(loo[i] * D[k], n=n, axis=1)
            fisher[:, i] = np.einsum("ij,ij->i", dZ * dZ, inv)
            if k in response:
                rZ = sfft.irfft(loo[i] * R[k], n=n, axis=1)
                resp[:, response.index(k)] = np.einsum("ij,ij->i", rZ * rZ, inv)
        ent = None
        if entropy:
            Zp = np.where(ok, Zg, 1.0)
            ent = np.where(ok, Zg * np.log(Zp / h[:, None]), 0.0).sum(axis=1)
        return fisher, resp, ent


def leave_one_out(base, factors):
    """The product of ``base`` and all ``factors``, and for each i the product of ``base`` and all
    factors but the i-th, by prefix and suffix products (O(m) multiplications, no division):
    every leave-one-out convolution of the channel from m transforms.

    >>> total, loo = leave_one_out(1.0, [2.0, 3.0, 5.0])
    >>> total, loo
    (30.0, [15.0, 10.0, 6.0])
    """
    prefix = [base]
    for f in factors:
        prefix.append(prefix[-1] * f)
    suffix = [1.0]
    for f in reversed(factors):
        suffix.append(suffix[-1] * f)
    suffix = suffix[::-1]
    return prefix[-1], [prefix[i] * suffix[i + 1] for i in range(len(factors))]


def turning_points(link) -> np.ndarray:
    """The points where z -> g(z) turns or kinks: the ends of its constant and strictly monotone
    pieces (:class:`numerics.conditional_law.NoiselessLaw`).

    >>> turning_points(parse_link("He2/2 + He4/48")).tolist(), turning_points(parse_link("relu(z) + |z - 1|")).tolist()
    ([0.0], [0.0, 1.0])
    """
    return NoiselessLaw(link).breakpoints


def _hat_pushforward(ends, weights, n, lo, h):
    r"""Grid masses of the push-forward of segment weights by a piecewise-linear map.

    ``ends = (a, b)``, each (M, S), hold the images of the two ends of the S segments; segment j
    carries the weight ``w[j]`` spread uniformly over :math:`[\min(a_j, b_j), \max(a_j, b_j)]`.
    node k (position ``lo + k h``) receives :math:`\int \rho(y)\Lambda((y - lo)/h - k)\,dy`
    with the hat kernel :math:`\Lambda`. With :math:`H` the second antiderivative of the
    density (in grid units), node k gets :math:`H(k+1) - 2H(k) + H(k-1)`; a density step
    :math:`d` at :math:`x` adds :math:`d(\kappa - x)_+^2/2` to :math:`H(\kappa)`, which three
    cumulative sums rebuild from three deposits per step (one bincount for every weight at
    once). Segments whose image is shorter than 1e-7 cells (flat parts of g: atoms of the
    law) are deposited as points.
    """
    a, b = ends
    M = a.shape[0]
    K = len(weights)
    x0 = (np.minimum(a, b) - lo[:, None]) / h[:, None] + 1.0  # +1 leaves room for node k - 1
    x1 = (np.maximum(a, b) - lo[:, None]) / h[:, None] + 1.0
    length = x1 - x0
    flat = length < 1e-7
    inv_len = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, length))
    # only the cells the law reaches (plus the hat's neighbours) are filled; the FFT pads to n
    width = min(n + 5, int(np.ceil(np.max(x1))) + 4)
    L = M * width
    row = (np.arange(M) * width)[:, None]
    j0 = np.floor(x0).astype(np.int64)
    j1 = np.floor(x1).astype(np.int64)
    g0, g1 = 1.0 - (x0 - j0), 1.0 - (x1 - j1)
    # per step: (index offset, coefficient) for the A (g^2/2), B (g - 1/2) and C (1) deposits
    ia0, ib0, ia1, ib1 = (row + j0 + 1).ravel(), (row + j0 + 2).ravel(), (row + j1 + 1).ravel(), (row + j1 + 2).ravel()
    coef = np.stack([(g0 * g0 / 2), (g0 - 0.5), np.ones_like(g0), -(g1 * g1 / 2), -(g1 - 0.5),
                     -np.ones_like(g1)]) * inv_len  # (6, M, S)
    base = np.concatenate([ia0, ib0 + L, ib0 + 2 * L, ia1, ib1 + L, ib1 + 2 * L])
    idx = np.concatenate([base + t * 3 * L for t in range(K)])
    vals = np.concatenate([(coef * np.broadcast_to(w, a.shape)).ravel() for w in weights])
    ABC = np.bincount(idx, vals, minlength=3 * K * L).reshape(K, 3, M, width)
    Hc = np.cumsum(ABC[:, 0] + np.cumsum(ABC[:, 1] + np.cumsum(ABC[:, 2], axis=-1), axis=-1), axis=-1)
    pmf = Hc[..., 2:] - 2 * Hc[..., 1:-1] + Hc[..., :-2]
    if flat.any():
        xm = (x0 + x1) / 2
        jm = np.floor(xm).astype(np.int64)
        fm = (xm - jm)[flat]
        iP = np.concatenate([(row + jm)[flat], (row + jm + 1)[flat]])
        for t, w in enumerate(weights):
            wf = np.broadcast_to(w, a.shape)[flat]
            pts = np.bincount(iP, np.concatenate([wf * (1 - fm), wf * fm]), minlength=L).reshape(M, width)
            pmf[t] += pts[:, 1:width - 1]
    return list(pmf)
