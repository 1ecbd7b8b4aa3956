"""Finite-size smoothing (docs/theory.md §4): the study's plumbing, its estimator and bad input."""
import numpy as np
import pytest

from theory import HierarchicalModel
from validation.finite_size import _chi2_fixed_power, _fit_power, boundary_alpha, finite_size_study, top_overlaps
from validation.simulate import simulate_task

CONTINUOUS = HierarchicalModel(m=1, link="He2", preprocessing="clip(y, -1, 3)")  # atom at sup T: no boundary regime


def test_power_fit_recovers_a_known_exponent():
    d = np.array([100.0, 200, 400, 800, 1600])
    y = 2.0 * d ** (-1 / 3)
    slope, se = _fit_power(d, y, 0.01 * y)
    assert slope == pytest.approx(-1 / 3, abs=1e-12) and se < 0.01


def test_chi2_of_a_fixed_power_law():
    d = np.array([100.0, 200, 400, 800])
    se = 0.1 * d ** (-1 / 3)
    assert _chi2_fixed_power(d, 3 * d ** (-1 / 3), se, -1 / 3) == pytest.approx(0, abs=1e-20)
    # y off the law by +-1 se alternately: A stays 3 (symmetric weights cancel only approximately), chi2/dof ~ 4/3
    y = 3 * d ** (-1 / 3) + se * np.array([1, -1, 1, -1])
    assert 1.0 < _chi2_fixed_power(d, y, se, -1 / 3) < 4 / 3 + 1e-12


@pytest.mark.parametrize("model", [CONTINUOUS, HierarchicalModel(m=3)], ids=["He2-clip", "default-m3"])
def test_lanczos_overlaps_equal_the_dense_simulation(model):
    # independent route: simulate_task accumulates D_n by syrk and diagonalises it with a full eigh; top_overlaps
    # never forms D_n (ARPACK on X^T (t * X v) / n). Same seed, same draws: q_best must agree to rounding.
    alphas = [0.7, 1.5, 4.0]
    dense = simulate_task(model, 150, alphas, seed=3)[0].pivot(index="alpha", columns="k", values="q_best").to_numpy()
    assert np.abs(top_overlaps(model, 150, alphas, seed=3) - dense).max() < 1e-10
    # the float32 samples agree to float32 rounding of the overlaps (measured 2e-8)
    assert np.abs(top_overlaps(model, 150, alphas, seed=3, dtype=np.float32) - dense).max() < 1e-6


@pytest.mark.parametrize("kwargs, text", [({"seed": -1}, "seed"), ({"dtype": np.int32}, "dtype"),
                                          ({"alphas": [0.001]}, "alphas"), ({"d": 1}, "d:")])
def test_lanczos_overlaps_bad_input(kwargs, text):
    args = {"model": CONTINUOUS, "d": 100, "alphas": [1.0], "seed": 0} | kwargs
    with pytest.raises(ValueError, match=text):
        top_overlaps(**args)


def test_boundary_regime_is_refused():
    # the default model's k = 1 jumps at alpha_1 = 1.26 < alpha_b = 2.36 (docs/numerics.md)
    model = HierarchicalModel()
    alpha_b = boundary_alpha(model)
    # independent route: alpha_b = 1/G2(sup T) = 1/E[T^2/(1-T)^2] by seeded Monte Carlo of the labels,
    # with g = He2/2 + He4/48 written out by hand; T/(1-T) = y for y > 0 and y/(1-2y) for y < 0
    z = np.random.default_rng(0).standard_normal((1_000_000, model.m))
    y = ((z**2 - 1) / 2 + (z**4 - 6 * z**2 + 3) / 48) @ model.weight_array
    v = np.where(y > 0, y**2, (y / (1 - 2 * y)) ** 2)
    rel_se = v.std() / np.sqrt(v.size) / v.mean()
    assert abs(alpha_b * v.mean() - 1) < 3 * rel_se
    assert alpha_b == pytest.approx(2.362, abs=1e-3)  # regression value (this code, 2026-11)
    assert boundary_alpha(CONTINUOUS) == 0.0
    with pytest.raises(ValueError, match="boundary regime"):
        finite_size_study(HierarchicalModel(), ds=(50, 100), seeds=[0], k=1)


def test_study_columns_and_window_geometry():
    r = finite_size_study(CONTINUOUS, ds=(60, 120), seeds=range(2))
    assert r["k"] == 1 and set(r["per_d"]["d"]) == {60, 120}
    s = r["summary"]
    # the collapse points sit at the requested w for every d
    for d, grp in s.groupby("d"):
        assert np.any(np.isclose(grp["w"], 0.0)) and np.any(np.isclose(grp["w"], 2.0))
    assert np.all(np.isfinite(r["per_d"]["width"]))


@pytest.mark.parametrize("kwargs, text", [
    ({"ds": (100,)}, "ds"), ({"seeds": []}, "seeds"), ({"k": 5}, "k:"),
])
def test_bad_input(kwargs, text):
    args = {"ds": (50, 100), "seeds": [0]} | kwargs
    with pytest.raises(ValueError, match=text):
        finite_size_study(CONTINUOUS, **args)


@pytest.mark.slow
def test_finite_size_scaling_of_a_continuous_transition():
    # m = 1, He2 with T = clip(y, -1, 3) (alpha_1 = 0.654, no boundary regime), d = 100..1600, 128 seeds.
    # docs/theory.md §4: outside the window the simulated overlap is within O(d^-1/2) of the d = inf curve, and the
    # crossover width scales like d^(-1/3). Measured (docs/validation.md): -0.329 +- 0.031 here, -0.311 +- 0.017 with
    # d = 3200 and 6400 added. The fit must be informative (se < 0.05), within 2 se of -1/3, and the -1/3 law with
    # its prefactor fitted must not be rejected: chi2/dof below 3.32, the 99th percentile of chi2_4 / 4.
    r = finite_size_study(CONTINUOUS, ds=(100, 200, 400, 800, 1600), seeds=range(128), dtype=np.float32)
    per_d = r["per_d"]
    assert np.all(per_d["sup_distance"] <= per_d["d"] ** -0.5 + 2 * per_d["sup_distance_sem"])
    fit = r["fit"]
    assert fit["width_exponent_se"] < 0.05
    assert abs(fit["width_exponent"] + 1 / 3) <= 2 * fit["width_exponent_se"]
    assert fit["chi2_dof_one_third"] < 3.32
