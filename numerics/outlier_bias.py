r"""The O(1/d) mean shift of an outlier eigenvector's overlap (docs/theory.md §4.4).

Above its threshold the overlap :math:`q_{k,d}` of direction k's outlier eigenvector has mean
:math:`E\,q_{k,d} = q_k + b_k + o(1/d)` with :math:`b_k = O(1/d)`. :mod:`numerics.outlier_fluctuation`
gives the spread :math:`\sigma_k/\sqrt d`; this module gives :math:`b_k`, from the same Schur
complement :math:`f(\zeta) = a - \zeta - b^\top(B-\zeta)^{-1}b` and :math:`q = -1/f'(\zeta)` at its root:

* **the mean of f.** By Sherman-Morrison, and because the pairs :math:`i \ne j` of
  :math:`b^\top(B-\zeta)^{-1}b` are odd in :math:`u_i`, exactly
  :math:`E f(\zeta) = E\big[\tau z_k^2/(1+\tau\eta)\big] - \zeta` with
  :math:`\eta = u^\top R_{(1)}u/n` independent of :math:`(\tau, z_k)`. Its mean to O(1/n) takes the finite
  sizes p = d - m and n - 1 other samples, the second-order fluctuation of the labels' empirical law
  and the real-Gaussian O(1) mean of :math:`\mathrm{tr}\,R` (Bai and Silverstein 2004,
  Thm 1.1: :math:`-\psi''/(2\psi'^2)`); its variance is :math:`2\,\mathrm{tr}R^2/n^2` plus the labels'
  part. This gives :math:`\beta(\zeta) = E f - \bar f = O(1/n)`.
* **the second-order delta method** for the root and :math:`-1/f'` there, with :math:`\beta, \beta'` and
  the first-order covariance kernel of :math:`\delta f` (docs/theory.md §4.2) and its derivatives.

The two parts nearly cancel near the threshold (for He2 with T = tanh at :math:`\alpha = 3\alpha_1`
the curvature alone gives :math:`d\,b_1 = +7.9`, the mean shift -7.7); far above it both are small.

A simulation draws n = round(alpha d) samples, so it sits at the ratio n/d, not at alpha; b also holds
that O(1/d) part, :math:`q_k(n/d) - q_k(\alpha)` (zero where alpha d is an integer).

For m > 1, :math:`b_k` is the shift of the diagonal entry's root; the mixing with the other outliers
is the separate O(1/d) effect of :func:`numerics.outlier_fluctuation.outlier_law`, whose draws include
:math:`b_k`.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
>>> b = outlier_bias(model, [6.4], d=200, n_samples=2**18)
>>> bool(0.18 < 200 * b[0, 0] < 0.60)      # simulated at d = 200: +0.39 +- 0.07 (docs/theory.md §4.4)
True
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, newton

from theory import HierarchicalModel
from theory.model import integer

from .outlier_fluctuation import (_block_at, _checked_latents, _influence, _stieltjes_quotient, _zeta_calculus,
                                  outlier_block, outlier_variance_parts)
from .resolvent import edge_of_atoms

__all__ = ["outlier_bias", "outlier_bias_parts", "outlier_moments", "trace_mean_correction"]

#: step of the finite differences in zeta, as a fraction of the root's distance to the bulk edge (the
#: nearest singularity); the five-point stencils then err by O(_H^4)
_H = 1e-2


def _psi(tau, alpha: float, lam: float) -> float:
    r""":math:`\psi_\alpha(\lambda) = \lambda(1/\alpha + E[K])`, :math:`K = \tau/(\lambda-\tau)`: the location
    :math:`\zeta` of an eigenvalue of B at :math:`\lambda` (docs/theory.md §4.1)."""
    return lam * (1 / alpha + float(np.mean(tau / (lam - tau))))


def _lam_of_zeta(tau, alpha: float, zeta: float, lbar: float) -> float:
    r""":math:`\lambda > \bar\lambda` with :math:`\psi_\alpha(\lambda) = \zeta` (:math:`\psi` increases there)."""
    f = lambda lam: _psi(tau, alpha, lam) - zeta  # noqa: E731
    hi = lbar + max(1.0, abs(lbar))
    while f(hi) < 0:
        hi = lbar + 2 * (hi - lbar)
    return brentq(f, lbar + 1e-12 * max(1.0, abs(lbar)), hi, xtol=1e-15, rtol=1e-15)


def _uniform(tau):
    """Equal weights for the draws ``tau``, as ``_zeta_calculus`` takes them."""
    return np.full(tau.size, 1.0 / tau.size)


def _trace_mean(psi1: float, psi2: float) -> float:
    r"""The Bai-Silverstein O(1) mean of the trace, :math:`-\psi''/(2\psi'^2)` (:func:`trace_mean_correction`)."""
    return -psi2 / (2 * psi1**2)


def trace_mean_correction(tau, alpha: float, lam: float) -> float:
    r"""The O(1) real-Gaussian mean :math:`E\,\mathrm{tr}(B-\zeta)^{-1} - p\,s(\zeta)` at fixed labels,
    :math:`B = \frac1n\sum_i\tau_iu_iu_i^\top` with standard real Gaussian :math:`u_i \in \mathbb R^p`,
    :math:`\zeta = \psi_\alpha(\lambda)` outside the bulk (docs/theory.md §4.4):

    .. math:: -\frac{\psi''_\alpha(\lambda)}{2\,\psi'_\alpha(\lambda)^2},
       \quad \psi' = \frac1\alpha - E\Big[\frac{\tau^2}{(\lambda-\tau)^2}\Big],
       \quad \psi'' = 2E\Big[\frac{\tau^2}{(\lambda-\tau)^3}\Big],

    Bai and Silverstein (2004, Ann. Probab. 32(1A), Thm 1.1, the real case) for :math:`f(x) = 1/(x-\zeta)`,
    with their population :math:`T = \mathrm{diag}(\tau)p/n` and B as their companion matrix.

    >>> round(trace_mean_correction(np.ones(1), 4.0, 4.0), 12)   # tau = 1: -(2/27) / (2 (1/4 - 1/9)^2) = -1.92
    -1.92
    """
    tau = np.asarray(tau, dtype=float)
    _, (psi1, psi2, _), _ = _zeta_calculus(tau, _uniform(tau), lam, alpha)
    return float(_trace_mean(psi1, psi2))


def _eta_moments(tau, alpha: float, zeta: float, lam: float, p: int, n: int):
    r"""Mean and variance of :math:`\eta = u^\top R_{(1)}u/n` to O(1/n), with :math:`R_{(1)}` the
    resolvent of the p x p matrix B without sample 1 (n - 1 samples, normalised by 1/n)."""
    c, mass = p / n, (n - 1) / n
    # the deterministic s at these sizes: 1/s = -zeta + mass E[tau/(1 + tau c s)], on the branch of s = -alpha/lam
    G = lambda s: 1 / s + zeta - mass * np.mean(tau / (1 + tau * c * s))  # noqa: E731
    G1 = lambda s: -1 / s**2 + mass * np.mean(c * tau**2 / (1 + tau * c * s) ** 2)  # noqa: E731
    s = float(newton(G, -alpha / lam, fprime=G1, tol=1e-300, rtol=1e-14, maxiter=50))  # relative: |s| can be >> 1
    m = tau / (1 + tau * c * s)
    m1 = -c * tau**2 / (1 + tau * c * s) ** 2
    g1 = G1(s)
    g2 = 2 / s**3 - mass * np.mean(2 * c**2 * tau**3 / (1 + tau * c * s) ** 3)
    var_m, cov = float(np.var(m)), float(np.mean((m - m.mean()) * (m1 - m1.mean())))
    # second order in the labels' empirical law: G(s) = delta M(s), delta M of variance Var(m)/n
    ds = (-0.5 * g2 * var_m / (n * g1**2) + cov / (n * g1)) / g1
    _, (psi1, psi2, _), (s_prime, _, _) = _zeta_calculus(tau, _uniform(tau), lam, alpha)  # s' = (1/p) tr R^2
    mean = c * (s + ds) + _trace_mean(psi1, psi2) / n
    var = 2 * c * s_prime / n + c**2 * var_m / (n * g1**2)
    return mean, var


def _fbar(tau, z2, zeta, lam):
    r""":math:`\bar f(\zeta) = E[\tau z^2/(1-\tau/\lambda)] - \zeta` at d = infinity (docs/theory.md §4.2)."""
    return float(np.mean(lam * tau / (lam - tau) * z2)) - zeta


def _mean_shift(tau, z2, alpha, zeta, lam, p, n):
    r""":math:`\beta(\zeta) = E f(\zeta) - \bar f(\zeta)`: :math:`E g(\eta) - g(\bar\eta)` for
    :math:`g(\eta) = E[\tau z^2/(1+\tau\eta)]`, to second order in :math:`\eta - \bar\eta`,
    :math:`\bar\eta = -1/\lambda`.
    ``z2`` of shape (N,) gives a float; of shape (N, r), r products :math:`z_jz_l` in its columns, the r entries
    of the m x m block's shift (docs/theory.md §4.3, "The branch's O(1/d) bias"), from one solve for η."""
    mean, var = _eta_moments(tau, alpha, zeta, lam, p, n)
    z2 = np.asarray(z2, dtype=float)
    t = tau.reshape((-1,) + (1,) * (z2.ndim - 1))
    t2 = t * z2
    one = 1 - t / lam
    out = np.mean(t2 / (1 + t * mean) - t2 / one + t**2 * t2 / one**3 * var, axis=0)
    return float(out) if z2.ndim == 1 else out


def _stencils(h: float):
    """The five-point first, second and third derivatives at the centre of values at offsets -2..2 times h, and
    the mixed derivative d1 d2 at the centre of a function f(a, b) of two offsets (the first derivative in each)."""
    d1 = lambda v: (v[0] - 8 * v[1] + 8 * v[3] - v[4]) / (12 * h)  # noqa: E731
    d2 = lambda v: (-v[0] + 16 * v[1] - 30 * v[2] + 16 * v[3] - v[4]) / (12 * h * h)  # noqa: E731
    d3 = lambda v: (-v[0] + 2 * v[1] - 2 * v[3] + v[4]) / (2 * h**3)  # noqa: E731
    w5 = {-2: 1 / 12, -1: -8 / 12, 1: 8 / 12, 2: -1 / 12}
    d11 = lambda f: sum(wa * wb * f(a, b) for a, wa in w5.items() for b, wb in w5.items()) / (h * h)  # noqa: E731
    return d1, d2, d3, d11


def _kernel_factors(tau, z, alpha, lam):
    r"""What the first-order kernel needs at one :math:`\lambda = \lambda(\zeta)`: the centred influence
    :math:`\hat h` (docs/theory.md §4.2), the pair coefficient :math:`\tilde c = \lambda K z`, and
    :math:`(\lambda, \psi')`."""
    K, (psi1, _, _), _ = _zeta_calculus(tau, _uniform(tau), lam, alpha)
    h = _influence(lam * K, z * z, np.mean(z * z * K**2) / psi1)
    return h - h.mean(), lam * K * z, lam, psi1


def _kernel(alpha, zeta1, zeta2, at1, at2):
    r""":math:`n\,\mathrm{Cov}(\delta f(\zeta_1), \delta f(\zeta_2))` to first order (docs/theory.md §4.2), from
    :func:`_kernel_factors` at each point: the labels' influences plus the off-diagonal pairs; at equal points
    the divided difference of s is s'."""
    (h1, c1, l1, psi1), (h2, c2, l2, psi2) = at1, at2
    slope = _stieltjes_quotient([zeta1, zeta2], [l1, l2], [alpha / (l1**2 * psi1), alpha / (l2**2 * psi2)], alpha)[0, 1]
    return float(np.mean(h1 * h2)) + 2 / alpha * float(np.mean(c1 * c2)) ** 2 * slope


def outlier_bias_parts(tau, z, alpha: float, d: int, m: int = 1, lbar: float | None = None,
                       first: dict | None = None) -> dict | None:
    r"""The O(1/d) bias :math:`b = E\,q_{d} - q` of one direction's outlier overlap from equally weighted
    draws ``tau``, ``z`` of :math:`(\tau, z_k)`, at ratio ``alpha`` and dimension ``d`` (n = round(alpha d)
    samples, p = d - m coordinates outside the m directions); None if there is no outlier. ``lbar`` and
    ``first``: the bulk edge and :func:`outlier_variance_parts` of the same draws at this alpha, if the
    caller already has them.

    Returns ``bias`` and its three parts: ``shift`` (from :math:`\beta, \beta'`, the mean of f),
    ``curvature`` (the second-order delta method with :math:`\beta = 0`) and ``rounding``
    (:math:`q_k(n/d) - q_k(\alpha)`: a simulation at n = round(alpha d) samples sits at the ratio n/d;
    0 where alpha d is an integer, NaN, and so is ``bias``, where n/d has no outlier), and q, zeta
    (the d = infinity root), ``root_shift`` (:math:`E\,\delta`, the O(1/d) mean shift of the root of the
    diagonal entry: the eigenvalue's own bias, docs/theory.md §4.4),
    ``beta`` and ``beta1`` (:math:`\beta, \beta'` there), ``fbar_derivatives`` (the first three
    zeta-derivatives of f-bar) and ``cov`` (Var δf, Cov(δf, δf'), Var δf', Cov(δf, δf'')), all at the root,
    the derivatives by five-point finite differences in zeta.
    """
    d = integer(d, "d", m + 1)
    n = int(round(alpha * d))
    lbar = edge_of_atoms(tau, _uniform(tau), alpha)[0] if lbar is None else lbar
    first = outlier_variance_parts(tau, z, alpha, lbar=lbar) if first is None else first
    if first is None:
        return None
    lam, z2, p = first["lam"], z * z, d - m
    zeta = _psi(tau, alpha, lam)
    # the nearest singularity in zeta is the bulk edge psi(lbar) (a square-root branch point): steps scale with it
    h = _H * (zeta - _psi(tau, alpha, lbar))
    offsets = (-2, -1, 0, 1, 2)
    d1, d2, d3, d11 = _stencils(h)
    L = {j: (lam if j == 0 else _lam_of_zeta(tau, alpha, zeta + j * h, lbar)) for j in offsets}
    fb = [_fbar(tau, z2, zeta + j * h, L[j]) for j in offsets]
    F1, F2, F3 = d1(fb), d2(fb), d3(fb)
    be = [_mean_shift(tau, z2, alpha, zeta + j * h, L[j], p, n) for j in offsets]
    B0, B1 = be[2], d1(be)
    at = {j: _kernel_factors(tau, z, alpha, L[j]) for j in offsets}  # once per point, not per pair
    cm = lambda a, b: _kernel(alpha, zeta + a * h, zeta + b * h, at[a], at[b]) / n  # noqa: E731
    row = [cm(0, j) for j in offsets]
    V, C1, C2, C11 = row[2], d1(row), d2(row), d11(cm)
    q = -1 / F1

    def bias(b0, b1):  # q (E x^2 - E x) for q = -1/f'(root) = q / (1 + x), docs/theory.md §4.4
        e_d = -(b0 + 0.5 * F2 * V / F1**2 - C1 / F1) / F1
        e_x = (F2 * e_d + 0.5 * F3 * V / F1**2 + b1 - C2 / F1) / F1
        e_x2 = (F2**2 * V / F1**2 - 2 * F2 * C1 / F1 + C11) / F1**2
        return q * (e_x2 - e_x)

    total, curvature = bias(B0, B1), bias(0.0, 0.0)
    root_shift = -(B0 + 0.5 * F2 * V / F1**2 - C1 / F1) / F1  # E delta: the root's own O(1/d) shift
    rounding = 0.0
    if n != alpha * d:  # q_k at the simulated ratio n/d, less q_k at alpha, on the same draws (NaN: no outlier there)
        at_n = outlier_variance_parts(tau, z, n / d)
        rounding = at_n["q"] - first["q"] if at_n is not None else np.nan
    return {"bias": total + rounding, "shift": total - curvature, "curvature": curvature, "rounding": rounding,
            "root_shift": root_shift, "q": q, "zeta": zeta, "beta": B0, "beta1": B1, "fbar_derivatives": (F1, F2, F3),
            "cov": (V, C1, C11, C2)}


def outlier_moments(model: HierarchicalModel, alphas, d: int, n_samples: int = 2**21, seed: int = 0,
                    eps_max: float = np.inf) -> dict:
    r"""The spread and the bias of every outlier overlap from one pass over the latents: ``sigma``,
    :math:`\sigma_k(\alpha)` of :func:`numerics.outlier_fluctuation.outlier_fluctuation`, and ``bias``,
    :math:`b_k(\alpha, d)` of :func:`outlier_bias`, both of shape (len(alphas), m) and NaN where
    direction k has no outlier. ``bias`` is computed only where
    :math:`\varepsilon_k = \sigma_k/(\sqrt d\,q_k) \le` ``eps_max`` (NaN elsewhere): near the threshold
    its expansion fails with the CLT's. Each point's draws, bulk edge and first-order solve serve both,
    so the pair costs what ``outlier_bias`` alone costs. Also ``gap_sd`` and ``gap_corr`` (same shape): the
    first-order spread of the outlier eigenvalue minus the edge of the realised labels,
    :math:`\lim_d \sqrt d\,\mathrm{sd}`, and its correlation with the overlap
    (:func:`numerics.outlier_fluctuation.outlier_variance_parts`; docs/theory.md §4.2, "The outlier
    eigenvalue and its detection"). And ``eig_shift`` (same shape, gated as ``bias``): the O(1/d) mean of the
    outlier eigenvalue about its d = infinity value, :math:`E\,\zeta_{k,d} - \zeta_k^*`: the root's own shift
    (``root_shift`` of :func:`outlier_bias_parts`) plus, for m > 1, the second-order level repulsion of the
    other directions, :math:`-q_k\sum_{l\ne k} E[F_{kl}^2]/\bar f_l(\zeta_k^*)`
    (:func:`numerics.outlier_fluctuation.outlier_block`; docs/theory.md §4.2, "The mean of the gap").

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
    >>> r = outlier_moments(model, [6.4], d=200, n_samples=2**16, eps_max=0.5)
    >>> bool(r["sigma"][0, 0] > 0 and np.isfinite(r["bias"][0, 0]))
    True
    """
    if isinstance(eps_max, bool) or not isinstance(eps_max, (int, float)) or not eps_max > 0:
        raise ValueError(f"eps_max: must be a number > 0 (np.inf: no gate), got {eps_max!r}")
    a, tau, Z = _checked_latents(model, alphas, n_samples, seed)
    d = integer(d, "d", model.m + 1)
    sigma, bias, gap_sd, gap_corr, eig_shift = (np.full((a.size, model.m), np.nan) for _ in range(5))
    for i, alpha in enumerate(a):
        lbar = edge_of_atoms(tau, _uniform(tau), float(alpha))[0]
        for k in range(model.m):
            first = outlier_variance_parts(tau, Z[:, k], float(alpha), lbar=lbar)
            if first is None:
                continue
            sigma[i, k], gap_sd[i, k], gap_corr[i, k] = first["sigma"], first["gap_sd"], first["gap_corr"]
            if first["sigma"] <= eps_max * np.sqrt(d) * first["q"]:
                parts = outlier_bias_parts(tau, Z[:, k], float(alpha), d, model.m, lbar, first=first)
                bias[i, k] = parts["bias"]
                eig_shift[i, k] = parts["root_shift"] + _level_repulsion(tau, Z, k, float(alpha), d, first)
    return {"sigma": sigma, "bias": bias, "gap_sd": gap_sd, "gap_corr": gap_corr, "eig_shift": eig_shift}


def _level_repulsion(tau, Z, k: int, alpha: float, d: int, first: dict) -> float:
    r"""The mean shift of direction k's outlier eigenvalue by its couplings to the other m - 1 directions, to
    second order: the pencil's zero :math:`\bar f_k(\zeta) = \sum_l F_{kl}^2/\bar f_l(\zeta)` moves by
    :math:`-q_k\sum_l F_{kl}^2/\bar f_l(\zeta_k^*)` (:math:`\bar f_k' = -1/q_k`), whose mean takes
    :math:`E F_{kl}^2` from :func:`numerics.outlier_fluctuation.outlier_block` (the block and the directions
    trimmed off it alike). An outlier above k's pushes it down, one below or a direction without an outlier
    (:math:`\bar f_l < 0`) pushes it up (docs/theory.md §4.2, "The mean of the gap"). 0 for m = 1."""
    if Z.shape[1] == 1:
        return 0.0
    n = int(round(alpha * d))
    blk = _block_at(outlier_block(tau, Z, k, alpha, first=first), n)
    f = np.concatenate([blk["f"][1:], blk["left_out"][0]])
    var = np.concatenate([[pair[2][0, 0] for pair in blk["pairs"]], blk["left_out"][2][:, 0, 0]]) / n
    return float(-first["q"] * np.sum(var / f))


def outlier_bias(model: HierarchicalModel, alphas, d: int, n_samples: int = 2**21, seed: int = 0) -> np.ndarray:
    r""":math:`b_k(\alpha, d) = E\,q_{k,d} - q_k` to O(1/d) for every direction k with an outlier at each
    alpha: shape (len(alphas), m), NaN where direction k has no outlier. For m > 1 the shift of the
    diagonal entry only (module docstring). Like :math:`\sigma_k`, it holds where
    :math:`\varepsilon_k = \sigma_k/(\sqrt d\,q_k)` is small (:func:`outlier_moments` gives both and
    gates b on it); ``n_samples`` seeded draws (``seed``) of the latents carry the expectations.
    """
    return outlier_moments(model, alphas, d, n_samples, seed)["bias"]
