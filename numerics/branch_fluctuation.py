r"""Finite-d fluctuations of the overlaps of a coupled outlier branch (docs/theory.md §4.3, "Coupled
directions: the branch CLT").

When the link couples the directions (a non-even link, e.g. He1 + He2/2), the m x m Schur complement
of :math:`D_n` on :math:`z = W^\top x` is not diagonal at d = infinity:

.. math:: \bar F(\zeta) = \lambda\,(M(\lambda) - I/\alpha),\qquad
          M_{jl} = E[K(z_jz_l - \delta_{jl})],\quad K = \tau/(\lambda-\tau),\quad \zeta = \psi_\alpha(\lambda).

An outlier branch i is a root :math:`\zeta^*` of :math:`\det\bar F`, with unit null vector u, and its
eigenvector v has :math:`W^\top v \to \sqrt{q_i}\,u`, :math:`q_i = 1/(-u^\top\bar F'u)`: the share of
direction k is :math:`q_{ik} = u_k^2 q_i`. At finite n, :math:`F_n = \bar F + \Delta` with
:math:`\Delta = O(n^{-1/2})`. To first order the root moves by :math:`\delta\zeta = q_i\,u^\top\Delta u`,
the null vector by :math:`\delta c = -R\,(\Delta + \bar F'\delta\zeta)\,u` (R the pseudo-inverse of
:math:`\bar F(\zeta^*)`), and the share :math:`c_k^2/(-c^\top F'(\zeta)c)` by

.. math:: \delta q_{ik} = \frac{2u_k\,\delta c_k}{N_0} - \frac{u_k^2\,\delta N}{N_0^2},\qquad
          \delta N = -2u^\top\bar F'\delta c - u^\top\bar F''u\,\delta\zeta - u^\top\Delta'u,

:math:`N_0 = 1/q_i`. So :math:`\delta q_{ik} = \langle a_k,\Delta\rangle + \langle b_k,\Delta'\rangle`
is a linear functional of the m x m block and its zeta-derivative, and its variance has the two parts of
the per-direction CLT (:mod:`numerics.outlier_fluctuation`), now with matrix entries: the sample average
of the influence :math:`h_{jl} = \lambda K z_jz_l + (H_{jl}/\psi')\lambda K`,
:math:`H_{jl} = E[K^2z_jz_l]`, and the off-diagonal pairs, whose covariance between entries (j, l) at
:math:`\zeta_1` and (j', l') at :math:`\zeta_2` is
:math:`\frac{1}{\alpha n}(P_{jj'}P_{ll'} + P_{jl'}P_{lj'})\frac{s(\zeta_1)-s(\zeta_2)}{\zeta_1-\zeta_2}`,
:math:`P = E[c(\zeta_1)c(\zeta_2)^\top]`, :math:`c = \lambda K z`. With a diagonal :math:`\bar F` the
functional is :math:`q^2(\Delta'_{kk} + q\bar f''\Delta_{kk})` and the variance is the per-direction
:math:`\sigma_k^2` term by term.

The next order is the O(1/d) bias :math:`b_{ik} = E\,q_{ik,d} - q_{ik}` (:func:`branch_bias_parts`): the
mean shift of the block, entry by entry the one of :mod:`numerics.outlier_bias`, and the second-order
response of the exact share to the block's fluctuation. On the coupled model of docs/theory.md §4.3 at
d = 400 it gives :math:`d\,b_{11}` = -2.68, -1.90, -1.23 at alpha = 4, 6, 12 against -2.75 +- 0.53,
-2.31 +- 0.42, -1.22 +- 0.25 simulated (2400 seeds); :func:`validation.compare.compare` centres q_best's
interval there on :math:`q_{ik} + b_{ik}`. The mixing of two branches whose roots are close (the pencil of
docs/theory.md §4.3) enters only to second order; :func:`branch_fluctuation` reports the branch gap
:math:`\min_{j\ne i}|\nu_j|` so callers can gate on it.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=2, gamma=1, link="He1 + He2/2", preprocessing="clip(y, -1, 3)")
>>> r = branch_fluctuation(model, [6.0], n_samples=2**18)
>>> q, s = r["q"][0, 0], r["sigma"][0, 0]     # branch 1: its shares of w_1, w_2 and their sqrt(d) sd
>>> bool(0.39 < q[0] < 0.43), bool(0.8 < s[0] < 1.3), bool(np.isnan(r["q"][0, 1, 0]))   # one branch only
(True, True, True)
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.optimize import brentq

from theory import HierarchicalModel
from theory.model import integer

from .outlier_bias import _H, _lam_of_zeta, _mean_shift, _psi, _stencils
from .outlier_fluctuation import _checked_latents, _stieltjes_quotient, _zeta_calculus
from .resolvent import edge_of_atoms

__all__ = ["branch_point", "branch_variance_parts", "branch_covariance", "branch_bias_parts", "branch_fluctuation",
           "projection_law"]

#: step of the central differences of the shares in the block's entries, relative to the largest entry of
#: :math:`\bar F'`: the shares are smooth there, so the Hessian errs by O(_EPS_Q^2) plus rounding O(1e-16/_EPS_Q^2)
_EPS_Q = 1e-5


def _block_means(tau, Z, lam):
    """E[K (Z Z^T - I)] (= M), E[K^2 (Z Z^T - I)] and E[K^2 (Z Z^T - I)/(lam - tau)] at lam, equal weights."""
    K = tau / (lam - tau)
    N, m = Z.shape
    eye = np.eye(m)
    out = []
    for v in (K, K**2, K**2 / (lam - tau)):
        out.append((Z * v[:, None]).T @ Z / N - v.mean() * eye)
    return out


def _branch_roots(tau, Z, alpha, lbar):
    """The lam* > lbar of every branch i with alpha mu_i(lbar) > 1 (mu_i the i-th largest eigenvalue of
    M(lam)), largest first."""
    mu = lambda lam, i: float(np.linalg.eigvalsh(_block_means(tau, Z, lam)[0])[::-1][i]) - 1 / alpha  # noqa: E731
    roots = []
    for i in range(Z.shape[1]):
        lo = lbar * (1 + 1e-12) + 1e-300
        if not mu(lo, i) > 0:
            break
        hi = lbar + max(1.0, abs(lbar))
        while mu(hi, i) > 0:
            hi = lbar + 2 * (hi - lbar)
        roots.append(float(brentq(lambda x: mu(x, i), lo, hi, xtol=1e-13 * max(1.0, abs(lbar)))))
    return roots


def _pair_terms(A, B, P0, P1, P12, s):
    r"""The off-diagonal pairs' covariance of :math:`\langle A,\Delta\rangle` and :math:`\langle B,\Delta\rangle`
    (times :math:`\alpha n`): the value, :math:`\partial_2` and :math:`\partial_1\partial_2` at equal points of
    :math:`T(P, P)\,S(\zeta_1,\zeta_2)`, where :math:`T(P, Q) = \sum A_{jl}B_{j'l'}(P_{jj'}Q_{ll'} + P_{jl'}Q_{lj'})`,
    :math:`P = E[c(\zeta_1)c(\zeta_2)^\top]` with :math:`\partial_1 P` = ``P1``, :math:`\partial_2 P` = ``P1.T``,
    :math:`\partial_1\partial_2 P` = ``P12``, and S, :math:`\partial S`, :math:`\partial_1\partial_2 S` = s', s''/2,
    s'''/6 at equal points (docs/theory.md §4.2)."""
    def T(P, Q):
        return np.einsum("jl,km,jk,lm->", A, B, P, Q) + np.einsum("jl,km,jm,lk->", A, B, P, Q)

    P2 = P1.T
    S0, S1, S12 = s[0], s[1] / 2, s[2] / 6
    t00 = T(P0, P0)
    d1 = T(P1, P0) + T(P0, P1)
    d2 = T(P2, P0) + T(P0, P2)
    value = t00 * S0
    by2 = d2 * S0 + t00 * S1
    by12 = (T(P12, P0) + T(P2, P1) + T(P1, P2) + T(P0, P12)) * S0 + d1 * S1 + d2 * S1 + t00 * S12
    return value, by2, by12


def branch_point(tau, Z, alpha: float, lam: float) -> dict:
    r"""The d = infinity branch at its root ``lam`` (:math:`\lambda^*`) and the first-order response of its
    shares (module docstring), from equally weighted draws ``tau`` (N,), ``Z`` (N, m): ``u`` (unit null
    vector of :math:`\bar F(\zeta^*)`), ``q`` (the m shares :math:`u_k^2/N_0`), ``nu`` (the eigenvalues of
    :math:`\bar F(\zeta^*)`, the branch's own one zero), ``Fp``, ``Fpp`` (:math:`\bar F'`, :math:`\bar F''` in
    zeta), ``a``, ``b`` of shape (m, m, m): :math:`\delta q_k = \sum_{jl} a_{kjl}\Delta_{jl} + b_{kjl}\Delta'_{jl}`
    for a shift :math:`\Delta(\zeta)` of the block, and ``a_zeta`` (m, m): the eigenvalue's move
    :math:`\delta\zeta = \langle a_\zeta, \Delta\rangle`, :math:`a_\zeta = uu^\top/N_0`
    (:math:`u^\top\bar F'u = -N_0`, so :math:`\det(\bar F + \Delta) = 0` moves the root by
    :math:`u^\top\Delta u/N_0`, docs/theory.md §4.3 "The overlap at a fixed rank")."""
    N, m = Z.shape
    w = np.full(N, 1.0 / N)
    _, (p1, p2, _), _ = _zeta_calculus(tau, w, lam, alpha)
    M, M2, M3 = _block_means(tau, Z, lam)
    mu, V = np.linalg.eigh(M)
    i = int(np.argmin(np.abs(mu - 1 / alpha)))
    u = V[:, i]
    nu = lam * (mu - 1 / alpha)
    others = np.arange(m) != i
    R = (V[:, others] / nu[others]) @ V[:, others].T  # the pseudo-inverse of F-bar at the root
    eye = np.eye(m)
    Fp = (-M2 - eye / alpha) / p1
    Fpp = (2 * M3 - p2 * Fp) / p1**2
    N0 = -float(u @ Fp @ u)

    def shift(D, Dp):  # delta q (m values) for the block's shift D and its zeta-derivative Dp
        dz = float(u @ D @ u) / N0
        dc = -R @ ((D + Fp * dz) @ u)
        dN = -2 * float(u @ Fp @ dc) - float(u @ Fpp @ u) * dz - float(u @ Dp @ u)
        return 2 * u * dc / N0 - u**2 * dN / N0**2

    zero = np.zeros((m, m))
    basis = [np.outer(eye[j], eye[l]) for j in range(m) for l in range(m)]
    a = np.array([shift(E, zero) for E in basis]).T.reshape(m, m, m)
    b = np.array([shift(zero, E) for E in basis]).T.reshape(m, m, m)
    return {"lam": lam, "u": u, "q": u**2 / N0, "nu": nu, "Fp": Fp, "Fpp": Fpp, "a": a, "b": b,
            "a_zeta": np.outer(u, u) / N0}


def branch_variance_parts(tau, Z, alpha: float, lbar: float | None = None, roots=None) -> list[dict]:
    r"""The first-order CLT of every outlier branch's shares (module docstring), from equally weighted
    draws ``tau`` (N,) and ``Z`` (N, m) at ratio ``alpha``; one dict per branch (largest first, empty if
    none): :func:`branch_point`'s entries and ``sigma`` (m values of
    :math:`\lim_d\sqrt d\,\mathrm{sd}(q_{ik,d})`), its two parts ``diagonal`` and ``pairs`` (m each;
    ``sigma**2 = diagonal + pairs``), ``gap``, the smallest :math:`|\nu_j|` over the other branches, and the
    outlier eigenvalue's own CLT: ``zeta`` (:math:`\zeta^* = \psi_\alpha(\lambda^*)`, its d = infinity location)
    and ``zeta_sigma`` (:math:`\lim_d\sqrt d\,\mathrm{sd}` of the eigenvalue, the same two parts for the
    functional ``a_zeta``). ``roots``: the branches' :math:`\lambda^*` if already found (:func:`_branch_roots`)."""
    N, m = Z.shape
    w = np.full(N, 1.0 / N)
    lbar = edge_of_atoms(tau, w, alpha)[0] if lbar is None else lbar
    out = []
    for lam in (_branch_roots(tau, Z, alpha, lbar) if roots is None else roots):
        r = branch_point(tau, Z, alpha, lam)
        K, (p1, p2, _), s = _zeta_calculus(tau, w, lam, alpha)
        # influences (docs/theory.md §4.2, parts 1 and 2): h_jl and its zeta-derivative, per sample
        lamK = lam * K
        H = (Z * (K**2)[:, None]).T @ Z / N
        H1 = -2 * (Z * (K**2 / (lam - tau))[:, None]).T @ Z / N
        cH, cH_l = H / p1, (H1 * p1 - H * p2) / p1**2
        # the pairs: c = lam K z and its zeta-derivative
        c, c_z = lamK[:, None] * Z, -(K**2 / p1)[:, None] * Z
        P0, P1, P12 = c.T @ c / N, c_z.T @ c / N, c_z.T @ c_z / N
        def parts(ak, bk):  # the two parts of d Var(<a, D> + <b, D'>)
            quad_a = np.einsum("nj,jl,nl->n", Z, ak, Z)
            quad_b = np.einsum("nj,jl,nl->n", Z, bk, Z)
            x = lamK * quad_a + float(np.sum(ak * cH)) * lamK \
                + (-K**2 * quad_b + float(np.sum(bk * cH_l)) * lamK - float(np.sum(bk * cH)) * K**2) / p1
            # the pairs: the a-a value, twice the a-b kernel's d2, the b-b kernel's d1 d2
            v_aa = _pair_terms(ak, ak, P0, P1, P12, s)[0]
            v_ab = _pair_terms(ak, bk, P0, P1, P12, s)[1]
            v_bb = _pair_terms(bk, bk, P0, P1, P12, s)[2]
            return float(np.var(x)) / alpha, (v_aa + 2 * v_ab + v_bb) / alpha**2

        diagonal, pairs = np.array([parts(r["a"][k], r["b"][k]) for k in range(m)]).T
        gap = float(np.sort(np.abs(r["nu"]))[1]) if m > 1 else np.inf
        zeta_var = sum(parts(r["a_zeta"], np.zeros((m, m))))
        out.append(dict(r, sigma=np.sqrt(diagonal + pairs), diagonal=diagonal, pairs=pairs, gap=gap,
                        zeta=_psi(tau, alpha, lam), zeta_sigma=float(np.sqrt(zeta_var))))
    return out


def _entries(m: int):
    """The r = m(m+1)/2 entries (j, l), j <= l, of a symmetric m x m block, and the map back to matrices."""
    idx = [(j, l) for j in range(m) for l in range(j, m)]

    def matrix(v):
        out = np.zeros((m, m))
        for e, (j, l) in enumerate(idx):
            out[j, l] = out[l, j] = v[e]
        return out
    return idx, matrix


def _block_point(tau, Z, alpha: float, zeta: float, lam: float, idx):
    r"""At one :math:`\zeta = \psi_\alpha(\lambda)`: the block's d = infinity entries
    :math:`\bar F_{jl} = E[\lambda K z_jz_l] - \zeta\delta_{jl}`, the centred influences :math:`h_{jl}` (N, r) and
    the pair coefficients :math:`c = \lambda K z` (N, m) of the first-order kernel (module docstring), the products
    :math:`z_jz_l` (N, r) and :math:`\psi'` at lam."""
    K, (p1, _, _), _ = _zeta_calculus(tau, np.full(tau.size, 1.0 / tau.size), lam, alpha)
    lamK = lam * K
    zz = np.stack([Z[:, j] * Z[:, l] for j, l in idx], axis=1)
    H = np.mean(zz * (K**2)[:, None], axis=0)
    h = lamK[:, None] * zz + np.outer(lamK, H / p1)
    Fbar = np.mean(lamK[:, None] * zz, axis=0) - zeta * np.array([j == l for j, l in idx])
    return Fbar, h - h.mean(axis=0), lamK[:, None] * Z, zz, p1


def _block_kernel(alpha, zeta1, zeta2, at1, at2, lam1, lam2, idx):
    r""":math:`n\,\mathrm{Cov}(\Delta_{e}(\zeta_1), \Delta_{e'}(\zeta_2))` for the entries e, e' of ``idx`` to first
    order: the influences plus the pairs :math:`\frac1\alpha(P_{jj'}P_{ll'} + P_{jl'}P_{lj'})\,S(\zeta_1,\zeta_2)`,
    :math:`P = E[c(\zeta_1)c(\zeta_2)^\top]`, S the divided difference of s
    (:func:`numerics.outlier_fluctuation._stieltjes_quotient`)."""
    (_, h1, c1, _, p1), (_, h2, c2, _, p2) = at1, at2
    slope = _stieltjes_quotient([zeta1, zeta2], [lam1, lam2], [alpha / (lam1**2 * p1), alpha / (lam2**2 * p2)],
                                alpha)[0, 1]
    P = c1.T @ c2 / c1.shape[0]
    pairs = np.array([[P[j, jj] * P[l, ll] + P[j, ll] * P[l, jj] for jj, ll in idx] for j, l in idx])
    return h1.T @ h2 / h1.shape[0] + pairs * slope / alpha


_OFFSETS = (-2, -1, 0, 1, 2)


def _root_stencil(tau, Z, alpha: float, lam: float, lbar: float, idx) -> dict:
    r"""The five-point stencil about a branch root ``lam``: ``zeta`` (:math:`\psi_\alpha(\lambda^*)`), the step
    ``h`` = _H (zeta - edge) (as :func:`numerics.outlier_bias.outlier_bias_parts`), and per offset j = -2..2 the
    :math:`\lambda` of :math:`\zeta + jh` (``L``) and :func:`_block_point` there (``at``)."""
    zeta = _psi(tau, alpha, lam)
    h = _H * (zeta - _psi(tau, alpha, lbar))
    L = {j: (lam if j == 0 else _lam_of_zeta(tau, alpha, zeta + j * h, lbar)) for j in _OFFSETS}
    return {"zeta": zeta, "h": h, "L": L, "at": {j: _block_point(tau, Z, alpha, zeta + j * h, L[j], idx)
                                                   for j in _OFFSETS}}


def _on_entries(A, idx) -> np.ndarray:
    r""":math:`\langle A, \Delta\rangle` for a symmetric :math:`\Delta` as a vector over the entries j <= l of
    ``idx``: :math:`A_{jl} + A_{lj}` off the diagonal."""
    return np.array([A[j, l] + (A[l, j] if j != l else 0.0) for j, l in idx])


def branch_covariance(tau, Z, alpha: float, lbar: float | None = None, points=None) -> dict:
    r"""The joint first-order CLT of every outlier branch, from equally weighted draws ``tau`` (N,), ``Z`` (N, m)
    at ratio ``alpha``: ``zeta`` (the d = infinity locations :math:`\zeta_i^*`, largest first), ``cov``
    (:math:`\lim_d d\,\mathrm{Cov}(\hat\zeta_i, \hat\zeta_j)`, the eigenvalues), ``share_cov`` of shape
    (branches, branches, m) (:math:`\lim_d d\,\mathrm{Cov}(q_{ik,d}, q_{jk,d})`, the shares of direction k in two
    branches' eigenvectors) and ``edge`` (the bulk edge :math:`\psi_\alpha(\bar\lambda)`). For the detection of
    the branches by a cut at the edge of the realised labels, :math:`\hat e = \psi` of their empirical law at
    :math:`\bar\lambda` (it moves by the sample average of :math:`\bar\lambda K(\bar\lambda)`, since
    :math:`\psi'(\bar\lambda) = 0`): ``gap_cov`` (branches, branches), :math:`\lim_d d\,\mathrm{Cov}(\hat\zeta_i -
    \hat e, \hat\zeta_j - \hat e)`, and ``gap_share_cov`` (branches, branches, m), :math:`\lim_d d\,\mathrm{Cov}(
    \hat\zeta_i - \hat e, q_{jk,d})` (docs/theory.md §4.3, "The branch eigenvalues against the realised edge"; for
    m = 1 they are ``gap_sd`` and ``gap_corr`` of :func:`numerics.outlier_fluctuation.outlier_variance_parts`,
    tested). ``points``: :func:`branch_point` (or :func:`branch_variance_parts`) at each root, if already
    computed.

    Branch i's eigenvalue moves by :math:`\delta\zeta_i = \langle a_{\zeta,i}, \Delta(\zeta_i^*)\rangle` and its
    shares by :math:`\langle a_{ik}, \Delta(\zeta_i^*)\rangle + \langle b_{ik}, \Delta'(\zeta_i^*)\rangle`
    (:func:`branch_point`). The block's fluctuation at two points has the first-order kernel
    :math:`\mathcal K(\zeta_1, \zeta_2)` of the module docstring, so a covariance is that kernel between
    :math:`\zeta_i^*` and :math:`\zeta_j^*` contracted with the two functionals, the :math:`\Delta'` parts with its
    derivative in the matching argument (five-point differences of the kernel on each root's stencil, step
    :math:`h_i` = _H :math:`(\zeta_i^* - \psi_\alpha(\bar\lambda))`). Their diagonals are ``zeta_sigma**2`` and
    ``sigma**2`` of :func:`branch_variance_parts` by another route (tested). Which eigenvector has which rank is
    then a Gaussian question: two branches swap with probability :math:`\Phi(-|\zeta_i^* - \zeta_j^*|
    \sqrt d/s_{ij})`, :math:`s_{ij}^2` the variance of the difference (docs/theory.md §4.3, "The overlap at a
    fixed rank"); and the projection on all the outlier eigenvectors moves by the sum of the shares' moves, of
    variance :math:`\sum_{ij}` ``share_cov`` (docs/theory.md §4.3, "The projection on coupled branches")."""
    N, m = Z.shape
    lbar, edge = edge_of_atoms(tau, np.full(N, 1.0 / N), alpha)[:2] if lbar is None else (lbar, _psi(tau, alpha, lbar))
    idx, _ = _entries(m)
    if points is None:
        points = [branch_point(tau, Z, alpha, lam) for lam in _branch_roots(tau, Z, alpha, lbar)]
    st = [_root_stencil(tau, Z, alpha, p["lam"], lbar, idx) for p in points]
    ga = [[_on_entries(p["a"][k], idx) for k in range(m)] for p in points]
    gb = [[_on_entries(p["b"][k], idx) for k in range(m)] for p in points]
    gz = [_on_entries(p["a_zeta"], idx) for p in points]
    nb = len(points)
    cov, share_cov, zeta_share = np.zeros((nb, nb)), np.zeros((nb, nb, m)), np.zeros((nb, nb, m))
    # the realised edge: one sample's influence lbar K(lbar), centred; its covariance with each entry's influence at
    # branch i's root and, by the stencil, with the entry's zeta-derivative
    Kb = lbar * tau / (lbar - tau)
    Kb = Kb - Kb.mean()
    edge_var = float(np.mean(Kb**2)) / alpha
    edge_zeta, edge_share = np.zeros(nb), np.zeros((nb, m))
    for i in range(nb):
        he = [st[i]["at"][a][1].T @ Kb / N for a in _OFFSETS]
        he1 = _stencils(st[i]["h"])[0](he)
        edge_zeta[i] = gz[i] @ he[2] / alpha
        edge_share[i] = [(ga[i][k] @ he[2] + gb[i][k] @ he1) / alpha for k in range(m)]
    for i in range(nb):
        for j in range(nb):
            s1, s2 = st[i], st[j]
            d1_1, d1_2 = _stencils(s1["h"])[0], _stencils(s2["h"])[0]

            @functools.lru_cache(maxsize=None)
            def kern(a, b):  # n Cov(Delta(zeta_i + a h_i), Delta(zeta_j + b h_j)) over the entries
                return _block_kernel(alpha, s1["zeta"] + a * s1["h"], s2["zeta"] + b * s2["h"], s1["at"][a],
                                     s2["at"][b], s1["L"][a], s2["L"][b], idx)
            K0 = kern(0, 0)
            K2 = d1_2([kern(0, b) for b in _OFFSETS])  # Cov(Delta, Delta') and Cov(Delta', Delta)
            K1 = d1_1([kern(a, 0) for a in _OFFSETS])
            K12 = d1_1([d1_2([kern(a, b) for b in _OFFSETS]) for a in _OFFSETS])
            cov[i, j] = gz[i] @ K0 @ gz[j] / alpha
            share_cov[i, j] = [(ga[i][k] @ K0 @ ga[j][k] + ga[i][k] @ K2 @ gb[j][k] + gb[i][k] @ K1 @ ga[j][k]
                                + gb[i][k] @ K12 @ gb[j][k]) / alpha for k in range(m)]
            zeta_share[i, j] = [(gz[i] @ K0 @ ga[j][k] + gz[i] @ K2 @ gb[j][k]) / alpha for k in range(m)]
    gap_cov = cov - edge_zeta[:, None] - edge_zeta[None, :] + edge_var
    gap_share_cov = zeta_share - edge_share[None, :, :]
    return {"zeta": np.array([s["zeta"] for s in st]), "cov": cov, "share_cov": share_cov, "edge": edge,
            "gap_cov": gap_cov, "gap_share_cov": gap_share_cov}


def _taylor_share(F, E, u):
    r"""The shares :math:`c_k^2/(-c^\top G'(x)c)` at the root x near 0 of :math:`\det G`, and x last (m + 1
    values: the root is the eigenvalue's move from the branch's d = infinity location), for the block
    :math:`G(x) = \sum_j (F_j + E_j)x^j/j!` (F = the four Taylor matrices of :math:`\bar F` at the branch's root,
    E = the three perturbation matrices :math:`\Delta, \Delta', \Delta''`), following the eigenvalue whose
    eigenvector is closest to the branch's null vector u (Newton in x, :math:`\nu' = c^\top G'c`)."""
    G0 = [F[0] + E[0], F[1] + E[1], F[2] + E[2], F[3]]
    G = lambda x: G0[0] + G0[1] * x + G0[2] * x**2 / 2 + G0[3] * x**3 / 6  # noqa: E731
    Gp = lambda x: G0[1] + G0[2] * x + G0[3] * x**2 / 2  # noqa: E731
    x = 0.0
    for _ in range(60):
        nu, V = np.linalg.eigh(G(x))
        i = int(np.argmax((V.T @ u) ** 2))
        c = V[:, i]
        step = nu[i] / float(c @ Gp(x) @ c)
        x -= step
        if abs(step) <= 1e-15 * (1 + abs(x)):
            break
    else:  # the perturbations are 1e-5 of F-bar', so Newton takes a few steps; not converging means a lost root
        raise RuntimeError(f"the branch's root did not converge in 60 Newton steps (last step {step:.3g})")
    nu, V = np.linalg.eigh(G(x))
    c = V[:, int(np.argmax((V.T @ u) ** 2))]
    return np.append(c**2 / -float(c @ Gp(x) @ c), x)


def branch_bias_parts(tau, Z, alpha: float, d: int, lbar: float | None = None, roots=None) -> list[dict]:
    r"""The O(1/d) bias :math:`b_{ik} = E\,q_{ik,d} - q_{ik}` of every outlier branch's shares, from equally
    weighted draws ``tau`` (N,), ``Z`` (N, m) at ratio ``alpha`` and dimension ``d`` (n = round(alpha d) samples,
    p = d - m coordinates outside the block); one dict per branch, as :func:`branch_variance_parts` (docs/theory.md
    §4.3, "The branch's O(1/d) bias").

    The block is :math:`F_n = \bar F + \beta + \Delta` with :math:`\beta = E F_n - \bar F = O(1/n)`, entry by entry
    the mean shift of docs/theory.md §4.4 with :math:`z_jz_l` for :math:`z_k^2`, and :math:`\Delta` zero-mean with
    the first-order kernel of the module docstring. The shares are a smooth function Q of
    :math:`(\Delta, \Delta', \Delta'')` at the root (:func:`_taylor_share`, exact on the cubic Taylor model of
    :math:`\bar F`), so to second order

    .. math:: E\,q_{ik,d} - q_{ik} = \nabla Q\cdot(\beta, \beta', 0) + \tfrac12\,\mathrm{tr}(\nabla^2Q\;\Sigma/n)
              + \text{rounding},

    :math:`\Sigma` the kernel's covariance of the entries of :math:`(\Delta, \Delta', \Delta'')` at the root. The
    gradient and Hessian are central differences of Q; the zeta-derivatives of :math:`\bar F`, :math:`\beta` and
    the kernel are five-point differences with the step of :func:`numerics.outlier_bias.outlier_bias_parts`.
    ``rounding`` is :math:`q_{ik}(n/d) - q_{ik}(\alpha)` on the same draws.

    The same expansion of the root gives the eigenvalue's own O(1/d) mean,
    :math:`E\,\hat\zeta_{i,d} - \zeta_i^*` (docs/theory.md §4.3, "The branch eigenvalue's O(1/d) mean"); for m = 1
    it is the root shift of :func:`numerics.outlier_bias.outlier_bias_parts` (tested).

    Returns per branch: ``q``, ``bias`` (m values), its parts ``shift`` (the β terms), ``curvature`` (the Hessian
    term) and ``rounding``, ``lam``, and ``zeta_bias`` (the eigenvalue's mean shift, its rounding part
    :math:`\zeta_i^*(n/d) - \zeta_i^*(\alpha)` included) with that part, ``zeta_rounding``. ``roots``: the
    branches' :math:`\lambda^*` at alpha if already found.
    """
    N, m = Z.shape
    d = integer(d, "d", m + 1)
    n = int(round(alpha * d))
    w = np.full(N, 1.0 / N)
    lbar = edge_of_atoms(tau, w, alpha)[0] if lbar is None else lbar
    idx, matrix = _entries(m)
    r_ = len(idx)
    out = []
    roots = _branch_roots(tau, Z, alpha, lbar) if roots is None else roots
    roots_n = _branch_roots(tau, Z, n / d, edge_of_atoms(tau, w, n / d)[0]) if n != alpha * d else roots
    for ib, lam in enumerate(roots):
        first = branch_point(tau, Z, alpha, lam)
        stencil = _root_stencil(tau, Z, alpha, lam, lbar, idx)
        zeta, h, L, at = stencil["zeta"], stencil["h"], stencil["L"], stencil["at"]
        offsets = _OFFSETS
        d1, d2, d3, d11 = _stencils(h)
        fb = [at[j][0] for j in offsets]
        F = [matrix(fb[2]), matrix(d1(fb)), matrix(d2(fb)), matrix(d3(fb))]
        be = [_mean_shift(tau, at[j][3], alpha, zeta + j * h, L[j], d - m, n) for j in offsets]
        beta = np.concatenate([be[2], d1(be), np.zeros(r_)])

        def cm(a, b):
            return _block_kernel(alpha, zeta + a * h, zeta + b * h, at[a], at[b], L[a], L[b], idx) / n
        row = [cm(0, j) for j in offsets]
        V, C1, C2, C11 = row[2], d1(row), d2(row), d11(cm)  # Cov(D, D), Cov(D, D'), Cov(D, D''), Cov(D', D')
        zero = np.zeros((r_, r_))
        Sigma = np.block([[V, C1, C2], [C1.T, C11, zero], [C2.T, zero, zero]])  # D'-D'' and D''-D'' do not enter

        def Q(theta):
            return _taylor_share(F, [matrix(theta[e * r_:(e + 1) * r_]) for e in range(3)], first["u"])

        dim = 3 * r_
        eps = _EPS_Q * np.abs(F[1]).max()
        basis = np.eye(dim) * eps
        q0 = Q(np.zeros(dim))
        grad = np.array([(Q(e) - Q(-e)) / (2 * eps) for e in basis])
        hess = np.zeros((dim, dim, m + 1))
        for a in range(dim):
            hess[a, a] = (Q(basis[a]) - 2 * q0 + Q(-basis[a])) / eps**2
            for b in range(a + 1, dim):
                ea, eb = basis[a], basis[b]
                hess[a, b] = hess[b, a] = (Q(ea + eb) - Q(ea - eb) - Q(eb - ea) + Q(-ea - eb)) / (4 * eps**2)
        shift = beta @ grad
        curvature = 0.5 * np.einsum("ab,abk->k", Sigma, hess)
        rounding = np.zeros(m + 1)
        if roots_n is not roots:  # the shares and the location at the simulated ratio n/d, less those at alpha
            rounding = np.append(branch_point(tau, Z, n / d, roots_n[ib])["q"] - first["q"],
                                 _psi(tau, n / d, roots_n[ib]) - zeta) if ib < len(roots_n) else np.full(m + 1, np.nan)
        total = shift + curvature + rounding
        out.append({"q": first["q"], "lam": lam, "bias": total[:m], "shift": shift[:m], "curvature": curvature[:m],
                    "rounding": rounding[:m], "zeta_bias": float(total[m]), "zeta_rounding": float(rounding[m])})
    return out


def projection_law(shares, share_cov, bias, branches):
    r"""The law of the projection on the outlier branches ``branches`` (indices), per direction k: its d = infinity
    value :math:`\sum_i q_{ik}`, :math:`s_k = \sqrt{\sum_{ij} C_{ijk}}` (:math:`\lim_d\sqrt d` sd, C =
    ``share_cov`` of :func:`branch_covariance`) and its O(1/d) bias :math:`\sum_i b_{ik}`, from ``shares`` and
    ``bias`` of shape (branch, m) at one alpha (docs/theory.md §4.3, "The projection on coupled branches"). Mixing
    among the branches moves weight inside their span, so to first order the sum moves by the sum of the branches'
    share functionals, and an expectation is linear.

    >>> q, s, b = projection_law(np.array([[0.5, 0.1], [0.2, 0.3]]), np.ones((2, 2, 2)), np.zeros((2, 2)), [0, 1])
    >>> q.tolist(), s.tolist(), b.tolist()
    ([0.7, 0.4], [2.0, 2.0], [0.0, 0.0])
    """
    b = np.asarray(branches, dtype=int)
    return (np.sum(np.asarray(shares)[b], axis=0), np.sqrt(np.sum(np.asarray(share_cov)[np.ix_(b, b)], axis=(0, 1))),
            np.sum(np.asarray(bias)[b], axis=0))


def branch_fluctuation(model: HierarchicalModel, alphas, n_samples: int = 2**20, seed: int = 0,
                       d: int | None = None) -> dict:
    r"""The branch CLT of :func:`branch_variance_parts` on ``n_samples`` seeded draws of the model's latents
    at each alpha: ``q`` and ``sigma`` of shape (len(alphas), m, m) (alpha, branch, direction), ``lam``, ``gap``,
    ``zeta`` and ``zeta_sigma`` (the outlier eigenvalue's location and :math:`\sqrt d` sd) of shape
    (len(alphas), m), NaN where the branch has no outlier, ``zeta_cov`` (len(alphas), m, m), the eigenvalues'
    joint :math:`d\,\mathrm{Cov}`, and ``share_cov`` (len(alphas), m, m, m), the shares' (alpha, branch, branch,
    direction; :func:`branch_covariance`), ``gap_cov`` (len(alphas), m, m) and ``gap_share_cov`` (len(alphas), m, m,
    m), the same for the eigenvalues minus the edge of the realised labels, and ``edge`` (len(alphas),), the bulk edge
    :math:`\psi_\alpha(\bar\lambda)` of the same draws. With ``d`` (an integer > m) also
    ``bias``, shape (len(alphas), m, m): :func:`branch_bias_parts`' O(1/d) bias of the shares at that d, and
    ``zeta_bias``, shape (len(alphas), m): the O(1/d) mean shift of the branch eigenvalues there.

    ``zeta`` and ``edge`` carry the draws' Monte Carlo error, about 0.005 at 2^19 draws on the coupled model of
    docs/theory.md §4.3, i.e. 2/d at d = 400: set against a simulation, the exact locations of
    :func:`numerics.predict` (eigenvalues, bulk_edge) are the d = infinity reference, and ``zeta_bias``, a
    difference on the same draws, the correction to it."""
    a, tau, Z = _checked_latents(model, alphas, n_samples, seed)
    m = model.m
    if d is not None:
        d = integer(d, "d", m + 1)
    q, sigma, bias, zeta_cov = (np.full((a.size, m, m), np.nan) for _ in range(4))
    zeta_bias = np.full((a.size, m), np.nan)
    share_cov, gap_share_cov = np.full((a.size, m, m, m), np.nan), np.full((a.size, m, m, m), np.nan)
    gap_cov = np.full((a.size, m, m), np.nan)
    lam, gap, zeta, zeta_sigma = (np.full((a.size, m), np.nan) for _ in range(4))
    edge = np.empty(a.size)
    for ia, alpha in enumerate(a):
        lbar, edge[ia] = edge_of_atoms(tau, np.full(tau.size, 1.0 / tau.size), float(alpha))[:2]
        roots = _branch_roots(tau, Z, float(alpha), lbar)
        parts = branch_variance_parts(tau, Z, float(alpha), lbar, roots)
        for i, r in enumerate(parts):
            q[ia, i], sigma[ia, i], lam[ia, i], gap[ia, i] = r["q"], r["sigma"], r["lam"], r["gap"]
            zeta[ia, i], zeta_sigma[ia, i] = r["zeta"], r["zeta_sigma"]
        joint = branch_covariance(tau, Z, float(alpha), lbar, parts)
        nb = len(parts)
        zeta_cov[ia, :nb, :nb], share_cov[ia, :nb, :nb] = joint["cov"], joint["share_cov"]
        gap_cov[ia, :nb, :nb], gap_share_cov[ia, :nb, :nb] = joint["gap_cov"], joint["gap_share_cov"]
        if d is not None:
            for i, r in enumerate(branch_bias_parts(tau, Z, float(alpha), d, lbar, roots)):
                bias[ia, i], zeta_bias[ia, i] = r["bias"], r["zeta_bias"]
    out = {"alphas": a, "q": q, "sigma": sigma, "lam": lam, "gap": gap, "zeta": zeta, "zeta_sigma": zeta_sigma,
           "zeta_cov": zeta_cov, "share_cov": share_cov, "gap_cov": gap_cov, "gap_share_cov": gap_share_cov,
           "edge": edge}
    return out if d is None else dict(out, bias=bias, zeta_bias=zeta_bias)
