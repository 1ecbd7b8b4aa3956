r"""Overlap of a subcritical direction with the top bulk eigenvector (docs/theory.md §4.1).

Below its threshold, direction :math:`w_k` has no outlier and the top eigenvector :math:`v_1` of
:math:`D_n` is a bulk eigenvector. Its squared overlap is O(1/d), enhanced near criticality. The
d = infinity resolvent in the direction :math:`w_k` (a Schur complement on :math:`z_k = w_k\cdot x`)
is, with :math:`\zeta = \psi_\alpha(\lambda)` on the physical branch,

.. math::
    s_k(\zeta) = w_k^\top(D_n-\zeta)^{-1}w_k \to \frac{1}{\lambda\,(F_k(\lambda) - 1/\alpha)},
    \qquad m(\zeta) = \tfrac1d\,\mathrm{tr}(D_n-\zeta)^{-1} \to -\frac{\alpha}{\lambda},

and the eigenvectors at x carry, on average, the share
:math:`R_k(x) = \mathrm{Im}\,s_k(x+i0)/\mathrm{Im}\,m(x+i0)` of :math:`d\,\langle w_k, v\rangle^2`.
At the (square-root) edge :math:`\lambda\to\bar\lambda`, :math:`G_2(\bar\lambda) = 1/\alpha`:

.. math::
    R_k = \frac{H_k/G_2}{(1 - F_k/G_2)^2}\Big|_{\bar\lambda},

the subcritical enhancement, divergent at the threshold :math:`F_k = G_2`. At finite d the top
eigenvalue sits about :math:`1.2065\,s\,d^{-2/3}` below the edge (the Tracy-Widom GOE mean),
where :math:`R_k(x)` is finite; :func:`edge_overlap` evaluates it there.

With coupled directions (non-even links, docs/theory.md §4.1 "Coupled directions") the Schur complement
is m x m, :math:`W^\top(D_n-\zeta)^{-1}W \to [\lambda(M(\lambda) - I/\alpha)]^{-1}`, and every share here
is the diagonal of a matrix expression (:func:`resolvent_share`). Direction 2 of the coupled model below
has its own threshold at 8.8, but the branch that crosses at alpha_1 = 1.53 mixes it in:

>>> coupled = HierarchicalModel(m=2, gamma=1, link="He1 + He2/2", preprocessing="clip(y, -1, 3)")
>>> R = edge_overlap(coupled, [1.0, 1.6])
>>> bool(np.isfinite(R[0]).all()), bool(np.isinf(R[1]).all())
(True, True)

>>> from theory import HierarchicalModel
>>> R = edge_overlap(HierarchicalModel(m=1, link="He2", preprocessing="1"), [2.0])  # T = 1: no spike
>>> round(float(R[0, 0]), 12)
1.0
"""
from __future__ import annotations

import numpy as np

from theory import HierarchicalModel
from theory.model import integer, sample_ratio, sample_ratios

from .label_law import check_model, label_law
from .resolvent import edge_of_atoms, outlier_of_atoms, resolvent_sums

__all__ = ["edge_overlap", "edge_regime", "edge_depth", "outlier_share", "boundary_share", "resolvent_share",
           "tw_scale", "edge_tw_scale", "TW_MEAN", "TW_SD"]

TW_MEAN = -1.2065  # mean of the GOE Tracy-Widom law (beta = 1); Tracy & Widom 1996, Table 1
TW_SD = 1.2680  # its standard deviation (same table)


def tw_scale(alpha: float, lbar: float, psi2: float) -> float:
    r"""The Tracy-Widom scale s of a square-root edge (docs/theory.md §4): the top bulk eigenvalue is
    :math:`\psi_\alpha(\bar\lambda) + s\,d^{-2/3}\,\mathrm{TW}_1`, with
    :math:`s = [\alpha/\bar\lambda^2\,\sqrt{2/\psi''_\alpha(\bar\lambda)}]^{-2/3}`, from the edge's
    :math:`\bar\lambda` and :math:`\psi''` (:func:`numerics.resolvent.edge_of_atoms`).

    T = 1 at alpha = 4 (Marchenko-Pastur): :math:`\bar\lambda = 1 + \sqrt\alpha = 3`, :math:`\psi'' = 2/8`; Johnstone's
    (2001) scale of the largest eigenvalue is :math:`d^{-2/3}(1+\sqrt\alpha)(1+1/\sqrt\alpha)^{1/3}/\alpha`:

    >>> a = 4.0
    >>> bool(abs(tw_scale(a, 3.0, 0.25) - (1 + a**0.5) * (1 + a**-0.5) ** (1 / 3) / a) < 1e-12)
    True
    """
    return float((alpha / lbar**2 * np.sqrt(2 / psi2)) ** (-2 / 3))


def edge_tw_scale(model: HierarchicalModel, alphas, **law_options) -> np.ndarray:
    r"""The Tracy-Widom scale :func:`tw_scale` of the model's bulk edge at each alpha, shape (len(alphas),);
    NaN in the boundary regime (no square-root edge, :func:`edge_regime`).

    >>> from theory import HierarchicalModel
    >>> s = edge_tw_scale(HierarchicalModel(m=1, link="He2", preprocessing="1"), [4.0])   # T = 1: Marchenko-Pastur
    >>> round(float(s[0]), 4)     # Johnstone's (1 + 2) (3/2)^(1/3) / 4
    0.8585
    """
    check_model(model)
    a = sample_ratios(alphas)
    law = label_law(model, **law_options)
    out = np.full(a.size, np.nan)
    for i in np.nonzero(edge_regime(model, a, **law_options))[0]:
        lbar, _, psi2 = edge_of_atoms(law.tau, law.p, float(a[i]), _tau_sup(law))
        out[i] = tw_scale(float(a[i]), lbar, psi2)
    return out


def resolvent_share(alpha: float, G2: float, M, H, E=None) -> np.ndarray:
    r"""The share :math:`E[d\,\langle w_k, v\rangle^2]` of every direction k in an eigenvector v at a real
    :math:`\lambda` outside the bulk (docs/theory.md §4.1, "Coupled directions"), from the resolvent sums
    there:

    .. math::
        R_k = \big[(I-\alpha M)^{-1}\,\big(\alpha H + (1-\alpha G_2)\,E\big)\,(I-\alpha M)^{-1}\big]_{kk},

    with :math:`M_{jk} = E[\tau(z_jz_k-\delta_{jk})/(\lambda-\tau)]`,
    :math:`H_{jk} = E[\tau^2 z_jz_k/(\lambda-\tau)^2]` and E the second moment of z on the sample the
    eigenvector sits on (None: the identity). Its three uses: the square-root edge (:math:`G_2 = 1/\alpha`,
    where E drops out; :func:`edge_overlap`), the outlier of another direction (E = I,
    :func:`outlier_share`) and the boundary regime (:math:`\lambda = \sup T`,
    :math:`E = E[zz^\top\mid\mathrm{top}]`, :func:`boundary_share`). With 1-d M, H (and E) the
    directions are uncoupled and the matrices are their diagonals: :math:`R_k = (\alpha H_k + (1-\alpha G_2)
    E_k)/(1-\alpha F_k)^2`.

    A diagonal M, H given as matrices gives the per-direction values:

    >>> M, H = np.array([0.2, -0.1]), np.array([0.5, 0.3])
    >>> per_direction = resolvent_share(2.0, 0.4, M, H)
    >>> bool(np.allclose(resolvent_share(2.0, 0.4, np.diag(M), np.diag(H)), per_direction))
    True
    """
    M, H = np.asarray(M), np.asarray(H)
    if M.ndim == 1:
        e = 1.0 if E is None else np.asarray(E)
        return (alpha * H + (1 - alpha * G2) * e) / (1 - alpha * M) ** 2
    eye = np.eye(M.shape[0])
    A = np.linalg.inv(eye - alpha * M)
    inner = alpha * H + (1 - alpha * G2) * (eye if E is None else np.asarray(E))
    return np.einsum("kj,jl,lk->k", A, inner, A)


def _direction_sums(law, lam):
    """G2 and M, H of :func:`resolvent_share` at one point lam (real or complex): their diagonals F_k, H_k
    (1-d) when the law has no coupled pair, else m x m with the cross sums of its pairs
    E[tau z_j z_k / (lam - tau)] and E[tau^2 z_j z_k / (lam - tau)^2] off the diagonal."""
    tau = law.tau
    _, G2, F, H = resolvent_sums(tau, law.p, np.asarray(law.r), lam)
    F, H = F[:, 0], H[:, 0]
    if not law.pairs:
        return G2[0], F, H
    K = tau / (lam - tau)
    j, k = np.array(law.pairs).T
    M, Hm = np.diag(F), np.diag(H)
    M[j, k] = M[k, j] = law.cross @ K
    Hm[j, k] = Hm[k, j] = law.cross @ K**2
    return G2[0], M, Hm


def _above(alpha_M) -> np.ndarray:
    """The directions that carry an outlier branch, alpha mu_i >= 1, of alpha M (1-d: per direction)."""
    if alpha_M.ndim == 1:
        return alpha_M >= 1
    mu, V = np.linalg.eigh(alpha_M)
    return (V[:, mu >= 1] ** 2).sum(axis=1) > 1e-9


def edge_regime(model: HierarchicalModel, alphas, **law_options) -> np.ndarray:
    r"""True where the bulk edge is a square-root edge (:math:`G_2(\bar\lambda) = 1/\alpha` has a root
    above sup T), False in the boundary regime :math:`\bar\lambda = \sup T`, where the edge is not
    square-root and :func:`edge_overlap` does not apply."""
    check_model(model)
    a = sample_ratios(alphas)
    law = label_law(model, **law_options)
    tau, p = law.tau, law.p
    tsup = _tau_sup(law)
    if tau.max() >= tsup:  # an atom at sup T: G2 diverges there, always a square-root edge
        return np.ones(a.size, dtype=bool)
    G2_sup = float(p @ (tau / (tsup - tau)) ** 2)
    return G2_sup * a > 1.0


def _tau_sup(law) -> float:
    """The law's ess sup T where it is finite, else its largest atom."""
    return float(law.tau_sup) if np.isfinite(law.tau_sup) else float(law.tau.max())


def edge_depth(j: int) -> float:
    r"""Typical depth of the j-th largest bulk eigenvalue below the edge, in Tracy-Widom units
    :math:`s\,d^{-2/3}`: the GOE Tracy-Widom mean 1.2065 for j = 1; for j >= 2 the point above which
    the edge density :math:`\sqrt{-\xi}/\pi` holds mass j - 1, :math:`(3\pi(j-1)/2)^{2/3}`. The
    latter is shallower than the classical location (mass j - 1/2), so an overlap share
    evaluated there errs on the large side.

    >>> round(edge_depth(1), 4), round(edge_depth(2), 3)
    (1.2065, 2.811)
    """
    j = integer(j, "j", 1)
    return -TW_MEAN if j == 1 else float((1.5 * np.pi * (j - 1)) ** (2 / 3))


def edge_overlap(model: HierarchicalModel, alphas, d: int | None = None, j=1, **law_options) -> np.ndarray:
    r""":math:`E[d\,\langle w_k, v_1\rangle^2]` for a subcritical direction k: the ratio
    :math:`R_k(x)` of the module docstring at each alpha, shape (len(alphas), m).

    ``d = None`` gives the d = infinity edge value :math:`(H_k/G_2)/(1-F_k/G_2)^2` (infinite at or
    above the threshold). With an integer d it is evaluated at the Tracy-Widom mean location
    :math:`x_1 = b - 1.2065\,s\,d^{-2/3}` of the top eigenvalue (docs/theory.md §4), by solving
    :math:`\psi_\alpha(\lambda) = x_1` for complex :math:`\lambda` (Newton from the edge expansion);
    this stays finite through the window, where it grows like :math:`d^{2/3}` (so q ~ d^{-1/3}).

    ``j`` > 1 evaluates it at the j-th eigenvalue's location instead (:func:`edge_depth`); for a
    subcritical direction the share falls with depth (the enhancement peaks at the edge). A
    sequence of j (finite d) gives shape (len(j), len(alphas), m), sharing the edge computation.

    Square-root edges only: an alpha in the boundary regime (see :func:`edge_regime`) is refused.

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="clip(y, -1, 3)")   # alpha_1 = 0.654
    >>> R_inf = edge_overlap(model, [0.2, 0.5])
    >>> R_400 = edge_overlap(model, [0.2, 0.5], d=400)
    >>> bool(np.all(R_400 < R_inf)), bool(R_inf[1, 0] > R_inf[0, 0])   # finite d softens; nearer alpha_1, larger
    (True, True)
    """
    check_model(model)
    a = sample_ratios(alphas)
    if d is not None:
        d = integer(d, "d", 2)
    several = np.ndim(j) > 0
    js = list(np.atleast_1d(j)) if several else [j]
    if several and (d is None or not js):
        raise ValueError(f"j: several eigenvalue indices need a finite d and at least one index, got {j!r}")
    depths_tw = [edge_depth(jj) for jj in js]
    square_root = edge_regime(model, a, **law_options)
    if not np.all(square_root):
        raise ValueError(f"alphas: alpha = {a[~square_root].min():g} is in the boundary regime "
                         "(lambda_bar = sup T), where the edge is not square-root; edge_overlap needs a larger alpha")
    law = label_law(model, **law_options)
    tau, p = law.tau, law.p
    out = np.empty((len(js), a.size, law.m))
    for i, alpha in enumerate(a):
        lbar, edge, psi2 = edge_of_atoms(tau, p, alpha, _tau_sup(law))
        if d is None:  # at the edge G2 = 1/alpha (to the root's precision; 1/G2 makes the E term vanish)
            G2, M, H = _direction_sums(law, lbar)
            above = _above(M / G2)
            with np.errstate(divide="ignore", invalid="ignore"):  # a direction at its threshold: set inf below
                out[0, i] = np.where(above, np.inf, resolvent_share(1 / G2, G2, M, H))
            continue
        scale = tw_scale(alpha, lbar, psi2)
        for jj, depth_tw in enumerate(depths_tw):
            out[jj, i] = _share_at_depth(law, alpha, lbar, edge, psi2, depth_tw * scale * d ** (-2 / 3), d)
    return out if several else out[0]


def _share_at_depth(law, alpha, lbar, edge, psi2, depth, d):
    """R_k at the point x = edge - depth inside the bulk: Newton on psi(lambda) = x for complex lambda
    from the edge expansion psi(lbar + delta) = edge + psi'' delta^2 / 2, then Im s_k / Im m, with
    s = [lambda (M - I/alpha)]^(-1) (its diagonal; coupled directions: the matrix's, docs/theory.md §4.1)."""
    tau, p = law.tau, law.p
    lam = lbar + 1j * np.sqrt(2 * depth / psi2)
    no_r = np.zeros((0, tau.size))
    for _ in range(60):
        G1, G2, _, _ = resolvent_sums(tau, p, no_r, lam)
        residual = lam * (1 / alpha + G1[0]) - (edge - depth)
        # the residual's rounding level: the sum's terms in absolute value. Near the edge psi' = O(Im lambda) -> 0
        # (d -> infinity), so a step at that level can stay above 1e-14 |lambda| and only moves lambda by its noise
        floor = 64 * np.finfo(float).eps * (abs(lam) * (1 / alpha + float(np.sum(p * np.abs(tau / (lam - tau)))))
                                            + abs(edge - depth))
        step = residual / (1 / alpha - G2[0])
        lam = lam - step
        if abs(step) < 1e-14 * abs(lam) or abs(residual) <= floor:
            break
    else:
        raise ArithmeticError(f"edge_overlap: Newton did not converge at alpha = {alpha:g}, d = {d}")
    if not lam.imag > 0:  # the physical branch has Im lambda > 0 (Im m > 0)
        raise ArithmeticError(f"edge_overlap: Newton left the physical branch at alpha = {alpha:g}, d = {d}")
    _, M, _ = _direction_sums(law, lam)
    if M.ndim == 1:
        s_k = 1 / (lam * (M - 1 / alpha))
    else:
        s_k = np.diag(np.linalg.inv(lam * (M - np.eye(M.shape[0]) / alpha)))
    return s_k.imag / (alpha * lam.imag / abs(lam) ** 2)  # Im m = Im(-alpha/lam)


def outlier_share(model: HierarchicalModel, alpha: float, **law_options) -> np.ndarray:
    r"""Share of :math:`d\,\langle w_k, u_j\rangle^2` in the outlier eigenvector :math:`u_j` of another direction
    j: the same ratio of resolvents as :func:`edge_overlap`, continued to the real point
    :math:`\lambda_j^*` (:math:`F_j(\lambda_j^*) = 1/\alpha`) outside the bulk,

    .. math::
        R_k(\lambda) = \frac{s_k'(\zeta)}{m'(\zeta)} = \frac{H_k + 1/\alpha - G_2}{\alpha\,(F_k - 1/\alpha)^2}
        \Big|_{\lambda = \lambda_j^*},

    which equals the edge value as :math:`\lambda_j^*\to\bar\lambda` (docs/theory.md §4.1). Away from the
    edge it overstates the share, by :math:`1/(1-q_j)` for a direction without a spike: it leaves out
    the mass :math:`q_j` that :math:`u_j` puts on :math:`w_j`. There the first-order share of
    :func:`numerics.outlier_fluctuation.mixing_share` holds.
    Returns an m x m array, row j (NaN where direction j has no outlier at this alpha), column k
    (NaN on the diagonal).

    >>> from theory import HierarchicalModel
    >>> S = outlier_share(HierarchicalModel(m=2, gamma=1.0, link="He2", preprocessing="clip(y, -1, 3)"), 2.3)
    >>> bool(np.isfinite(S[0, 1])), bool(np.isnan(S[1, 0]))    # direction 1 has an outlier, 2 not yet
    (True, True)
    """
    check_model(model)
    alpha = sample_ratio(alpha)
    law = label_law(model, **law_options)
    if law.pairs:
        raise ValueError("model: its directions couple (non-even links), so an outlier belongs to an eigen-branch "
                         "of M, not to a direction; outlier_share needs uncoupled directions (docs/theory.md §4.1)")
    tau, p, R = law.tau, law.p, np.asarray(law.r)
    lbar = edge_of_atoms(tau, p, alpha, _tau_sup(law))[0]
    F_bar = resolvent_sums(tau, p, R, lbar)[2][:, 0]
    out = np.full((R.shape[0], R.shape[0]), np.nan)
    for j in np.nonzero(F_bar > 1 / alpha)[0]:  # an outlier: F_j crosses 1/alpha above lambda_bar
        lam = outlier_of_atoms(tau, p, R[j], alpha, lbar)
        G2, F, H = _direction_sums(law, lam)
        with np.errstate(divide="ignore", invalid="ignore"):  # k = j: F_j = 1/alpha exactly, set to NaN below
            out[j] = resolvent_share(alpha, G2, F, H)
        out[j, j] = np.nan
    return out


def boundary_share(model: HierarchicalModel, alphas, d: int, **law_options) -> np.ndarray:
    r""":math:`E[d\,\langle w_k, v\rangle^2]` for a top bulk eigenvector v in the boundary regime
    :math:`\bar\lambda = \sup T` (docs/theory.md §4.1, "The boundary regime"), shape (len(alphas), m).

    There the top eigenvectors sit on the samples with the largest :math:`\tau`: each is close to
    :math:`(D^{(i)}-\zeta)^{-1}x_i` for one such sample i, at :math:`\lambda \to \sup T`. Its share is

    .. math::
        R_k^{\mathrm b} = \frac{\alpha H_k + E[z_k^2\mid \mathrm{top}]\,(1 - \alpha G_2)}{(1 - \alpha F_k)^2}
        \Big|_{\lambda = \sup T},

    the square-root edge value of :func:`edge_overlap` with the extreme sample as an atom, and
    :func:`outlier_share` at :math:`\lambda = \sup T` when :math:`E[z_k^2\mid\mathrm{top}] = 1`.
    :math:`E[z_k^2\mid\mathrm{top}]` is the mean of :math:`z_k^2` over the top 1/n of the law of
    :math:`\tau` (n = round(alpha d)): the extreme label is mostly made by the strongest direction,
    whose share it enhances. The same share holds for each of the top eigenvectors (each sits on its own
    extreme sample), unlike the square-root edge, where it falls with depth. Infinite where direction k
    has an outlier (:math:`\alpha F_k(\sup T) \ge 1`). An alpha with a square-root edge is refused.

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(gamma="13/10", m=10)        # the default: alpha_b = 2.36, alpha_1 = 1.26
    >>> R = boundary_share(model, [2.0], d=600)
    >>> bool(np.isinf(R[0, 0])), bool(np.all(R[0, 1:] > 1)), bool(np.all(np.diff(R[0, 1:]) < 0))
    (True, True, True)
    """
    check_model(model)
    a = sample_ratios(alphas)
    d = integer(d, "d", 2)
    square_root = edge_regime(model, a, **law_options)
    if np.any(square_root):
        raise ValueError(f"alphas: alpha = {a[square_root].min():g} has a square-root edge (alpha >= alpha_b); "
                         "boundary_share is for the boundary regime lambda_bar = sup T, use edge_overlap there")
    law = label_law(model, **law_options)
    tau, p, R = law.tau, law.p, np.asarray(law.r)
    G2, M, H = _direction_sums(law, _tau_sup(law))  # finite: no atom at sup T here
    order = np.argsort(tau)[::-1]
    cum = np.cumsum(p[order])
    out = np.empty((a.size, R.shape[0]))
    for i, alpha in enumerate(a):
        top = order[: int(np.searchsorted(cum, 1.0 / round(alpha * d))) + 1]  # at least one atom
        E = R[:, top].sum(axis=1) / p[top].sum()  # E[z_k^2 | top]
        if M.ndim == 2:  # coupled directions: E[z z^T | top], its pairs from the law's cross moments
            j, k = np.array(law.pairs).T
            E = np.diag(E)
            E[j, k] = E[k, j] = law.cross[:, top].sum(axis=1) / p[top].sum()
        above = _above(alpha * M)
        with np.errstate(divide="ignore", invalid="ignore"):  # a direction with an outlier: inf below
            out[i] = np.where(above, np.inf, resolvent_share(alpha, G2, M, H, E))
    return out
