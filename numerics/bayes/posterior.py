r"""The posterior of the pre-activations given one label: AMP's output function (docs/bayes.md, section 11).

For one sample with label :math:`y`, cavity mean :math:`\omega\in\mathbb R^m` and diagonal
cavity variance :math:`v` (the overlap matrix of Model S stays diagonal, docs/bayes.md §1;
``v`` is given per direction or per sample and direction), the pre-activations have the
prior :math:`z \sim N(\omega, \mathrm{diag}\,v)` and the label the likelihood
:math:`P(y\mid z) = N(y - \sum_k a_kg_k(z_k); 0, \Delta)`. AMP needs

.. math::
    g_k = \partial_{\omega_k}\log Z_{out} = \frac{E[z_k\mid y] - \omega_k}{v_k}, \qquad
    \partial_{\omega_k} g_k = \frac{\mathrm{Var}[z_k\mid y]/v_k - 1}{v_k}.

Write :math:`z_k = \omega_k + \sqrt{v_k}\,u`. The posterior of :math:`u` is
:math:`\varphi(u)\,\rho_{-k}(y - a_kg_k(\omega_k + \sqrt{v_k}u))` up to normalisation, where
:math:`\rho_{-k}` is the density of :math:`\sum_{j\ne k}a_jg_j(z_j) + \sqrt\Delta\,\xi` given
:math:`\omega`: the leave-one-out convolution of the output channel
(:mod:`numerics.bayes.channel`). So :math:`g_k = E[u\mid y]/\sqrt{v_k}` and
:math:`\partial_{\omega_k}g_k = (\mathrm{Var}[u\mid y] - 1)/v_k`, with the moments of u
taken by the trapezoid rule on a uniform u-grid over :math:`|u|\le` ``u_cut``:

* m = 1, :math:`\Delta > 0`: :math:`\rho` is the noise density itself, in closed form, and the
  weights are formed in log space (no underflow at small :math:`v` or large :math:`|y|`);
* m >= 2, :math:`\Delta > 0`: :math:`\rho_{-k}` is the channel's leave-one-out convolution on
  its y-grid (hat-kernel push-forwards and FFTs, prefix/suffix products: O(m) transforms per
  sample), read off at the points :math:`y - a_kg_k(\cdot)` by four-point cubic interpolation;
* m = 1, :math:`\Delta = 0`: the posterior sits on the preimages :math:`t` of y under
  :math:`a_1g_1`, with weights :math:`\varphi((t - \omega)/\sqrt v)/|g_1'(t)|` (log space).

The u-grid is refined (by doubling, up to ``MAX_U_NODES``) until :math:`a_kg_k` moves by at
most one noise standard deviation between neighbouring nodes. The likelihood is then a bump
at least one node wide in u, and the trapezoid rule on a Gaussian bump sampled at its own
width errs by about :math:`e^{-2\pi^2}\approx 3\times10^{-9}` (the rule is spectrally accurate
for smooth integrands). A sample whose likelihood vanishes on every node
(a label the current :math:`(\omega, v)` cannot explain; it happens only far off the
fixed point) gets :math:`g = \partial g = 0` and is counted in ``fallback``.

Examples
--------
>>> import numpy as np
>>> from theory import HierarchicalModel
>>> den = OutputDenoiser(HierarchicalModel(m=1, link="z**2", gamma=1))
>>> r = den(np.array([4.0]), np.array([[0.0]]), np.array([1.0]))   # z = +-2 equally likely
>>> round(float(r.g[0, 0]), 6), round(float(r.dg[0, 0]), 6)         # E[z|y] = 0, Var = 4
(0.0, 3.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from theory import HierarchicalModel

from ..conditional_law import NoiselessLaw
from .channel import _NOISE_SIGMAS, ChannelResolution, OutputChannel, _hat_pushforward, leave_one_out

__all__ = ["Denoised", "OutputDenoiser", "MAX_U_NODES", "DENOISER_RESOLUTION"]

#: the finest u-grid (nodes per direction and sample)
MAX_U_NODES = 8193
_STEP_PER_SD = 1.0   # a_k g_k moves by at most this many noise sd between u-nodes
#: the default discretisation: the noise resolved by 4 cells per sd, no larger floor on the grid
DENOISER_RESOLUTION = ChannelResolution(n_grid=64, cells_per_sigma=4.0, du=0.1)


@dataclass(frozen=True)
class Denoised:
    """g (n, m), its diagonal derivative dg = d g_k / d omega_k (n, m), and the number of samples
    whose likelihood vanished (set to g = dg = 0)."""

    g: np.ndarray
    dg: np.ndarray
    fallback: int


class OutputDenoiser:
    r""":math:`g_{out}` and :math:`\partial_\omega g_{out}` of Model S, vectorised over samples.

    Parameters
    ----------
    model : theory.HierarchicalModel with ``delta > 0``, or ``m = 1`` and ``delta = 0`` with a link
        that has no flat piece (its posterior is then a finite set of preimages).
    resolution : :class:`~numerics.bayes.channel.ChannelResolution` (u-grid: ``u_cut``, ``du``;
        y-grid of the leave-one-out densities for m >= 2).
    """

    def __init__(self, model: HierarchicalModel, resolution: ChannelResolution | None = None):
        self.channel = OutputChannel(model, resolution or DENOISER_RESOLUTION)
        self.m = model.m
        self.delta = float(model.delta)
        if self.delta == 0:
            if self.m != 1:
                raise ValueError(f"delta: the posterior of noiseless labels is implemented for m = 1 only (for m >= 2 "
                                 f"it lives on a curve); got m = {self.m} and delta = 0: give delta > 0")
            self.law = NoiselessLaw(model.link_of(1))
            if self.law.atoms:
                raise ValueError(f"link: the noiseless posterior needs a link without flat pieces; "
                                 f"{model.link_of(1)} has {len(self.law.atoms)} (give delta > 0)")

    def __call__(self, y, omega, v, chunk: int = 512) -> Denoised:
        y = np.asarray(y, dtype=float).ravel()
        omega = np.asarray(omega, dtype=float)
        v = np.asarray(v, dtype=float)
        m = self.m
        if omega.shape != (y.size, m):
            raise ValueError(f"omega: expected shape ({y.size}, {m}), got {omega.shape}")
        if v.shape not in ((m,), (y.size, m)) or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"v: the cavity variances must be finite numbers > 0 of shape ({m},) or ({y.size}, {m}), "
                             f"got shape {v.shape}")
        v = np.broadcast_to(v, (y.size, m))
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(omega))):
            raise ValueError("y, omega: must be finite")
        g = np.zeros((y.size, m))
        dg = np.zeros((y.size, m))
        bad = 0
        for s in range(0, y.size, chunk):
            sl = slice(s, min(y.size, s + chunk))
            if self.delta == 0:
                out = self._preimages(y[sl], omega[sl, 0], v[sl, 0])
            elif m == 1:
                out = self._single(y[sl], omega[sl, 0], v[sl, 0])
            else:
                out = self._coupled(y[sl], omega[sl], v[sl])
            g[sl], dg[sl], nb = out
            bad += nb
        return Denoised(g=g, dg=dg, fallback=int(bad))

    # -- the u-grid and the moments ----------------------------------------------------
    def _u_grid(self, k, omega_k, c):
        """Uniform u-nodes fine enough for the likelihood, and a_k g_k at omega_k + c u (c per sample)."""
        ch = self.channel
        u = ch.u
        while True:
            G = ch.a[k] * ch.links[k](omega_k[:, None] + c[:, None] * u[None, :])
            step = float(np.max(np.abs(np.diff(G, axis=1)))) if u.size > 1 else 0.0
            if step <= _STEP_PER_SD * np.sqrt(self.delta) or 2 * u.size - 1 > MAX_U_NODES:
                return u, G
            u = np.linspace(u[0], u[-1], 2 * u.size - 1)

    @staticmethod
    def _moments(logw, u, c):
        """g = E[u]/c and dg = (Var u - 1)/c^2 from log-weights on the u-nodes (rows: samples)."""
        top = np.max(logw, axis=1, keepdims=True)
        ok = np.isfinite(top[:, 0])
        w = np.exp(logw - np.where(np.isfinite(top), top, 0.0))
        w[:, [0, -1]] *= 0.5  # trapezoid
        tot = w.sum(axis=1)
        ok &= tot > 0
        tot = np.where(ok, tot, 1.0)
        mu = (w @ u) / tot
        var = (w @ (u * u)) / tot - mu**2
        # Var u - 1 is O(v) for a nearly known direction: take it against the prior's variance on
        # the same truncated grid (1 - 1.5e-5 at u_cut = 5), whose bias would otherwise be divided by v
        w0 = np.exp(-u * u / 2)
        w0[[0, -1]] *= 0.5
        var0 = (w0 @ (u * u)) / w0.sum()
        g = np.where(ok, mu / c, 0.0)
        dg = np.where(ok, (var - var0) / c**2, 0.0)
        return g, dg, int(np.sum(~ok))

    def _single(self, y, omega, v):
        c = np.sqrt(v)
        u, G = self._u_grid(0, omega, c)
        logw = -u[None, :] ** 2 / 2 - (y[:, None] - G) ** 2 / (2 * self.delta)
        g, dg, bad = self._moments(logw, u, c)
        return g[:, None], dg[:, None], bad

    def _coupled(self, y, omega, v):
        """m >= 2: the samples are grouped by the y-grid size their own span needs, so that one
        sample far out (a large |omega_k|) does not set the grid of the whole chunk."""
        ch = self.channel
        c = np.sqrt(v)       # (M, m)
        free = list(range(self.m))
        pos, weights, lo, span, _ = ch._layout(omega, c, free)
        sizes = ch.grid_sizes(span)
        g = np.zeros(omega.shape)
        dg = np.zeros(omega.shape)
        bad = 0
        for N in np.unique(sizes):
            r = np.flatnonzero(sizes == N)
            sub = lambda arr: arr[r]  # noqa: E731
            gr, dgr, b = self._coupled_on_grid(y[r], omega[r], c[r], int(N), span[r],
                                               {k: tuple(map(sub, pos[k])) for k in free},
                                               {k: tuple(map(sub, weights[k])) for k in free},
                                               {k: lo[k][r] for k in free})
            g[r], dg[r] = gr, dgr
            bad += b
        return g, dg, bad

    def _coupled_on_grid(self, y, omega, c, N, span, pos, weights, lo):
        ch = self.channel
        M, m = omega.shape
        free = list(range(m))
        h = span / (N - 2 * m - 8)
        P = [sfft.rfft(_hat_pushforward(pos[k], weights[k][:1], N, lo[k], h)[0], n=N, axis=1) for k in free]
        _, loo = leave_one_out(ch._noise_factor(N, h), P)
        total_lo = sum(lo[k] for k in free) - _NOISE_SIGMAS * np.sqrt(self.delta)
        g = np.zeros((M, m))
        dg = np.zeros((M, m))
        bad = np.zeros(M, dtype=bool)
        rows = np.arange(M)[:, None]
        for k in free:
            rho = sfft.irfft(loo[k], n=N, axis=1)
            rho = np.maximum(rho, 0.0)            # FFT round-off below zero
            y0 = total_lo - lo[k]                 # node J of the leave-one-out law sits at y0 + J h
            u, G = self._u_grid(k, omega[:, k], c[:, k])
            x = ((y[:, None] - G) - y0[:, None]) / h[:, None]
            j = np.floor(x).astype(np.int64)
            t = x - j
            inside = (j >= 1) & (j <= N - 3)
            j = np.clip(j, 1, N - 3)
            # four-point (cubic Lagrange) interpolation of the density between its nodes
            coef = (-t * (t - 1) * (t - 2) / 6, (t + 1) * (t - 1) * (t - 2) / 2,
                    -(t + 1) * t * (t - 2) / 2, (t + 1) * t * (t - 1) / 6)
            val = sum(cf * rho[rows, j + off] for cf, off in zip(coef, (-1, 0, 1, 2)))
            val = np.where(inside, np.maximum(val, 0.0), 0.0)
            with np.errstate(divide="ignore"):
                logw = -u[None, :] ** 2 / 2 + np.log(val)
            gk, dgk, _ = self._moments(logw, u, c[:, k])
            g[:, k], dg[:, k] = gk, dgk
            bad |= ~np.isfinite(np.max(logw, axis=1))
        g[bad] = 0.0
        dg[bad] = 0.0
        return g, dg, int(bad.sum())

    def _preimages(self, y, omega, v):
        """Noiseless m = 1: the posterior is a set of atoms at the preimages of y."""
        a = float(self.channel.a[0])
        ys = y / a
        logs, ts = [], []
        for s, t, f, df in self.law.monotone:
            tt = self.law._preimages(ys, s, t, f)
            ok = np.isfinite(tt)
            tt0 = np.where(ok, tt, 0.0)
            with np.errstate(divide="ignore"):
                lw = -(tt0 - omega) ** 2 / (2 * v) - np.log(np.maximum(np.abs(df(tt0)), 1e-300))
            logs.append(np.where(ok, lw, -np.inf))
            ts.append(tt0)
        L, T = np.stack(logs, axis=1), np.stack(ts, axis=1)
        top = L.max(axis=1, keepdims=True)
        ok = np.isfinite(top[:, 0])
        w = np.exp(L - np.where(np.isfinite(top), top, 0.0))
        tot = np.where(ok, w.sum(axis=1), 1.0)
        mean = (w * T).sum(axis=1) / tot
        var = np.maximum((w * T * T).sum(axis=1) / tot - mean**2, 0.0)
        g = np.where(ok, (mean - omega) / v, 0.0)
        dg = np.where(ok, (var / v - 1.0) / v, 0.0)
        return g[:, None], dg[:, None], int(np.sum(~ok))
