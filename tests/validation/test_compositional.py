"""Model C at finite size: samplers, the matrix-free layer 1, the layer-wise algorithm vs theory."""
import numpy as np
import pytest

from numerics import layer1_prediction
from theory import CompositionalModel
from validation.compositional import (CompositionalSampler, matrix_free_layer1, run_layerwise, sym_to_vec,
                                      vec_to_sym)

TINY = CompositionalModel(d=12, eps=0.5, gamma=1)  # D = 78, d1 = 3
GE150 = CompositionalModel(d=40, eps=0.92, gamma=1)  # d1 = round(40^0.92) = 30; used in an abstract D = 150


def test_symmetric_matrix_coordinates_are_the_feature_coordinates():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((TINY.D, 3))
    np.testing.assert_allclose(sym_to_vec(vec_to_sym(a, 12)), a, atol=1e-14)
    smp = CompositionalSampler(TINY, 0, "true")
    X, Z, _ = smp.draw(5)
    M = vec_to_sym(a[:, :1], 12)[0]
    # <Z(x), a> = x^T M x - tr M, the identity the matrix-free operator rests on
    np.testing.assert_allclose(Z @ a[:, 0], np.einsum("ij,jk,ik->i", X, M, X) - np.trace(M), atol=1e-12)


def test_features_are_orthonormal_and_counted_by_the_binomial():
    smp = CompositionalSampler(CompositionalModel(d=5, q=3, eps=0.5, gamma=1), 0, "true")
    _, Z, _ = smp.draw(200_000)
    assert Z.shape[1] == 35  # C(5 + 2, 3)
    G = Z.T @ Z / len(Z)
    sem = np.sqrt(((Z**2).T @ Z**2 / len(Z) - G**2) / len(Z))
    assert np.all(np.abs(G - np.eye(35)) <= 5 * sem)


def test_labels_are_standardized():
    # g_star = id: y = s / sqrt(2 sum b^2) has mean 0 and variance 1 exactly; check on 2e5 draws
    _, _, y = CompositionalSampler(TINY, 1, "ge").draw(200_000)
    assert abs(y.mean()) < 5 / np.sqrt(2e5) and abs(y.var() - 1) < 5 * np.sqrt(y.var() * 8 / 2e5)
    _, _, y = CompositionalSampler(CompositionalModel(d=12, eps=0.5, gamma=1, g_star="z**2"), 1, "ge").draw(200_000)
    assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05


def test_matrix_free_layer1_equals_the_dense_matrix():
    smp = CompositionalSampler(TINY, 0, "true")
    X, Z, y = smp.draw(4000)
    M1 = (Z.T * y) @ Z / (2 * 4000) - y.mean() / 2 * np.eye(TINY.D)
    vals, vecs = np.linalg.eigh(M1)
    order = np.argsort(-np.abs(vals))[:3]
    mf_vals, mf_vecs = matrix_free_layer1(X, y, 3)
    np.testing.assert_allclose(mf_vals, vals[order], rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(mf_vecs * vecs[:, order], axis=0)), 1.0, atol=1e-8)


def test_wick_layer1_matrix_free_equals_dense_and_the_pipeline_uses_it():
    smp = CompositionalSampler(TINY, 0, "true")
    X, Z, y = smp.draw(4000)
    C2 = ((X.T * y) @ X - y.sum() * np.eye(TINY.d)) / 4000
    from numerics.quadratic_chaos import second_chaos
    M1 = (Z.T * y) @ Z / (2 * 4000) - y.mean() / 2 * np.eye(TINY.D) - second_chaos(C2)
    vals, vecs = np.linalg.eigh(M1)
    order = np.argsort(-np.abs(vals))[:3]
    mf_vals, mf_vecs = matrix_free_layer1(X, y, 3, estimator="wick")
    np.testing.assert_allclose(mf_vals, vals[order], rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(mf_vecs * vecs[:, order], axis=0)), 1.0, atol=1e-8)
    r = run_layerwise(TINY, n=4000, seed=0, kind="true", estimator="wick")
    assert r["estimator"] == "wick"
    np.testing.assert_allclose(np.sort(np.abs(r["eigenvalues"])), np.sort(np.abs(mf_vals)), rtol=1e-8)
    # GE: Z Z^T - I is already Wick-ordered, the option changes nothing
    a, b = (run_layerwise(TINY, n=2000, seed=0, kind="ge", estimator=e) for e in ("plain", "wick"))
    assert a["estimator"] == b["estimator"] == "plain" and a["nmse"] == b["nmse"]
    with pytest.raises(ValueError, match="estimator: the Wick-ordered layer 1 is implemented for q = 2"):
        run_layerwise(CompositionalModel(d=5, q=3, eps=0.5, gamma=1), n=1000, seed=0, kind="true", estimator="wick")


def test_ge_pipeline_runs_and_reports():
    r = run_layerwise(TINY, n=78 * 200, seed=0, kind="ge")
    assert r["layer1"] == "dense" and r["feature_proj"].shape == (3,)
    assert 0 <= r["subspace_overlap"] <= 1 and r["nmse"] < 1
    # at alpha = 200 every feature of this d1 = 3 model is an outlier (n_i* / D <= 9 / (4 * 0.61^2 ...))
    assert r["k_sel"] == 3


@pytest.mark.parametrize("kwargs, text", [
    ({"n": 5}, "n:"), ({"kind": "deep"}, "kind"), ({"layer1": "magic"}, "layer1"), ({"keep": "all"}, "keep"),
    ({"kind": "true", "D": 50}, "abstract D"), ({"kind": "ge", "layer1": "matrix_free"}, "matrix-free"),
    ({"estimator": "hermite"}, "estimator"),
])
def test_bad_input(kwargs, text):
    args = {"n": 1000, "seed": 0, "kind": "ge"} | kwargs
    with pytest.raises(ValueError, match=text):
        run_layerwise(TINY, **args)


def test_too_many_features_for_D_is_refused():
    with pytest.raises(ValueError, match="d1"):
        CompositionalSampler(GE150, 0, "ge", D=20)


@pytest.mark.slow
def test_ge_overlaps_agree_with_the_solver_at_large_n_over_D():
    # GE, D = 150, d1 = 30, gamma = 1, 6 seeds, n/D = 100 and 200. The solver (numerics.layer1_prediction,
    # with each seed's signs) is the d = inf prediction; the projection on the selected outliers is the
    # robust per-feature quantity (docs/theory.md §5). The issue's +-0.02 applies to the expectation; the 6-seed
    # mean adds its own standard error (2 sem). Measured: within 0.006 for the top 4 and 0.020 for i = 5
    # at n/D = 100, within 0.005 at 200. Best-match overlaps sit lower (mixing): reported, not asserted.
    for alpha in (100, 200):
        res = [run_layerwise(GE150, n=alpha * 150, seed=s, kind="ge", D=150) for s in range(6)]
        P = np.array([r["feature_proj"] for r in res])
        proj, sem = P.mean(axis=0), P.std(axis=0, ddof=1) / np.sqrt(len(P))
        theory = np.mean([layer1_prediction(GE150, n=[alpha * 150], signs=r["signs"], D=150)["rho2"][0] for r in res],
                         axis=0)
        assert np.all(np.abs(proj[:5] - theory[:5]) <= 0.02 + 2 * sem[:5])
        # subspace overlap on the selected outliers vs sum rho_i^2 / d1
        sub = np.mean([r["feature_proj"].sum() / r["d1"] for r in res])
        assert abs(sub - theory.sum() / 30) <= 0.02


@pytest.mark.slow
def test_pipeline_nmse_matches_the_formula_with_a_fresh_split():
    # NMSE vs sum_i w_i (1 - rho_i^4) / sum_i w_i with the measured rho_i^2 (projections), n/D = 100, 200:
    # within 15% (measured 0.2%-2%) when layer 2 is fitted on fresh samples. Reusing the layer-1 samples
    # (docs/theory.md §3's algorithm) costs a factor 1.6-2.2 here: B_hat = A_hat^T M1 A_hat = diag(lambda) puts the
    # edge eigenvalues of the bulk directions into the predictor (docs/compositional.md).
    w = np.arange(1, 31) ** -2.0
    for alpha in (100, 200):
        res = [run_layerwise(GE150, n=alpha * 150, seed=s, kind="ge", D=150, fresh_split=True, keep="outliers")
               for s in range(3)]
        nmse = np.mean([r["nmse"] for r in res])
        formula = np.mean([np.sum(w * (1 - r["feature_proj"] ** 2)) / w.sum() for r in res])
        assert abs(nmse / formula - 1) <= 0.15


@pytest.mark.slow  # about 26 s: a whole Model C validate run (simulations of the layer-wise method)
def test_validate_compositional_cli_small(tmp_path, capsys):
    from validation.cli import main

    rc = main(["validate", "--model", "compositional", "--d", "12", "--alphas", "20,100", "--seeds", "1",
               "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "baselines on x" in out and "D = 78" in out
    assert (tmp_path / "validate_compositional.png").exists()
    # the table carries its model and the baselines, so `cascade plot` redraws it (it used to fail)
    rc = main(["plot", str(tmp_path / "validate_compositional.parquet"), "--out", str(tmp_path / "again")])
    assert rc == 0 and (tmp_path / "again.png").stat().st_size > 10_000


def test_baselines_bad_input():
    from validation.baselines import kernel_ridge, random_features_ridge

    X = np.zeros((20, 2))
    with pytest.raises(ValueError, match="kernel"):
        kernel_ridge(X, X[:, 0], X, X[:, 0], kernel="laplace")
    with pytest.raises(ValueError, match="P:"):
        random_features_ridge(X, X[:, 0], X, X[:, 0], P=0)
    from validation.baselines import nystrom_ridge

    with pytest.raises(ValueError, match="rank"):
        nystrom_ridge(X, X[:, 0], X, X[:, 0], rank=21)
    with pytest.raises(ValueError, match="rank"):
        nystrom_ridge(X, X[:, 0], X, X[:, 0], rank=0)


@pytest.mark.parametrize("kernel, rtol", [("poly", 1e-10), ("rbf", 1e-3)])
def test_nystrom_at_full_rank_is_exact_kernel_ridge(kernel, rtol):
    # independent route: kernel_ridge solves the dual n x n system; nystrom_ridge with every training point as a
    # landmark fits the primal ridge on phi = K_nn K_nn^(-1/2), whose Gram matrix is K itself, with the same
    # hold-out split, ridge grid and scale: the test NMSE must agree. poly 4 in d = 5 has rank 126 < n, exact up
    # to rounding; the RBF Gram matrix has eigenvalues below the pseudo-inverse cut (1e-10 of the largest), which
    # are dropped (measured: 5e-5 relative).
    from validation.baselines import kernel_ridge, nystrom_ridge

    rng = np.random.default_rng(1)
    X, Xt = rng.standard_normal((400, 5)), rng.standard_normal((300, 5))
    f = lambda X: np.tanh(X[:, 0] * X[:, 1]) + 0.3 * X[:, 2] ** 2 + 0.1 * rng.standard_normal(len(X))
    y, yt = f(X), f(Xt)
    exact = kernel_ridge(X, y, Xt, yt, kernel, degree=4)
    nys = nystrom_ridge(X, y, Xt, yt, kernel, degree=4, rank=400)
    assert nys["ridge"] == exact["ridge"] and nys["n_used"] == 400
    assert nys["nmse"] == pytest.approx(exact["nmse"], rel=rtol)
    # a lower rank is an approximation: a different number, still a fit (NMSE well below 1)
    low = nystrom_ridge(X, y, Xt, yt, kernel, degree=4, rank=100)
    assert low["rank"] == 100 and low["nmse"] != exact["nmse"] and low["nmse"] < 0.5


@pytest.mark.slow
def test_depth_separation_on_the_true_model():
    # d = 30, q = 2 (D = 465, d1 = 5), n = 200 D = 93000, far below d^(2q) = 810000, every method on all n
    # samples: the layer-wise method reaches a test NMSE well below the non-hierarchical baselines, which stay
    # near 1 (measured, seed 0: 0.27 vs 0.74 / 0.74 / 0.75 / 0.78 for Nystrom rbf and poly 4 (rank 1000), RF ridge
    # (P = 1000) and the shallow spectral method on x).
    from validation.baselines import nystrom_ridge, random_features_ridge, shallow_spectral

    model = CompositionalModel(d=30, eps=0.5, gamma=1)
    r = run_layerwise(model, n=200 * model.D, seed=0, kind="true")
    smp = CompositionalSampler(model, 0, "true")
    X, _, y = smp.draw(200 * model.D)
    Xt, _, yt = smp.draw(5000)
    base = [nystrom_ridge(X, y, Xt, yt, "rbf", rank=1000), nystrom_ridge(X, y, Xt, yt, "poly", degree=4, rank=1000),
            random_features_ridge(X, y, Xt, yt, P=1000), shallow_spectral(X, y, Xt, yt)]
    assert all(b["n_used"] == 200 * model.D for b in base)
    assert all(b["nmse"] > 0.6 for b in base)
    assert r["nmse"] < 0.5 * min(b["nmse"] for b in base)


@pytest.mark.slow
def test_local_nmse_exponent_matches_the_theory_curve():
    # GE D = 150, d1 = 30, gamma = 1, n/D in [50, 200] (below saturation), fresh split, 3 seeds: the fitted
    # local exponent of the simulated NMSE agrees with that of the theory curve sum w (1 - rho^4)/sum w
    # (solver rho) within 0.1 (measured -0.671 vs -0.659).
    w = np.arange(1, 31) ** -2.0
    alphas = np.array([50.0, 100.0, 200.0])
    sim, th = [], []
    for a in alphas:
        res = [run_layerwise(GE150, n=int(a * 150), seed=s, kind="ge", D=150, fresh_split=True, keep="outliers")
               for s in range(3)]
        sim.append(np.mean([r["nmse"] for r in res]))
        rho = np.mean([layer1_prediction(GE150, n=[a * 150], signs=r["signs"], D=150)["rho2"][0] for r in res], axis=0)
        th.append(np.sum(w * (1 - rho**2)) / w.sum())
    s_sim = np.polyfit(np.log(alphas), np.log(sim), 1)[0]
    s_th = np.polyfit(np.log(alphas), np.log(th), 1)[0]
    assert abs(s_sim - s_th) <= 0.1


@pytest.mark.parametrize("kwargs, text", [({"layers": 0}, "layers"), ({"K": 50, "P": 10}, "K:"),
                                          ({"activation": "gelu"}, "activation")])
def test_lofi_bad_input(kwargs, text):
    from validation.lofi import lofi

    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match=text):
        lofi(X, X[:, 0], X, X[:, 0], **kwargs)


@pytest.mark.slow
def test_true_model_sequential_recovery_and_lagged_staircase_with_the_wick_estimator():
    # True model, q = 2, d = 30 (D = 465, d1 = 5, gamma = 1), seeds 0 and 1, n/D = 50, 200, 1000.
    # Prediction at n = inf from Wick's theorem (numerics.population_layer1): with docs/theory.md §3's plain M1 the
    # degree-2 chaos part (~16 theta_1 / d) pushes features out of the top d1 by |eigenvalue| for good; the
    # Wick-ordered estimator leaves only the ~8 theta_1 / d S x S part. The n = inf counterpart of the
    # measured ||P_top A_i||^2 is the same projection on the top-d1 eigenvectors of the population
    # operator; a feature counts as recovered (or separable) when it exceeds 1/2.
    from numerics.quadratic_chaos import population_layer1
    from theory import staircase

    model = CompositionalModel(d=30, eps=0.5, gamma=1)
    d, D = model.d, model.D
    ratios = (50, 200, 1000)
    for seed in (0, 1):
        smp = CompositionalSampler(model, seed, "true")
        c = smp.b / smp.std
        sep = {}
        for est in ("plain", "wick"):
            vals, V = np.linalg.eigh(population_layer1(smp.A, c, d, wick=est == "wick"))
            top = V[:, np.argsort(-np.abs(vals))[:model.d1]]
            sep[est] = set(np.flatnonzero(((smp.A.T @ top) ** 2).sum(axis=1) > 0.5) + 1)
        # measured: plain {1, 2} (seed 0), {1, 2, 3} (seed 1, feature 3 at 0.53); Wick-ordered: all five
        assert sep["wick"] == {1, 2, 3, 4, 5} and sep["plain"] < sep["wick"]
        counts = []
        for ratio in ratios:
            r = run_layerwise(model, n=ratio * D, seed=seed, kind="true", estimator="wick")
            rec = set(np.flatnonzero(r["feature_proj_top"] > 0.5) + 1)
            # sequential, in the predicted order (decreasing |b_i|): always a prefix 1..m
            assert rec == set(range(1, len(rec) + 1)), (seed, ratio, r["feature_proj_top"])
            counts.append(len(rec))
        assert counts == sorted(counts) and counts[-1] == 5
        # plain estimator at the largest n: nothing beyond what its population operator separates
        r = run_layerwise(model, n=1000 * D, seed=seed, kind="true", estimator="plain")
        assert set(np.flatnonzero(r["feature_proj_top"] > 0.5) + 1) <= sep["plain"]
        # the count follows the staircase m_th(n / L) with a single lag L over the whole grid (measured
        # L in (11.5, 20.7] at d = 30: the heavy-tailed elliptical noise of Z(x), docs/compositional.md)
        lags = np.geomspace(1, 100, 2000)
        ok = [L for L in lags if all(staircase(model, int(ratio * D / L)) == m for ratio, m in zip(ratios, counts))]
        assert ok and 5 < min(ok) and max(ok) < 30, (seed, counts, ok[:1], ok[-1:])
