"""theory (import as `theory`): the symbolic layer (docs/theory.md §1-3).

Exact Hermite moments of link functions, information and generative exponents,
the two model descriptions, and closed-form thresholds, staircases, error laws and
exponents, as sympy objects that print as LaTeX.

>>> from theory import hermite_moments, mse_exponent
>>> hermite_moments("He2/2 + He4/48", 4)
{0: 0, 1: 0, 2: 1, 3: 0, 4: 1/2}
>>> mse_exponent("13/10")
8/13
"""
from . import symbols
from .bayes import (
    bayes_mse_exponent,
    bayes_threshold_law,
    bayes_threshold_law_noisy,
    effective_noise,
    noiseless_threshold_slope,
    residual_variance,
    slope_response,
    spectral_bayes_ratio,
)
from .compositional import (
    layer1_overlaps,
    nmse_law,
    noise_variance,
    refined_overlap,
    separation,
    spike_strengths,
    staircase,
    threshold_exponents,
    thresholds_n,
)
from .hermite import (
    gaussian_expectation,
    generative_exponent,
    hermite_coefficients,
    hermite_moments,
    information_exponent,
    is_piecewise_polynomial,
)
from .links import is_even, kinks
from .model import CompositionalModel, HierarchicalModel, as_exact
from .parsing import Y, Z, parse_link
from .scaling import (
    NoSpectralTransition,
    c_gamma,
    critical_alpha_law,
    learned_directions,
    mse_exponent,
    mse_law,
    mse_staircase,
    mu2,
    overlap_law,
    readout_excess_risk,
)

__version__ = "0.1.0"

__all__ = [
    "symbols", "Y", "Z", "parse_link",
    "gaussian_expectation", "hermite_moments", "hermite_coefficients", "information_exponent",
    "generative_exponent", "is_piecewise_polynomial", "is_even", "kinks",
    "HierarchicalModel", "CompositionalModel", "as_exact",
    "NoSpectralTransition", "mse_exponent", "c_gamma", "mu2", "critical_alpha_law", "overlap_law",
    "learned_directions", "mse_law", "mse_staircase", "readout_excess_risk",
    "spike_strengths", "noise_variance", "thresholds_n", "threshold_exponents", "staircase",
    "refined_overlap", "layer1_overlaps", "nmse_law", "separation",
    "residual_variance", "slope_response", "effective_noise", "bayes_threshold_law", "bayes_threshold_law_noisy",
    "noiseless_threshold_slope", "bayes_mse_exponent", "spectral_bayes_ratio",
]
