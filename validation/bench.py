"""`cascade bench`: speed and memory figures, each reported next to its baseline from the same run."""
from __future__ import annotations

import json
import time

import numpy as np

__all__ = ["run_bench"]


def _timeit(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_predict(m=20, n_alphas=200):
    from numerics import predict
    from numerics.label_law import _CACHE
    from theory import HierarchicalModel

    model = HierarchicalModel(m=m)
    alphas = np.geomspace(1, 2000, n_alphas)
    _CACHE.clear()
    t0 = time.perf_counter()
    first = predict(model, alphas)
    cold = time.perf_counter() - t0
    warm = _timeit(lambda: predict(model, alphas))
    return {"name": f"predict m={m}, {n_alphas} alphas", "cold_s": cold, "warm_s": warm,
            "setup_s": first.settings["setup_s"], "n_atoms": first.settings["n_atoms"]}


def bench_sweep(quick: bool = False) -> list[dict]:
    """Wall time of one sweep on 1 and 2 local workers and on a 2-worker Dask LocalCluster
    (1 BLAS thread per worker everywhere), as speed-ups measured in this run."""
    import tempfile

    from .sweep import run_sweep, sweep_spec

    seeds = 4 if quick else 8
    spec = sweep_spec({"name": "bench", "models": [{"m": 10}],
                       "grid": {"ds": [300 if quick else 500], "alphas": [20, 100], "seeds": seeds}})
    times = {}
    for label, kw in (("local x1", {"jobs": 1}), ("local x2", {"jobs": 2})):
        with tempfile.TemporaryDirectory() as store:
            times[label] = run_sweep(spec, store, progress=False, blas_threads=1, **kw)["wall_s"]
    try:
        from dask.distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            for label in ("dask x2 (cold workers)", "dask x2"):  # the first run pays the workers' imports
                with tempfile.TemporaryDirectory() as store:
                    times[label] = run_sweep(spec, store, scheduler=cluster.scheduler_address, progress=False)["wall_s"]
    except ImportError:  # pragma: no cover - the dask extra is optional
        pass
    row = {"name": f"sweep of {len(spec.tasks())} tasks (d = {spec.ds[0]}, alpha up to 100)"}
    row.update({f"{k} s": v for k, v in times.items()})
    row["speedup local x2 / x1"] = times["local x1"] / times["local x2"]
    if "dask x2" in times:
        row["speedup dask x2 / local x1"] = times["local x1"] / times["dask x2"]
    return [row]


def run_bench(args) -> str:
    rows = [bench_predict(m=10 if args.quick else 20, n_alphas=50 if args.quick else 200)]
    if getattr(args, "sweep", False):
        rows.extend(bench_sweep(quick=args.quick))
    try:
        from .simulate import bench_accumulation

        rows.extend(bench_accumulation(quick=args.quick))
    except ImportError:  # pragma: no cover - the simulation layer is optional here
        pass
    if args.format == "json":
        return json.dumps(rows, indent=2)
    lines = ["cascade bench (2-core figures vary with load; ratios are measured in the same run)"]
    for r in rows:
        lines.append("  " + r.pop("name") + ": " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                                             for k, v in r.items()))
    return "\n".join(lines)
