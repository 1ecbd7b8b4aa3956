"""The true model's layer-1 population operator (Wick's theorem) against Monte Carlo."""
import numpy as np
import pytest

from numerics.quadratic_chaos import lift, population_layer1, second_chaos, sym_to_vec, vec_to_sym
from theory import CompositionalModel
from validation.compositional import CompositionalSampler


def test_lift_and_second_chaos_are_the_maps_they_name():
    rng = np.random.default_rng(0)
    d = 6
    C = rng.standard_normal((d, d))
    C = C + C.T
    a = rng.standard_normal(d * (d + 1) // 2)
    M = vec_to_sym(a, d)[0]
    np.testing.assert_allclose(second_chaos(C) @ a, sym_to_vec(((C @ M + M @ C) / 2)[None])[:, 0], atol=1e-12)
    np.testing.assert_allclose(lift(lambda Ms: Ms, d), np.eye(d * (d + 1) // 2), atol=1e-14)
    with pytest.raises(ValueError, match="A: expected shape"):
        population_layer1(np.eye(21)[:, :2], [1.0], d)
    with pytest.raises(ValueError, match="a: expected D"):
        vec_to_sym(np.ones(20), d)


def test_population_operator_matches_monte_carlo_plain_and_wick():
    # Independent routes: the closed form from Wick's theorem (numerics.quadratic_chaos) vs the sample
    # mean of the per-sample quadratic forms of the true model, along four directions: A_1 (the spike),
    # the top eigenvectors of the two spurious parts (degree-2 chaos, S x S pairings) and a random one.
    # Tolerance: 5 standard errors of each Monte Carlo mean (n = 4e5, seed 3).
    model = CompositionalModel(d=10, eps=0.5, gamma=1)  # D = 55, d1 = 3
    smp = CompositionalSampler(model, 0, "true")
    d, D = model.d, model.D
    c = smp.b / smp.std  # y = sum_i c_i He2(h_i) + const, exactly as the sampler draws it
    P_plain = population_layer1(smp.A, c, d)
    P_wick = population_layer1(smp.A, c, d, wick=True)
    P_ge = (smp.A * c) @ smp.A.T
    top = lambda P: np.linalg.eigh(P)[1][:, -1]  # noqa: E731
    dirs = np.column_stack([smp.A[:, 0], top(P_plain - P_wick), top(P_wick - P_ge),
                            np.random.default_rng(1).standard_normal(D)])
    dirs /= np.linalg.norm(dirs, axis=0)
    Ms = vec_to_sym(dirs, d)
    M2 = Ms @ Ms
    smp.rng = np.random.default_rng(3)
    s1, s2, n = np.zeros((2, 4)), np.zeros((2, 4)), 0
    for _ in range(40):
        X, Z, y = smp.draw(10_000)
        plain = 0.5 * y[:, None] * ((Z @ dirs) ** 2 - 1)
        quad = np.einsum("ni,kij,nj->nk", X, M2, X) - np.trace(M2, axis1=1, axis2=2)
        for j, v in enumerate((plain, plain - 2 * y[:, None] * quad)):  # the per-sample Wick product
            s1[j] += v.sum(0)
            s2[j] += (v**2).sum(0)
        n += len(y)
    mean, sem = s1 / n, np.sqrt((s2 / n - (s1 / n) ** 2) / n)
    for j, P in enumerate((P_plain, P_wick)):
        exact = np.einsum("ik,ij,jk->k", dirs, P, dirs)
        assert np.all(np.abs(mean[j] - exact) < 5 * sem[j]), (j, mean[j], exact, sem[j])
    # power: the Gaussian-equivalent operator is far off along the spurious directions
    ge = np.einsum("ik,ij,jk->k", dirs, P_ge, dirs)
    assert np.all(np.abs(mean[0, 1:3] - ge[1:3]) > 20 * sem[0, 1:3])
    # and the Wick product's population differs from the plain one by far more than the errors
    q = lambda P: dirs[:, 1] @ P @ dirs[:, 1]  # noqa: E731
    assert abs(q(P_plain) - q(P_wick)) > 20 * max(sem[0, 1], sem[1, 1])


def test_the_degree2_share_closed_form_matches_monte_carlo():
    """f2 = |C2|_F^2 / 2 with C2 = 8 sum_i c_i S_i^2 (closed form) against the split-half Monte Carlo estimate
    of (1/2)<C2_hat1, C2_hat2> on fresh draws of the true model (an independent route); the tolerance is 4
    standard errors of the mean of 8 independent Monte Carlo replicates."""
    for gamma, seed in (("1", 0), ("2/5", 1)):
        smp = CompositionalSampler(CompositionalModel(d=12, eps="1/2", gamma=gamma), seed, "true")
        closed = smp.degree2_share()
        mc = np.array([smp.degree2_share(n_samples=60_000, route="monte-carlo", stream=s) for s in range(20, 28)])
        assert abs(mc.mean() - closed) <= 4 * mc.std(ddof=1) / np.sqrt(mc.size)
        assert 0.01 < closed < 1  # a share of the standardised target's variance


def test_the_degree2_share_refuses_what_it_does_not_cover():
    with pytest.raises(ValueError, match="kind"):
        CompositionalSampler(CompositionalModel(d=12, eps="1/2"), 0, "ge").degree2_share()
    with pytest.raises(ValueError, match="route"):
        CompositionalSampler(CompositionalModel(d=12, eps="1/2"), 0, "true").degree2_share(route="exact")
