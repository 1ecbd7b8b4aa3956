r"""Approximate message passing for Model S at finite d (docs/bayes.md, section 11).

Multi-index GAMP with the Gaussian prior :math:`\tilde w_i \sim N(0, I_m)` on the rows of
:math:`\tilde W = \sqrt d\,W` and :math:`F = X/\sqrt d`, so that :math:`z_\mu = F_\mu\tilde W`
(Rangan 2011; the committee-machine form of Aubin et al. 2018). One iteration:

.. math::
    V_\mu = \sum_i F_{\mu i}^2 C_i,\quad
    \omega_\mu = F_\mu \hat W - V_\mu g^{old}_\mu,\quad
    g_\mu = g_{out}(y_\mu, \omega_\mu, V_\mu),\quad
    A_i = -\sum_\mu F_{\mu i}^2\,\partial_\omega g_\mu,

    B_i = \sum_\mu F_{\mu i} g_\mu + A_i\hat W_i,\quad
    \hat W_i = \frac{B_i}{1 + A_i},\quad C_i = \frac{1}{1 + A_i}.

The per-sample :math:`V_\mu` and per-coordinate :math:`A_i` are kept exact: their means (the
d = infinity form) leave a self-interaction of order :math:`d^{-1/2} V g_\mu` in the Onsager
term, enough to put noiseless phase retrieval at d = 2000 on a period-2 cycle (measured;
docs/bayes.md §11). The overlap matrix of Model S stays diagonal (docs/bayes.md §1), so V, A
and C are diagonal in the directions (their off-diagonal entries are :math:`O(d^{-1/2})`
fluctuations) and :math:`g_{out}` is the posterior of :mod:`numerics.bayes.posterior`. Its
state evolution is :func:`numerics.bayes.state_evolution_trajectory` (iteration by iteration)
and :func:`numerics.bayes.state_evolution` (the fixed points).

The samples come from :class:`validation.simulate.SampleStream`: the same (model, d, seed)
and alpha give the same data as ``simulate_task(model, d, [alpha], seed)``, so AMP and the
spectral estimator can be compared sample for sample.

Memory: X and its square (n x d each, float64) are held, plus O(n m + d m) per iteration and
the posterior's chunk work space: :func:`amp_memory` (1.85 GB at d = 1000, alpha = 100, m = 4).

Examples
--------
>>> from theory import HierarchicalModel
>>> r = run_amp(HierarchicalModel(m=1, link="z**2", gamma=1), d=200, alpha=3.0, seed=0, init="informed")
>>> bool(r.q[0] > 0.9999), r.converged        # noiseless phase retrieval above alpha ~ 1.13
(True, True)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from numerics.bayes.channel import ChannelResolution
from numerics.bayes.evolution import check_bayes_model
from numerics.bayes.posterior import OutputDenoiser
from numerics.label_law import preprocessing_function
from numerics.predict import mse_forms
from theory import HierarchicalModel

from .experiment import add_provenance
from .simulate import SampleStream, _Accumulator

__all__ = ["AMPResult", "run_amp", "amp_memory", "INITS", "MAX_BYTES"]

INITS = ("spectral", "informed", "random")
#: the largest memory run_amp accepts by default (bytes)
MAX_BYTES = 8 * 2**30
_V_PERFECT = 1e-12   # every V below it: the directions are known (noiseless perfect recovery)
_DEFAULT_OVERLAP = {"informed": 0.9, "random": 1e-2, "spectral": 1e-2}


@dataclass(frozen=True, eq=False)
class AMPResult:
    r"""One AMP run. ``q`` (m,): squared cosine between :math:`w_k` and the k-th column of
    :math:`\hat W`; ``q_best``: the best match over the columns; ``proj``:
    :math:`\|P_{\hat W}w_k\|^2` on their span (the quantities of ``simulate``); ``mse``:
    :math:`\sum_k a_k^2(1 - q_k^2)`; ``trajectory`` (iterations + 1, m): q after each iteration
    (row 0: the start); ``v``: the mean posterior variance of each direction after each
    iteration; ``settled`` (m,): the directions whose last step was below ``tol``. A direction
    that is not learned (V near 1) keeps wandering at finite d, with an overlap of order
    1/d to 1/d^(1/2), and does not settle (docs/bayes.md section 11)."""

    model: HierarchicalModel
    d: int
    alpha: float
    seed: int
    init: str
    q: np.ndarray
    q_best: np.ndarray
    proj: np.ndarray
    mse: float
    iterations: int
    converged: bool
    settled: np.ndarray
    trajectory: np.ndarray
    v: np.ndarray
    settings: dict = field(default_factory=dict)

    @property
    def q0(self) -> np.ndarray:
        """The overlaps of the start."""
        return self.trajectory[0]

    def to_frame(self) -> pd.DataFrame:
        """One row per direction (the columns of ``simulate`` where they mean the same)."""
        rows = [{"alpha": self.alpha, "n": self.settings["n"], "k": k + 1, "q_amp": self.q[k], "q_best": self.q_best[k],
                 "proj": self.proj[k], "q0": self.q0[k], "mse": self.mse, "iterations": self.iterations,
                 "converged": self.converged, "settled": bool(self.settled[k]), "init": self.init,
                 "seed": self.seed, "d": self.d,
                 "fallback": self.settings["fallback"], "wall_s": self.settings["wall_s"]}
                for k in range(self.model.m)]
        return pd.DataFrame(rows)


def amp_memory(model: HierarchicalModel, d: int, alpha: float, chunk: int = 512) -> int:
    """Bytes run_amp needs: X and X^2 (2 n d float64), a dozen n x m arrays, the d x d spectral matrix, and the
    posterior's per-chunk y-grids (m >= 2: about 6 m grids of about 1024 complex points per sample)."""
    n = int(round(alpha * d))
    m = model.m
    grids = 6 * m * chunk * 1024 * 16 if m > 1 else 4 * chunk * 2 * 8193 * 8
    return int(16 * n * d + 12 * 8 * n * m + 8 * 8 * d * m + 8 * d * d + grids)


def _check(model, d, alpha, seed, init, max_iter, tol, damping, init_overlap, max_bytes):
    check_bayes_model(model)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2:
        raise ValueError(f"d: the dimension must be an integer >= 2, got {d!r}")
    if model.m > d:
        raise ValueError(f"d: must be >= m = {model.m}, got {d}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) or \
            not np.isfinite(alpha) or alpha <= 0 or round(alpha * d) < 1:
        raise ValueError(f"alpha: the sample ratio must be a finite number > 0 with alpha * d >= 1, got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    if init not in INITS:
        raise ValueError(f"init: must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or not 1 <= max_iter <= 100_000:
        raise ValueError(f"max_iter: must be an integer in [1, 100000], got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 0.1):
        raise ValueError(f"tol: must lie in (0, 0.1), got {tol!r}")
    if not (isinstance(damping, (int, float)) and 0 <= damping < 1):
        raise ValueError(f"damping: must lie in [0, 1), got {damping!r}")
    if init_overlap is not None and not (isinstance(init_overlap, (int, float)) and 0 < init_overlap < 1):
        raise ValueError(f"init_overlap: must lie in (0, 1), got {init_overlap!r}")
    need = amp_memory(model, d, alpha)
    if need > max_bytes:
        raise ValueError(f"d, alpha: AMP at d = {d}, alpha = {alpha:g} needs about {need / 2**30:.1f} GiB "
                         f"(X is n x d with n = alpha d), above max_bytes = {max_bytes / 2**30:.1f} GiB; "
                         "lower d or alpha, or raise max_bytes")


def _spectral_start(model, X, y, d, alpha, q_scale):
    """Top-m eigenvectors of D_n = (1/n) sum T(y) x x^T (rank order, column k for direction k),
    each scaled to the d = infinity spectral overlap q_k(alpha) (``q_scale`` where it is 0)."""
    from numerics import predict

    T = preprocessing_function(model.T)
    acc = _Accumulator(d, np.float64)
    for s in range(0, y.size, 4096):
        acc.add(X[s:s + 4096], T(y[s:s + 4096]))
    vals, vecs = np.linalg.eigh(acc.matrix(y.size))
    V = vecs[:, ::-1][:, :model.m]
    q_pred = np.asarray(predict(model, [alpha]).q, dtype=float).reshape(-1)[: model.m]
    scale = np.where(q_pred > q_scale, q_pred, q_scale)
    return V * np.sqrt(d * scale)[None, :], scale


def _overlaps(W, What):
    """q (column k vs w_k), q_best (best column) and proj (on the span of the columns)."""
    norms = np.linalg.norm(What, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    C = (W.T @ What / norms[None, :]) ** 2   # W has orthonormal columns
    Qb = np.linalg.qr(What)[0] if np.all(np.isfinite(What)) else np.zeros_like(What)
    proj = ((W.T @ Qb) ** 2).sum(axis=1)
    return np.diag(C).copy(), C.max(axis=1), proj


def run_amp(model: HierarchicalModel, d: int, alpha: float, seed: int = 0, init: str = "spectral", *,
            max_iter: int = 100, tol: float = 1e-5, damping: float | None = None, init_overlap: float | None = None,
            chunk: int = 4096, resolution: ChannelResolution | None = None, max_bytes: int = MAX_BYTES,
            progress=None) -> AMPResult:
    r"""Run AMP on n = round(alpha d) samples of Model S (docs/bayes.md, section 11).

    Parameters
    ----------
    model : theory.HierarchicalModel with delta > 0 (or m = 1 and a noiseless link without flat pieces).
    d, alpha, seed : dimension, sample ratio and seed (the data of ``simulate_task(model, d, [alpha], seed)``).
    init : ``"spectral"`` (the top-m eigenvectors of the preprocessed spectral matrix, scaled to the
        d = infinity spectral overlap, or to ``init_overlap`` below the spectral threshold),
        ``"informed"`` (:math:`\hat W = q_0\tilde W + \sqrt{q_0(1-q_0)}\,\xi`, overlap
        ``init_overlap`` = q_0, default 0.9) or ``"random"`` (:math:`\hat W = \sqrt{q_0}\,\xi`,
        q_0 = ``init_overlap``, default 0.01: the overlap is then O(1/d)). V starts at 1 - q_0.
    max_iter, tol : stop when every column of :math:`\hat W` moved by less than ``tol`` (relative)
        and every mean V_k by less than ``tol`` (relative), or when every V_k < 1e-12 (perfect
        recovery); ``settled`` says which directions met the test at the last iteration.
    damping : :math:`\hat W \leftarrow (1 - \text{damping})\,\text{new} + \text{damping}\,\text{old}`, and the
        Onsager reaction term mixed the same way (it is the reaction to the damped estimate). Damping
        leaves the fixed points unchanged. Default (None): 0.5 with noise, 0 for noiseless labels,
        as measured (docs/bayes.md section 11): with noise, undamped AMP at finite d can wander near
        a fixed point the state evolution calls stable (alpha = 10, m = 1, Delta = 0.1, d = 1000:
        q between 0.87 and 0.98 over 60 iterations undamped, 0.985 in 32 damped); without noise,
        where V falls by about half per iteration on the way to perfect recovery, the damped
        Onsager term lags and AMP can collapse (phase retrieval, alpha = 2, d = 400: q = 0.991
        then 0.02). With ``damping=0`` the iterates follow the state evolution step by step.
    chunk : batch size of the sample stream (part of what fixes the data with noise).
    resolution : the posterior's discretisation (:class:`~numerics.bayes.channel.ChannelResolution`).
    max_bytes : refuse up front when :func:`amp_memory` exceeds it.
    progress : optional callable ``progress(iteration, max_iter)``.
    """
    _check(model, d, alpha, seed, init, max_iter, tol, 0.0 if damping is None else damping, init_overlap, max_bytes)
    if damping is None:
        damping = 0.5 if float(model.delta) > 0 else 0.0
    t0 = time.perf_counter()
    denoiser = OutputDenoiser(model, resolution)
    m = model.m
    n = int(round(alpha * d))
    stream = SampleStream(model, d, seed)
    W = stream.W
    X, y = stream.take(n, chunk)
    q_init = init_overlap if init_overlap is not None else _DEFAULT_OVERLAP[init]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(d), 7919]))  # the start's own stream
    xi = rng.standard_normal((d, m))
    if init == "informed":
        What = q_init * np.sqrt(d) * W + np.sqrt(q_init * (1 - q_init)) * xi
        v = np.full(m, 1.0 - q_init)
    elif init == "random":
        What = np.sqrt(q_init) * xi
        v = np.full(m, 1.0 - q_init)
    else:
        What, scale = _spectral_start(model, X, y, d, float(alpha), q_init)
        v = 1.0 - scale
    sq = np.sqrt(d)
    X2 = X * X / d                       # F^2: the exact per-sample and per-coordinate variances
    C = np.broadcast_to(v, (d, m)).copy()  # posterior variances of the rows of W_hat
    onsager = np.zeros((n, m))
    V = X2 @ C                                             # (n, m): V_mu = sum_i F_mu,i^2 C_i
    traj = [_overlaps(W, What)[0]]
    vs = [C.mean(axis=0)]
    converged = False
    settled = np.zeros(m, dtype=bool)
    fallback = 0
    it = 0
    for it in range(1, max_iter + 1):
        omega = (X @ What) / sq - onsager
        out = denoiser(y, omega, V)
        fallback = out.fallback
        A = np.maximum(-(X2.T @ out.dg), 0.0)              # (d, m); >= 0 (a negative curvature is a transient)
        B = (X.T @ out.g) / sq + What * A
        W_new, C = B / (1 + A), 1.0 / (1 + A)
        # the reaction of each sample on its own next omega: V_mu g_mu for the undamped step; a
        # damped step keeps that fraction of it and the rest of the previous reaction
        V_next = X2 @ C                                    # the next iteration's V_mu, computed once
        onsager_new = V_next * out.g
        if damping:
            W_new = (1 - damping) * W_new + damping * What
            onsager_new = (1 - damping) * onsager_new + damping * onsager
        step = np.linalg.norm(W_new - What, axis=0) / np.maximum(np.linalg.norm(W_new, axis=0), 1e-300)
        v_new = C.mean(axis=0)
        dv = np.abs(v_new - vs[-1]) / np.maximum(v_new, 1e-300)
        What, onsager, V = W_new, onsager_new, V_next
        traj.append(_overlaps(W, What)[0])
        vs.append(v_new)
        if progress:
            progress(it, max_iter)
        if not (np.all(np.isfinite(What)) and np.all(np.isfinite(C))):
            raise FloatingPointError(f"AMP diverged at iteration {it} (d = {d}, alpha = {alpha:g}); try damping=0.5")
        settled = (step < tol) & (dv < tol)
        if np.all(v_new < _V_PERFECT) or np.all(settled):
            converged = True
            settled[:] = True
            break
    if progress:
        progress(max_iter, max_iter)
    q, q_best, proj = _overlaps(W, What)
    mse = float(mse_forms(np.asarray(model.weight_array, dtype=float) ** 2, q)[0])
    settings = {"n": n, "chunk": chunk, "init_overlap": q_init, "damping": damping, "tol": tol, "max_iter": max_iter,
                "fallback": fallback, "memory_bytes": amp_memory(model, d, alpha), "wall_s": time.perf_counter() - t0,
                "V": "diagonal (docs/bayes.md section 11)"}
    return AMPResult(model=model, d=int(d), alpha=float(alpha), seed=int(seed), init=init, q=q, q_best=q_best,
                     proj=proj, mse=mse, iterations=it, converged=converged, settled=settled,
                     trajectory=np.array(traj),
                     v=np.array(vs), settings=settings)


def amp_table(model: HierarchicalModel, d: int, alphas, seeds, init: str = "spectral", progress=None,
              **options) -> pd.DataFrame:
    """run_amp over alphas x seeds: one row per (alpha, seed, k), with provenance columns."""
    alphas = [float(a) for a in np.atleast_1d(alphas)]
    seeds = list(seeds)
    if not alphas or not seeds:
        raise ValueError("alphas, seeds: expected at least one of each")
    frames = []
    total = len(alphas) * len(seeds)
    for i, (s, a) in enumerate((s, a) for s in seeds for a in alphas):
        frames.append(run_amp(model, d, a, s, init, **options).to_frame())
        if progress:
            progress(i + 1, total)
    df = pd.concat(frames, ignore_index=True)
    add_provenance(df, model.describe(), "float64")
    return df


__all__ += ["amp_table"]


def amp_cost_seconds(model: HierarchicalModel, d: int, alphas, seeds, iterations: int = 100) -> float:
    """A rough wall-time estimate of amp_table on 2 cores: the posterior dominates, about 5e-5 s per
    sample, direction and iteration for m >= 2 (the leave-one-out y-grids; 4.5e-5 measured at m = 10,
    d = 200 with the per-sample grid sizes) and 1e-6 s for m = 1 (closed form), measured on this
    project's CI machine (docs/bayes.md section 11, docs/figures/D-optimal.md)."""
    per = 5e-5 if model.m > 1 else 1e-6
    n = sum(round(a * d) for a in np.atleast_1d(alphas))
    return float(per * n * model.m * iterations * len(list(seeds)) + 2e-9 * n * d * model.m * iterations)


def compare_amp(se, table: pd.DataFrame) -> pd.DataFrame:
    r"""AMP against its state evolution per (alpha, k): the seed mean and standard error of q_k,
    the state evolution's q_k, and ``agrees`` with the finite-size tolerance
    :math:`d^{-1/2} + 2\,\mathrm{sem}` (docs/bayes.md section 11)."""
    d = int(table["d"].iloc[0])
    g = table.groupby(["alpha", "k"])
    nseed = g["seed"].nunique()
    out = pd.DataFrame({"q_amp": g["q_amp"].mean(), "q_sem": (g["q_amp"].std(ddof=1) / np.sqrt(nseed)).fillna(0.0),
                        "mse_amp": g["mse"].mean(), "mse_sem": (g["mse"].std(ddof=1) / np.sqrt(nseed)).fillna(0.0),
                        "converged": g["converged"].mean(), "settled": g["settled"].mean(),
                        "iterations": g["iterations"].mean(),
                        "n_seeds": nseed}).reset_index()
    idx = np.array([int(np.argmin(np.abs(se.alphas - a))) for a in out["alpha"]])
    out["q_se"] = se.q[idx, out["k"].to_numpy() - 1]
    out["mse_se"] = se.mse[idx]
    out["tolerance"] = d**-0.5 + 2 * out["q_sem"]
    out["agrees"] = np.abs(out["q_amp"] - out["q_se"]) <= out["tolerance"]
    out["d"] = d
    return out


def run_validate_amp(model: HierarchicalModel, d: int, alphas, seeds, outdir="cascade-out", progress: bool = True,
                     init: str = "spectral", **options) -> dict:
    """AMP at finite d next to its state evolution (uninformed branch): writes ``validate_amp.parquet``
    (one row per run and direction) and ``validate_amp_summary.parquet`` into ``outdir``."""
    from pathlib import Path

    from numerics.bayes import state_evolution

    from .experiment import table_metadata
    from .progress import Progress

    alphas = np.sort(np.atleast_1d(np.asarray(alphas, dtype=float)))
    seeds = list(seeds)
    t0 = time.perf_counter()
    OutputDenoiser(model)  # refuse a model AMP cannot run before any work
    for a in alphas:
        _check(model, d, float(a), 0, init, 200, 1e-5, 0.0, None, options.get("max_bytes", MAX_BYTES))
    bar = Progress(len(alphas) * len(seeds), "AMP", enabled=progress)
    table = amp_table(model, d, alphas, seeds, init=init, progress=bar, **options)
    se = state_evolution(model, alphas)
    summary = compare_amp(se, table)
    for key, val in table_metadata(model, "amp_comparison").items():
        summary[key] = val
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = [str(outdir / "validate_amp.parquet"), str(outdir / "validate_amp_summary.parquet")]
    table.to_parquet(files[0], index=False)
    summary.to_parquet(files[1], index=False)
    return {"summary": summary, "table": table, "state_evolution": se, "files": files, "d": d, "model": model,
            "wall_s": time.perf_counter() - t0}


def format_amp_report(res: dict, kmax: int = 6) -> str:
    s = res["summary"]
    lines = [f"AMP (spectral start) vs Bayes-optimal state evolution (uninformed branch): Model S "
             f"{res['model'].describe()}, d = {res['d']}, seeds = {int(s['n_seeds'].iloc[0])}",
             "q_k: state evolution / AMP (mean +- sem); '*' = outside d^-1/2 + 2 sem"]
    for a, grp in s.groupby("alpha"):
        grp = grp.set_index("k")
        cells = [f"{r['q_se']:.3f}/{r['q_amp']:.3f}±{r['q_sem']:.3f}{' ' if r['agrees'] else '*'}"
                 for _, r in grp.iloc[:kmax].iterrows()]
        r = grp.iloc[0]
        lines.append(f"{a:7.4g} " + " ".join(c.rjust(19) for c in cells) +
                     f"  MSE {r['mse_se']:.4f}/{r['mse_amp']:.4f}  settled " +
                     "/".join(f"{x:.0%}" for x in grp["settled"].iloc[:kmax]))
    lines.append(f"{int(s['agrees'].sum())}/{len(s)} (alpha, k) points within the tolerance; "
                 f"wall time {res['wall_s']:.1f} s; wrote: " + ", ".join(res["files"]))
    return "\n".join(lines)


__all__ += ["amp_cost_seconds", "compare_amp", "run_validate_amp", "format_amp_report"]
