r"""``cascade reproduce NAME``: the figure types of the seed papers, scaled down by default.

``D`` ([D], Defilippis et al.): MSE_gamma vs alpha with the power-law guide and the
per-direction overlaps (their Fig. 1: m = 10, d = 1000, 70 instances, gamma = 1.3,
g = He2/2 + He4/48, T = y/(1+|y|)), and the spectra at alpha = 5, 164, 611, 1638 with the
d = infinity bulk density (their Figs. 2-3: m = 20). The default runs d = 300 with 4 seeds
(about a minute on 2 cores); ``full=True`` runs the papers' sizes (d = 1000, 70 seeds,
about 90 minutes on 2 cores: the simulations go through the resumable sweep store, so an
interrupted run continues where it stopped, and ``jobs``/``scheduler`` spread it out).

The figures of [S] (NMSE vs log n / log d, staircase) and the depth separation need the
Model C simulation, which this release does not have yet.

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
from .plots import plot_prediction, plot_spectra
from .simulate import simulate_task
from .sweep import load_results, run_sweep, sweep_spec

__all__ = ["FIGURES", "reproduce", "plot_table"]

D_SPECTRUM_ALPHAS = (5.0, 164.0, 611.0, 1638.0)
D_ALPHAS = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 164.0, 300.0, 611.0, 1000.0, 1638.0)


def _prediction_grid(model, alphas):
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
    pred = _prediction_grid(model, np.array(D_ALPHAS))
    summary = compare(pred, rows)
    summary["model_json"] = json.dumps(model.describe())
    files = []
    summary.to_parquet(outdir / "reproduce_D.parquet", index=False)
    files += plot_prediction(pred, outdir / "reproduce_D_mse_overlaps", sim=summary)
    files.append(str(outdir / "reproduce_D.parquet"))
    m20 = HierarchicalModel(m=20)
    _, spectra = simulate_task(m20, d, D_SPECTRUM_ALPHAS, seed=0, keep_spectrum=True)
    spec_table = pd.DataFrame([{"alpha": a, "eigenvalue": float(e)} for a in D_SPECTRUM_ALPHAS for e in spectra[a]])
    spec_table["d"] = d
    spec_table["model_json"] = json.dumps(m20.describe())
    spec_table.to_parquet(outdir / "reproduce_D_spectra.parquet", index=False)
    files += plot_spectra(m20, {a: spectra[a] for a in D_SPECTRUM_ALPHAS}, d, outdir / "reproduce_D_spectra")
    files.append(str(outdir / "reproduce_D_spectra.parquet"))
    return {"files": files, "summary": summary, "sweep": run, "d": d, "seeds": seeds}


FIGURES = {"D": reproduce_D}


def reproduce(name: str, outdir="cascade-out", **kw) -> dict:
    """Regenerate the figure NAME (one of ``FIGURES``)."""
    if name not in FIGURES:
        raise ValueError(f"name: unknown figure {name!r}; available: {', '.join(FIGURES)}")
    return FIGURES[name](outdir, **kw)


def plot_table(path, out=None) -> list[str]:
    """Redraw a figure from a stored table: a comparison summary (``validate_summary.parquet``,
    ``reproduce_D.parquet``) or a spectra table (``reproduce_D_spectra.parquet``). Only the
    d = infinity curves are recomputed (they take a second); no simulation runs."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"table: no such file {str(path)!r}")
    df = pd.read_parquet(path)
    if "model_json" not in df.columns:
        raise ValueError("table: it carries no model_json column; redraw works on tables written by "
                         "cascade validate / reproduce")
    model = HierarchicalModel.from_description(json.loads(df["model_json"].iloc[0]))
    out = Path(out) if out else path.with_name(path.stem + "_redrawn")
    if {"alpha", "eigenvalue", "d"} <= set(df.columns) and "q_sim" not in df.columns:
        spectra = {a: g["eigenvalue"].to_numpy() for a, g in df.groupby("alpha")}
        return plot_spectra(model, spectra, int(df["d"].iloc[0]), out)
    need = {"alpha", "k", "q_sim", "q_sem", "mse_sim", "mse_sem"}
    if not need <= set(df.columns):
        raise ValueError(f"table: expected the columns {sorted(need)} of a comparison summary")
    pred = _prediction_grid(model, np.unique(df["alpha"].to_numpy()))
    return plot_prediction(pred, out, sim=df)
