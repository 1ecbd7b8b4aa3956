r"""Finite-size smoothing of the thresholds (docs/theory.md §4), measured.

At finite d the transition of direction k is a crossover of relative width
:math:`d^{-1/3}`: with :math:`w = d^{1/3}(\alpha/\alpha_k - 1)`, the overlap inside the window
is :math:`q_k \approx d^{-1/3} F(w)`, and outside it the simulated curve is within
:math:`O(d^{-1/2})` of the d = infinity curve. ``finite_size_study`` measures, for one
direction k with a continuous transition (above the boundary regime, docs/numerics.md):

* ``sup_distance``: :math:`\max|\bar q_{sim} - q|` over alphas outside the window
  (:math:`\alpha/\alpha_k - 1 \in \{0.5, 1, 2\}`), which must shrink with d;
* ``width``: :math:`\bar q_{sim}(\alpha_k)/s`, with s the slope of the d = infinity curve
  :math:`q \approx s(\alpha/\alpha_k - 1)` just above :math:`\alpha_k`: the relative
  distance in alpha at which the d = inf curve reaches the overlap measured at the
  threshold. docs/theory.md §4 predicts width ~ d^(-1/3); its exponent is fitted by weighted
  least squares in log-log, with a standard error;
* the collapse: :math:`d^{1/3}\bar q_{sim}/s` against w at
  :math:`w \in \{-2,-1,0,1,2,4\}`, which should fall on one curve.

Examples
--------
>>> from theory import HierarchicalModel
>>> r = finite_size_study(HierarchicalModel(m=3, gamma=1), ds=(60, 120), seeds=range(2))
>>> sorted(r["fit"])
['width_exponent', 'width_exponent_se']
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from numerics import predict
from numerics.predict import spectral_functions
from numerics.label_law import label_law
from theory import HierarchicalModel

from .simulate import simulate_task

__all__ = ["finite_size_study", "boundary_alpha", "OUTSIDE", "COLLAPSE_W"]

OUTSIDE = (0.5, 1.0, 2.0)  # alpha/alpha_k - 1 outside the window for every d >= 8
COLLAPSE_W = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)


def boundary_alpha(model: HierarchicalModel) -> float:
    r""":math:`\alpha_b = 1/G_2(\sup T)`: below it :math:`\bar\lambda = \sup T` and transitions jump
    (0 when G2 diverges at sup T, i.e. there is no boundary regime)."""
    sf = spectral_functions(label_law(model))
    return 1.0 / sf.G2_0 if sf.open_top else 0.0


def _fit_power(x, y, se):
    """Weighted least squares of log y on log x: (slope, its standard error). ``se`` is the
    standard error of y; that of log y is se/y."""
    X = np.column_stack([np.ones_like(x), np.log(x)])
    w = 1.0 / np.maximum(se / y, 1e-12) ** 2
    A = X.T @ (w[:, None] * X)
    beta = np.linalg.solve(A, X.T @ (w * np.log(y)))
    resid = np.log(y) - X @ beta
    dof = max(len(x) - 2, 1)
    scale = max(float(resid @ (w * resid)) / dof, 1.0)  # inflate when the scatter exceeds the error bars
    cov = np.linalg.inv(A) * scale
    return float(beta[1]), float(np.sqrt(cov[1, 1]))


def finite_size_study(model: HierarchicalModel, ds=(250, 500, 1000, 2000), seeds=range(6), k: int | None = None,
                      progress=None) -> dict:
    """Run the study; returns {"rows": per-(d, alpha) DataFrame, "per_d": per-d summary,
    "fit": fitted width exponent and its standard error, "k", "alpha_k", "slope"}.

    ``k`` defaults to the first direction whose threshold is above 1.5 alpha_b (a
    continuous transition); a k in the boundary regime raises ValueError.
    """
    ds = [int(d) for d in ds]
    seeds = list(seeds)
    if len(ds) < 2 or any(d < 8 for d in ds):
        raise ValueError(f"ds: need at least two dimensions >= 8, got {ds}")
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    thr = predict(model, [1.0]).thresholds
    a_b = boundary_alpha(model)
    if k is None:
        ok = np.nonzero(np.isfinite(thr) & (thr > 1.5 * a_b))[0]
        if ok.size == 0:
            raise ValueError("k: no direction of this model has a continuous transition (all in the boundary regime)")
        k = int(ok[0]) + 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= model.m:
        raise ValueError(f"k: must be an integer in [1, {model.m}], got {k!r}")
    a_k = float(thr[k - 1])
    if not np.isfinite(a_k):
        raise ValueError(f"k: direction {k} has no threshold (its spike never leaves the bulk)")
    if a_k <= a_b:
        raise ValueError(f"k: direction {k} (alpha_k = {a_k:.4g}) is in the boundary regime (alpha_b = {a_b:.4g}): "
                         "its overlap jumps at the threshold, so there is no d^(-1/3) window to measure; pick a larger k")
    delta = 0.02
    slope = float(predict(model, [a_k * (1 + delta)]).q[0, k - 1]) / delta
    rows = []
    total, done = len(ds) * len(seeds), 0
    for d in ds:
        rel = sorted({0.0, *OUTSIDE, *(w * d ** (-1 / 3) for w in COLLAPSE_W if 1 + w * d ** (-1 / 3) > 0.05)})
        alphas = a_k * (1 + np.array(rel))
        alphas = alphas[np.round(alphas * d) >= 1]
        theory = predict(model, alphas).q[:, k - 1]
        for s in seeds:
            df, _ = simulate_task(model, d, alphas, s)
            df = df[df["k"] == k].sort_values("alpha")
            for a, q_sim, q_th in zip(df["alpha"], df["q_best"], theory):
                rows.append({"d": d, "seed": s, "alpha": a, "rel": a / a_k - 1, "w": d ** (1 / 3) * (a / a_k - 1),
                             "q_sim": q_sim, "q_theory": q_th})
            done += 1
            if progress is not None:
                progress(done, total)
    rows = pd.DataFrame(rows)
    g = rows.groupby(["d", "alpha"])
    summ = g.agg(rel=("rel", "first"), w=("w", "first"), q_theory=("q_theory", "first"), q_sim=("q_sim", "mean"),
                 q_sem=("q_sim", "sem")).reset_index()
    summ["q_sem"] = summ["q_sem"].fillna(0.0)
    per_d = []
    for d, grp in summ.groupby("d"):
        out = grp[np.isclose(grp["rel"], OUTSIDE[0]) | np.isclose(grp["rel"], OUTSIDE[1]) | np.isclose(grp["rel"], OUTSIDE[2])]
        at = grp[np.isclose(grp["rel"], 0.0)].iloc[0]
        dist = np.abs(out["q_sim"] - out["q_theory"])
        per_d.append({"d": d, "sup_distance": float(dist.max()), "sup_distance_sem": float(out["q_sem"].max()),
                      "q_at_threshold": float(at["q_sim"]), "q_at_threshold_sem": float(at["q_sem"]),
                      "width": float(at["q_sim"]) / slope, "width_sem": float(at["q_sem"]) / slope})
    per_d = pd.DataFrame(per_d)
    expo, se = _fit_power(per_d["d"].to_numpy(float), per_d["width"].to_numpy(), per_d["width_sem"].to_numpy())
    summ["collapse"] = summ["d"] ** (1 / 3) * summ["q_sim"] / slope
    return {"rows": rows, "summary": summ, "per_d": per_d, "fit": {"width_exponent": expo, "width_exponent_se": se},
            "k": k, "alpha_k": a_k, "slope": slope, "alpha_b": a_b, "model": model, "seeds": len(seeds)}


def plot_finite_size(study: dict, path) -> list[str]:
    """Three panels: q_k(alpha) per d with the d = inf curve, width vs d with the fitted and
    the -1/3 lines, and the collapse d^(1/3) q / s against w."""
    from .plots import plt, save

    s, per_d, k, a_k = study["summary"], study["per_d"], study["k"], study["alpha_k"]
    model = study["model"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    rel = np.linspace(-0.3, 2.1, 200)
    ax[0].plot(1 + rel, predict(model, a_k * (1 + rel)).q[:, k - 1], "k-", lw=1.3, label="d = inf")
    colors = plt.cm.plasma(np.linspace(0, 0.8, per_d.shape[0]))
    for c, (d, grp) in zip(colors, s.groupby("d")):
        ax[0].errorbar(1 + grp["rel"], grp["q_sim"], yerr=grp["q_sem"], fmt="o", ms=3, color=c, label=f"d = {d}")
        ax[2].errorbar(grp["w"], grp["collapse"], yerr=grp["d"] ** (1 / 3) * grp["q_sem"] / study["slope"], fmt="o",
                       ms=3, color=c, label=f"d = {d}")
    ax[0].set_xlabel(r"$\alpha/\alpha_k$")
    ax[0].set_ylabel(rf"$q_{{{k}}}$ (best match)")
    ax[0].legend(fontsize=7)
    d = per_d["d"].to_numpy(float)
    ax[1].errorbar(d, per_d["width"], yerr=per_d["width_sem"], fmt="o", color="C3")
    fit = study["fit"]
    ref = per_d["width"].iloc[0]
    ax[1].loglog(d, ref * (d / d[0]) ** fit["width_exponent"], "C3-",
                 label=f"fit: {fit['width_exponent']:.3f} ± {fit['width_exponent_se']:.3f}")
    ax[1].loglog(d, ref * (d / d[0]) ** (-1 / 3), "k--", label="-1/3 (docs/theory.md §4)")
    ax[1].set_xlabel("d")
    ax[1].set_ylabel("crossover width")
    ax[1].legend(fontsize=7)
    ax[2].set_xlabel(r"$w = d^{1/3}(\alpha/\alpha_k - 1)$")
    ax[2].set_ylabel(r"$d^{1/3} q_k / s$")
    ax[2].set_xlim(-2.5, 4.5)
    shown = s[(s["w"] >= -2.5) & (s["w"] <= 4.5)]
    ax[2].set_ylim(0, 1.15 * float((shown["collapse"] + shown["d"] ** (1 / 3) * shown["q_sem"] / study["slope"]).max()))
    ax[2].set_title("collapse")
    fig.tight_layout()
    return save(fig, path)


def finite_size_report(res: dict) -> str:
    """The text report of :func:`finite_size_study`: the per-d table and the fitted width exponent
    against docs/theory.md §4's -1/3."""
    fit = res["fit"]
    return "\n".join([
        f"finite-size study of direction k = {res['k']} (alpha_k = {res['alpha_k']:.5g}, slope s = {res['slope']:.4g}), "
        f"{res['seeds']} seeds per d",
        res["per_d"].to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        f"crossover width ~ d^({fit['width_exponent']:.3f} +- {fit['width_exponent_se']:.3f}); docs/theory.md §4: -1/3"])
