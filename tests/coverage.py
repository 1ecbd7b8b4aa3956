"""Shared check of the coverage tests: the fraction of trials inside a bound matches its level."""
import numpy as np


def assert_covers(inside: dict, n_sd: float = 3.0) -> None:
    """``inside`` maps a level to a list of boolean arrays (trials inside the bound at that level); the
    fraction inside must be within ``n_sd`` binomial standard deviations of the level."""
    for level, hits in inside.items():
        flat = np.concatenate(hits, axis=None)
        frac, n = flat.mean(), flat.size
        assert abs(frac - level) <= n_sd * np.sqrt(level * (1 - level) / n), (level, frac, n)
