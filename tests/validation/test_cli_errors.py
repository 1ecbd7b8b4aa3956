"""Bad parameters through every CLI subcommand (docs/reliability.md §"Bad input"): one line on
stderr that names the parameter, exit status 2, no traceback, and nothing written.

Each case runs in an empty working directory; the directory must still be empty afterwards
(output directories are created only when the first result is written, and output paths are
checked before any work starts)."""
import pytest

from validation.cli import build_parser, main

CASES = [
    # (argv, text the one-line message must contain)
    (["exponents", "--gamma", "-1"], "gamma"),
    (["exponents", "--gamma", "abc"], "gamma"),
    (["exponents", "--measured", "--alphas", "0:5:3"], "--alphas"),
    (["exponents", "--m", "5"], "--m"),
    (["hermite", "z**2", "--kmax", "-1"], "kmax"),
    (["hermite", "z**2", "--dps", "0"], "dps"),
    (["hermite", ""], "link"),
    (["hermite", "lambda: 1"], "link"),
    (["thresholds", "--m", "0"], "m"),
    (["thresholds", "--delta", "-1"], "delta"),
    (["thresholds", "--model", "X"], "model"),
    (["thresholds", "--model", "C", "--eps", "2"], "eps"),
    (["thresholds", "--bayes", "nope"], "--bayes"),
    (["predict", "--alphas", "5:1:3"], "--alphas"),
    (["predict", "--d", "100"], "--d"),
    (["predict", "--gamma", "-1", "--plot", "fig/p.png", "--out", "t/p.parquet"], "gamma"),
    (["predict", "--out", "t/p.parquet", "--link", "z**"], "link"),
    (["predict", "--estimator", "bayes", "--bayes-samples", "0"], "n_samples"),
    (["predict", "--preprocessing", "__import__('os')"], "preprocessing"),
    (["predict", "--model", "C", "--q", "0"], "q"),
    (["predict", "--m", "1e9"], "--m"),
    (["predict", "--plot", "."], "--plot"),  # a directory where a file path is needed
    (["fluctuation", "--m", "2", "--d", "2"], "--d"),
    (["fluctuation", "--m", "inf"], "--m"),
    (["fluctuation", "--latents", "100"], "--latents"),
    (["fluctuation", "--alphas", "0:1:3"], "--alphas"),
    (["validate", "--d", "3", "--out", "o"], "d"),
    (["validate", "--seeds", "0", "--out", "o"], "--seeds"),
    (["validate", "--alphas", "0:1:3", "--out", "o"], "--alphas"),
    (["validate", "--estimator", "foo", "--out", "o"], "--estimator"),
    (["validate", "--model", "C", "--d", "1", "--out", "o"], "d"),
    (["validate", "--model", "C", "--estimator", "spectral", "--out", "o"], "estimator"),
    (["validate", "--out", "/proc/cascade-nope", "--quiet"], "--out"),
    (["finite-size", "--ds", "10,x", "--out", "o"], "--ds"),
    (["finite-size", "--ds", "100", "--out", "o"], "ds"),
    (["finite-size", "--k", "0", "--out", "o"], "k"),
    (["finite-size", "--seeds", "0", "--out", "o"], "--seeds"),
    (["finite-size", "--m", "inf", "--out", "o"], "--m"),
    (["readout", "--d", "0"], "d"),
    (["readout", "--alphas", "-3"], "--alphas"),
    (["readout", "--seeds", "0"], "--seeds"),
    (["sweep", "run", "--ds", "40", "--alphas", "10", "--seeds", "1", "--jobs", "0"], "jobs"),
    (["sweep", "run", "--ds", "40", "--alphas", "10", "--seeds", "0"], "--seeds"),
    (["sweep", "run", "nosuch.toml"], "spec"),
    (["sweep", "run", "--ds", "40", "--alphas", "10", "--seeds", "1", "--name", "../evil"], "name"),
    (["sweep", "run", "--ds", "40", "--alphas", "10", "--seeds", "1", "--scheduler", "bad"], "bad"),
    (["sweep", "run", "--ds", "40", "--alphas", "10", "--seeds", "1", "--out", "x.parquet"], "--out"),
    (["sweep", "run", "--ds", "5", "--alphas", "10", "--seeds", "1"], "grid.ds"),
    (["sweep", "status", "--ds", "x"], "--ds"),
    (["sweep", "collect", "--ds", "40", "--alphas", "10", "--seeds", "1"], "store"),
    (["reproduce", "D", "--jobs", "0"], "--jobs"),
    (["reproduce", "D", "--jobs", "x"], "--jobs"),
    (["reproduce", "D", "--store", "/dev/null/x"], "--store"),
    (["reproduce", "nosuch"], "name"),
    (["reproduce", "S", "--float32"], "--float32"),
    (["plot", "nosuch.parquet"], "table"),
    (["coverage", "nosuch.parquet"], "table"),
    (["coverage", "t.parquet", "--levels", "0.5,1.5"], "--levels"),
    (["coverage", "t.parquet", "--group-size", "0"], "--group-size"),
    (["coverage", "t.parquet", "--quantity", "mse"], "--quantity"),
    (["bench", "--format", "latex"], "--format"),
]


def test_every_subcommand_has_a_bad_input_case():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {argv[0] for argv, _ in CASES} == set(sub.choices)


@pytest.mark.parametrize("argv, text", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_parameter_one_line_exit_2_nothing_written(argv, text, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals (unknown choice, bad format)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert text in err, err
    assert list(tmp_path.iterdir()) == [], "a refused command wrote something"


def test_a_table_that_is_not_parquet_is_refused_by_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.parquet").write_text("not a table")
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "t.parquet"]) == 2
    err = capsys.readouterr().err
    assert "table: cannot read" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
