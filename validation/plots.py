"""Figures (matplotlib, Agg backend): theory curves, with simulation points when given."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_prediction", "plot_estimators", "plot_layer1", "save"]


def save(fig, path) -> list[str]:
    """Save as PNG and PDF next to each other; returns the written paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".pdf"):
        p = path.with_suffix(ext)
        fig.savefig(p, dpi=130, bbox_inches="tight")
        out.append(str(p))
    plt.close(fig)
    return out


def plot_prediction(pred, path, sim=None) -> list[str]:
    """q_k(alpha) staircase and MSE_gamma(alpha) of a numerics.Prediction.

    ``sim`` (optional) is the summary DataFrame of validation.compare: its points are
    drawn with error bars on the same axes.
    """
    gamma = float(pred.model.gamma)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, pred.q.shape[1]))
    for k in range(pred.q.shape[1]):
        ax1.semilogx(pred.alphas, pred.q[:, k], color=colors[k], lw=1.4, label=f"k={k + 1}" if k < 6 else None)
        if sim is not None:
            s = sim[sim["k"] == k + 1]
            ax1.errorbar(s["alpha"], s["q_sim"], yerr=s["q_sem"], fmt="o", ms=3.5, color=colors[k], capsize=2)
    ax1.set_xlabel(r"$\alpha = n/d$")
    ax1.set_ylabel(r"$q_k = \langle w_k, v_k\rangle^2$")
    ax1.set_title("per-direction overlaps" + (" (theory lines, simulation points)" if sim is not None else " (d = infinity)"))
    ax1.legend(fontsize=7, loc="upper left")
    ax2.loglog(pred.alphas, pred.mse, "k-", lw=1.6, label=r"theory $\mathrm{MSE}_\gamma$ (optimal)")
    ax2.loglog(pred.alphas, pred.mse_plugin, "k:", lw=1.0, label="theory (plug-in)")
    if sim is not None:
        s = sim.drop_duplicates("alpha")
        ax2.errorbar(s["alpha"], s["mse_sim"], yerr=s["mse_sem"], fmt="o", color="C3", ms=4, capsize=2,
                     label="simulation")
    for t in pred.thresholds[np.isfinite(pred.thresholds)]:
        if pred.alphas.min() <= t <= pred.alphas.max():
            ax2.axvline(t, color="0.85", lw=0.8, zorder=0)
    slope = -(1 - 1 / (2 * gamma))
    a0 = np.sqrt(pred.alphas.min() * pred.alphas.max())
    i0 = np.argmin(np.abs(pred.alphas - a0))
    guide = pred.mse[i0] * 1.6 * (pred.alphas / pred.alphas[i0]) ** slope
    ax2.loglog(pred.alphas, guide, "--", color="C0", lw=1, label=rf"slope $-(1-1/2\gamma) = {slope:.3f}$")
    ax2.set_xlabel(r"$\alpha$")
    ax2.set_ylabel(r"$\mathrm{MSE}_\gamma$")
    ax2.set_title(r"error; grey lines: thresholds $\alpha_k$")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def plot_estimators(table, model, path) -> list[str]:
    """Spectral and/or Bayes-optimal theory from a ``cascade predict`` table: MSE against alpha
    (log-log, with the local slopes), the overlaps q_k, and the thresholds against k with the
    k^(2 gamma) guide. Works from the table alone (thresholds ride along as JSON)."""
    import io
    import json

    import pandas as pd

    alphas = table["alpha"].to_numpy()
    gamma = float(model.gamma)
    has = [e for e in ("spectral", "bayes") if f"mse_{e}" in table.columns]
    style = {"spectral": ("-", "C0", "spectral"), "bayes": ("--", "C3", "Bayes-optimal")}
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for e in has:
        ls, c, name = style[e]
        mse = table[f"mse_{e}"].to_numpy()
        ok = mse > 0
        ax[0].loglog(alphas[ok], mse[ok], ls, color=c, lw=1.6, label=name)
        if ok.sum() > 2:
            slope = np.gradient(np.log(mse[ok]), np.log(alphas[ok]))
            j = int(np.argmin(np.abs(np.log(alphas[ok]) - np.log(alphas[ok]).mean())))
            ax[0].annotate(f"local slope {slope[j]:.2f}", (alphas[ok][j], mse[ok][j]), fontsize=7, color=c)
    i0 = len(alphas) // 2
    base = table[f"mse_{has[0]}"].to_numpy()[i0] if has else 1.0
    ax[0].loglog(alphas, 1.5 * base * (alphas / alphas[i0]) ** (-(1 - 1 / (2 * gamma))), ":", color="0.5", lw=1,
                 label=rf"$\alpha^{{-(1-1/2\gamma)}}$, slope {-(1 - 1 / (2 * gamma)):.3f}")
    ax[0].set_xlabel(r"$\alpha = n/d$")
    ax[0].set_ylabel(r"$\mathrm{MSE}_\gamma = \sum_k a_k^2(1 - q_k^2)$")
    ax[0].legend(fontsize=7)
    ks = sorted({int(c.split("_")[1]) for c in table.columns if c.startswith("q_") and c.endswith(f"_{has[0]}")})
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(ks), 1)))
    for k in (k - 1 for k in ks):
        for e in has:
            ls, _, _ = style[e]
            ax[1].semilogx(alphas, table[f"q_{k + 1}_{e}"], ls, color=colors[k], lw=1.2,
                           label=f"k={k + 1}" if (e == has[0] and k < 6) else None)
    ax[1].set_xlabel(r"$\alpha$")
    ax[1].set_ylabel(r"$q_k$ (solid: spectral, dashed: Bayes-optimal)")
    ax[1].legend(fontsize=7)
    if "thresholds_json" in table.columns:
        thr = pd.read_json(io.StringIO(table["thresholds_json"].iloc[0]))
        ks = thr["k"].to_numpy()
        for col, ls, c, name in (("alpha_k_spectral", "o-", "C0", "spectral"), ("alpha_k_bayes_grid", "s--", "C3",
                                                                                 "Bayes-optimal (grid estimate)")):
            if col in thr.columns:
                v = thr[col].to_numpy(dtype=float)
                ok = np.isfinite(v) & (v > 0)
                ax[2].loglog(ks[ok], v[ok], ls, color=c, ms=4, label=name)
        ref = thr[[c for c in thr.columns if c.startswith("alpha_k")]].to_numpy(dtype=float)
        ref = ref[np.isfinite(ref) & (ref > 0)]
        if ref.size:
            ax[2].loglog(ks, ref.min() * ks ** (2 * gamma), ":", color="0.5", label=r"$\propto k^{2\gamma}$")
        ax[2].set_xlabel("k")
        ax[2].set_ylabel(r"threshold $\alpha_k$")
        ax[2].legend(fontsize=7)
    fig.suptitle(f"Model S: {json.dumps(model.describe())}", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_layer1(table, model, path) -> list[str]:
    """Model C layer 1 (GE) from a ``cascade predict --model C`` table: rho_i^2 against n/D, the
    solver (lines) and the refined closed form (dotted)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, model.d1))
    for i, g in table.groupby("i"):
        ax.semilogx(g["n_over_D"], g["rho2_solver"], "o-", color=colors[i - 1], ms=3, label=f"i={i}" if i <= 6 else None)
        ax.semilogx(g["n_over_D"], g["rho2_closed_form"], ":", color=colors[i - 1])
    ax.set_xlabel("n / D")
    ax.set_ylabel(r"$\rho_i^2$ (GE layer 1)")
    ax.set_title(f"Model C: d = {model.d}, D = {model.D}, d1 = {model.d1}; dotted: closed form", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def draw_spectrum(ax, model, alpha, evals, d):
    """Eigenvalue histogram at one alpha with the d = infinity bulk density and predicted outliers."""
    from numerics import bulk_density, predict

    pred = predict(model, [alpha])
    edge = pred.bulk_edge[0]
    lo = min(evals.min(), edge) - 0.05 * abs(edge - evals.min())
    x = np.linspace(lo, edge * 1.02 + 1e-3, 500)
    ax.hist(evals, bins=80, density=True, color="0.75", label=f"simulation, d = {d}")
    ax.plot(x, bulk_density(model, alpha, x), "k-", lw=1.3, label="bulk density (d = inf)")
    for j, e in enumerate(pred.eigenvalues[0][pred.is_outlier[0]]):
        ax.axvline(e, color="C3", lw=1, ls="--", label="predicted outliers" if j == 0 else None)
    ax.axvline(edge, color="C0", lw=1, label="bulk edge")
    ax.set_yscale("log")
    ax.set_ylim(1e-3, None)
    ax.set_xlabel("eigenvalue of $D_n$")
    ax.set_title(rf"spectrum at $\alpha = {alpha:g}$")
    ax.legend(fontsize=7)


def plot_spectrum(model, alpha, evals, d, path) -> list[str]:
    """Eigenvalue histogram at one alpha with the d = infinity bulk density and outliers ([D] figure type)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    draw_spectrum(ax, model, alpha, evals, d)
    fig.tight_layout()
    return save(fig, path)


def plot_spectra(model, spectra: dict, d, path) -> list[str]:
    """One panel per alpha (the [D] figure of sequential emergence); ``spectra`` maps alpha -> eigenvalues."""
    alphas = sorted(spectra)
    cols = min(2, len(alphas))
    rows = int(np.ceil(len(alphas) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.8 * rows), squeeze=False)
    for ax, a in zip(axes.ravel(), alphas):
        draw_spectrum(ax, model, a, np.asarray(spectra[a]), d)
    for ax in axes.ravel()[len(alphas):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)
