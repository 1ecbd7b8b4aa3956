"""cascade.validation: finite-d simulation, theory-vs-simulation comparison, figures and the CLI.

>>> from validation import simulate, compare
"""
from .compare import compare
from .simulate import empirical_bulk_edge, simulate, simulate_task
from .validate import run_validate

__all__ = ["simulate", "simulate_task", "compare", "empirical_bulk_edge", "run_validate"]
