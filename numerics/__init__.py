"""numerics (import as `numerics`): the d = infinity random-matrix equations of docs/theory.md §2.2,
and the Bayes-optimal state evolution (`numerics.bayes`, docs/bayes.md).

>>> from theory import HierarchicalModel
>>> from numerics import predict
>>> p = predict(HierarchicalModel(), alphas=[50.0])
>>> p.n_outliers.tolist()
[5]
"""
from .label_law import LabelLaw, label_law
from .predict import (Prediction, bulk_density, bulk_edge, kappa_T, outliers, predict, spectral_functions,
                      thresholds)
from .resolvent import ConvergenceError, SpectralFunctions

__all__ = ["LabelLaw", "label_law", "Prediction", "predict", "bulk_edge", "bulk_density", "outliers",
           "thresholds", "kappa_T", "spectral_functions", "ConvergenceError", "SpectralFunctions"]
from .optimal import conditional_second_moment, optimal_preprocessing, optimal_threshold  # noqa: E402
from .reference import predict_mp, resolvent_mp  # noqa: E402

__all__ += ["conditional_second_moment", "optimal_preprocessing", "optimal_threshold", "predict_mp", "resolvent_mp"]
from .compositional import layer1_model, layer1_prediction  # noqa: E402

__all__ += ["layer1_model", "layer1_prediction"]
from .quadratic_chaos import population_layer1  # noqa: E402

__all__ += ["population_layer1"]
from .bayes import (BayesThresholds, StateEvolution, bayes_thresholds, free_entropy,  # noqa: E402
                    state_evolution)

__all__ += ["state_evolution", "bayes_thresholds", "free_entropy", "StateEvolution", "BayesThresholds"]
from .label_law import grid_cost  # noqa: E402
from .predict import mse_forms  # noqa: E402

__all__ += ["grid_cost", "mse_forms"]
from .exponent_fit import ExponentFit, fit_exponent  # noqa: E402

__all__ += ["fit_exponent", "ExponentFit"]
from .edge_overlap import boundary_share, edge_overlap, edge_regime  # noqa: E402

__all__ += ["boundary_share", "edge_overlap", "edge_regime"]
from .outlier_fluctuation import outlier_fluctuation, outlier_law  # noqa: E402

__all__ += ["outlier_fluctuation", "outlier_law"]
from .outlier_bias import outlier_bias, outlier_moments  # noqa: E402

__all__ += ["outlier_bias", "outlier_moments"]
from .critical_window import branch_window_map, spiked_goe_overlaps, window_map  # noqa: E402

__all__ += ["branch_window_map", "spiked_goe_overlaps", "window_map"]
from .branch_fluctuation import branch_fluctuation  # noqa: E402

__all__ += ["branch_fluctuation"]
