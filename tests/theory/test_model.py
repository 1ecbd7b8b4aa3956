import pytest
import sympy as sp

from theory import CompositionalModel, HierarchicalModel


def test_defaults_are_the_D_paper_model():
    m = HierarchicalModel()
    assert m.gamma == sp.Rational(13, 10) and m.m == 10 and m.delta == 0 and m.normalize
    assert abs(sp.N(sum(a**2 for a in m.weights()) - 1, 50)) < 1e-45


def test_exact_numbers_and_symbols():
    assert HierarchicalModel(gamma=1.3).gamma == sp.Rational(13, 10)
    g = sp.Symbol("gamma", positive=True)
    m = HierarchicalModel(gamma=g, m="inf")
    assert m.Z_m == sp.zeta(2 * g) and not m.is_numeric


def test_unnormalized_weights():
    m = HierarchicalModel(gamma=1, m=3, normalize=False)
    assert m.weights() == [1, sp.Rational(1, 2), sp.Rational(1, 3)]


def test_models_are_frozen_and_hashable():
    m = HierarchicalModel()
    with pytest.raises(Exception):
        m.gamma = 2
    assert hash(m) == hash(HierarchicalModel())


def test_per_direction_links():
    m = HierarchicalModel(link=["He2", "He2/2"], m=2)
    assert m.link_of(2) == (sp.Symbol("z", real=True) ** 2 - 1) / 2


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        (dict(gamma="0.5", m="inf"), ValueError, "gamma: must be > 1/2"),
        (dict(gamma=-1), ValueError, "gamma: must be >= 0"),
        (dict(m=0), ValueError, "m: must be an integer >= 1"),
        (dict(m=2.5), ValueError, "m: must be an integer"),
        (dict(delta=-0.1), ValueError, "delta"),
        (dict(gamma="abc"), ValueError, "gamma"),
        (dict(gamma=True), TypeError, "gamma"),
        (dict(normalize="yes"), TypeError, "normalize"),
        (dict(link=["He2"], m=2), ValueError, "link: got 1 links"),
        (dict(link="foo(z)"), ValueError, "unknown name 'foo'"),
        (dict(preprocessing="z"), ValueError, "preprocessing"),
    ],
)
def test_model_s_validation(kwargs, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(")):
        HierarchicalModel(**kwargs)


def test_gamma_at_most_half_is_allowed_for_finite_m():
    assert HierarchicalModel(gamma="1/2", m=5).gamma == sp.Rational(1, 2)


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        (dict(d=1), ValueError, "d: must be an integer >= 2"),
        (dict(d=10.0), TypeError, "d: expected an integer"),
        (dict(q=1), ValueError, "q: must be an integer >= 2"),
        (dict(eps=1), ValueError, r"eps: must lie in \[0, 1\)"),
        (dict(eps=-0.1), ValueError, "eps"),
        (dict(gamma=-1), ValueError, "gamma"),
        (dict(g_star="3"), ValueError, "g_star"),
    ],
)
def test_model_c_validation(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        CompositionalModel(**kwargs)


def test_model_c_dimensions():
    m = CompositionalModel(d=10, q=3, eps=0.5, gamma=1)
    assert m.D == 220 and m.d1 == 3  # C(12, 3) = 220; round(sqrt(10)) = 3
