r"""Theory (d = infinity) next to simulation (finite d), with finite-size-aware flags (docs/theory.md §4).

Each (alpha, k) point gets a region from the scaling variable
:math:`w = d^{1/3}(\alpha/\alpha_k - 1)`:

* ``outlier`` (w >= 1): q is within O(d^{-1/2}) of the d = inf curve, so the flag is
  :math:`|\bar q_{sim} - q| \le d^{-1/2} + 2\,\mathrm{sem}`;
* ``window`` (|w| < 1): q ~ d^{-1/3} F(w), so :math:`\bar q_{sim} \le q + 2 d^{-1/3}`;
* ``bulk`` (w <= -1): q = O(1/d), enhanced as the spike nears criticality: the
  spectral measure of w_k at the bulk edge grows like :math:`(1-\theta_k/\theta_c)^{-2}` with
  :math:`\theta_k/\theta_c \approx \sqrt{\alpha/\alpha_k}` (BBP), so
  :math:`\bar q_{sim} \le c_{bulk}/(d(1-\sqrt{\alpha/\alpha_k})^2)` with the O(1) constant
  :math:`c_{bulk} = 4` (not derived; it covers the default model at d = 300..600).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["compare", "C_BULK", "C_WINDOW"]

C_BULK = 4.0
C_WINDOW = 1.0


def compare(prediction, simulation: pd.DataFrame, quantity: str = "q_best") -> pd.DataFrame:
    """Summary per (alpha, k): theory, simulation mean and standard error, region, flag.

    ``prediction`` must be a numerics.Prediction at (a superset of) the simulated alphas.
    """
    from numerics import Prediction
    from theory.model import require

    require(prediction, Prediction, "prediction")
    require(simulation, pd.DataFrame, "simulation")
    if quantity not in ("q_best", "q_rank", "proj"):
        raise ValueError(f"quantity: must be 'q_best', 'q_rank' or 'proj', got {quantity!r}")
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
    tol = np.select(
        [out["region"] == "outlier", out["region"] == "window"],
        [d ** -0.5 + 2 * out["q_sem"], 2 * d ** (-1 / 3)],
        default=C_BULK / (d * (1 - np.sqrt(np.clip(out["alpha"] / out["alpha_k"], 0, 1))) ** 2),
    )
    out["tol"] = tol
    diff = out["q_sim"] - out["q_theory"]
    out["agrees"] = np.where(out["region"] == "outlier", np.abs(diff) <= tol, diff <= tol)
    out["d"] = d
    return out
