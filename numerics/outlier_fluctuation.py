r"""Finite-d fluctuations of an outlier eigenvector's overlap (docs/theory.md §4.2).

Above its threshold direction k has an outlier of :math:`D_n = \frac1n\sum_i \tau_i x_ix_i^\top`, and
the squared overlap :math:`q_{k,d} = \langle w_k, u_k\rangle^2` of its eigenvector tends to
:math:`q_k` (docs/theory.md §2.2). Its fluctuations are Gaussian of order :math:`d^{-1/2}`:

.. math:: \sqrt d\,(q_{k,d} - E\,q_{k,d}) \Rightarrow N(0, \sigma_k^2).

This module computes :math:`\sigma_k` for the model at hand. The route: split
:math:`x = (z_k, u)`; by the Schur complement the outlier :math:`\zeta` is the zero of
:math:`f(\zeta) = a - \zeta - b^\top(B-\zeta)^{-1}b` outside the spectrum of B, and its overlap is
exactly :math:`q = -1/f'(\zeta)`. So to first order (the delta method)

.. math:: \delta q = q^2\,(\delta f' + q\,\bar f''\,\delta f)\quad\text{at}\ \zeta_k^*,

and :math:`\sigma_k^2` is a quadratic form in the covariance of :math:`(\delta f, \delta f')`.
That covariance has three parts (docs/theory.md §4.2 derives each): the sample average of the
influence :math:`\hat h = \lambda K z^2 + (H_k/\psi')\,\lambda K`, :math:`K = \tau/(\lambda-\tau)`
(the second term is the fluctuation of the bulk's Stieltjes transform through the empirical law of
the labels), and the off-diagonal pairs :math:`i\ne j` of :math:`b^\top(B-\zeta)^{-1}b`, whose
covariance is :math:`\frac{2}{\alpha n}E[\tilde c_1\tilde c_2]^2\,\frac{s(\zeta_1)-s(\zeta_2)}{\zeta_1-\zeta_2}`
with :math:`\tilde c = \lambda K z`.

The expectations over :math:`(\tau, z_k)` are Monte Carlo averages over ``n_samples`` seeded draws of
the latents: the variance needs :math:`E[z_k^4\,\cdot\,]`, which the label law
(:mod:`numerics.label_law`) does not hold. At the default size two seeds give :math:`\sigma_k` within
0.2-0.6 % of each other for :math:`\alpha \ge 2\alpha_k` (docs/theory.md §4.2, measured).

For m > 1 split off all m directions at once: the coordinates u are then independent of
:math:`(\tau, z)` again and :math:`\sigma_k` is the same formula with :math:`(\tau, z_k)` drawn from the
full model. What m > 1 adds is the mixing of close outliers: the off-diagonal entries of the m x m
Schur complement :math:`F(\zeta)` fluctuate at :math:`n^{-1/2}` and rotate the outlier eigenvectors
into each other, an O(1/(d gap^2)) loss of :math:`q_{k,d}` that can exceed :math:`\sigma_k/\sqrt d`.
:func:`outlier_law` draws :math:`q_{k,d}` from the CLT plus the linear pencil of that block
(docs/theory.md §4.3); :func:`validation.compare.compare` uses it for m > 1.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
>>> s = outlier_fluctuation(model, [0.5, 6.4], n_samples=2**18)
>>> bool(np.isnan(s[0, 0])), 0.2 < float(s[1, 0]) < 0.4     # below alpha_1 = 0.639: no outlier
(True, True)
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicHermiteSpline

from theory import HierarchicalModel
from theory.model import integer, sample_ratios

from .label_law import check_model, draw_latents
from .resolvent import edge_of_atoms, outlier_of_atoms, resolvent_sums

__all__ = ["outlier_fluctuation", "outlier_variance_parts", "outlier_block", "outlier_law", "mixing_share",
           "detection_covariance", "MIX_MIN"]


def _zeta_calculus(tau, w, lam: float, alpha: float):
    r"""At :math:`\lambda`: K = tau/(lam - tau), the lambda-derivatives (psi', psi'', psi''') of
    :math:`\psi_\alpha`, and the first three zeta-derivatives (s', s'', s''') of the bulk's Stieltjes
    transform :math:`s(\zeta) = -\alpha/\lambda`, by the chain rule through :math:`\zeta = \psi(\lambda)`
    (docs/theory.md §4.2)."""
    K = tau / (lam - tau)
    p1 = 1 / alpha - float(w @ K**2)
    p2 = 2 * float(w @ (K**2 / (lam - tau)))
    p3 = -6 * float(w @ (K**2 / (lam - tau) ** 2))
    s_l, s_ll, s_lll = alpha / lam**2, -2 * alpha / lam**3, 6 * alpha / lam**4
    A = s_ll * p1 - s_l * p2
    s = (s_l / p1, A / p1**3, ((s_lll * p1 - s_l * p3) * p1 - 3 * A * p2) / p1**5)
    return K, (p1, p2, p3), s


def _pair_kernel(A, B, s):
    r"""The off-diagonal-pairs kernel :math:`A(\zeta_1,\zeta_2)B(\zeta_1,\zeta_2)
    \frac{s(\zeta_1)-s(\zeta_2)}{\zeta_1-\zeta_2}` and its derivatives :math:`\partial_2` and
    :math:`\partial_1\partial_2` at equal points (docs/theory.md §4.2-4.3), from A = (E[a a], E[a a_z],
    E[a_z a_z]) for the coefficient a and its zeta-derivative a_z, the same for B, and s = (s', s'', s''')."""
    (a0, a1, a11), (b0, b1, b11), (s1, s2, s3) = A, B, s
    return (a0 * b0 * s1,
            (a1 * b0 + a0 * b1) * s1 + a0 * b0 * s2 / 2,
            (a11 * b0 + 2 * a1 * b1 + a0 * b11) * s1 + (a1 * b0 + a0 * b1) * s2 + a0 * b0 * s3 / 6)


def _influence(lamK, z2, cH):
    r"""The influence of one sample on f (docs/theory.md §4.2, parts 1 and 2):
    :math:`\hat h = \lambda K z^2 + (H_k/\psi')\lambda K`, with ``cH`` = :math:`H_k/\psi'`."""
    return lamK * z2 + cH * lamK


def outlier_variance_parts(tau, z, alpha: float, weights=None, lbar: float | None = None) -> dict | None:
    r"""The first-order fluctuation of one direction's outlier overlap from a discrete law of
    :math:`(\tau, z_k)`: atoms ``tau``, ``z`` with ``weights`` summing to 1 (None: equal weights, i.e.
    samples), at ratio ``alpha``; None if there is no outlier. ``lbar``: the bulk edge's
    :math:`\bar\lambda` of the same atoms at the same alpha (``edge_of_atoms``), if already computed;
    it does not depend on the direction.

    Returns q, lam (:math:`\lambda_k^*`), sigma (:math:`\sigma_k`), and the two parts of
    :math:`\sigma_k^2`: ``diagonal`` (the label average, the Stieltjes term included) and
    ``pairs`` (the off-diagonal pairs); ``sigma**2 = diagonal + pairs``. ``q_influence``: one sample's
    influence on :math:`\delta q`, :math:`q^2(\hat h' + q\bar f''\hat h)` (per atom), and ``q_pairs_f``: n
    times the pairs part of :math:`\mathrm{Cov}(\delta f, \delta q)`; the outlier block correlates k's own
    fluctuation with the other directions' gaps through them (docs/theory.md §4.3, "k's own fluctuation
    and the gaps"). Also the outlier eigenvalue against the bulk edge of the same labels (docs/theory.md
    §4.2, "The outlier eigenvalue and its detection"): ``gap``, :math:`\zeta_k^* - \psi_\alpha(\bar\lambda)`;
    ``gap_sd``, :math:`\lim_d \sqrt d\ \mathrm{sd}` of the eigenvalue minus the edge of the empirical label law,
    :math:`\delta\zeta - \delta e` with :math:`\delta\zeta = q\,\delta f` and
    :math:`\delta e` the sample average of :math:`\bar\lambda K(\bar\lambda)`; and ``gap_corr``, its
    correlation with :math:`\delta q`.
    """
    w = np.full(tau.size, 1.0 / tau.size) if weights is None else np.asarray(weights, dtype=float)
    E = lambda v: float(w @ v)  # noqa: E731
    z2 = z * z
    lbar = edge_of_atoms(tau, w, alpha)[0] if lbar is None else lbar
    lam = outlier_of_atoms(tau, w, w * z2, alpha, lbar)
    if lam is None:
        return None
    K, (p1, p2, _), s = _zeta_calculus(tau, w, lam, alpha)
    H = E(z2 * K**2)
    q = p1 / (p1 + H)
    # f-bar = lam (F_k - 1/alpha) as a function of zeta = psi(lam): f' = -1/q, and f''
    H1 = -2 * E(z2 * K**2 / (lam - tau))
    f_l, f_ll = -(H + p1), -H1 - p2
    f_zz = (f_ll * p1 - f_l * p2) / p1**3
    # diagonal: the influence h of one sample on f, and its zeta-derivative
    cH, cH_l = H / p1, (H1 * p1 - H * p2) / p1**2
    lamK, lamK_l = lam * K, -K**2
    h = _influence(lamK, z2, cH)
    h_z = (-K**2 * z2 + cH_l * lamK + cH * lamK_l) / p1
    C = np.cov(np.vstack([h, h_z]), aweights=w, bias=True)
    # off-diagonal pairs: kernel (2/alpha) E[c1 c2]^2 (s1 - s2)/(zeta1 - zeta2), c = lam K z
    c, c_z = lamK * z, -K**2 * z / p1
    A = (E(c * c), E(c * c_z), E(c_z * c_z))
    O0, O1, O11 = (2 / alpha * v for v in _pair_kernel(A, A, s))

    def form(v00, v01, v11):  # q^4 Var(f' + q f'' f), per 1/(alpha d) -> per 1/d
        return q**4 * (v11 + 2 * q * f_zz * v01 + (q * f_zz) ** 2 * v00) / alpha

    diagonal, pairs = form(C[0, 0], C[0, 1], C[1, 1]), form(O0, O1, O11)
    # the eigenvalue against the edge estimate: zeta moves by q delta f (f' = -1/q), the edge
    # psi(lbar) = lbar (1/alpha + E K(lbar)) by the sample average of lbar K(lbar) (psi'(lbar) = 0)
    Kb = lbar * tau / (lbar - tau)
    g = q * h - Kb  # one sample's influence on zeta - edge
    u, u_pairs = q**2 * (h_z + q * f_zz * h), q**2 * (O1 + q * f_zz * O0)  # and on q; the pairs part with f
    cov = np.cov(np.vstack([g, u]), aweights=w, bias=True)
    gap_var = (cov[0, 0] + q**2 * O0) / alpha
    gap_q = (cov[0, 1] + q * u_pairs) / alpha
    sigma = float(np.sqrt(diagonal + pairs))
    return {"q": q, "lam": lam, "sigma": sigma, "diagonal": diagonal, "pairs": pairs,
            "gap": lam / alpha + E(lam * K) - (lbar / alpha + E(Kb)), "gap_sd": float(np.sqrt(gap_var)),
            "gap_corr": float(gap_q / np.sqrt(gap_var) / sigma),
            "q_influence": u, "q_pairs_f": u_pairs}


def _checked_latents(model, alphas, n_samples, seed):
    """The checked alphas and ``n_samples`` seeded draws (tau, z) of the model's latents, with every
    argument refused by name when it is out of range."""
    check_model(model)
    a = sample_ratios(alphas)
    _, tau, z = draw_latents(model, integer(n_samples, "n_samples", 10_000), integer(seed, "seed", 0))
    if not np.all(np.isfinite(tau)):
        raise ValueError("preprocessing: T(y) is not finite on a drawn label (division by zero?)")
    return a, tau, z


def outlier_fluctuation(model: HierarchicalModel, alphas, n_samples: int = 2**21, seed: int = 0) -> np.ndarray:
    r""":math:`\sigma_k(\alpha) = \lim_d \sqrt d\ \mathrm{sd}(q_{k,d})` for every direction k with an outlier
    at each alpha (module docstring): shape (len(alphas), m), NaN where direction k has no outlier.

    ``n_samples`` seeded draws (``seed``) of the latents carry the expectations.
    """
    a, tau, z = _checked_latents(model, alphas, n_samples, seed)
    out = np.full((a.size, model.m), np.nan)
    for i, alpha in enumerate(a):
        lbar = edge_of_atoms(tau, np.full(tau.size, 1.0 / tau.size), float(alpha))[0]
        for k in range(model.m):
            r = outlier_variance_parts(tau, z[:, k], float(alpha), lbar=lbar)
            if r is not None:
                out[i, k] = r["sigma"]
    return out


#: a direction l joins the outlier block of direction k where its expected squared mixing angle
#: E[F_kl^2] / F_ll(zeta_k)^2 is at least this; each direction left out moves q_k by about q_k^2 times it,
#: and the law draws their summed loss from the weak-coupling expansion (_left_out_shift)
MIX_MIN = 1e-4


def outlier_block(tau, Z, k: int, alpha: float, first: dict | None = None,
                  diagonal: dict | None = None) -> dict | None:
    r"""The m x m Schur complement of docs/theory.md §4.3 around the outlier of direction ``k``
    (0-based), from equally weighted draws ``tau`` (n_samples,) and ``Z`` (n_samples, m) at ratio
    ``alpha``; None if direction k has no outlier.

    With :math:`W = (w_1..w_m)`, every eigenvalue :math:`\zeta` of :math:`D_n` outside the bulk is a zero of
    :math:`\det F(\zeta)`, :math:`F(\zeta) = A - \zeta I - C(B-\zeta)^{-1}C^\top`, and the eigenvector's overlap
    with :math:`w_k` is :math:`c_k^2/(-c^\top F'(\zeta)c)` for the null vector c. At d = infinity F is
    diagonal, :math:`\bar f_l(\zeta) = \lambda(E[K(z_l^2-1)] - 1/\alpha)`; at finite n it fluctuates at
    :math:`n^{-1/2}`. Returned, for the block ``idx`` (k first, then the directions with a mixing
    angle above :data:`MIX_MIN`), all at :math:`\zeta_k^*`: ``f`` and ``fp`` (:math:`\bar f_l`,
    :math:`\bar f_l'`), ``gap_cov`` (n times the covariance of the gaps
    :math:`\delta g_l = \delta f_l + \bar f_l' q_k\,\delta f_k`, the diagonal relative to the moving root) and
    ``pairs``: (0, b, 2 x 2 matrix), n times the covariance of :math:`(F_{kl}, F_{kl}')` for each
    other direction l = idx[b] of the block (the couplings between two other directions: ``cross`` of
    :func:`_block_at`); with q, lam and sigma of :func:`outlier_variance_parts`
    (``first``: its result for direction k, if already computed). ``diagonal``: a dict with ``f`` and
    ``fp`` (length m) that replaces the latent draws' :math:`\bar f_l`, :math:`\bar f_l'`, e.g. the label
    law's (:func:`_exact_diagonal`); the mixing angles, and so the block's order and its trimming by
    :data:`MIX_MIN`, are then taken with it too.
    """
    r = outlier_variance_parts(tau, Z[:, k], alpha) if first is None else first
    if r is None:
        return None
    lam, q, N = r["lam"], r["q"], tau.size
    w = np.full(N, 1.0 / N)
    K, (p1, _, _), s = _zeta_calculus(tau, w, lam, alpha)
    lamK, lamK_z = lam * K, -K**2 / p1
    Z2 = Z * Z
    H = (K**2 @ Z2) / N
    f = lam * ((K @ Z2) / N - K.mean()) - lam / alpha
    f[k] = 0.0  # the root itself (zero up to the root solver's tolerance)
    fp = -(H + p1) / p1
    if diagonal is not None:  # the mean part from elsewhere (the label law): no Monte Carlo error
        f, fp = np.asarray(diagonal["f"], dtype=float), np.asarray(diagonal["fp"], dtype=float)
    c2 = ((lamK**2) @ Z2) / N  # E[c_l^2], c_l = lam K z_l
    # n times the expected squared mixing angle E[F_kl^2]/f_l^2 (part 1 + pairs, as in _block_at)
    angle = ((lamK**2 * Z2[:, k]) @ Z2 / N + c2[k] * c2 * s[0] / alpha) / np.maximum(f * f, 1e-300)
    angle[k] = np.inf  # k first, then the rest by their angle
    idx = [int(j) for j in np.argsort(-angle)]
    # gaps: influences of the diagonal entries (label average + Stieltjes term) and the pairs part
    infl = _influence(lamK[:, None], Z2, (H / p1)[None, :])
    return {"q": q, "lam": lam, "sigma": r["sigma"], "alpha": alpha, "k": k, "f": f, "fp": fp, "idx": idx,
            "_angle_per_n": angle, "_parts": (K, lamK, lamK_z, Z, Z2, infl, c2, s), "_tau": tau,
            "_own": (r["q_influence"], r["q_pairs_f"])}


def mixing_share(model: HierarchicalModel, alphas, n_samples: int = 2**19, seed: int = 0) -> dict:
    r"""The share of another direction in an outlier eigenvector, to first order in the outlier block's
    couplings (docs/theory.md §4.1, "Outlier eigenvectors of other directions").

    For the outlier eigenvector :math:`u_j` of direction j, the null vector c of the block
    :math:`F(\zeta_j)` of :func:`outlier_block` has :math:`c_l = -F_{jl}c_j/\bar f_l(\zeta_j) + O(1/n)` for
    l ≠ j, and :math:`\langle w_l, u_j\rangle^2 = c_l^2/(-c^\top F'c)`, :math:`c_j^2 = q_j` to leading order. So

    .. math::
        E\big[d\,\langle w_l, u_j\rangle^2\big] = \frac{q_j\,n\,E[F_{jl}^2]}{\alpha\,\bar f_l(\zeta_j^*)^2},

    n times the mixing angle of :func:`outlier_block` (part 1 plus the pairs), times :math:`q_j/\alpha`;
    with F_jl Gaussian the overlap is this mean times :math:`\chi^2_1`. Without a spike in l and an
    isotropic bulk it is :math:`1 - q_j`: the eigenvector's mass off :math:`w_j`, spread evenly. It holds
    where direction j's outlier is clear of the edge (its first-order CLT holds) and l's gap
    :math:`\bar f_l(\zeta_j)` is not small; at the edge the share tends instead to
    :func:`numerics.edge_overlap.edge_overlap`'s, which :func:`numerics.edge_overlap.outlier_share` meets.

    ``q_j`` and :math:`\bar f_l` come from the label law (no Monte Carlo error), :math:`E[F_{jl}^2]` from
    ``n_samples`` seeded draws of the latents. Returns a dict: ``share`` (len(alphas), m, m), entry
    [i, j, l] the share of direction l in direction j's outlier eigenvector (NaN where j has no outlier,
    and on the diagonal); ``q`` and ``sigma`` (len(alphas), m): :math:`q_j` and :math:`\sigma_j` of §4.2
    (NaN without an outlier), so that a caller can check :math:`\sigma_j/(\sqrt d q_j)`; ``f`` and ``fp``
    (len(alphas), m, m): entry [i, j, l] is :math:`\bar f_l(\zeta_j^*)` and :math:`\bar f_l'(\zeta_j^*)`, the
    denominator of the share and its slope, so that a caller can move the share with the roots
    (docs/theory.md §4.2, "Detection and mixing drawn together").

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=2, gamma=1.0, link="He2", preprocessing="clip(y, -1, 3)")
    >>> r = mixing_share(model, [2.3156, 3.3079], n_samples=2**18)    # 0.7 and 1.0 times alpha_2: in the bulk
    >>> sim, se = np.array([5.0, 3.5]), np.array([0.6, 0.4])    # simulated, d = 400, 200 seeds (docs/theory.md §4.1)
    >>> bool(np.all(np.abs(r["share"][:, 0, 1] - sim) < 2 * se))
    True
    """
    from .edge_overlap import _tau_sup  # the label law's ess sup T
    from .label_law import label_law

    a, tau, Z = _checked_latents(model, alphas, n_samples, seed)
    atoms = label_law(model)
    m = model.m
    out = {"share": np.full((a.size, m, m), np.nan), "q": np.full((a.size, m), np.nan),
           "sigma": np.full((a.size, m), np.nan), "f": np.full((a.size, m, m), np.nan),
           "fp": np.full((a.size, m, m), np.nan)}
    for i, alpha in enumerate(a):
        alpha = float(alpha)
        lbar = edge_of_atoms(tau, np.full(tau.size, 1.0 / tau.size), alpha)[0]
        lbar_exact = edge_of_atoms(atoms.tau, atoms.p, alpha, _tau_sup(atoms))[0]
        for j in range(m):
            first = outlier_variance_parts(tau, Z[:, j], alpha, lbar=lbar)
            exact = _exact_diagonal(atoms, alpha, j, lbar_exact)
            if first is None or exact is None:
                continue
            first = dict(first, q=exact["q"])
            block = outlier_block(tau, Z, j, alpha, first, diagonal=exact)
            out["share"][i, j] = exact["q"] * block["_angle_per_n"] / alpha
            out["share"][i, j, j] = np.nan
            out["q"][i, j], out["sigma"][i, j] = exact["q"], first["sigma"]
            out["f"][i, j], out["fp"][i, j] = exact["f"], exact["fp"]
    return out


def detection_covariance(model: HierarchicalModel, alpha: float, k: int, n_samples: int = 2**19,
                         seed: int = 0) -> dict | None:
    r"""The joint first-order fluctuations that decide whether the estimator keeps each outlier and how much
    of :math:`w_k` the outliers of the other directions hold (docs/theory.md §4.2, "Detection and mixing drawn
    together"), at ratio ``alpha`` for direction ``k`` (1-based); None if direction k has no outlier.

    The vector, for the J directions ``directions`` (0-based) with an outlier at d = infinity, is
    ``J`` eigenvalue moves :math:`\delta\zeta_j = q_j\,\delta f_j(\zeta_j^*)`, then the move
    :math:`\delta e` of the bulk edge of the realised labels, then, for each other direction j (in the
    order of ``directions``, k left out), :math:`\delta f_k(\zeta_j^*)`: direction k's diagonal entry of the
    outlier block at j's root. Each entry is a sum over the samples of an influence (the label average
    and the Stieltjes term of §4.2, :math:`\hat h`, at that entry's own :math:`\lambda`; for the edge,
    :math:`\bar\lambda K(\bar\lambda)`) plus the off-diagonal pairs, whose covariance between the entries
    of directions a and b at :math:`\zeta_1, \zeta_2` is
    :math:`\frac{2}{\alpha n}E[\tilde c_a(\zeta_1)\tilde c_b(\zeta_2)]^2\frac{s(\zeta_1)-s(\zeta_2)}{\zeta_1-\zeta_2}`,
    :math:`\tilde c_a = \lambda K z_a` (:math:`s'(\zeta)` at equal points). ``cov`` is d times the
    covariance, shape (2J, 2J); ``q``, ``lam`` (J,) are the roots' overlaps and :math:`\lambda_j^*` from
    ``n_samples`` seeded draws of the latents. The eigenvalue minus the edge, :math:`\delta\zeta_j - \delta e`,
    has the spread ``gap_sd`` of :func:`outlier_variance_parts`.

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=2, gamma="0.3", link="He2", preprocessing="clip(y, -1, 3)")
    >>> r = detection_covariance(model, 4.0, k=2, n_samples=2**16)
    >>> c = r["cov"]                      # entries: the moves of zeta_1 and zeta_2, the edge, f_2 at zeta_1*
    >>> _, tau, Z = _checked_latents(model, [4.0], 2**16, 0)     # the same draws, one direction at a time
    >>> first = outlier_variance_parts(tau, Z[:, 1], 4.0)
    >>> bool(np.isclose(np.sqrt(c[1, 1] - 2 * c[1, 2] + c[2, 2]), first["gap_sd"], rtol=1e-9))
    True
    >>> beta = c[3, 1] / c[1, 1] * r["q"][1]     # f_2 at zeta_1* on f_2 at its own root: it follows, but not fully
    >>> bool(0.6 < beta < 0.9)
    True
    """
    check_model(model)
    k = integer(k, "k", 1) - 1
    if k >= model.m:
        raise ValueError(f"k: must be in 1..m = {model.m}, got {k + 1}")
    a, tau, Z = _checked_latents(model, [alpha], n_samples, seed)
    alpha, w = float(a[0]), np.full(tau.size, 1.0 / tau.size)
    lbar = edge_of_atoms(tau, w, alpha)[0]
    lam = {j: outlier_of_atoms(tau, w, w * Z[:, j] ** 2, alpha, lbar) for j in range(model.m)}
    dirs = [j for j in range(model.m) if lam[j] is not None]
    if k not in dirs:
        return None
    # the entries: (direction of the coefficient, lambda of the point); the edge is inserted after the moves
    entries = [(j, lam[j]) for j in dirs] + [(k, lam[j]) for j in dirs if j != k]
    infl, coef, zeta, slope, q = [], [], [], [], {}
    for a_dir, lm in entries:
        K, (p1, _, _), sd = _zeta_calculus(tau, w, lm, alpha)
        z2 = Z[:, a_dir] ** 2
        H = float(w @ (z2 * K**2))
        infl.append(_influence(lm * K, z2, H / p1))
        coef.append(lm * K * Z[:, a_dir])
        zeta.append(lm / alpha + float(w @ (lm * K)))
        slope.append(sd[0])
        if lm == lam[a_dir]:
            q[a_dir] = p1 / (p1 + H)
    scale = np.array([q[j] for j in dirs] + [1.0] * (len(entries) - len(dirs)))  # delta zeta_j = q_j delta f_j
    G = np.stack(infl) * scale[:, None]
    Kb = lbar * tau / (lbar - tau)  # the edge: psi(lbar) moves by the average of lbar K(lbar)
    G = np.insert(G, len(dirs), Kb, axis=0)
    cov = np.cov(G, bias=True)
    C = np.stack(coef)
    overlap = (C @ C.T / tau.size) ** 2 * np.outer(scale, scale)
    pairs = 2 / alpha * overlap * _stieltjes_quotient(zeta, [lm for _, lm in entries], slope, alpha)
    pairs = np.insert(np.insert(pairs, len(dirs), 0.0, axis=0), len(dirs), 0.0, axis=1)  # the edge has no pairs
    return {"directions": np.array(dirs), "cov": (cov + pairs) / alpha, "q": np.array([q[j] for j in dirs]),
            "lam": np.array([lam[j] for j in dirs])}


def _block_at(block: dict, n: int) -> dict:
    r"""Trim ``outlier_block`` to the directions whose mixing angle at n samples is >= MIX_MIN and
    compute the gap and pair covariances of that block. ``left_out``: the directions trimmed off, as
    (f, fp, pairs): their :math:`\bar f_l`, :math:`\bar f_l'` and n times the covariance of
    :math:`(F_{kl}, F_{kl}')`; each mixes below MIX_MIN, but m - 1 of them add up (:func:`_left_out_shift`).
    ``left_idx``: those directions (0-based), in the order of ``left_out``. ``_G``: the gaps' per-sample
    influences (samples x b; k's column unused), whose covariance is gap_cov's label part. ``own_cov``: n times the
    covariance of k's own first-order :math:`\delta q_k` with each gap (0 for k itself; docs/theory.md §4.3, "k's
    own fluctuation and the gaps"). ``root_cov``: n times that of k's own entry :math:`\delta f_k` with each gap,
    and n Var :math:`\delta f_k` in k's place; ``own_root``: n Cov(:math:`\delta q_k`, :math:`\delta f_k`) (§4.3,
    "The repulsion seen from the moving root"). ``cross``: (a, b, v) for each pair of the block's other directions
    (positions a < b), v = n Var :math:`F_{ab}` (docs/theory.md §4.3, "The couplings among the others")."""
    k, q, alpha = block["k"], block["q"], block["alpha"]
    K, lamK, lamK_z, Z, Z2, infl, c2, s = block["_parts"]
    idx = [j for j in block["idx"] if j == k or block["_angle_per_n"][j] / n >= MIX_MIN]
    f, fp = block["f"][idx], block["fp"][idx]
    G = infl[:, idx] + (fp * q)[None, :] * infl[:, [k]]
    gap = np.cov(G, rowvar=False, bias=True).reshape(len(idx), len(idx))
    gap += 2 * s[0] / alpha * (np.diag(c2[idx] ** 2) + np.outer(fp, fp) * q**2 * c2[k] ** 2)
    gap[0, :] = gap[:, 0] = 0.0  # delta g_k = 0: the gaps are measured from the moving root
    # n Cov(delta q_k, delta g_l): k's own CLT part against each gap (§4.3), from the label averages and the pairs
    # part through k's root (E[c_k c_l] = 0 for l != k)
    u, u_pairs = block["_own"]
    own = (u - u.mean()) @ G / u.size + fp * q * u_pairs
    own[0] = 0.0
    # n Cov(delta f_k, delta g_l), and n Var(delta f_k) first: k's own root moves by u = q_k delta f_k (docs/theory.md
    # §4.3, "The repulsion seen from the moving root"); pairs part through k's entry, as in the gaps
    fk = infl[:, k]
    root = (fk - fk.mean()) @ G / fk.size + fp * q * 2 * s[0] / alpha * c2[k] ** 2
    root[0] = np.var(fk) + 2 * s[0] / alpha * c2[k] ** 2
    own_root = float((u - u.mean()) @ fk / u.size + u_pairs)  # n Cov(delta q_k, delta f_k)
    # The pairs (k, l). Every moment below is E[v z_l^2] for a weight v, so one product with Z2 gives them for
    # all l of the block.
    ck, ckz = lamK * Z[:, k], lamK_z * Z[:, k]
    mom_k = (float(ck @ ck) / K.size, float(ck @ ckz) / K.size, float(ckz @ ckz) / K.size)
    V = np.stack([lamK**2, lamK * lamK_z, lamK_z**2, ck * ck, ck * ckz, ckz * ckz])
    others = idx[1:] + [j for j in block["idx"] if j not in idx]  # the block's, then the ones trimmed off
    (l0, l1, l11, g0, g1, g11) = V @ Z2[:, others] / K.size  # l: coefficient c_l; g: the product c_k z_l
    p0, p1, p11 = _pair_kernel(mom_k, (l0, l1, l11), s)
    var, cov, var_z = g0 + p0 / alpha, g1 + p1 / alpha, g11 + p11 / alpha  # n Var F_kl, n Cov(F_kl, F_kl'), ...
    pairs = [(0, b, np.array([[var[b - 1], cov[b - 1]], [cov[b - 1], var_z[b - 1]]])) for b in range(1, len(idx))]
    out, b = np.array(others[len(idx) - 1:], dtype=int), len(idx) - 1
    left_out = (block["f"][out], block["fp"][out], np.stack([np.stack([var[b:], cov[b:]], -1),
                                                            np.stack([cov[b:], var_z[b:]], -1)], -2))
    # The couplings (a, b) among the others move k's overlap through the repulsion of their roots: third order
    # in the couplings, but not small where two of them are close (§4.3, "The couplings among the others").
    # n Var F_ab: E[(lam K)^2 z_a^2 z_b^2] and the pairs kernel of E[c_a^2] E[c_b^2], c_a = lam K z_a; their slopes
    # F_ab' are left out (measured negligible; they would take -F1's definiteness in a few draws of a large block).
    rest = Z2[:, idx[1:]]
    lab = (rest * V[0][:, None]).T @ rest / K.size
    cross = [(i + 1, j + 1, float(lab[i, j] + l0[i] * l0[j] * s[0] / alpha))
             for i in range(b) for j in range(i + 1, b)]
    return {"idx": idx, "f": f, "fp": fp, "gap_cov": gap, "own_cov": own, "root_cov": root, "own_root": own_root,
            "pairs": pairs, "cross": cross, "left_out": left_out, "left_idx": out, "_G": G}


def _left_out_shift(left_out, q: float, n: int, draws: int, rng, fpp_k: float = 0.0, lost=None) -> np.ndarray:
    r"""Draws of the shift of :math:`q_k` by the directions left out of the block, from the weak-coupling
    expansion of the pencil (docs/theory.md §4.3, "The directions left out of the block"):
    :math:`-q_k^2\sum_l [-(\bar f_l'/\bar f_l^2) F_{kl}^2 + (2/\bar f_l) F_{kl}F_{kl}']` with
    :math:`(F_{kl}, F_{kl}')` Gaussian of covariance ``pairs``/n, independent over l. Its mean is
    :math:`-(q_k^2/n)\sum_l [-(\bar f_l'/\bar f_l^2) V_l + (2/\bar f_l) C_l]`. ``fpp_k``
    (:math:`\bar f_k''`) adds the slope's change over the root's shift, :math:`-q_k^3\bar f_k''\sum_l F_{kl}^2/\bar f_l`
    ("The slope at the root"); ``lost`` (a mask over the left-out directions, None: all) limits both
    sums to the directions whose share leaves the quantity (for the projection: those without an
    outlier; docs/theory.md §4.3, "The projection")."""
    f, fp, pairs = left_out
    if f.size == 0:
        return np.zeros(draws)
    V, C, Vz = pairs[:, 0, 0] / n, pairs[:, 0, 1] / n, pairs[:, 1, 1] / n
    g = rng.standard_normal((2, draws, f.size))
    F = np.sqrt(V) * g[0]  # F_kl, then F_kl' by its regression on F_kl
    Fz = (C / V) * F + np.sqrt(np.maximum(Vz - C**2 / V, 0.0)) * g[1]
    lost = np.ones(f.size, dtype=bool) if lost is None else np.asarray(lost, dtype=bool)
    mixing = np.sum((-(fp / f**2) * F**2 + (2 / f) * F * Fz)[:, lost], axis=1)
    return -q**2 * mixing - q**3 * fpp_k * np.sum((F**2 / f)[:, lost], axis=1)


def _sub_block(blk: dict, sel) -> dict:
    """The block of :func:`_block_at` restricted to the directions ``sel`` (a mask over ``idx``, k's
    entry first and kept), for the pencil; ``left_out`` and ``left_idx`` are kept as they are."""
    sel = np.asarray(sel, dtype=bool)
    pos = np.flatnonzero(sel)
    new = {int(b): a for a, b in enumerate(pos)}
    return dict(blk, idx=[blk["idx"][b] for b in pos], f=blk["f"][pos], fp=blk["fp"][pos], _G=blk["_G"][:, pos],
                gap_cov=blk["gap_cov"][np.ix_(pos, pos)], own_cov=blk["own_cov"][pos], root_cov=blk["root_cov"][pos],
                pairs=[(0, new[b], cov) for a, b, cov in blk["pairs"] if b in new],
                cross=[(new[a], new[b], v) for a, b, v in blk.get("cross", []) if a in new and b in new])


def _pencil_overlaps(blk: dict, n: int, draws: int, rng, rank: bool, slope=None, gaps: bool = False, moving=None):
    r"""Draws of the overlap of :math:`w_k` with its outlier eigenvector (``rank``: the eigenvector at
    k's rank within the block; else the best one), from the linear pencil
    :math:`F(\zeta_k + t) \approx F_0 + tF_1` of the block: :math:`F_0 = \mathrm{diag}(\bar f_l + \delta g_l) + E`,
    :math:`F_1 = \mathrm{diag}(\bar f_l') + E'` with the Gaussian fluctuations of :func:`_block_at`
    (linear in t). ``slope`` (a :class:`_RootSlope` of direction k, or None) takes k's diagonal slope in each
    null vector's normalisation at that vector's own root, :math:`\zeta_k^* + t`, instead of at :math:`\zeta_k^*`:
    for k's root that is the curvature term :math:`(q_k\bar f_k''/\bar f_l)F_{kl}^2` of the second-order
    expansion (docs/theory.md §4.3, "The slope at the root").
    Returns the overlaps and the fraction of draws dropped: where :math:`-F_1` was not positive definite,
    or a root's slope was not positive. ``gaps``: also return each kept draw's gaps
    :math:`\sqrt n\,\delta g_l` (draws x (b - 1)), for k's own fluctuation to be drawn jointly with them.
    ``moving`` (with ``slope``): (q_k, the sd of k's own :math:`\delta q_k`, standard normal draws x 2), for the
    pencil seen from k's moving root (docs/theory.md §4.3, "The repulsion seen from the moving root"):
    :math:`\delta q_k` and k's root shift u drawn jointly with the gaps (:func:`_joint_own_root`), each other
    direction's gap at k's moving root to second order in u, :math:`+\bar f_l''(\zeta_k^*)u^2/2` (``fpp``; the
    first order is in the gaps, and the slopes stay those at :math:`\zeta_k^*`), and :func:`_with_moving_root` at
    each root."""
    b = len(blk["idx"])
    eg = np.zeros((draws, b - 1))
    if b > 1:
        eg = rng.multivariate_normal(np.zeros(b - 1), blk["gap_cov"][1:, 1:], draws)
    F0, F1, _, _ = _draw_couplings(blk, n, draws, rng)
    F0[:, range(b), range(b)] = blk["f"]
    F1[:, range(b), range(b)] = blk["fp"]
    F0[:, range(1, b), range(1, b)] += eg / np.sqrt(n)
    if moving is not None:  # the others' gaps at k's moving root, to second order in its shift u
        own, u = _joint_own_root(blk, eg, moving[0], moving[1], n, moving[2])
        F0[:, range(1, b), range(1, b)] += 0.5 * blk["fpp"][1:] * u[:, None] ** 2
    try:  # -F1 is positive definite in (nearly) every draw where compare uses the law
        L, ok = np.linalg.cholesky(-F1), np.ones(draws, dtype=bool)
    except np.linalg.LinAlgError:
        ok = np.all(np.linalg.eigvalsh(-F1) > 0, axis=1)
        if not ok.any():
            return (np.empty(0), 1.0) + ((eg[:0],) if gaps else ())
        L = np.linalg.cholesky(-F1[ok])
    Li = np.linalg.inv(L)
    t, Y = np.linalg.eigh(Li @ F0[ok] @ np.swapaxes(Li, 1, 2))
    C = np.swapaxes(Li, 1, 2) @ Y  # null vectors, normalised so that c^T (-F1) c = 1
    ov = C[:, 0, :] ** 2  # columns: the pencil's roots, lowest first
    if slope is not None:  # c^T(-F'(root))c = 1 + c_k^2 (s_k(zeta* + t) - s_k(zeta*)), per root
        den = 1 + ov * slope(t)
        good = np.all(den > 0, axis=1)
        ov, t = ov[good] / den[good], t[good]
        ok[np.flatnonzero(ok)[~good]] = False
        if not ok.any():
            return (np.empty(0), 1.0) + ((eg[:0],) if gaps else ())
        if moving is not None:
            ov = _with_moving_root(ov, t, slope, moving[0], own[ok], u[ok])
    pos = _unperturbed_roots(blk)[1]
    res = (ov[:, b - 1 - pos] if rank else ov.max(axis=1), 1 - ok.mean())
    return res + ((eg[ok],) if gaps else ())


def _with_moving_root(ov, t, slope, q: float, own, u) -> np.ndarray:
    r"""The overlaps ``ov`` at the roots ``t`` (draws x b) with k's own first-order fluctuation :math:`\delta q_k`
    (``own``) and :func:`_moving_root_gain` (k's root shift ``u``) added at each root, both weighted by k's squared
    share there, :math:`(\text{ov}/q_k)^2` (docs/theory.md §4.3, "The repulsion seen from the moving root")."""
    return ov + (ov / q) ** 2 * (own[:, None] + _moving_root_gain(slope, q, t, u))


def _joint_own_root(blk: dict, eg, q: float, sd: float, n: int, g):
    r"""Draws of k's own first-order :math:`\delta q_k` (sd ``sd``) and its root shift :math:`u = q_k\,\delta f_k`,
    jointly Gaussian with the gaps ``eg`` (:math:`\sqrt n\,\delta g_l`, covariance ``gap_cov``): their regression
    on the gaps (``own_cov``, ``root_cov``) plus a rest with the remaining 2 x 2 covariance (``own_root``), drawn
    from ``g`` (draws x 2 standard normal). As :func:`_own_fluctuation` for :math:`\delta q_k` alone."""
    S = np.array([[sd**2 * n, blk["own_root"]], [blk["own_root"], blk["root_cov"][0]]])  # n times
    mean = np.zeros((eg.shape[0], 2))
    if eg.shape[1]:
        cov, C = blk["gap_cov"][1:, 1:], np.column_stack([blk["own_cov"][1:], blk["root_cov"][1:]])
        beta = np.linalg.lstsq(cov, C, rcond=None)[0]
        mean, S = eg @ beta, S - beta.T @ cov @ beta
    w, V = np.linalg.eigh(S)
    draws = (mean + g @ (V * np.sqrt(np.maximum(w, 0.0))).T) / np.sqrt(n)
    return draws[:, 0], q * draws[:, 1]


def _unperturbed_roots(blk: dict):
    r"""The linear pencil's roots at n = infinity, :math:`t_l^\circ = -\bar f_l/\bar f_l'` in the block's order
    (0 for k, first), and k's position counted from the top: the number of them above k's."""
    t0 = np.concatenate([[0.0], -blk["f"][1:] / blk["fp"][1:]])
    return t0, int(np.sum(t0[1:] > 0))


def _draw_couplings(blk: dict, n: int, draws: int, rng, far: dict | None = None):
    r"""Draws of the block's off-diagonal entries, the pencil's value part E0 and slope part E1 (draws x b x b),
    after its gaps in the generator's order: for each pair (k, l) of ``pairs``, :math:`(F_{kl}, F_{kl}')` of
    covariance ``cov``/n; for each coupling among the others of ``cross``, :math:`F_{ab}` (without its slope).
    With ``far`` (of :func:`_far_roots`), a pair whose l lies above k is drawn instead as its value and slope at
    both nodes (``two_node[l]``, draws x 4), and a coupling among the others with two nodes as its values there
    (``lines``: (a, c, the nodes' t, draws x 2)); both are left out of E0 and E1. Returns E0, E1, two_node,
    lines."""
    b = len(blk["idx"])
    E0, E1 = np.zeros((draws, b, b)), np.zeros((draws, b, b))
    pos = far["pos"] if far is not None else np.empty(0, dtype=int)
    two_node, lines = {}, []
    for a, c, cov in blk["pairs"]:
        if c in pos:
            cov4 = far["pair_cov"][int(np.flatnonzero(pos == c)[0])]
            two_node[c] = rng.multivariate_normal(np.zeros(4), cov4, draws) / np.sqrt(n)
            continue
        e = rng.multivariate_normal(np.zeros(2), cov, draws) / np.sqrt(n)
        E0[:, a, c] = E0[:, c, a] = e[:, 0]
        E1[:, a, c] = E1[:, c, a] = e[:, 1]
    cross = far["cross"] if far is not None else [(a, c, v, None, None) for a, c, v in blk.get("cross", [])]
    for a, c, var, ts, cov in cross:
        if ts is None:
            E0[:, a, c] = E0[:, c, a] = np.sqrt(var / n) * rng.standard_normal(draws)
        else:
            lines.append((a, c, ts, rng.multivariate_normal(np.zeros(2), cov, draws) / np.sqrt(n)))
    return E0, E1, two_node, lines


def _hermite(t, T: float, v0, d0, v1, d1):
    r"""The cubic Hermite interpolant on [0, T] of values ``v0``, ``v1`` and slopes ``d0``, ``d1`` at its ends, and
    its slope, at ``t``; continued by the end's tangent outside (all arrays broadcast over draws)."""
    u = np.clip(t / T, 0.0, 1.0)
    val = (2 * u**3 - 3 * u**2 + 1) * v0 + (u**3 - 2 * u**2 + u) * T * d0 + (3 * u**2 - 2 * u**3) * v1 \
        + (u**3 - u**2) * T * d1
    der = 6 * (u**2 - u) / T * (v0 - v1) + (3 * u**2 - 4 * u + 1) * d0 + (3 * u**2 - 2 * u) * d1
    val = np.where(t < 0, v0 + d0 * t, np.where(t > T, v1 + d1 * (t - T), val))
    return val, np.where(t < 0, d0, np.where(t > T, d1, der))


def _far_pencil_overlaps(blk: dict, n: int, draws: int, rng, rank: bool, slope=None, roots: bool = False,
                         moving=None):
    r""":func:`_pencil_overlaps` (with ``gaps=True``) for a block with roots above k's (``far`` of
    :func:`_far_roots`; docs/theory.md §4.3, "The roots above k"). Each such direction's diagonal is its
    d = infinity curve :math:`\bar f_l(\zeta_k^* + t)` (for t >= 0; the tangent below), and k's is curved the same
    way (``slope``: its :class:`_RootSlope`). Their fluctuation is drawn at :math:`\zeta_k^*` and at l's root,
    linear between and flat outside; their coupling to k is the cubic Hermite interpolant of its values and
    slopes drawn at the same two nodes; a coupling between two other directions is drawn at their two roots,
    linear between. The other entries are the linear pencil's. Root i (from the bottom) is where the i-th
    lowest eigenvalue of F(t) crosses zero (each falls while -F' is positive definite): Newton's method from
    the linear pencil's root, with the eigenvalue's slope :math:`v^\top F'(t)v`. The overlap is
    :math:`c_k^2/(c^\top(-F'(t))c)` at each root, k's slope below :math:`\zeta_k^*` taken as the linear
    pencil's normalisation takes it. A draw is dropped where a root does not converge or its slope is not
    negative. ``roots``: also return each kept draw's roots
    (draws x b, t from the bottom). ``moving``: as in :func:`_pencil_overlaps`; the gaps' second-order term
    in u is added to the other directions' curves, at every t."""
    b, far = len(blk["idx"]), blk["far"]
    pos, t0, curves = far["pos"], far["t0"], far["curves"]
    f, fp = blk["f"], blk["fp"]
    e = rng.multivariate_normal(np.zeros(b - 1 + pos.size), far["diag_cov"], draws)
    eg = e[:, :b - 1]
    if moving is not None:  # k's own fluctuation and root shift, jointly with the gaps at zeta_k*
        own, u = _joint_own_root(blk, eg, moving[0], moving[1], n, moving[2])
    near, dfar = eg / np.sqrt(n), e[:, b - 1:] / np.sqrt(n)  # the gaps at zeta_k*; each l above: its gap at its root
    # the couplings to k above it: value and slope at both nodes; those among the others with two nodes: linear
    # between them, flat outside
    E0, E1, cpl, lines = _draw_couplings(blk, n, draws, rng, far)
    diag = (slice(None), range(b), range(b))
    t_top = 2 * float(t0.max()) + NEWTON_MAX  # the curves up to here (built once), their tangents beyond
    bend = {c: (float(c(np.array([t_top]))[0]), float(c.integral(np.array([t_top]))[0]))
            for c in list(curves) + ([slope] if slope is not None else [])}

    def curved(c, tp):
        """The curve's departure from its tangent at zeta_k* (t >= 0), and the slope's."""
        s_top, i_top = bend[c]
        inside = tp <= t_top
        return np.where(inside, c.integral(np.minimum(tp, t_top)), i_top + s_top * (tp - t_top)), \
            np.where(inside, c(np.minimum(tp, t_top)), s_top)

    def at(t, rows):
        """F(t), F'(t) and the normalisation's F' for the draws ``rows``."""
        tp = np.maximum(t, 0.0)
        M, Mp = E0[rows] + t[:, None, None] * E1[rows], E1[rows].copy()
        D = f + fp * t[:, None]
        D[:, 1:] += near[rows]
        Dp = np.repeat(fp[None, :], t.size, axis=0)
        for i, (a, T, c) in enumerate(zip(pos, t0, curves)):
            sec = (dfar[rows, i] - near[rows, a - 1]) / T  # the gap's value at k's root, then at l's
            v = near[rows, a - 1] + sec * np.clip(t, 0.0, T)
            s = np.where((t > 0) & (t < T), sec, 0.0)  # 0 at t = 0: the tangents below hold there
            ci, cs = curved(c, tp)
            D[:, a] += v - near[rows, a - 1] - ci  # near: already in D
            Dp[:, a] += s - np.where(t > 0, cs, 0.0)
            x = cpl[a][rows]
            v, s = _hermite(t, T, x[:, 0], x[:, 1], x[:, 2], x[:, 3])
            M[:, 0, a] = M[:, a, 0] = v
            Mp[:, 0, a] = Mp[:, a, 0] = s
        for a, c, (ta, tc), x in lines:
            sec = (x[rows, 1] - x[rows, 0]) / (tc - ta)
            lo, hi = min(ta, tc), max(ta, tc)
            M[:, a, c] = M[:, c, a] = x[rows, 0] + sec * (np.clip(t, lo, hi) - ta)
            Mp[:, a, c] = Mp[:, c, a] = np.where((t > lo) & (t < hi), sec, 0.0)
        if moving is not None:  # the others' gaps at k's moving root, to second order in u
            D[:, 1:] += 0.5 * blk["fpp"][1:] * u[rows][:, None] ** 2
        Mn = Mp
        if slope is not None:
            ki, ks = curved(slope, tp)
            D[:, 0] -= ki
            Dn = Dp.copy()
            Dp[:, 0] -= np.where(t > 0, ks, 0.0)
            Dn[:, 0] -= np.where(t > 0, ks, slope(np.minimum(t, 0.0)))
            Mn = Mp.copy()
            Mn[diag] = Dn
        M[diag] += D
        Mp[diag] = Dp
        return M, Mp, Mn

    # start: the linear pencil's roots with the slopes at zeta_k* (where -F'(0) is positive definite); for t <= 0 it is
    # the curved pencil itself (the curves and the nodes' interpolation start at 0, the tangents continue below)
    M, Mp, _ = at(np.zeros(draws), slice(None))
    t_inf, above_k = _unperturbed_roots(blk)  # above_k: k's position counted from the top
    start = np.sort(t_inf)[None, :].repeat(draws, axis=0)
    definite = np.all(np.linalg.eigvalsh(-Mp) > 0, axis=1)
    lin_ov = np.zeros((draws, b))  # k's overlap at the linear pencil's roots (c^T (-F'(0)) c = 1), as _pencil_overlaps
    if definite.any():
        Li = np.linalg.inv(np.linalg.cholesky(-Mp[definite]))
        start[definite], Y = np.linalg.eigh(Li @ M[definite] @ np.swapaxes(Li, 1, 2))
        lin_ov[definite] = (np.swapaxes(Li, 1, 2) @ Y)[:, 0, :] ** 2
    ov, ok, found = np.zeros((draws, b)), np.ones(draws, dtype=bool), np.zeros((draws, b))
    every = np.arange(draws)
    for i in ([b - 1 - above_k] if rank and not roots else range(b)):  # q_rank needs k's root only
        # below zeta_k* every entry is the linear pencil's, so its roots there are exact: Newton for the others
        exact_ = definite & (start[:, i] < 0)
        t, active = start[:, i].copy(), every[~exact_]
        if exact_.any():  # the linear pencil's overlap, normalised by k's slope at the root as _pencil_overlaps does
            den = 1 + lin_ov[exact_, i] * (slope(start[exact_, i]) if slope is not None else 0.0)
            ok[exact_] &= den > 0
            ov[exact_, i] = lin_ov[exact_, i] / np.where(den > 0, den, 1.0)
            found[exact_, i] = start[exact_, i]
        lo, hi = np.full(draws, -np.inf), np.full(draws, np.inf)  # the i-th eigenvalue is > 0 at lo, < 0 at hi
        for _ in range(NEWTON_STEPS if active.size else 0):  # Newton in the bracket; else bisection or a capped step
            M, Mp, Mn = at(t[active], active)
            mu, V = np.linalg.eigh(M)
            go = np.abs(mu[:, i]) >= 1e-13
            if not go.all():  # converged: the overlap at this root
                rows, v = active[~go], V[~go, :, i]
                den = -np.einsum("di,dij,dj->d", v, Mn[~go], v)
                ok[rows] &= den > 0
                ov[rows, i] = v[:, 0] ** 2 / np.where(den > 0, den, 1.0)
                found[rows, i] = t[rows]
            active, mu, V, Mp = active[go], mu[go, i], V[go, :, i], Mp[go]
            if active.size == 0:
                break
            der = np.einsum("di,dij,dj->d", V, Mp, V)
            ta = t[active]
            lo[active] = np.where(mu > 0, ta, lo[active])
            hi[active] = np.where(mu > 0, hi[active], ta)
            la, ha = lo[active], hi[active]
            step = ta - mu / np.where(der < 0, der, -1.0)
            newton = (der < 0) & (step > la) & (step < ha) & (np.abs(step - ta) <= NEWTON_MAX)
            fallback = np.where(np.isfinite(la) & np.isfinite(ha), (la + ha) / 2, ta + np.sign(mu) * NEWTON_MAX)
            t[active] = np.where(newton, step, fallback)
        if active.size == 0:
            continue
        M, _, Mn = at(t[active], active)  # the steps ran out: kept where the root is found to 1e-10
        mu, V = np.linalg.eigh(M)
        v = V[:, :, i]
        den = -np.einsum("di,dij,dj->d", v, Mn, v)
        ok[active] &= (np.abs(mu[:, i]) < 1e-10) & (den > 0)
        ov[active, i] = v[:, 0] ** 2 / np.where(den > 0, den, 1.0)
        found[active, i] = t[active]
    if not ok.any():
        return (np.empty(0), 1.0, eg[:0]) + ((found[:0],) if roots else ())
    ov = ov[ok]
    if moving is not None and slope is not None:  # roots not computed (q_rank) have ov = 0: nothing added
        ov = _with_moving_root(ov, found[ok], slope, moving[0], own[ok], u[ok])
    res = (ov[:, b - 1 - above_k] if rank else ov.max(axis=1)), 1 - ok.mean(), eg[ok]
    return res + ((found[ok],) if roots else ())


class _RootSlope:
    r"""The d = infinity slope :math:`s_k(\zeta) = -\bar f_k'(\zeta) = 1 + H_k/\psi'` of direction k's diagonal
    entry away from its root :math:`\zeta_k^*` (docs/theory.md §4.3, "The slope at the root"), from a discrete
    law of the labels: atoms ``tau`` with weights ``p`` and direction k's weights ``r_k`` (N,), as in
    :func:`numerics.resolvent.resolvent_sums`. ``lam`` is the root's :math:`\lambda_k` and ``lbar`` the bulk
    edge's :math:`\bar\lambda`, both of the same law at ratio ``alpha``.

    :math:`\zeta = \psi_\alpha(\lambda) = \lambda(1/\alpha + G_1)` increases above the edge, with
    :math:`d\zeta/d\lambda = \psi' = 1/\alpha - G_2`, so the slope is tabulated on a grid in :math:`\lambda`, geometric
    in :math:`\lambda - \bar\lambda` and holding :math:`\lambda_k`, with its exact derivative

    .. math:: \frac{ds_k}{d\zeta} = -\bar f_k'' = \frac{1}{\psi'}\Big(\frac{H_k'}{\psi'} - \frac{H_k\,\psi''}{\psi'^2}\Big),
              \quad H_k' = -2\sum_a r_{ka}\frac{\tau_a^2}{(\lambda-\tau_a)^3},
              \quad \psi'' = 2\sum_a p_a\frac{\tau_a^2}{(\lambda-\tau_a)^3},

    and interpolated in :math:`\zeta` by a cubic Hermite spline (exact at :math:`\zeta_k^*`, with its derivative).
    Below the grid's first point (inside the bulk, where a pencil root stands for a direction without an
    outlier) it keeps that point's value, which is large: :math:`s_k \to \infty` at the edge.
    """

    PER_DECADE = 24  # grid points per decade of lambda - lbar
    CHUNK = 2**22  # atoms x grid points per block of the sums

    def __init__(self, tau, p, r_k, alpha: float, lam: float, lbar: float):
        self.tau, self.p, self.r = tau, p, np.asarray(r_k, dtype=float).reshape(-1)
        self.alpha, self.lam, self.lbar = float(alpha), float(lam), float(lbar)
        self.zeta_star, _, self._fpp = (float(v[0]) for v in self._zeta_slope(np.array([lam])))
        self._top, self._spline = -np.inf, None

    def _zeta_slope(self, lam):
        """zeta, s_k and ds_k/dzeta at the points ``lam`` (above the edge)."""
        out = np.empty((3, lam.size))
        rows = max(1, self.CHUNK // max(self.tau.size, 1))
        for a in range(0, lam.size, rows):
            L = lam[a: a + rows, None]
            K = self.tau / (L - self.tau)
            K2 = K * K
            K3 = K2 / (L - self.tau)  # tau^2 / (lam - tau)^3
            G1, G2, H = K @ self.p, K2 @ self.p, K2 @ self.r
            p1, p2, h1 = 1 / self.alpha - G2, 2 * (K3 @ self.p), -2 * (K3 @ self.r)
            out[:, a: a + rows] = (L[:, 0] * (1 / self.alpha + G1), 1 + H / p1, (h1 / p1 - H * p2 / p1**2) / p1)
        return out

    def _build(self, zeta_top: float) -> None:
        gap, hi = self.lam - self.lbar, 1.0
        while self._zeta_slope(np.array([self.lbar + gap * hi]))[0][0] < zeta_top:  # cover the highest root
            hi *= 4.0
        points = int(np.ceil((np.log10(hi) + 6.0) * self.PER_DECADE)) + 1
        lam = np.union1d(self.lbar + gap * np.logspace(-6.0, np.log10(hi), points), [self.lam])
        zeta, slope, dslope = self._zeta_slope(lam)
        rising = zeta > np.maximum.accumulate(np.concatenate([[-np.inf], zeta[:-1]]))  # psi is flat at the edge
        zeta, slope, dslope = zeta[rising], slope[rising], dslope[rising]
        self._zmin, self._smin, self._top = zeta[0], slope[0], zeta[-1]
        self._spline = CubicHermiteSpline(zeta, slope, dslope)
        self._anti = self._spline.antiderivative()

    def __call__(self, t) -> np.ndarray:
        r""":math:`s_k(\zeta_k^* + t) - s_k(\zeta_k^*)`, elementwise in t."""
        zeta = self.zeta_star + np.asarray(t, dtype=float)
        top = max(float(zeta.max(initial=self.zeta_star)), self.zeta_star)
        if self._spline is None or top > self._top:
            self._build(top)
        return np.where(zeta < self._zmin, self._smin, self._spline(np.maximum(zeta, self._zmin))) \
            - self._spline(self.zeta_star)

    def curvature(self) -> float:
        r""":math:`\bar f_k''(\zeta_k^*) = -s_k'(\zeta_k^*)`, exactly."""
        return -self._fpp

    def integral(self, t) -> np.ndarray:
        r""":math:`\int_0^t [s_k(\zeta_k^* + u) - s_k(\zeta_k^*)]\,du` for t >= 0 (elementwise; 0 below), from
        the spline's antiderivative: the diagonal's departure from its tangent at :math:`\zeta_k^*`,
        :math:`\bar f_k(\zeta_k^* + t) = \bar f_k(\zeta_k^*) + \bar f_k'(\zeta_k^*)\,t - \int_0^t[\dots]`."""
        t = np.maximum(np.asarray(t, dtype=float), 0.0)
        top = self.zeta_star + float(t.max(initial=0.0))
        if self._spline is None or top > self._top:
            self._build(top)
        return self._anti(self.zeta_star + t) - self._anti(self.zeta_star) - self._spline(self.zeta_star) * t


class _TypicalSlope:
    r"""k's slope departure (a :class:`_RootSlope`) with its part below :math:`\zeta_k^*` taken from the typical
    finite-d bulk (docs/theory.md §4.3, "The same from the theory alone"): for t < 0,
    :math:`s_{typ}(\zeta_k^* + t) - s_{typ}(\zeta_k^*)`, with
    :math:`s_{typ}(\zeta) = 1 + \sum_j \omega_{kj}/(x_j - \zeta)^2` over the classical locations ``locations``
    and k's cell weights ``weights`` (:func:`numerics.typical_bulk.typical_bulk`). At or below the top location
    the slope is :data:`BIG`, so a root there holds none of :math:`w_k`, as a root below the d = infinity edge
    does with the d = infinity curve. Above :math:`\zeta_k^*` the d = infinity curve is kept (the two agree
    within 1.5 % there on the m = 3 model at alpha = 7), and so are its integral and curvature."""

    BIG = 1e12

    def __init__(self, slope: _RootSlope, locations, weights):
        self.slope, self.x, self.w = slope, np.asarray(locations, dtype=float), np.asarray(weights, dtype=float)
        self.zeta_star = slope.zeta_star
        self._at_root = float(self._typical(np.array([slope.zeta_star]))[0])

    def _typical(self, zeta) -> np.ndarray:  # s_typ at the points zeta, in blocks of 4096
        out = np.empty(zeta.size)
        for a in range(0, zeta.size, 4096):
            out[a: a + 4096] = 1 + (1 / (self.x[None, :] - zeta[a: a + 4096, None]) ** 2) @ self.w
        return out

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        out = np.atleast_1d(np.array(self.slope(t), dtype=float))
        flat, below = t.reshape(-1), t.reshape(-1) < 0
        if below.any():
            z = self.zeta_star + flat[below]
            inside = z > self.x[0]
            val = np.full(z.size, self.BIG)
            val[inside] = self._typical(z[inside]) - self._at_root
            out = out.reshape(-1).copy()
            out[below] = val
        return out.reshape(t.shape)

    def integral(self, t) -> np.ndarray:
        return self.slope.integral(t)

    def curvature(self) -> float:
        return self.slope.curvature()


def _memo_root(memo: dict | None, key, *args):
    """:func:`numerics.resolvent.outlier_of_atoms` of ``args``, kept in ``memo`` (a dict, or None: not kept) under
    ``key``: at one alpha, each direction's root on the atoms and on the latents serves every block."""
    if memo is None:
        return outlier_of_atoms(*args)
    if key not in memo:
        memo[key] = outlier_of_atoms(*args)
    return memo[key]


def _exact_diagonal(law, alpha: float, k: int, lbar: float, memo: dict | None = None):
    r"""The block's mean part at d = infinity from the label law's atoms (no Monte Carlo error):
    :math:`q_k`, and :math:`\bar f_l`, :math:`\bar f_l'` of every direction at :math:`\zeta_k^*`
    (docs/theory.md §4.3, "The law's Monte Carlo error"); None if direction k has no outlier there.
    ``lbar``: the bulk edge's :math:`\bar\lambda` of the same atoms at this alpha; ``memo``: as :func:`_memo_root`."""
    tau, p, R = law.tau, law.p, np.asarray(law.r)
    lam = _memo_root(memo, ("atoms", k), tau, p, R[k], alpha, lbar)
    if lam is None:
        return None
    _, G2, F, H = resolvent_sums(tau, p, R, lam)
    p1 = 1 / alpha - float(G2[0])
    f = lam * (F[:, 0] - 1 / alpha)
    f[k] = 0.0  # the root itself
    fp = -(H[:, 0] + p1) / p1
    return {"q": -1 / float(fp[k]), "f": f, "fp": fp, "lam": lam, "atoms": (tau, p, R, lbar)}


#: the roots of the curved pencil: Newton's method from the linear pencil's roots, at most NEWTON_STEPS steps, each
#: at most NEWTON_MAX in zeta; where a step leaves the bracket found so far, bisection
NEWTON_STEPS, NEWTON_MAX = 100, 0.05
#: relative step, in units of lambda minus the bulk edge, of the central differences that give a fluctuation's
#: zeta-derivative at a node of :func:`_far_roots`
FD_STEP = 1e-4


def _entry_at(tau, Z, lam: float, alpha: float, j: int, k: int | None = None, cache: dict | None = None) -> dict:
    r"""One fluctuating entry of the Schur complement at the point :math:`\lambda` above the edge, from equally
    weighted latents (docs/theory.md §4.2-4.3): ``k`` None: the diagonal :math:`F_{jj}`, whose per-sample
    influence is :func:`_influence` (the label average and the Stieltjes term), with its mean slope
    :math:`\bar f_j'`; else the coupling :math:`F_{kj}`, influence :math:`\lambda K z_k z_j`. Also
    :math:`\zeta = \psi_\alpha(\lambda)`, :math:`\lambda`, the bulk's :math:`s' = ds/d\zeta`
    (s = :math:`-\alpha/\lambda`), and :math:`\lambda K`, whose products weight the pairs part. ``cache``: a
    dict that keeps K and its sums per :math:`\lambda` between calls on the same latents and alpha."""
    point = None if cache is None else cache.get(lam)
    if point is None:
        K = tau / (lam - tau)
        point = (K, lam * K, 1 / alpha - float(np.mean(K * K)), float(np.mean(K)))
        if cache is not None:
            cache[lam] = point
    K, lamK, p1, meanK = point
    if k is None:
        z2 = Z[:, j] ** 2
        H = float(np.mean(K * K * z2))
        infl, fp = _influence(lamK, z2, H / p1), -(H + p1) / p1
    else:
        infl, fp = lamK * Z[:, k] * Z[:, j], 0.0
    return {"infl": infl, "fp": fp, "zeta": lam * (1 / alpha + meanK), "lam": lam, "s1": alpha / lam**2 / p1,
            "lamK": lamK}


def _nearest_psd(C: np.ndarray) -> np.ndarray:
    """``C`` symmetrised with its negative eigenvalues set to zero: a covariance assembled from central
    differences of nearly equal columns can come out indefinite at the level of their rounding."""
    w, V = np.linalg.eigh((C + C.T) / 2)
    return (V * np.maximum(w, 0.0)) @ V.T


def _gram(pts, z2) -> np.ndarray:
    r""":math:`E[\lambda_a K_a\,\lambda_b K_b\,z^2]` between the points ``pts`` (``_entry_at`` dicts), for the
    squared coordinate ``z2``: the pairs part's :math:`E[c(\zeta_a)c(\zeta_b)]`, c = :math:`\lambda K z`."""
    L = np.column_stack([p["lamK"] for p in pts])
    return (L * z2[:, None]).T @ L / L.shape[0]


def _stieltjes_quotient(zeta, lam, s1, alpha: float) -> np.ndarray:
    r"""The divided difference :math:`(s(\zeta_a) - s(\zeta_b))/(\zeta_a - \zeta_b)` of the bulk's
    :math:`s(\zeta) = -\alpha/\lambda` between every two of the points ``zeta`` (with their ``lam``), and
    :math:`s'` (``s1``, per point; the two's mean) where two coincide to 1e-14 relative: the kernel of the
    off-diagonal pairs' covariance between two points (docs/theory.md §4.2). The one home of this kernel,
    for every two-point covariance of the Schur complement's entries.

    >>> alpha, lam = 4.0, np.array([5.0, 5.0 + 1e-7])
    >>> q = _stieltjes_quotient(np.array([1.0, 1.0 + 2e-7]), lam, np.array([0.3, 0.3]), alpha)
    >>> bool(q[0, 0] == 0.3), bool(np.isclose(q[0, 1], alpha * 1e-7 / (5.0 * (5.0 + 1e-7)) / 2e-7))
    (True, True)
    """
    z, s = np.asarray(zeta, dtype=float), -alpha / np.asarray(lam, dtype=float)
    s1 = np.asarray(s1, dtype=float)
    dz = z[:, None] - z[None, :]
    same = np.abs(dz) <= 1e-14 * np.maximum(np.abs(z[:, None]), 1.0)
    return np.where(same, (s1[:, None] + s1[None, :]) / 2, (s[:, None] - s[None, :]) / np.where(same, 1.0, dz))


def _pairs_kernel_between(pts, alpha: float) -> np.ndarray:
    """:func:`_stieltjes_quotient` between the points ``pts`` (``_entry_at`` dicts)."""
    return _stieltjes_quotient([p["zeta"] for p in pts], [p["lam"] for p in pts], [p["s1"] for p in pts], alpha)


def _far_roots(blk: dict, block: dict, exact: dict, alpha: float, lbar: float, memo: dict | None = None) -> dict:
    r"""The block of :func:`_block_at` with the directions whose d = infinity root lies above k's
    (:math:`\bar f_l(\zeta_k^*) > 0`) on their curves (docs/theory.md §4.3, "The roots above k"). For each such
    direction l (position a in ``idx``): :math:`t_l^\circ = \zeta_l^* - \zeta_k^*` (the label law's), its
    diagonal slope's departure :class:`_RootSlope` read from :math:`\zeta_k^*`, and two more fluctuations at l's
    own root. ``diag_cov``: n times the covariance of the b - 1 gaps at :math:`\zeta_k^*` (``gap_cov``) and of
    each such l's gap at its root, :math:`\delta f_l(\zeta_l^*) + \bar f_l'(\zeta_l^*)\,q_k\,\delta f_k`.
    ``pair_cov``: per such l, that of its coupling to k, :math:`(F_{kl}, F_{kl}')` at :math:`\zeta_k^*` and at
    :math:`\zeta_l^*`. ``cross``: the couplings among the others as (a, c, n Var at :math:`\zeta_k^*`, nodes,
    covariance), the nodes their two roots' t (0 for one below k) and the covariance n times that of the
    values there, or None, None where the two nodes coincide. They come from the latents, each node at the
    latents' own root (``lbar``: their bulk edge), the slopes by central differences (:data:`FD_STEP`).
    Unchanged if there is no root above k's. ``memo``: the roots found so far at this alpha (:func:`_memo_root`)."""
    tau_a, p_a, R, lbar_a = exact["atoms"]
    k, q, idx = block["k"], block["q"], blk["idx"]
    above = [a for a in range(1, len(idx)) if blk["f"][a] > 0]
    roots = {a: _memo_root(memo, ("atoms", idx[a]), tau_a, p_a, R[idx[a]], alpha, lbar_a) for a in above}
    above = [a for a in above if roots[a] is not None]
    if not above:
        return blk
    tau, Z = block["_tau"], block["_parts"][3]
    w = np.full(tau.size, 1.0 / tau.size)
    lat = {a: _memo_root(memo, ("latents", idx[a]), tau, w, w * Z[:, idx[a]] ** 2, alpha, lbar) for a in above}
    above = [a for a in above if lat[a] is not None]
    if not above:
        return blk
    zeta_a = lambda lam: lam * (1 / alpha + float(resolvent_sums(tau_a, p_a, R[:0], lam)[0][0]))  # noqa: E731
    t0 = np.array([zeta_a(roots[a]) - zeta_a(exact["lam"]) for a in above])
    curves = [_RootSlope(tau_a, p_a, R[idx[a]], alpha, exact["lam"], lbar_a) for a in above]
    lam_k, cache = block["lam"], {}  # K per lambda, shared by the entries below
    nodes = lambda lam: [lam, lam + FD_STEP * (lam - lbar), lam - FD_STEP * (lam - lbar)]  # noqa: E731
    kk = _entry_at(tau, Z, lam_k, alpha, k, cache=cache)
    c2k, infl_k = float(np.mean(kk["lamK"] ** 2 * Z[:, k] ** 2)), kk["infl"]

    def value_slope(pts):  # rows: (value, derivative) at each node of three points, from the point columns
        T = np.zeros((2 * (len(pts) // 3), len(pts)))
        for r in range(len(pts) // 3):
            T[2 * r, 3 * r] = 1.0
            dz = pts[3 * r + 1]["zeta"] - pts[3 * r + 2]["zeta"]
            T[2 * r + 1, 3 * r + 1], T[2 * r + 1, 3 * r + 2] = 1 / dz, -1 / dz
        return T

    # the diagonal: every gap at zeta_k* (gap_cov's columns; their pairs part depends on the point only), then each
    # l above at its own root
    cols, fps, dirs, pts = list(blk["_G"][:, 1:].T), list(blk["fp"][1:]), list(idx[1:]), [kk] * (len(idx) - 1)
    for a in above:  # each root above k: its gap at its own root
        p = _entry_at(tau, Z, lat[a], alpha, idx[a], cache=cache)
        cols.append(p["infl"] + p["fp"] * q * infl_k)
        fps.append(p["fp"])
        dirs.append(idx[a])
        pts.append(p)
    C = np.cov(np.column_stack(cols), rowvar=False, bias=True).reshape(len(cols), len(cols))
    A = np.zeros((len(pts), len(pts)))
    dirs = np.array(dirs)
    for j in set(dirs.tolist()):  # E[c_a c_b] = 0 between two directions
        at_j = np.flatnonzero(dirs == j)
        A[np.ix_(at_j, at_j)] = _gram([pts[x] for x in at_j], Z[:, j] ** 2)
    fps = np.array(fps)
    C += 2 / alpha * A**2 * _pairs_kernel_between(pts, alpha) \
        + 2 * kk["s1"] / alpha * np.outer(fps, fps) * q**2 * c2k**2
    diag_cov = _nearest_psd(C)
    # the couplings (k, l) to the directions above: value and derivative at both nodes
    pair_cov = []
    for a in above:
        pts = [_entry_at(tau, Z, lam, alpha, idx[a], k, cache=cache) for lam in nodes(lam_k) + nodes(lat[a])]
        C = np.cov(np.column_stack([p["infl"] for p in pts]), rowvar=False, bias=True)
        C += _gram(pts, Z[:, k] ** 2) * _gram(pts, Z[:, idx[a]] ** 2) * _pairs_kernel_between(pts, alpha) / alpha
        T = value_slope(pts)
        pair_cov.append(_nearest_psd(T @ C @ T.T))
    # the couplings among the others: at the roots of the two directions (zeta_k* for one below k), linear between
    node = {a: (float(t0[i]), lat[a]) for i, a in enumerate(above)}
    cross = []
    for a, c, var in blk.get("cross", []):
        (ta, la), (tc, lc) = node.get(a, (0.0, lam_k)), node.get(c, (0.0, lam_k))
        if ta == tc:
            cross.append((a, c, var, None, None))
            continue
        pts = [_entry_at(tau, Z, lam, alpha, idx[c], idx[a], cache=cache) for lam in (la, lc)]
        C = np.cov(np.column_stack([p["infl"] for p in pts]), rowvar=False, bias=True)
        pairs = _gram(pts, Z[:, idx[a]] ** 2) * _gram(pts, Z[:, idx[c]] ** 2) \
            * _pairs_kernel_between(pts, alpha) / alpha
        cross.append((a, c, var, (ta, tc), _nearest_psd(C + pairs)))
    return dict(blk, far={"pos": np.array(above), "t0": t0, "curves": curves, "diag_cov": diag_cov,
                          "pair_cov": pair_cov, "cross": cross})


def _own_fluctuation(blk: dict, eg, sd: float, n: int, g, correlated: bool = True) -> np.ndarray:
    r"""Draws of k's own first-order fluctuation :math:`\sigma_k G/\sqrt d` (sd ``sd``; ``g``: standard normal
    draws), jointly Gaussian with the block's gap draws ``eg`` (:math:`\sqrt n\,\delta g_l`, covariance
    ``gap_cov``): its regression on them, with the covariances ``own_cov``
    (:math:`n\,\mathrm{Cov}(\delta q_k, \delta g_l)`, both from the same sample influences), plus an
    independent rest (docs/theory.md §4.3, "k's own fluctuation and the gaps"). ``correlated=False`` or a
    block of one: ``sd * g``."""
    if not correlated or eg.shape[1] == 0:
        return sd * g
    cov, c = blk["gap_cov"][1:, 1:], blk["own_cov"][1:]
    beta = np.linalg.lstsq(cov, c, rcond=None)[0]
    explained = float(beta @ cov @ beta) / n  # the variance the gaps carry
    return eg @ beta / np.sqrt(n) + np.sqrt(max(sd**2 - explained, 0.0)) * g


def _moving_root_gain(slope, q: float, t, u) -> np.ndarray:
    r"""The repulsion's gain seen from k's moving root (docs/theory.md §4.3, "The repulsion seen from the moving
    root"): :math:`[\varphi(u + t) - \varphi(u)] - [\varphi(t) - \varphi(0)]`, per draw (rows) and root (columns
    of ``t``), with :math:`\varphi(x) = 1/(1/q_k + s_k(\zeta_k^* + x) - s_k(\zeta_k^*))` k's overlap at a root x
    from its d = infinity root (``slope``: :class:`_RootSlope` or :class:`_TypicalSlope`) and ``u`` k's own root
    shift :math:`q_k\,\delta f_k` per draw. :math:`\varphi > 0` everywhere (:math:`1/q_k = s_k(\zeta_k^*)`), so the
    gain is bounded where u takes the root near the edge.

    >>> class Flat:  # a slope that does not change: no gain
    ...     def __call__(self, x):
    ...         return np.zeros(np.shape(x))
    >>> _moving_root_gain(Flat(), 0.5, np.array([[0.1, -0.2]]), np.array([0.3])).tolist()
    [[0.0, 0.0]]
    """
    t, u = np.asarray(t, dtype=float), np.asarray(u, dtype=float)[:, None]
    phi = lambda x: 1 / (1 / q + slope(x))  # noqa: E731
    return phi(u + t) - phi(u) - phi(t) + q


def outlier_law(model: HierarchicalModel, alphas, d: int, n_draws: int = 20_000, quantity: str = "q_best",
                n_samples: int = 2**21, seed: int = 0, directions=None, eps_max: float = np.inf,
                rho_max: float = np.inf, bias: bool = True, exact_diagonal: bool = True,
                curvature: bool = True, gap_correlation: bool = True, cross_couplings: bool = True,
                far_roots: bool = True, typical_slope: bool = False, moving_root: bool = False) -> dict:
    r"""The finite-d law of each outlier overlap (docs/theory.md §4.3): per alpha and direction k, ``n_draws``
    draws of one seed's :math:`q_{k,d}`, as :math:`q_k + b_k + \sigma_k G/\sqrt d` (the O(1/d) bias of the
    diagonal, :mod:`numerics.outlier_bias`, §4.4, and the first-order CLT, §4.2) plus the mixing with the
    other outliers from the linear pencil of the outlier block (:func:`outlier_block`). ``quantity``:
    "q_best" (the best of the outlier eigenvectors), "q_rank" (the one at k's rank) or "proj" (the
    summed overlap of the outlier eigenvectors of every direction with an outlier at d = infinity,
    docs/theory.md §4.3 "The projection": mixing among them moves none of it, so only the directions
    without an outlier take a share). ``bias=False``
    leaves :math:`b_k` out (the law as it was before §4.4; it saves one bias solve per point).
    ``exact_diagonal`` takes :math:`q_k` and the block's diagonal :math:`\bar f_l`, :math:`\bar f_l'` from the
    label law (:func:`numerics.label_law.label_law`, the atoms of the d = infinity solver) instead of the
    latent draws, whose Monte Carlo error shifts the whole law by up to one 6-seed standard error where
    outliers are close (docs/theory.md §4.3, "The law's Monte Carlo error"); the covariances, sigma_k
    and b_k always come from the latent draws. ``False`` gives the law as it was before.
    ``curvature`` normalises each root's eigenvector by the diagonal's slope at that root rather than at
    :math:`\zeta_k^*` (and adds the same term for the directions left out of the block): the second-order
    term :math:`(q_k\bar f_k''/\bar f_l)F_{kl}^2` that the linear pencil leaves out, without which moving a
    pure-noise direction from the bulk into the block changes the law's mean at O(1/d)
    (docs/theory.md §4.3, "The slope at the root"). ``False`` gives the law as it was before, in
    distribution (for "proj" the left-out directions' draws are no longer the same numbers).
    ``gap_correlation`` draws k's own first-order fluctuation jointly with the block's gaps: both are averages
    over the same samples, with correlations of -0.1 to -0.5 on the models of docs/theory.md §4.3, "k's own
    fluctuation and the gaps". ``False`` draws it independently, as before (the same numbers where the block
    is k alone).
    ``cross_couplings`` puts the couplings among the block's other directions into the pencil too: they move k's
    overlap through the repulsion of those directions' roots (docs/theory.md §4.3, "The couplings among the
    others"). ``False`` leaves them out, as before (the same numbers for a block of two).
    ``far_roots`` puts the directions whose roots lie above k's on their d = infinity curves instead of their
    tangents at :math:`\zeta_k^*`, with their gaps and couplings to k drawn at their own roots as well
    (docs/theory.md §4.3, "The roots above k"); where k has none, or for "proj" (which keeps those directions'
    share), nothing changes. ``False`` gives the law as it was before.
    ``typical_slope`` (with ``curvature``) takes k's slope below :math:`\zeta_k^*` from the typical finite-d bulk
    at this d instead of the d = infinity curve, which diverges at the d = infinity edge (:class:`_TypicalSlope`;
    docs/theory.md §4.3, "The same from the theory alone"). Off by default: measured at a few points only.
    ``moving_root`` (with ``curvature``) sees the pencil from k's fluctuating root (docs/theory.md §4.3, "The
    repulsion seen from the moving root"): k's own :math:`\delta q_k` and root shift :math:`u = q_k\,\delta f_k`
    drawn jointly with the block's gaps, each other gap to second order in u, and at each root
    :math:`\delta q_k` plus :func:`_moving_root_gain` weighted by k's squared share there. Off by default: it mends
    the lowest roots but not direction 1 of the gamma = 0.3 model (§4.3).

    Returns arrays of shape (len(alphas), m): ``q``, ``sigma``, ``bias`` (:math:`b_k`, NaN where the draws
    are not computed or ``bias=False``), ``eps`` (:math:`\sigma_k/(\sqrt d q_k)`, the
    relative size of the first-order fluctuation), ``rho`` (the largest :math:`\mathrm{sd}(F_{kl}')/|\bar f_k'|`,
    the relative fluctuation of the pencil's slope), ``dropped`` (fraction of draws where the slope was not
    negative definite), ``block`` (size of the block) and ``draws`` (len(alphas), m, n_draws); NaN where
    direction k has no outlier or is not among ``directions`` (1-based; None: all). Two calls with the
    same arguments return the same draws.

    The draws are meaningful only where the expansions hold: the first-order CLT where ``eps`` is small,
    the linear pencil where ``rho`` is. Where ``eps > eps_max`` (checked before the block is built) or
    ``rho > rho_max`` (before the pencil is solved) the draws are not computed and stay NaN, as do
    ``rho``, ``dropped`` and ``block`` in the first case; so are the draws where every pencil draw was
    dropped, and where :math:`b_k` is NaN (n = round(alpha d) puts the ratio below the threshold).
    :func:`validation.compare.compare` passes its gates here, which saves the pencil where it would
    discard the point anyway.

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=2, gamma="0.3", link="He2", preprocessing="clip(y, -1, 3)")
    >>> law = outlier_law(model, [12.0], d=400, n_draws=4000, n_samples=2**18)
    >>> q, mean = law["q"][0, 0], law["draws"][0, 0].mean()     # the mixing lowers the mean by about 13/d
    >>> bool(0.79 < q < 0.83), bool(0.02 < q - mean < 0.05)
    (True, True)
    """
    check_model(model)
    d = integer(d, "d", model.m + 1)
    n_draws = integer(n_draws, "n_draws", 100)
    if quantity not in ("q_best", "q_rank", "proj"):
        raise ValueError(f"quantity: must be 'q_best', 'q_rank' or 'proj', got {quantity!r}")
    ks = range(model.m) if directions is None else sorted({integer(j, "directions", 1) - 1 for j in directions})
    if any(k >= model.m for k in ks):
        raise ValueError(f"directions: must be in 1..m = {model.m}, got {directions!r}")
    for name, v in (("bias", bias), ("exact_diagonal", exact_diagonal), ("curvature", curvature),
                    ("gap_correlation", gap_correlation), ("cross_couplings", cross_couplings),
                    ("far_roots", far_roots), ("typical_slope", typical_slope), ("moving_root", moving_root)):
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{name}: expected True or False, got {v!r}")
    for name, v in (("eps_max", eps_max), ("rho_max", rho_max)):
        if not (isinstance(v, (int, float, np.floating)) and v > 0):
            raise ValueError(f"{name}: expected a number > 0 (inf: no gate), got {v!r}")
    a, tau, Z = _checked_latents(model, alphas, n_samples, seed)
    if exact_diagonal or quantity == "proj":
        from .label_law import label_law  # cached per model: predict has usually built it already

        atoms = label_law(model)
    shape = (a.size, model.m)
    out = {key: np.full(shape, np.nan) for key in ("q", "sigma", "bias", "eps", "rho", "dropped", "block")}
    out["draws"] = np.full(shape + (n_draws,), np.nan)
    for i, alpha in enumerate(a):
        n = int(round(alpha * d))
        lbar = edge_of_atoms(tau, np.full(tau.size, 1.0 / tau.size), float(alpha))[0]
        if exact_diagonal or quantity == "proj":
            from .edge_overlap import _tau_sup  # the label law's ess sup T

            lbar_exact = edge_of_atoms(atoms.tau, atoms.p, float(alpha), _tau_sup(atoms))[0]
        memo, typical = {}, None  # this alpha's roots, on the atoms and on the latents, shared by every k
        if quantity == "proj":  # the directions whose outliers the projection keeps: those with one at d = infinity
            keep = np.array([_memo_root(memo, ("atoms", j), atoms.tau, atoms.p, r_l, float(alpha), lbar_exact)
                             is not None for j, r_l in enumerate(atoms.r)])
        for k in ks:
            first = outlier_variance_parts(tau, Z[:, k], float(alpha), lbar=lbar)
            if first is not None:  # the same solve as _far_roots' on the latents
                memo[("latents", k)] = first["lam"]
            exact = _exact_diagonal(atoms, float(alpha), k, lbar_exact, memo) if exact_diagonal else None
            if first is None or (exact_diagonal and exact is None):
                continue
            latent = first  # b_k's rounding term compares the latents' q at n/d with theirs at alpha
            if exact is not None:  # the mean part without Monte Carlo error; sigma_k from the latents
                first = dict(first, q=exact["q"])
            q, sigma = first["q"], first["sigma"]
            out["q"][i, k], out["sigma"][i, k] = q, sigma
            out["eps"][i, k] = sigma / (np.sqrt(d) * q)
            if not out["eps"][i, k] <= eps_max:
                continue
            block = outlier_block(tau, Z, k, float(alpha), first, diagonal=exact)
            blk = _block_at(block, n)
            if not cross_couplings:
                blk = dict(blk, cross=[])
            slope_sd = max((np.sqrt(cov[1, 1] / n) for _, _, cov in blk["pairs"]), default=0.0)  # all (k, l)
            out["rho"][i, k], out["block"][i, k] = slope_sd / abs(blk["fp"][0]), len(blk["idx"])
            if not out["rho"][i, k] <= rho_max:
                continue
            rng = np.random.default_rng([seed, i, k])
            slope = None
            if curvature:  # k's diagonal slope away from its root, from the same law as the diagonal's mean
                slope = (_RootSlope(atoms.tau, atoms.p, np.asarray(atoms.r)[k], float(alpha), exact["lam"], lbar_exact)
                         if exact is not None else
                         _RootSlope(tau, np.full(tau.size, 1.0 / tau.size), Z[:, k] ** 2 / tau.size, float(alpha),
                                    first["lam"], lbar))
                if typical_slope:  # the typical bulk at this alpha and d, once for every k
                    from .typical_bulk import typical_bulk

                    typical = typical_bulk(model, float(alpha), d) if typical is None else typical
                    slope = _TypicalSlope(slope, typical["locations"], typical["weights"][k])
            if quantity == "proj":  # weight moved to another outlier stays in the projection: only the
                # couplings to the directions without one take weight out of it ("The projection")
                blk = _sub_block(blk, [j == k or not keep[j] for j in blk["idx"]])
            if far_roots and exact is not None:  # the roots above k on their curves (§4.3, "The roots above k")
                blk = _far_roots(blk, block, exact, float(alpha), lbar, memo)
            moving = None  # the pencil seen from k's moving root (§4.3, "The repulsion seen from the moving root")
            if moving_root and slope is not None:
                moving = (q, sigma / np.sqrt(d), np.random.default_rng([seed, i, k, 2]).standard_normal((n_draws, 2)))
                if exact is not None:  # every diagonal's curvature at zeta_k*, from the law the slope comes from
                    tau_c, p_c, R_c, lam_c, lbar_c = atoms.tau, atoms.p, np.asarray(atoms.r), exact["lam"], lbar_exact
                else:
                    tau_c, p_c, R_c = tau, np.full(tau.size, 1.0 / tau.size), (Z**2).T / tau.size
                    lam_c, lbar_c = first["lam"], lbar
                blk = dict(blk, fpp=np.array([_RootSlope(tau_c, p_c, R_c[j], float(alpha), lam_c, lbar_c).curvature()
                                              for j in blk["idx"]]))
            if "far" in blk:
                mix, out["dropped"][i, k], eg = _far_pencil_overlaps(blk, n, n_draws, rng, quantity != "q_best",
                                                                     slope, moving=moving)
            else:
                mix, out["dropped"][i, k], eg = _pencil_overlaps(blk, n, n_draws, rng, quantity != "q_best", slope,
                                                                 gaps=True, moving=moving)
            if mix.size == 0:
                continue
            kept = np.resize(np.arange(mix.size), n_draws)  # dropped draws (if any): repeats of the kept ones
            mix, eg = mix[kept], eg[kept]
            shift = 0.0
            if bias:  # the diagonal root's O(1/d) shift, from the same latents (docs/theory.md §4.4)
                from .outlier_bias import outlier_bias_parts  # it builds on this module

                shift = out["bias"][i, k] = outlier_bias_parts(tau, Z[:, k], float(alpha), d, model.m, lbar,
                                                               latent)["bias"]
            if np.isfinite(shift):  # NaN only where n/d has no outlier: no draws there
                # overlap moved to a kept outlier stays in the projection, with all of its terms
                lost = ~keep[blk["left_idx"]] if quantity == "proj" else None
                left = _left_out_shift(blk["left_out"], q, n, n_draws, np.random.default_rng([seed, i, k, 1]),
                                       slope.curvature() if slope is not None else 0.0, lost)
                own = 0.0 if moving is not None else \
                    _own_fluctuation(blk, eg, sigma / np.sqrt(d), n, rng.standard_normal(n_draws), gap_correlation)
                out["draws"][i, k] = q + shift + own + (mix - q) + left
    return out
