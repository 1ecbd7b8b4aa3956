"""The Bayes-optimal side of Model S: output channel, state evolution, free entropy, thresholds
(docs/bayes.md)."""
from .channel import ChannelIntegrals, ChannelResolution, OutputChannel
from .evolution import StateEvolution, free_entropy, state_evolution, state_evolution_trajectory
from .posterior import Denoised, OutputDenoiser

__all__ = ["ChannelIntegrals", "ChannelResolution", "Denoised", "OutputChannel", "OutputDenoiser", "StateEvolution",
           "free_entropy", "state_evolution", "state_evolution_trajectory"]
from .thresholds import BayesThresholds, bayes_thresholds, stability_response  # noqa: E402

__all__ += ["BayesThresholds", "bayes_thresholds", "stability_response"]
from .weak_signal import noiseless_integral, threshold_asymptotics, weak_signal_overlap  # noqa: E402

__all__ += ["noiseless_integral", "threshold_asymptotics", "weak_signal_overlap"]
