r"""Theory (d = infinity) next to simulation (finite d), with finite-size-aware flags (docs/theory.md §4).

Each (alpha, k) point gets a region from the scaling variable
:math:`w = d^{1/3}(\alpha/\alpha_k - 1)`:

* ``outlier`` (w >= 1): q is within O(d^{-1/2}) of the d = inf curve, so the flag is
  :math:`|\bar q_{sim} - q| \le d^{-1/2} + 2\,\mathrm{sem}` (the d^{-1/2} allowance for the
  finite-size bias is not derived yet);
* ``window`` (|w| < 1) and ``bulk`` (w <= -1): a one-sided bound at confidence ``level``
  (docs/theory.md §4.1). The top eigenvectors near the edge carry on average
  :math:`R_k(x_1)/d` of :math:`w_k` (:func:`numerics.edge_overlap.edge_overlap`, computed for the
  model at hand at the Tracy-Widom location of the top eigenvalue); ``q_best`` is a maximum over
  the top m eigenvectors, bounded by the maximum of m independent :math:`R_k\chi^2_1/d` variables.
  So :math:`\bar q_{sim} \le q + (R_k/d)\, c_{S,m}` with :math:`c_{S,m}` the ``level`` quantile of
  the mean of S such maxima (S seeds). The outlier part q is 0 below the threshold; in the
  window's upper half (0 < w < 1) adding it is an upper interpolation, not a derivation.

Where the edge formula does not apply (boundary regime :math:`\bar\lambda = \sup T`, or coupled
directions) the bulk and window keep the earlier heuristic bounds
:math:`4/(d(1-\sqrt{\alpha/\alpha_k})^2)` and :math:`q + 2d^{-1/3}`; the column ``tol_basis`` says
which bound each point got.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2

__all__ = ["compare", "C_BULK", "C_WINDOW", "max_chi2_mean_quantile"]

C_BULK = 4.0  # the heuristic bulk constant, used only where the edge formula does not apply
C_WINDOW = 1.0


def max_chi2_mean_quantile(m: int, n_seeds: int, level: float = 0.95, h: float = 2e-3) -> float:
    r"""The ``level`` quantile of :math:`\frac1S\sum_{s\le S}\max_{j\le m}\chi^2_{1,sj}` (all independent).

    The law of one maximum, :math:`P(\max\le x) = P(\chi^2_1\le x)^m`, is binned on a grid of step h
    (bin masses from the CDF, placed at bin midpoints) and convolved S times by FFT. For m = 1 this
    is :math:`\chi^2_S(\text{level})/S`:

    >>> round(max_chi2_mean_quantile(1, 8), 2), round(float(chi2.ppf(0.95, 8) / 8), 2)
    (1.94, 1.94)
    """
    from theory.model import integer

    m, S = integer(m, "m", 1), integer(n_seeds, "n_seeds", 1)
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    top = float(chi2.isf(1e-12 / m, 1))  # the maximum exceeds this with probability < 1e-12
    edges = np.arange(0.0, top + h, h)
    pmf = np.diff(chi2.cdf(edges, 1) ** m)
    size = 1 << int(np.ceil(np.log2(S * pmf.size + 1)))
    total = np.fft.irfft(np.fft.rfft(pmf, size) ** S, size)[: S * pmf.size]
    cdf = np.cumsum(np.clip(total, 0, None))
    j = int(np.searchsorted(cdf / cdf[-1], level))
    return float((j + S * 0.5) * h / S)  # S midpoints of h/2 each


def compare(prediction, simulation: pd.DataFrame, quantity: str = "q_best", level: float = 0.95) -> pd.DataFrame:
    """Summary per (alpha, k): theory, simulation mean and standard error, region, tolerance, flag.

    ``prediction`` must be a numerics.Prediction at (a superset of) the simulated alphas. ``level``
    is the confidence of the one-sided bound in the bulk and window (module docstring); the columns
    ``R_edge`` (:math:`R_k` at the top eigenvalue's location, NaN where it does not apply) and
    ``tol_basis`` ("edge" or "heuristic") say how each tolerance was obtained.
    """
    from numerics import Prediction
    from theory.model import require

    require(prediction, Prediction, "prediction")
    require(simulation, pd.DataFrame, "simulation")
    if quantity not in ("q_best", "q_rank", "proj"):
        raise ValueError(f"quantity: must be 'q_best', 'q_rank' or 'proj', got {quantity!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level: must be a confidence in (0, 1), got {level!r}")
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
    out["R_edge"] = _edge_ratios(prediction, out, d)
    # the bulk/window bound: q + (R_k / d) c, c the level quantile of the seed mean of the per-seed law
    m = prediction.model.m
    quantiles = {S: (max_chi2_mean_quantile(m, S, level) if quantity == "q_best"
                     else max_chi2_mean_quantile(1, S, level) if quantity == "q_rank"
                     else float(chi2.ppf(level, S * m)) / S)  # proj: a sum over at most m eigenvectors
                 for S in set(out["n_seeds"].astype(int))}
    c = out["n_seeds"].astype(int).map(quantiles).to_numpy()
    edge_tol = out["R_edge"] / d * c
    heuristic = np.where(out["region"] == "window", 2 * d ** (-1 / 3),
                         C_BULK / (d * (1 - np.sqrt(np.clip(out["alpha"] / out["alpha_k"], 0, 1))) ** 2))
    has_edge = np.isfinite(out["R_edge"].to_numpy())
    out["tol_basis"] = np.where(out["region"] == "outlier", "outlier", np.where(has_edge, "edge", "heuristic"))
    tol = np.select(
        [out["region"] == "outlier", has_edge],
        [d ** -0.5 + 2 * out["q_sem"], edge_tol],
        default=heuristic,
    )
    out["tol"] = tol
    diff = out["q_sim"] - out["q_theory"]
    out["agrees"] = np.where(out["region"] == "outlier", np.abs(diff) <= tol, diff <= tol)
    out["d"] = d
    return out


def _edge_ratios(prediction, out, d) -> np.ndarray:
    """R_k at the Tracy-Widom location of the top eigenvalue for the bulk and window points; NaN for
    outlier points and where the edge formula does not apply (boundary regime, coupled directions)."""
    from numerics.edge_overlap import edge_overlap, edge_regime

    R = np.full(len(out), np.nan)
    if prediction.settings.get("solver") == "matrix":
        return R
    want = (out["region"] != "outlier").to_numpy()
    alphas = np.unique(out["alpha"].to_numpy()[want])
    if alphas.size == 0:
        return R
    alphas = alphas[edge_regime(prediction.model, alphas)]
    if alphas.size == 0:
        return R
    table = edge_overlap(prediction.model, alphas, d=d)
    row = {a: i for i, a in enumerate(alphas)}
    for j, (a, k) in enumerate(zip(out["alpha"], out["k"])):
        if want[j] and a in row:
            R[j] = table[row[a], k - 1]
    return R
