"""The safe parser: whitelist only, ValueError for everything else, nothing evaluated."""
import builtins
import gc
import time

import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from theory import Y, Z, parse_link


@pytest.mark.parametrize(
    "text, expected",
    [
        ("He2/2 + He4/48", (Z**2 - 1) / 2 + (Z**4 - 6 * Z**2 + 3) / 48),
        ("He(3, z)", Z**3 - 3 * Z),
        ("relu(z)", sp.Max(Z, 0)),
        ("|z| + abs(z)", 2 * sp.Abs(Z)),
        ("sign(z)*tanh(z)", sp.sign(Z) * sp.tanh(Z)),
        ("erf(z/sqrt(2))", sp.erf(Z / sp.sqrt(2))),
        ("exp(-z^2) + sin(z) - cos(pi*z)", sp.exp(-Z**2) + sp.sin(Z) - sp.cos(sp.pi * Z)),
        ("2.5e-1*z**2", Z**2 / 4),
        ("-(-z)", Z),
        ("2**-1", sp.Rational(1, 2)),
    ],
)
def test_whitelist_builds_the_expected_expression(text, expected):
    assert sp.simplify(parse_link(text) - expected) == 0


def test_preprocessing_uses_y():
    assert parse_link("y/(1+|y|)", variable="y") == Y / (1 + sp.Abs(Y))
    with pytest.raises(ValueError, match="unknown name 'z'"):
        parse_link("z", variable="y")


@pytest.mark.parametrize(
    "text, token",
    [
        ("__import__('os').system('x')", "'"),
        ("os.system", "."),
        ("exec(z)", "exec"),
        ("eval", "eval"),
        ("lambda", "lambda"),
        ("z.__class__", "."),
        ("x + 1", "x"),
        ("He(z, 2)", "integer degree"),
        ("He99", "Hermite degree"),
        ("z**z", "exponent"),
        ("z**1000", "exponent"),
        ("9**9**9", "exponent"),
        ("1/0", "division by zero"),
        ("0**-1", "division by zero"),
        ("sqrt(-1)", "not real"),
        ("(z", "expected ')'"),
        ("z +", "unexpected end"),
        ("", "empty"),
        ("relu(z, z)", "expected ')'"),
        ("z;z", ";"),
    ],
)
def test_rejections_name_the_problem(text, token):
    with pytest.raises(ValueError) as info:
        parse_link(text)
    assert token in str(info.value)
    assert str(info.value).startswith("link:")


def test_parser_never_calls_eval_exec_or_sympify(monkeypatch):
    import sys

    import sympy.parsing.sympy_parser as sympy_parser

    sympify_module = sys.modules["sympy.core.sympify"]

    def boom(*a, **k):
        raise AssertionError("evaluated user text")

    def refuse_strings(original):
        def wrapper(arg, *a, **k):
            if isinstance(arg, str):
                raise AssertionError(f"sympify called on the string {arg!r}")
            return original(arg, *a, **k)
        return wrapper

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    monkeypatch.setattr(sp, "sympify", refuse_strings(sp.sympify))
    monkeypatch.setattr(sympify_module, "sympify", refuse_strings(sympify_module.sympify))
    monkeypatch.setattr(sympy_parser, "parse_expr", boom)
    assert parse_link("relu(z) + He4/24 - clip(z, -1, 1)") is not None


def test_deep_nesting_is_a_value_error():
    with pytest.raises(ValueError, match="nested"):
        parse_link("(" * 500 + "z" + ")" * 500)


def test_non_string_input():
    with pytest.raises(TypeError, match="link"):
        parse_link(3.5)
    with pytest.raises(ValueError, match="free symbols"):
        parse_link(sp.Symbol("x"))


def _parse_only_value_error(text):
    """Parse; a ValueError is the only failure allowed, what parses is a function of z alone, and
    no string takes more than 1 s. That is a hang guard, not a speed target: the slowest string
    measured, 20 nested tanh, takes 0.1 s, and "1e308" followed by more digits once never returned.

    The clock is this process's CPU time with the garbage collector paused: a hang burns CPU, while
    wall time also counts the worker waiting for a core. In one CI run 151 nested parentheses, which
    take 0.6 ms here, read 1.3 s of wall time once and then passed on hypothesis's replay."""
    gc.disable()
    t0 = time.process_time()
    try:
        out = parse_link(text)
    except ValueError:
        out = None
    finally:
        spent = time.process_time() - t0
        gc.enable()
    assert spent < 1.0, f"parsing {text!r} took {spent:.2f} s of CPU time, over 1 s"
    if out is not None:
        assert out.free_symbols <= {Z}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_random_strings_raise_only_value_error(text):
    _parse_only_value_error(text)


_ALPHABET = list("z()+-*/^|,. 0123456789") + ["He2", "He", "relu", "abs", "sign", "tanh", "erf", "exp", "sqrt", "pi", "**", "clip", "min"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=25).map("".join))
def test_random_token_soup_raises_only_value_error(text):
    _parse_only_value_error(text)


# -- the reliability fuzz (slow): 10 000 strings per strategy, the hostile names included --------
_HOSTILE = _ALPHABET + ["__import__", "lambda", "eval", "exec", "os", "system", "'", '"', ";", ":", "[", "]",
                        "{", "}", "=", "__", "getattr", "9" * 30, "**64", "**99999", "He64", "He65", "((((", "))))",
                        "y", "x", "e", "1e308", "nan", "inf", "\\", "\n", "#", "@", "~", "%", "&"]


def test_a_huge_decimal_exponent_is_refused_before_it_is_expanded():
    # found by the fuzz below: "1e308" followed by digits made Fraction build 10^(3e32) and never return
    with pytest.raises(ValueError, match="decimal exponent must lie in"):
        parse_link("1e3089999999999999999999999999999")
    with pytest.raises(ValueError, match="decimal exponent"):
        parse_link("z + 2E-400")
    assert parse_link("1e2*z") == 100 * Z and parse_link("z/1e308") == Z / sp.Integer(10) ** 308


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(st.text(max_size=80))
def test_ten_thousand_random_strings_raise_only_value_error(text):
    _parse_only_value_error(text)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(_HOSTILE), max_size=40).map("".join),
                 st.integers(1, 200).map(lambda n: "(" * n + "z" + ")" * n),
                 st.integers(1, 200).map(lambda n: "z" + "**2" * n)))
def test_ten_thousand_hostile_token_soups_raise_only_value_error(text):
    _parse_only_value_error(text)
