r"""The BBP critical window: the law of the top eigenvectors' overlaps near a threshold (docs/theory.md §4.5).

Near the threshold of direction k the outlier has not yet left the bulk at finite d, and neither
the outlier CLT (§4.2) nor the subcritical edge share (§4.1) applies. By the Schur complement of
§4.1, the eigenvalues of :math:`D_n` outside the spectrum of B are the zeros of
:math:`f(\zeta) = a - \zeta - b^\top(B-\zeta)^{-1}b`, and an eigenvector's overlap is
:math:`q = -1/f'(\zeta)`. At d = infinity, :math:`f \to \bar f(\zeta) = \lambda(F_k(\lambda) - 1/\alpha)`
with :math:`\zeta = \psi_\alpha(\lambda)`; near the square-root edge E, where
:math:`\zeta - E \approx \psi''\,(\lambda-\bar\lambda)^2/2` and :math:`(\lambda F_k)' = G_2 - H_k`,

.. math:: \bar f(\zeta) \approx f_0 - c\,\sqrt{\zeta - E},\qquad
          f_0 = \bar\lambda\,(F_k - G_2),\quad c = H_k\sqrt{2/\psi''}\quad\text{at}\ \bar\lambda.

The spiked GOE :math:`W + \theta e_1e_1^\top` (N x N, edge 2, Tracy-Widom scale :math:`N^{-2/3}`) has
:math:`\bar f = (\theta - 1) - \sqrt{\zeta - 2}` to the same order. Measuring :math:`\zeta - E` in
Tracy-Widom units :math:`s\,d^{-2/3}` (s the edge scale of §4) maps one onto the other:

.. math:: w' = \frac{d^{1/3} f_0}{c\sqrt s},\qquad d^{1/3}\,q_{k,d} \approx \kappa\; N^{1/3}\langle e_1, v\rangle^2
          \big|_{\theta = 1 + w' N^{-1/3}},\qquad \kappa = \frac{\sqrt s}{c},

and the random part of f, the edge eigenvalues of B weighted by their projections on b, is taken to
be the same point process in both: independent :math:`\chi^2_1` weights times a smooth mean (edge
universality; Bloemendal & Virág 2013 for the spiked ensembles' limit, an operator that depends on w'
alone). Measured against simulation the mean is right to O(d^{-1/3}) and the spread 6-28 % too large
near the threshold. The excess goes away when the random signs in the spike's column b are replaced by
Gaussians, which is the GOE's premise (docs/theory.md §4.5, "Where the spread excess sits").

Several directions in the window at once (|w'_j| < 2 for more than one j) are several spikes of one
spiked GOE, :math:`W + \sum_a\theta_a e_ae_a^\top`, each with its own :math:`\theta_a = 1 + w'_aN^{-1/3}`
and its own :math:`\kappa_a`: dividing direction a's row and column of the Schur complement on the
window's directions by :math:`\sqrt{c_a}` gives every direction the slope 1 in :math:`\sqrt{\zeta - E}`,
as in the GOE, provided the edge weights of different directions are uncorrelated (they are when the
population matrix is diagonal in the directions, the vector solver's premise).

:func:`spiked_goe_overlaps` draws the canonical side from a banded model: block Householder steps
that fix :math:`e_1..e_r` reduce the GOE to band width r (r = 1: Dumitriu & Edelman's tridiagonal
model), so the spikes stay on the first r diagonal entries; the top eigenvectors live on the first
:math:`O(N^{1/3})` blocks, so the matrix is cut at ``TRUNCATION`` :math:`N^{1/3}` blocks (Edelman &
Persson cut it the same way for the largest eigenvalue).

Two limits check the map: far below the threshold :math:`d\,q \to \kappa d^{2/3}/w'^2`, which is
:func:`numerics.edge_overlap.edge_overlap`'s :math:`R_k = (H_k/G_2)/(1-F_k/G_2)^2` exactly; far above, :math:`q \to 2\kappa w' d^{-1/3} = 2f_0/c^2`, the d = infinity overlap to first
order in :math:`\alpha - \alpha_k`.

>>> o = spiked_goe_overlaps(-30.0, 2000, seed=0)        # far below: N q -> 1/(1 - theta)^2 = N^(2/3)/w'^2
>>> round(float(o.mean() * 30.0**2), 1)
1.0
"""
from __future__ import annotations

import functools

import numpy as np

from theory import HierarchicalModel
from theory.model import finite_array, integer, sample_ratio, sample_ratios

from .edge_overlap import _direction_sums, _tau_sup, edge_regime, tw_scale
from .label_law import check_model, label_law
from .resolvent import edge_of_atoms, resolvent_sums

__all__ = ["branch_window_map", "composite_scale", "matched_spikes", "spiked_goe_overlaps", "window_map", "CANONICAL_N",
           "TRUNCATION"]

#: the size of the canonical spiked GOE (N^{1/3}-scaled overlaps change by < 1 % from N = 1e5 to 1e6, §4.5)
CANONICAL_N = 10**5
#: blocks kept of the banded model, in units of N^{1/3} (the top eigenvectors decay like Ai(x), x = block / N^{1/3})
TRUNCATION = 16
_TOL = 1e-10  # the bisection's final bracket: an overlap is off by about _TOL / (its distance to the next eigenvalue, ~N^(-2/3) = 5e-4)


def spiked_goe_overlaps(wprime, n_draws: int, seed: int = 0, J: int = 1, N: int = CANONICAL_N,
                        eigenvalues: bool = False, signed: bool = False):
    r""":math:`N^{1/3}\langle e_a, v_j\rangle^2` for the top ``J`` eigenvectors :math:`v_j` of
    :math:`W + \sum_a \theta_a e_ae_a^\top`, :math:`\theta_a = 1 + w'_aN^{-1/3}`, W a GOE of size N with
    spectrum [-2, 2]; ``n_draws`` seeded draws, largest eigenvalue first. A number ``wprime`` (one
    spike) gives shape (n_draws, J); a sequence of r values gives shape (n_draws, J, r), the last axis
    the spike a (several directions in the window at once, docs/theory.md §4.5). ``eigenvalues``: also
    return the top J eigenvalues in Tracy-Widom units, :math:`N^{2/3}(\lambda_j - 2)`, shape (n_draws, J),
    as the pair (eigenvalues, overlaps); an estimator's edge cut compares them with its margin. ``signed``:
    the amplitudes :math:`N^{1/6}\langle e_a, v_j\rangle` instead of their squares, each eigenvector with an
    arbitrary sign; a direction that is a combination of the spikes needs them (:func:`branch_window_map`).

    Vectorised over the draws: the eigenvalues by Sylvester-inertia bisection on the banded model
    (:func:`_band`), the overlaps by the Schur complement on :math:`E = \mathrm{span}(e_1..e_r)`: with
    x the null vector of :math:`M(\lambda) = T_{EE} - \lambda - B^\top(T' - \lambda)^{-1}B`,
    :math:`\langle e_a, v\rangle^2 = x_a^2 / x^\top(1 + B^\top(T' - \lambda)^{-2}B)x` (T' the matrix
    without the rows of E), M and its lam-derivative by the same row elimination run from the bottom up.

    >>> o = spiked_goe_overlaps(40.0, 500, seed=1)   # far above: BBP's 1 - 1/theta^2, in units of N^(-1/3)
    >>> bool(abs(o.mean() / (1e5 ** (1 / 3) * (1 - (1 + 40 * 1e5 ** (-1 / 3)) ** -2)) - 1) < 0.02)
    True
    >>> o = spiked_goe_overlaps([40.0, -30.0], 500, seed=1, J=2)  # and a second spike far below
    >>> o.shape    # (draws, eigenvector, spike): the top one is spike 1's outlier, the next the top bulk one
    (500, 2, 2)
    >>> round(float(o[:, 1, 1].mean() * 30.0**2), 1)   # carrying spike 2's share N q -> 1/(1 - theta_2)^2
    1.0
    >>> x, o = spiked_goe_overlaps(40.0, 500, seed=1, eigenvalues=True)   # BBP's location theta + 1/theta
    >>> theta = 1 + 40 * 1e5 ** (-1 / 3)
    >>> bool(abs(x.mean() / (1e5 ** (2 / 3) * (theta + 1 / theta - 2)) - 1) < 0.01)
    True
    """
    N = integer(N, "N", 1000, 10**9)
    single = np.ndim(wprime) == 0
    w = np.atleast_1d(finite_array(wprime, "wprime")).astype(float)
    if w.ndim != 1 or not 1 <= w.size <= 8:
        raise ValueError(f"wprime: expected a number or a sequence of 1 to 8 numbers (one per spike), got {wprime!r}")
    if np.any(w < -N ** (1 / 3)) or np.any(w > 10 * N ** (1 / 3)):
        raise ValueError(f"wprime: each must lie in [-N^(1/3), 10 N^(1/3)] = [{-N ** (1 / 3):.4g}, {10 * N ** (1 / 3):.4g}] "
                         f"(a spike theta = 1 + wprime N^(-1/3) in [0, 11]), got {wprime!r}")
    if w.size * int(TRUNCATION * N ** (1 / 3)) >= N - w.size:
        raise ValueError(f"N: the band model of {w.size} spikes keeps {w.size} x {TRUNCATION} N^(1/3) rows, which must "
                         f"be fewer than N - {w.size}; got N = {N}")
    n_draws, seed = integer(n_draws, "n_draws", 1, 10**6), integer(seed, "seed", 0)
    band = _band(w, n_draws, seed, N)
    J = integer(J, "J", 1, band[0].shape[0] // 4)
    for name, flag in (("eigenvalues", eigenvalues), ("signed", signed)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name}: expected True or False, got {flag!r}")
    lam, out = _top_overlaps(band, J, signed)
    out = (N ** (1 / 6) if signed else N ** (1 / 3)) * out
    out = out[:, :, 0] if single else out
    return (N ** (2 / 3) * (lam.T - 2), out) if eigenvalues else out


def _band(wprimes: np.ndarray, n_draws: int, seed: int, N: int) -> list[np.ndarray]:
    r"""The first r TRUNCATION N^(1/3) rows of a GOE (spectrum [-2, 2]) reduced to band width r by block
    Householder steps that fix :math:`e_1..e_r`, plus :math:`\sum_a\theta_a e_ae_a^\top`: the list of its
    diagonals, ``band[t][i] = T[i + t, i]`` of shape (K - t, n_draws). Each step's r x r diagonal block
    is a GOE block, and its coupling to the next is the R factor of a Gaussian (N - r(j+1)) x r matrix
    (Bartlett: chi diagonal, Gaussian above), so T[i + r, i] ~ chi_{N-r-i}/sqrt N, the diagonals in
    between are N(0, 1/N) and the main one N(0, 2/N) (docs/theory.md §4.5). r = 1 is Dumitriu and
    Edelman's tridiagonal model."""
    r = len(wprimes)
    K = r * int(TRUNCATION * N ** (1 / 3))
    rng = np.random.default_rng([seed, 20261202])
    band = [rng.normal(0.0, np.sqrt(2.0), (K, n_draws)) / np.sqrt(N)]  # rows = matrix index, columns = draws
    band += [rng.normal(0.0, 1.0, (K - t, n_draws)) / np.sqrt(N) for t in range(1, r)]
    band.append(np.sqrt(rng.chisquare(N - r - np.arange(K - r)[:, None], (K - r, n_draws)) / N))
    band[0][:r] += 1 + np.asarray(wprimes, dtype=float)[:, None] * N ** (-1 / 3)
    return band


def _eliminate(band: list[np.ndarray], lam: np.ndarray, rows: int, derivative: bool = False, buffers=None):
    r"""Symmetric Gaussian elimination of the banded :math:`T - \lambda` (``band`` as from :func:`_band`,
    each diagonal zero-padded to K + r rows; ``lam`` of shape (J, n_draws)), one row at a time for the
    first ``rows`` rows, without pivoting. Returns the inverse pivots, shape (rows, J, n_draws), whose
    signs are the inertia of the eliminated block (Sylvester), and the remaining r x r window: the
    Schur complement of the eliminated rows onto the next r rows, as nested lists ``S[a][b]`` (a >= b),
    with its lam-derivative ``dS`` when ``derivative``. A zero pivot has probability 0; it gives an
    infinite inverse pivot, whose sign still counts right. ``buffers``, a dict kept by the caller, holds
    the two large work arrays between calls with the same shapes."""
    r = len(band) - 1
    buffers = {} if buffers is None else buffers
    shape = (rows, band[0].shape[0]) + lam.shape
    if buffers.get("shape") != shape:
        buffers.update(shape=shape, diag=np.empty((band[0].shape[0],) + lam.shape), inv_piv=np.empty((rows,) + lam.shape))
    diag = np.subtract(band[0][:, None, :], lam, out=buffers["diag"])  # (K + r, J, n_draws)
    inv_piv = buffers["inv_piv"]
    S = [[diag[a] if a == b else band[a - b][b] for b in range(a + 1)] for a in range(r)]  # rows i + a, cols i + b
    dS = [[-1.0 if a == b else 0.0 for b in range(a + 1)] for a in range(r)]
    for i in range(rows):
        ip = np.divide(1.0, S[0][0], out=inv_piv[i])
        col = [S[s][0] for s in range(1, r)] + [band[r][i]]  # T[i + s, i] after the eliminations so far, s = 1..r
        last = [band[r - 1 - b][i + 1 + b] for b in range(r - 1)] + [diag[i + r]]  # row i + r, untouched so far
        scaled = [c * ip for c in col]
        new = [[(S[a + 1][b + 1] if a < r - 1 else last[b]) - scaled[a] * col[b] for b in range(a + 1)] for a in range(r)]
        if derivative:
            dcol = [dS[s][0] for s in range(1, r)] + [0.0]
            dip = -dS[0][0] * ip * ip
            dS = [[(dS[a + 1][b + 1] if a < r - 1 else (-1.0 if b == r - 1 else 0.0))
                   - (dcol[a] * col[b] + col[a] * dcol[b]) * ip - col[a] * col[b] * dip
                   for b in range(a + 1)] for a in range(r)]
        S = new
    return inv_piv, S, dS


def _top_overlaps(band: list[np.ndarray], J: int, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The top J eigenvalues of each banded matrix (:func:`_band`), shape (J, n_draws), and the
    <e_a, v_j>^2 of their eigenvectors, shape (n_draws, J, r) (``signed``: <e_a, v_j>, each eigenvector's sign
    arbitrary)."""
    r = len(band) - 1
    K, n_draws = band[0].shape

    def padded(diagonals):  # each diagonal zero-padded to K + r rows, so the elimination's window stays in range
        return [np.vstack([b, np.zeros((K + r - b.shape[0], n_draws))]) for b in diagonals]

    pad = padded(band)  # rows >= K never pivot

    buffers = {}

    def below(lam):  # the number of eigenvalues below lam, per bracket and draw (negative pivots of T - lam)
        return np.count_nonzero(_eliminate(pad, lam, K, buffers=buffers)[0] < 0, axis=0)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # all J brackets at once, shape (J, n_draws): [2 - 40 N^(-2/3), the largest spike's BBP location
        # + 40 N^(-2/3)], each end widened to Gershgorin's bound for the draws whose eigenvalues it misses
        tw = 40 * (K / (TRUNCATION * r)) ** -2
        theta = pad[0][:r].max(axis=0)  # the spikes plus their GOE diagonal
        gersh = float(np.max(np.abs(pad[0]) + 2 * sum(np.abs(b) for b in pad[1:])))
        guess = np.maximum(2.0, theta + 1 / np.maximum(theta, 1.0)) + tw
        right = np.tile(np.where(below(guess[None, :])[0] == K, guess, gersh), (J, 1))
        left = np.tile(np.where(below(np.full((1, n_draws), 2 - tw))[0] <= K - J, 2 - tw, -gersh), (J, 1))
        target = (K - np.arange(J))[:, None]  # the j-th largest: at least K - j eigenvalues below anything above it
        while np.max(right - left) > _TOL:
            mid = (left + right) / 2
            above = below(mid) >= target
            right = np.where(above, mid, right)
            left = np.where(above, left, mid)
        lam = (left + right) / 2
        # the Schur complement onto span(e_1..e_r): eliminate the other rows from the bottom up, i.e. the
        # first K - r rows of the reversed matrix (whose band is each diagonal reversed)
        rev = padded([b[::-1] for b in band])
        _, S, dS = _eliminate(rev, lam, K - r, derivative=True)
        # S[a][b] is the entry (K - r + a, K - r + b) of the reversed matrix: rows r - 1 - a, r - 1 - b of T
        M, dM = np.empty(lam.shape + (r, r)), np.empty(lam.shape + (r, r))
        for a in range(r):
            for b in range(a + 1):
                M[..., r - 1 - a, r - 1 - b] = M[..., r - 1 - b, r - 1 - a] = S[a][b]
                dM[..., r - 1 - a, r - 1 - b] = dM[..., r - 1 - b, r - 1 - a] = dS[a][b]
        vals, vecs = np.linalg.eigh(M)
        x = np.take_along_axis(vecs, np.argmin(np.abs(vals), axis=-1)[..., None, None], axis=-1)[..., 0]  # (J, n, r)
        norm = -np.einsum("...a,...ab,...b->...", x, dM, x)[..., None]  # x'(1 + B'(T' - lam)^-2 B)x > 0
        out = np.moveaxis(x / np.sqrt(norm) if signed else x**2 / norm, 0, 1)
    if not np.all(np.isfinite(out)):
        raise ArithmeticError("spiked_goe_overlaps: a non-finite overlap")
    return lam, out


def window_map(model: HierarchicalModel, alphas, d: int, **law_options) -> tuple[np.ndarray, np.ndarray]:
    r"""The canonical window variable :math:`w'` and the overlap scale :math:`\kappa` of each direction
    at each alpha (module docstring), two arrays of shape (len(alphas), m); NaN in the boundary regime
    (no square-root edge) and where :math:`H_k = 0`.

    >>> from theory import HierarchicalModel
    >>> from numerics import predict
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
    >>> a1 = float(predict(model, [1.0]).thresholds[0])
    >>> w, kap = window_map(model, [a1 * 0.9, a1 * 1.1], d=600)
    >>> bool(w[0, 0] < 0 < w[1, 0]), bool(np.all(kap > 0))
    (True, True)
    """
    check_model(model)
    a = sample_ratios(alphas)
    d = integer(d, "d", 2)
    edge = _edge_map(model, tuple(a.tolist()), d) if not law_options else _edge_map.__wrapped__(model, a, d, law_options)
    return edge[0].copy(), edge[1].copy()


@functools.lru_cache(maxsize=256)
def _edge_map(model: HierarchicalModel, alphas, d: int, law_options: dict | None = None):
    """:func:`window_map`'s (w', kappa) and the edge's Tracy-Widom scale s per alpha (NaN off the square-root
    edge); deterministic, so kept per model, alphas (a tuple) and d when no law options are given: compare asks
    for the same grid once per group of seeds. Read-only arrays, shared by every caller."""
    a, opts = np.asarray(alphas, dtype=float), law_options or {}
    law = label_law(model, **opts)
    tau, p, R = law.tau, law.p, np.asarray(law.r)
    wp, kappa = np.full((a.size, R.shape[0]), np.nan), np.full((a.size, R.shape[0]), np.nan)
    scale = np.full(a.size, np.nan)
    square_root = edge_regime(model, a, **opts)
    for i in np.nonzero(square_root)[0]:
        lbar, _, psi2 = edge_of_atoms(tau, p, a[i], _tau_sup(law))
        _, G2, F, H = resolvent_sums(tau, p, R, lbar)
        f0, H = lbar * (F[:, 0] - G2[0]), H[:, 0]
        c = H * np.sqrt(2 / psi2)
        scale[i] = s = tw_scale(float(a[i]), lbar, psi2)
        ok = c > 0
        wp[i, ok] = d ** (1 / 3) * f0[ok] / (c[ok] * np.sqrt(s))
        kappa[i, ok] = np.sqrt(s) / c[ok]
    for x in (wp, kappa, scale):
        x.flags.writeable = False
    return wp, kappa, scale


def composite_scale(wprime, kappa, q, d: int) -> np.ndarray:
    r"""The window law's overlap scale, matched to the d = infinity outlier (docs/theory.md §4.5, "The composite
    law above the threshold"): :math:`d^{1/3}q_{k,d} \approx` scale :math:`\cdot\,N^{1/3}\langle e_k, v\rangle^2`
    with

    .. math:: \text{scale} = \kappa\,d^{-1/3}\,\frac{q_k}{q_{\rm lin}},\quad q_{\rm lin} = 2\kappa w' d^{-1/3}
              \quad (w' > 0,\ q_k > 0),\qquad \kappa\,d^{-1/3}\ \text{elsewhere},

    the multiplicative composite of the canonical law (the inner solution, w' = O(1)) and the d = infinity
    overlap q_k (the outer one, alpha - alpha_k = O(1)), whose common part is the canonical law's far-above limit
    q_lin = 2 f_0 / c^2. The edge map alone reproduces q_k only to first order in alpha - alpha_k, so its error
    grows with w' as q_lin / q_k - 1; the composite removes that part and agrees with the edge map at the
    threshold (q_k / q_lin -> 1 as w' -> 0+) and below it. ``wprime``, ``kappa`` and ``q`` are arrays of one shape
    (window_map's and the prediction's q at the same alphas); ``q`` may be NaN or 0 where there is no outlier.

    >>> # d^(-1/3) = 0.1: kappa d^(-1/3) = 0.08 below; q_lin = 0.08 and 0.32 above, so q_k / q_lin = 1.25 and 0.9375
    >>> composite_scale([-1.0, 0.5, 2.0], [0.8, 0.8, 0.8], [0.0, 0.1, 0.3], d=1000).round(4).tolist()
    [0.08, 0.1, 0.075]
    """
    wp, kap, q = (np.asarray(x, dtype=float) for x in (wprime, kappa, q))
    if not wp.shape == kap.shape == q.shape:
        raise ValueError(f"wprime, kappa, q: expected one shape, got {wp.shape}, {kap.shape} and {q.shape}")
    d = integer(d, "d", 2)
    scale = kap * d ** (-1 / 3)
    above = (wp > 0) & (q > 0) & np.isfinite(scale)
    ratio = np.ones_like(scale)
    ratio[above] = q[above] / (2 * wp[above] * scale[above])
    return scale * ratio


def matched_spikes(prediction, alphas, d: int, N: int = CANONICAL_N) -> tuple[np.ndarray, np.ndarray]:
    r"""The canonical spikes placed at the model's outliers, and the overlap scale matched to its d = infinity
    overlap (docs/theory.md §4.5, "The outliers placed where the model puts them"): two arrays of shape
    (len(alphas), m), the canonical variable :math:`w''` to draw with and the scale, with
    :math:`q_{k,d} \approx \text{scale}\cdot N^{1/3}\langle e_k, v\rangle^2`.

    Where direction k has an outlier at d = infinity (w' > 0), its eigenvalue :math:`\zeta_k` lies
    :math:`x_k = d^{2/3}(\zeta_k - E)/s` Tracy-Widom units above the edge E (s the edge scale); the canonical
    spike :math:`\theta_k > 1` is the one whose outlier lies there too, :math:`N^{2/3}(\theta_k + 1/\theta_k - 2)
    = x_k`, and the scale divides :math:`q_k` by its overlap :math:`N^{1/3}(1 - \theta_k^{-2})` (BBP), so both
    the locations and the overlaps agree with the model's d = infinity ones exactly, not only to first order in
    w' d^{-1/3} (:func:`window_map`'s :math:`x_k \approx w'^2`, :func:`composite_scale`'s BBP overlap 2w').
    Then :math:`w'' = N^{1/3}(\theta_k - 1)`. Elsewhere (no outlier) :math:`w'' = w'` and the scale is
    :math:`\kappa d^{-1/3}`; both tend to these as w' -> 0+. NaN where :func:`window_map` is NaN.

    ``prediction``: a :class:`numerics.Prediction` of the diagonal (vector) solver that holds ``alphas``.

    >>> from theory import HierarchicalModel
    >>> from numerics import predict
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
    >>> a1 = float(predict(model, [1.0]).thresholds[0])
    >>> w2, scale = matched_spikes(predict(model, [a1 * 0.9, a1 * 1.3]), [a1 * 0.9, a1 * 1.3], d=600)
    >>> w, kappa = window_map(model, [a1 * 0.9, a1 * 1.3], d=600)
    >>> bool(w2[0, 0] == w[0, 0] and scale[0, 0] == kappa[0, 0] * 600 ** (-1 / 3)), bool(w2[1, 0] > 0)
    (True, True)
    """
    from .predict import Prediction
    from theory.model import require

    require(prediction, Prediction, "prediction")
    if prediction.settings.get("solver") == "matrix":
        raise ValueError("prediction: the matched spikes need the diagonal (vector) solver's per-direction outliers; "
                         "coupled directions have the window of the eigen-branches (branch_window_map)")
    a = sample_ratios(alphas)
    idx = np.array([int(np.argmin(np.abs(prediction.alphas - x))) for x in a])
    if np.any(np.abs(prediction.alphas[idx] / a - 1) > 1e-9):
        raise ValueError(f"alphas: each must be one of the prediction's alphas, got {alphas!r}")
    d, N = integer(d, "d", 2), integer(N, "N", 1000, 10**9)
    check_model(prediction.model)
    wp, kappa, s = _edge_map(prediction.model, tuple(a.tolist()), d)
    w2, scale = wp.copy(), kappa * d ** (-1 / 3)
    x = d ** (2 / 3) * (prediction.eigenvalues[idx] - prediction.bulk_edge[idx, None]) / s[:, None]
    q = prediction.q[idx]
    above = np.isfinite(wp) & (wp > 0) & prediction.is_outlier[idx] & (q > 0) & (x > 0)
    y = 2 + x[above] * N ** (-2 / 3)
    theta = (y + np.sqrt(y * y - 4)) / 2  # the root > 1 of theta + 1/theta = y
    w2[above] = N ** (1 / 3) * (theta - 1)
    scale[above] = q[above] / (N ** (1 / 3) * (1 - theta ** -2.0))
    return w2, scale


def branch_window_map(model: HierarchicalModel, alpha: float, d: int, **law_options) -> tuple[np.ndarray, np.ndarray]:
    r"""The critical window of coupled directions (docs/theory.md §4.5, "Coupled directions: the window of the
    eigen-branches"): the canonical variable :math:`w'_b` of each eigen-branch b, ascending, shape (m,), and the
    map A, shape (m, m), from the canonical amplitudes to the overlaps,

    .. math:: d^{1/3}\,\langle w_k, v\rangle^2 \approx \Big(\sum_b A_{kb}\,a_b\Big)^2,\qquad
              a_b = N^{1/6}\langle e_b, v\rangle\ \text{of the spiked GOE}\ W + \sum_b \theta_b e_be_b^\top,
              \ \theta_b = 1 + w'_bN^{-1/3}.

    At the edge the Schur complement on span(w_1..w_m) is :math:`F_0 - C\sqrt{\zeta - E}` plus noise whose edge
    weights have covariance C, with :math:`F_0 = \bar\lambda(M - G_2)` and :math:`C = H\sqrt{2/\psi''}` the
    m x m resolvent sums of :func:`numerics.edge_overlap.resolvent_share` at :math:`\bar\lambda`. Whitening by
    :math:`C^{-1/2}` gives the GOE's slope and noise; the eigenvectors U of :math:`C^{-1/2}F_0C^{-1/2}`
    (eigenvalues :math:`\tilde\theta_b`) are the spikes: :math:`w'_b = d^{1/3}\tilde\theta_b/\sqrt s` and
    :math:`A = s^{1/4}C^{-1/2}U`. For uncoupled directions C and F_0 are diagonal and this is
    :func:`window_map` (:math:`A_{kb}^2 = \kappa_k` on k's own spike). Far below every threshold,
    :math:`E\,a_b^2 \to 1/w_b'^2` gives :math:`d\,E\langle w_k, v\rangle^2 \to s^{3/2}[F_0^{-1}CF_0^{-1}]_{kk}`,
    the edge share R_k of :func:`numerics.edge_overlap.resolvent_share`; just above branch b's threshold,
    :math:`a_b^2 \to 2w_b'`, the branch's share of w_k is :math:`2\tilde\theta_b(C^{-1/2}u_b)_k^2`, the
    d = infinity share to first order. NaN without a square-root edge or where C is not positive definite.

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=2, gamma=1, link="He1 + He2/2", preprocessing="clip(y, -1, 3)")
    >>> w, A = branch_window_map(model, 2.0, d=400)
    >>> np.round(w, 1).tolist()   # branch 1 in the window, branch 2 far below
    [-3.9, 0.4]
    """
    check_model(model)
    a = sample_ratio(alpha)
    a, d = float(a), integer(d, "d", 2)
    law = label_law(model, **law_options)
    m = np.asarray(law.r).shape[0]
    wp, A = np.full(m, np.nan), np.full((m, m), np.nan)
    if not edge_regime(model, [a], **law_options)[0]:
        return wp, A
    lbar, _, psi2 = edge_of_atoms(law.tau, law.p, a, _tau_sup(law))
    G2, M, H = _direction_sums(law, lbar)
    M, H = (np.diag(x) if np.ndim(x) == 1 else x for x in (M, H))
    c_val, c_vec = np.linalg.eigh(H * np.sqrt(2 / psi2))
    if not c_val.min() > 0:
        return wp, A
    root = c_vec @ np.diag(c_val**-0.5) @ c_vec.T  # C^(-1/2)
    theta, U = np.linalg.eigh(root @ (lbar * (M - G2 * np.eye(m))) @ root)
    s = tw_scale(a, lbar, psi2)
    return d ** (1 / 3) * theta / np.sqrt(s), s**0.25 * root @ U
