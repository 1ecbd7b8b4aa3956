r"""Theory (d = infinity) next to simulation (finite d), with finite-size-aware flags (docs/theory.md §4).

Each (alpha, k) point gets a region from the scaling variable
:math:`w = d^{1/3}(\alpha/\alpha_k - 1)`:

* ``outlier`` (w >= 1): :math:`\sqrt d\,(q_{k,d} - q_k)` is asymptotically normal with standard
  deviation :math:`\sigma_k` (:func:`numerics.outlier_fluctuation.outlier_fluctuation`, docs/theory.md
  §4.2). For m = 1 the flag is the two-sided bound :math:`|\bar q_{sim} - \bar q| \le z_{(1+level)/2}\,\sigma_k/\sqrt{S d}`
  (S seeds), tol_basis ``clt``, with :math:`\bar q` the centre :math:`q_k + b_k` (``q_center``;
  :math:`b_k` is the O(1/d) bias of :func:`numerics.outlier_bias.outlier_bias`, docs/theory.md §4.4,
  column ``bias_out``). For m > 1 close outliers mix, an O(1/d) loss that can exceed
  :math:`\sigma_k/\sqrt d`: the flag is the two-sided ``level`` interval of the mean of S draws from
  :func:`numerics.outlier_fluctuation.outlier_law` (the bias of the diagonal, the CLT and the mixing
  of the outlier block, docs/theory.md §4.3), tol_basis ``clt+mixing``, centred at ``q_center``. Both
  are used where the linearisation holds, a relative fluctuation
  :math:`\varepsilon = \sigma_k/(\sqrt d\,q_k) \le 1/2` (``EPS_CLT``), and for m > 1 where the
  pencil's slope is stable (``EPS_PENCIL``), and for uncoupled directions only: the law splits the
  outliers per direction, which the cross moments of non-even links break. For coupled directions q_best
  is the overlap of the eigen-branch b that holds the largest share of w_k: its CLT about the share plus its
  O(1/d) bias, :math:`q_{bk} + b_{bk} \pm z\,\sigma_{bk}/\sqrt{Sd}` (:func:`numerics.branch_fluctuation`,
  docs/theory.md §4.3 "The branch's O(1/d) bias"; tol_basis ``clt+branch``), where eps <= EPS_CLT and every
  other branch's share lies more than 5 sd below. q_rank gets the same interval for the k-th branch (the k-th
  largest outlier eigenvalue) where the chance that its eigenvalue swaps rank with another branch's or meets the
  bulk edge in one of the S seeds is at most ``RANK_SWAP`` (1 - level), from the eigenvalues' first-order law
  (docs/theory.md §4.3, "The overlap at a fixed rank"). Where that chance is larger (q_best: where another
  branch's share is close) but every branch is clear of the edge, the branches' eigenvalues and w_k's shares are
  drawn jointly with the bulk's top eigenvalues and ranked; a branch among the bulk's top ones is bracketed, its
  share left in the bulk at the interval's lower end and kept at the branch's rank at its upper end (tol_basis
  ``clt+rank``, docs/theory.md §4.3, "The overlap at a fixed rank, drawn"). Their proj is the sum of w_k's
  shares in every outlier branch, :math:`\sum_i (q_{ik} + b_{ik}) \pm z\,s_k/\sqrt{Sd}` with :math:`s_k^2` the
  shares' joint first-order variance (:func:`numerics.branch_fluctuation.branch_covariance`), where the estimator's
  cut keeps every branch in all S seeds but with chance at most ``RANK_SWAP`` (1 - level) (tol_basis
  ``clt+branch``, docs/theory.md §4.3, "The projection on coupled branches"). Where the cut may miss a branch but
  every branch is clear of the edge, each branch's eigenvalue minus the realised edge and w_k's share in its
  eigenvector are drawn jointly, the kept branches' shares summed (tol_basis ``clt+detection``, docs/theory.md
  §4.3, "The projection with branches near the cut"); elsewhere it keeps the heuristic bound below.
  For the subspace projection ``proj`` of uncoupled directions (the overlap summed
  over the estimator's k_hat outlier eigenvectors) the same law sums the pencil's weight over the
  outliers, which mixing among them does not change (docs/theory.md §4.3 "The projection"); it is used
  where direction k's outlier is far above the estimator's cut, :math:`w'_k >` ``W_MAX``. Where other
  directions have an outlier near the cut, :math:`0 < w'_l \le` ``W_MAX``, the estimator keeps it or not
  at random, and with it the weight :math:`\langle w_k, u_l\rangle^2` (mean :math:`r_{lk}/d`); the interval
  then brackets both cases, from the law less :math:`\sum_l r_{lk}\chi^2_1/d` at its lower end to the law
  at its upper end (tol_basis ``clt+neighbour``, docs/theory.md §4.3, "The projection next to an outlier
  near the cut"). Where k's own outlier is near
  the cut, :math:`0 < w'_k \le` ``W_MAX``, but its CLT holds, ``proj`` draws whether the estimator keeps
  it from the first-order law of its eigenvalue minus the cut, correlated with the overlap
  (docs/theory.md §4.2, "The projection with a random detection"; tol_basis ``clt+detection``); another
  direction near the cut whose own CLT fails is then bracketed as above (tol_basis ``clt+neighbour``).
  Where neither law holds for k's own outlier near the cut (its CLT fails, or its pencil is unstable),
  ``proj`` gets a bracket: from only the outliers far above the cut kept, to every eigenvector of the
  critical window kept with its canonical overlap (tol_basis ``bracket``, docs/theory.md §4.3, "The
  projection with its own outlier near the cut"); it claims at least the level, and says nothing about
  how often the outlier is kept.
  Elsewhere in this region the critical-window law below applies where it can (not for ``proj``);
  otherwise the earlier bound :math:`d^{-1/2} + 2\,\mathrm{sem}` stays (tol_basis ``heuristic``);
* ``window`` (|w| < 1) and ``bulk`` (w <= -1): a one-sided bound at confidence ``level``
  (docs/theory.md §4.1). The top eigenvectors near the edge carry on average
  :math:`R_k(x_j)/d` of :math:`w_k` (:func:`numerics.edge_overlap.edge_overlap`, computed for the
  model at hand at the typical location :math:`x_j` of the j-th eigenvalue); ``q_best`` is a
  maximum over the top m eigenvectors, bounded by the maximum of independent
  :math:`r_j\chi^2_1/d` variables: :math:`r_j = R_k(x_j)` for the bulk ones and, for outliers of other
  directions, the first-order share of w_k in their eigenvectors
  (:func:`numerics.outlier_fluctuation.mixing_share`) where their own CLT holds, the edge continuation
  :math:`R_k(\lambda_j^*)` (:func:`numerics.edge_overlap.outlier_share`) nearer the edge.
  So :math:`\bar q_{sim} \le q + c/d` with c the ``level`` quantile of the mean of S such maxima
  (S seeds). The outlier part q is 0 below the threshold; in the
  window's upper half (0 < w < 1) adding it is an upper interpolation, not a derivation, which stays
  only where the critical-window law below does not apply. For ``proj`` below k's threshold the bound is
  instead the ``level`` quantile of the seed mean of w_k's shares in the eigenvectors the estimator's cut
  keeps: the outliers far above the window always, the window's outliers whose CLT holds where their
  first-order eigenvalue law puts them above the cut, and the other eigenvectors that the canonical window
  model puts above it, with their canonical overlaps where k is in the window (docs/theory.md §4.3, "The
  projection below the threshold").

In the boundary regime :math:`\bar\lambda = \sup T` the edge is not square-root: each top eigenvector
sits on one extreme sample and carries the share :math:`R_k^b`
(:func:`numerics.edge_overlap.boundary_share`, docs/theory.md §4.1 "The boundary regime") whatever
its depth, so :math:`r_j = R_k^b` for every bulk eigenvector (tol_basis ``boundary``). Coupled directions
(the matrix solver) get the same bounds with the m x m resolvent's shares
(:func:`numerics.edge_overlap.resolvent_share`, docs/theory.md §4.1 "Coupled directions") at the alphas
where no eigen-branch has an outlier. Where one has, its eigenvector carries O(1) of every direction the
branch mixes: q_best (and q_rank, which is at most q_best) is then bounded by the seed mean of the maximum of
the outlier branches' shares, each the square of its Gaussian amplitude, and the top bulk ones' r_j chi2_1/d
(tol_basis ``edge+branch``, docs/theory.md §4.1 "Next to an outlier branch"), where every outlier branch is
clear of the edge. Where a branch is near the edge (its own CLT fails) q_best and q_rank get the window of the
eigen-branches (docs/theory.md §4.5, "Coupled directions: the window of the eigen-branches"; tol_basis
``window``): the branches are the spikes of one canonical spiked GOE, and w_k is a fixed combination of them
(:func:`numerics.critical_window.branch_window_map`); it also takes the window points below k's threshold. proj
gets a bracket there (tol_basis ``bracket``): the branches above the window kept at its lower end, and with them
every eigenvector near the edge at its upper end. Where the eigenvector a point reports is a branch clear of the
edge among the spikes (for proj: any clear spike), the map's leading order misplaces its share, and the window
is not used. The bracket also takes proj below k's threshold next to a branch near the edge, where no edge bound
holds. Elsewhere there (proj below the threshold next to a clear branch), and at window points above a threshold that
lies in the boundary regime (the overlap jumps there, docs/numerics.md), the bulk and window keep the earlier
heuristic bounds :math:`4/(d(1-\sqrt{\alpha/\alpha_k})^2)` and :math:`q + 2d^{-1/3}`; the column ``tol_basis``
says which bound each point got ("clt", "clt+mixing", "clt+branch", "clt+neighbour", "clt+detection", "bracket",
"edge", "edge+branch", "boundary", "window" or "heuristic").

The critical window (docs/theory.md §4.5): at window points, and at outlier points where the CLT is
not used, a square-root edge maps direction k onto the spiked GOE with the canonical variable
:math:`w'` (column ``wprime``, :func:`numerics.critical_window.window_map`); q_best and q_rank are drawn
from the canonical law (:func:`numerics.critical_window.spiked_goe_overlaps`) and the flag is the
two-sided ``level`` interval of the seed mean (tol_basis ``window``). Where a direction has an outlier at
d = infinity its canonical spike is placed at that outlier's location (in Tracy-Widom units) and its overlaps are
scaled to the d = infinity overlap (:func:`numerics.critical_window.matched_spikes`, docs/theory.md §4.5, "The
outliers placed where the model puts them"); w' still decides which directions are in the window.
The other directions with :math:`-` ``W_GATE`` :math:`< w'_j \le` ``W_MAX`` are in the window with k: they
are further spikes of the same canonical model, whose draws the points of one window share (an outlier
just above the window mixes with it and takes part of its overlap). It needs
:math:`|w'_k| \le` ``W_MAX``: far from the threshold the map's leading-order expansion at the edge is
not needed (below, the edge bound applies) or no longer holds (above). The draws cost about
spikes^2 x depth, so a window of more than ``WINDOW_SPIKES`` directions, or one that needs more than
``WINDOW_DEPTH`` top eigenvectors, keeps the earlier bounds.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

__all__ = ["compare", "branch_clear", "C_BULK", "C_WINDOW", "EPS_CLT", "EPS_PENCIL", "RANK_SWAP", "W_GATE", "W_MAX",
           "WINDOW_SPIKES", "WINDOW_DEPTH", "max_chi2_mean_quantile"]

C_BULK = 4.0  # the heuristic bulk constant: coupled proj next to an outlier branch, and a branch near the edge
C_WINDOW = 1.0
EPS_CLT = 0.5  # the outlier CLT bound is used where sigma_k / (sqrt(d) q_k) <= EPS_CLT
EPS_PENCIL = 0.25  # m > 1: and where the pencil's slope fluctuates by at most this fraction (docs/theory.md §4.3)
RANK_SWAP = 0.05  # coupled q_rank: the share of the miss rate 1 - level that a rank swap among the seeds may take
LAW_DRAWS = 20_000  # draws of the outlier block's law per point (m > 1), and seed means resampled from them
LAW_LATENTS = 2**19  # latent draws carrying the law's expectations (MC sd of d b_k <= 0.22 on the default model, §4.4)
WINDOW_DRAWS = 2000  # draws of the canonical spiked GOE per window (docs/theory.md §4.5): the interval's ends to ~3 % of its half-width
W_GATE = 2.0  # the other directions with -W_GATE < w'_j <= W_MAX are in the window with k: further spikes of its law
W_MAX = 4.0  # and where direction k's own |w'| <= W_MAX (the map is a leading-order expansion at the edge, §4.5)
WINDOW_SPIKES = 4  # at most this many directions in one window, and
WINDOW_DEPTH = 10  # at most this many top eigenvectors drawn: the cost grows like spikes^2 x depth (§4.5)


def max_chi2_mean_quantile(scales, n_seeds: int, level: float = 0.95, h: float = 2e-3) -> float:
    r"""The ``level`` quantile of :math:`\frac1S\sum_{s\le S}\max_{j}\, r_j\chi^2_{1,sj}` (all independent),
    for ``scales`` :math:`r_j > 0` (an integer m means m unit scales).

    The law of one maximum, :math:`P(\max\le x) = \prod_j P(\chi^2_1\le x/r_j)`, is binned on a grid of
    step :math:`h\max_j r_j` (bin masses from the CDF, placed at bin midpoints) and convolved S times
    by FFT. For one unit scale this is :math:`\chi^2_S(\text{level})/S`:

    >>> round(max_chi2_mean_quantile(1, 8), 2), round(float(chi2.ppf(0.95, 8) / 8), 2)
    (1.94, 1.94)
    """
    from theory.model import confidence, finite_array, integer

    S = integer(n_seeds, "n_seeds", 1)
    if isinstance(scales, (int, np.integer)) and not isinstance(scales, bool):
        r = np.ones(integer(scales, "scales", 1))
    else:
        r = np.atleast_1d(finite_array(scales, "scales"))
        if r.ndim != 1 or r.size == 0 or np.any(r <= 0):
            raise ValueError(f"scales: expected positive scales r_j, got {scales!r}")
    level = confidence(level)
    top, r = float(r.max()), r / float(r.max())
    upper = float(chi2.isf(1e-12 / r.size, 1))  # the maximum exceeds this with probability < 1e-12
    edges = np.arange(0.0, upper + h, h)
    cdf_max = np.prod(chi2.cdf(edges[None, :] / r[:, None], 1), axis=0)
    pmf = np.diff(cdf_max)
    size = 1 << int(np.ceil(np.log2(S * pmf.size + 1)))
    total = np.fft.irfft(np.fft.rfft(pmf, size) ** S, size)[: S * pmf.size]
    cdf = np.cumsum(np.clip(total, 0, None))
    j = int(np.searchsorted(cdf / cdf[-1], level))
    return float((j + S * 0.5) * h / S * top)  # S midpoints of h/2 each


def compare(prediction, simulation: pd.DataFrame, quantity: str = "q_best", level: float = 0.95) -> pd.DataFrame:
    """Summary per (alpha, k): theory, simulation mean and standard error, region, tolerance, flag.

    ``prediction`` must be a numerics.Prediction at (a superset of) the simulated alphas. ``level``
    is the confidence of the one-sided bound in the bulk and window and of the two-sided outlier
    CLT bound (module docstring); the columns
    ``R_edge`` (the largest share r_j among the top m eigenvectors, NaN where it does not apply),
    ``sigma_out`` (sigma_k of the outlier CLT, NaN where it is not used), ``bias_out`` (the O(1/d)
    bias b_k of the outlier overlap, docs/theory.md §4.4, NaN where it is not used), ``q_center`` (the
    centre of the outlier interval: q_theory + b_k for m = 1, the centre of the outlier law's interval
    for m > 1, the branch share plus its bias for coupled directions, q_theory where none is used) and
    ``wprime`` (the critical-window variable of docs/theory.md §4.5, NaN without a square-root edge) and
    ``tol_basis`` ("clt", "clt+mixing", "clt+branch", "clt+rank", "clt+neighbour", "clt+detection", "bracket",
    "edge", "edge+branch", "boundary", "window" or "heuristic") say how each tolerance was obtained; "clt+branch" is
    the branch CLT of coupled directions with its bias (q_best and q_rank; for proj the sum over the branches,
    docs/theory.md §4.3); "clt+rank" (q_best, q_rank) the branches' law with the ranks drawn (§4.3); "edge+branch" the
    bound below a coupled direction's threshold next to outlier branches (q_best and q_rank, docs/theory.md §4.1);
    "clt+detection" (proj only) is the outlier CLT with the estimator's random detection of an outlier near its
    cut (docs/theory.md §4.2); "clt+neighbour" and "bracket" (proj only) are intervals whose two ends take the
    random detections the theory does not predict at their two extremes, and which hold at least at ``level``
    (docs/theory.md §4.3).
    """
    from numerics import Prediction
    from theory.model import confidence, require

    require(prediction, Prediction, "prediction")
    require(simulation, pd.DataFrame, "simulation")
    if quantity not in ("q_best", "q_rank", "proj"):
        raise ValueError(f"quantity: must be 'q_best', 'q_rank' or 'proj', got {quantity!r}")
    level = confidence(level)
    if simulation.empty:
        raise ValueError("simulation: the table is empty")
    ds = simulation["d"].unique()
    if ds.size != 1:
        raise ValueError(f"simulation: compare one d at a time, got d = {sorted(ds.tolist())}")
    d = int(ds[0])
    g = simulation.groupby(["alpha", "k"])
    nseed = g["seed"].nunique()

    def sem(col):
        return (g[col].std(ddof=1) / np.sqrt(nseed)).fillna(0.0)

    out = pd.DataFrame({
        "q_sim": g[quantity].mean(), "q_sem": sem(quantity),
        "proj_sim": g["proj"].mean(), "proj_sem": sem("proj"),
        "mse_sim": g["mse"].mean(), "mse_sem": sem("mse"),
        "mse_plugin_sim": g["mse_plugin"].mean(),
        "k_hat": g["k_hat"].mean(), "n_seeds": nseed,
    }).reset_index()
    idx = np.array([np.argmin(np.abs(prediction.alphas - a)) for a in out["alpha"]])
    if np.any(np.abs(prediction.alphas[idx] / out["alpha"].to_numpy() - 1) > 1e-9):
        raise ValueError("prediction: it must contain every simulated alpha")
    k = out["k"].to_numpy() - 1
    out["q_theory"] = prediction.q[idx, k]
    out["alpha_k"] = prediction.thresholds[k]
    out["mse_theory"] = prediction.mse[idx]
    out["mse_plugin_theory"] = prediction.mse_plugin[idx]
    out["n_outliers_theory"] = prediction.n_outliers[idx]
    w = d ** (1 / 3) * (out["alpha"] / out["alpha_k"] - 1)
    out["w"] = w
    out["region"] = np.where(w >= C_WINDOW, "outlier", np.where(w <= -C_WINDOW, "bulk", "window"))
    R, boundary = _edge_ratios(prediction, out, d, quantity)
    out["R_edge"] = np.nanmax(np.where(np.isfinite(R), R, -np.inf), axis=1, initial=-np.inf)
    out.loc[~np.isfinite(out["R_edge"]), "R_edge"] = np.nan
    # the bulk/window bound: q + c/d, c the level quantile of the seed mean of max_j R_j chi2_1
    m = prediction.model.m
    edge_tol = np.full(len(out), np.nan)
    for i in np.nonzero(np.isfinite(out["R_edge"].to_numpy()))[0]:
        S = int(out["n_seeds"].iat[i])
        if quantity == "proj":  # a sum over at most m eigenvectors, each bounded by the top share; below
            # the threshold _projection_bounds replaces it (docs/theory.md §4.3)
            c = out["R_edge"].iat[i] * float(chi2.ppf(level, S * m)) / S
        else:
            c = max_chi2_mean_quantile(R[i][np.isfinite(R[i])], S, level)
        edge_tol[i] = c / d
    heuristic = np.where(out["region"] == "window", 2 * d ** (-1 / 3),
                         C_BULK / (d * (1 - np.sqrt(np.clip(out["alpha"] / out["alpha_k"], 0, 1))) ** 2))
    has_edge = np.isfinite(edge_tol)
    is_out = (out["region"] == "outlier").to_numpy()
    sigma, center, half, bias, bracket = _outlier_bounds(prediction, out, d, quantity, level)
    clt = is_out & np.isfinite(sigma)
    detection, ranked = np.zeros(len(out), dtype=bool), np.zeros(len(out), dtype=bool)
    coupled = prediction.settings.get("solver") == "matrix"
    if quantity == "proj":  # k's outlier near the estimator's cut, its CLT clear: kept at random (§4.2)
        dsigma, dcenter, dhalf, dbias, dbracket = _detection_bounds(prediction, out, d, level, want=is_out & ~clt)
        detection = np.isfinite(dhalf)
        bracket |= dbracket
        sigma, center, half, bias = (np.where(detection, x, y) for x, y in
                                     ((dsigma, sigma), (dcenter, center), (dhalf, half), (dbias, bias)))
        clt |= detection
    if quantity in ("q_best", "q_rank") and coupled:  # a rank swap or a branch at the bulk's top likely: ranks drawn
        rsigma, rcenter, rhalf, rbias = _branch_rank_bounds(prediction, out, d, level, is_out & ~clt, quantity)
        ranked = np.isfinite(rhalf)
        sigma, center, half, bias = (np.where(ranked, x, y) for x, y in
                                     ((rsigma, sigma), (rcenter, center), (rhalf, half), (rbias, bias)))
        clt |= ranked
    out["sigma_out"] = sigma
    out["bias_out"] = bias
    mixing = clt & ~detection & (prediction.model.m > 1) & (not coupled)
    branch = clt & ~detection & ~ranked & coupled
    # the critical window (docs/theory.md §4.5): window points, and outlier points without the CLT
    wprime, wcenter, whalf = _window_bounds(prediction, out, d, quantity, level, want=~clt & (w > -C_WINDOW).to_numpy())
    window = np.isfinite(whalf)
    ccenter = chalf = np.full(len(out), np.nan)
    edge_branch = np.zeros(len(out), dtype=bool)
    if coupled and quantity in ("q_best", "q_rank"):  # below k's threshold, next to outlier branches (§4.1)
        # q_rank_k <= q_best_k (rank k <= m), so q_best's bound holds for q_rank at least at its level
        cb = _coupled_edge_bounds(prediction, out, d, level, want=~is_out & (out["n_outliers_theory"] > 0).to_numpy())
        edge_branch = np.isfinite(cb)
        edge_tol = np.where(edge_branch, cb - out["q_theory"].to_numpy(), edge_tol)
        has_edge = np.isfinite(edge_tol)
        # the window of the eigen-branches (§4.5): where no branch law holds, and at window points below k's threshold
        want = ~clt & ~edge_branch & ((w > -C_WINDOW).to_numpy() | ~has_edge)
        bcenter, bhalf = _branch_window_bounds(prediction, out, d, quantity, level, want)
        branch_window = np.isfinite(bhalf)
        wcenter, whalf = np.where(branch_window, bcenter, wcenter), np.where(branch_window, bhalf, whalf)
        window |= branch_window
    if quantity == "proj":  # below k's threshold: the outliers and the edge eigenvectors the cut keeps
        law = _projection_bounds(prediction, out, d, level, want=~is_out)
        edge_tol = np.where(np.isfinite(law), law, edge_tol)
        has_edge = np.isfinite(edge_tol)
        # k's own outlier near the cut without a detection law: every near-edge eigenvector missed or kept; coupled,
        # a branch near the cut whose own CLT fails: the window of the eigen-branches brackets it (§4.5)
        bracket_of = functools.partial(_branch_window_bounds, quantity="proj") if coupled else _cut_bracket_bounds
        ccenter, chalf = bracket_of(prediction, out, d, level=level, want=~clt & (is_out | (coupled & ~has_edge)))
    cut = np.isfinite(chalf)
    out["wprime"] = wprime
    edge_basis = np.where(boundary, "boundary", np.where(edge_branch, "edge+branch", "edge"))
    law_basis = np.where(bracket, "clt+neighbour", np.where(mixing, "clt+mixing", np.where(branch, "clt+branch", "")))
    out["tol_basis"] = np.where(detection & ~bracket, "clt+detection", np.where(ranked, "clt+rank", np.where(
        mixing | bracket | branch, law_basis, np.where(clt, "clt", np.where(
            window, "window", np.where(cut, "bracket", np.where(~is_out & has_edge, edge_basis, "heuristic")))))))
    out["q_center"] = np.where(clt, center, np.where(window, wcenter, np.where(cut, ccenter, out["q_theory"])))
    tol = np.select([clt, window, cut, is_out, has_edge], [half, whalf, chalf, d ** -0.5 + 2 * out["q_sem"], edge_tol],
                    default=heuristic)
    out["tol"] = tol
    two_sided = (out["region"] == "outlier").to_numpy() | window | cut
    out["agrees"] = np.where(two_sided, np.abs(out["q_sim"] - out["q_center"]) <= tol,
                             out["q_sim"] - out["q_theory"] <= tol)
    out["d"] = d
    return out


@functools.lru_cache(maxsize=4)
def _outlier_law(model, alphas: tuple, d: int, quantity: str, ks: tuple) -> dict:
    """``numerics.outlier_law`` at compare's sizes and gates; deterministic, so kept for the next call on
    the same grid (a resumed sweep compares the same table again; four laws at most: q_best's, proj's and
    the detection law's, each up to len(alphas) x m x LAW_DRAWS floats). Its arrays are read-only, since
    every caller shares them."""
    from numerics.outlier_fluctuation import outlier_law

    law = outlier_law(model, alphas, d, n_draws=LAW_DRAWS, quantity=quantity, n_samples=LAW_LATENTS,
                      directions=ks, eps_max=EPS_CLT, rho_max=EPS_PENCIL)
    for arr in law.values():
        arr.flags.writeable = False  # shared by every caller of the cache
    return law


def _outlier_bounds(prediction, out, d, quantity, level):
    """The outlier bounds (docs/theory.md §4.2-4.4) at the points where they are used: sigma_k, the
    centre and the half-width of the two-sided ``level`` interval of the seed mean, and the O(1/d)
    bias b_k. m = 1: the first-order CLT, centred on q_k + b_k. m > 1: the ``level`` interval of the
    mean of S draws from ``numerics.outlier_law`` (b_k, the CLT and the mixing of the outlier block),
    where also the pencil's slope is stable (rho <= EPS_PENCIL, no dropped draw). Both need
    eps = sigma_k / (sqrt(d) q_k) <= EPS_CLT. For the projection (``proj``, the overlap summed over the
    estimator's k_hat outlier eigenvectors) the law is the sum over the outliers (docs/theory.md §4.3 "The
    projection"), used where direction k's outlier is surely kept, w'_k > W_MAX; for m = 1 it is the CLT
    bound itself. Where other directions have an outlier near the estimator's cut (0 < w'_l <= W_MAX),
    kept at random, the interval runs from the lower quantile of the seed mean of the law less
    sum_l r_lk chi2_1 / d (r_lk: _outlier_shares; every such outlier missed) to the upper quantile of the
    law's (every one kept), and ``bracket`` marks those rows. NaN elsewhere."""
    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    bracket = np.zeros(len(out), dtype=bool)
    want = (out["region"] == "outlier").to_numpy(copy=True)
    near = {}
    if want.any() and prediction.settings.get("solver") == "matrix" and quantity == "proj":
        # coupled directions: the projection on every outlier branch, where the cut surely keeps them all (§4.3)
        sigma, center, half, bias = _branch_proj_bounds(prediction, out, d, level, want)
        return sigma, center, half, bias, bracket
    if quantity == "proj" and want.any():  # k_hat counts k's outlier only where it is far above the cut
        from numerics.critical_window import window_map

        alphas = np.unique(out.loc[want, "alpha"].to_numpy())
        wp = dict(zip(alphas.tolist(), window_map(prediction.model, alphas, d)[0]))
        # the other outliers near the cut: their random detection moves the weight they share with k in
        # and out of the projection (docs/theory.md §4.3, "The projection next to an outlier near the cut")
        near = {a: np.flatnonzero((w > 0) & (w <= W_MAX)) for a, w in wp.items()}
        want &= np.array([bool(w and wp[a][k - 1] > W_MAX) for a, k, w in zip(out["alpha"], out["k"], want)])
    if want.any() and prediction.settings.get("solver") == "matrix" and quantity in ("q_best", "q_rank"):
        # coupled directions: the per-direction law splits the outliers per direction, around a diagonal F(zeta)
        # that the cross moments make non-diagonal at d = infinity (on m = 2, He1 + He2/2 it covered 0.39 / 0.63
        # / 0.91 at levels 0.5 / 0.8 / 0.95); the branch CLT and its bias hold there (docs/theory.md §4.3)
        sigma, center, half, bias = _branch_bounds(prediction, out, d, level, want, quantity)
        return sigma, center, half, bias, bracket
    if not want.any() or prediction.settings.get("solver") == "matrix":  # coupled proj: not derived
        return sigma, center, half, bias, bracket
    z = float(norm.ppf((1 + level) / 2))
    if prediction.model.m == 1:  # one row per alpha
        rows = np.nonzero(want)[0]
        a, q = out["alpha"].to_numpy()[rows], out["q_theory"].to_numpy()[rows]
        # b only where the CLT is used; cached, so proj's detection law reuses it
        mom = [_moments(prediction.model, float(x), int(d)) for x in a]
        s, b = np.array([r["sigma"][0] for r in mom]), np.array([r["bias"][0] for r in mom])
        used = _clt_holds(s, q, d) & np.isfinite(b)  # NaN b: n/d has no outlier
        rows, q, s, b = rows[used], q[used], s[used], b[used]
        sigma[rows], bias[rows], center[rows] = s, b, q + b
        half[rows] = z * s / np.sqrt(out["n_seeds"].to_numpy()[rows] * d)
        return sigma, center, half, bias, bracket
    alphas = np.unique(out.loc[want, "alpha"].to_numpy())
    row = {a: i for i, a in enumerate(alphas)}
    ks = sorted(set(out.loc[want, "k"].astype(int)))
    law = _outlier_law(prediction.model, tuple(alphas.tolist()), int(d), quantity, tuple(ks))
    shares = _outlier_shares(prediction.model, tuple(a for a in alphas.tolist() if len(near.get(a, ()))), int(d))
    for i in np.nonzero(want)[0]:
        a = out["alpha"].iat[i]
        r, k, S = row[a], int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        pool = law["draws"][r, k]
        if not (law["dropped"][r, k] == 0 and np.isfinite(pool[0])):  # the law's gates (EPS_CLT, EPS_PENCIL)
            continue
        rng = np.random.default_rng([S, r, k])
        pick = rng.integers(0, pool.size, (LAW_DRAWS, S))
        lower = pool
        if len(near.get(a, ())):  # every outlier near the cut missed: the weight of w_k it held is lost
            r_lk = shares[float(a)][near[a], k]
            if not np.all(np.isfinite(r_lk)):
                continue
            lower = pool - rng.chisquare(1, (pool.size, r_lk.size)) @ r_lk / d
            bracket[i] = True
        lo, hi = _seed_mean_interval(lower, pool, pick, level)
        sigma[i], center[i], half[i] = law["sigma"][r, k], (lo + hi) / 2, (hi - lo) / 2
        bias[i] = law["bias"][r, k]
    return sigma, center, half, bias, bracket


@functools.lru_cache(maxsize=64)
def _branch_law(model, alpha: float, d: int) -> dict:
    """``numerics.branch_fluctuation`` at one alpha with LAW_LATENTS draws and the bias at d: q, sigma and bias of
    shape (branch, direction), the eigenvalues' locations zeta and O(1/d) mean shifts zeta_bias (branch,), their
    d Cov zeta_cov (branch, branch) and that of the eigenvalues minus the realised edge, gap_cov, the shares' d Cov
    share_cov and gap_share_cov (branch, branch, direction) and the bulk edge; deterministic, so kept for the next
    call. Read-only arrays."""
    from numerics.branch_fluctuation import branch_fluctuation

    r = branch_fluctuation(model, [alpha], n_samples=LAW_LATENTS, d=d)
    keys = ("q", "sigma", "bias", "zeta", "zeta_bias", "zeta_cov", "share_cov", "gap_cov", "gap_share_cov", "edge")
    law = {key: np.asarray(r[key][0]) for key in keys}
    for arr in law.values():
        arr.flags.writeable = False
    return law


def _branch_bounds(prediction, out, d, level, want, quantity="q_best"):
    """The outlier bound of q_best and q_rank for coupled directions (docs/theory.md §4.3, "The branch's O(1/d)
    bias" and "The overlap at a fixed rank"): at the rows ``want``, direction k's eigenvector is a branch b, and
    the seed mean of S seeds lies within z sigma_bk / sqrt(S d) of the label law's share q_bk plus the bias b_bk,
    where the branch CLT holds (sigma_bk / (sqrt(d) q_bk) <= EPS_CLT). For q_best, b is the branch that holds the
    largest share of w_k, and every other branch's share must lie more than 5 sd below (so the maximum over the
    top m eigenvectors is branch b's overlap). For q_rank, b is the k-th branch (the k-th largest outlier
    eigenvalue), and the chance that its eigenvalue swaps rank with another branch's or falls to the bulk edge
    in one of the S seeds, S sum_j Phi(-|zeta_b - zeta_j| sqrt(d) / s_bj) (s_bj^2 = d Var(zeta_b - zeta_j), first
    order; for the edge, zeta_j = psi(lbar) and s_bj = s_b, its O(d^(-2/3)) fluctuation neglected; the locations
    are predict's exact ones, each eigenvalue's with its O(1/d) shift, _branch_locations), must be at
    most RANK_SWAP (1 - level): a swapped seed moves the mean by at most 1/S, so the interval then claims its
    level less that. Returns sigma, the centre, the half-width and the bias; NaN elsewhere."""
    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    z = float(norm.ppf((1 + level) / 2))
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        ia = int(np.argmin(np.abs(prediction.alphas - a)))
        share = prediction.branch_shares[ia, :, k]  # NaN: no outlier
        if not np.any(np.isfinite(share)):
            continue
        b = int(np.nanargmax(share)) if quantity == "q_best" else k
        if not np.isfinite(share[b]):  # q_rank: fewer than k outliers, the k-th eigenvector is a bulk one
            continue
        law = _branch_law(prediction.model, a, int(d))
        s, bk = law["sigma"][:, k], law["bias"][b, k]
        others = np.isfinite(share) & (np.arange(share.size) != b)
        if quantity == "q_best":
            clear = np.all(share[others] + 5 * s[others] / np.sqrt(d) < share[b] - 5 * s[b] / np.sqrt(d))
        else:
            C, j = law["zeta_cov"], np.flatnonzero(others)
            zeta, edge = _branch_locations(prediction, a, law)
            gaps = np.append(np.abs(zeta[b] - zeta[j]), zeta[b] - edge)
            s_bj = np.sqrt(np.append(C[b, b] + C[j, j] - 2 * C[b, j], C[b, b]))
            clear = S * float(np.sum(norm.sf(gaps * np.sqrt(d) / s_bj))) <= RANK_SWAP * (1 - level)
        if not (np.isfinite(bk) and _clt_holds(s[b], share[b], d) and clear):
            continue
        sigma[i], bias[i], center[i] = s[b], bk, share[b] + bk
        half[i] = z * s[b] / np.sqrt(S * d)
    return sigma, center, half, bias


def _branch_proj_bounds(prediction, out, d, level, want):
    r"""The outlier bound of proj for coupled directions (docs/theory.md §4.3, "The projection on coupled
    branches"): at the rows ``want``, where the estimator's cut keeps every outlier branch in all S seeds, proj is
    the sum of w_k's shares in the branches' eigenvectors, which mixing among them does not change. Its seed mean
    lies within :math:`z\,s_k/\sqrt{S d}` of :math:`\sum_i (q_{ik} + b_{ik})`, :math:`s_k^2 = \sum_{ij}`
    ``share_cov``:math:`_{ijk}` (:func:`numerics.branch_fluctuation.branch_covariance`). Gates: every branch clear of
    the edge (its largest share has eps <= EPS_CLT), the sum's own eps <= EPS_CLT, and the chance that a branch's
    eigenvalue falls below the cut, edge + (TW_MEAN + CUT_SD TW_SD) s d^(-2/3) (locations: _branch_locations), in
    one of the S seeds, :math:`S\sum_i\Phi(-(\zeta_i^* - \mathrm{cut})\sqrt d/s_{\zeta,i})` (first order), at most
    RANK_SWAP (1 - level): a missed branch moves the mean by at most 1/S, so the interval then claims its level
    less that (elsewhere _branch_detection_bounds draws the detection). The estimator's lower cut at n/(d - k_hat)
    only helps; a bulk eigenvalue above the cut (the TW tail; 1 and 2 of 2400 simulated seeds at alpha = 30 and 50
    on the model of the docs) adds an O(1/d) share and is neglected. Returns sigma (s_k), the centre, the half-width
    and the summed bias; NaN elsewhere."""
    from numerics.branch_fluctuation import projection_law

    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    z = float(norm.ppf((1 + level) / 2))
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        share, branches, law, clear = _outlier_branches(prediction, a, d)
        if branches.size == 0 or not clear:
            continue
        zeta, edge = _branch_locations(prediction, a, law)
        cut = edge + _cut_margin(prediction.model, a, d)
        s_zeta = np.sqrt(np.diag(law["zeta_cov"])[branches])
        missed = S * float(np.sum(norm.sf((zeta[branches] - cut) * np.sqrt(d) / s_zeta)))
        if not missed <= RANK_SWAP * (1 - level):
            continue
        q, s, b = (float(x[k]) for x in projection_law(share, law["share_cov"], law["bias"], branches))
        if not (np.isfinite(b) and _clt_holds(s, q, d)):
            continue
        sigma[i], bias[i], center[i], half[i] = s, b, q + b, z * s / np.sqrt(S * d)
    return sigma, center, half, bias


def _branch_detection_bounds(prediction, out, d, level, want):
    r"""The law of proj for coupled directions where the estimator's cut may miss an outlier branch (docs/theory.md
    §4.3, "The projection with branches near the cut"), at the rows ``want``: sigma (s_k of the sum over every
    branch), the centre and half-width of the two-sided ``level`` interval of the seed mean, the summed bias, and
    ``bracket`` (all False); NaN elsewhere. Branch i's eigenvalue minus the edge of the realised labels, and w_k's
    share in its eigenvector, are drawn from their joint first-order Gaussian law, every branch together
    (_branch_draws). The estimator keeps branch i where its draw exceeds (TW_MEAN + CUT_SD TW_SD)
    s d^(-2/3), recounted at n/(d - k_hat) (_kept_outliers), and proj is the sum of the kept branches' shares. A
    bulk eigenvalue above the cut (the TW tail) is left out, as in _branch_proj_bounds. Gates: a square-root edge,
    every branch clear of the edge (its largest share has eps <= EPS_CLT)."""
    from numerics.branch_fluctuation import projection_law

    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    bracket = np.zeros(len(out), dtype=bool)
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        if not _square_root_edge(prediction.model, a):
            continue
        share, b, law, clear = _outlier_branches(prediction, a, d)
        margin = _cut_margin(prediction.model, a, d)
        if b.size == 0 or not (clear and np.isfinite(margin)):
            continue
        ia = int(np.argmin(np.abs(prediction.alphas - a)))
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 13])
        drawn = _branch_draws(prediction, a, k, d, share, b, law, rng)
        if drawn is None:
            continue
        gap, q_drawn = drawn
        kept = _kept_outliers({j: gap[:, j] - margin for j in range(b.size)}, 0, _cut_step(prediction, ia, a, d))
        P = sum(np.where(kept[j], q_drawn[:, j], 0.0) for j in range(b.size))
        lo, hi = _seed_mean_interval(P, P, rng.integers(0, LAW_DRAWS, (LAW_DRAWS, S)), level)
        _, s, total = (float(v[k]) for v in projection_law(share, law["share_cov"], law["bias"], b))
        sigma[i], bias[i], center[i], half[i] = s, total, (lo + hi) / 2, (hi - lo) / 2
    return sigma, center, half, bias, bracket


def _branch_draws(prediction, a: float, k: int, d: int, share, b, law, rng):
    r"""LAW_DRAWS joint draws of the outlier branches ``b``'s eigenvalues minus the edge of the realised labels and
    of w_k's shares in their eigenvectors (docs/theory.md §4.3, "The projection with branches near the cut"), each
    of shape (LAW_DRAWS, b.size); None where the law is not finite. The gaps and the shares are jointly Gaussian,
    every branch together (their first-order law): means :math:`\zeta_i^* + \text{zeta\_bias}_i - \psi(\bar\lambda)`
    (_branch_locations) and :math:`q_{ik} + b_{ik}` (the share and its O(1/d) bias), d Cov ``gap_cov``,
    ``gap_share_cov`` and ``share_cov`` (:func:`numerics.branch_fluctuation.branch_covariance`). The shares are
    drawn linear, not as squared Gaussian amplitudes: w_k's weight moves between branches nearly one for one
    (first-order correlation -0.95 at alpha = 8 on the second coupled model of the docs), and a square's second
    order, large for a small share, would add a spread that the rotation does not have (§4.3). ``share``, ``b``,
    ``law``: as _outlier_branches returns them."""
    zeta, edge = _branch_locations(prediction, a, law)
    cross = law["gap_share_cov"][np.ix_(b, b, [k])][..., 0]
    cov = np.block([[law["gap_cov"][np.ix_(b, b)], cross],
                    [cross.T, law["share_cov"][np.ix_(b, b, [k])][..., 0]]]) / d
    mean = np.concatenate([zeta[b] - edge, share[b, k] + law["bias"][b, k]])
    if not (np.all(np.isfinite(cov)) and np.all(np.isfinite(mean))):
        return None
    x = rng.multivariate_normal(mean, cov, size=LAW_DRAWS, method="eigh")
    return x[:, : b.size], x[:, b.size:]


def _branch_rank_bounds(prediction, out, d, level, want, quantity="q_rank"):
    r"""The law of q_rank (or q_best) for coupled directions where a rank swap or a branch at the bulk's top is likely
    (docs/theory.md §4.3, "The overlap at a fixed rank, drawn"), at the rows ``want``: sigma and bias of the k-th
    branch (q_best: of the branch with the largest share of w_k; NaN with fewer than k branches), the centre and
    half-width of the two-sided ``level`` interval of the seed mean; NaN elsewhere. The branches' gaps to the
    realised edge and w_k's shares are drawn together (_branch_draws); the bulk's top k (q_best: m) eigenvalues lie
    at :math:`-n_b\bar\lambda/n + s\,d^{-2/3}\,\mathrm{TW}_j` from that edge (the bulk of the d - n_b dimensions
    beside the n_b branches, its edge lower by :math:`\bar\lambda/n` per branch as in _kept_outliers; TW_j the GOE's
    top eigenvalues in Tracy-Widom units, _canonical with no spike). The k-th eigenvector is that of the k-th
    largest of them all: a branch's carries its drawn share, the j-th bulk one :math:`r_{jk}\chi^2_1/d`
    (_edge_table, §4.1); q_best is the largest share among the top m eigenvectors. Where a branch's eigenvalue falls
    among the bulk's top ones the first-order law does not say which eigenvector carries its share: the interval's
    ends take the two extremes, the ranking above (the share left in the bulk) and the branches ranked among
    themselves above the whole bulk (the share kept at the branch's rank), each draw's smaller value at the lower
    end and its larger at the upper (_seed_mean_interval). Gates: a square-root edge, every branch clear of the edge
    (_outlier_branches), and the share the row reports (the k-th branch's; q_best: the largest) within its own CLT,
    eps <= EPS_CLT, as for the branch interval."""
    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    model = prediction.model
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        if not _square_root_edge(model, a):
            continue
        share, b, law, clear = _outlier_branches(prediction, a, d)
        scale = _tw_scale(model, a) * d ** (-2 / 3)
        if b.size == 0 or not (clear and np.isfinite(scale)):
            continue
        own = _reported_branch(share, b, k, quantity)
        own = b[own] if own >= 0 else -1
        if own >= 0 and not _clt_holds(law["sigma"][own, k], share[own, k], d):  # the share it reports: its CLT
            continue
        ia = int(np.argmin(np.abs(prediction.alphas - a)))
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 17])
        drawn = _branch_draws(prediction, a, k, d, share, b, law, rng)
        J = k + 1 if quantity == "q_rank" else model.m  # the bulk eigenvectors that can reach rank k (top m)
        r = _edge_table(model, a, int(d), model.m)[:J, k]
        if drawn is None or not np.all(np.isfinite(r)):
            continue
        gap, q_drawn = drawn
        seed = int(d) * 10**4 + (9900 + k if quantity == "q_rank" else 9800)
        tw, _ = _canonical((-20.0,), seed, J, WINDOW_DRAWS)  # no spike: the GOE's top eigenvalues
        bulk = -b.size * _cut_step(prediction, ia, a, d) + scale * tw[rng.integers(0, len(tw), LAW_DRAWS)]
        values = np.concatenate([q_drawn, r * rng.chisquare(1, (LAW_DRAWS, J)) / d], axis=1)
        rows = np.arange(LAW_DRAWS)
        order = np.argsort(-np.concatenate([gap, bulk], axis=1), axis=1, kind="stable")
        if quantity == "q_rank":
            apart = np.argsort(-gap, axis=1, kind="stable")[:, k] if k < b.size else np.full(LAW_DRAWS, k)
            lower, upper = values[rows, order[:, k]], values[rows, apart]
        else:  # the branches and the top m - n_b bulk ones (the first m columns), or the top m of all ranked
            lower, upper = values[rows[:, None], order[:, : model.m]].max(axis=1), values[:, : model.m].max(axis=1)
        lo, hi = _seed_mean_interval(np.minimum(lower, upper), np.maximum(lower, upper),
                                     rng.integers(0, LAW_DRAWS, (LAW_DRAWS, S)), level)
        center[i], half[i] = (lo + hi) / 2, (hi - lo) / 2
        if own >= 0:
            sigma[i], bias[i] = law["sigma"][own, k], law["bias"][own, k]
    return sigma, center, half, bias


def _reported_branch(share, top, k: int, quantity: str) -> int:
    """Which of the outlier branches ``top`` (in rank order) the row of direction k reports: q_rank the k-th
    (rank k, 0-based), q_best the one with the largest share of w_k (``share``: branch x direction); the position in
    ``top``, or -1 where q_rank's rank lies below every branch (or there is no branch).

    >>> share = np.array([[0.5, 0.1], [0.2, 0.3]])
    >>> _reported_branch(share, np.array([0, 1]), 1, "q_best"), _reported_branch(share, np.array([0, 1]), 2, "q_rank")
    (1, -1)
    """
    if quantity == "q_rank":
        return k if k < len(top) else -1
    return int(np.argmax(share[top, k])) if len(top) else -1


def _outlier_branches(prediction, a: float, d: int):
    """At alpha ``a``: the label law's shares (branch, direction) of every eigen-branch (NaN rows: no outlier), the
    indices of the outlier branches, the branch law at d (_branch_law), and whether its first-order law holds for
    them all: the law's latent draws find the same outlier branches (near a threshold they may not), and each is
    clear of the edge (branch_clear)."""
    ia = int(np.argmin(np.abs(prediction.alphas - a)))
    share = prediction.branch_shares[ia]  # (branch, direction)
    branches = np.flatnonzero(np.isfinite(share[:, 0]))
    law = _branch_law(prediction.model, a, int(d))
    clear = np.array_equal(branches, np.flatnonzero(np.isfinite(law["zeta"]))) and all(
        branch_clear(law["sigma"][b], share[b], d) for b in branches)
    return share, branches, law, clear


def branch_clear(sigma, share, d: int) -> bool:
    """Whether an eigen-branch's outlier is clear of the bulk edge at d, so that its first-order law holds: the
    CLT gate of its largest share (docs/theory.md §4.3), sigma / (sqrt(d) q) <= EPS_CLT for the direction with the
    largest q. ``sigma`` and ``share``: the branch's sd and shares per direction.

    >>> branch_clear(np.array([1.0, 9.0]), np.array([0.5, 0.1]), 100), branch_clear([6.0, 1.0], [0.5, 0.1], 100)
    (True, False)
    """
    own = int(np.argmax(share))
    return bool(_clt_holds(np.asarray(sigma)[own], np.asarray(share)[own], d))


def _cut_margin(model, alpha: float, d: int) -> float:
    """The estimator's cut above the bulk edge at ratio n/d, (TW_MEAN + CUT_SD TW_SD) s d^(-2/3)
    (``validation.simulate``; docs/theory.md §4.2, "The outlier eigenvalue and its detection"); NaN without a
    square-root edge."""
    from numerics.edge_overlap import TW_MEAN, TW_SD
    from validation.simulate import CUT_SD

    return (TW_MEAN + CUT_SD * TW_SD) * _tw_scale(model, alpha) * d ** (-2 / 3)


def _cut_gaps(prediction, p: int, a: float, d: int) -> np.ndarray:
    """Each direction's d = infinity outlier eigenvalue minus the estimator's cut at ratio n/d (bulk edge plus
    _cut_margin), (m,), at the prediction's point p (ratio a); NaN where there is no outlier (docs/theory.md §4.2,
    "The outlier eigenvalue and its detection")."""
    return prediction.eigenvalues[p] - prediction.bulk_edge[p] - _cut_margin(prediction.model, a, d)


def _cut_step(prediction, p: int, a: float, d: int) -> float:
    """How far the estimator's cut moves down per declared outlier: it sits at ratio n/(d - k_hat), and the edge
    falls by lambda_bar / n per unit of k_hat (n = round(a d); docs/theory.md §4.2, "The mean of the gap")."""
    return float(prediction.lambda_bar[p] / round(a * d))


def _branch_locations(prediction, a: float, law: dict):
    """The branches' outlier eigenvalues at d to O(1/d), (branch,), and the bulk edge: the prediction's exact
    d = infinity locations plus the law's mean shift zeta_bias (docs/theory.md §4.3, "The branch eigenvalue's O(1/d)
    mean"). The law's own zeta and edge come from LAW_LATENTS draws, whose Monte Carlo error (about 2/d at d = 400
    on the model of the docs) is as large as the shift; zeta_bias is a difference on those draws."""
    ia = int(np.argmin(np.abs(prediction.alphas - a)))
    return prediction.eigenvalues[ia] + law["zeta_bias"], float(prediction.bulk_edge[ia])


@functools.lru_cache(maxsize=64)
def _tw_scale(model, alpha: float) -> float:
    """``numerics.edge_overlap.edge_tw_scale`` at one alpha (NaN without a square-root edge); kept for the next
    call."""
    from numerics.edge_overlap import edge_tw_scale

    return float(edge_tw_scale(model, [alpha])[0])


@functools.lru_cache(maxsize=64)
def _square_root_edge(model, alpha: float) -> bool:
    """``numerics.edge_overlap.edge_regime`` at one alpha (its label law's sup T is a symbolic limit, 0.2 s); kept
    for the next call."""
    from numerics.edge_overlap import edge_regime

    return bool(edge_regime(model, [alpha])[0])


def _coupled_edge_bounds(prediction, out, d, level, want):
    r"""The bulk and window bound of q_best for coupled directions where eigen-branches have outliers (docs/theory.md
    §4.1, "Next to an outlier branch"): the top m eigenvectors are the n_out branches' outlier
    eigenvectors and the top m - n_out bulk ones. The share of w_k in branch i's is the square of its amplitude
    :math:`A = c_k/\sqrt{N}`, whose first-order law is :math:`\sqrt{q_{ik}} + \sigma_A Z/\sqrt d`,
    :math:`\sigma_A = \sigma_{ik}/(2\sqrt{q_{ik}})` (the share's first order is :math:`2\sqrt{q_{ik}}\,\delta A`), plus
    the rest of the O(1/d) bias, :math:`b_{ik} - \sigma_A^2/d`; a bulk one's is :math:`r_j\chi^2_1/d` (the m x m
    resolvent's share, :func:`numerics.edge_overlap.edge_overlap`). The bound is the ``level`` quantile of the seed
    mean of S maxima, from LAW_DRAWS draws. It needs a square-root edge, every branch's own CLT (its largest share has
    eps <= EPS_CLT, so the branch is clear of the edge and its amplitude linear in the block), and q_ik > 0. Returns
    the bound c (the tolerance is c - q_theory); NaN elsewhere."""
    c = np.full(len(out), np.nan)
    m = prediction.model.m
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        if not _square_root_edge(prediction.model, a):
            continue
        ia = int(np.argmin(np.abs(prediction.alphas - a)))  # seeds the draws, as before
        share, branches, law, clear = _outlier_branches(prediction, a, d)
        q, sig, bias = share[branches, k], law["sigma"][branches, k], law["bias"][branches, k]
        if not (clear and np.all(q > 0) and np.all(np.isfinite(sig)) and np.all(np.isfinite(bias))):
            continue
        r = _edge_table(prediction.model, a, int(d), m)[: m - branches.size, k]
        rng = np.random.default_rng([S, ia, k, int(d)])
        amp = sig / (2 * np.sqrt(q))
        total = np.zeros(LAW_DRAWS)
        block = max(1, 2_000_000 // (LAW_DRAWS * m))  # seeds per block: at most 2e6 draws held at once
        for n in np.diff(np.r_[0:S:block, S]):
            draws = (np.sqrt(q) + amp * rng.standard_normal((LAW_DRAWS, n, q.size)) / np.sqrt(d)) ** 2 + bias
            draws -= amp**2 / d
            if r.size:
                draws = np.concatenate([draws, r * rng.chisquare(1, (LAW_DRAWS, n, r.size)) / d], axis=2)
            total += draws.max(axis=2).sum(axis=1)
        c[i] = float(np.quantile(total / S, level))
    return c


@functools.lru_cache(maxsize=64)
def _moments(model, alpha: float, d: int) -> dict:
    """``numerics.outlier_bias.outlier_moments`` at one alpha and its EPS_CLT gate, with the latent draws of
    the outlier bounds (m = 1: outlier_moments' default, as the CLT bound; m > 1: LAW_LATENTS, as the law);
    deterministic, so kept for the next call (at most 64 alphas, each 4 x m floats). Read-only arrays,
    shared by every caller."""
    from numerics.outlier_bias import outlier_moments

    kw = {} if model.m == 1 else {"n_samples": LAW_LATENTS}
    r = {key: v[0] for key, v in outlier_moments(model, [alpha], d, eps_max=EPS_CLT, **kw).items()}
    for arr in r.values():
        arr.flags.writeable = False
    return r


def _detection_bounds(prediction, out, d, level, want):
    """The law of proj where direction k's outlier is near the estimator's cut, 0 < w'_k <= W_MAX, but clear
    of the edge, sigma_k / (sqrt(d) q_k) <= EPS_CLT (docs/theory.md §4.2, "The outlier eigenvalue and its
    detection"), at the rows ``want``: sigma_k, the centre and half-width of the two-sided ``level``
    interval of the seed mean, and b_k; NaN elsewhere.
    The estimator keeps an outlier where its eigenvalue is above the cut, edge + (TW_MEAN + CUT_SD TW_SD)
    s d^(-2/3): the eigenvalue minus the edge of the realised labels is Gaussian about zeta_j* + eig_shift_j
    - edge with sd gap_sd / sqrt(d) (``numerics.outlier_bias.outlier_moments``; eig_shift is the
    eigenvalue's O(1/d) mean, its own root shift and the level repulsion), so D_j = 1[kept] is drawn for k
    and for every other direction j with an outlier near the cut (0 < w'_j <= W_MAX; jointly with k's, given
    k's draw, from their first-order law, _joint_detection); those far above it (w'_j > W_MAX) are always
    kept. The estimator's edge is at ratio n/(d - k_hat), lower
    by lbar/n per declared outlier: the kept set is recounted as it does (_kept_outliers; docs/theory.md
    §4.2, "The mean of the gap"). With P_k the projection on all the d = infinity
    outliers (m = 1: q_k + b_k + sigma_k G / sqrt(d); m > 1: a draw of the proj law of
    ``numerics.outlier_fluctuation.outlier_law``, which takes the mixing loss to the directions without an
    outlier) and S_j = r_jk chi2_1 / d the share of w_k in j's outlier (_outlier_shares), moved to the drawn
    eigenvalues (_joint_detection; docs/theory.md §4.2, "Detection and mixing drawn together"),

        proj = D_k P_k + (1 - D_k) sum_j S_j - sum_j (1 - D_j) S_j.

    D_k is correlated with P_k (gap_corr), through the standardised draw of P_k. Another direction near the
    cut that is not clear of the edge has no detection law: its D_j is 1 at the upper end of the interval
    and 0 at the lower one (the (1 - level)/2 quantile of the seed mean with every such S_j lost), and
    ``bracket`` marks those rows (docs/theory.md §4.3, "The projection next to an outlier near the cut").
    A point where the m > 1 law is not available (its gates), or such a direction's share is not, is left
    out. Returns sigma, the
    centre, the half-width, b_k and ``bracket``."""
    from numerics.critical_window import window_map

    sigma, center, half, bias = (np.full(len(out), np.nan) for _ in range(4))
    bracket = np.zeros(len(out), dtype=bool)
    rows = np.nonzero(want)[0]
    if rows.size and prediction.settings.get("solver") == "matrix":  # coupled: the branches' detection law
        return _branch_detection_bounds(prediction, out, d, level, want)
    if rows.size == 0:
        return sigma, center, half, bias, bracket
    model, m = prediction.model, prediction.model.m
    alphas = np.unique(out["alpha"].to_numpy()[rows])
    wp = window_map(model, alphas, d)[0]
    row = {a: i for i, a in enumerate(alphas.tolist())}
    used = []
    for i in rows:  # k near the cut and clear of the edge, and so is every other direction near the cut
        a, k = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1
        r, p = row[a], int(np.argmin(np.abs(prediction.alphas - a)))
        if not (np.all(np.isfinite(wp[r])) and 0 < wp[r, k] <= W_MAX):
            continue
        mom = _moments(model, a, int(d))
        clear = _clt_holds(mom["sigma"], prediction.q[p], d)
        # the other directions near the cut whose detection law does not hold: bracketed
        unclear = np.flatnonzero(prediction.is_outlier[p] & (wp[r] <= W_MAX) & ~clear)
        if clear[k] and np.isfinite(mom["bias"][k]):
            used.append((i, a, k, r, p, mom, set(unclear.tolist())))
    if not used:
        return sigma, center, half, bias, bracket
    if m > 1:
        law = _outlier_law(model, tuple(sorted({a for _, a, *_ in used})), int(d), "proj",
                           tuple(sorted({k + 1 for _, _, k, *_ in used})))
        arow = {a: j for j, a in enumerate(sorted({a for _, a, *_ in used}))}
    shares = _outlier_shares(model, sorted({a for _, a, *_ in used}), d)  # one solve per alpha
    for i, a, k, r, p, mom, unclear in used:
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 11])
        if m == 1:
            g = rng.standard_normal(LAW_DRAWS)
            P = prediction.q[p, k] + mom["bias"][k] + mom["sigma"][k] / np.sqrt(d) * g
        else:
            draws = law["draws"][arow[a], k]
            if not (law["dropped"][arow[a], k] == 0 and np.isfinite(draws[0])):
                continue
            P = draws[rng.integers(0, draws.size, LAW_DRAWS)]
            g = (P - P.mean()) / P.std()
        share = shares[a][:, k]
        if not np.all(np.isfinite(share[sorted(unclear)])):
            continue
        # each drawn eigenvalue minus the cut at n/d: the d = infinity gap, the eigenvalue's O(1/d) mean shift
        # (eig_shift) and the first-order fluctuation, sd gap_sd / sqrt(d); k's correlated with P_k
        outl = np.flatnonzero(prediction.is_outlier[p])
        drawn = [j for j in outl if wp[r, j] <= W_MAX and j not in unclear]  # k among them
        far = int(np.sum(wp[r, outl] > W_MAX))
        if not all(np.isfinite(mom["eig_shift"][j]) for j in drawn):
            continue
        gap = _cut_gaps(prediction, p, a, d)
        sd, rho = mom["gap_sd"] / np.sqrt(d), mom["gap_corr"][k]
        dev_k = sd[k] * (rho * g + np.sqrt(1 - rho**2) * rng.standard_normal(LAW_DRAWS))  # about its mean
        S_draws = {j: share[j] * rng.chisquare(1, LAW_DRAWS) / d for j in outl if j != k and np.isfinite(share[j])}
        x, S_draws = _joint_detection(model, a, k, d, dev_k, S_draws, rng,
                                      {j: (gap[j] + mom["eig_shift"][j], sd[j]) for j in drawn},
                                      {j: mom["eig_shift"][j] for j in outl}, float(prediction.q[p, k]))
        step = _cut_step(prediction, p, a, d)

        def pool_of(extra):  # proj with the unclear neighbours kept (extra = their number) or all missed (0)
            kept = _kept_outliers(x, far + extra, step)
            kept.update({j: extra > 0 for j in unclear})
            kept.update({j: True for j in outl if wp[r, j] > W_MAX})
            total = np.where(kept[k], P, 0.0)
            for j, S_j in S_draws.items():
                total = total + np.where(kept[k], 0.0, S_j) - np.where(kept[j], 0.0, S_j)
            return total

        S = int(out["n_seeds"].iat[i])
        upper = pool_of(len(unclear))
        pick = rng.integers(0, upper.size, (LAW_DRAWS, S))
        lo, hi = _seed_mean_interval(pool_of(0) if unclear else upper, upper, pick, level)  # lower: unclear missed
        bracket[i] = bool(unclear)
        sigma[i], center[i], half[i], bias[i] = mom["sigma"][k], (lo + hi) / 2, (hi - lo) / 2, mom["bias"][k]
    return sigma, center, half, bias, bracket


@functools.lru_cache(maxsize=64)
def _detection_cov(model, alpha: float, k: int) -> dict | None:
    """``numerics.outlier_fluctuation.detection_covariance`` at compare's latent draws; deterministic, so kept
    for the next call (at most 64 points, each (2m) x (2m) floats). Read-only arrays, shared by every caller."""
    from numerics.outlier_fluctuation import detection_covariance

    r = detection_covariance(model, alpha, k + 1, n_samples=LAW_LATENTS)
    for arr in (r or {}).values():
        arr.flags.writeable = False
    return r


def _joint_detection(model, alpha, k, d, dev_k, S_draws, rng, centre, eig_shift, q_k):
    r"""The detection law's eigenvalues and shares drawn together (docs/theory.md §4.2, "Detection and mixing
    drawn together"): given the draws ``dev_k`` of direction k's eigenvalue minus the realised edge about its
    mean, the moves of the other eigenvalues, of the edge and of k's diagonal entry at each other root,
    :math:`\delta f_k(\zeta_j^*)`, are drawn from their joint Gaussian law conditional on it
    (:func:`_detection_cov`). Returns ``x``, each drawn direction's eigenvalue minus the cut at n/d
    (``centre`` holds their means and first-order sd, k's included), and the shares ``S_draws`` of w_k in
    the other outliers (first order, :math:`r_{jk}\chi^2_1/d`), each moved to the drawn eigenvalues: the share is
    :math:`q_j F_{jk}^2/f_k(\zeta_j)^2` with :math:`f_k(\zeta_j) = \bar f_k(\zeta_j^*) + \bar f_k'(\zeta_j^*)
    (\zeta_j - \zeta_j^*) + \delta f_k(\zeta_j^*)`, capped at ``q_k``; ``eig_shift``: the O(1/d) means of
    :math:`\zeta_j - \zeta_j^*`. Only where j's share is the first-order one (its CLT holds); the others, and
    a direction whose outlier the latent draws do not find, keep their independent draws (as do the
    eigenvalues of such directions).

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=2, gamma="0.3", link="He2", preprocessing="clip(y, -1, 3)")
    >>> rng = np.random.default_rng(0)
    >>> S = {0: np.full(4000, 0.08)}          # direction 1 holds 0.08 of w_2 at d = infinity
    >>> dev = np.linspace(-0.15, 0.15, 4000)   # direction 2's eigenvalue from low to high
    >>> centre = {0: (0.2, 0.08), 1: (0.03, 0.07)}     # mean and sd of each eigenvalue minus the cut
    >>> x, S2 = _joint_detection(model, 4.0, 1, 400, dev, S, rng, centre, {0: 0.0, 1: 0.0}, 0.4)
    >>> low, high = S2[0][:2000].mean(), S2[0][2000:].mean()    # further from direction 1: a smaller share
    >>> bool(low < 0.08 < high)
    True
    """
    move, edge, f_k = {}, None, {}
    cov = _detection_cov(model, float(alpha), int(k))
    if cov is not None:  # else the latent draws find no outlier for k: every other one is drawn on its own
        dirs = cov["directions"].tolist()
        J, C = len(dirs), np.asarray(cov["cov"]) / d
        # direction k's eigenvalue minus the edge is a . V: condition the joint draw on it
        a = np.zeros(2 * J)
        a[dirs.index(k)], a[J] = 1.0, -1.0
        V = rng.multivariate_normal(np.zeros(2 * J), C, dev_k.size)
        Ca = C @ a
        V += np.outer(dev_k - V @ a, Ca / (a @ Ca))
        move, edge = {j: V[:, i] for i, j in enumerate(dirs)}, V[:, J]
        f_k = {j: V[:, J + 1 + i] for i, j in enumerate(j for j in dirs if j != k)}
    x = {j: c + (dev_k if j == k else move[j] - edge if j in move else sd * rng.standard_normal(dev_k.size))
         for j, (c, sd) in centre.items()}
    if not f_k:
        return x, S_draws
    mix = _mixing_shares(model, float(alpha))
    clear = _clt_holds(mix["sigma"], mix["q"], d)  # j's share is the first-order one
    for j in list(S_draws):
        F, slope = mix["f"][j, k], mix["fp"][j, k]
        if j in f_k and clear[j] and np.isfinite(F * slope * eig_shift[j]):
            near = F + slope * (eig_shift[j] + move[j]) + f_k[j]  # f_k at j's drawn eigenvalue
            with np.errstate(divide="ignore"):
                S_draws[j] = np.minimum(S_draws[j] * (F / near) ** 2, q_k)
    return x, S_draws


def _kept_outliers(x: dict, fixed: int, step: float) -> dict:
    r"""Which drawn outliers the estimator keeps: direction j's eigenvalue minus the cut at ratio n/d is
    ``x[j]`` (arrays of draws); with :math:`\hat k` outliers declared the estimator takes the edge at
    n/(d - :math:`\hat k`), which lowers the cut by ``step`` :math:`=\bar\lambda/n` per outlier (the envelope
    theorem, :math:`\partial\psi_\alpha(\bar\lambda)/\partial(1/\alpha) = \bar\lambda`; docs/theory.md §4.2,
    "The mean of the gap"). As ``validation.simulate.simulate_task`` does, :math:`\hat k` starts at 0 and
    is recounted until it stops changing; ``fixed`` outliers are always counted.

    >>> kept = _kept_outliers({0: np.array([0.5, -0.5]), 1: np.array([-0.01, -0.01])}, 0, 0.02)
    >>> kept[0].tolist(), kept[1].tolist()     # the first draw's kept outlier lowers the cut for the other
    ([True, False], [True, False])
    """
    k_hat = np.zeros(next(iter(x.values())).shape, dtype=int)
    for _ in range(len(x) + 1):
        new = fixed + sum((v + step * k_hat > 0).astype(int) for v in x.values())
        if np.array_equal(new, k_hat):
            break
        k_hat = new
    return {j: v + step * k_hat > 0 for j, v in x.items()}


def _seed_mean_interval(lower, upper, pick, level) -> tuple[float, float]:
    """The two-sided ``level`` interval of a seed mean between two per-seed laws: the (1 - level)/2 quantile
    of the mean of ``lower`` and the (1 + level)/2 quantile of the mean of ``upper``, over the same resampled
    seeds ``pick`` (LAW_DRAWS x S indices). With lower = upper it is the law's central interval; where
    lower <= upper on every draw it holds the mean with probability at least ``level`` (the brackets of
    docs/theory.md §4.3)."""
    return (float(np.quantile(lower[pick].mean(axis=1), (1 - level) / 2)),
            float(np.quantile(upper[pick].mean(axis=1), (1 + level) / 2)))


def _cut_bracket_bounds(prediction, out, d, level, want):
    """The bracket for proj where direction k's own outlier is near the estimator's cut,
    0 < w'_k <= W_MAX, but no detection law holds (k's CLT fails, eps_k > EPS_CLT, or its proj law is gated
    out, rho_k > EPS_PENCIL; docs/theory.md §4.3, "The projection with its own outlier near the cut"), at
    the rows ``want``: the centre and half-width of an interval that holds the seed mean with
    probability at least ``level``; NaN elsewhere.
    The outliers far above the window (w'_j > W_MAX) are always kept and carry w_k's share r_jk chi2_1 / d
    (_outlier_shares). Of the top eigenvectors near the edge the estimator keeps some, at random: at
    the lower end none, at the upper end all J = (spikes in the window) + 1 of them (one bulk eigenvalue
    above the cut, as in _projection_bounds), each with its overlap from the canonical spiked GOE of
    the window (§4.5; the overlap scale of _window_scales times the canonical overlap with e_k, as in
    _window_bounds). The
    interval runs from the (1 - level)/2 quantile of the seed mean at the lower end to the (1 + level)/2
    quantile at the upper end. It needs a square-root edge, all w' finite, at most WINDOW_SPIKES
    directions in the window and J <= WINDOW_DEPTH."""

    center, half = np.full(len(out), np.nan), np.full(len(out), np.nan)
    rows = np.nonzero(want)[0]
    if rows.size == 0 or prediction.settings.get("solver") == "matrix":
        return center, half
    model, m = prediction.model, prediction.model.m
    alphas = np.unique(out["alpha"].to_numpy())  # the indexing of _window_bounds, so the canonical draws are shared
    wp, wc, scale = _window_scales(prediction, alphas, d)
    row = {a: i for i, a in enumerate(alphas.tolist())}
    shares = {}
    for i in rows:
        a, k = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1
        r = row[a]
        if not (np.all(np.isfinite(wp[r])) and 0 < wp[r, k] <= W_MAX):
            continue
        spikes = [j for j in range(m) if j == k or -W_GATE < wp[r, j] <= W_MAX]
        J = len(spikes) + 1
        if len(spikes) > WINDOW_SPIKES or J > WINDOW_DEPTH:
            continue
        if a not in shares:
            shares.update(_outlier_shares(model, [a], int(d)))
        col = shares[a][:, k]
        far = [j for j in range(m) if wp[r, j] > W_MAX and np.isfinite(col[j])]
        canonical = _canonical(tuple(wc[r, spikes].tolist()), int(d) * 10**4 + 100 * r + spikes[0], J, WINDOW_DRAWS)[1]
        near = scale[r, k] * canonical[:, :, spikes.index(k)].sum(axis=1)
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 13])
        lower = rng.chisquare(1, (LAW_DRAWS, len(far))) @ col[far] / d  # only the far outliers kept
        upper = lower + near[rng.integers(0, near.size, LAW_DRAWS)]  # and every near-edge eigenvector
        pick = rng.integers(0, LAW_DRAWS, (LAW_DRAWS, int(out["n_seeds"].iat[i])))
        lo, hi = _seed_mean_interval(lower, upper, pick, level)
        center[i], half[i] = (lo + hi) / 2, (hi - lo) / 2
    return center, half


@functools.lru_cache(maxsize=32)
def _canonical(wprimes: tuple, seed: int, J: int, n_draws: int, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The canonical window draws (numerics.critical_window.spiked_goe_overlaps): the top J eigenvalues
    in Tracy-Widom units, shape (n_draws, J), and the overlaps, shape (n_draws, J, spikes) (``signed``: the
    amplitudes); deterministic, so kept for the points of one window and for the next call on the same grid (a
    resumed sweep compares the same table again). Read-only, since every caller shares them."""
    from numerics.critical_window import spiked_goe_overlaps

    x, out = spiked_goe_overlaps(list(wprimes), n_draws, seed=seed, J=J, eigenvalues=True, signed=signed)
    x.flags.writeable = out.flags.writeable = False
    return x, out


@functools.lru_cache(maxsize=64)
def _mixing_shares(model, alpha: float) -> dict:
    """``numerics.outlier_fluctuation.mixing_share`` at one alpha and compare's latent draws; deterministic,
    so kept for the bulk and window bounds alike and for the next call (at most 64 alphas, each 3 m x m
    floats). Read-only arrays, shared by every caller."""
    from numerics.outlier_fluctuation import mixing_share

    r = {key: v[0] for key, v in mixing_share(model, [alpha], n_samples=LAW_LATENTS).items()}
    for arr in r.values():
        arr.flags.writeable = False
    return r


@functools.lru_cache(maxsize=256)
def _edge_table(model, alpha: float, d: int, depth: int) -> np.ndarray:
    """``numerics.edge_overlap.edge_overlap`` at one alpha for the eigenvalues j = 1..depth, shape (depth, m):
    the share R_k of w_k in the j-th edge eigenvector (docs/theory.md §4.1); deterministic, so kept for the
    edge bound and proj's law below the threshold alike, and for the next call (at most 256 entries, each
    depth x m floats). Read-only, shared by every caller."""
    from numerics.edge_overlap import edge_overlap

    table = edge_overlap(model, [alpha], d=d, j=range(1, depth + 1))[:, 0]
    table.flags.writeable = False
    return table


def _clt_holds(sigma, q, d: int) -> np.ndarray:
    """The gate of the outlier CLT (docs/theory.md §4.2): an outlier is clear of the edge where its relative
    fluctuation sigma / (sqrt(d) q) <= EPS_CLT. There its overlap's first-order law, its detection law and
    its first-order share of the other directions (``mixing_share``) hold. False where sigma or q is NaN (no
    outlier).

    >>> _clt_holds(np.array([1.0, 3.0, np.nan]), np.array([0.5, 0.5, np.nan]), 100).tolist()
    [True, False, False]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(sigma) / (np.sqrt(d) * np.asarray(q)) <= EPS_CLT


@functools.lru_cache(maxsize=64)
def _edge_shares(model, alpha: float) -> np.ndarray:
    """``numerics.edge_overlap.outlier_share`` at one alpha: deterministic, so kept (read-only) for the next
    compare on the same model (a coverage study calls compare once per group of seeds)."""
    from numerics.edge_overlap import outlier_share

    r = outlier_share(model, alpha)
    r.flags.writeable = False
    return r


def _outlier_shares(model, alphas, d: int) -> dict:
    """Per alpha, the m x m shares r_jl = E[d <w_l, u_j>^2] of direction l in the outlier eigenvector of
    direction j (docs/theory.md §4.1, "Outlier eigenvectors of other directions"): the first-order
    pencil (numerics.outlier_fluctuation.mixing_share) where j's outlier is clear of the edge, i.e. its
    first-order CLT holds (sigma_j / (sqrt(d) q_j) <= EPS_CLT); elsewhere the edge continuation
    R_l(lambda_j*) (numerics.edge_overlap.outlier_share), which meets the edge value as the outlier
    reaches the edge. NaN where j has no outlier, and on the diagonal."""
    out = {}
    for a in (float(a) for a in alphas):
        r, mix = _edge_shares(model, a).copy(), _mixing_shares(model, a)
        clear = _clt_holds(mix["sigma"], mix["q"], d)  # j's share is the first-order one
        r[clear] = mix["share"][clear]
        out[a] = r
    return out


def _window_bounds(prediction, out, d, quantity, level, want):
    """The critical-window law (docs/theory.md §4.5) at the rows ``want``: the canonical variable w' of
    direction k, and the centre and half-width of the two-sided ``level`` interval of the seed mean of
    q_best or q_rank.
    The directions in the window together with k (-W_GATE < w'_j <= W_MAX) are spikes of one canonical
    spiked GOE, those with an outlier at d = infinity placed where it lies (_window_scales); q_best is the largest of
    the overlap scale (kappa_k d^(-1/3), matched to the d = infinity overlap above k's threshold) times the canonical
    overlaps with e_k of the top
    J = m - (outliers of the other directions above W_MAX) eigenvectors and of those outliers' shares r chi2_1 / d
    (_outlier_shares); q_rank is the canonical eigenvector at direction k's rank.
    Used where the edge is square-root, |w'_k| <= W_MAX, the window holds at most WINDOW_SPIKES directions
    and J <= WINDOW_DEPTH; NaN elsewhere. The points of one window share its canonical draws. For proj only
    w' is returned (the canonical law misplaces the outlier against the estimator's cut, docs/theory.md §4.2)."""
    wprime, center, half = (np.full(len(out), np.nan) for _ in range(3))
    alphas = np.unique(out["alpha"].to_numpy())
    if prediction.settings.get("solver") == "matrix":
        return wprime, center, half
    wp, wc, scale = _window_scales(prediction, alphas, d)
    row = {a: i for i, a in enumerate(alphas)}
    m = prediction.model.m
    shares_at = {}
    for i in range(len(out)):
        r, k = row[out["alpha"].iat[i]], int(out["k"].iat[i]) - 1
        wprime[i] = wp[r, k]
        if not (quantity != "proj" and want[i] and np.all(np.isfinite(wp[r])) and abs(wp[r, k]) <= W_MAX):
            continue
        # in the window together: the directions near the edge, and the outliers just above it (docs/theory.md §4.5)
        spikes = [j for j in range(m) if j == k or -W_GATE < wp[r, j] <= W_MAX]
        n_above = int(np.sum(wp[r] > W_MAX))  # other directions' outliers above the window (|w'_k| <= W_MAX)
        if quantity == "q_rank":
            J = k + 1 - n_above  # direction k's rank among the edge eigenvectors
            if not 1 <= J <= m - n_above:
                continue
        else:
            J = m - n_above
        if len(spikes) > WINDOW_SPIKES or J > WINDOW_DEPTH:
            continue
        # seeded by the window's first direction (one spike: by k)
        canonical = _canonical(tuple(wc[r, spikes].tolist()), int(d) * 10**4 + 100 * r + spikes[0], J, WINDOW_DRAWS)[1]
        pool = scale[r, k] * canonical[:, :, spikes.index(k)]
        seed = [int(d), r, k]
        if quantity == "q_rank":
            pool = pool[:, J - 1]
        else:
            pool = pool.max(axis=1)
            if not shares_at:  # one solve per alpha, shared by the points
                shares_at.update(_outlier_shares(prediction.model, alphas, d))
            shares = np.delete(shares_at[float(alphas[r])][:, k], spikes)  # the outliers outside the window
            shares = shares[np.isfinite(shares)]
            if shares.size:
                rng = np.random.default_rng(seed)
                pool = np.maximum(pool, (shares[None, :] * rng.chisquare(1, (pool.size, shares.size))).max(axis=1) / d)
        S = int(out["n_seeds"].iat[i])
        means = pool[np.random.default_rng(seed + [S]).integers(0, pool.size, (LAW_DRAWS, S))].mean(axis=1)
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        center[i], half[i] = (lo + hi) / 2, (hi - lo) / 2
    return wprime, center, half


def _window_scales(prediction, alphas, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window law's w', canonical spikes and overlap scale of each direction at ``alphas``, (len(alphas), m)
    each: w' from ``numerics.critical_window.window_map`` (it decides which directions are in the window), and the
    spikes w'' to draw with and the scale, both placed at the model's d = infinity outlier above the threshold
    (``matched_spikes``; docs/theory.md §4.5, "The outliers placed where the model puts them")."""
    from numerics.critical_window import matched_spikes, window_map

    wp = window_map(prediction.model, alphas, d)[0]
    return (wp,) + matched_spikes(prediction, alphas, d)


@functools.lru_cache(maxsize=64)
def _branch_window(model, alpha: float, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``numerics.critical_window.branch_window_map`` at one alpha: the branches' w' (ascending) and the map A from
    the canonical amplitudes to the overlaps; deterministic, so kept for the points of one alpha and the next call.
    Read-only arrays."""
    from numerics.critical_window import branch_window_map

    wp, A = branch_window_map(model, alpha, d)
    wp.flags.writeable = A.flags.writeable = False
    return wp, A


def _branch_window_bounds(prediction, out, d, quantity, level, want):
    r"""The critical-window law of coupled directions (docs/theory.md §4.5, "Coupled directions: the window of the
    eigen-branches") at the rows ``want``: the centre and half-width of the two-sided ``level`` interval of the
    seed mean of q_best, q_rank or proj; NaN elsewhere. The eigen-branches with :math:`w'_b \le` W_MAX are the spikes
    of one canonical spiked GOE (:func:`numerics.critical_window.branch_window_map`), and the top eigenvectors'
    overlaps with w_k are :math:`d^{-1/3}(\sum_b A_{kb}a_b)^2` from the canonical signed amplitudes a_b. The n_above
    branches above W_MAX hold the top n_above ranks with their first-order law, w_k's share
    :math:`q_{bk} + b_{bk} + \sigma_{bk}Z/\sqrt d` (_branch_law), and must be clear of the edge (branch_clear).
    q_rank is the canonical eigenvector at rank k - n_above; q_best the largest share among the top m - n_above
    canonical eigenvectors and the n_above branches. proj gets a bracket, as _cut_bracket_bounds gives uncoupled
    directions: the estimator keeps the branches above W_MAX always and the eigenvectors near the edge at random,
    none at the interval's lower end and all J = spikes + 1 at its upper end (one bulk eigenvalue above the cut); it
    needs a spike above its threshold, w'_b > 0. The reported eigenvector must not be a clear branch among the
    spikes (for proj: no spike may be clear), since the map's leading order misplaces a clear outlier's own share
    (0.37 against the simulated 0.54 at w' = 3.44 on the model of the docs): the branch laws are for those. Used
    where the edge is square-root, some spike has :math:`|w'_b| \le` W_MAX, the spikes number at most
    WINDOW_SPIKES, lie above :math:`-N^{1/3}/2` and need at most WINDOW_DEPTH eigenvectors. A branch's component
    in the window eigenvectors above W_MAX is left out, as for the outliers above the window of uncoupled
    directions."""
    from numerics.critical_window import CANONICAL_N

    center, half = np.full(len(out), np.nan), np.full(len(out), np.nan)
    model, m = prediction.model, prediction.model.m
    for i in np.nonzero(want)[0]:
        a, k, S = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1, int(out["n_seeds"].iat[i])
        wp, A = _branch_window(model, a, int(d))
        share, branches, law, _ = _outlier_branches(prediction, a, d)
        if not (np.all(np.isfinite(wp)) and np.array_equal(branches, np.flatnonzero(np.isfinite(law["zeta"])))):
            continue
        top = branches[np.argsort(-law["zeta"][branches])]  # the outlier branches, largest eigenvalue first
        clear = np.array([branch_clear(law["sigma"][b], share[b], d) for b in top], dtype=bool)
        n_above = int(np.sum(wp > W_MAX))  # the largest outliers, above the window: their own law, always kept
        spikes = np.arange(m - n_above)  # the map's branches, ascending in w'
        J = {"q_rank": k + 1 - n_above, "q_best": m - n_above, "proj": spikes.size + 1}[quantity]
        # the reported eigenvector must not be a clear outlier in the window, whose share the map's leading order
        # misplaces (docs/theory.md §4.5): q_rank's rank-k branch, q_best's branch with the largest share of w_k
        own = np.ones(top.size, dtype=bool) if quantity == "proj" else \
            np.arange(top.size) == _reported_branch(share, top, k, quantity)
        near = np.any(wp[spikes] > 0) if quantity == "proj" else np.any(np.abs(wp[spikes]) <= W_MAX)
        reports_clear = np.any(clear[n_above:] & own[n_above:])
        if not (top.size >= n_above and np.all(clear[:n_above]) and not reports_clear and near
                and spikes.size <= WINDOW_SPIKES and np.all(wp > -CANONICAL_N ** (1 / 3) / 2)
                and 1 <= J <= WINDOW_DEPTH):
            continue
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 23])
        top = top[:n_above]
        q, sig, bias = share[top, k], law["sigma"][top, k], law["bias"][top, k]
        far = q + bias + sig * rng.standard_normal((LAW_DRAWS, n_above)) / np.sqrt(d)
        seed = int(d) * 10**4 + int(round(a * 1000)) % 10**4
        amp = _canonical(tuple(wp[spikes].tolist()), seed, J, WINDOW_DRAWS, signed=True)[1]  # (draws, J, spikes)
        pool = (amp @ A[k, spikes]) ** 2 * d ** (-1 / 3)  # (draws, J): w_k's share in each
        pool = pool[rng.integers(0, WINDOW_DRAWS, LAW_DRAWS)]
        if quantity == "q_rank":
            lower = upper = pool[:, J - 1]
        elif quantity == "q_best":
            lower = upper = np.concatenate([pool, far], axis=1).max(axis=1)
        else:
            lower = far.sum(axis=1)
            upper = lower + pool.sum(axis=1)
        lo, hi = _seed_mean_interval(lower, upper, rng.integers(0, LAW_DRAWS, (LAW_DRAWS, S)), level)
        center[i], half[i] = (lo + hi) / 2, (hi - lo) / 2
    return center, half


def _projection_bounds(prediction, out, d, level, want) -> np.ndarray:
    """The one-sided bound c/d on the subspace projection proj = ||P_hat w_k||^2 where direction k has no
    outlier at d = infinity (docs/theory.md §4.3, "The projection below the threshold"), at the rows
    ``want``; NaN elsewhere. The estimator keeps the eigenvalues above its cut, CUT_SD Tracy-Widom sd
    above the TW mean at the edge. The outliers of the directions far above the window
    (w'_l > W_MAX) are always kept. Which of the top eigenvalues near the edge pass the cut is drawn from
    the canonical spiked GOE (§4.5) whose spikes are the directions in the window
    (-W_GATE < w'_l <= W_MAX), with one eigenvalue more than there are spikes (a bulk one above the
    cut); the window's outliers whose CLT holds are kept by their first-order eigenvalue law instead
    (_detect_near), since the map's leading order places them too low. The outliers carry w_k's share r_lk
    chi2_1 / d (_outlier_shares), taken in order from the top. The eigenvectors below them carry, where k is
    itself in the window, the canonical overlap kappa_k d^(-1/3) <e_k, v>^2 of the same draw (the window law of
    _window_bounds: 0.144 on average where kept at (3, 2) of the m = 2, gamma = 1 model of §4.3, simulated
    0.133); else the edge share R_k(x_j) chi2_1 / d at depth j (§4.1, an upper-side estimate). c is the
    ``level`` quantile of the mean of S such sums. In the boundary regime there is no canonical model: c sums over
    the outliers of other directions alone (none of the extreme samples' eigenvalues passed the cut, measured in
    §4.3)."""
    from numerics.edge_overlap import TW_MEAN, TW_SD, edge_regime
    from validation.simulate import CUT_SD

    bound = np.full(len(out), np.nan)
    alphas = np.unique(out["alpha"].to_numpy()[want])
    if alphas.size == 0 or prediction.settings.get("solver") == "matrix":
        return bound
    model, m = prediction.model, prediction.model.m
    square_root = edge_regime(model, alphas)
    sq = alphas[square_root]
    depth = min(WINDOW_DEPTH, m + 1)
    if sq.size:
        wp, wc, scale = _window_scales(prediction, sq, d)
        edge = np.stack([_edge_table(model, a, int(d), depth) for a in sq.tolist()])  # (alphas, depth, m)
    row = {a: i for i, a in enumerate(sq.tolist())}
    shares = _outlier_shares(model, alphas, d)
    cut = TW_MEAN + CUT_SD * TW_SD
    for i in np.nonzero(want)[0]:
        a, k = float(out["alpha"].iat[i]), int(out["k"].iat[i]) - 1
        if prediction.q[int(np.argmin(np.abs(prediction.alphas - a))), k] > 0:
            continue  # k has an outlier at d = infinity
        col = shares[a][:, k]
        rng = np.random.default_rng([int(d), int(round(a * 1000)), k, 7])
        if a in row:
            r = row[a]
            if not np.all(np.isfinite(wp[r])):
                continue
            spikes = [j for j in np.argsort(-wc[r]) if -W_GATE < wp[r, j] <= W_MAX]  # the highest first
            far = [j for j in range(m) if wp[r, j] > W_MAX and np.isfinite(col[j])]
            J = len(spikes) + 1
            if len(spikes) > WINDOW_SPIKES or J > depth:
                continue
            # no direction in the window: a spike far below stands for none (the GOE's top eigenvalue)
            x, overlap = _canonical(tuple(wc[r, sorted(spikes)].tolist()) or (-20.0,),
                                    int(d) * 10**4 + 100 * r + (min(spikes) if spikes else 99), J, WINDOW_DRAWS)
            near = [j for j in spikes if wp[r, j] > 0 and np.isfinite(col[j])]  # outliers at d = inf, highest first
            pick = rng.integers(0, x.shape[0], LAW_DRAWS)  # canonical draws reused, fresh chi2
            kept = x[pick] > cut
            share = np.r_[col[near], edge[r, : J - len(near), k]] / d * rng.chisquare(1, kept.shape)  # the j-th kept
            drawn = _detect_near(prediction, a, d, near, len(far), kept, rng)  # the clear outliers: first order
            if k in spikes:  # the others, and k's own eigenvectors near the edge: the window law's overlaps (§4.5)
                own = [pos for pos in range(J) if pos not in drawn]
                share[:, own] = scale[r, k] * overlap[pick][:, own, sorted(spikes).index(k)]
            part = np.sum(kept * share, axis=1)
        else:  # the boundary regime
            far = [j for j in range(m) if np.isfinite(col[j])]
            if not far:
                continue
            part = np.zeros(LAW_DRAWS)
        pool = part + np.sum(col[far] * rng.chisquare(1, (part.size, len(far))), axis=1) / d
        S = int(out["n_seeds"].iat[i])
        bound[i] = float(np.quantile(pool[rng.integers(0, pool.size, (LAW_DRAWS, S))].mean(axis=1), level))
    return bound


def _detect_near(prediction, a: float, d: int, near: list, n_far: int, kept: np.ndarray, rng) -> list:
    """For _projection_bounds: redraw, in place, whether the estimator keeps the outliers of the directions ``near``
    (in the window above their thresholds, highest first: the first len(near) columns of ``kept``) from their
    first-order eigenvalue law, where their CLT holds, as the detection law does (_detection_bounds; docs/theory.md
    §4.3, "The projection below the threshold"): the eigenvalue minus the cut at ratio n/d is Gaussian about
    zeta_j* + eig_shift_j - edge - cut margin with sd gap_sd_j / sqrt(d), and the cut is recounted with the
    ``n_far`` outliers always kept (_kept_outliers). The canonical model's leading order places such an outlier
    too low (it keeps it in 0.89 of the draws, the simulation in 0.99; docs/theory.md §4.3). An outlier whose CLT
    fails keeps the canonical draw, and one above a kept eigenvector near the edge is kept. Returns the positions
    redrawn."""
    if not near:
        return []
    model, p = prediction.model, int(np.argmin(np.abs(prediction.alphas - a)))
    mom = _moments(model, a, int(d))
    clear = _clt_holds(mom["sigma"], prediction.q[p], d)
    drawn = [pos for pos, j in enumerate(near) if clear[j] and np.isfinite(mom["eig_shift"][j])]
    if not drawn:
        return drawn
    gap = _cut_gaps(prediction, p, a, d)
    sd = mom["gap_sd"] / np.sqrt(d)
    x = {pos: gap[near[pos]] + mom["eig_shift"][near[pos]] + sd[near[pos]] * rng.standard_normal(kept.shape[0])
         for pos in drawn}
    below = kept[:, len(near):].any(axis=1)  # an eigenvector near the edge passed the cut, so did those above it
    for pos, keep in _kept_outliers(x, n_far, _cut_step(prediction, p, a, d)).items():
        kept[:, pos] = keep | below
    return drawn


def _edge_ratios(prediction, out, d, quantity) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the edge shares R_k of the eigenvectors that ``quantity`` maximises over (rows of
    length m, NaN-padded). For q_best: the outlier eigenvectors of other directions carry their
    shares of w_k (_outlier_shares), the remaining bulk ones R_k at the locations
    of eigenvalues 1, 2, ... (docs/theory.md §4.1); in the boundary regime every bulk one carries
    the boundary share R_k^b. All NaN for outlier points, where direction k has an outlier. With
    coupled directions the shares are the m x m resolvent's (docs/theory.md §4.1, "Coupled directions"),
    and only where no eigen-branch has an outlier: an outlier eigenvector of a branch carries O(1) of
    every direction the branch mixes. Also returns the mask of the rows whose shares are boundary shares."""
    from numerics.edge_overlap import boundary_share, edge_regime

    m = prediction.model.m
    R = np.full((len(out), m), np.nan)
    boundary = np.zeros(len(out), dtype=bool)
    coupled = prediction.settings.get("solver") == "matrix"
    want = (out["region"] != "outlier").to_numpy()
    if coupled:
        want = want & (out["n_outliers_theory"].to_numpy() == 0)
    alphas = np.unique(out["alpha"].to_numpy()[want])
    if alphas.size == 0:
        return R, boundary
    square_root = edge_regime(prediction.model, alphas)
    square_root_alphas = set(alphas[square_root].tolist())
    depth = 1 if quantity != "q_best" else m
    bulk_shares = {}  # alpha -> the shares of bulk eigenvectors 1..depth, an array (depth, m)
    if square_root.any():  # one edge solve per alpha; the share falls with depth
        # proj uses the top share only, but asks for _projection_bounds' depth: one cached solve serves both
        solve = min(WINDOW_DEPTH, m + 1) if quantity == "proj" else depth
        bulk_shares.update((a, _edge_table(prediction.model, a, int(d), solve)[:depth])
                           for a in alphas[square_root].tolist())
    if not square_root.all():  # boundary regime: every top eigenvector sits on its own extreme sample
        bd = alphas[~square_root]
        bulk_shares.update((a, np.repeat(r[None], depth, axis=0))
                           for a, r in zip(bd.tolist(), boundary_share(prediction.model, bd, d)))
    shares = _outlier_shares(prediction.model, alphas, d) if quantity == "q_best" and not coupled else {}
    for i, (a, k) in enumerate(zip(out["alpha"], out["k"])):
        if want[i] and a in bulk_shares and np.all(np.isfinite(bulk_shares[a][:, k - 1])):
            bulk = list(bulk_shares[a][:, k - 1])
            if shares:  # q_best: the outlier eigenvectors of other directions, then the bulk ones
                col = shares[a][:, k - 1]
                outl = col[np.isfinite(col)][: m - 1].tolist()
                bulk = outl + bulk[: m - len(outl)]
            R[i, : len(bulk)] = bulk
            boundary[i] = a not in square_root_alphas
    return R, boundary
