"""Bad arguments through every public function of theory, numerics and validation
(docs/reliability.md §"Bad input"): each callable in a package's ``__all__`` is called with
wrong values for its required arguments, and must either refuse with a ValueError or TypeError
whose one-line message starts with a parameter name ("model: ..."), or be listed below as a
function where such a value is valid input. An AttributeError from deep inside, or a silent
NaN, fails the test. A function added to ``__all__`` is covered automatically."""
import inspect
import re
import warnings

import numpy as np
import pytest

import numerics
import theory
import validation

BAD = [-1, "x", None, float("nan"), 10**9]

#: callables where some of the BAD values are valid input, and why
VALID_FOR_SOME = {
    # result containers: dataclasses that hold what a solver returned, not user input
    "BayesThresholds", "ExponentFit", "LabelLaw", "Prediction", "StateEvolution",
    # a constant is a valid link, preprocessing or expression (-1, 10**9); these return its property
    "HierarchicalModel", "CompositionalModel", "as_exact", "c_gamma", "mse_exponent",
    "gaussian_expectation", "generative_exponent", "information_exponent", "is_even",
    "is_piecewise_polynomial", "kinks", "parse_link", "slope_response", "optimal_preprocessing",
    "refined_overlap", "mse_forms",
    # None means "the default model"
    "run_validate",
}
NAMED = re.compile(r"^[\w\-\.\[\], ]+: ")


def _public():
    for mod in (theory, numerics, validation):
        for name in sorted(mod.__all__):
            f = getattr(mod, name)
            if not callable(f) or (inspect.isclass(f) and issubclass(f, BaseException)):
                continue
            try:
                sig = inspect.signature(f)
            except (TypeError, ValueError):
                continue
            required = [p for p in sig.parameters.values() if p.default is inspect.Parameter.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if required:
                yield f"{mod.__name__}.{name}", f, len(required)


CASES = list(_public())


def test_the_public_api_is_found():
    names = {c[0] for c in CASES}
    assert {"numerics.predict", "theory.mse_law", "validation.simulate_task"} <= names
    assert len(CASES) > 50


@pytest.mark.parametrize("qualname, f, n_args", CASES, ids=[c[0] for c in CASES])
def test_bad_arguments_are_refused_by_name(qualname, f, n_args):
    name = qualname.split(".", 1)[1]
    for bad in BAD:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = f(*([bad] * n_args))
            except (ValueError, TypeError, NotImplementedError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else ""
                assert NAMED.match(msg), f"{qualname}({bad!r}): unnamed {type(exc).__name__}: {msg}"
                continue
        if name in VALID_FOR_SOME:
            if isinstance(out, (float, np.ndarray)):  # accepted: then never a silent NaN
                assert not np.any(np.isnan(out)), f"{qualname}({bad!r}) returned NaN"
            continue
        pytest.fail(f"{qualname}({bad!r}) accepted a bad value and returned {type(out).__name__}")
