"""Sweeps: spec, hashed tasks, atomic resumable store, failures, local and Dask executors, SIGKILL."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from theory import __version__
from validation import sweep as sw

SPEC = {"name": "t", "models": [{"gamma": 1, "m": 2}], "grid": {"ds": [40, 50], "alphas": [10, 30], "seeds": 2}}


def _frames_equal(a, b):
    cols = [c for c in a.columns if c != "wall_s"]  # wall time is the only non-deterministic column
    key = ["task", "alpha", "k"]
    pd.testing.assert_frame_equal(a[cols].sort_values(key).reset_index(drop=True),
                                  b[cols].sort_values(key).reset_index(drop=True))


def test_tasks_and_content_hashes_are_stable():
    spec = sw.sweep_spec(SPEC)
    tasks = spec.tasks()
    assert len(tasks) == 4 and len({t.key for t in tasks}) == 4
    t = tasks[0]
    # the key is the SHA-256 of the canonical JSON, computed here independently
    doc = {"model": t.model, "d": t.d, "seed": t.seed, "alphas": list(t.alphas), "dtype": "float64",
           "chunk": 4096, "version": __version__}
    assert t.key == hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    # same content, keys written in another order: same tasks
    again = sw.sweep_spec({"grid": {"seeds": [0, 1], "alphas": [30, 10], "ds": [40, 50]}, "models": [{"m": 2, "gamma": "1"}],
                           "name": "t"})
    assert [x.key for x in again.tasks()] == [x.key for x in tasks]


def test_amp_tasks_hash_the_estimator_and_store_what_run_amp_returns(tmp_path):
    from theory import HierarchicalModel
    from validation.amp import run_amp

    model = {"gamma": 1, "m": 2, "delta": "1/10"}
    doc = {"name": "a", "models": [model], "grid": {"ds": [30], "alphas": [6], "seeds": 1}}
    spectral = sw.sweep_spec(doc).tasks()[0]
    opts = {"estimator": "amp", "max_iter": 7, "damping": 0.8}
    amp = sw.sweep_spec(doc | {"options": opts}).tasks()[0]
    assert json.loads(amp.canonical())["estimator"] == "amp"
    assert json.loads(amp.canonical())["amp"] == {"max_iter": 7, "damping": 0.8}
    assert "estimator" not in json.loads(spectral.canonical())   # keys of spectral stores unchanged
    assert amp.key != spectral.key
    spec = sw.sweep_spec(doc | {"options": opts})
    assert sw.run_sweep(spec, tmp_path, progress=False)["computed"] == 1
    rows = sw.load_results(spec, tmp_path).sort_values("k")
    direct = run_amp(HierarchicalModel(**model), 30, 6.0, seed=0, max_iter=7, damping=0.8)
    assert rows["q_amp"].tolist() == direct.q.tolist() and set(rows["iterations"]) == {direct.iterations}


def test_toml_spec(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "demo"\n[[models]]\ngamma = "13/10"\nm = 3\n[grid]\nds = [30]\nalphas = "5:50:3log"\nseeds = 2\n')
    spec = sw.load_spec(p)
    assert spec.name == "demo" and len(spec.tasks()) == 2 and spec.alphas[0] == pytest.approx(5.0)


@pytest.mark.parametrize("change, text", [
    ({"name": "a b"}, "name"), ({"models": []}, "models"), ({"grid": {"ds": [40], "alphas": [0], "seeds": 1}}, "alphas"),
    ({"grid": {"ds": [1], "alphas": [5], "seeds": 1}}, "grid.ds"), ({"extra": 1}, "unknown"),
    ({"models": [{"gamma": 1, "m": 2, "colour": 1}]}, "colour"), ({"options": {"dtype": "int8"}}, "dtype"),
    ({"options": {"estimator": "kernel"}}, "options.estimator"), ({"options": {"max_iter": 5}}, "options.max_iter"),
    ({"options": {"estimator": "amp", "dtype": "float32"}}, "options.dtype"),
    ({"options": {"estimator": "amp", "max_iter": 0}}, "options.max_iter"),
    ({"options": {"estimator": "amp", "damping": 1}}, "options.damping"), ({"options": {"damping": 0.5}}, "damping"),
])
def test_bad_specs(change, text):
    with pytest.raises(ValueError, match=text):
        sw.sweep_spec(SPEC | change)


def test_resume_skips_stored_tasks_and_failures_do_not_stop_the_sweep(tmp_path, monkeypatch):
    spec = sw.sweep_spec(SPEC)
    real = sw.execute_task

    def flaky(task, blas_threads=1):
        if task.seed == 1 and task.d == 50:
            raise RuntimeError("injected failure")
        return real(task, blas_threads)

    monkeypatch.setattr(sw, "execute_task", flaky)
    res = sw.run_sweep(spec, tmp_path, progress=False)
    assert (res["computed"], res["failed"]) == (3, 1)
    st = sw.sweep_status(spec, tmp_path)
    assert len(st["done"]) == 3 and len(st["failed"]) == 1 and "injected failure" in next(iter(st["errors"].values()))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "t" / "tasks").glob("*.parquet")}
    monkeypatch.setattr(sw, "execute_task", real)
    res = sw.run_sweep(spec, tmp_path, progress=False)
    assert (res["skipped"], res["computed"], res["failed"]) == (3, 1, 0)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # nothing finished was rewritten
    assert sw.sweep_status(spec, tmp_path)["failed"] == []
    assert len(sw.load_results(spec, tmp_path)) == 4 * 2 * 2


def test_two_local_workers_give_the_same_table(tmp_path):
    spec = sw.sweep_spec(SPEC)
    sw.run_sweep(spec, tmp_path / "a", jobs=1, progress=False, blas_threads=1)
    sw.run_sweep(spec, tmp_path / "b", jobs=2, progress=False, blas_threads=1)
    _frames_equal(sw.load_results(spec, tmp_path / "a"), sw.load_results(spec, tmp_path / "b"))


def test_dask_local_cluster_gives_the_same_table(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    spec = sw.sweep_spec(SPEC)
    sw.run_sweep(spec, tmp_path / "local", jobs=1, progress=False, blas_threads=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = sw.run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert res["executor"] == "dask" and res["computed"] == 4
    _frames_equal(sw.load_results(spec, tmp_path / "local"), sw.load_results(spec, tmp_path / "dask"))


@pytest.mark.slow  # about 30 s: three kills, four interpreter starts
def test_sigkill_at_several_random_times_then_restart_stores_every_task_exactly_once(tmp_path):
    """Kill the same sweep three times at seeded random moments (after 1-3, then more, stored
    tasks, plus a random fraction of a task so the kill can land mid-write), restart it each
    time, and let a reader poll the store throughout: no task lost, duplicated or recomputed,
    and every file a reader can see is a complete table (docs/reliability.md)."""
    import threading

    import numpy as np

    spec_file = tmp_path / "kill.toml"
    # 12 tasks of ~0.3 s each, so every kill lands mid-sweep
    spec_file.write_text('name = "kill"\n[[models]]\ngamma = 1\nm = 3\n[grid]\nds = [250]\nalphas = [50, 150]\nseeds = 12\n')
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "validation.cli", "sweep", "run", str(spec_file), "--store", str(store), "--quiet"]
    tasks_dir = store / "kill" / "tasks"
    rng = np.random.default_rng(20261130)
    stop, seen, bad = threading.Event(), set(), []

    def reader():  # what `sweep status` / `collect` would see at any moment
        while not stop.is_set():
            for p in list(tasks_dir.glob("*.parquet")) if tasks_dir.exists() else []:
                try:
                    if len(pd.read_parquet(p)) != 2 * 3:
                        bad.append(p.name)
                    seen.add(p.name)
                except FileNotFoundError:
                    pass
                except Exception as exc:  # a partial file would land here
                    bad.append(f"{p.name}: {exc}")
            time.sleep(0.01)

    watcher = threading.Thread(target=reader, daemon=True)
    watcher.start()
    stamps, n_stored = {}, 0
    for target in (int(rng.integers(1, 4)), int(rng.integers(5, 7)), int(rng.integers(8, 10))):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.time()
        while time.time() - t0 < 120 and len(list(tasks_dir.glob("*.parquet")) if tasks_dir.exists() else []) < target:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.3)))  # a random phase of the next task
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        now = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tasks_dir.glob("*.parquet")}
        assert n_stored <= len(now) < 12, "each kill must land mid-sweep and lose nothing stored"
        assert all(now[k] == v for k, v in stamps.items()), "a stored task was rewritten"
        stamps, n_stored = now, len(now)
    out = subprocess.run(cmd + ["--format", "json"], capture_output=True, text=True, check=True)
    stop.set()
    watcher.join()
    res = json.loads(out.stdout)
    assert res["skipped"] == n_stored and res["computed"] == 12 - n_stored and res["failed"] == 0
    after = list(tasks_dir.glob("*.parquet"))
    spec = sw.load_spec(spec_file)
    assert sorted(p.stem for p in after) == sorted(t.key for t in spec.tasks())  # each exactly once
    assert not list(tasks_dir.glob(".tmp-*"))
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == stamps[p.name] for p in after if p.name in stamps)
    assert bad == [], bad
    assert len(seen) >= n_stored  # the reader did look while the writers ran
    df = sw.load_results(spec, store)
    assert df.groupby("task").size().eq(2 * 3).all() and df["task"].nunique() == 12


def test_temporaries_are_invisible_to_every_reader(tmp_path, monkeypatch):
    # a writer killed between mkstemp and rename leaves a temporary behind; it must not look like
    # a result (the SIGKILL test once read a half-written `.tmp-*.parquet` through a glob)
    spec = sw.sweep_spec({"name": "tmpcheck", "models": [{"gamma": 1, "m": 2}],
                          "grid": {"ds": [30], "alphas": [10], "seeds": 1}})
    tasks_dir = tmp_path / "tmpcheck" / "tasks"
    tasks_dir.mkdir(parents=True)

    def killed(path):
        Path(path).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt  # the kill lands mid-write

    monkeypatch.setattr(sw.os, "unlink", lambda p: None)  # a SIGKILL runs no clean-up either
    with pytest.raises(KeyboardInterrupt):
        sw._atomic_write(tasks_dir / "abc.parquet", killed)
    monkeypatch.undo()
    left = list(tasks_dir.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".tmp-") and not left[0].name.endswith(".parquet")
    assert list(tasks_dir.glob("*.parquet")) == []
    assert sw.sweep_status(spec, tmp_path)["done"] == []
    with pytest.raises(ValueError, match="no finished task"):
        sw.load_results(spec, tmp_path)
    sw.run_sweep(spec, tmp_path, progress=False)
    assert not list(tasks_dir.glob(".tmp-*")) and len(list(tasks_dir.glob("*.parquet"))) == 1
