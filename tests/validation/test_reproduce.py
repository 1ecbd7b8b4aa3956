"""cascade reproduce / cascade plot: figures and the tables they are drawn from."""
import json

import pandas as pd
import pytest

from validation.cli import main
from validation.reproduce import plot_table, reproduce


@pytest.mark.slow  # 80-100 s, the heaviest test of the default step: a whole [D] pipeline twice with its figures
def test_reproduce_D_small_writes_figures_tables_and_resumes(tmp_path, monkeypatch):
    # the pipeline's plumbing (files, resume, the laws' caches), not its numbers: the outlier law of
    # compare runs on fewer latents and draws here (2^16 and 2000 instead of 2^19 and 20 000; it took
    # 110 of this test's 148 s), the critical-window law on 400 canonical draws instead of 2000, and
    # both caches are emptied afterwards so no other test sees those laws
    import importlib

    cmp = importlib.import_module("validation.compare")  # the module: validation.compare is also a function
    monkeypatch.setattr(cmp, "LAW_LATENTS", 2**16)
    monkeypatch.setattr(cmp, "LAW_DRAWS", 2000)
    monkeypatch.setattr(cmp, "WINDOW_DRAWS", 400)
    cmp._outlier_law.cache_clear()
    cmp._canonical.cache_clear()
    try:
        _reproduce_D_small(tmp_path)
    finally:
        cmp._outlier_law.cache_clear()
        cmp._canonical.cache_clear()


def _reproduce_D_small(tmp_path):
    res = reproduce("D", outdir=tmp_path, d=60, seeds=2, progress=False)
    names = {p.split("/")[-1] for p in res["files"]}
    assert {"reproduce_D_mse_overlaps.png", "reproduce_D_spectra.pdf", "reproduce_D.parquet",
            "reproduce_D_spectra.parquet"} <= names
    summary = pd.read_parquet(tmp_path / "reproduce_D.parquet")
    assert {"alpha", "k", "q_sim", "q_theory", "mse_sim", "mse_theory", "model_json"} <= set(summary.columns)
    assert set(pd.read_parquet(tmp_path / "reproduce_D_spectra.parquet")["alpha"]) == {5.0, 164.0, 611.0, 1638.0}
    from validation.compare import _canonical, _outlier_law

    hits, windows = _outlier_law.cache_info().hits, _canonical.cache_info()
    assert windows.currsize >= 1  # d = 60 puts some points in the critical window
    again = reproduce("D", outdir=tmp_path, d=60, seeds=2, progress=False)
    assert again["sweep"]["computed"] == 0 and again["sweep"]["skipped"] == 2  # resumed from the store
    assert _outlier_law.cache_info().hits > hits  # the resumed comparison reused the outlier law
    assert _canonical.cache_info().hits >= windows.hits + windows.currsize  # and every window's draws
    for table in ("reproduce_D.parquet", "reproduce_D_spectra.parquet"):
        out = plot_table(tmp_path / table, tmp_path / f"redrawn_{table}")
        assert all((tmp_path / p).exists() for p in out)
    # --float32: the same samples accumulated in single precision, stored as their own sweep; the
    # overlaps move by rounding only (docs/reliability.md §"float32" measured |q32 - q64| <= 7e-7 at
    # d = 600; 1e-5 leaves room for d = 60's smaller eigengaps and is still ~1e-3 of the seed spread)
    f32 = reproduce("D", outdir=tmp_path / "f32", d=60, seeds=2, progress=False, dtype="float32")
    assert f32["sweep"]["computed"] == 2 and f32["dtype"] == "float32"
    assert (tmp_path / "f32" / "store" / "reproduce-D-d60-float32").is_dir()
    diff = (f32["summary"]["q_sim"] - res["summary"]["q_sim"]).abs()
    assert diff.max() <= 1e-5
    assert (f32["summary"]["k_hat"] == res["summary"]["k_hat"]).all()


def test_plot_refuses_foreign_tables(tmp_path, capsys):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "x.parquet")
    assert main(["plot", str(tmp_path / "x.parquet")]) == 2
    assert "model_json" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown figure"):
        reproduce("Z", outdir=tmp_path)
    # jobs is checked for every figure, also for those that only use it above one job (S ran silently with 0)
    for name in ("S", "separation", "D"):
        with pytest.raises(ValueError, match="jobs"):
            reproduce(name, outdir=tmp_path / "j", jobs=0)
    assert not (tmp_path / "j").exists()
    with pytest.raises(ValueError, match="dtype: must be 'float64' or 'float32'"):
        reproduce("D", outdir=tmp_path / "j", dtype="float16")
    assert not (tmp_path / "j").exists()


def test_reproduce_separation_small_and_redraw(tmp_path):
    res = reproduce("separation", outdir=tmp_path, d=12, rank=50)
    t = res["summary"]
    assert set(t["method"]) == {"layer-wise (true model)", "Nystrom rbf", "Nystrom poly deg 4", "RF ridge P=50",
                                "shallow spectral on x"}
    assert (t["n_used"] == t["n"]).all()  # every method is trained on all n samples (equal n)
    # the kernels' floor 1 - f2 per seed: the closed form for the identity link
    from numerics.quadratic_chaos import second_chaos_share
    from theory import CompositionalModel
    from validation.compositional import CompositionalSampler

    smp = CompositionalSampler(CompositionalModel(d=12, eps="1/2", gamma=1), 0, "true")
    assert t["degree2_floor"].to_numpy() == pytest.approx(1 - second_chaos_share(smp.A, smp.b / smp.std, 12))
    assert all((tmp_path / p.split("/")[-1]).exists() for p in res["files"])
    assert plot_table(tmp_path / "reproduce_separation.parquet", tmp_path / "again")
    # the layer-wise runs go through the sweep store: a second run reuses them
    from validation.sweep import run_sweep

    assert res["sweep"]["computed"] == 1
    assert run_sweep(res["spec"], tmp_path / "store", progress=False)["skipped"] == 1


@pytest.mark.slow
def test_reproduce_S_small(tmp_path):
    res = reproduce("S", outdir=tmp_path, d=12, seeds=1)
    t = pd.read_parquet(tmp_path / "reproduce_S.parquet")
    assert set(t["gamma"]) == {"1/2", "1", "3/2"} and set(t["kind"]) == {"ge", "true", "true-wick"}
    assert plot_table(tmp_path / "reproduce_S.parquet", tmp_path / "again")
    assert "width_exponent" in res["fit"]


def test_reproduce_D_optimal_small_model_writes_one_table_and_redraws(tmp_path):
    """The D-optimal pipeline end to end on a small noisy model (m = 2, d = 40): every source is in the
    table, AMP's rows are run_amp's on the same seed, and cascade plot redraws from the table alone."""
    from theory import HierarchicalModel
    from validation.amp import run_amp
    from validation.reproduce import D_OPT_AMP_DAMPING, D_OPT_AMP_ITER

    model = HierarchicalModel(m=2, delta="1/10")
    res = reproduce("D-optimal", outdir=tmp_path, d=40, seeds=1, alphas=(3.0, 8.0), amp_alphas=(8.0,),
                    se_samples=32, model=model, progress=False)
    t = pd.read_parquet(tmp_path / "reproduce_D_optimal.parquet")
    assert set(t["source"]) == {"spectral theory", "two-stage theory", "state evolution", "spectral simulation",
                                "AMP", "two-stage network", "spectral", "Bayes-optimal (sequential)"}
    amp = t[(t["source"] == "AMP") & (t["quantity"] == "q")].sort_values("k")
    direct = run_amp(model, 40, 8.0, seed=0, max_iter=D_OPT_AMP_ITER, damping=D_OPT_AMP_DAMPING)
    assert amp["value"].to_numpy() == pytest.approx(direct.q, abs=1e-12)
    # the Bayes-optimal weak-recovery threshold lies below the spectral one for every direction
    thr = t[t["quantity"] == "threshold"].pivot_table(index="k", columns="source", values="value")
    assert (thr["Bayes-optimal (sequential)"] < thr["spectral"]).all()
    assert res["sweep"]["computed"] == 2        # one spectral task, one AMP task
    out = plot_table(tmp_path / "reproduce_D_optimal.parquet", tmp_path / "redrawn")
    assert all((tmp_path / p.split("/")[-1]).exists() for p in out)


def test_reproduce_D_optimal_refuses_noiseless_labels(tmp_path):
    from theory import HierarchicalModel

    with pytest.raises(ValueError, match="delta"):
        reproduce("D-optimal", outdir=tmp_path, model=HierarchicalModel(m=2))


def test_reproduce_separation_takes_gamma_and_g_star(tmp_path, capsys):
    """[S]'s gamma = 0.4 and a non-linear g_star: the table and store are those of that model, and
    the layer-wise row is the sweep's own run of it (not the default model's)."""
    from validation.sweep import load_results

    res = reproduce("separation", outdir=tmp_path, d=12, rank=50, gamma="2/5", g_star="tanh(z)", progress=False)
    t = res["summary"]
    desc = json.loads(t["model_json"].iloc[0])
    assert (desc["gamma"], desc["g_star"]) == ("2/5", "tanh(z)")
    assert 0 < t["degree2_floor"].iat[0] < 1  # tanh: the Monte Carlo route
    assert res["spec"].name.startswith("separation-d12-") and res["spec"].name != "separation-d12"
    stored = load_results(res["spec"], tmp_path / "store")
    lw = t[t["method"] == "layer-wise (true model)"].set_index("n")["nmse"]
    assert lw.to_numpy() == pytest.approx(stored.groupby("n")["nmse"].first().loc[lw.index].to_numpy(), abs=0)
    assert plot_table(tmp_path / "reproduce_separation.parquet", tmp_path / "again")  # tanh: drawn without a kernel line


def test_cli_reproduce_separation_passes_gamma_and_g_star(tmp_path, monkeypatch):
    from validation import reproduce as rp

    seen = {}

    def record(outdir, **kw):
        seen.update(kw)
        raise ValueError("recorded")  # stop before any simulation

    monkeypatch.setitem(rp.FIGURES, "separation", record)
    assert main(["reproduce", "separation", "--gamma", "2/5", "--g-star", "tanh(z)", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert (seen["gamma"], seen["g_star"]) == ("2/5", "tanh(z)")
