"""Shared check of the coverage tests: the fraction of trials inside a bound matches its level."""
import numpy as np


def assert_covers(inside: dict, n_sd: float = 3.0, at_least: bool = False) -> None:
    """``inside`` maps a level to a list of boolean arrays (trials inside the bound at that level); the
    fraction inside must be within ``n_sd`` binomial standard deviations of the level (``at_least``:
    only not below it by more than that, for a bound known to err on the wide side)."""
    for level, hits in inside.items():
        flat = np.concatenate(hits, axis=None)
        frac, n = flat.mean(), flat.size
        gap = level - frac if at_least else abs(frac - level)
        assert gap <= n_sd * np.sqrt(level * (1 - level) / n), (level, frac, n)
