r"""Finite-d spectral simulation of Model S (docs/theory.md §2.1).

One task is (model, d, seed) with an alpha grid: a single stream of samples
:math:`x_i \sim N(0, I_d)` feeds the accumulator
:math:`S = \sum_i T(y_i) x_i x_i^\top` (BLAS ``syrk`` on the positive and negative parts
of T, in chunks: memory O(d^2 + chunk d)), and a snapshot :math:`D_n = S/n` is taken
each time n reaches alpha d. A whole grid therefore costs as much as its largest alpha.
Each snapshot is an honest i.i.d. sample of size n, but curves across alpha are
correlated within one seed (they share samples).

Every random draw comes from ``numpy.random.SeedSequence([seed, d, model hash])``.

Examples
--------
>>> from theory import HierarchicalModel
>>> df = simulate(HierarchicalModel(m=2, gamma=1), d=60, alphas=[30], seeds=[0])
>>> {"alpha", "k", "q_best", "proj", "k_hat", "mse", "seed", "d", "gamma", "version"} <= set(df.columns), len(df)
(True, 2)
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.linalg import blas

from numerics.edge_overlap import TW_MEAN, TW_SD, tw_scale
from numerics.label_law import check_model, link_function, preprocessing_function
from numerics.predict import mse_forms
from numerics.resolvent import edge_of_atoms
from theory import HierarchicalModel
from theory.model import finite_array, sample_ratio

from .experiment import add_provenance, model_hash

__all__ = ["SampleStream", "simulate", "simulate_task", "empirical_bulk_edge", "two_sided_outliers", "bench_accumulation", "model_hash"]  # model_hash: re-exported



def _labels(model, Z, rng, links, a=None):
    """y = sum_k a_k g_k(z_k) (+ noise). Pass the float weights ``a`` in loops: evaluating the
    exact sympy weights costs ~1 ms each."""
    if a is None:
        a = list(model.weight_array)
    y = np.zeros(Z.shape[0])
    for k in range(model.m):
        y += a[k] * links[k](Z[:, k])
    if model.delta > 0:
        y += np.sqrt(float(model.delta)) * rng.standard_normal(Z.shape[0])
    return y


def _project(X, Wt):
    """Z = X W through scipy's BLAS (``Wt`` = W^T, Fortran-ordered; no copy of X).

    numpy and scipy wheels each bundle an OpenBLAS with its own thread pool. A numpy matmul
    between two scipy syrk calls leaves numpy's threads spinning while scipy's compute, and on
    2 cores the syrk then ran at half speed (5.9 s instead of 3.6 s for 200 000 x 1000 rows;
    docs/reliability.md §"Machine limit"). The hot loop therefore stays in scipy's BLAS."""
    return blas.dgemm(1.0, Wt, X.T).T


class SampleStream:
    """The seeded data of one (model, d, seed) task: the directions W (d x m, orthonormal) and then
    the samples, drawn in the order the caller asks for them.

    Every estimator that runs on "the same data" (the spectral estimator, AMP, the two-stage
    readout) draws through this class: ``numpy.random.SeedSequence([seed, d, model hash])``
    gives W first, then each batch's x (b x d) followed by its label noise. With noise, the
    samples therefore depend on the batch sizes as well as on the seed: two runs see the same
    data when they draw the same batches (for one alpha: batches of ``chunk`` up to n).
    """

    def __init__(self, model: HierarchicalModel, d: int, seed: int, dtype=np.float64):
        self.model = model
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(d), model_hash(model)]))
        self.d = int(d)
        self.dtype = np.dtype(dtype)
        self.W = np.linalg.qr(self.rng.standard_normal((d, model.m)))[0]
        self._links = [link_function(model.link_of(k + 1)) for k in range(model.m)]  # lambdify once
        self._a = list(model.weight_array)
        self._buf = self._buf32 = None
        self._Wt = np.asfortranarray(self.W.T)

    def draw(self, b: int, reuse: bool = False):
        """The next b samples: x (b x d, in ``dtype``) and their labels y (float64).

        ``reuse=True`` draws into buffers kept by the stream (the same numbers; no page faults
        of a fresh b x d allocation per batch): the returned x is overwritten by the next
        reusing draw, so the caller must be done with it by then."""
        if not reuse:
            X64 = self.rng.standard_normal((b, self.d))
        else:
            if self._buf is None or self._buf.shape[0] < b:
                self._buf = np.empty((b, self.d))
                self._buf32 = np.empty((b, self.d), np.float32) if self.dtype == np.float32 else None
            X64 = self.rng.standard_normal(out=self._buf[:b])
        y = _labels(self.model, _project(X64, self._Wt), self.rng, self._links, self._a)
        if self.dtype == np.float64:
            return X64, y
        if not reuse:
            return X64.astype(self.dtype), y
        X = self._buf32[:b]
        np.copyto(X, X64, casting="same_kind")
        return X, y

    def take(self, n: int, chunk: int = 4096):
        """The next n samples held in memory: X (n x d) and y (n), drawn in batches of ``chunk``."""
        X = np.empty((n, self.d), dtype=self.dtype)
        y = np.empty(n)
        done = 0
        for Xb, yb in self.batches(n, chunk):
            X[done:done + yb.size], y[done:done + yb.size] = Xb, yb
            done += yb.size
        return X, y

    def batches(self, n: int, chunk: int = 4096, reuse: bool = False):
        """The next n samples in batches of ``chunk`` (the last one shorter); ``reuse`` as in
        :meth:`draw` (each batch is overwritten by the next)."""
        done = 0
        while done < n:
            b = int(min(chunk, n - done))
            yield self.draw(b, reuse)
            done += b


class _Accumulator:
    """S = sum_i t_i x_i x_i^T, upper triangle, via syrk on sqrt(|t|)-weighted rows.

    The rows with t > 0 and those with t < 0 go to two syrk calls. ``add`` consumes its batch:
    it swaps the misplaced rows so that the t > 0 rows come first (about 2 p (1 - p) b rows
    move, p the positive share) and scales them in place, with no fresh b x d allocation. A
    gather into a new array per sign cost a third of the syrk time at d = 1000
    (docs/reliability.md §"Machine limit")."""

    def __init__(self, d, dtype):
        self.dtype = np.dtype(dtype)
        self.S = np.zeros((d, d), dtype=self.dtype, order="F")
        self.syrk = blas.dsyrk if self.dtype == np.float64 else blas.ssyrk
        self._buf = None

    def add(self, X, t, consume: bool = False):
        """S += X^T diag(t) X. With ``consume`` X (b x d, C-ordered, in ``dtype``, writable) is
        overwritten; otherwise it is first copied into a buffer kept across batches."""
        if not consume or X.dtype != self.dtype or not X.flags.c_contiguous or not X.flags.writeable:
            if self._buf is None or self._buf.shape[0] < X.shape[0]:
                self._buf = np.empty(X.shape, dtype=self.dtype)
            buf = self._buf[: X.shape[0]]
            np.copyto(buf, X, casting="same_kind")
            X = buf
        t = np.array(t, dtype=np.float64)  # a private copy: its entries are permuted with the rows
        keep = t != 0
        if not np.all(keep):  # rows with t = 0 contribute nothing
            X, t = X[keep], t[keep]
        pos = t > 0
        n_pos = int(pos.sum())
        out_of_place = np.flatnonzero(~pos[:n_pos])  # negatives among the first n_pos rows
        in_place = n_pos + np.flatnonzero(pos[n_pos:])  # positives after them: as many
        if out_of_place.size:
            X[out_of_place], X[in_place] = X[in_place], X[out_of_place].copy()
            t[out_of_place], t[in_place] = t[in_place], t[out_of_place].copy()
        X *= np.sqrt(np.abs(t))[:, None].astype(self.dtype)
        for sign, rows in ((1.0, X[:n_pos]), (-1.0, X[n_pos:])):
            if rows.shape[0]:
                # rows^T is Fortran-ordered (d x rows): S += a a^T without a copy
                self.S = self.syrk(sign, rows.T, beta=1.0, c=self.S, trans=0, lower=0, overwrite_c=1)

    def matrix(self, n):
        U = np.triu(self.S).astype(np.float64)
        return (U + np.triu(U, 1).T) / n


#: the estimator's outlier cut sits this many Tracy-Widom sd above the TW mean at the empirical edge
CUT_SD = 3.0


def empirical_bulk_edge(tau: np.ndarray, alpha: float, d: int, margin_sd: float = CUT_SD) -> tuple[float, float]:
    r"""Bulk edge from the data alone: :math:`\psi_\alpha(\bar\lambda)` with the empirical law of
    T(y_i), and the Tracy-Widom scale :math:`s\,d^{-2/3}`,
    :math:`s = [\alpha/\bar\lambda^2 \sqrt{2/\psi''(\bar\lambda)}]^{-2/3}` (docs/theory.md §4).

    Returns (edge, cut): eigenvalues above ``cut = edge + (TW_MEAN + margin_sd TW_SD) s d^{-2/3}``
    are declared outliers.
    """
    # all n labels, no subsample: D_n is centred by the realised mean of these very T(y_i),
    # and a subsample's error (~ std/sqrt(n_sub) * lambda_bar) can exceed the TW margin
    tau = finite_array(tau, "tau")
    if tau.ndim != 1 or tau.size < 2:
        raise ValueError(f"tau: expected at least two labels T(y_i), got shape {tau.shape}")
    alpha = sample_ratio(alpha)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d: expected an integer >= 1, got {d!r}")
    lam, edge, psi2 = edge_of_atoms(tau, np.full(tau.size, 1.0 / tau.size), alpha)
    return float(edge), float(edge + (TW_MEAN + margin_sd * TW_SD) * tw_scale(alpha, lam, psi2) * d ** (-2 / 3))


def two_sided_outliers(vals, tau, alpha, d, scale: float = 1.0):
    r"""Mask of the eigenvalues ``vals`` outside both empirical bulk edges, for a matrix
    ``scale`` times :math:`\frac1n\sum_i \tau_i x_ix_i^\top` (Model C's layer 1 is half of it):
    above the cut of :func:`empirical_bulk_edge` for tau, or below minus the cut for -tau."""
    _, hi = empirical_bulk_edge(tau, alpha, d)
    _, lo = empirical_bulk_edge(-np.asarray(tau), alpha, d)
    vals = np.asarray(vals)
    return (vals > scale * hi) | (vals < -scale * lo)


def _check(model, d, alphas, chunk):
    check_model(model)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2:
        raise ValueError(f"d: the dimension must be an integer >= 2, got {d!r}")
    if model.m > d:
        raise ValueError(f"d: must be >= m = {model.m}, got {d}")
    a = np.sort(np.atleast_1d(np.asarray(alphas, dtype=float)))
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("alphas: expected a non-empty list of sample ratios > 0")
    if np.any(np.round(a * d) < 1):
        raise ValueError(f"alphas: alpha * d must be >= 1 sample, got alpha = {a.min():g} at d = {d}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk: must be a positive integer, got {chunk!r}")
    return a


def simulate_task(model: HierarchicalModel, d: int, alphas, seed: int, chunk: int = 4096,
                  dtype=np.float64, keep_spectrum: bool = False, keep_estimates: bool = False) -> tuple[pd.DataFrame, dict]:
    """One (model, d, seed) task over an alpha grid. Returns (rows, spectra).

    rows: one row per (alpha, k) with q_best (max_j <w_k, v_j>^2 over the top m
    eigenvectors), q_rank (<w_k, v_k>^2), proj (||P_hat w_k||^2 on the k_hat selected
    outliers), eigenvalue (k-th largest), k_hat, edge_emp, mse, mse_plugin.
    spectra: {alpha: all eigenvalues} when ``keep_spectrum``; with ``keep_estimates`` also
    "W" (the true directions, d x m) and "V_hat" ({alpha: the k_hat selected eigenvectors}).
    """
    a = _check(model, d, alphas, chunk)
    stream = SampleStream(model, d, seed, dtype)
    m = model.m
    W = stream.W
    T = preprocessing_function(model.T)
    acc = _Accumulator(d, dtype)
    targets = np.round(a * d).astype(np.int64)
    taus = np.empty(targets[-1])
    w2 = model.weight_array**2
    rows, spectra = [], {}
    n = 0
    t0 = time.perf_counter()
    for alpha, target in zip(a, targets):
        for X, y in stream.batches(target - n, chunk, reuse=True):
            b = y.size
            t = T(y)
            if not np.all(np.isfinite(t)):
                raise ValueError("preprocessing: T(y) is not finite on a simulated label (division by zero?)")
            taus[n: n + b] = t
            acc.add(X, t, consume=True)  # X is the stream's reused buffer: nothing else reads it
            n += b
        D = acc.matrix(n)
        evals, evecs = np.linalg.eigh(D)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        # the bulk lives in the d - k dimensions orthogonal to the spikes: iterate
        # k_hat -> edge at ratio n/(d - k_hat) (data only; m is not used)
        k_hat = 0
        for _ in range(5):
            edge, cut = empirical_bulk_edge(taus[:n], n / (d - k_hat), d - k_hat)
            k_new = int(np.sum(evals > cut))
            if k_new == k_hat:
                break
            k_hat = k_new
        O = (W.T @ evecs[:, : max(m, k_hat)]) ** 2  # m x (top eigenvectors)
        q_best = O[:, :m].max(axis=1)
        q_rank = np.diag(O[:, :m])
        proj = O[:, :k_hat].sum(axis=1) if k_hat else np.zeros(m)
        mse, mse_plugin = mse_forms(w2, proj)
        for k in range(m):
            rows.append({"alpha": float(alpha), "n": int(n), "k": k + 1, "q_best": q_best[k], "q_rank": q_rank[k],
                         "proj": proj[k], "eigenvalue": evals[k], "k_hat": k_hat, "edge_emp": edge, "cut": cut,
                         "top_bulk": evals[k_hat] if k_hat < d else np.nan, "mse": mse, "mse_plugin": mse_plugin})
        if keep_spectrum:
            spectra[float(alpha)] = evals.copy()
        if keep_estimates:
            spectra["W"] = W
            spectra.setdefault("V_hat", {})[float(alpha)] = evecs[:, :k_hat].copy()
    df = pd.DataFrame(rows)
    df["seed"] = int(seed)
    df["d"] = int(d)
    df["wall_s"] = time.perf_counter() - t0
    return df, spectra


def simulate(model: HierarchicalModel, d: int, alphas, seeds, chunk: int = 4096, dtype=np.float64,
             progress=None) -> pd.DataFrame:
    """Run ``simulate_task`` for every seed; a tidy DataFrame (one row per alpha, seed, k)
    with provenance columns (model fields, d, seed, dtype, package version)."""
    if isinstance(seeds, (int, np.integer)):
        raise TypeError(f"seeds: expected a list of seed ids such as range({seeds}), got the int {seeds}")
    try:
        seeds = list(seeds)
    except TypeError:
        raise TypeError(f"seeds: expected a list of seed ids, got {type(seeds).__name__}") from None
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    frames = []
    for i, s in enumerate(seeds):
        frames.append(simulate_task(model, d, alphas, s, chunk=chunk, dtype=dtype)[0])
        if progress is not None:
            progress(i + 1, len(seeds))
    df = pd.concat(frames, ignore_index=True)
    add_provenance(df, model.describe(), np.dtype(dtype).name)
    return df


def bench_accumulation(quick: bool = False) -> list[dict]:
    """One [D] task (m = 20, d = 1000, alpha = 1638; quick: d = 500, alpha = 164) as a fraction
    of this machine's limit, all measured in this run: the limit is scipy's syrk over the same
    n x d rows in chunks of 4096 plus drawing the same n d Gaussians, the two irreducible parts
    of the task (docs/reliability.md §"Machine limit"). Once in float64 and once with the float32
    accumulation (``dtype``), whose limit is ssyrk plus the same float64 Gaussians: the float32 path
    draws float64 and casts, so that both precisions see the same samples; the cast counts as the
    task's, not the limit's. Also the accumulator alone against syrk on one chunk, and the task's
    peak memory."""
    import resource

    d, alpha = (500, 164) if quick else (1000, 1638)
    chunk = 4096
    n = int(round(alpha * d))
    rng = np.random.default_rng(0)
    buf = np.empty((chunk, d))

    def gaussians():
        done = 0
        while done < n:
            b = min(chunk, n - done)
            rng.standard_normal(out=buf[:b])
            done += b

    def syrk(dtype):
        rows = buf.astype(dtype)
        syrk_ = blas.dsyrk if dtype == np.float64 else blas.ssyrk
        S = np.zeros((d, d), dtype=dtype, order="F")
        done = 0
        while done < n:
            b = min(chunk, n - done)
            S = syrk_(1.0, rows[:b].T, beta=1.0, c=S, trans=0, lower=0, overwrite_c=1)
            done += b

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    rows = []
    t_gauss = timed(gaussians)
    for dtype in (np.float64, np.float32):
        t_syrk = timed(lambda: syrk(dtype))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t_task = timed(lambda: simulate_task(HierarchicalModel(m=20), d, [alpha], seed=0, chunk=chunk, dtype=dtype))
        rows.append({"name": f"one [D] task d={d}, alpha={alpha}, m=20 (n={n}), {np.dtype(dtype).name}",
                     "wall_s": t_task, "syrk_s": t_syrk, "gaussians_s": t_gauss,
                     "machine_limit_fraction": (t_syrk + t_gauss) / t_task,
                     "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                     "rss_before_MB": before / 1024})
    rows[1]["task_ratio_float32_over_float64"] = rows[1]["wall_s"] / rows[0]["wall_s"]
    S = np.zeros((d, d), order="F")
    t = np.tanh(rng.standard_normal(chunk))
    acc = _Accumulator(d, np.float64)
    reps = 3 if quick else 6
    t_ours = min(timed(lambda: [acc.add(buf, t) for _ in range(reps)]) for _ in range(3))
    t_raw = min(timed(lambda: [blas.dsyrk(1.0, buf.T, beta=1.0, c=S, trans=0, lower=0, overwrite_c=1)
                               for _ in range(reps)]) for _ in range(3))
    rows.append({"name": f"accumulator (two signs, copy) vs one syrk, d={d}, chunk={chunk}", "ours_s": t_ours,
                 "syrk_s": t_raw, "throughput_ratio": t_raw / t_ours})
    return rows
