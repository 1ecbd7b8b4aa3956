"""Parsing of sample-ratio grids given as text (CLI flags and sweep specs).

>>> parse_grid("5,20,50").tolist(), parse_grid("1:100:3log").tolist()
([5.0, 20.0, 50.0], [1.0, 10.0, 100.0])
"""
from __future__ import annotations

import numpy as np

__all__ = ["parse_grid"]


def parse_grid(text: str, name: str = "--alphas") -> np.ndarray:
    """'LO:HI:Nlog' (geometric), 'LO:HI:N' (linear) or 'A,B,C' (a list); every value > 0.

    Raises ValueError naming ``name`` on anything else.
    """
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = parts
            geometric = n.endswith("log")
            n = int(n[:-3] if geometric else n)
            lo, hi = float(lo), float(hi)
            if n < 1 or not (0 < lo <= hi) or not np.isfinite(hi):
                raise ValueError
            return np.geomspace(lo, hi, n) if geometric else np.linspace(lo, hi, n)
        vals = np.array([float(v) for v in text.split(",")])
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{name}: expected LO:HI:N, LO:HI:Nlog or a comma list of numbers > 0, got {text!r}") from None
    if vals.size == 0 or np.any(~(vals > 0)) or not np.all(np.isfinite(vals)):
        raise ValueError(f"{name}: every sample ratio must be a finite number > 0, got {text!r}")
    return vals
