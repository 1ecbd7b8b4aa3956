r"""Bayes-optimal weak-recovery thresholds of Model S, per direction (docs/bayes.md, section 5).

For an even link :math:`q_k = 0` is a fixed point of the state evolution. Linearising
:math:`\hat q_k` in :math:`q_k` (the Stein derivative of the k-th law becomes its He2 weight),
it is unstable when

.. math::  \alpha\,\chi_k > 1, \qquad
           \chi_k = E_{\omega_{-k}}\, E_y\big[(E[He_2(z_k)\mid y, \omega_{-k}])^2\big],

evaluated at the overlaps :math:`q_{-k}` that the other directions have. Three versions:

* ``"scratch"``: all :math:`q_j = 0`, so :math:`\alpha_k^{(0)} = 1/E_y[(E[He_2(z_k)|y])^2]`
  (one y-integral, no state evolution);
* ``"oracle"``: directions j < k known exactly (:math:`q_j = 1`, their terms removed from y),
  j > k unknown: a lower bracket (more information cannot lower :math:`\chi_k`);
* ``"sequential"``: :math:`q_{-k}` at the uninformed fixed point reached at that alpha, with
  :math:`q_k` held at 0; :math:`\alpha_k^{BO}` is where :math:`\alpha\chi_k` first reaches 1
  (the "grand staircase").

So oracle <= sequential <= scratch whenever the directions j > k are not learned before k.
A link that is not even has :math:`E[z_k\mid y] \ne 0` and the trivial threshold 0.

>>> from theory import HierarchicalModel
>>> float(bayes_thresholds(HierarchicalModel(m=1, link="z**2", gamma=1), "scratch").alphas[0])   # phase retrieval
0.5...
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from theory import HierarchicalModel

from .channel import ChannelResolution
from .evolution import _Rule, _sweep, channel_for, check_bayes_model

__all__ = ["BayesThresholds", "bayes_thresholds", "stability_response", "THRESHOLD_RESOLUTION"]

#: the single-draw y-integrals (scratch, oracle) are cheap, so they run finer by default
THRESHOLD_RESOLUTION = ChannelResolution(n_grid=8192, u_cut=6.0, du=0.01, cells_per_sigma=32, max_grid=2**18)
_TRIVIAL = 1e-10  # E[(E[z_k | y])^2] above this: weak recovery at every alpha > 0


@dataclass(frozen=True, eq=False)
class BayesThresholds:
    """Per-direction weak-recovery thresholds (``alphas``, shape (m,); ``inf`` where q_k = 0 stays
    stable on the scanned range, 0 where E[z_k | y] != 0). ``se`` is the Monte Carlo standard
    error (zeros for deterministic kinds)."""

    model: HierarchicalModel
    kind: str
    alphas: np.ndarray
    se: np.ndarray
    trivial: np.ndarray
    settings: dict = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.alphas, dtype=dtype)

    def to_frame(self) -> pd.DataFrame:
        """One row per direction: k, alpha_k, se, trivial, kind."""
        return pd.DataFrame({"k": np.arange(1, self.alphas.size + 1), "alpha_k": self.alphas, "se": self.se,
                             "trivial": self.trivial, "kind": self.kind})


def stability_response(model: HierarchicalModel, k: int, *, known=(), resolution: ChannelResolution | None = None):
    r""":math:`\chi_k = E_y[(E[He_2(z_k)|y])^2]` with every other direction unknown (q = 0) except
    ``known`` (1-based directions whose terms are removed from y). For a link that is not even,
    the first-order response :math:`E_y[(E[z_k|y])^2]` is returned instead (as ``("He1", value)``).

    >>> from theory import HierarchicalModel
    >>> stability_response(HierarchicalModel(m=1, link="z**2", gamma=1), 1)   # E[(z^2 - 1)^2] = 2
    ('He2', 1.99...)
    """
    check_bayes_model(model)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= model.m:
        raise ValueError(f"k: must be a direction in [1, {model.m}], got {k!r}")
    ch = channel_for(model, resolution or THRESHOLD_RESOLUTION)
    kn = sorted({int(j) - 1 for j in known})
    if k - 1 in kn:
        raise ValueError(f"known: direction {k} cannot be both known and tested")
    q = np.zeros(model.m)
    om = np.zeros((1, model.m))
    if ch.even[k - 1]:
        r = ch.integrals(q, om, known=kn, response=[k - 1])
        return "He2", float(r.response[0, 0])
    r = ch.integrals(q, om, known=kn)
    return "He1", float(r.fisher[0, k - 1])


def bayes_thresholds(model: HierarchicalModel, kind: str = "sequential", *, method: str = "auto",
                     n_samples: int | None = None, replicates: int = 4, seed: int = 0,
                     resolution: ChannelResolution | None = None, points_per_decade: int = 12,
                     tol: float = 1e-7, progress=None) -> BayesThresholds:
    r"""Per-direction Bayes-optimal weak-recovery thresholds (see the module docstring).

    Parameters
    ----------
    model : theory.HierarchicalModel (as for :func:`~numerics.bayes.evolution.state_evolution`).
    kind : ``"scratch"``, ``"oracle"`` or ``"sequential"``.
    method, n_samples, replicates, seed, resolution, tol : the state-evolution settings of the
        sequential kind (scratch and oracle are single y-integrals at :data:`THRESHOLD_RESOLUTION`).
    points_per_decade : the sequential kind scans the uninformed fixed points on a geometric
        grid between the oracle and scratch brackets; the crossing of :math:`\alpha\chi_k = 1` is
        bracketed on it (with a clamped solve at the first grid point past it) and interpolated
        linearly in log-log.
    """
    check_bayes_model(model)
    if kind not in ("scratch", "oracle", "sequential"):
        raise ValueError(f"kind: must be 'scratch', 'oracle' or 'sequential', got {kind!r}")
    if isinstance(points_per_decade, bool) or not isinstance(points_per_decade, int) or not 2 <= points_per_decade <= 200:
        raise ValueError(f"points_per_decade: must be an integer in [2, 200], got {points_per_decade!r}")
    t0 = time.perf_counter()
    m = model.m
    # the sequential kind brackets its scan with scratch/oracle at its own resolution, so that
    # the three are comparable to the resolution error
    if resolution is None:
        resolution = ChannelResolution() if kind == "sequential" else THRESHOLD_RESOLUTION
    ch = channel_for(model, resolution)
    trivial = np.zeros(m, dtype=bool)
    single = np.full(m, np.inf)
    for k in range(1, m + 1):
        known = range(1, k) if kind == "oracle" else ()
        name, chi = stability_response(model, k, known=known, resolution=resolution)
        if name == "He1" and chi > _TRIVIAL:
            trivial[k - 1], single[k - 1] = True, 0.0
        elif chi > 0:
            single[k - 1] = 1.0 / chi
    settings = {"kind": kind, "n_grid": ch.resolution.n_grid, "du": ch.resolution.du, "u_cut": ch.resolution.u_cut}
    if kind != "sequential":
        settings["solve_s"] = time.perf_counter() - t0
        return BayesThresholds(model=model, kind=kind, alphas=single, se=np.zeros(m), trivial=trivial,
                               settings=settings)
    scratch = single
    oracle = bayes_thresholds(model, "oracle", resolution=resolution).alphas
    finite = np.isfinite(scratch) & ~trivial
    if not finite.any():
        return BayesThresholds(model=model, kind=kind, alphas=scratch, se=np.zeros(m), trivial=trivial,
                               settings=dict(settings, solve_s=time.perf_counter() - t0))
    lo = max(float(np.min(oracle[finite])) / 1.5, 1e-6)
    hi = float(np.max(scratch[finite])) * 1.5
    n = max(3, int(np.ceil(np.log10(hi / lo) * points_per_decade)) + 1)
    grid = np.geomspace(lo, hi, n)
    sch = channel_for(model, resolution)
    rule = _Rule(model, sch.even, method, n_samples, replicates, seed)
    sw = _sweep(sch, rule, grid, "uninformed", tol, 2000, 0.0, 1e-6, progress)
    R = rule.replicates
    out = np.full((R, m), np.inf)
    for k in range(m):
        if trivial[k] or not np.isfinite(scratch[k]):
            out[:, k] = scratch[k]
            continue
        for r in range(R):
            out[r, k] = _crossing(sch, rule, r, grid, sw, k, tol)
    alphas = out.mean(axis=0)
    se = out.std(axis=0, ddof=1) / np.sqrt(R) if R > 1 else np.zeros(m)
    se = np.where(np.isfinite(alphas), se, 0.0)
    settings.update(rule.settings, points_per_decade=points_per_decade, grid=(lo, hi, n), tol=tol,
                    n_grid=sch.resolution.n_grid, du=sch.resolution.du, u_cut=sch.resolution.u_cut,
                    brackets={"oracle": oracle.tolist(), "scratch": scratch.tolist()},
                    solve_s=time.perf_counter() - t0)
    return BayesThresholds(model=model, kind=kind, alphas=alphas, se=se, trivial=trivial, settings=settings)


def _growth_clamped(ch, rule, r, alpha, start, k, tol):
    """alpha chi_k at the uninformed fixed point with q_k held at 0 (replicate r)."""
    sub = _SubRule(rule, r)
    sw = _sweep(ch, sub, np.array([alpha]), "uninformed", tol, 2000, 0.0, 1e-6, clamp=[k], starts=start[None, :])
    q = sw["Q"][0, 0]
    res = ch.integrals(q, np.sqrt(q)[None, :] * rule.xi[r], response=[k])
    return alpha * float(rule.w @ res.response[:, 0])


class _SubRule:
    """One replicate of a rule, as a rule of its own."""

    def __init__(self, rule, r):
        self.xi, self.w, self.replicates = [rule.xi[r]], rule.w, 1


def _crossing(ch, rule, r, grid, sw, k, tol):
    """The alpha where alpha chi_k crosses 1 on the uninformed sweep of replicate r.

    The sweep says where direction k is first learned (grid index j); the crossing is then
    bracketed with clamped solves only (q_k held at 0, the others at their fixed point, chi_k the
    exact linear response). The sweep's own growth factor is not used: for a direction that
    grew past 1e-5 and decayed again it comes from the full map at q_k ~ 1e-8, below that map's
    resolution, and once put a replicate's crossing one grid point late. If the clamped growth
    is still >= 1 below j, the bracket moves down until it is not.
    """
    Q = sw["Q"][r, :, k]
    learned = np.nonzero(Q > 0)[0]
    if not learned.size:
        return np.inf
    j = int(learned[0])
    if j == 0:
        return float(grid[0])  # already learned at the lower bracket (should not happen: oracle <= alpha_k)
    g_hi = _growth_clamped(ch, rule, r, grid[j], sw["Q"][r, j - 1], k, tol)
    g_lo = _growth_clamped(ch, rule, r, grid[j - 1], sw["Q"][r, j - 1], k, tol)
    while g_lo >= 1 and j > 1:
        j -= 1
        g_hi, g_lo = g_lo, _growth_clamped(ch, rule, r, grid[j - 1], sw["Q"][r, j - 1], k, tol)
    if not (g_lo < 1 <= g_hi):
        # the crossing lies elsewhere (a jump learned through a first-order transition): fall back
        # to the first grid point past the last stable one
        return float(grid[j])
    x0, x1 = np.log(grid[j - 1]), np.log(grid[j])
    y0, y1 = np.log(g_lo), np.log(g_hi)
    return float(np.exp(x0 + (x1 - x0) * (-y0) / (y1 - y0)))
