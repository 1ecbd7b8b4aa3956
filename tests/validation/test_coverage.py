"""validation.coverage: compare's coverage over groups of seeds and its between-group error (docs/theory.md §4.6)."""
import numpy as np
import pandas as pd
import pytest

from numerics import predict
from theory import HierarchicalModel
from validation.compare import compare
from validation.coverage import coverage_error, group_coverage, table_coverage
from validation.simulate import simulate

TANH = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")


def test_the_between_group_error_is_binomial_for_independent_trials_and_counts_groups_for_correlated_ones():
    # Closed forms (independent of the estimator): G groups of N trials inside with probability p. Independent
    # trials: Var p_hat = p (1 - p) / (G N). Trials of a group all equal (perfectly correlated): p (1 - p) / G, a
    # design effect of N. The estimator's relative error on the sd is about sqrt((2 + kurtosis) / G) / 2, 0.012
    # here; 4 of those are allowed.
    rng = np.random.default_rng(0)
    G, N, p = 4000, 5, 0.8
    iid = coverage_error(rng.binomial(N, p, G), np.full(G, N), level=p)
    assert iid["sd_groups"] / np.sqrt(p * (1 - p) / (G * N)) == pytest.approx(1.0, abs=0.045)
    assert iid["design_effect"] == pytest.approx(1.0, abs=0.09)
    assert iid["sd_binomial"] == pytest.approx(np.sqrt(p * (1 - p) / (G * N)), rel=1e-12)  # at the level
    same = coverage_error(N * rng.binomial(1, p, G), np.full(G, N), level=p)
    assert same["sd_groups"] / np.sqrt(p * (1 - p) / G) == pytest.approx(1.0, abs=0.05)
    assert same["design_effect"] == pytest.approx(N, rel=0.1)
    assert same["trials"] == G * N and same["groups"] == G


def test_unequal_groups_weigh_by_their_trials_and_an_even_split_has_no_scatter():
    r = coverage_error([1, 4], [2, 6], level=0.5)  # by hand: p = 5/8; residuals 1 - 5/4 and 4 - 30/8
    assert r["fraction"] == pytest.approx(5 / 8, rel=1e-15)
    assert r["sd_groups"] == pytest.approx(np.sqrt(2 * (0.25**2 + 0.25**2)) / 8, rel=1e-12)
    assert r["sd_level"] == pytest.approx(np.sqrt(r["design_effect"] * 0.25 / 8), rel=1e-12)
    flat = coverage_error([3, 3, 3], [4, 4, 4], level=0.75)  # every group at the level exactly
    assert flat["sd_groups"] == 0.0 and flat["z"] == 0.0
    assert coverage_error([3, 3], [4, 4], level=0.5)["z"] == np.inf  # no scatter, away from the level
    full = coverage_error([4, 4], [4, 4], level=0.9)  # p_hat = 1: no scatter to measure D by, so D = 1
    assert full["design_effect"] == 1.0 and full["z"] == full["z_binomial"] == pytest.approx(0.1 / np.sqrt(0.09 / 8))


@pytest.mark.parametrize("args, text", [
    (([1, 2], [2, 2], 1.0), "level"),
    (([1, 2], [2, 2], True), "level"),
    (([1, 2], [2, 2], "0.5"), "level"),
    (([1, 2], [2], 0.5), "inside, trials"),
    (([1], [2], 0.5), "at least 2 groups"),
    (([3, 1], [2, 2], 0.5), "inside"),
    (([1, -1], [2, 2], 0.5), "inside"),
    (([1, 1], [2, 0], 0.5), "trials"),
    (([1, 1], [2.5, 2], 0.5), "trials"),
    (([np.nan, 1], [2, 2], 0.5), "inside"),
])
def test_coverage_error_refuses_bad_input_by_name(args, text):
    with pytest.raises(ValueError, match=text):
        coverage_error(*args)


@pytest.fixture(scope="module")
def small():
    alphas = [4.0, 8.0]
    sim = simulate(TANH, 100, alphas, range(500, 514))  # 14 seeds: 3 groups of 4 and 2 left over
    return sim, predict(TANH, alphas)


def test_group_coverage_counts_compare_on_consecutive_groups_and_leaves_the_incomplete_one_out(small):
    sim, pred = small
    res = group_coverage(pred, sim, "q_best", levels=(0.5, 0.9), group_size=4)
    for level in (0.5, 0.9):
        parts = [compare(pred, sim[sim.seed.isin(range(500 + 4 * g, 504 + 4 * g))], "q_best", level=level)
                 for g in range(3)]  # seeds 512 and 513 make no full group
        both = pd.concat(parts)
        got = res[res.level == level].set_index("tol_basis")
        assert sorted(got.index) == sorted(both.tol_basis.unique())
        for basis, rows in both.groupby("tol_basis"):
            assert got.loc[basis, "inside"] == rows.agrees.sum() and got.loc[basis, "trials"] == len(rows)
            assert got.loc[basis, "groups"] == 3
            per = [int(p[p.tol_basis == basis].agrees.sum()) for p in parts]
            ref = coverage_error(per, [int((p.tol_basis == basis).sum()) for p in parts], level)
            assert got.loc[basis, "sd_groups"] == pytest.approx(ref["sd_groups"], rel=1e-12)


def test_compare_takes_a_numpy_level_as_its_float_and_refuses_the_same_bad_levels_as_coverage(small):
    # one check of a level (theory.model.confidence) serves compare, its chi2 quantile and the coverage functions
    sim, pred = small
    pd.testing.assert_frame_equal(compare(pred, sim, "q_best", level=np.float64(0.9)), compare(pred, sim, "q_best", 0.9))
    for bad in (1.0, 0, True, "0.9", float("nan")):
        with pytest.raises(ValueError, match="level: must be a confidence in"):
            compare(pred, sim, "q_best", level=bad)
        with pytest.raises(ValueError, match="level: must be a confidence in"):
            coverage_error([1, 2], [2, 2], bad)


def test_table_coverage_rebuilds_the_model_from_the_table_and_reads_parquet(small, tmp_path):
    sim, pred = small
    path = tmp_path / "t.parquet"
    sim.to_parquet(path)
    res = table_coverage(path, ["q_best"], (0.8,), group_size=4)
    ref = group_coverage(pred, sim, "q_best", (0.8,), group_size=4)
    assert res["d"].tolist() == [100] * len(ref)
    pd.testing.assert_frame_equal(res.drop(columns="d"), ref)


@pytest.mark.parametrize("call, text", [
    (lambda sim, pred: group_coverage(pred, sim.drop(columns="seed"), "q_best"), "'seed' column"),
    (lambda sim, pred: group_coverage(pred, sim, "q_best", group_size=0), "group_size"),
    (lambda sim, pred: group_coverage(pred, sim, "q_best", group_size=8), "group_size"),
    (lambda sim, pred: group_coverage(pred, sim, "q_best", levels=()), "levels"),
    (lambda sim, pred: group_coverage(pred, sim, "q_best", levels=(0.5, 1.2)), "levels"),
    (lambda sim, pred: group_coverage(pred, sim, "q_best", levels=0.5), "levels"),
    (lambda sim, pred: group_coverage(pred, sim, "mse"), "quantity"),
    (lambda sim, pred: table_coverage(sim, ["mse"]), "quantities"),
    (lambda sim, pred: table_coverage(sim.drop(columns="q_rank"), ["q_rank"]), "missing columns"),
    (lambda sim, pred: table_coverage(sim.drop(columns=["model", "link"])), "model columns"),
    (lambda sim, pred: table_coverage(pd.concat([sim, sim.assign(gamma="2")])), "one model"),
    (lambda sim, pred: table_coverage("/nonexistent/t.parquet"), "no such Parquet file"),
])
def test_group_and_table_coverage_refuse_bad_input_by_name(small, call, text):
    sim, pred = small
    with pytest.raises(ValueError, match=text):
        call(sim, pred)


def test_a_table_that_is_not_a_dataframe_is_a_type_error_by_name(small):
    with pytest.raises(TypeError, match="simulation"):
        group_coverage(small[1], [1, 2], "q_best")


def test_cascade_coverage_reads_a_collected_sweep(tmp_path, monkeypatch, capsys):
    # the documented route (docs/theory.md §4.6): seeds from `cascade sweep`, collected to Parquet, then the coverage
    import json

    from validation.cli import main

    monkeypatch.chdir(tmp_path)
    flags = ["--m", "1", "--link", "He2", "--preprocessing", "tanh(y)", "--ds", "100", "--alphas", "4,8",
             "--seeds", "12", "--store", "st"]
    assert main(["sweep", "run", *flags, "--quiet"]) == 0
    assert main(["sweep", "collect", *flags, "--out", "t.parquet"]) == 0
    capsys.readouterr()
    assert main(["coverage", "t.parquet", "--group-size", "4", "--levels", "0.8", "--quantity", "q_best",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    sim = pd.read_parquet("t.parquet")
    ref = group_coverage(predict(TANH, [4.0, 8.0]), sim, "q_best", (0.8,), group_size=4)
    got = [(r["tol_basis"], r["inside"], r["trials"]) for r in rows]
    assert got == list(zip(ref.tol_basis, ref.inside, ref.trials))


@pytest.mark.slow  # about 8 min: 1152 seeds at d = 400 for each of two models, and 2 x 3 x 192 compares each
def test_the_outlier_and_window_laws_cover_at_their_level_on_two_non_default_models_with_fresh_seeds():
    # Issue 15's item 1, docs/theory.md §4.6: compare's clt+mixing rows (the outlier law with the mixing of the block,
    # §4.3) and its window rows (the canonical law with its spikes placed at the model's outliers, §4.5) on the m = 3,
    # gamma = 1/2, He2, tanh, Delta = 1/2 model and the m = 2, gamma = 0.3, He2, clip(y, -1, 3) model, in 192 groups
    # of 6 fresh seeds (180000-181151; the tables of §4.3 used 110000-111151; nothing was fitted to either). The
    # fraction inside must be within 3 sd of each level, with the sd of correlated trials (coverage_error's sd_level:
    # the binomial sd times the design effect the groups show, measured 1.6-2.5 for clt+mixing; the window rows have
    # one point per group). Measured (z at 0.5 / 0.8 / 0.95): clt+mixing, m = 3 q_best +0.17 / +0.33 / +0.66, q_rank
    # +0.71 / +0.47 / +0.29; gamma = 0.3 q_best +0.72 / +0.10 / -0.26, q_rank +0.89 / +0.46 / +0.03. Window, the points
    # (6, 3) of m = 3 and (3, 2) of gamma = 0.3: m = 3 q_best -0.72 / -0.65 / -0.46, q_rank -0.86 / -0.83 / -2.44;
    # gamma = 0.3 q_best +1.15 / +2.05 / +2.18, q_rank -0.72 / +0.07 / -0.79. With the spikes at the edge map's w'
    # (before matched_spikes) three of the four window rows failed: q_rank at (3, 2) -4.3 / -6.1 / -5.1.
    m3 = HierarchicalModel(m=3, gamma="1/2", link="He2", preprocessing="tanh(y)", delta="1/2")
    g03 = HierarchicalModel(m=2, gamma="0.3", link="He2", preprocessing="clip(y, -1, 3)")
    seeds = range(180000, 181152)
    for model, alphas in ((m3, [6.0, 7.0, 8.0, 9.0]), (g03, [3.0, 4.0, 6.0, 8.0, 12.0])):
        sim = simulate(model, 400, alphas, seeds)
        pred = predict(model, alphas)
        for quantity in ("q_best", "q_rank"):
            res = group_coverage(pred, sim, quantity, (0.5, 0.8, 0.95), group_size=6)
            mixing = res[res.tol_basis == "clt+mixing"]
            assert len(mixing) == 3 and set(mixing.points) == {11 if model.m == 3 else 9}, res
            assert np.all(np.abs(mixing.z) <= 3), mixing
            rows = res[res.tol_basis == "window"]
            assert len(rows) == 3 and set(rows.points) == {1} and np.all(np.abs(rows.z) <= 3), rows
