r"""Sweeps: a declarative spec, independent hashed tasks, a resumable Parquet store, and
local or Dask executors.

A spec (TOML, or the same fields from CLI flags) lists model descriptions (all Model S or all
Model C) and a grid::

    name = "demo"                 # the store partition
    [[models]]                    # one table per model (fields of theory.HierarchicalModel)
    gamma = "13/10"
    m = 10
    [grid]
    ds = [200, 400]
    alphas = [5, 20, 50]          # or "1:100:10log"
    seeds = 4                     # 0..3, or an explicit list
    [options]                     # optional
    dtype = "float64"             # or "float32"
    chunk = 4096
    estimator = "spectral"        # Model S: or "amp" (validation.amp, spectral start)
    max_iter = 80                 # AMP only: the iteration cap
    damping = 0.8                 # AMP only: the damping (run_amp's default when absent)

One *task* is (model, d, seed) over the whole alpha grid, run by the model's experiment
adapter (``validation.experiment``): for Model S ``simulate_task`` feeds every alpha from one
nested sample stream (docs/conventions.md), so splitting alphas into separate tasks would
only repeat the samples of the smaller ones; for Model C (``model = "C"``, no ``grid.ds``: the
model carries d) the alphas are n/D and the task runs the layer-wise algorithm on the GE, true
and Wick-ordered series. Its identity is the
SHA-256 of its canonical JSON (model fields, d, seed, alphas, dtype, chunk, package
version), so the same task always maps to the same file.

Store layout: ``STORE/NAME/tasks/HASH.parquet`` (rows of the task, written to a
temporary file in the same folder and renamed: a reader never sees half a file) and
``STORE/NAME/failed/HASH.json`` (the error of a failed task; retried on the next run).
A restarted sweep skips every task whose Parquet file exists. Temporaries are named
``.tmp-*.partial``: no reader of the store looks at them, and a restart deletes them.

Examples
--------
>>> import tempfile
>>> spec = sweep_spec({"name": "doc", "models": [{"gamma": 1, "m": 2}],
...                    "grid": {"ds": [40], "alphas": [10, 30], "seeds": 2}})
>>> [t.d for t in spec.tasks()], len({t.key for t in spec.tasks()})
([40, 40], 2)
>>> store = tempfile.mkdtemp()
>>> run_sweep(spec, store, progress=False)["computed"], run_sweep(spec, store, progress=False)["skipped"]
(2, 2)
>>> len(load_results(spec, store))      # one row per (task, alpha, k)
8
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from theory import HierarchicalModel, __version__
from theory.model import sample_ratios

from .experiment import add_provenance, model_from_description
from .grids import parse_grid
from .progress import Progress

__all__ = ["SweepSpec", "Task", "sweep_spec", "load_spec", "run_sweep", "sweep_status", "load_results",
           "execute_task"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Task:
    """One (model, d, seed) simulation over an alpha grid."""

    model: dict
    d: int
    seed: int
    alphas: tuple
    dtype: str = "float64"
    chunk: int = 4096
    series: tuple = ()   # Model C: the series to run (labels of validation.model_c.SERIES); () = all
    estimator: str = "spectral"   # Model S: "spectral" (simulate_task) or "amp" (validation.amp)
    amp: tuple = ()               # AMP: (name, value) settings of run_amp (max_iter, damping); () = defaults

    def canonical(self) -> str:
        doc = {"model": self.model, "d": self.d, "seed": self.seed, "alphas": list(self.alphas),
               "dtype": self.dtype, "chunk": self.chunk, "version": __version__}
        if self.series:  # only when set, so the keys of existing stores do not change
            doc["series"] = list(self.series)
        if self.estimator != "spectral":
            doc["estimator"] = self.estimator
        if self.amp:
            doc["amp"] = dict(self.amp)
        return json.dumps(doc, sort_keys=True)

    @property
    def key(self) -> str:
        """Content hash (16 hex digits) naming the task's file in the store."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    models: tuple
    ds: tuple
    alphas: tuple
    seeds: tuple
    dtype: str = "float64"
    chunk: int = 4096
    series: tuple = ()
    estimator: str = "spectral"
    amp: tuple = ()
    source: dict = field(default_factory=dict, compare=False)

    def tasks(self) -> list[Task]:
        out = []
        for m in self.models:
            ds = (int(m["d"]),) if m["model"] == "C" else self.ds  # Model C carries its own d
            out += [Task(model=m, d=d, seed=s, alphas=self.alphas, dtype=self.dtype, chunk=self.chunk,
                         series=self.series, estimator=self.estimator, amp=self.amp)
                    for d in ds for s in self.seeds]
        return out


def _alphas(value):
    if isinstance(value, str):
        return tuple(sorted(float(a) for a in parse_grid(value, "grid.alphas")))
    return tuple(sorted(float(a) for a in sample_ratios(value, "grid.alphas")))


def _ints(value, name, lo):
    vals = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not isinstance(vals, (list, tuple)) or not vals or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo for v in vals):
        raise ValueError(f"{name}: expected a non-empty list of integers >= {lo}, got {value!r}")
    return tuple(int(v) for v in vals)


def sweep_spec(doc: dict) -> SweepSpec:
    """Validate a spec given as a dict (the parsed TOML); every model is built once to check it."""
    if not isinstance(doc, dict):
        raise TypeError(f"spec: expected a table, got {type(doc).__name__}")
    unknown = set(doc) - {"name", "models", "grid", "options"}
    if unknown:
        raise ValueError(f"spec: unknown key(s) {sorted(unknown)}; valid: name, models, grid, options")
    name = doc.get("name")
    if not isinstance(name, str) or not name or not set(name) <= _NAME_OK:
        raise ValueError(f"name: expected a non-empty name of letters, digits, '-', '_', '.', got {name!r}")
    models = doc.get("models")
    if isinstance(models, dict):
        models = [models]
    if not isinstance(models, list) or not models:
        raise ValueError("models: expected at least one [[models]] table")
    descs = []
    for i, m in enumerate(models):
        try:
            model = model_from_description(m)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"models[{i}]: {exc}") from None
        if isinstance(model, HierarchicalModel) and not model.is_numeric:
            raise ValueError(f"models[{i}]: a sweep needs a numeric gamma and a finite m")
        descs.append(model.describe())
    kinds = {d["model"] for d in descs}
    if len(kinds) > 1:
        raise ValueError("models: one sweep holds models of one kind (S or C); split them into two sweeps")
    grid = doc.get("grid", {})
    if not isinstance(grid, dict) or set(grid) - {"ds", "alphas", "seeds"}:
        raise ValueError("grid: expected a table with ds, alphas and seeds")
    needed = ("ds", "alphas", "seeds") if kinds == {"S"} else ("alphas", "seeds")
    for key in needed:
        if key not in grid:
            raise ValueError(f"grid.{key}: missing")
    if kinds == {"C"}:
        if "ds" in grid:
            raise ValueError("grid.ds: Model C carries its dimension in the model (d); its alphas are n/D")
        ds = tuple(sorted({int(d["d"]) for d in descs}))
    else:
        ds = _ints(grid["ds"], "grid.ds", 2)
    seeds = grid["seeds"]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"grid.seeds: a number of seeds (0..N-1) must be >= 1, got {seeds}; "
                             "list seed ids as [0, 5]")
        seeds = tuple(range(seeds))
    else:
        seeds = _ints(seeds, "grid.seeds", 0)
    opts = doc.get("options", {})
    if not isinstance(opts, dict) or set(opts) - {"dtype", "chunk", "series", "estimator", "max_iter", "damping"}:
        raise ValueError("options: expected a table with dtype, chunk, series (Model C), estimator, max_iter and "
                         "damping (Model S, AMP)")
    estimator = opts.get("estimator", "spectral")
    if estimator not in ("spectral", "amp") or (estimator == "amp" and kinds != {"S"}):
        raise ValueError(f"options.estimator: Model S sweeps run 'spectral' (default) or 'amp', got {estimator!r}")
    series = tuple(opts.get("series", ()))
    if series:
        from .model_c import SERIES

        labels = [s[0] for s in SERIES]
        if kinds != {"C"} or not set(series) <= set(labels):
            raise ValueError(f"options.series: Model C series are {labels}, got {list(series)!r}")
    dtype = opts.get("dtype", "float64")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"options.dtype: must be 'float64' or 'float32', got {dtype!r}")
    chunk = _ints(opts.get("chunk", 4096), "options.chunk", 1)[0]
    if estimator == "amp" and dtype != "float64":
        raise ValueError("options.dtype: AMP runs in float64 only; drop dtype or set it to 'float64'")
    amp = {}
    for key in ("max_iter", "damping"):
        if key in opts and estimator != "amp":
            raise ValueError(f"options.{key}: a setting of AMP; it needs estimator = 'amp'")
    if "max_iter" in opts:
        amp["max_iter"] = _ints(opts["max_iter"], "options.max_iter", 1)[0]
    if "damping" in opts:
        damp = opts["damping"]
        if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not 0 <= damp < 1:
            raise ValueError(f"options.damping: must be a number in [0, 1), got {damp!r}")
        amp["damping"] = float(damp)
    for i, desc in enumerate(descs):
        if desc["model"] == "S" and int(desc["m"]) > min(ds):
            raise ValueError(f"grid.ds: every d must be >= m = {desc['m']} of models[{i}]")
    return SweepSpec(name=name, models=tuple(descs), ds=ds, alphas=_alphas(grid["alphas"]), seeds=seeds,
                     dtype=dtype, chunk=chunk, series=series, estimator=estimator,
                     amp=tuple(sorted(amp.items())), source=doc)


def load_spec(path) -> SweepSpec:
    """Read a TOML spec file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"spec: no such file {str(path)!r}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"spec: {path} is not valid TOML ({exc})") from None
    return sweep_spec(doc)


# --- one task ------------------------------------------------------------------------
def execute_task(task: Task, blas_threads: int | None = 1) -> pd.DataFrame:
    """Run one task (BLAS threads limited, so parallel workers do not oversubscribe the cores)."""
    from threadpoolctl import threadpool_limits

    from .experiment import experiment_for

    model = model_from_description(task.model)
    with threadpool_limits(limits=blas_threads):
        extra = {}
        if task.series:
            from .model_c import SERIES

            extra["series"] = [s for s in SERIES if s[0] in task.series]
        if task.estimator != "spectral":
            extra["estimator"] = task.estimator
        extra.update(dict(task.amp))
        df = experiment_for(task.model).simulate(model, task.alphas, task.seed, d=task.d, chunk=task.chunk,
                                                 dtype=np.float32 if task.dtype == "float32" else np.float64, **extra)
    add_provenance(df, task.model, task.dtype, task=task.key)
    return df


def _guarded(task: Task, blas_threads):
    """Worker entry: (key, frame or None, error text or None, seconds)."""
    t0 = time.perf_counter()
    try:
        return task.key, execute_task(task, blas_threads), None, time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a failed task is recorded, the sweep goes on
        return task.key, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}", time.perf_counter() - t0


# --- the store -----------------------------------------------------------------------
def _dirs(spec, store):
    root = Path(store) / spec.name
    return root / "tasks", root / "failed"


def _atomic_write(path: Path, write):
    # the temporary's name ends in .partial, never in the store's own suffixes, so no reader
    # (nor a glob for "*.parquet") can take a half-written file for a result
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".partial")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save(spec, store, key, df, error):
    tasks_dir, failed_dir = _dirs(spec, store)
    if df is not None:
        _atomic_write(tasks_dir / f"{key}.parquet", lambda p: df.to_parquet(p, index=False))
        (failed_dir / f"{key}.json").unlink(missing_ok=True)
    else:
        _atomic_write(failed_dir / f"{key}.json", lambda p: Path(p).write_text(json.dumps({"task": key, "error": error})))


def sweep_status(spec: SweepSpec, store) -> dict:
    """{"done", "pending", "failed"}: lists of task keys; "errors": {key: first line}."""
    tasks_dir, failed_dir = _dirs(spec, store)
    keys = [t.key for t in spec.tasks()]
    done = [k for k in keys if (tasks_dir / f"{k}.parquet").exists()]
    failed = [k for k in keys if k not in done and (failed_dir / f"{k}.json").exists()]
    errors = {k: json.loads((failed_dir / f"{k}.json").read_text())["error"].splitlines()[0] for k in failed}
    pending = [k for k in keys if k not in done and k not in failed]
    return {"done": done, "pending": pending, "failed": failed, "errors": errors, "total": len(keys)}


def load_results(spec: SweepSpec, store) -> pd.DataFrame:
    """All stored rows of the sweep's tasks (only tasks of this spec, in spec order)."""
    tasks_dir, _ = _dirs(spec, store)
    frames = [pd.read_parquet(tasks_dir / f"{t.key}.parquet") for t in spec.tasks()
              if (tasks_dir / f"{t.key}.parquet").exists()]
    if not frames:
        raise ValueError(f"store: no finished task of sweep {spec.name!r} under {store}")
    return pd.concat(frames, ignore_index=True)


# --- running ---------------------------------------------------------------------------
def run_sweep(spec: SweepSpec, store, jobs: int = 1, scheduler: str | None = None, progress=True,
              blas_threads: int | None = None) -> dict:
    """Run every task not yet stored. ``jobs`` local worker processes (1: in this process),
    or a Dask distributed scheduler address. Returns a summary dict."""
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"jobs: must be an integer >= 1, got {jobs!r}")
    # connect first: a wrong address is refused before the store is touched
    with _connect(scheduler) if scheduler is not None else contextlib.nullcontext() as client:
        return _run_sweep(spec, store, jobs, client, progress, blas_threads)


def _connect(scheduler):
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"scheduler: cannot connect to {scheduler!r} ({exc})") from None


def _run_sweep(spec, store, jobs, client, progress, blas_threads):
    tasks_dir, failed_dir = _dirs(spec, store)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    failed_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(tasks_dir.glob(".tmp-*")) + list(failed_dir.glob(".tmp-*")):
        stale.unlink(missing_ok=True)  # left by a killed run; never renamed, so never a result
    all_tasks = spec.tasks()
    todo = [t for t in all_tasks if not (tasks_dir / f"{t.key}.parquet").exists()]
    (tasks_dir.parent / "spec.json").write_text(json.dumps(spec.source or {"name": spec.name}, indent=2, default=str))
    if blas_threads is None:
        blas_threads = max(1, (os.cpu_count() or 1) // jobs) if client is None else 1
    bar = Progress(len(todo), f"sweep {spec.name}", enabled=bool(progress) and bool(todo))
    bar(0)   # show the bar (and start its clock) before the first task ends, which can take minutes
    t0 = time.perf_counter()
    failures, done = {}, 0

    def record(key, df, err):
        nonlocal done
        _save(spec, store, key, df, err)
        if err is not None:
            failures[key] = err.splitlines()[0]
        done += 1
        bar(done)

    if client is not None:
        from dask.distributed import as_completed

        futures = client.map(_guarded, todo, blas_threads=blas_threads, pure=False)
        for fut in as_completed(futures):
            key, df, err, _ = fut.result()
            record(key, df, err)
    elif jobs == 1:
        for t in todo:
            key, df, err, _ = _guarded(t, blas_threads)
            record(key, df, err)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = [pool.submit(_guarded, t, blas_threads) for t in todo]
            for fut in as_completed(futs):
                key, df, err, _ = fut.result()
                record(key, df, err)
    return {"name": spec.name, "tasks": len(all_tasks), "skipped": len(all_tasks) - len(todo),
            "computed": len(todo) - len(failures), "failed": len(failures), "errors": failures,
            "wall_s": time.perf_counter() - t0, "executor": "dask" if client is not None else f"local x{jobs}",
            "store": str(tasks_dir.parent)}
