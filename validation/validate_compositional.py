"""`cascade validate --model compositional`: Model C, GE and true model side by side, with the
theory (staircase, NMSE law, layer-1 overlaps) and the non-hierarchical baselines."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from numerics import layer1_prediction
from theory import CompositionalModel, nmse_law, staircase, thresholds_n
from theory.symbols import n as n_sym

from .baselines import kernel_ridge, random_features_ridge, shallow_spectral
from .compositional import CompositionalSampler
from .layer1_operator import SampleBlocks
from .experiment import description_digest, table_metadata
from .model_c import SERIES, ModelC
from .plots import plt, save

__all__ = ["run_validate_compositional", "estimate_validate_compositional", "format_compositional", "plot_compositional", "plot_compositional_table",
           "DEFAULT_C_MODEL", "DEFAULT_C_RATIOS"]

DEFAULT_C_MODEL = dict(d=30, q=2, eps="1/2", gamma=1)  # D = 465, d1 = 5
DEFAULT_C_RATIOS = (10, 20, 50, 100, 200)  # n / D


def run_validate_compositional(model: CompositionalModel | None = None, ratios=DEFAULT_C_RATIOS, seeds=(0, 1),
                               outdir="cascade-out", baseline_cap: int = 4000, progress=None, jobs: int = 1,
                               scheduler=None, store=None, client=None) -> dict:
    """Model C end to end: the layer-wise algorithm on the GE, true and Wick-ordered series at
    n = ratio D for each seed, the theory columns, the baselines, a figure and one table.

    With ``store`` (or ``jobs > 1``, or a Dask ``scheduler``) the simulations run as sweep tasks
    (one per seed) through the resumable store, so an interrupted run continues where it stopped.
    With a Dask ``client`` instead, the runs go one after another and each matrix-free layer 1
    keeps its sample blocks on the cluster's workers (docs/scaling.md, "Model C's layer 1 at scale").
    """
    model = model or CompositionalModel(**DEFAULT_C_MODEL)
    outdir = Path(outdir)
    t0 = time.perf_counter()
    D = model.D
    seeds = list(seeds)
    if store is not None or jobs > 1 or scheduler is not None:
        from .sweep import load_results, run_sweep, sweep_spec

        key = description_digest(model.describe(), 12)
        spec = sweep_spec({"name": f"model-C-{key}",
                           "models": [model.describe()], "grid": {"alphas": [float(r) for r in ratios], "seeds": seeds}})
        run = run_sweep(spec, store or outdir / "store", jobs=jobs, scheduler=scheduler, progress=progress is not None)
        if run["failed"]:
            raise RuntimeError(f"Model C: {run['failed']} simulation task(s) failed: {run['errors']}")
        table = load_results(spec, store or outdir / "store")
        sweep = run
        table = table[[c for c in table.columns if c not in ("model", "d", "q", "eps", "gamma", "g_star", "dtype",
                                                             "task", "version")]]
    else:
        sweep = {"computed": len(seeds), "skipped": 0}
        exp = ModelC()
        frames = []
        total, done = len(SERIES) * len(ratios) * len(seeds), 0
        for series in SERIES:
            for ratio in ratios:
                for s in seeds:
                    frames.append(exp.simulate(model, [ratio], s, series=[series], client=client))
                    done += 1
                    if progress is not None:
                        progress(done, total)
        table = pd.concat(frames, ignore_index=True)
    table["staircase"] = [int(staircase(model, int(n))) for n in table["n"]]
    law = nmse_law(model)
    table["nmse_law"] = [float(law.subs(n_sym, int(n))) for n in table["n"]]
    closed = {int(n): layer1_prediction(model, n=[int(n)])["rho2_closed_form"][0] for n in table["n"].unique()}
    table["rho2_closed_form"] = [closed[int(n)][i - 1] for n, i in zip(table["n"], table["i"])]
    # baselines on the true model's data at the largest n (kernel n capped)
    n_b = int(max(ratios) * D)
    smp = CompositionalSampler(model, 0, "true")
    blocks, y = SampleBlocks.draw(smp, n_b, storage="memory")  # x only: Z(x) is never held whole
    X = np.vstack(list(blocks))
    Xt, _, yt = smp.draw(4000)
    base = [kernel_ridge(X, y, Xt, yt, "rbf", n_cap=baseline_cap),
            kernel_ridge(X, y, Xt, yt, "poly", degree=2 * model.q, n_cap=baseline_cap),
            random_features_ridge(X, y, Xt, yt, P=1000),
            shallow_spectral(X, y, Xt, yt, degree=2 * model.q)]
    base = pd.DataFrame(base).assign(n=n_b)
    for key, val in table_metadata(model, "compositional").items():
        table[key] = val
    table["baselines_json"] = base.to_json(orient="records")  # `cascade plot` redraws from this table alone
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    table.to_parquet(outdir / "validate_compositional.parquet", index=False)
    files = plot_compositional(model, table, base, outdir / "validate_compositional")
    files += [str(outdir / "validate_compositional.parquet")]
    return {"table": table, "baselines": base, "files": files, "model": model, "wall_s": time.perf_counter() - t0,
            "sweep": sweep}


def estimate_validate_compositional(model: CompositionalModel, ratios=DEFAULT_C_RATIOS, seeds=(0, 1),
                                    baseline_cap: int = 4000) -> dict:
    """Time and peak memory of :func:`run_validate_compositional` on this machine, from the cost
    model of ``validation.layer1_operator.layerwise_cost`` (per-sample costs timed here, in a
    second or two) summed over the series, sizes and seeds, plus the baselines. Returns
    ``seconds``, ``bytes``, the per-run rows and a ``text`` paragraph.
    """
    import os

    from .layer1_operator import layerwise_cost, unit_costs

    pilot = {"ge": not model.is_identity_link, "true": True}
    rows, total, peak = [], 0.0, 0
    for label, kind, _ in SERIES:
        for ratio in ratios:
            n = int(ratio * model.D)
            c = layerwise_cost(model.d, model.D, model.d1, n, kind, pilot=pilot[kind], q=model.q)
            rows.append({"series": label, "n": n, **c})
            total += c["seconds"] * len(seeds)
            peak = max(peak, c["bytes"])
    n_b = int(max(ratios) * model.D)
    u = unit_costs(model.d, model.q, model.d1, "true")
    cap = min(n_b, baseline_cap)
    base_s = (n_b + 4000 + 200_000) * u["draw"] + (2 * n_b * 1000 * (model.d + 1000) + 2 * cap**3) / u["gemm_flops"]
    total += base_s
    peak = max(peak, 8 * n_b * (model.d + 4) + 8 * cap * cap * 3)
    try:  # this interpreter with its libraries loaded (Linux); the runs add to it
        import re

        peak += int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    worst = max(rows, key=lambda r: r["seconds"])
    mf = sorted({f"{r['series']}: {r['layer1']}, samples {r['storage']}, {r['method']}" for r in rows
                 if r["n"] == worst["n"]})
    text = (f"estimate for Model C at d = {model.d} (D = {model.D}, d1 = {model.d1}), {len(rows)} runs x "
            f"{len(seeds)} seed(s) on {os.cpu_count()} cores: about {_human_s(total)}, peak memory about "
            f"{peak / 2**30:.2f} GiB (largest run n = {worst['n']}: {'; '.join(mf)}). "
            "Per-sample costs timed here; docs/scaling.md compares the model with measured runs.")
    return {"seconds": total, "bytes": peak, "rows": rows, "baselines_s": base_s, "text": text}


def _human_s(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")


def plot_compositional_table(model, table, path) -> list[str]:
    """Redraw from a stored ``validate_compositional`` table (the baselines ride along as JSON)."""
    import io

    base = pd.read_json(io.StringIO(table["baselines_json"].iloc[0])) if "baselines_json" in table.columns else \
        pd.DataFrame(columns=["method", "nmse", "n_used", "n"])
    return plot_compositional(model, table, base, path)


def plot_compositional(model, table, base, path) -> list[str]:
    d = model.d
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    g = table.groupby(["kind", "n"]).agg(nmse=("nmse", "mean"), nmse_sd=("nmse", "std"), x=("log_d_n", "first"),
                                          rec=("recovered", "mean"), stair=("staircase", "first"),
                                          law=("nmse_law", "first")).reset_index()
    names = {"ge": "Gaussian-equivalent", "true": "true model", "true-wick": "true model, Wick-ordered M1"}
    for kind, c in (("ge", "C0"), ("true", "C3"), ("true-wick", "C2")):
        s = g[g["kind"] == kind]
        ax[0].errorbar(s["x"], s["nmse"], yerr=s["nmse_sd"].fillna(0), fmt="o-", color=c, ms=4,
                       label=f"layer-wise ({names[kind]})")
        ax[2].plot(s["x"], s["rec"], "o", color=c, label=f"recovered, {kind}")
    s = g[g["kind"] == "ge"]
    xs = np.linspace(s["x"].min(), s["x"].max(), 100)
    law = nmse_law(model)
    ax[0].plot(xs, [float(law.subs(n_sym, d ** x)) for x in xs], "k--", lw=1, label="NMSE law (docs/theory.md §3)")
    for j, (_, b) in enumerate(base.iterrows()):
        ax[0].plot(np.log(b["n"]) / np.log(d), b["nmse"], marker="sx^v"[j % 4], ls="none", color="0.3",
                   label=f"{b['method']} (n used {b['n_used']})")
    ax[0].set_yscale("log")
    ax[0].set_xlabel(r"$\log n / \log d$")
    ax[0].set_ylabel("test NMSE")
    ax[0].legend(fontsize=7, loc="lower left")
    ge = table[table["kind"] == "ge"].groupby(["i", "n"]).agg(proj=("proj", "mean"), x=("log_d_n", "first"),
                                                               solver=("rho2_solver", "mean"),
                                                               cf=("rho2_closed_form", "first")).reset_index()
    colors = plt.cm.viridis(np.linspace(0, 0.9, model.d1))
    for i, grp in ge.groupby("i"):
        ax[1].plot(grp["x"], grp["proj"], "o", color=colors[i - 1], ms=4, label=f"i={i}" if i <= 6 else None)
        ax[1].plot(grp["x"], grp["solver"], "-", color=colors[i - 1], lw=1.2)
        ax[1].plot(grp["x"], grp["cf"], ":", color=colors[i - 1], lw=1)
    ax[1].set_xlabel(r"$\log n / \log d$")
    ax[1].set_ylabel(r"GE $\rho_i^2$")
    ax[1].set_title("points: simulation; lines: solver; dotted: closed form", fontsize=9)
    ax[1].legend(fontsize=7)
    ns = np.geomspace(table["n"].min(), table["n"].max(), 200)
    ax[2].step(np.log(ns) / np.log(d), staircase(model, ns), where="post", color="k", label=r"staircase $m_{th}(n)$")
    for t in thresholds_n(model):
        ax[2].axvline(np.log(float(t)) / np.log(d), color="0.85", lw=0.8, zorder=0)
    ax[2].set_xlabel(r"$\log n / \log d$")
    ax[2].set_ylabel(r"features recovered (principal $\cos^2 > 1/2$)")
    ax[2].legend(fontsize=7)
    fig.suptitle(f"Model C: d = {model.d}, q = {model.q}, D = {model.D}, d1 = {model.d1}, gamma = {model.gamma}")
    fig.tight_layout()
    return save(fig, path)


def format_compositional(res) -> str:
    t, b, model = res["table"], res["baselines"], res["model"]
    lines = [f"cascade validate --model compositional: d = {model.d}, q = {model.q}, D = {model.D}, d1 = {model.d1}, "
             f"gamma = {model.gamma}, seeds = {t['seed'].nunique()}",
             "per n: test NMSE (GE, true, true with the Wick-ordered M1), NMSE law; GE overlaps rho_i^2 (projection on selected outliers) vs solver"]
    for n, grp in t.groupby("n"):
        ge, tr, tw = grp[grp["kind"] == "ge"], grp[grp["kind"] == "true"], grp[grp["kind"] == "true-wick"]
        top = ge.groupby("i")[["proj", "rho2_solver"]].mean().head(3)
        cells = " ".join(f"{r.proj:.3f}/{r.rho2_solver:.3f}" for r in top.itertuples())
        lines.append(f"  n = {n:7d} (log_d n = {np.log(n) / np.log(model.d):.2f}): NMSE ge {ge['nmse'].mean():.3f}, "
                     f"true {tr['nmse'].mean():.3f}, true-wick {tw['nmse'].mean():.3f}, law {grp['nmse_law'].iloc[0]:.3f}; "
                     f"recovered ge {ge['recovered'].mean():.1f} true {tr['recovered'].mean():.1f} "
                     f"true-wick {tw['recovered'].mean():.1f} (staircase {grp['staircase'].iloc[0]}); "
                     f"rho2 1..3 sim/solver {cells}")
    lines.append("baselines on x (true model, n = %d): " % b["n"].iloc[0] + "; ".join(
        f"{r.method}: NMSE {r.nmse:.3f} (n used {r.n_used})" for r in b.itertuples()))
    lines.append(f"wall time {res['wall_s']:.1f} s; wrote: " + ", ".join(res["files"]))
    return "\n".join(lines)
