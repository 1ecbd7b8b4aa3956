r"""Bayes-optimal state evolution of Model S (docs/bayes.md, sections 1-4).

With a Gaussian prior on the directions and at most one link that is not even, the
overlap matrix stays diagonal, :math:`Q = \mathrm{diag}(q_k)`, and the state evolution is

.. math::
    \hat q_k = \alpha\, E_\omega\!\int dy\, \frac{(\partial_{\omega_k} Z_{out})^2}{Z_{out}},
    \qquad q_k \leftarrow \frac{\hat q_k}{1 + \hat q_k},
    \qquad \omega = \sqrt{q}\odot\xi,\ \xi\sim N(0, I_m),

with :math:`Z_{out}(y;\omega)` the density of the label given :math:`\omega`
(:mod:`numerics.bayes.channel`). The q_k are coupled through :math:`Z_{out}`. The fixed
points are the stationary points of the replica potential

.. math::  \Phi(q) = \sum_k \tfrac12\big(q_k + \log(1 - q_k)\big) + \alpha\,\Psi_{out}(q),
           \qquad \Psi_{out}(q) = E_\omega\!\int Z_{out}\log Z_{out}\,dy,

since :math:`\partial\Psi_{out}/\partial q_k = E_\omega F_k/2`; the Bayes-optimal fixed point is
the one with the largest :math:`\Phi` (docs/bayes.md, section 4).

Examples
--------
>>> from theory import HierarchicalModel
>>> se = state_evolution(HierarchicalModel(m=1, link="z**2", gamma=1), [0.4, 0.8])
>>> se.q.round(3).ravel().tolist()        # phase retrieval: weak recovery at alpha = 1/2
[0.0, 0.216]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from theory import HierarchicalModel
from theory.model import integer

from ..label_law import check_model, coupled_pairs
from ..predict import _alphas, mse_forms
from ..resolvent import ConvergenceError
from .channel import ChannelResolution, OutputChannel
from .omega_rules import qmc_rule, quadrature_rule

__all__ = ["StateEvolution", "state_evolution", "state_evolution_trajectory", "free_entropy", "check_bayes_model", "channel_for",
           "QUADRATURE_NODES", "MAX_QUADRATURE_M", "MAX_M"]

#: default nodes per direction of the tensor quadrature rule, by m
QUADRATURE_NODES = {1: 192, 2: 48, 3: 16}
MAX_QUADRATURE_M = 3
#: the largest m the state evolution accepts (cost grows like m per draw and per iteration)
MAX_M = 64
_Q_LOW = 1e-5      # below it a direction is in the linear regime around q = 0 ...
_Q_FLOOR = 1e-8    # a direction that has left it and decays below this one is parked at 0
_Q_NEAR_TOP = 1e-5  # 1 - q below it (and shrinking): q = 1 is stable, perfect recovery
_Q_TOP = 1e-10     # 1 - q below it: perfect recovery
_REACH = 100.0     # an accelerated step is at most this many plain steps long ...
_MAX_LOG_STEP = np.log(10.0)  # ... and changes the odds q / (1 - q) by at most a factor 10
_PATH_NODES = 24   # Gauss-Legendre nodes of the free-entropy path integral


@dataclass(frozen=True, eq=False)
class StateEvolution:
    r"""Fixed points of the Bayes-optimal state evolution on an alpha grid.

    ``q`` has shape (len(alphas), m): squared cosines between w_k and the posterior mean
    (the same quantity as the spectral q_k). With Monte Carlo rules ``q`` is the mean over
    the independent replicates and ``q_se`` its standard error (zeros for quadrature).
    ``mse`` is the optimal-shrinkage error :math:`\\sum_k a_k^2 (1 - q_k^2)`.
    ``stability`` holds, for a direction at the fixed point q_k = 0, the linear growth
    factor :math:`\\alpha E[(E[He_2(z_k)|y,\omega])^2]` (< 1: stable; NaN elsewhere).
    ``free_entropy`` is :math:`\\Phi(q) - \\Phi(0)` when computed.
    For ``init="both"``, ``q`` is the branch of larger free entropy (the Bayes-optimal one),
    ``branches`` holds both runs, ``branch`` names the winner per alpha and ``transitions``
    lists the first-order transitions found on the grid.
    """

    model: HierarchicalModel
    alphas: np.ndarray
    q: np.ndarray
    q_se: np.ndarray
    q_hat: np.ndarray
    mse: np.ndarray
    mse_se: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    stability: np.ndarray
    init: str
    free_entropy: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    branches: dict | None = None
    branch: np.ndarray | None = None
    transitions: list = field(default_factory=list)

    @property
    def m(self) -> int:
        return self.q.shape[1]

    def threshold_estimates(self) -> np.ndarray:
        r"""Per direction, the sequential weak-recovery threshold read off this alpha grid (uninformed
        branch): with :math:`r = \alpha\chi_k` the growth factor at the last grid point where q_k = 0
        is stable, :math:`\chi_k` is taken constant up to the first point where q_k > 0, so the
        crossing is :math:`\alpha/r`, clipped to that bracket. ``inf`` where q_k stays 0, the first
        grid point where q_k > 0 already at the first one. :func:`numerics.bayes.bayes_thresholds`
        resolves the crossing properly."""
        un = self.branches["uninformed"] if self.branches else self
        order = np.argsort(un.alphas)
        a, q, g = un.alphas[order], un.q[order], un.stability[order]
        out = np.full(self.m, np.inf)
        for k in range(self.m):
            learned = np.nonzero(q[:, k] > 0)[0]
            if not learned.size:
                continue
            j = int(learned[0])
            if j == 0:
                out[k] = a[0]
            elif np.isfinite(g[j - 1, k]) and g[j - 1, k] > 0:
                out[k] = float(np.clip(a[j - 1] / g[j - 1, k], a[j - 1], a[j]))
            else:
                out[k] = float(np.sqrt(a[j - 1] * a[j]))
        return out

    def _repr_html_(self) -> str:
        """Notebook view: one row per alpha with the MSE (and its standard error) and q_k."""
        wide = pd.DataFrame({"alpha": self.alphas, "mse": self.mse, "mse_se": self.mse_se})
        for k in range(self.m):
            wide[f"q_{k + 1}"] = self.q[:, k]
        if self.branch is not None:
            wide["branch"] = self.branch
        return (f"<b>Bayes-optimal state evolution</b> ({self.init}, {self.settings.get('method')} over omega)"
                + wide.to_html(index=False, float_format="%.4g"))

    def local_slope(self) -> np.ndarray:
        """d log MSE / d log alpha on the (sorted) grid, by centred differences (one-sided at the ends)."""
        order = np.argsort(self.alphas)
        return np.gradient(np.log(self.mse[order]), np.log(self.alphas[order]))

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (alpha, k): alpha, k, q, q_se, q_hat, stability, mse, mse_se,
        converged, iterations (and free_entropy, branch when present)."""
        A, m = self.q.shape
        df = pd.DataFrame({
            "alpha": np.repeat(self.alphas, m),
            "k": np.tile(np.arange(1, m + 1), A),
            "q": self.q.ravel(),
            "q_se": self.q_se.ravel(),
            "q_hat": self.q_hat.ravel(),
            "stability": self.stability.ravel(),
            "mse": np.repeat(self.mse, m),
            "mse_se": np.repeat(self.mse_se, m),
            "converged": np.repeat(self.converged, m),
            "iterations": np.repeat(self.iterations, m),
        })
        if self.free_entropy is not None:
            df["free_entropy"] = np.repeat(self.free_entropy, m)
        if self.branch is not None:
            df["branch"] = np.repeat(self.branch, m)
        return df


# --- input checks --------------------------------------------------------------------
def check_bayes_model(model) -> None:
    """The state evolution needs a numeric Model S whose overlap matrix stays diagonal."""
    check_model(model)
    if model.m > MAX_M:
        raise ValueError(f"m: the state evolution handles m <= {MAX_M} directions (cost grows like m per draw and "
                         f"iteration), got m = {model.m}")
    if coupled_pairs(model):
        odd = sorted({k + 1 for pair in coupled_pairs(model) for k in pair})
        names = ", ".join(f"g_{k} = {model.link_of(k)}" for k in odd)
        raise NotImplementedError(
            f"link: the directions {odd} have links that are not even ({names}); with two or more such links the "
            "overlap matrix Q is not diagonal, and the m x m state evolution is not implemented")


class _Rule:
    """xi draws per replicate and their weights."""

    def __init__(self, model, even, method, n_samples, replicates, seed):
        m = model.m
        if method not in ("auto", "quadrature", "qmc"):
            raise ValueError(f"method: must be 'auto', 'quadrature' or 'qmc', got {method!r}")
        if method == "auto":
            method = "quadrature" if m == 1 else "qmc"
        if method == "quadrature":
            if m > MAX_QUADRATURE_M:
                raise ValueError(f"method: the tensor quadrature handles m <= {MAX_QUADRATURE_M} (its cost is nodes^m); "
                                 f"m = {m} needs method='qmc'")
            nodes = QUADRATURE_NODES[m] if n_samples is None else integer(n_samples, "n_samples", 6, 100_000)
            xi, w = quadrature_rule(even, nodes)
            self.xi, self.w, self.replicates = [xi], w, 1
            self.settings = {"method": "quadrature", "nodes_per_dim": nodes, "n_draws": int(xi.shape[0])}
        else:
            replicates = integer(replicates, "replicates", 2, 64)
            n = 256 * replicates if n_samples is None else integer(n_samples, "n_samples", 4, 2**22)
            self.xi = qmc_rule(m, n, replicates, seed)
            self.w = np.full(self.xi[0].shape[0], 1.0 / self.xi[0].shape[0])
            self.replicates = replicates
            self.settings = {"method": "qmc", "n_samples": n, "replicates": replicates, "seed": seed,
                             "n_draws": int(n)}
        self.method = method


def channel_for(model, resolution=None) -> OutputChannel:
    """The (cached) output channel of a model at a resolution."""
    key = (model, resolution or ChannelResolution())
    ch = _CHANNELS.get(key)
    if ch is None:
        ch = OutputChannel(model, key[1])
        if len(_CHANNELS) > 32:
            _CHANNELS.clear()
        _CHANNELS[key] = ch
    return ch


_CHANNELS: dict = {}


# --- one fixed point -------------------------------------------------------------------
def _evaluate(channel, q, xi, w, clamp=(), low=None, n_min=0):
    r"""q_hat / alpha (m,) at overlaps q, and the Richardson error.

    Directions with q_k = 1 are known (removed from y). Directions of even link with
    0 < q_k < 1e-5 are in the linear regime around q_k = 0: there
    :math:`E_\omega F_k = q_k \chi_k/(1-q_k)^2 + O(q_k^2)` with :math:`\chi_k` the He2 response at
    :math:`q_k = 0` (the Stein weight expanded to second order in :math:`\omega_k`), which is
    computed instead: exact in the limit and free of the sampling noise of
    :math:`E[\xi_k^2] = 1` over a finite rule.
    """
    m = q.size
    known = [k for k in range(m) if q[k] >= 1.0]
    if low is None:
        low = [k for k in range(m) if channel.even[k] and 0 < q[k] < _Q_LOW and k not in clamp]
    low = [int(k) for k in low if k not in clamp]
    qq = np.where(q >= 1.0, 0.0, q)
    qq[low] = 0.0
    qq[list(clamp)] = 0.0
    omega = np.sqrt(qq)[None, :] * xi
    r = channel.integrals(qq, omega, known=known, response=low, n_min=n_min)
    F = r.fisher
    F[:, known] = np.inf
    qhat = w @ F
    if low:
        qhat[low] = (w @ r.response) * q[low] / (1 - q[low]) ** 2
    qhat[list(clamp)] = 0.0
    return qhat, r.error, r.n_grid


def _solve(channel, alpha, q0, xi, w, even, tol, max_iter, damping, clamp=(), depth=5):
    """Iterate to a fixed point from q0 (docs/bayes.md, section 3).

    Plain steps q <- G(q), accelerated by Anderson mixing (Walker & Ni 2011, depth 5) in the
    log-odds s = log(q / (1 - q)) of the active directions. In these coordinates the
    boundary fixed points q = 0 and q = 1 lie at infinity: near q = 0 the linearised map
    multiplies q by its growth factor r, a constant step log r in s, which the mixing
    extrapolates (a fast escape) instead of aiming a secant at the unstable root q = 0.
    Each accelerated step goes along the plain step, at least as far and at most 100 times as
    far (and at most a factor 10 in the odds), so a sweep does not leap across an unstable
    fixed point onto the other branch. The boundaries are decided by linear stability:

    * q_k < 1e-5 (even link) and G(q)_k <= q_k: the direction contracts and is parked (its
      fixed point is q_k = 0, reported as 0). A direction that has left this linear regime
      never returns to it (near a threshold the two evaluations can disagree on the sign of
      the drift, and a direction passed between them cycles); decaying below 1e-8 in the
      full evaluation parks it instead;
    * every 1 - q_k < 1e-5 and all shrinking (noiseless labels, no clamped direction): q = 1 is
      a stable fixed point and every direction is set to 1 (perfect recovery), as when every
      1 - q_k < 1e-10. Perfect recovery is collective: no direction is set to 1 alone.

    Convergence: the last step in q, divided by 1 - rho (rho the observed contraction rate of
    the steps), is at most ``tol``: near a continuous transition rho -> 1 and a small step
    alone says little. If the accelerated iteration has not converged after half of
    ``max_iter``, the rest are damped plain steps (damping 0.5); 50 of them in a row below
    ``tol`` also count as converged (the map's discretisation is not smooth below ~1e-8, and
    the iterate then moves within that floor). The y-grid only grows during a solve. Returns (q, q_hat, growth, iterations, converged, last_change, error).
    """
    m = q0.size
    x = q0.copy()
    noiseless = channel.delta == 0 and len(clamp) == 0
    S_hist, GS_hist = [], []   # Anderson history in log-odds (active components only)
    active_prev = None
    growth = np.full(m, np.nan)
    err = 0.0
    change, prev_change = np.inf, np.inf
    accelerate = True
    was_active = np.zeros(m, dtype=bool)
    n_grid = 0
    recent = []
    for it in range(1, max_iter + 1):
        if it == max_iter // 2 and accelerate:
            # the accelerated iteration has not settled (a cycle between regimes, say): finish
            # with damped plain steps, which converge to a stable fixed point
            accelerate, damping = False, max(damping, 0.5)
            S_hist, GS_hist = [], []
        # the linear regime holds a direction until it first reaches 1e-5 and never takes it back:
        # near a threshold (growth factor 1 +- 1e-4) the two evaluations can disagree on the
        # sign of the drift, and a direction passed between them would cycle
        in_low = even & (x > 0) & (x < 1.0) & (x < _Q_LOW) & ~was_active
        # the grid only grows during a solve (it follows the widest law seen), so the map stays
        # continuous in q: a grid that doubled and halved with q made fixed points cycle
        qhat, err, n_grid = _evaluate(channel, x, xi, w, clamp, low=np.nonzero(in_low)[0], n_min=n_grid)
        qhat = alpha * qhat
        with np.errstate(over="ignore", invalid="ignore"):
            gx = np.where(np.isinf(qhat), 1.0, qhat / (1.0 + qhat))
        if damping:
            gx = np.where(x >= 1.0, gx, (1 - damping) * gx + damping * x)
        # perfect recovery is collective (docs/bayes.md §3): with noiseless labels and eps = 1 - q
        # small, eps' = M eps with M >= 0 of rank one (one scalar equation per sample) and
        # spectral radius m/alpha. All directions near q = 1 and all shrinking means
        # rho(M) < 1 (Collatz-Wielandt), and then q = 1 for all is the stable fixed point. A
        # single direction at q = 1 is no fixed point while the others are not: it is never
        # set to 1 alone (that made a strong direction absorb at 1 and drag the rest along).
        near = (x < 1.0) & (1 - x < _Q_NEAR_TOP)
        collective = noiseless and near.any() and bool(np.all(near | (x >= 1.0)))
        top = near & collective & bool(np.all((1 - gx < 1 - x)[near]))
        if not top.any() and noiseless and bool(np.all(1 - gx < _Q_TOP)):
            top = x < 1.0
        gx = np.where(top | (x >= 1.0), 1.0, np.minimum(gx, 1.0 - 1e-12))
        low = in_low & (gx < 1.0)
        ratio = np.where(low, gx / np.where(x > 0, x, 1.0), np.nan)
        growth = ratio
        # parked: contracting in the linear regime, or decayed below 1e-8 in the full one
        faded = even & was_active & (x > 0) & (x < _Q_FLOOR) & (gx <= x)
        growth = np.where(faded, gx / np.where(x > 0, x, 1.0), growth)
        park = (low & (ratio <= 1.0)) | faded
        gx = np.where(park, x, gx)
        f = gx - x
        prev_change, change = change, float(np.max(np.abs(f)))
        # the contraction rate needs two steps; until then assume the slowest one allowed
        rho = min(change / prev_change, 0.99) if np.isfinite(prev_change) and prev_change > 0 else 0.99
        escaping = low & ~park
        if change <= tol * (1 - rho) and not escaping.any() and not top.any():
            return gx, qhat, growth, it, True, change, err
        recent = (recent + [change])[-50:]
        if not accelerate and len(recent) == 50 and max(recent) <= tol and not escaping.any():
            # damped steps that stay below tol for 50 iterations: the iterate is at the noise
            # floor of the map (its discretisation is not smooth below ~1e-8)
            return gx, qhat, growth, it, True, change, err
        active = ~park & (x > 0) & (x < 1.0) & (gx > 0) & (gx < 1.0)
        was_active |= ~in_low & (x > 0)
        if active_prev is None or not np.array_equal(active, active_prev) or top.any():
            S_hist, GS_hist = [], []
        active_prev = active
        sa, gsa = _logit(x[active]), _logit(gx[active])
        S_hist.append(sa)
        GS_hist.append(gsa)
        S_hist, GS_hist = S_hist[-(depth + 1):], GS_hist[-(depth + 1):]
        nxt = gx.copy()
        if accelerate and len(S_hist) >= 2:
            Fm = np.array([g - y for g, y in zip(GS_hist, S_hist)])   # residual history, (p+1, n_active)
            dF, dG = np.diff(Fm, axis=0), np.diff(np.array(GS_hist), axis=0)
            gamma, *_ = np.linalg.lstsq(dF.T, Fm[-1], rcond=None)
            cand = GS_hist[-1] - dG.T @ gamma
            fs = gsa - sa
            if np.all(np.isfinite(cand)):
                far = np.sign(fs) * np.minimum(_REACH * np.abs(fs), np.maximum(np.abs(fs), _MAX_LOG_STEP))
                step = np.clip(cand - sa, np.minimum(fs, far), np.maximum(fs, far))
                nxt[active] = np.clip(_expit(sa + step), 0.0, 1.0 - 1e-12)
        x = nxt
    return x, qhat, growth, max_iter, False, change, err


def _nanmean(x):
    """Mean over the first axis ignoring NaN; NaN where every entry is NaN (no warning)."""
    n = np.sum(np.isfinite(x), axis=0)
    tot = np.nansum(x, axis=0)
    return np.where(n > 0, tot / np.maximum(n, 1), np.nan)


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _expit(s):
    return 0.5 * (1 + np.tanh(s / 2))


def _sweep(channel, rule, a, init, tol, max_iter, damping, epsilon, progress=None, clamp=(), starts=None):
    """Warm-started fixed points along the grid ``a`` for every replicate (arrays indexed [r, i, k]).

    ``clamp`` holds directions at q_k = 0 (the sequential thresholds); ``starts`` (R, m)
    overrides the first start.
    """
    m, R = channel.m, rule.replicates
    order = np.argsort(a) if init == "uninformed" else np.argsort(a)[::-1]
    Q = np.zeros((R, a.size, m))
    QH = np.zeros((R, a.size, m))
    G = np.full((R, a.size, m), np.nan)
    conv = np.ones(a.size, dtype=bool)
    iters = np.zeros(a.size, dtype=int)
    err = 0.0
    start = np.full((R, m), epsilon if init == "uninformed" else 1 - epsilon) if starts is None else starts.copy()
    clamp = list(clamp)
    for done, i in enumerate(order):
        for r in range(R):
            # never start on a boundary (q = 0 or 1 are fixed points whose stability is what is being tested)
            q0 = np.maximum(start[r], epsilon) if init == "uninformed" else np.minimum(start[r], 1 - epsilon)
            q0[clamp] = 0.0
            q, qh, growth, it, ok, change, e = _solve(channel, a[i], q0, rule.xi[r], rule.w, channel.even, tol,
                                                      max_iter, damping, clamp)
            if not ok:
                k = int(np.argmax(np.abs(q - q0))) + 1
                raise ConvergenceError(
                    f"state evolution at alpha = {a[i]:g} ({init} start, replicate {r}) did not converge in {max_iter} "
                    f"iterations (last change {change:.2e}, direction k = {k}); try max_iter={2 * max_iter}, "
                    "damping=0.5, or an alpha further from a threshold")
            parked = np.isfinite(growth) & (growth <= 1.0)
            q = np.where(parked, 0.0, q)
            Q[r, i], QH[r, i], G[r, i] = q, np.where(parked, 0.0, qh), growth
            iters[i] = max(iters[i], it)
            conv[i] &= ok
            err = max(err, e)
            start[r] = q
        if progress:
            progress(done + 1, a.size)
    return {"Q": Q, "QH": QH, "G": G, "converged": conv, "iterations": iters, "error": err}


# --- public ---------------------------------------------------------------------------
def state_evolution(model: HierarchicalModel, alphas, init: str = "uninformed", *, tol: float = 1e-7,
                    max_iter: int = 2000, damping: float = 0.0, epsilon: float = 1e-6, method: str = "auto",
                    n_samples: int | None = None, replicates: int = 4, seed: int = 0,
                    resolution: ChannelResolution | None = None, free_entropy: bool = False,
                    progress=None) -> StateEvolution:
    r"""Fixed points of the Bayes-optimal state evolution (docs/bayes.md) on an alpha grid.

    Parameters
    ----------
    model : theory.HierarchicalModel (numeric gamma, finite m <= 64; at most one link that is
        not even). The preprocessing T is irrelevant: the Bayes-optimal estimator uses the likelihood.
    alphas : sample ratios > 0.
    init : ``"uninformed"`` (q_k = epsilon: what AMP reaches from a random start),
        ``"informed"`` (q_k = 1 - epsilon) or ``"both"`` (both branches; ``q`` is the one of larger
        free entropy, the Bayes-optimal one).
    tol : convergence test on the estimated distance to the fixed point, max_k |q_k(t+1) - q_k(t)| / (1 - rho)
        (rho the observed contraction rate).
    max_iter, damping : iteration cap and damping (q <- (1 - damping) F(q) + damping q).
    epsilon : the distance of the start from 0 (uninformed) or 1 (informed).
    method : ``"auto"`` (quadrature for m = 1, QMC otherwise), ``"quadrature"`` (m <= 3) or ``"qmc"``.
    n_samples : quadrature nodes per direction, or the total QMC sample size (a power of two per replicate).
    replicates, seed : independent QMC scramblings (the standard error) and their seed.
    resolution : :class:`~numerics.bayes.channel.ChannelResolution` of the y-integrals.
    free_entropy : also compute :math:`\Phi(q) - \Phi(0)` at each fixed point.
    progress : optional callable ``progress(done, total)``.

    Warm starts: the grid is swept upward for the uninformed branch (each alpha starts from
    the previous fixed point, unlearned directions reset to epsilon) and downward for the
    informed one; the map is monotone in q, so each sweep stays on its branch.
    """
    check_bayes_model(model)
    a = _alphas(alphas)
    if init not in ("uninformed", "informed", "both"):
        raise ValueError(f"init: must be 'uninformed', 'informed' or 'both', got {init!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1e-2):
        raise ValueError(f"tol: must lie in (0, 1e-2), got {tol!r}")
    max_iter = integer(max_iter, "max_iter", 1, 10**6)
    if not (isinstance(damping, (int, float)) and 0 <= damping < 1):
        raise ValueError(f"damping: must lie in [0, 1), got {damping!r}")
    if not (isinstance(epsilon, (int, float)) and 0 < epsilon <= 0.1):
        raise ValueError(f"epsilon: must lie in (0, 0.1], got {epsilon!r}")
    seed = integer(seed, "seed", 0, 2**63 - 1)
    if init == "both":
        kw = dict(tol=tol, max_iter=max_iter, damping=damping, epsilon=epsilon, method=method, n_samples=n_samples,
                  replicates=replicates, seed=seed, resolution=resolution, free_entropy=True)
        total = 2 * a.size
        prog_u = (lambda i, n: progress(i, total)) if progress else None
        prog_i = (lambda i, n: progress(a.size + i, total)) if progress else None
        un = state_evolution(model, a, "uninformed", progress=prog_u, **kw)
        inf = state_evolution(model, a, "informed", progress=prog_i, **kw)
        return _combine(un, inf)
    t0 = time.perf_counter()
    channel = channel_for(model, resolution)
    rule = _Rule(model, channel.even, method, n_samples, replicates, seed)
    R = rule.replicates
    sw = _sweep(channel, rule, a, init, tol, max_iter, damping, epsilon, progress)
    Q, QH, G, conv, iters, err = sw["Q"], sw["QH"], sw["G"], sw["converged"], sw["iterations"], sw["error"]
    t1 = time.perf_counter()
    fe = None
    if free_entropy:
        fe_r = np.array([[potential(channel, a[i], Q[r, i], rule.xi[r], rule.w) for i in range(a.size)]
                         for r in range(R)])
        fe = fe_r.mean(axis=0)
    mse_r = mse_forms(channel.a**2, Q)[0]
    se = (lambda x: x.std(axis=0, ddof=1) / np.sqrt(R)) if R > 1 else (lambda x: np.zeros(x.shape[1:]))
    settings = dict(rule.settings, init=init, tol=tol, max_iter=max_iter, damping=damping, epsilon=epsilon,
                    n_grid=channel.resolution.n_grid, u_cut=channel.resolution.u_cut, du=channel.resolution.du,
                    resolution_error=err, solve_s=t1 - t0, free_entropy_s=time.perf_counter() - t1,
                    mse="optimal shrinkage: sum a_k^2 (1 - q_k^2)")
    return StateEvolution(model=model, alphas=a, q=Q.mean(axis=0), q_se=se(Q), q_hat=QH.mean(axis=0),
                          mse=mse_r.mean(axis=0), mse_se=se(mse_r), converged=conv, iterations=iters,
                          stability=_nanmean(G), init=init, free_entropy=fe,
                          settings=settings)


def state_evolution_trajectory(model: HierarchicalModel, alpha: float, q0, n_iter: int = 50, *,
                               method: str = "auto", n_samples: int | None = None, replicates: int = 4,
                               seed: int = 0, resolution: ChannelResolution | None = None) -> np.ndarray:
    r"""The state evolution iterated from ``q0``, step by step: the overlaps AMP has after each
    iteration at d = infinity (docs/bayes.md, section 11), an array of shape (n_iter + 1, m).

    Step t: :math:`q^{t+1}_k = \hat q_k/(1 + \hat q_k)`, :math:`\hat q_k = lpha E_\omega F_k(q^t)`
    (no acceleration, no damping: AMP's own iteration). With a Monte Carlo rule over omega the
    steps are averaged over the replicates.

    >>> from theory import HierarchicalModel
    >>> traj = state_evolution_trajectory(HierarchicalModel(m=1, link="z**2", gamma=1), 3.0, [0.1], n_iter=60)
    >>> bool(traj[-1, 0] > 0.999999)     # noiseless phase retrieval, alpha > 1.13: perfect recovery
    True
    """
    check_bayes_model(model)
    if not (isinstance(alpha, (int, float, np.floating)) and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha: must be a finite number > 0, got {alpha!r}")
    q0 = np.asarray(q0, dtype=float).ravel()
    if q0.shape != (model.m,) or not np.all(np.isfinite(q0)) or np.any(q0 < 0) or np.any(q0 > 1):
        raise ValueError(f"q0: expected {model.m} overlaps in [0, 1], got {q0}")
    n_iter = integer(n_iter, "n_iter", 1, 100_000)
    channel = channel_for(model, resolution)
    rule = _Rule(model, channel.even, method, n_samples, replicates, integer(seed, "seed", 0, 2**63 - 1))
    out = np.zeros((n_iter + 1, model.m))
    out[0] = q0
    for r in range(rule.replicates):
        q = q0.copy()
        for t in range(n_iter):
            qhat = alpha * _evaluate(channel, q, rule.xi[r], rule.w)[0]
            q = np.where(np.isinf(qhat), 1.0, qhat / (1 + np.where(np.isinf(qhat), 0.0, qhat)))
            if channel.delta == 0 and np.all(1 - q < _Q_TOP):
                q[:] = 1.0
            out[t + 1] += q / rule.replicates
    return out


def potential(channel: OutputChannel, alpha: float, q, xi, w) -> float:
    r""":math:`\Phi(q) - \Phi(0)` by thermodynamic integration along :math:`t \mapsto tq`:

    .. math::
        \Psi_{out}(q) - \Psi_{out}(0) = \int_0^1 \sum_k \frac{q_k}{2} E_\omega F_k(tq)\,dt,

    with :math:`1 - t\max_k q_k = e^{-s}` so that the :math:`1/(1 - tq_k)` growth of
    :math:`F_k` near perfect recovery becomes a smooth integrand in s (Gauss-Legendre,
    24 nodes). A direction at q_k = 1 contributes :math:`+\infty` or :math:`-\infty`:
    the potential is then evaluated at :math:`1 - q_k = 10^{-10}`.
    """
    q = np.minimum(np.asarray(q, dtype=float), 1 - _Q_TOP)
    qmax = float(q.max())
    base = float(np.sum(q + np.log1p(-q)) / 2)
    if qmax <= 0:
        return 0.0
    L = -np.log1p(-qmax)
    x, wx = np.polynomial.legendre.leggauss(_PATH_NODES)
    s = (x + 1) * L / 2
    total = 0.0
    for sj, wj in zip(s, wx):
        t = (1 - np.exp(-sj)) / qmax
        qt = t * q
        r = channel.integrals(qt, np.sqrt(qt)[None, :] * xi)
        dpsi = float(np.sum(q * (w @ r.fisher))) / 2
        total += wj * L / 2 * dpsi * np.exp(-sj) / qmax
    return base + alpha * total


def free_entropy(model: HierarchicalModel, alpha: float, q, *, method: str = "auto", n_samples: int | None = None,
                 replicates: int = 4, seed: int = 0, resolution: ChannelResolution | None = None) -> float:
    r"""The replica potential :math:`\Phi(q) - \Phi(0)` of docs/bayes.md at overlaps q (any q, not
    only a fixed point). Its stationary points are the state-evolution fixed points, and among
    them the Bayes-optimal one has the largest value.

    >>> from theory import HierarchicalModel
    >>> pr = HierarchicalModel(m=1, link="z**2", gamma=1)   # noiseless phase retrieval
    >>> free_entropy(pr, 2.0, [1.0]) > 0 > free_entropy(pr, 0.8, [1.0])   # alpha_IT = 1
    True
    """
    check_bayes_model(model)
    a = float(_alphas([alpha])[0])
    q = np.asarray(q, dtype=float)
    if q.shape != (model.m,) or np.any(~np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
        raise ValueError(f"q: expected {model.m} overlaps in [0, 1], got {q!r}")
    channel = channel_for(model, resolution)
    rule = _Rule(model, channel.even, method, n_samples, replicates, seed)
    return float(np.mean([potential(channel, a, q, xi, rule.w) for xi in rule.xi]))


def _combine(un: StateEvolution, inf: StateEvolution) -> StateEvolution:
    """Pick, per alpha, the branch of larger free entropy; list the transitions on the grid."""
    differ = np.max(np.abs(un.q - inf.q), axis=1) > 1e-4
    informed_wins = differ & (inf.free_entropy > un.free_entropy)
    pick = lambda x, y: np.where(informed_wins[:, None] if x.ndim == 2 else informed_wins, y, x)  # noqa: E731
    branch = np.where(informed_wins, "informed", "uninformed")
    order = np.argsort(un.alphas)
    al = un.alphas[order]
    transitions = []
    d = (inf.free_entropy - un.free_entropy)[order]
    dif = differ[order]
    wins = informed_wins[order]
    for j in range(al.size - 1):
        if not wins[j] and wins[j + 1]:
            if dif[j] and dif[j + 1]:  # both branches exist at both ends: interpolate Phi_inf - Phi_un
                x = al[j] + (al[j + 1] - al[j]) * (-d[j]) / (d[j + 1] - d[j])
            else:  # the informed branch appears (and wins) inside the bracket
                x = float(np.sqrt(al[j] * al[j + 1]))
            transitions.append({"kind": "information-theoretic", "alpha": float(x),
                                "bracket": (float(al[j]), float(al[j + 1]))})
    jumps = np.max(np.abs(np.diff(un.q[order], axis=0)), axis=1)
    for j in range(al.size - 1):
        if dif[j] and not dif[j + 1] and jumps[j] > 0.05:
            transitions.append({"kind": "algorithmic", "alpha": float(np.sqrt(al[j] * al[j + 1])),
                                "bracket": (float(al[j]), float(al[j + 1]))})
    settings = dict(un.settings, init="both")
    return StateEvolution(model=un.model, alphas=un.alphas, q=pick(un.q, inf.q), q_se=pick(un.q_se, inf.q_se),
                          q_hat=pick(un.q_hat, inf.q_hat), mse=pick(un.mse, inf.mse), mse_se=pick(un.mse_se, inf.mse_se),
                          converged=un.converged & inf.converged, iterations=np.maximum(un.iterations, inf.iterations),
                          stability=un.stability, init="both", free_entropy=pick(un.free_entropy, inf.free_entropy),
                          settings=settings, branches={"uninformed": un, "informed": inf}, branch=branch,
                          transitions=transitions)
