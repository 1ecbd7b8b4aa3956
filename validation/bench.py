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


def run_bench(args) -> str:
    rows = [bench_predict(m=10 if args.quick else 20, n_alphas=50 if args.quick else 200)]
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
