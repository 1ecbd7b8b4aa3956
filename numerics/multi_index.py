r"""The m x m matrix form of docs/theory.md §2.2, for links whose directions couple.

With :math:`\Phi(\lambda) = \lambda E[\tau z z^\top/(\lambda-\tau)]` and
:math:`\psi_\alpha(\lambda) = \lambda(1/\alpha + G_1)`,

.. math::
    \Phi(\lambda) - \psi_\alpha(\lambda) I = \lambda\,\big(M(\lambda) - I/\alpha\big),\qquad
    M_{jk}(\lambda) = E\Big[\frac{\tau (z_jz_k - \delta_{jk})}{\lambda-\tau}\Big],

so the outliers are the :math:`\lambda^* > \bar\lambda` where an eigenvalue branch
:math:`\mu_i(\lambda)` of M crosses :math:`1/\alpha` (Kovacevic-Zhang-Mondelli). Their
number is the number of :math:`\mu_i(\bar\lambda) > G_2(\bar\lambda) = 1/\alpha`. With u
the unit null vector of :math:`M(\lambda^*) - I/\alpha`, the outlier eigenvector v has
:math:`W^\top v \to \sqrt{q}\,u` and, by the Schur-complement argument that gives the
diagonal formula,

.. math::
    q = \frac{\psi'}{\psi' - u^\top\Phi' u} = \frac{1/\alpha - G_2}{1/\alpha - G_2 + u^\top H u},
    \qquad H_{jk} = E\Big[\frac{\tau^2 z_jz_k}{(\lambda-\tau)^2}\Big].

The per-direction quantity is the subspace projection :math:`\|P w_k\|^2 = \sum_i q_i u_{ik}^2`
(docs/theory.md §5). When M is diagonal this is exactly the per-direction solver; the branch
thresholds are where :math:`\mu_i(\bar\lambda) = G_2(\bar\lambda)`.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from .resolvent import _CHUNK, ConvergenceError, SpectralFunctions

__all__ = ["MatrixFunctions"]


class MatrixFunctions:
    """M(lambda) and H(lambda) of a label law, tabulated on the u-grid of ``sf``."""

    def __init__(self, sf: SpectralFunctions):
        law = sf.law
        self.sf, self.m = sf, sf.m
        self.pairs = list(law.pairs)
        self.cross = law.cross if law.cross is not None else np.zeros((0, law.tau.size))
        C1, C2 = self._cross_exact(sf.to_lam(sf.u))
        F = sf._F_table
        H = np.array([sf._s_Hk[k](sf.u) for k in range(self.m)])
        self.M_table = self._assemble(F, C1)  # (n_table, m, m)
        self.H_table = self._assemble(H, C2)
        self._sM = CubicSpline(sf.u, self.M_table, axis=0)
        self._sH = CubicSpline(sf.u, self.H_table, axis=0)
        self.mu_table = np.linalg.eigvalsh(self.M_table)[:, ::-1]  # branches, largest first
        scale = np.abs(self.M_table).max()
        off = np.abs(self.M_table - np.einsum("tkk->tk", self.M_table)[:, :, None] * np.eye(self.m)).max()
        self.coupling = float(off / scale) if scale > 0 else 0.0
        if sf.open_top:
            C1_0, _ = self._cross_exact(np.array([sf.tmax]))
            self.M_0 = self._assemble(sf.F_0[:, None], C1_0)[0]

    def _cross_exact(self, lam):
        tau, p = self.sf._tau, self.sf._p
        if not self.pairs:
            z = np.zeros((0, lam.size))
            return z, z
        out1 = np.empty((lam.size, len(self.pairs)))
        out2 = np.empty_like(out1)
        rows = max(1, _CHUNK // max(tau.size, 1))
        with np.errstate(divide="ignore"):
            for s in range(0, lam.size, rows):
                K = tau[None, :] / (lam[s: s + rows, None] - tau[None, :])
                out1[s: s + rows] = K @ self.cross.T
                out2[s: s + rows] = (K**2) @ self.cross.T
        return out1.T, out2.T

    def _assemble(self, diag, cross):
        n = diag.shape[1]
        out = np.zeros((n, self.m, self.m))
        idx = np.arange(self.m)
        out[:, idx, idx] = diag.T
        for i, (j, k) in enumerate(self.pairs):
            out[:, j, k] = out[:, k, j] = cross[i]
        return out

    def M(self, u):
        return self._sM(u)

    def H(self, u):
        return self._sH(u)

    def branch(self, u, i):
        """The i-th largest eigenvalue of M at u."""
        return float(np.linalg.eigvalsh(self._sM(u))[::-1][i])

    # -- outliers ---------------------------------------------------------------------
    def solve(self, alphas, ubar):
        """Per alpha: (eigen-branch outliers) as lists of (u*, q, unit vector)."""
        sf = self.sf
        results = []
        for a, ub in zip(np.asarray(alphas, dtype=float), ubar):
            inv = 1.0 / a
            at_sup = sf.open_top and ub <= sf.u[0]
            Mbar = self.M_0 if at_sup else self._sM(ub)
            mus = np.linalg.eigvalsh(Mbar)[::-1]
            found = []
            for i in np.nonzero(mus > inv)[0]:
                above = sf.u > ub
                pos = np.nonzero(above & (self.mu_table[:, i] > inv))[0]
                if pos.size and pos[-1] == sf.u.size - 1:
                    raise ConvergenceError(f"outlier branch {i + 1} at alpha = {a:g}: beyond the table; use a smaller alpha")
                if pos.size:
                    lo, hi = sf.u[pos[-1]], sf.u[pos[-1] + 1]
                else:
                    lo, hi = ub, sf.u[np.argmax(above)]
                g = lambda u: self.branch(u, i) - inv  # noqa: E731
                if g(lo) * g(hi) > 0:
                    lo = ub
                    if g(lo) * g(hi) > 0:
                        raise ConvergenceError(f"outlier branch {i + 1} at alpha = {a:g}: could not bracket "
                                               "mu_i = 1/alpha above the edge; refine the label law grid")
                u = brentq(g, lo, hi, xtol=1e-14)
                w, V = np.linalg.eigh(self._sM(u))
                vec = V[:, np.argmin(np.abs(w - inv))]
                dpsi = inv - sf.G2(u)
                q = float(np.clip(dpsi / (dpsi + vec @ self._sH(u) @ vec), 0.0, 1.0))
                found.append((u, q, vec))
            results.append(found)
        return results

    # -- thresholds -------------------------------------------------------------------
    def thresholds(self):
        r"""Per branch i: the alpha where :math:`\mu_i(\bar\lambda) = G_2(\bar\lambda)` (inf if never)."""
        sf = self.sf
        G2 = sf.G2(sf.u)
        out = np.full(self.m, np.inf)
        for i in range(self.m):
            # mu_i - G2 is > 0 at large lambda (mu_i ~ theta_i/lambda, G2 ~ E tau^2/lambda^2) when the
            # branch carries a positive spike; the threshold is its largest sign change
            D = self.mu_table[:, i] - G2
            if D[-1] <= 0:
                continue  # no positive spike on this branch within the table (alpha up to ~1e12)
            neg = np.nonzero(D <= 0)[0]
            if neg.size == 0:
                if not sf.open_top:
                    raise ConvergenceError(f"threshold of branch {i + 1}: mu_i > G_2 down to the bottom of the table "
                                           "while G_2 diverges there; widen u_span")
                out[i] = 1.0 / float(np.linalg.eigvalsh(self.M_0)[::-1][i])
                continue
            j = neg[-1]
            u = brentq(lambda v: self.branch(v, i) - float(sf.G2(v)), sf.u[j], sf.u[j + 1], xtol=1e-14)
            out[i] = 1.0 / float(sf.G2(u))
        return out
