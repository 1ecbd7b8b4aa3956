"""The theory subcommands of the CLI: output shapes and one-line errors."""
import json

import pytest

from validation.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_exponents_json(capsys):
    code, out, _ = run(capsys, "exponents", "--gamma", "13/10", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["mse_exponent"]["exact"] == "8/13" and data["C_gamma"]["exact"] == "169/72"


def test_exponents_latex(capsys):
    code, out, _ = run(capsys, "exponents", "--format", "latex")
    assert code == 0 and r"\frac{8}{13}" in out


def test_hermite_text_and_csv(capsys):
    code, out, _ = run(capsys, "hermite", "He2/2 + He4/48", "--kmax", "4")
    assert code == 0 and "mu_k = 1/2" in out and "information exponent" in out
    code, out, _ = run(capsys, "hermite", "relu(z)", "--kmax", "2", "--format", "csv")
    assert out.splitlines()[0] == "k,mu_k,c_k" and out.splitlines()[2].startswith("1,0.5")


def test_thresholds_both_models(capsys):
    code, out, _ = run(capsys, "thresholds", "--m", "3", "--kappa-T", "2", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = run(capsys, "thresholds", "--model", "C", "--d", "16", "--gamma", "1")
    assert code == 0 and "3485/36" in out


def test_fluctuation_reports_the_outlier_laws_of_numerics(capsys):
    # wiring: the rows are numerics' per-direction CLT and bias (m = 1) and the branch laws (coupled), at the same
    # latent draws; the values themselves are checked against closed forms and simulation in tests/numerics
    import numpy as np

    from numerics import branch_fluctuation, outlier_bias, outlier_fluctuation, predict
    from theory import HierarchicalModel

    code, out, _ = run(capsys, "fluctuation", "--m", "1", "--link", "He2", "--preprocessing", "tanh(y)",
                       "--alphas", "0.5,3,6", "--d", "200", "--latents", "65536", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["alpha"] for r in rows] == [3.0, 6.0]  # alpha_1 = 0.639: no outlier at 0.5
    model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
    sigma = outlier_fluctuation(model, [3.0], n_samples=65536)[0, 0]
    bias = outlier_bias(model, [3.0], 200, n_samples=65536)[0, 0]
    q = predict(model, [3.0]).q[0, 0]
    assert rows[0]["sigma"] == pytest.approx(sigma, abs=1e-6)
    assert rows[0]["d_bias"] == pytest.approx(200 * bias, abs=1e-5)
    assert rows[0]["eps"] == pytest.approx(sigma / (np.sqrt(200) * q), abs=1e-6)
    code, out, _ = run(capsys, "fluctuation", "--m", "2", "--gamma", "1", "--link", "He1 + He2/2", "--preprocessing",
                       "clip(y, -1, 3)", "--alphas", "12", "--d", "400", "--latents", "65536", "--format", "json")
    rows = json.loads(out)
    coupled = HierarchicalModel(m=2, gamma=1, link="He1 + He2/2", preprocessing="clip(y, -1, 3)")
    r = branch_fluctuation(coupled, [12.0], n_samples=65536, d=400)
    assert [(x["branch"], x["k"]) for x in rows] == [(1, 1), (1, 2), (2, 1), (2, 2), ("all", 1), ("all", 2)]
    assert code == 0
    for x in rows[4:]:  # the projection on both branches: their shares summed, its sd from the joint law
        k = x["k"] - 1
        assert x["sigma"] == pytest.approx(np.sqrt(r["share_cov"][0, :, :, k].sum()), abs=1e-6)
        assert x["q"] == pytest.approx(predict(coupled, [12.0]).q[0, k], abs=1e-6)  # the label law's projection
    assert rows[4]["d_bias"] == pytest.approx(400 * r["bias"][0, :, 0].sum(), abs=1e-5)
    assert rows[5]["d_bias"] is None  # eps = 0.65 (branch 2 carries w_2)
    for x in rows[:4]:
        i, k = x["branch"] - 1, x["k"] - 1
        assert x["sigma"] == pytest.approx(r["sigma"][0, i, k], abs=1e-6)
        assert x["zeta_sigma"] == pytest.approx(r["zeta_sigma"][0, i], abs=1e-6)
        assert (x["d_bias"] is None) == (x["eps"] > 0.5)  # branch 2's share of w_2: eps = 0.65 at d = 400
        # the location is predict's exact one, not the draws' (their Monte Carlo error is as large as the shift)
        assert x["zeta"] == pytest.approx(predict(coupled, [12.0]).eigenvalues[0, i], abs=1e-6)
        assert x["gap_sigma"] == pytest.approx(np.sqrt(r["gap_cov"][0, i, i]), abs=1e-6)
    assert rows[0]["d_bias"] == pytest.approx(400 * r["bias"][0, 0, 0], abs=1e-5)
    assert rows[0]["d_zeta_bias"] == pytest.approx(400 * r["zeta_bias"][0, 0], abs=1e-5)
    assert rows[2]["d_zeta_bias"] is None  # branch 2's largest share (of w_2) has eps = 0.65: near the edge


@pytest.mark.parametrize(
    "argv, text",
    [
        (["exponents", "--gamma", "0.3"], "gamma"),
        (["hermite", "__import__('os')"], "unexpected character"),
        (["thresholds", "--m", "x"], "--m"),
        (["exponents", "--bogus"], "unrecognized"),
        (["nosuch"], "invalid choice"),
    ],
)
def test_errors_exit_2_with_one_line(capsys, argv, text):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_for_every_subcommand(capsys):
    for cmd in ("exponents", "hermite", "thresholds"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert "--format" in capsys.readouterr().out


def test_predict_table_json_and_plot(capsys, tmp_path):
    code, out, _ = run(capsys, "predict", "--alphas", "20,50", "--format", "json", "--plot", str(tmp_path / "fig"))
    data = json.loads(out)
    assert code == 0 and len(data["table"]) == 2 and len(data["thresholds"]) == 10
    assert abs(data["table"][0]["q_1_spectral"] - 0.91) < 0.01  # docs/theory.md §2.2 check value
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and (tmp_path / "fig.pdf").exists()


@pytest.mark.parametrize("alphas", ["1:x", "0:10:5", "-1,2", "1:2"])
def test_predict_bad_alphas(capsys, alphas):
    code, _, err = run(capsys, "predict", f"--alphas={alphas}")
    assert code == 2 and "--alphas" in err


def test_cli_reference_in_docs_is_current():
    # docs/cli.md is generated from the parsers; regenerate with `python -m validation.cli_reference`
    from pathlib import Path

    from validation.cli import cli_reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert doc.read_text() == cli_reference()


def test_exponents_measured_and_its_flags(capsys):
    code, out, _ = run(capsys, "exponents", "--measured", "--m", "3", "--alphas", "10000:100000:5log", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["exact_exponent"]["exact"] == "8/13" and abs(data["measured_exponent"] - 1) < 5e-3
    code, _, err = run(capsys, "exponents", "--m", "3")
    assert code == 2 and "--m: applies only with --measured" in err


def test_predict_at_infinite_m_and_its_plot(capsys, tmp_path):
    # m = inf: every learned direction is reported (thresholds <= the largest alpha), the wide table
    # holds q_k for k <= 20, the label law's bar goes to stderr, and the plot redraws from the table
    from numerics.label_law import clear_cache

    clear_cache()   # a law cached by an earlier test in this process would skip the bar
    code, out, err = run(capsys, "predict", "--m", "inf", "--alphas", "1,100,10000", "--format", "json",
                         "--plot", str(tmp_path / "fig"))
    data = json.loads(out)
    thr = [t["alpha_k_spectral"] for t in data["thresholds"]]
    assert code == 0 and thr[-1] <= 1e4 and len(thr) >= 20
    assert data["settings"]["spectral"]["exact_directions"] < len(thr)
    assert "q_20_spectral" in data["table"][0] and "q_21_spectral" not in data["table"][0]
    assert abs(data["table"][0]["mse_spectral"] - 1) < 1e-12   # below alpha_1: sum_k a_k^2 = 1
    assert "label law" in err and (tmp_path / "fig.png").exists()
    code, _, err = run(capsys, "predict", "--m", "inf", "--estimator", "both")
    assert code == 2 and "--m: the Bayes-optimal state evolution needs a finite m" in err
