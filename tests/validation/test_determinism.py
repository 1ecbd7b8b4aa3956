"""The same seed twice gives identical tables (docs/reliability.md §"Determinism").

Every random draw of a simulation comes from a stream seeded by (seed, d, model hash, purpose),
so a rerun, another worker process, another executor or another Python hash seed must give the
same numbers bit for bit, not merely close ones. Each test also checks that another seed gives
different numbers, so an estimator that ignored its seed could not pass."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from theory import CompositionalModel, HierarchicalModel
from validation.amp import amp_table
from validation.compositional import run_layerwise
from validation.simulate import simulate_task

MODEL = HierarchicalModel(m=3, gamma=1, delta="1/10")


def _same(a: pd.DataFrame, b: pd.DataFrame):
    cols = [c for c in a.columns if not c.startswith("wall")]  # wall times are the only columns that may differ
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_simulation_twice_is_identical(dtype):
    a, sa = simulate_task(MODEL, 60, [5, 20], seed=2, dtype=dtype, keep_spectrum=True)
    b, sb = simulate_task(MODEL, 60, [5, 20], seed=2, dtype=dtype, keep_spectrum=True)
    _same(a, b)
    for alpha in sa:
        np.testing.assert_array_equal(sa[alpha], sb[alpha])
    c, _ = simulate_task(MODEL, 60, [5, 20], seed=3, dtype=dtype)
    assert not np.array_equal(a["eigenvalue"].to_numpy(), c["eigenvalue"].to_numpy())


def test_amp_twice_is_identical():
    a = amp_table(MODEL, 60, [4.0, 12.0], seeds=[1], max_iter=8)
    b = amp_table(MODEL, 60, [4.0, 12.0], seeds=[1], max_iter=8)
    _same(a, b)
    c = amp_table(MODEL, 60, [4.0, 12.0], seeds=[2], max_iter=8)
    assert not np.array_equal(a["q_amp"].to_numpy(), c["q_amp"].to_numpy())


@pytest.mark.parametrize("kind, estimator", [("ge", "plain"), ("true", "plain"), ("true", "wick")])
def test_model_c_pipeline_twice_is_identical(kind, estimator):
    model = CompositionalModel(d=12, eps=0.5, gamma=1)
    run = lambda seed: run_layerwise(model, n=20 * model.D, seed=seed, kind=kind, n_test=2000,  # noqa: E731
                                     estimator=estimator)
    a, b, c = run(5), run(5), run(6)
    keys = [k for k, v in a.items() if isinstance(v, (float, int, np.ndarray, list, tuple)) and not k.startswith("wall")]
    assert "nmse" in keys and "eigenvalues" in keys
    for k in keys:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    assert a["nmse"] != c["nmse"]


@pytest.mark.slow  # about 13 s: four interpreter starts
def test_sweep_in_two_processes_with_different_hash_seeds_is_identical(tmp_path):
    # separate interpreters with different PYTHONHASHSEED: no set/dict order, no id() and no
    # process-global state may reach a random stream
    spec = tmp_path / "det.toml"
    spec.write_text('name = "det"\n[[models]]\ngamma = 1\nm = 2\ndelta = "1/10"\n'
                    '[grid]\nds = [40]\nalphas = [5, 20]\nseeds = 2\n')
    tables = []
    for hash_seed, jobs in (("1", "1"), ("12345", "2")):
        store = tmp_path / f"store{hash_seed}"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        base = [sys.executable, "-m", "validation.cli", "sweep"]
        subprocess.run(base + ["run", str(spec), "--store", str(store), "--jobs", jobs, "--quiet"],
                       check=True, env=env, capture_output=True)
        out = tmp_path / f"t{hash_seed}.parquet"
        subprocess.run(base + ["collect", str(spec), "--store", str(store), "--out", str(out)],
                       check=True, env=env, capture_output=True)
        tables.append(pd.read_parquet(out).sort_values(["task", "alpha", "k"]))
    _same(*tables)
    assert tables[0]["seed"].nunique() == 2
    a = tables[0]
    assert not np.array_equal(a[a.seed == 0]["eigenvalue"].to_numpy(), a[a.seed == 1]["eigenvalue"].to_numpy())
