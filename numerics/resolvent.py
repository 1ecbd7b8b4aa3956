r"""d = infinity spectrum of :math:`D_n = \frac1n\sum_i T(y_i)x_ix_i^\top` (docs/theory.md §2.2).

With :math:`\tau = T(Y)` and :math:`\lambda > \tau_{\max}` every formula is built from
four functions of :math:`\lambda` alone,

.. math::
    G_1 = E\Big[\frac{\tau}{\lambda-\tau}\Big],\quad
    G_2 = E\Big[\frac{\tau^2}{(\lambda-\tau)^2}\Big],\quad
    F_k = E\Big[\frac{\tau(z_k^2-1)}{\lambda-\tau}\Big],\quad
    H_k = E\Big[\frac{\tau^2 z_k^2}{(\lambda-\tau)^2}\Big],

since :math:`\psi_\alpha = \lambda(1/\alpha + G_1)`, :math:`\psi'_\alpha = 1/\alpha - G_2`,
:math:`\phi_k = \lambda(F_k + G_1)`, :math:`\phi'_k = -H_k`. Hence

* bulk edge: :math:`G_2(\bar\lambda) = 1/\alpha`, :math:`b = \psi_\alpha(\bar\lambda)`;
* outlier k iff :math:`F_k(\bar\lambda) > G_2(\bar\lambda)`; it sits at :math:`\psi_\alpha(\lambda_k^*)`
  with :math:`F_k(\lambda^*_k) = 1/\alpha`, and
  :math:`q_k = \psi'/(\psi' + H_k)` there;
* threshold: :math:`F_k(\lambda) = G_2(\lambda)` at :math:`\lambda_k`, :math:`\alpha_k = 1/G_2(\lambda_k)`.

The functions are tabulated once per label law on a grid in
:math:`u = \log(\lambda - \tau_{\max})` (cubic splines), roots are bracketed on the
table, and the brackets grow beyond it when needed.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from theory.model import require

from .label_law import LabelLaw

__all__ = ["ConvergenceError", "SpectralFunctions", "edge_of_atoms", "outlier_of_atoms", "resolvent_sums"]

_CHUNK = 4_000_000  # kernel entries per block


class ConvergenceError(RuntimeError):
    """A numerical solve that could not verify its result. The message names the
    quantity, the alpha and a remedy."""


def edge_of_atoms(tau, weights, alpha: float, tau_sup: float | None = None) -> tuple[float, float, float]:
    r"""Bulk edge of a discrete law of tau (atoms ``tau`` with ``weights`` summing to 1) at ratio alpha:
    :math:`\bar\lambda` solving :math:`G_2(\bar\lambda) = 1/\alpha`, the edge
    :math:`\psi_\alpha(\bar\lambda) = \bar\lambda(1/\alpha + G_1)`, and
    :math:`\psi''_\alpha(\bar\lambda) = 2E[\tau^2/(\bar\lambda-\tau)^3]` (the Tracy-Widom scale of
    docs/theory.md §4). Solved by ``brentq`` in :math:`\log(\lambda - \max\tau)` with exact sums:
    the direct route for one law at one alpha (e.g. the n labels of a simulation), where
    :class:`SpectralFunctions`' tables would cost more than they save.

    ``tau_sup`` (a label law's ess sup T, at or above every atom) searches above it instead of
    above the largest atom, and returns :math:`\bar\lambda = \sup T` in the boundary regime
    :math:`G_2(\sup T) \le 1/\alpha`. A discretised law needs it: its Richardson-extrapolated
    masses can be negative (of order 1e-17) at the top atoms, where :math:`G_2` would then change sign.

    >>> round(edge_of_atoms(np.ones(1), np.ones(1), 4.0)[1], 12)     # T = 1: Marchenko-Pastur (1 + 1/2)^2
    2.25
    """
    tau = np.asarray(tau, dtype=float)
    w = np.asarray(weights, dtype=float)
    tmax = float(tau.max()) if tau_sup is None else float(tau_sup)
    G2 = lambda lam: float(w @ (tau**2 / (lam - tau) ** 2))  # noqa: E731
    if tau_sup is not None and tau.max() < tmax and G2(tmax) * alpha <= 1:  # boundary regime
        return tmax, tmax * (1 / alpha + float(w @ (tau / (tmax - tau)))), 2 * float(w @ (tau**2 / (tmax - tau) ** 3))
    f = lambda u: np.log(G2(tmax + np.exp(u))) + np.log(alpha)  # noqa: E731
    lo, hi = np.log(1e-12 + 1e-9 * abs(tmax)), 0.0
    while f(hi) > 0:
        hi += 2.0
    while f(lo) < 0:
        lo -= 2.0
    lam = tmax + float(np.exp(brentq(f, lo, hi, xtol=1e-12)))
    edge = lam * (1 / alpha + float(w @ (tau / (lam - tau))))
    psi2 = 2 * float(w @ (tau**2 / (lam - tau) ** 3))
    return lam, edge, psi2


def outlier_of_atoms(tau, p, r, alpha: float, lbar: float) -> float | None:
    r"""The outlier :math:`\lambda^*` of one direction of a discrete law (atoms ``tau``, masses ``p``,
    z^2-weighted masses ``r``, one row) at ratio alpha: the root of :math:`F(\lambda) = 1/\alpha` above the
    bulk edge ``lbar``, by ``brentq`` on a bracket doubled until F is below 1/alpha. None when
    :math:`F(\bar\lambda) \le 1/\alpha` (no outlier).

    >>> round(outlier_of_atoms(np.array([1.0]), np.array([1.0]), np.array([2.0]), 2.0, 1.5), 12)   # F = 1/(lam - 1)
    3.0
    """
    f = lambda lam: resolvent_sums(tau, p, r, lam)[2][0, 0] - 1 / alpha  # noqa: E731
    if not f(lbar) > 0:
        return None
    hi = lbar + max(1.0, abs(lbar))
    while f(hi) > 0:
        hi = lbar + 2 * (hi - lbar)
    return float(brentq(f, lbar, hi, xtol=1e-13 * max(1.0, abs(lbar))))


class _Splines:
    """Cubic splines of the rows of a table, built on first use (m may be 10^4 rows)."""

    def __init__(self, u, table):
        self.u, self.table, self._s = u, table, {}

    def __getitem__(self, k):
        s = self._s.get(k)
        if s is None:
            s = self._s[k] = CubicSpline(self.u, self.table[k])
        return s


def resolvent_sums(tau, p, r, lam):
    r"""The atom sums :math:`G_1, G_2, F_k, H_k` (docs/theory.md §2.2) of a label law at the points
    ``lam``, real or complex, with no domain check (:meth:`SpectralFunctions.exact` checks
    :math:`\lambda > \sup T`; ``numerics.edge_overlap`` continues them to complex :math:`\lambda`):

    .. math:: G_1 = \sum_a p_a K_a,\; G_2 = \sum_a p_a K_a^2,\; F_k = \sum_a (r_{ka} - p_a) K_a,\;
              H_k = \sum_a r_{ka} K_a^2,\qquad K_a = \tau_a/(\lambda - \tau_a).

    ``r`` is m x N (m may be 0). Returns (G1, G2, F, H), F and H of shape (m, len(lam)).

    >>> import numpy as np
    >>> G1, G2, F, H = resolvent_sums(np.array([1.0]), np.array([1.0]), np.array([[2.0]]), [3.0])
    >>> float(G1[0]), float(G2[0]), float(F[0, 0]), float(H[0, 0])   # K = 1/2
    (0.5, 0.25, 0.5, 0.5)
    """
    lam = np.atleast_1d(np.asarray(lam))
    r = np.asarray(r, dtype=float).reshape(-1, tau.size)
    P1 = np.vstack([p, r - p]).T  # N x (1+m)
    P2 = np.vstack([p, r]).T
    rows = max(1, _CHUNK // max(tau.size, 1))
    dtype = np.result_type(lam.dtype, np.float64)
    out1 = np.empty((lam.size, P1.shape[1]), dtype=dtype)
    out2 = np.empty_like(out1)
    for s in range(0, lam.size, rows):
        K1 = tau[None, :] / (lam[s: s + rows, None] - tau[None, :])
        out1[s: s + rows] = K1 @ P1
        np.square(K1, out=K1)
        out2[s: s + rows] = K1 @ P2
    return out1[:, 0], out2[:, 0], out1[:, 1:].T, out2[:, 1:].T


class SpectralFunctions:
    """G1, G2, F_k, H_k of a label law: exact (atom sums) and tabulated (splines).

    With a large-m law (``law.tail``, docs/numerics.md §"Large m") the directions past the K exact
    ones are added on demand by :meth:`extend`: their F_k, H_k come from the per-link node tables,
    interpolated in the weight a_k.
    """

    def __init__(self, law: LabelLaw, n_table: int = 1200, u_span=(-16.0, 14.0)):
        require(law, LabelLaw, "law")
        self.law = law
        self.m = law.m
        self.tail = law.tail
        tau, p, r = law.tau, law.p, law.r
        self.tmax = float(law.tau_sup) if np.isfinite(law.tau_sup) else float(tau.max())
        self._tau, self._p, self._r = tau, p, r
        self.Etau2 = float(self._p @ self._tau**2)
        self.theta = (self._r - self._p) @ self._tau  # E[tau He_2(z_k)], the spike strengths
        # a robust spread of tau (1%-99% mass quantiles): T may reach -oo (1 - 1/y near y = 0)
        order = np.argsort(tau)
        cdf = np.cumsum(np.abs(p[order])) / np.abs(p).sum()
        q01, q99 = tau[order][np.searchsorted(cdf, [0.01, 0.99]).clip(0, tau.size - 1)]
        self.scale = max(float(q99 - q01), 1e-6 * max(1.0, abs(self.tmax)))
        lo, hi = u_span
        self.u = np.linspace(np.log(self.scale) + lo, np.log(self.scale) + hi, n_table)
        G1, G2, F, H = self.exact(self.tmax + np.exp(self.u))
        # values at lambda = sup T itself when no atom sits there (then they are finite):
        # the boundary regime (lambda_bar = sup T) uses them exactly
        self.open_top = bool(tau.max() < self.tmax)
        if self.open_top:
            self.G1_0, self.G2_0, F0, H0 = self.exact(np.array([self.tmax]), allow_sup=True)
            self.G1_0, self.G2_0, self.F_0, self.H_0 = float(self.G1_0[0]), float(self.G2_0[0]), F0[:, 0], H0[:, 0]
        self._s_G1 = CubicSpline(self.u, G1)
        self._s_lG2 = CubicSpline(self.u, np.log(G2))
        self._G2_table = G2
        self._F_table = F
        self._H_table = H
        if self.tail is not None:
            self._D = law.tail_rows
            self._nodes = np.concatenate([g.nodes for g in self.tail.groups])
            FD, HD = self._node_sums(self.tmax + np.exp(self.u))
            self._FD_table, self._HD_table = FD / self._nodes[:, None], HD / self._nodes[:, None]
            self._theta_D = (self._D @ self._tau) / self._nodes
            if self.open_top:
                FD0, HD0 = self._node_sums(np.array([self.tmax]))
                self._FD0, self._HD0 = FD0[:, 0] / self._nodes, HD0[:, 0] / self._nodes
        self._s_Fk = _Splines(self.u, self._F_table)
        self._s_Hk = _Splines(self.u, self._H_table)

    # -- large m: tail directions from the node tables ------------------------------------
    def _node_sums(self, lam):
        """(sum_j D_j K1, sum_j D_j K2) at lam for the tail node rows D (docs/numerics.md §"Large m")."""
        tau = self._tau
        rows = max(1, _CHUNK // max(tau.size, 1))
        F = np.empty((self._D.shape[0], lam.size))
        H = np.empty_like(F)
        for s in range(0, lam.size, rows):
            K1 = tau[None, :] / (lam[s: s + rows, None] - tau[None, :])
            F[:, s: s + rows] = self._D @ K1.T
            np.square(K1, out=K1)
            H[:, s: s + rows] = self._D @ K1.T
        return F, H

    def _interp(self, ks):
        """(a_k, L): the weights of tail directions ks (1-based) and their interpolation rows over all nodes."""
        from .tail_closure import interpolation_matrix, weights_of

        ks = np.asarray(ks)
        a = weights_of(self.tail.model, ks)
        L = np.zeros((ks.size, self._nodes.size))
        start = 0
        for gi, grp in enumerate(self.tail.groups):
            sel = np.array([self.tail.group_of(int(k)) == gi for k in ks], dtype=bool)
            if np.any(sel):
                L[sel, start: start + grp.nodes.size] = interpolation_matrix(grp.nodes, a[sel])
            start += grp.nodes.size
        return a, L

    def extend(self, n: int) -> None:
        """Represent directions 1..n (tail directions K < k <= n from the node tables)."""
        if n <= self.m:
            return
        if self.tail is None:
            raise ValueError(f"directions: this law holds {self.m} directions, got n = {n}")
        if self.tail.m != sp.oo and n > self.tail.m:
            raise ValueError(f"directions: the model has m = {self.tail.m}, got {n}")
        a, L = self._interp(np.arange(self.m + 1, n + 1))
        F = a[:, None] * (L @ self._FD_table)
        H = self._G2_table[None, :] + a[:, None] * (L @ self._HD_table)
        self._F_table = np.vstack([self._F_table, F])
        self._H_table = np.vstack([self._H_table, H])
        self.theta = np.concatenate([self.theta, a * (L @ self._theta_D)])
        if self.open_top:
            self.F_0 = np.concatenate([self.F_0, a * (L @ self._FD0)])
            self.H_0 = np.concatenate([self.H_0, self.G2_0 + a * (L @ self._HD0)])
        self.m = n
        self._s_Fk = _Splines(self.u, self._F_table)
        self._s_Hk = _Splines(self.u, self._H_table)

    # -- exact sums --------------------------------------------------------------------
    def exact(self, lam, which: slice | None = None, allow_sup: bool = False):
        """(G1, G2, F, H) at the points lam (F, H have shape (m, len(lam)))."""
        lam = np.atleast_1d(np.asarray(lam, dtype=float))
        if np.any(lam < self.tmax) or (not allow_sup and np.any(lam == self.tmax)):
            raise ValueError("lambda: the resolvent functions need lambda > sup T")
        K = self._r.shape[0]
        if which is not None and which.start is not None and which.start >= K:
            # a tail direction: the exact G1, G2 and the node sums, interpolated in a_k
            G1, G2, _, _ = self.exact(lam, which=slice(0, 0), allow_sup=allow_sup)
            a, L = self._interp(np.arange(which.start + 1, which.stop + 1))
            FD, HD = self._node_sums(lam)
            F = a[:, None] * (L @ (FD / self._nodes[:, None]))
            H = G2[None, :] + a[:, None] * (L @ (HD / self._nodes[:, None]))
            return G1, G2, F, H
        return resolvent_sums(self._tau, self._p, self._r if which is None else self._r[which], lam)

    # -- tabulated ----------------------------------------------------------------------
    def to_u(self, lam):
        return np.log(np.asarray(lam, dtype=float) - self.tmax)

    def to_lam(self, u):
        return self.tmax + np.exp(u)

    def G1(self, u):
        return self._s_G1(u)

    def G2(self, u):
        return np.exp(self._s_lG2(u))

    def F(self, u, k):
        return self._s_Fk[k](u)

    def H(self, u, k):
        return self._s_Hk[k](u)

    def in_table(self, u):
        return (u >= self.u[0]) & (u <= self.u[-1])

    def at(self, u, k: int):
        """(G1, G2, F_k, H_k) at the points u: splines inside the table, exact sums beyond it."""
        u = np.asarray(u, dtype=float)
        G1, G2, F, H = self.G1(u), self.G2(u), self.F(u, k), self.H(u, k)
        out = ~self.in_table(u)
        if np.any(out):
            e1, e2, ef, eh = self.exact(self.to_lam(u[out]), which=slice(k, k + 1))
            G1[out], G2[out], F[out], H[out] = e1, e2, ef[0], eh[0]
        return G1, G2, F, H

    # -- bulk edge ----------------------------------------------------------------------
    def lambda_bar_u(self, alphas):
        r"""u of :math:`\bar\lambda(\alpha)`: solves :math:`\log G_2 = -\log\alpha` (G2 decreasing)."""
        alphas = np.asarray(alphas, dtype=float)
        target = -np.log(alphas)
        lg = self._s_lG2(self.u)
        out = np.empty_like(target)
        # boundary regime: G2 stays below 1/alpha down to sup T, so psi is increasing on
        # (sup T, oo) and its infimum sits at lambda_bar = sup T (the table's first point,
        # lambda - sup T = 1e-7 * scale). With an atom at sup T, G2 -> oo and this never occurs.
        boundary = target > lg[0]
        if np.any(boundary) and self.lg0_slope() > 0.5:
            bad = alphas[boundary].min()
            raise ConvergenceError(
                f"bulk edge at alpha = {bad:g}: G2 diverges at sup T and lambda_bar is closer to sup T than "
                "the table reaches; use a larger alpha or widen u_span"
            )
        out[boundary] = self.u[0]
        beyond = target < lg[-1]
        interior = ~boundary & ~beyond
        # bracket on the table, then bisection/Newton on the spline
        idx = np.searchsorted(-lg, -target[interior])  # lg decreasing
        idx = np.clip(idx, 1, self.u.size - 1)
        a, b = self.u[idx - 1], self.u[idx]
        t = target[interior]
        for _ in range(60):
            mid = (a + b) / 2
            hi_side = self._s_lG2(mid) > t
            a = np.where(hi_side, mid, a)
            b = np.where(hi_side, b, mid)
        out[interior] = (a + b) / 2
        if np.any(beyond):  # large alpha: G2 ~ E[tau^2]/lambda^2, solve exactly
            for i in np.nonzero(beyond)[0]:
                f = lambda u: np.log(self.exact(self.to_lam(u))[1][0]) - target[i]  # noqa: E731
                lo = self.u[-1]
                hi = lo + 1.0
                while f(hi) > 0:
                    hi += 2.0
                    if hi > lo + 200:
                        raise ConvergenceError(f"bulk edge at alpha = {alphas[i]:g}: no bracket found")
                out[i] = brentq(f, lo, hi, xtol=1e-14)
        return out

    # -- thresholds ---------------------------------------------------------------------
    def threshold_u(self, k: int):
        r"""Threshold of direction k as (u, alpha_k); (None, inf) if the spike never leaves the bulk.

        Interior regime: the largest root u_k of :math:`F_k - G_2`, :math:`\alpha_k = 1/G_2(u_k)`.
        If :math:`F_k > G_2` down to sup T, the transition happens while
        :math:`\bar\lambda = \sup T`: :math:`\alpha_k = 1/F_k(\sup T)`.
        """
        D = self._F_table[k] - np.exp(self._s_lG2(self.u))
        if D[-1] <= 0:
            # grow the bracket beyond the table: D ~ theta/lambda - E[tau^2]/lambda^2
            if self.theta[k] <= 0:
                return None, np.inf
            f = lambda u: self._D_exact(k, u)  # noqa: E731
            lo, hi = self.u[-1], self.u[-1] + 1.0
            while f(hi) <= 0:
                lo, hi = hi, hi + 2.0
                if hi > self.u[-1] + 200:
                    return None, np.inf
            u = brentq(f, lo, hi, xtol=1e-13)
            return u, 1.0 / float(self.exact(self.to_lam(u))[1][0])
        neg = np.nonzero(D <= 0)[0]
        if neg.size == 0:
            if self.open_top:  # D > 0 on (sup T, oo), so F_0 >= G2_0 by continuity
                return -np.inf, 1.0 / float(self.F_0[k])
            if self.lg0_slope() > 0.5:
                raise ConvergenceError(
                    f"threshold of direction {k + 1}: F_k > G_2 down to lambda - sup T = {np.exp(self.u[0]):.2e} "
                    "while G_2 diverges there; widen u_span")
            return self.u[0], 1.0 / float(self._F_table[k][0])
        j = neg[-1]
        g = lambda u: self._s_Fk[k](u) - np.exp(self._s_lG2(u))  # noqa: E731
        u = brentq(g, self.u[j], self.u[j + 1], xtol=1e-14)
        return u, 1.0 / float(self.exact(self.to_lam(u))[1][0])

    def thresholds(self, ks=None, chunk: int = 512) -> np.ndarray:
        r"""alpha_k of the directions ``ks`` (0-based; default all represented), as :meth:`threshold_u`.

        The common case, a root of :math:`F_k - G_2` inside the table, is solved for many directions
        at once: bisection on the cubic piece of each :math:`F_k` spline that brackets it, and one
        batched exact :math:`G_2` at the roots. The other cases go through :meth:`threshold_u`.
        """
        ks = np.arange(self.m) if ks is None else np.asarray(ks, dtype=int)
        out = np.full(ks.size, np.inf)
        G2t = np.exp(self._s_lG2(self.u))
        for s0 in range(0, ks.size, chunk):
            kc = ks[s0: s0 + chunk]
            Dt = self._F_table[kc] - G2t[None, :]
            last_neg = self.u.size - 1 - np.argmax((Dt <= 0)[:, ::-1], axis=1)
            any_neg = (Dt <= 0).any(axis=1)
            inside = any_neg & (Dt[:, -1] > 0)
            for i in np.nonzero(~inside)[0]:
                out[s0 + i] = self.threshold_u(int(kc[i]))[1]
            idx = np.nonzero(inside)[0]
            if idx.size == 0:
                continue
            j = last_neg[idx]
            c = CubicSpline(self.u, self._F_table[kc[idx]], axis=1).c  # (4, n - 1, rows)
            cj = c[:, j, np.arange(idx.size)]  # (4, rows): the piece [u_j, u_j+1] of each row
            lo, hi = self.u[j].copy(), self.u[j + 1].copy()

            def g(x):
                t = x - self.u[j]
                return ((cj[0] * t + cj[1]) * t + cj[2]) * t + cj[3] - np.exp(self._s_lG2(x))

            glo = g(lo)
            for _ in range(64):
                mid = (lo + hi) / 2
                gm = g(mid)
                left = (gm > 0) == (glo > 0)
                lo, glo = np.where(left, mid, lo), np.where(left, gm, glo)
                hi = np.where(left, hi, mid)
            u = (lo + hi) / 2
            out[s0 + idx] = 1.0 / self.G2_exact(self.to_lam(u))
        return out

    def G2_exact(self, lam) -> np.ndarray:
        r""":math:`G_2(\lambda)` by atom sums, or where :math:`\lambda > 10\max|\tau|` by the moment series
        :math:`\sum_{n\ge0}(n+1)E[\tau^{n+2}]/\lambda^{n+2}` (40 terms: exact to 1e-38 relative there)."""
        lam = np.asarray(lam, dtype=float)
        out = np.empty_like(lam)
        tabs = float(np.abs(self._tau).max())
        far = lam > 10 * tabs
        if np.any(far):
            if not hasattr(self, "_tau_moments"):
                self._tau_moments = np.array([self._p @ self._tau ** (n + 2) for n in range(40)])
            x = 1.0 / lam[far]
            out[far] = x**2 * np.polynomial.polynomial.polyval(x, np.arange(1, 41) * self._tau_moments)
        if np.any(~far):
            out[~far] = self.exact(lam[~far], which=slice(0, 0))[1]
        return out

    def outlier_candidates(self, ubar, alphas, chunk: int = 2048) -> np.ndarray:
        """0-based directions that are an outlier at some alpha (F_k(lambda_bar) > 1/alpha), checked on
        the tables for all directions at once (vector-valued splines, in chunks)."""
        inv = 1.0 / np.asarray(alphas, dtype=float)
        out = []
        for s0 in range(0, self.m, chunk):
            Fb = CubicSpline(self.u, self._F_table[s0: s0 + chunk], axis=1)(ubar)  # (rows, A)
            out.append(s0 + np.nonzero((Fb > inv[None, :]).any(axis=1))[0])
        return np.concatenate(out) if out else np.zeros(0, dtype=int)

    def lg0_slope(self):
        """-d log G2 / du at the bottom of the table (2 when G2 diverges like an atom's)."""
        return float(-(self._s_lG2(self.u[1]) - self._s_lG2(self.u[0])) / (self.u[1] - self.u[0]))

    def _D_exact(self, k, u):
        G1, G2, F, H = self.exact(self.to_lam(u), which=slice(k, k + 1))
        return F[0, 0] - G2[0]

    # -- outliers -----------------------------------------------------------------------
    def outlier_u(self, alphas, ubar, k: int):
        r"""u of :math:`\lambda^*_k(\alpha)` (NaN where direction k is not an outlier).

        The root of :math:`F_k = 1/\alpha` above :math:`\bar\lambda` is bracketed on the table (the
        last table point above :math:`\bar u` where :math:`F_k > 1/\alpha`) and refined by bisection on
        the spline for all alphas at once; a root beyond the table uses exact sums.
        """
        alphas = np.asarray(alphas, dtype=float)
        inv = 1.0 / alphas
        out = np.full(alphas.shape, np.nan)
        spl = self._s_Fk[k]
        Fbar = spl(ubar)
        Fk = self._F_table[k]
        idx = np.nonzero(Fbar > inv)[0]  # = G2(ubar): the outliers
        if idx.size == 0:
            return out
        mask = (self.u[None, :] > ubar[idx, None]) & (Fk[None, :] > inv[idx, None])
        has = mask.any(axis=1)
        j = self.u.size - 1 - np.argmax(mask[:, ::-1], axis=1)
        beyond = (has & (j == self.u.size - 1)) | (ubar[idx] >= self.u[-1])
        for i in idx[beyond]:  # the crossing lies beyond the table: exact sums
            a = max(self.u[-1], ubar[i])
            b = a + 1.0
            f = lambda u: self.exact(self.to_lam(u), slice(k, k + 1))[2][0, 0] - inv[i]  # noqa: E731
            while f(b) > 0:
                a, b = b, b + 2.0
                if b > self.u[-1] + 200:
                    raise ConvergenceError(f"outlier {k + 1} at alpha = {alphas[i]:g}: no bracket found")
            out[i] = brentq(f, a, b, xtol=1e-14)
        sel = ~beyond
        idx, has, j = idx[sel], has[sel], j[sel]
        if idx.size == 0:
            return out
        first_above = np.searchsorted(self.u, ubar[idx], side="right").clip(max=self.u.size - 1)
        # no table point above ubar with F_k > 1/alpha: the crossing lies between ubar and the next point
        a = np.where(has, self.u[np.minimum(j, self.u.size - 2)], ubar[idx])
        b = np.where(has, self.u[np.minimum(j + 1, self.u.size - 1)], self.u[first_above])
        ga, gb = spl(a) - inv[idx], spl(b) - inv[idx]
        redo = ga * gb > 0
        a = np.where(redo, ubar[idx], a)
        ga = np.where(redo, spl(a) - inv[idx], ga)
        bad = ga * gb > 0
        if np.any(bad):
            raise ConvergenceError(
                f"outlier {k + 1} at alpha = {alphas[idx][bad][0]:g}: could not bracket F_k = 1/alpha above the edge; "
                "refine the table (n_table) or the label law grid")
        for _ in range(64):
            mid = (a + b) / 2
            gm = spl(mid) - inv[idx]
            left = (gm > 0) == (ga > 0)
            a, ga = np.where(left, mid, a), np.where(left, gm, ga)
            b = np.where(left, b, mid)
        out[idx] = (a + b) / 2
        return out
