"""The per-feature lag of the true Model C behind the GE staircase (validation.feature_lag)."""
import numpy as np
import pandas as pd
import pytest

from numerics import layer1_prediction
from theory import CompositionalModel
from validation.feature_lag import feature_lags, first_crossing, ge_crossings, ge_grid_start, lag_summary


def test_first_crossing_interpolates_in_log_n():
    # values 0.2 -> 0.8 between n = 100 and 1000: level 0.5 is halfway, at sqrt(100 * 1000)
    assert first_crossing([10, 100, 1000], [0.0, 0.2, 0.8]) == pytest.approx(np.sqrt(1e5), rel=1e-12)
    assert first_crossing([10, 100], [0.6, 0.9]) == 10.0  # already there at the first point
    assert np.isnan(first_crossing([10, 100], [0.1, 0.49]))  # censored
    assert first_crossing([10, 100, 1000], [0.6, 0.1, 0.9]) == 10.0  # the first crossing, not a later one


@pytest.mark.slow  # 38 s (the GE solver at every brentq step); the default step stays under 10 minutes
def test_ge_crossings_are_where_an_independent_solver_call_gives_one_half():
    model = CompositionalModel(d=12, eps="1/2", gamma=1)  # d1 = 3
    signs = np.ones(model.d1)
    n = ge_crossings(model, signs, n_max=1e5)
    assert np.all(np.diff(n) > 0)  # weaker features need more samples
    rho2 = layer1_prediction(model, n=[int(round(v)) for v in n], signs=signs)["rho2"]
    # brentq to 1% in n; rho^2 moves by less than 0.02 over 1% of n at these crossings
    np.testing.assert_allclose(np.diag(rho2), 0.5, atol=0.02)


def test_ge_crossing_already_reached_at_the_first_grid_point_is_its_start(monkeypatch):
    # a solver that puts every feature at rho^2 = 0.9 whatever n: the crossing is left-censored and
    # returned as ge_grid_start, the value feature_lags flags as ge_censored_left
    import numerics

    model = CompositionalModel(d=12, eps="1/2", gamma=1)
    monkeypatch.setattr(numerics, "layer1_prediction", lambda m, n, signs: {"rho2": np.full((len(n), m.d1), 0.9)})
    n = ge_crossings(model, np.ones(model.d1), n_max=1e4)
    assert np.all(n == ge_grid_start(model)) and ge_grid_start(model) == 2


@pytest.mark.slow  # about 2 minutes: 2 seeds x 6 sizes at d = 12 through the sweep store, then a rerun
def test_lag_pipeline_at_small_d_reuses_its_store_and_recovers_features_in_order(tmp_path):
    model = CompositionalModel(d=12, eps="1/2", gamma=1)
    ratios = (12.5, 25, 50, 100, 200, 400)
    rows = feature_lags([model], ratios=ratios, seeds=(0, 1), store=tmp_path)
    assert rows.attrs["sweep"]["computed"] == 2
    again = feature_lags([model], ratios=ratios, seeds=(0, 1), store=tmp_path)
    assert again.attrs["sweep"]["computed"] == 0 and again.attrs["sweep"]["skipped"] == 2
    np.testing.assert_array_equal(rows["n_true"].to_numpy(), again["n_true"].to_numpy())
    for seed, g in rows.groupby("seed"):
        reached = g.sort_values("i")["reached"].to_numpy()
        # sequential recovery in the |b_i| order (docs/compositional.md): the reached features are a prefix
        assert reached[0] and np.all(np.diff(reached.astype(int)) <= 0), (seed, reached)
        # a reached feature is one the population operator separates
        assert np.all(g.loc[g["reached"], "separable"])
        # the true model is never ahead of its Gaussian equivalent (measured lags 3-75 at d = 20-40)
        assert np.all(g.loc[g["reached"], "lag"] > 1.0)
    summ = lag_summary(rows)
    assert list(summ["i"]) == [1, 2, 3] and summ.loc[0, "reached"] == "2/2"


def test_lag_summary_counts_the_lags_that_are_only_bounds():
    # rows as feature_lags writes them: feature 1 reached by both seeds, seed 1's n_true censored at the
    # grid's first point (its lag only an upper bound); feature 2 reached by seed 0 only, whose n_GE is
    # censored (a lower bound). Tables from before the flags existed have no such columns: no bounds.
    rows = pd.DataFrame({"d": 20, "D": 210, "i": [1, 1, 2, 2], "seed": [0, 1, 0, 1],
                         "n_true": [4200.0, 2625.0, 8400.0, np.nan], "n_ge": [1050.0, 1050.0, 2.0, 3000.0],
                         "reached": [True, True, True, False], "separable": True,
                         "ge_censored_left": [False, False, True, False],
                         "true_censored_left": [False, True, False, False]})
    rows["lag"] = rows["n_true"] / rows["n_ge"]
    summ = lag_summary(rows)
    assert list(summ["bounds"]) == ["1/2", "1/1"] and list(summ["reached"]) == ["2/2", "1/2"]
    assert np.isclose(summ.loc[0, "lag"], np.sqrt(4.0 * 2.5))  # the geometric mean of 4 and 2.5
    old = lag_summary(rows.drop(columns=["ge_censored_left", "true_censored_left"]))
    assert list(old["bounds"]) == ["0/2", "0/1"]


def test_reference_is_refused_before_anything_runs(tmp_path):
    tanh = CompositionalModel(d=12, eps="1/2", gamma=1, g_star="tanh(z)")
    with pytest.raises(ValueError, match="reference: the GE solver needs g_star = identity"):
        feature_lags([tanh], store=tmp_path, reference="solver")
    with pytest.raises(ValueError, match="reference: must be"):
        feature_lags([tanh], store=tmp_path, reference="exact")
    assert not any(tmp_path.iterdir())  # nothing stored


def test_reproduce_lag_flags_are_lag_only_and_checked(tmp_path, capsys):
    from validation.cli import main

    out = tmp_path / "out"
    assert main(["reproduce", "S", "--gamma", "0.4", "--out", str(out)]) == 2
    assert "--gamma: only 'cascade reproduce lag' and 'cascade reproduce separation'" in capsys.readouterr().err
    assert main(["reproduce", "lag", "--gamma", "abc", "--out", str(out)]) == 2
    assert "gamma" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # about a minute: true (Wick) and GE simulations, 2 seeds x 10 sizes at d = 12
def test_lag_against_the_simulated_ge_model_for_a_nonlinear_link(tmp_path):
    # g_star = tanh: the d = infinity GE solver does not apply, so n_GE is the GE model's own first
    # crossing at the same d (reference "simulation")
    model = CompositionalModel(d=12, eps="1/2", gamma=1, g_star="tanh(z)")
    ratios = (0.75, 1.5, 3, 6, 12, 25, 50, 100, 200, 400)
    rows = feature_lags([model], ratios=ratios, seeds=(0, 1), store=tmp_path)
    assert set(rows["reference"]) == {"simulation"} and set(rows["g_star"]) == {"tanh(z)"}
    first = rows[rows["i"] == 1]
    # the strongest feature is reached by both models on this grid (measured: GE at about 2 D, true at 14-15 D)
    assert first["reached"].all() and np.isfinite(first["n_ge"]).all()
    assert (first["n_ge"] > ratios[0] * model.D).all()  # a crossing, not censored at the grid's first point
    assert not first["ge_censored_left"].any()
    # the true model lags its Gaussian equivalent (measured 5.9 and 7.3 here; 3-75 at d = 20-40, identity link)
    assert float(np.exp(np.log(first["lag"]).mean())) > 1.0
    # a grid that starts above the GE crossing (about 2 D here) censors it, and the row says so
    late = feature_lags([model], ratios=(3, 6, 12), seeds=(0,), store=tmp_path)
    assert bool(late.loc[late["i"] == 1, "ge_censored_left"].iloc[0])
    # a grid that starts above the true model's crossing too (14-15 D) censors both, and the lag
    # n_true / n_GE = 1 is then only a bound: the summary counts it under "bounds"
    later = feature_lags([model], ratios=(25, 50), seeds=(0,), store=tmp_path)
    row = later[later["i"] == 1].iloc[0]
    assert row["true_censored_left"] and row["ge_censored_left"] and row["n_true"] == 25 * model.D
    assert lag_summary(later).loc[0, "bounds"] == "1/1"
