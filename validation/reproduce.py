r"""``cascade reproduce NAME``: the figure types of the seed papers, scaled down by default.

``D`` ([D], Defilippis et al.): MSE_gamma vs alpha with the power-law guide and the
per-direction overlaps (their Fig. 1: m = 10, d = 1000, 70 instances, gamma = 1.3,
g = He2/2 + He4/48, T = y/(1+|y|)), and the spectra at alpha = 5, 164, 611, 1638 with the
d = infinity bulk density (their Figs. 2-3: m = 20). The default runs d = 300 with 4 seeds
(about a minute on 2 cores); ``full=True`` runs the papers' sizes (d = 1000, 70 seeds,
about 90 minutes on 2 cores: the simulations go through the resumable sweep store, so an
interrupted run continues where it stopped, and ``jobs``/``scheduler`` spread it out).

``S`` ([S], Wortsman-Zurich et al.): Model C (Gaussian-equivalent, d = 30, q = 2, D = 465,
d1 = 5) for gamma = 1/2, 1, 3/2: NMSE and the per-feature overlaps against log n / log d with
the staircase, and the finite-size collapse of a threshold (Model S machinery, docs/theory.md §4).
``separation``: the true Model C (d = 30), layer-wise against kernel ridge (RBF, polynomial of
degree 2q) and random-feature ridge at the same n, well below d^(2q).

Every figure is written as PNG and PDF next to the Parquet table it was drawn from;
``cascade plot TABLE`` redraws it from the table alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from numerics import predict
from theory import HierarchicalModel

from .compare import compare
from .experiment import table_metadata
from .plots import plot_prediction, plot_spectra
from .simulate import simulate_task
from .sweep import load_results, run_sweep, sweep_spec

__all__ = ["FIGURES", "reproduce", "plot_table", "prediction_grid"]

D_SPECTRUM_ALPHAS = (5.0, 164.0, 611.0, 1638.0)
D_ALPHAS = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 164.0, 300.0, 611.0, 1000.0, 1638.0)


def prediction_grid(model, alphas):
    """The spectral prediction on a fine geometric grid around (and including) the given alphas."""
    grid = np.geomspace(min(alphas) / 2, max(alphas) * 2, 160)
    return predict(model, np.unique(np.concatenate([grid, alphas])))


def reproduce_D(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                d: int | None = None, seeds: int | None = None) -> dict:
    """[D] figures; ``d``/``seeds`` override the preset sizes (for quick checks)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    d0, s0 = (1000, 70) if full else (300, 4)
    d, seeds = d or d0, seeds or s0
    model = HierarchicalModel(m=10)
    spec = sweep_spec({"name": f"reproduce-D-d{d}", "models": [model.describe()],
                       "grid": {"ds": [d], "alphas": list(D_ALPHAS), "seeds": seeds}})
    store = store or outdir / "store"
    run = run_sweep(spec, store, jobs=jobs, scheduler=scheduler, progress=progress)
    if run["failed"]:
        raise RuntimeError(f"reproduce D: {run['failed']} simulation task(s) failed: {run['errors']}")
    rows = load_results(spec, store)
    pred = prediction_grid(model, np.array(D_ALPHAS))
    summary = compare(pred, rows)
    for key, val in table_metadata(model, "comparison").items():
        summary[key] = val
    files = []
    summary.to_parquet(outdir / "reproduce_D.parquet", index=False)
    files += plot_prediction(pred, outdir / "reproduce_D_mse_overlaps", sim=summary)
    files.append(str(outdir / "reproduce_D.parquet"))
    m20 = HierarchicalModel(m=20)
    _, spectra = simulate_task(m20, d, D_SPECTRUM_ALPHAS, seed=0, keep_spectrum=True)
    spec_table = pd.DataFrame([{"alpha": a, "eigenvalue": float(e)} for a in D_SPECTRUM_ALPHAS for e in spectra[a]])
    spec_table["d"] = d
    for key, val in table_metadata(m20, "spectra").items():
        spec_table[key] = val
    spec_table.to_parquet(outdir / "reproduce_D_spectra.parquet", index=False)
    files += plot_spectra(m20, {a: spectra[a] for a in D_SPECTRUM_ALPHAS}, d, outdir / "reproduce_D_spectra")
    files.append(str(outdir / "reproduce_D_spectra.parquet"))
    return {"files": files, "summary": summary, "sweep": run, "d": d, "seeds": seeds}


def reproduce_S(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                d: int | None = None, seeds: int | None = None) -> dict:
    """[S] figure types: NMSE / overlaps / staircase vs log n / log d for several gamma, and a collapse."""
    from theory import CompositionalModel

    from .finite_size import finite_size_study, plot_finite_size
    from .validate_compositional import plot_compositional, run_validate_compositional

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    d = d or (40 if full else 30)
    nseeds = seeds or (8 if full else 2)
    files, tables, runs = [], [], []
    for gamma in ("1/2", "1", "3/2"):
        model = CompositionalModel(d=d, eps="1/2", gamma=gamma)
        sub = outdir / f"S_gamma_{gamma.replace('/', '_')}"
        res = run_validate_compositional(model, ratios=(10, 20, 50, 100, 200), seeds=range(nseeds), outdir=sub,
                                         baseline_cap=2000, jobs=jobs, scheduler=scheduler, store=store or outdir / "store")
        files += [f for f in res["files"] if f.endswith(".png")]
        tables.append(res["table"].assign(gamma=gamma))
        runs.append(res["sweep"])
    table = pd.concat(tables, ignore_index=True)
    table["table_kind"] = "staircase"
    table.to_parquet(outdir / "reproduce_S.parquet", index=False)
    files += plot_S(table, outdir / "reproduce_S")
    study = finite_size_study(HierarchicalModel(m=1, link="He2", preprocessing="clip(y, -1, 3)"),
                              ds=(100, 200, 400, 800) if not full else (250, 500, 1000, 2000),
                              seeds=range(8 if not full else 24))
    study["summary"].to_parquet(outdir / "reproduce_S_collapse.parquet", index=False)
    files += plot_finite_size(study, outdir / "reproduce_S_collapse")
    files += [str(outdir / "reproduce_S.parquet"), str(outdir / "reproduce_S_collapse.parquet")]
    return {"files": files, "summary": table, "d": d, "seeds": nseeds, "fit": study["fit"],
            "sweep": {"computed": sum(x["computed"] for x in runs), "skipped": sum(x["skipped"] for x in runs)}}


def plot_S(table, path) -> list[str]:
    """NMSE vs log n / log d for each gamma (GE, true, true with the Wick-ordered M1), with the NMSE law."""
    from .plots import plt, save

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for j, (gamma, grp) in enumerate(table.groupby("gamma")):
        c = f"C{j}"
        for kind, ls in (("ge", "o-"), ("true", "s:"), ("true-wick", "^-.")):
            g = grp[grp["kind"] == kind].groupby("n").agg(x=("log_d_n", "first"), nmse=("nmse", "mean"),
                                                            rec=("recovered", "mean"), st=("staircase", "first"))
            ax[0].plot(g["x"], g["nmse"], ls, color=c, ms=4, label=f"gamma = {gamma}, {kind}")
            if kind == "ge":
                ax[1].plot(g["x"], g["rec"], "o", color=c, label=f"recovered (GE), gamma = {gamma}")
                ax[1].step(g["x"], g["st"], where="post", color=c, lw=1, label=f"staircase, gamma = {gamma}")
        law = grp[grp["kind"] == "ge"].groupby("n").agg(x=("log_d_n", "first"), law=("nmse_law", "first"))
        ax[0].plot(law["x"], law["law"], "--", color=c, lw=1)
    ax[0].set_yscale("log")
    ax[0].set_xlabel(r"$\log n / \log d$")
    ax[0].set_ylabel("test NMSE (dashed: NMSE law)")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel(r"$\log n / \log d$")
    ax[1].set_ylabel("features recovered")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def reproduce_separation(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                         d: int | None = None, seeds: int | None = None) -> dict:
    """Layer-wise vs kernel baselines on the true Model C at the same n (table + figure)."""
    from theory import CompositionalModel

    from .baselines import kernel_ridge, random_features_ridge, shallow_spectral
    from .compositional import CompositionalSampler

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model = CompositionalModel(d=d or 30, eps="1/2", gamma=1)
    ratios = (20, 50, 200)
    spec = sweep_spec({"name": f"separation-d{model.d}", "models": [model.describe()],
                       "grid": {"alphas": list(ratios), "seeds": [0]}, "options": {"series": ["true"]}})
    run = run_sweep(spec, store or outdir / "store", jobs=jobs, scheduler=scheduler, progress=progress)
    if run["failed"]:
        raise RuntimeError(f"reproduce separation: {run['failed']} task(s) failed: {run['errors']}")
    layerwise = load_results(spec, store or outdir / "store").groupby("n")["nmse"].first()
    rows = []
    for ratio in ratios:
        n = int(ratio * model.D)
        smp = CompositionalSampler(model, 0, "true")
        X, _, y = smp.draw(n)
        Xt, _, yt = smp.draw(4000)
        rows.append({"n": n, "method": "layer-wise (true model)", "nmse": float(layerwise.loc[n]), "n_used": n})
        # the shallow method's k varies with n: one legend entry
        for b in (kernel_ridge(X, y, Xt, yt, "rbf", n_cap=6000 if full else 3000),
                  kernel_ridge(X, y, Xt, yt, "poly", degree=2 * model.q, n_cap=6000 if full else 3000),
                  random_features_ridge(X, y, Xt, yt, P=2000 if full else 1000),
                  shallow_spectral(X, y, Xt, yt, degree=2 * model.q)):
            method = "shallow spectral on x" if b["method"].startswith("shallow") else b["method"]
            rows.append({"n": n, "method": method, "nmse": b["nmse"], "n_used": b["n_used"]})
    table = pd.DataFrame(rows).assign(d=model.d, D=model.D, **table_metadata(model, "separation"))
    table["log_d_n"] = np.log(table["n"]) / np.log(model.d)
    table.to_parquet(outdir / "reproduce_separation.parquet", index=False)
    files = plot_separation(table, outdir / "reproduce_separation") + [str(outdir / "reproduce_separation.parquet")]
    return {"files": files, "summary": table, "d": model.d, "seeds": 1, "sweep": run, "spec": spec}


def plot_separation(table, path) -> list[str]:
    """Test NMSE of the layer-wise method and the baselines against log n / log d."""
    from .plots import plt, save

    d, q = int(table["d"].iloc[0]), json.loads(table["model_json"].iloc[0])["q"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, g in table.groupby("method"):
        ax.plot(g["log_d_n"], g["nmse"], "o-", label=method)
    ax.axvline(2 * q, color="0.6", ls="--", label=r"$n = d^{2q}$ (kernel scale)")
    ax.set_xlabel(r"$\log n / \log d$")
    ax.set_ylabel("test NMSE")
    ax.set_yscale("log")
    ax.set_title(f"depth separation: true Model C, d = {d}, q = {q}")
    ax.legend(fontsize=7)
    return save(fig, path)


FIGURES = {"D": reproduce_D, "S": reproduce_S, "separation": reproduce_separation}


def reproduce(name: str, outdir="cascade-out", **kw) -> dict:
    """Regenerate the figure NAME (one of ``FIGURES``)."""
    if name not in FIGURES:
        raise ValueError(f"name: unknown figure {name!r}; available: {', '.join(FIGURES)}")
    return FIGURES[name](outdir, **kw)


def plot_table(path, out=None) -> list[str]:
    """Redraw a figure from a stored table, dispatching on the model description and table kind
    that every table carries (``model_json``, ``table_kind``): comparison summaries, spectra,
    predictions (Model S), the Model C validate table, ``reproduce_S`` and
    ``reproduce_separation``. Only d = infinity curves are recomputed; no simulation runs."""
    from .experiment import experiment_for, read_table_metadata

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"table: no such file {str(path)!r}")
    df = pd.read_parquet(path)
    out = Path(out) if out else path.with_name(path.stem + "_redrawn")
    desc, kind = read_table_metadata(df)
    return experiment_for(desc).plot_table(df, kind, out)
