"""Model C's layer-1 operator at scale (validation.layer1_operator; docs/scaling.md).

Reference routes: the D x D matrix built from Z(x) itself (numerics.quadratic_chaos.second_chaos
for the Wick term), dense ``numpy.linalg.eigh``, and the in-memory operator for the re-drawn
and Dask ones.
"""
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy.sparse.linalg import aslinearoperator

from numerics.quadratic_chaos import second_chaos
from theory import CompositionalModel
from validation.compositional import CompositionalSampler, run_layerwise
from validation.layer1_operator import (Layer1Operator, SampleBlocks, block_krylov, choose_storage, layer1_cost,
                                        top_eigenpairs)

MODEL = CompositionalModel(d=10, eps="1/2", gamma=1)  # D = 55, d1 = 3


def _blocks(storage, n=3000, block=700, seed=0, model=MODEL):
    return SampleBlocks.draw(CompositionalSampler(model, seed, "true"), n, block=block, storage=storage)


@pytest.mark.parametrize("estimator", ["plain", "wick"])
@pytest.mark.parametrize("storage", ["memory", "redraw"])
def test_operator_equals_the_dense_matrix_built_from_Z(storage, estimator):
    smp = CompositionalSampler(MODEL, 0, "true")
    X, Z, y = smp.draw(3000)  # one draw: the same stream as the blocks below
    blocks, yb = _blocks(storage)
    np.testing.assert_allclose(yb, y, rtol=0, atol=1e-12)
    M1 = ((Z.T * y) @ Z / len(y) - y.mean() * np.eye(MODEL.D)) / 2
    if estimator == "wick":
        M1 -= second_chaos(((X.T * y) @ X - y.sum() * np.eye(MODEL.d)) / len(y))
    op = Layer1Operator(blocks, yb, estimator)
    V = np.random.default_rng(1).standard_normal((MODEL.D, 4))
    np.testing.assert_allclose(op @ V, M1 @ V, rtol=0, atol=1e-12 * np.abs(M1 @ V).max())
    assert op.n_products == 1 and op.n_vectors == 4


def test_redrawn_blocks_are_bit_identical_and_independent_of_the_cut():
    mem, y1 = _blocks("memory", block=700)
    red, y2 = _blocks("redraw", block=700)
    assert red.storage == "redraw" and red.nbytes == 8 * MODEL.d * 700 and mem.nbytes == 8 * MODEL.d * 3000
    for a, b in zip(mem, red):
        assert np.array_equal(a, b)
    other, _ = _blocks("memory", block=256)  # another cut of the same stream
    assert np.array_equal(np.vstack(list(mem)), np.vstack(list(other)))
    np.testing.assert_array_equal(y1, y2)


def _symmetric(D=80, seed=0):
    """A symmetric matrix with outliers of both signs above a semicircle-like bulk."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((D, D)) / np.sqrt(4 * D)
    Q = np.linalg.qr(rng.standard_normal((D, 4)))[0]
    return G + G.T + Q @ np.diag([3.0, -2.5, 2.0, -1.6]) @ Q.T


@pytest.mark.parametrize("method", ["arpack", "block_krylov", "lobpcg"])
def test_eigensolvers_agree_with_dense_eigh_on_both_signs(method):
    A = _symmetric()
    w, V = np.linalg.eigh(A)
    top = np.argsort(-np.abs(w))[:4]
    vals, vecs, info = top_eigenpairs(aslinearoperator(A), 4, method, tol=1e-10)
    np.testing.assert_allclose(vals, w[top], rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(vecs * V[:, top], axis=0)), 1.0, rtol=0, atol=1e-7)
    assert info["method"] == method and info["residual"] < 1e-7


def test_block_krylov_warm_start_from_the_answer_stops_at_once():
    A = _symmetric()
    w, V = np.linalg.eigh(A)
    top = np.argsort(-np.abs(w))[:4]
    _, _, cold = block_krylov(aslinearoperator(A), 4, tol=1e-9)
    _, _, warm = block_krylov(aslinearoperator(A), 4, init=V[:, top], tol=1e-9)
    assert warm == 1 < cold


def test_auto_picks_block_krylov_for_redrawn_samples_and_arpack_in_memory():
    for storage, expected in (("memory", "arpack"), ("redraw", "block_krylov")):
        blocks, y = _blocks(storage)
        _, _, info = top_eigenpairs(Layer1Operator(blocks, y), 3)
        assert info["method"] == expected
        assert info["products"] <= info["vectors"]


def test_run_layerwise_gives_the_same_result_held_or_redrawn():
    m = CompositionalModel(d=14, eps="1/2", gamma=1)
    runs = {st: run_layerwise(m, n=40 * m.D, seed=2, kind="true", layer1="matrix_free", storage=st, estimator="wick")
            for st in ("memory", "redraw")}
    dense = run_layerwise(m, n=40 * m.D, seed=2, kind="true", layer1="dense", estimator="wick")
    assert runs["memory"]["storage"] == "memory" and runs["redraw"]["storage"] == "redraw"
    for r in runs.values():  # the eigensolver tolerance (1e-8) bounds the differences
        np.testing.assert_allclose(r["eigenvalues"], dense["eigenvalues"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(r["principal_cos2"], dense["principal_cos2"], rtol=0, atol=1e-6)
        assert abs(r["nmse"] - dense["nmse"]) < 1e-6


def test_the_operator_on_a_dask_local_cluster_equals_the_local_one():
    distributed = pytest.importorskip("dask.distributed")
    blocks, y = _blocks("redraw", n=4000, block=500)
    V = np.random.default_rng(3).standard_normal((MODEL.D, 3))
    ref = Layer1Operator(blocks, y, "wick") @ V
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        op = Layer1Operator(blocks, y, "wick", client=client)
        assert len(op._shards) == 2 and len({w for w, _ in op._shards}) == 2
        np.testing.assert_allclose(op @ V, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_storage_choice_and_redrawn_memory_independent_of_n():
    assert choose_storage(10**5, 100) == "memory" and choose_storage(10**7, 150) == "redraw"
    unit = {"vector": 1e-6, "block": 5e-7, "gauss": 1e-7}
    small, big = (layer1_cost(100, n, 10, "redraw", unit=unit) for n in (10**6, 10**8))
    assert small["bytes"] == big["bytes"] and small["method"] == "block_krylov"
    held = layer1_cost(100, 10**6, 10, "memory", unit=unit)
    assert held["bytes"] - small["bytes"] >= 8 * 10**6 * 100 - 8 * 2**26  # the samples themselves


@pytest.mark.parametrize("kwargs, name", [({"k": 0}, "k"), ({"k": 55}, "k"), ({"method": "qr"}, "method"),
                                          ({"tol": 0.0}, "tol")])
def test_bad_eigensolver_arguments_name_the_parameter(kwargs, name):
    args = {"k": 2, "method": "auto", "tol": 1e-8, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}:"):
        top_eigenpairs(aslinearoperator(np.eye(55)), args.pop("k"), **args)


def test_bad_operator_arguments_name_the_parameter():
    blocks, y = _blocks("memory")
    with pytest.raises(ValueError, match=r"^estimator:"):
        Layer1Operator(blocks, y, "exact")
    with pytest.raises(ValueError, match=r"^y:"):
        Layer1Operator(blocks, y[:-1])
    with pytest.raises(ValueError, match=r"^storage:"):
        SampleBlocks.draw(CompositionalSampler(MODEL, 0, "true"), 100, storage="disk")
    with pytest.raises(ValueError, match=r"^block:"):
        SampleBlocks.draw(CompositionalSampler(MODEL, 0, "true"), 100, block=0)
    with pytest.raises(ValueError, match=r"^storage:"):
        run_layerwise(MODEL, n=500, seed=0, kind="true", storage="disk")


def test_cli_estimate_prints_time_and_memory_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "validation.cli", "validate", "--model", "C", "--d", "100", "--estimate",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "d = 100 (D = 5050" in r.stdout and "peak memory about" in r.stdout
    # the time is timed on this machine, so its unit depends on the load (45 min idle, 2.1 h busy)
    assert re.search(r"about [0-9.]+ (s|min|h)\b", r.stdout), r.stdout
    assert not out.exists()


@pytest.mark.slow  # about a minute: a 2-worker cluster and three runs at d = 64 (D = 2080, matrix-free)
def test_matrix_free_pipeline_at_d64_held_redrawn_and_on_dask_agree():
    """The operator and the layer-wise pipeline at the smallest d where ``run_layerwise`` chooses
    the matrix-free layer 1 by itself: held samples with ARPACK, re-drawn with block Krylov, and
    blocks kept by Dask workers give the same eigenvalues, overlaps and NMSE up to the eigensolver
    tolerance (1e-8 relative residual), and the estimate's storage and method are the ones chosen."""
    distributed = pytest.importorskip("dask.distributed")
    from validation.layer1_operator import layerwise_cost

    m = CompositionalModel(d=64, eps="1/2", gamma=1)
    n = 20 * m.D
    held = run_layerwise(m, n=n, seed=0, kind="true", estimator="wick")
    red = run_layerwise(m, n=n, seed=0, kind="true", estimator="wick", storage="redraw")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        dask = run_layerwise(m, n=n, seed=0, kind="true", estimator="wick", client=client)
    assert (held["layer1"], held["storage"], held["eig_method"]) == ("matrix_free", "memory", "arpack")
    assert (red["storage"], red["eig_method"]) == ("redraw", "block_krylov")
    assert (dask["storage"], dask["eig_method"]) == ("dask", "block_krylov")
    cost = layerwise_cost(m.d, m.D, m.d1, n, "true")
    assert (cost["layer1"], cost["storage"], cost["method"]) == ("matrix_free", "memory", "arpack")
    for r in (red, dask):
        assert r["eig_residual"] < 1e-7 and r["eig_products"] < r["eig_vectors"]
        np.testing.assert_allclose(r["eigenvalues"], held["eigenvalues"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(r["principal_cos2"], held["principal_cos2"], rtol=0, atol=1e-5)
        assert abs(r["nmse"] - held["nmse"]) < 1e-5


@pytest.mark.slow  # about 40 s: the CLI with --scheduler on a LocalCluster, at a small d
def test_cli_validate_model_c_with_a_scheduler_writes_the_same_table(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    import pandas as pd

    args = ["validate", "--model", "C", "--d", "12", "--alphas", "20,60", "--seeds", "1", "--quiet"]
    local = subprocess.run([sys.executable, "-m", "validation.cli", *args, "--out", str(tmp_path / "a")],
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        r = subprocess.run([sys.executable, "-m", "validation.cli", *args, "--out", str(tmp_path / "b"),
                            "--scheduler", cl.scheduler_address], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "estimate for Model C at d = 12" in r.stderr
    a = pd.read_parquet(tmp_path / "a" / "validate_compositional.parquet")
    b = pd.read_parquet(tmp_path / "b" / "validate_compositional.parquet")
    pd.testing.assert_frame_equal(a.drop(columns=["created"], errors="ignore"),
                                  b.drop(columns=["created"], errors="ignore"), check_exact=False, atol=1e-10)
