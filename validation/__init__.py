"""validation (import as `validation`): finite-d simulation, theory-vs-simulation comparison, figures and the CLI.

Every model is one experiment adapter (:mod:`validation.experiment`): ``experiment_for("S")``
and ``experiment_for("C")``.

>>> from validation import simulate, compare, experiment_for
>>> sorted(experiment_for("S").estimators)
['bayes', 'spectral']
"""
from . import model_c, model_s  # noqa: F401 (the adapters register themselves)
from .compare import compare
from .experiment import EXPERIMENTS, experiment_for, model_from_description
from .simulate import empirical_bulk_edge, simulate, simulate_task
from .validate import run_validate

__all__ = ["simulate", "simulate_task", "compare", "empirical_bulk_edge", "run_validate", "EXPERIMENTS",
           "experiment_for", "model_from_description"]
