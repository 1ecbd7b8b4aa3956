"""`cascade bench`: speed and memory figures, each reported next to its baseline from the same run."""
from __future__ import annotations

import json
import time

import numpy as np

__all__ = ["run_bench"]


def best_time(fn, repeat=3):
    """The best wall time of ``repeat`` calls of fn, in seconds (the least disturbed by load)."""
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_predict(m=20, n_alphas=200):
    from numerics import predict
    from numerics.label_law import clear_cache
    from theory import HierarchicalModel

    model = HierarchicalModel(m=m)
    alphas = np.geomspace(1, 2000, n_alphas)
    clear_cache()
    t0 = time.perf_counter()
    first = predict(model, alphas)
    cold = time.perf_counter() - t0
    warm = best_time(lambda: predict(model, alphas))
    return {"name": f"predict m={m}, {n_alphas} alphas", "cold_s": cold, "warm_s": warm,
            "setup_s": first.settings["setup_s"], "n_atoms": first.settings["n_atoms"]}


def bench_large_m(quick: bool = False) -> list[dict]:
    """``predict`` on 200 alphas (1 to 1e4) from a cold cache at m = 20, 1000, 10^4 and infinity
    (quick: 50 alphas, m = 10 and 100), with the peak of traced memory, and the cost ratio of each m
    to the smallest one (docs/numerics.md §"Large m": the target is m = 1000 within 10x m = 20)."""
    import tracemalloc

    from numerics import predict
    from numerics.label_law import clear_cache
    from theory import HierarchicalModel

    ms = (10, 100) if quick else (20, 1000, 10_000, "inf")
    alphas = np.geomspace(1, 1e4, 50 if quick else 200)
    rows, base = [], None
    for m in ms:
        clear_cache()
        tracemalloc.start()
        t0 = time.perf_counter()
        p = predict(HierarchicalModel(m=m), alphas)
        wall = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        base = base or wall
        rows.append({"name": f"predict m={m}, {alphas.size} alphas (cold)", "wall_s": wall,
                     "ratio_to_m=" + str(ms[0]): wall / base, "peak_traced_MB": peak / 2**20,
                     "exact_directions": p.settings.get("exact_directions", m), "directions": p.q.shape[1]})
    clear_cache()
    return rows


def bench_state_evolution(quick: bool = False) -> list[dict]:
    """The Bayes-optimal state evolution of the [D] default model (m = 10) on 50 alphas (10 with
    ``quick``), against ``predict`` on the same grid, as a ratio measured in this run; with
    Delta = 0 (the default model: noiseless labels) and Delta = 0.1."""
    from numerics import predict
    from numerics.bayes import state_evolution
    from theory import HierarchicalModel

    rows = []
    n = 10 if quick else 50
    alphas = np.geomspace(0.2, 2000, n)
    for delta in ("0",) if quick else ("0", "1/10"):
        model = HierarchicalModel(delta=delta)
        t0 = time.perf_counter()
        predict(model, alphas)
        t_pred = time.perf_counter() - t0
        t0 = time.perf_counter()
        se = state_evolution(model, alphas, n_samples=256 if quick else None)
        t_se = time.perf_counter() - t0
        rows.append({"name": f"state evolution m=10, Delta={delta}, {n} alphas", "se_s": t_se, "predict_s": t_pred,
                     "ratio_se_over_predict": t_se / t_pred, "iterations": int(se.iterations.sum()),
                     "draws": se.settings["n_draws"]})
    return rows


def bench_amp(quick: bool = False) -> list[dict]:
    """One AMP iteration (docs/bayes.md section 11) at d = 1000, alpha = 100, m = 4, Delta = 0.1
    (d = 300, alpha = 20 with ``quick``), as a ratio to one pass of X^T v over the same data (the
    floor an iteration cannot beat: it needs X W_hat, X^T g and their two squared-X
    counterparts), measured in this run. The iteration time is the difference of runs with 3
    and 1 iterations (data and start cancel)."""
    from theory import HierarchicalModel

    from .amp import amp_memory, run_amp
    from .simulate import SampleStream

    d, alpha = (300, 20.0) if quick else (1000, 100.0)
    model = HierarchicalModel(m=4, delta="1/10")
    n = int(round(alpha * d))
    X, _ = SampleStream(model, d, 0).take(n)
    v = np.ones(n)
    t_pass = best_time(lambda: X.T @ v)
    del X
    t0 = time.perf_counter()
    run_amp(model, d, alpha, 0, "informed", max_iter=1, tol=1e-12)
    t1 = time.perf_counter()
    run_amp(model, d, alpha, 0, "informed", max_iter=3, tol=1e-12)
    t3 = time.perf_counter() - t1
    per_iter = (t3 - (t1 - t0)) / 2
    return [{"name": f"AMP iteration d={d}, alpha={alpha:g}, m=4, Delta=0.1", "iteration_s": per_iter,
             "xtv_pass_s": t_pass, "ratio_iteration_over_xtv": per_iter / t_pass,
             "memory_model_GB": amp_memory(model, d, alpha) / 1e9}]


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


def bench_pipeline_c(quick: bool = False) -> list[dict]:
    """Wall time and peak memory of one Model C pipeline run (d = 30, n = 93 000, true and GE),
    each in a fresh process (this one already holds other benchmarks). The layer-1 product's
    throughput is in :func:`bench_layer1_scale`."""
    import subprocess
    import sys

    # VmHWM (Linux) is the peak of this process image; ru_maxrss would carry the parent's peak across fork
    code = ("import re, time; from theory import CompositionalModel; "
            "from validation.compositional import run_layerwise; t = time.perf_counter(); "
            "r = run_layerwise(CompositionalModel(d=30, eps='1/2', gamma=1), n=93000, seed=0, kind='{k}'); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()); "
            "print(time.perf_counter() - t, int(hwm.group(1)) / 1024 if hwm else float('nan'))")
    rows = []
    for kind in ("true", "ge"):
        out = subprocess.run([sys.executable, "-c", code.format(k=kind)], capture_output=True, text=True, check=True)
        wall, rss = (float(v) for v in out.stdout.split()[-2:])
        rows.append({"name": f"Model C pipeline d=30 (D=465), n=93000, {kind}", "wall_s": wall, "peak_rss_MB": rss})
    return rows


def bench_layer1_scale(quick: bool = False, dask: bool = True) -> list[dict]:
    """Model C's layer 1 at scale (validation.layer1_operator), each figure against a baseline
    measured in this run: a block product per vector against the raw two GEMMs of the same
    shapes (its fraction of BLAS throughput); a pass over re-drawn samples against held ones;
    ARPACK against block Krylov, held and re-drawn; and the product on a 2-worker Dask
    LocalCluster against one local process (1 BLAS thread everywhere)."""
    from threadpoolctl import threadpool_limits

    from numerics.quadratic_chaos import vec_to_sym
    from theory import CompositionalModel

    from .compositional import CompositionalSampler
    from .layer1_operator import Layer1Operator, SampleBlocks, krylov_block, top_eigenpairs

    d, ratio = (30, 30) if quick else (60, 40)
    model = CompositionalModel(d=d, eps="1/2", gamma=1)
    n, k = ratio * model.D, model.d1
    b = krylov_block(k)
    held, y = SampleBlocks.draw(CompositionalSampler(model, 0, "true"), n, storage="memory")
    redrawn, _ = SampleBlocks.draw(CompositionalSampler(model, 0, "true"), n, storage="redraw")
    V = np.random.default_rng(1).standard_normal((model.D, b))
    X = np.vstack(list(held))
    Mcat = vec_to_sym(V, d).transpose(1, 0, 2).reshape(d, b * d)

    def raw():  # the two GEMMs of partial_product, nothing else
        return X.T @ (X @ Mcat)

    op_h, op_r, op_w = Layer1Operator(held, y), Layer1Operator(redrawn, y), Layer1Operator(held, y, "wick")
    t_raw, t_h, t_r = best_time(raw), best_time(lambda: op_h @ V), best_time(lambda: op_r @ V)
    t_w = best_time(lambda: op_w @ V)
    t_1 = best_time(lambda: op_h @ V[:, :1])
    rows = [{"name": f"layer-1 block product d={d} (D={model.D}), n={n}, {b} vectors",
             "ours_s": t_h, "raw_two_gemm_s": t_raw, "fraction_of_blas": t_raw / t_h,
             "one_vector_s": t_1, "per_vector_gain_of_the_block": b * t_1 / t_h,
             "redrawn_s": t_r, "redrawn_over_held": t_r / t_h, "wick_s": t_w, "wick_over_plain": t_w / t_h}]
    for storage, op in (("held", op_h), ("redrawn", op_r)):
        for method in ("arpack", "block_krylov"):
            t = time.perf_counter()
            _, _, info = top_eigenpairs(op, k, method)
            rows.append({"name": f"layer-1 top {k} eigenpairs, samples {storage}, {method}",
                         "wall_s": time.perf_counter() - t, "passes": info["products"], "vectors": info["vectors"],
                         "residual": info["residual"]})
    if dask:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - the dask extra is optional
            return rows
        # a product long enough (about a second on one thread) for the round trips not to dominate
        n_big = 5 * n
        big, y_big = SampleBlocks.draw(CompositionalSampler(model, 0, "true"), n_big, storage="redraw")
        op_b = Layer1Operator(SampleBlocks(d, [n_big], arrays=[np.vstack(list(big))]), y_big)
        with threadpool_limits(1):
            t_local = best_time(lambda: op_b @ V)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            # Dask's nanny starts each worker with OMP/OPENBLAS/MKL_NUM_THREADS = 1
            op_d = Layer1Operator(big, y_big, client=client)
            op_d @ V  # the workers draw and keep their blocks
            t_dask = best_time(lambda: op_d @ V)
        rows.append({"name": f"layer-1 product ({b} vectors) on Dask, 2 workers x 1 thread vs 1 local thread "
                             f"(d={d}, n={n_big})",
                     "local_1_thread_s": t_local, "dask_2_workers_s": t_dask, "speedup": t_local / t_dask})
    return rows


def run_bench(args) -> str:
    rows = [bench_predict(m=10 if args.quick else 20, n_alphas=50 if args.quick else 200)]
    rows.extend(bench_large_m(quick=args.quick))
    rows.extend(bench_state_evolution(quick=args.quick))
    rows.extend(bench_amp(quick=args.quick))
    if getattr(args, "sweep", False):
        rows.extend(bench_sweep(quick=args.quick))
    rows.extend(bench_pipeline_c(quick=args.quick))
    rows.extend(bench_layer1_scale(quick=args.quick))
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
