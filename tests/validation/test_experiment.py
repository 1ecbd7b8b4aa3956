"""The one experiment interface: model adapters, flag handling, dispatch on descriptions, the
CLI's error policy and the subcommands without another in-process test."""
import json

import numpy as np
import pandas as pd
import pytest
import sympy as sp

from theory import CompositionalModel, HierarchicalModel
from validation.cli import main
from validation.experiment import EXPERIMENTS, experiment_for, model_from_description, read_table_metadata


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_each_model_is_one_adapter_with_the_same_shape():
    assert set(EXPERIMENTS) == {"S", "C"}
    for exp in EXPERIMENTS.values():
        for name in ("cli_flags", "from_args", "predict", "predict_table", "simulate", "thresholds", "validate",
                     "report", "plot_table", "model_from_description"):
            assert callable(getattr(exp, name))
        assert exp.estimators and all(e.name == k for k, e in exp.estimators.items())
    assert experiment_for("compositional") is experiment_for("C") and experiment_for("shallow") is experiment_for("S")
    with pytest.raises(ValueError, match="model: unknown model 'X'"):
        experiment_for("X")


@pytest.mark.parametrize("model", [HierarchicalModel(m=3, gamma=1, link=("He2", "He4", "|z|"), delta="1/10"),
                                   HierarchicalModel(gamma="13/10", m="inf"),
                                   CompositionalModel(d=20, eps="1/2", gamma="3/2", g_star="tanh(z)")])
def test_descriptions_round_trip_through_json(model):
    desc = json.loads(json.dumps(model.describe()))
    assert model_from_description(desc) == model
    assert model._repr_latex_().startswith("$\\text{Model")


def test_model_specific_defaults_are_applied_not_compared_with_strings(capsys, monkeypatch):
    # the old bug: --gamma 13/10 --seeds 6 for Model C were silently replaced by 1 and 2
    seen = {}

    def fake_validate(self, model, alphas, seeds, outdir, progress=True, estimator="layerwise"):
        seen.update(model=model, seeds=list(seeds), alphas=list(alphas))
        return {"table": pd.DataFrame({"x": [1]})}

    monkeypatch.setattr(type(experiment_for("C")), "validate", fake_validate)
    code, _, err = run(capsys, "validate", "--model", "C", "--gamma", "13/10", "--seeds", "6", "--format", "json")
    assert code == 0, err
    assert seen["model"].gamma == sp.Rational(13, 10) and seen["seeds"] == list(range(6))
    code, _, _ = run(capsys, "validate", "--model", "compositional", "--format", "json")
    assert seen["model"] == CompositionalModel(d=30, gamma=1) and seen["seeds"] == [0, 1]
    assert seen["alphas"] == [10, 20, 50, 100, 200]


@pytest.mark.parametrize("argv, flag", [
    (["validate", "--model", "C", "--link", "z"], "--link"),
    (["validate", "--model", "C", "--float32"], "--float32"),
    (["validate", "--model", "C", "--delta", "1"], "--delta"),
    (["predict", "--model", "S", "--d", "100"], "--d"),
    (["thresholds", "--model", "S", "--g-star", "z"], "--g-star"),
    (["thresholds", "--model", "C", "--kappa-T", "2"], "--kappa-T"),
])
def test_flags_that_do_not_apply_are_errors(capsys, argv, flag):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and f"{flag}: does not apply" in err


def test_bad_values_name_the_flag(capsys):
    assert "--kappa-T" in run(capsys, "thresholds", "--kappa-T", "abc")[2]
    assert "--m" in run(capsys, "predict", "--m", "x")[2]
    assert "--estimator" in run(capsys, "predict", "--estimator", "amp")[2]
    assert "model: unknown model" in run(capsys, "predict", "--model", "Q")[2]


def test_programming_errors_keep_their_traceback(monkeypatch):
    def broken(args):
        return None + 1

    import validation.cli as cli

    monkeypatch.setattr(cli, "cmd_exponents", broken)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "exponents", broken))
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["exponents"])


def _with_func(parser, name, func):
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices[name].set_defaults(func=func)
    return parser


def test_predict_both_estimators_model_s(capsys, tmp_path):
    code, out, err = run(capsys, "predict", "--m", "2", "--gamma", "1", "--delta", "1/10", "--alphas", "1,10",
                         "--estimator", "both", "--bayes-samples", "64", "--quiet", "--format", "json",
                         "--out", str(tmp_path / "p"), "--plot", str(tmp_path / "p"))
    assert code == 0, err
    data = json.loads(out)
    row = data["table"][1]
    # the Bayes-optimal overlap is at least the spectral one (the spectral estimator is one estimator)
    assert row["q_1_bayes"] >= row["q_1_spectral"] and row["mse_bayes"] <= row["mse_spectral"]
    assert {"alpha_k_spectral", "alpha_k_bayes_grid", "ratio_spectral_over_bayes"} <= set(data["thresholds"][0])
    assert (tmp_path / "p.png").stat().st_size > 10_000
    code, out, _ = run(capsys, "plot", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "redrawn"))
    assert code == 0 and (tmp_path / "redrawn.png").exists()


def test_predict_model_c(capsys):
    code, out, err = run(capsys, "predict", "--model", "C", "--d", "16", "--alphas", "30,100", "--format", "csv")
    assert code == 0, err
    df = pd.read_csv(__import__("io").StringIO(out))
    assert len(df) == 2 * 4 and df["rho2_solver"].between(0, 1).all()


def test_thresholds_bayes_cli(capsys):
    code, out, err = run(capsys, "thresholds", "--m", "1", "--link", "z**2", "--gamma", "1", "--bayes", "scratch",
                         "--format", "json")
    assert code == 0, err
    assert abs(json.loads(out)["alpha_k_bayes"] - 0.5) < 1e-3  # phase retrieval, alpha = 1/2


def test_table_metadata_dispatches_plot(tmp_path):
    df = pd.DataFrame({"alpha": [1.0], "model_json": [json.dumps({"model": "C", "d": 12})], "table_kind": ["nonsense"]})
    desc, kind = read_table_metadata(df)
    assert desc["model"] == "C" and kind == "nonsense"
    df.to_parquet(tmp_path / "t.parquet")
    from validation.reproduce import plot_table

    with pytest.raises(ValueError, match="Model C draws"):
        plot_table(tmp_path / "t.parquet")


def test_readout_finite_size_and_sweep_status_in_process(capsys, tmp_path):
    code, out, err = run(capsys, "readout", "--m", "2", "--gamma", "1", "--d", "80", "--alphas", "40", "--format", "json")
    assert code == 0, err and len(json.loads(out)) >= 1
    code, out, err = run(capsys, "finite-size", "--m", "1", "--link", "He2", "--preprocessing", "clip(y, -1, 3)",
                         "--ds", "60,120", "--seeds", "2", "--out", str(tmp_path), "--quiet", "--format", "json")
    assert code == 0, err and "width_exponent" in out
    args = ["--model", "C", "--d", "10", "--alphas", "10", "--seeds", "1", "--store", str(tmp_path / "st")]
    code, out, _ = run(capsys, "sweep", "status", *args, "--format", "json")
    assert code == 0 and json.loads(out)["pending"]
    code, out, _ = run(capsys, "sweep", "run", *args, "--quiet")
    code, out, _ = run(capsys, "sweep", "collect", *args, "--format", "csv")
    df = pd.read_csv(__import__("io").StringIO(out))
    assert code == 0 and set(df["kind"]) == {"ge", "true", "true-wick"} and (df["model"] == "C").all()


@pytest.mark.slow  # 42 s: every benchmark once, Dask LocalCluster included; the default step stays under 10 minutes
def test_bench_quick_runs(capsys, monkeypatch):
    import validation.bench as bench

    monkeypatch.setattr(bench, "bench_pipeline_c", lambda quick=False: [])
    monkeypatch.setattr(bench, "bench_state_evolution", lambda quick=False: [{"name": "se", "ratio": 1.0}])
    code, out, err = run(capsys, "bench", "--quick", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert any(r["name"] == "se" for r in rows)
    # the large-m benchmark runs m = 100 through the closed tail (fewer exact directions than m)
    big = [r for r in rows if r["name"].startswith("predict m=100,")]
    assert len(big) == 1 and big[0]["exact_directions"] < 100 and big[0]["peak_traced_MB"] > 0
