"""AMP's output function g_out and its derivative (numerics.bayes.posterior) against routes that
share none of its grids: a dense trapezoid over the m-dimensional Gaussian prior of z, and the
closed form of noiseless phase retrieval."""
import numpy as np
import pytest

from numerics.bayes import ChannelResolution, OutputDenoiser
from numerics.label_law import link_function
from theory import HierarchicalModel


def dense_reference(model, y, omega, v, nodes):
    """E[z_k | y] and Var[z_k | y] by the trapezoid rule on a tensor grid over omega +- 9 sqrt(v)
    (the integrand is a smooth Gaussian bump: spectrally accurate), turned into g and dg."""
    m = model.m
    a = np.array(model.weight_array, dtype=float)
    links = [link_function(model.link_of(k + 1)) for k in range(m)]
    grids = [omega[k] + np.sqrt(v[k]) * np.linspace(-9, 9, nodes) for k in range(m)]
    Z = np.meshgrid(*grids, indexing="ij")
    s = sum(a[k] * links[k](Z[k]) for k in range(m))
    logw = sum(-(Z[k] - omega[k]) ** 2 / (2 * v[k]) for k in range(m)) - (y - s) ** 2 / (2 * float(model.delta))
    w = np.exp(logw - logw.max())
    g, dg = [], []
    for k in range(m):
        mu = (w * Z[k]).sum() / w.sum()
        var = (w * Z[k] ** 2).sum() / w.sum() - mu**2
        g.append((mu - omega[k]) / v[k])
        dg.append((var / v[k] - 1) / v[k])
    return np.array(g), np.array(dg)


def draws(model, v, count, seed):
    """Consistent draws: omega ~ N(0, 1 - v), z ~ N(omega, v), y from the model."""
    rng = np.random.default_rng(seed)
    m = model.m
    a = np.array(model.weight_array, dtype=float)
    links = [link_function(model.link_of(k + 1)) for k in range(m)]
    omega = rng.standard_normal((count, m)) * np.sqrt(np.clip(1 - v, 0, 1))
    z = omega + np.sqrt(v) * rng.standard_normal((count, m))
    y = sum(a[k] * links[k](z[:, k]) for k in range(m)) + np.sqrt(float(model.delta)) * rng.standard_normal(count)
    return y, omega


@pytest.mark.parametrize("v", [[1.0], [0.3], [1e-3], [1e-6]])
def test_single_direction_with_noise_matches_dense_quadrature(v):
    # m = 1: the closed-form noise density on a refined u-grid; its only error is the trapezoid
    # rule and the truncation at |u| <= 5, which the prior-variance correction removes to O(1e-5)
    model = HierarchicalModel(m=1, delta="1/10")
    v = np.array(v)
    y, omega = draws(model, v, 6, seed=1)
    r = OutputDenoiser(model)(y, omega, v)
    for i in range(y.size):
        g, dg = dense_reference(model, y[i], omega[i], v, 4001)
        assert r.g[i] == pytest.approx(g, rel=1e-3, abs=1e-4)
        assert r.dg[i] == pytest.approx(dg, rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("delta, v", [("1/10", [1.0, 1.0]), ("1/10", [0.3, 0.3]), ("1/10", [1e-3, 0.5]),
                                      ("1/10", [0.5, 1e-5]), ("1/20", [0.2, 0.8])])
def test_two_directions_match_dense_quadrature(delta, v):
    # m = 2: the leave-one-out density comes from the channel's y-grid (hat kernel, 4 cells per
    # noise sd by default: O((h / sd)^2) ~ 1e-2 relative) and cubic interpolation. The refined
    # resolution (16 cells per sd, du / 4) must be 10 times closer: the error is the grid's
    model = HierarchicalModel(m=2, delta=delta)
    v = np.array(v)
    y, omega = draws(model, v, 4, seed=2)
    coarse = OutputDenoiser(model)(y, omega, v)
    fine = OutputDenoiser(model, ChannelResolution(n_grid=64, cells_per_sigma=16.0, du=0.025))(y, omega, v)
    for i in range(y.size):
        g, dg = dense_reference(model, y[i], omega[i], v, 801)
        scale_g, scale_dg = max(1.0, np.abs(g).max()), max(1.0, np.abs(dg).max())
        assert np.abs(coarse.g[i] - g).max() < 2e-2 * scale_g
        assert np.abs(coarse.dg[i] - dg).max() < 2e-2 * scale_dg
        assert np.abs(fine.g[i] - g).max() < 2e-3 * scale_g
        assert np.abs(fine.dg[i] - dg).max() < 2e-3 * scale_dg


def test_noiseless_phase_retrieval_closed_form():
    # y = z^2: atoms at +-sqrt(y) with weights exp(+-sqrt(y) omega / v), so
    # E[z|y] = sqrt(y) tanh(sqrt(y) omega / v) and Var[z|y] = y (1 - tanh^2)
    model = HierarchicalModel(m=1, link="z**2", gamma=1)
    a = float(model.weight_array[0])
    rng = np.random.default_rng(3)
    v = np.array([0.7, 1e-3, 1e-8])
    for vk in v:
        omega = rng.standard_normal(50) * np.sqrt(max(1 - vk, 0.0))
        z = omega + np.sqrt(vk) * rng.standard_normal(50)
        y = a * z**2
        r = OutputDenoiser(model)(y, omega[:, None], np.array([vk]))
        t = np.sqrt(y / a)
        th = np.tanh(t * omega / vk)
        np.testing.assert_allclose(r.g[:, 0], (t * th - omega) / vk, rtol=1e-8, atol=1e-8 / vk)
        np.testing.assert_allclose(r.dg[:, 0], (t * t * (1 - th**2) / vk - 1) / vk, rtol=1e-8, atol=1e-8 / vk)
        assert r.fallback == 0


def test_per_sample_variances_equal_per_direction_ones():
    model = HierarchicalModel(m=2, delta="1/10")
    v = np.array([0.4, 0.9])
    y, omega = draws(model, v, 7, seed=4)
    den = OutputDenoiser(model)
    a, b = den(y, omega, v), den(y, omega, np.tile(v, (7, 1)))
    np.testing.assert_allclose(a.g, b.g, rtol=1e-12)
    np.testing.assert_allclose(a.dg, b.dg, rtol=1e-12)


def test_an_impossible_label_falls_back_instead_of_nan():
    # y far outside what N(omega, v) can produce through the noiseless link: no preimage weight
    model = HierarchicalModel(m=1, link="z**2", gamma=1)
    r = OutputDenoiser(model)(np.array([-5.0, 1.0]), np.zeros((2, 1)), np.array([1.0]))
    assert r.fallback == 1 and np.all(np.isfinite(r.g)) and r.g[0, 0] == 0 and r.dg[0, 0] == 0


def test_refusals_name_the_parameter():
    with pytest.raises(ValueError, match="delta"):
        OutputDenoiser(HierarchicalModel(m=2, gamma=1))           # noiseless, m = 2
    with pytest.raises(ValueError, match="link"):
        OutputDenoiser(HierarchicalModel(m=1, link="sign(z)", gamma=1))  # flat pieces
    den = OutputDenoiser(HierarchicalModel(m=2, delta="1/10"))
    with pytest.raises(ValueError, match="v:"):
        den(np.zeros(3), np.zeros((3, 2)), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="omega"):
        den(np.zeros(3), np.zeros((3, 1)), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="y, omega"):
        den(np.array([np.nan, 0, 0]), np.zeros((3, 2)), np.array([1.0, 1.0]))
