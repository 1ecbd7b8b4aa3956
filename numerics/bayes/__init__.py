"""The Bayes-optimal side of Model S: output channel, state evolution, free entropy, thresholds
(docs/bayes.md)."""
from .channel import ChannelIntegrals, ChannelResolution, OutputChannel
from .evolution import StateEvolution, free_entropy, state_evolution

__all__ = ["ChannelIntegrals", "ChannelResolution", "OutputChannel", "StateEvolution", "free_entropy",
           "state_evolution"]
from .thresholds import BayesThresholds, bayes_thresholds, stability_response  # noqa: E402

__all__ += ["BayesThresholds", "bayes_thresholds", "stability_response"]
from .weak_signal import noiseless_integral, threshold_asymptotics, weak_signal_overlap  # noqa: E402

__all__ += ["noiseless_integral", "threshold_asymptotics", "weak_signal_overlap"]
