r"""Model C layer 1 (Gaussian-equivalent) through the Model S solver (docs/theory.md §3).

In the Gaussian-equivalent model the layer-1 matrix is
:math:`M_1 = \frac1{2n}\sum_\mu y_\mu (Z_\mu Z_\mu^\top - I_D)` with
:math:`y = \sum_i b_i He_2(h_i)/\sqrt{2\sum_j b_j^2}`. This is half the Model S matrix
:math:`D_n` in dimension D, at :math:`\alpha = n/D`, with T(y) = y, links
:math:`\mathrm{sign}(b_i) He_2/\sqrt2` and weights :math:`|b_i|/\sqrt{\sum_j b_j^2}`
(so :math:`E[y^2] = 1`). Spikes with :math:`b_i < 0` sit below the bulk: they are the
spikes above the bulk of :math:`-T`.

T(y) = y is unbounded above, so the d = infinity formulas (which need sup T < inf)
are applied at the *effective support of n samples*: T is clipped at the
:math:`1/(2n)` and :math:`1 - 1/(2n)` quantiles of Y, beyond which O(1) of the n
labels fall (they add O(1) rank-one terms of size O(1/alpha) that the formula does not
describe). At large alpha this converges to the semicircle closed form
``theory.refined_overlap``; at moderate alpha the exact formula is lower (measured
in docs/numerics.md), and the closed form overestimates the overlaps.

Examples
--------
>>> from theory import CompositionalModel
>>> r = layer1_prediction(CompositionalModel(d=16, eps=0.5, gamma=1), n=[136e3])   # D = 136, alpha = 1000
>>> r["rho2"].shape, bool(abs(r["rho2"] - r["rho2_closed_form"]).max() < 1e-3)
((1, 4), True)
"""
from __future__ import annotations

import numpy as np

from theory import CompositionalModel, HierarchicalModel, layer1_overlaps
from theory.model import require

from .label_law import label_law
from .predict import predict

__all__ = ["layer1_model", "layer1_prediction"]


def _signs(model, signs):
    if signs is None:
        return np.ones(model.d1)
    s = np.asarray(signs, dtype=float)
    if s.shape != (model.d1,) or not np.all(np.isin(s, (-1.0, 1.0))):
        raise ValueError(f"signs: expected {model.d1} entries, each +1 or -1")
    return s


def layer1_model(model: CompositionalModel, signs=None, preprocessing: str = "y") -> HierarchicalModel:
    """The Model S description of the GE layer-1 problem (links sign_i He2/sqrt(2), T = preprocessing)."""
    if not isinstance(model, CompositionalModel):
        raise TypeError(f"model: expected a theory.CompositionalModel, got {type(model).__name__}")
    if not model.is_identity_link:
        raise ValueError("g_star: the layer-1 mapping of docs/theory.md §3 holds for g_star = z (identity) only")
    s = _signs(model, signs)
    links = tuple("He2/sqrt(2)" if v > 0 else "-He2/sqrt(2)" for v in s)
    return HierarchicalModel(link=links if len(set(links)) > 1 else links[0], gamma=model.gamma, m=model.d1,
                             preprocessing=preprocessing)


def _quantile(law, level):
    order = np.argsort(law.y)
    cdf = np.cumsum(law.p[order])
    return float(law.y[order][min(np.searchsorted(cdf, level), order.size - 1)])


def layer1_prediction(model: CompositionalModel, n, signs=None, D: int | None = None) -> dict:
    r"""Layer-1 overlaps :math:`\rho_i^2` of Model C (GE) at sample sizes ``n``, from the solver.

    Parameters
    ----------
    model : theory.CompositionalModel (g_star = identity)
    n : sequence of sample sizes (> 0)
    signs : the signs of :math:`b_i` (default all +1); below-bulk spikes are handled.
    D : the feature dimension (default ``model.D``); pass it to work in an abstract dimension.

    Returns a dict with ``n``, ``alpha`` = n/D, ``rho2`` (len(n) x d1, solver),
    ``rho2_closed_form`` (``theory.layer1_overlaps``, refined) and ``clip`` (the
    quantiles at which T(y) = y was clipped, one pair per n).
    """
    require(model, CompositionalModel)
    ns = np.atleast_1d(np.asarray(n, dtype=float))
    if ns.ndim != 1 or ns.size == 0 or not np.all(np.isfinite(ns) & (ns > 0)):
        raise ValueError("n: expected a non-empty list of sample sizes > 0")
    D = model.D if D is None else D
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < model.d1:
        raise ValueError(f"D: must be an integer >= d1 = {model.d1}, got {D!r}")
    s = _signs(model, signs)
    law = label_law(layer1_model(model, s), support="effective")
    rho2 = np.zeros((ns.size, model.d1))
    clips = []
    for i, nn in enumerate(ns):
        lo, hi = _quantile(law, 1 / (2 * nn)), _quantile(law, 1 - 1 / (2 * nn))
        clips.append((lo, hi))
        for sign, T in ((1.0, f"clip(y, {lo!r}, {hi!r})"), (-1.0, f"clip(-y, {-hi!r}, {-lo!r})")):
            if not np.any(s == sign):
                continue
            p = predict(layer1_model(model, s, preprocessing=T), [nn / D])
            rho2[i, s == sign] = p.q[0, s == sign]
    closed = np.array([layer1_overlaps(model, float(nn) * model.D / D) for nn in ns])
    return {"n": ns, "alpha": ns / D, "rho2": rho2, "rho2_closed_form": closed, "clip": clips, "D": D}
