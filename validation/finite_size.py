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
['chi2_dof_one_third', 'width_exponent', 'width_exponent_se']
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse.linalg import LinearOperator, eigsh

from numerics import predict
from numerics.predict import spectral_functions
from numerics.label_law import label_law, preprocessing_function
from theory import HierarchicalModel
from theory.model import integer

from .simulate import SampleStream, _check

__all__ = ["finite_size_study", "top_overlaps", "boundary_alpha", "OUTSIDE", "COLLAPSE_W"]

OUTSIDE = (0.5, 1.0, 2.0)  # alpha/alpha_k - 1 outside the window for every d >= 8
COLLAPSE_W = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)


def boundary_alpha(model: HierarchicalModel) -> float:
    r""":math:`\alpha_b = 1/G_2(\sup T)`: below it :math:`\bar\lambda = \sup T` and transitions jump
    (0 when G2 diverges at sup T, i.e. there is no boundary regime)."""
    sf = spectral_functions(label_law(model))
    return 1.0 / sf.G2_0 if sf.open_top else 0.0


def top_overlaps(model: HierarchicalModel, d: int, alphas, seed: int, dtype=np.float64) -> np.ndarray:
    r"""``q_best`` of :func:`validation.simulate.simulate_task` at each alpha, by Lanczos.

    Row i (alphas sorted), column k is :math:`\max_{j\le m}\langle w_k, v_j\rangle^2` over the top m eigenvectors
    :math:`v_j` of :math:`D_n = \frac1n\sum_{i\le n} T(y_i)x_ix_i^\top`, n = round(alpha d), on the same
    draws as ``simulate_task`` (the sample stream of ``seed``; each alpha uses the first n samples).
    The samples are held in memory (n_max x d in ``dtype``) and :math:`D_n` is never formed: ARPACK
    (``scipy.sparse.linalg.eigsh``, in float64, from a seeded start vector) multiplies by
    :math:`X^\top(t\odot Xv)/n`, O(n d) per product instead of O(n d^2) for the matrix and
    O(d^3) for a full ``eigh``. That is what takes the finite-size study to d = 6400 (docs/validation.md).

    >>> from theory import HierarchicalModel
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="clip(y, -1, 3)")
    >>> q = top_overlaps(model, 200, [0.7, 3.0], seed=0)  # below and well above alpha_1 = 0.654
    >>> q.shape, bool(q[1, 0] > q[0, 0])
    ((2, 1), True)
    """
    a = _check(model, d, alphas, 4096)
    seed = integer(seed, "seed", 0)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype: must be float32 or float64, got {dtype!r}")
    m = model.m
    ns = np.round(a * d).astype(np.int64)
    stream = SampleStream(model, d, seed, dtype)
    X, y = stream.take(int(ns[-1]))
    t = preprocessing_function(model.T)(y)
    if not np.all(np.isfinite(t)):
        raise ValueError("preprocessing: T(y) is not finite on a simulated label (division by zero?)")
    t = t.astype(dtype)
    W = stream.W
    out = np.empty((ns.size, m))
    v0 = np.random.default_rng([seed, d]).standard_normal(d)
    for i, n in enumerate(ns):
        Xn, tn = X[:n], (t[:n] / n).astype(dtype)  # n is an int64: without the cast X would be promoted
        if 4 * m >= d:  # ARPACK needs k well below d; small problems go through the dense matrix
            vecs = np.linalg.eigh((Xn.T * tn) @ Xn)[1][:, ::-1][:, :m]
        else:
            def matvec(v, Xn=Xn, tn=tn):
                return (Xn.T @ (tn * (Xn @ v.astype(dtype, copy=False)))).astype(np.float64)

            op = LinearOperator((d, d), dtype=np.float64, matvec=matvec)
            vecs = eigsh(op, k=m, which="LA", v0=v0, tol=1e-10)[1]
        out[i] = ((W.T @ vecs) ** 2).max(axis=1)
    return out


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


def _chi2_fixed_power(x, y, se, p):
    """chi^2 per degree of freedom of y = A x^p with A fitted (weighted least squares): about 1
    when the law holds and ``se`` are the errors of y."""
    f = x**p
    w = 1.0 / np.maximum(se, 1e-300) ** 2
    A = np.sum(w * f * y) / np.sum(w * f * f)
    return float(np.sum(w * (y - A * f) ** 2) / max(len(x) - 1, 1))


def finite_size_study(model: HierarchicalModel, ds=(250, 500, 1000, 2000), seeds=range(6), k: int | None = None,
                      progress=None, dtype=np.float64) -> dict:
    """Run the study; returns {"rows": per-(d, alpha) DataFrame, "per_d": per-d summary,
    "fit": fitted width exponent and its standard error, "k", "alpha_k", "slope"}.

    The overlaps come from :func:`top_overlaps` (Lanczos on samples held in memory, in ``dtype``).

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
    k = integer(k, "k", 1, model.m)
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
            q = top_overlaps(model, d, alphas, s, dtype)[:, k - 1]
            for a, q_sim, q_th in zip(alphas, q, theory):
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
    dd, wd, wse = per_d["d"].to_numpy(float), per_d["width"].to_numpy(), per_d["width_sem"].to_numpy()
    expo, se = _fit_power(dd, wd, wse)
    summ["collapse"] = summ["d"] ** (1 / 3) * summ["q_sim"] / slope
    fit = {"width_exponent": expo, "width_exponent_se": se, "chi2_dof_one_third": _chi2_fixed_power(dd, wd, wse, -1 / 3)}
    return {"rows": rows, "summary": summ, "per_d": per_d, "fit": fit,
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
        f"crossover width ~ d^({fit['width_exponent']:.3f} +- {fit['width_exponent_se']:.3f}); docs/theory.md §4: -1/3 "
        f"(chi2/dof of the -1/3 law with its prefactor fitted: {fit['chi2_dof_one_third']:.2f})"])
