"""The main job: a default Model S experiment, theory next to simulation, figure and table."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from numerics import predict
from theory import HierarchicalModel

from .compare import compare
from .experiment import add_provenance, table_metadata
from .plots import plot_prediction, plot_spectrum
from .progress import Progress
from .simulate import _check as check_simulation
from .simulate import simulate_task

__all__ = ["run_validate", "DEFAULT_D", "DEFAULT_ALPHAS", "DEFAULT_SEEDS"]

DEFAULT_D = 600
DEFAULT_ALPHAS = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0)
DEFAULT_SEEDS = tuple(range(6))


def run_validate(model: HierarchicalModel | None = None, d: int = DEFAULT_D, alphas=DEFAULT_ALPHAS,
                 seeds=DEFAULT_SEEDS, outdir="cascade-out", dtype=np.float64, progress: bool = True) -> dict:
    """Simulate, predict, compare; write ``validate.png/.pdf``, ``spectrum.png/.pdf`` and
    ``validate.parquet`` (per-seed rows) + ``validate_summary.parquet`` into ``outdir``."""
    model = model or HierarchicalModel()
    alphas = check_simulation(model, d, alphas, 4096)  # refuse bad sizes before the d = infinity theory runs
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: need at least one seed")
    outdir = Path(outdir)
    t0 = time.perf_counter()
    pred_grid = predict(model, np.unique(np.concatenate([np.geomspace(alphas.min() / 2, alphas.max() * 2, 120), alphas])))
    bar = Progress(len(seeds), "simulating", enabled=progress)
    frames, spectrum = [], None
    a_spec = float(alphas[np.argmin(np.abs(np.log(alphas / 20.0)))])
    for i, s in enumerate(seeds):
        df, spec = simulate_task(model, d, alphas, s, dtype=dtype, keep_spectrum=(i == 0))
        frames.append(df)
        if i == 0:
            spectrum = spec[a_spec]
        bar(i + 1)
    sim = pd.concat(frames, ignore_index=True)
    add_provenance(sim, model.describe(), np.dtype(dtype).name)
    summary = compare(pred_grid, sim)
    for key, val in table_metadata(model, "comparison").items():  # `cascade plot` redraws from the table alone
        summary[key] = val
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    files = plot_prediction(pred_grid, outdir / "validate", sim=summary)
    files += plot_spectrum(model, a_spec, spectrum, d, outdir / "spectrum")
    sim.to_parquet(outdir / "validate.parquet", index=False)
    summary.to_parquet(outdir / "validate_summary.parquet", index=False)
    files += [str(outdir / "validate.parquet"), str(outdir / "validate_summary.parquet")]
    return {"summary": summary, "simulation": sim, "prediction": pred_grid, "files": files,
            "wall_s": time.perf_counter() - t0, "d": d, "model": model}


def format_report(res: dict, kmax: int = 6) -> str:
    s = res["summary"]
    model, d = res["model"], res["d"]
    lines = [f"cascade validate: Model S {model.describe()}, d = {d}, seeds = {int(s['n_seeds'].iloc[0])}",
             "q_k: theory (d = inf) vs simulation (mean +- sem of the best-match overlap); '*' = outside tolerance",
             "MSE: optimal-shrinkage form sum a_k^2 (1 - q_k^2), simulation from subspace projections"]
    head = f"{'alpha':>7} " + " ".join(f"{'q_' + str(k) + ' th/sim':>17}" for k in range(1, kmax + 1)) + \
        f" {'outliers th/sim':>16} {'MSE th':>8} {'MSE sim':>15}"
    lines.append(head)
    for a, grp in s.groupby("alpha"):
        grp = grp.set_index("k")
        cells = []
        for k in range(1, min(kmax, len(grp)) + 1):
            r = grp.loc[k]
            flag = " " if r["agrees"] else "*"
            cells.append(f"{r['q_theory']:.3f}/{r['q_sim']:.3f}±{r['q_sem']:.3f}{flag}".rjust(17))
        r = grp.iloc[0]
        lines.append(f"{a:7.4g} " + " ".join(cells) + f" {int(r['n_outliers_theory']):>8d}/{r['k_hat']:<7.2f}"
                     f" {r['mse_theory']:8.4f} {r['mse_sim']:8.4f}±{r['mse_sem']:.4f}")
    n_ok, n = int(s["agrees"].sum()), len(s)
    n_edge = int(s["tol_basis"].isin(["edge", "edge+branch", "boundary"]).sum())
    is_out = s["region"] == "outlier"
    n_clt = int(s["tol_basis"].isin(["clt", "clt+mixing", "clt+branch"]).sum())
    n_win = int((s["tol_basis"] == "window").sum())
    n_heur_out = int(((s["tol_basis"] == "heuristic") & is_out).sum())
    coupled = res["prediction"].settings.get("solver") == "matrix"
    law = "branch CLT + bias" if coupled else "CLT + outlier-mixing law" if model.m > 1 else "CLT bound"
    lines.append(f"{n_ok}/{n} (alpha, k) points within the finite-size tolerance (outlier: the 95% {law} for "
                 f"{n_clt} points, d^-1/2 + 2 sem for {n_heur_out}; critical window: the 95% spiked-GOE law for "
                 f"{n_win} points; bulk and window: the 95% edge "
                 f"bound q + R_k c/d for {n_edge} points ({int((s['tol_basis'] == 'boundary').sum())} of them in the "
                 f"boundary regime), the heuristic one for "
                 f"{int(((s['tol_basis'] == 'heuristic') & ~is_out).sum())}; docs/theory.md §4.1-4.5)")
    thr = res["prediction"].thresholds
    lines.append("thresholds alpha_k: " + ", ".join(f"{t:.4g}" for t in thr))
    lines.append(f"wall time {res['wall_s']:.1f} s; wrote: " + ", ".join(res["files"]))
    return "\n".join(lines)
