r"""Predictions of Model S at d = infinity: bulk, outliers, overlaps, thresholds, errors.

Examples
--------
>>> import numpy as np
>>> from theory import HierarchicalModel
>>> p = predict(HierarchicalModel(), alphas=[20.0, 50.0])
>>> np.round(p.q[0, :4], 3)          # docs/theory.md §2.2 check values: 0.91, 0.80, 0.53, below threshold
array([0.912, 0.795, 0.527, 0.   ])
>>> p.n_outliers.tolist()
[3, 5]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sympy as sp

from theory import HierarchicalModel
from theory.model import finite_array, require, sample_ratios
from theory.parsing import Y

from .label_law import LabelLaw, check_model, label_law
from .resolvent import ConvergenceError, SpectralFunctions
from .typical_bulk import _binned, axis_stieltjes

__all__ = ["Prediction", "predict", "bulk_edge", "outliers", "thresholds", "kappa_T", "spectral_functions",
           "bulk_density", "mse_forms"]

_SF_CACHE: dict = {}


def spectral_functions(law: LabelLaw) -> SpectralFunctions:
    """The tabulated resolvent functions of a label law (cached per law)."""
    require(law, LabelLaw, "law")
    sf = _SF_CACHE.get(id(law))
    if sf is None or sf.law is not law:
        # large m: the far tail's thresholds reach alpha ~ k^(2 gamma) ~ 1e13 and beyond, so the table
        # runs 8 units of u further up (same spacing) instead of leaving them to exact sums
        sf = SpectralFunctions(law) if law.tail is None else SpectralFunctions(law, n_table=1520, u_span=(-16.0, 22.0))
        _SF_CACHE[id(law)] = sf
    return sf


def _alphas(alphas):
    """The validated alpha grid (1-d, finite, > 0) of every d = infinity solver."""
    return sample_ratios(alphas)


@dataclass(frozen=True, eq=False)
class Prediction:
    """d = infinity predictions on an alpha grid.

    Arrays have shape (len(alphas),) or (len(alphas), m). ``eigenvalues`` holds the
    outlier limits and is NaN exactly where ``is_outlier`` is False (no outlier: the
    eigenvalue sticks to the bulk edge); ``q`` is 0 there.

    With coupled directions (``settings["solver"] == "matrix"``) the columns of
    ``eigenvalues``, ``is_outlier`` and ``thresholds`` are eigen-branches of the m x m
    matrix of docs/theory.md §2.2 (largest first), not directions, and ``q[:, k]`` is the subspace
    projection :math:`||P w_k||^2` on the outlier eigenvectors (docs/theory.md §5); with
    uncoupled directions both readings coincide.
    """

    model: HierarchicalModel
    alphas: np.ndarray
    bulk_edge: np.ndarray
    lambda_bar: np.ndarray
    eigenvalues: np.ndarray
    is_outlier: np.ndarray
    q: np.ndarray
    thresholds: np.ndarray
    mse: np.ndarray  # optimal shrinkage: sum a_k^2 (1 - q_k^2)
    mse_plugin: np.ndarray  # 2 sum a_k^2 (1 - q_k)
    settings: dict = field(default_factory=dict)
    # matrix solver only (coupled directions): per outlier branch i, the total overlap
    # ||W^T v_i||^2 and the unit vector u_i with W^T v_i -> sqrt(q_i) u_i; NaN where no outlier
    branch_q: np.ndarray | None = None
    branch_vectors: np.ndarray | None = None

    @property
    def n_outliers(self) -> np.ndarray:
        return self.is_outlier.sum(axis=1)

    @property
    def branch_shares(self) -> np.ndarray | None:
        """Matrix solver: the share :math:`q_{ik} = q_i u_{ik}^2` of direction k in outlier branch i's eigenvector,
        shape (len(alphas), branch, m), NaN where the branch has no outlier (docs/theory.md §4.3); None otherwise."""
        if self.branch_q is None:
            return None
        return self.branch_q[..., None] * self.branch_vectors**2

    def _repr_html_(self) -> str:
        """Notebook view: one row per alpha with the MSE, the outliers and q_k."""
        wide = pd.DataFrame({"alpha": self.alphas, "mse": self.mse, "n_outliers": self.n_outliers})
        for k in range(self.q.shape[1]):
            wide[f"q_{k + 1}"] = self.q[:, k]
        return (f"<b>d = infinity prediction</b> ({self.settings.get('solver', '')} solver), thresholds "
                + ", ".join(f"{t:.4g}" for t in self.thresholds) + wide.to_html(index=False, float_format="%.4g"))

    def local_slope(self) -> np.ndarray:
        """d log MSE / d log alpha on the (sorted) grid, by centred differences (one-sided at the ends)."""
        order = np.argsort(self.alphas)
        return np.gradient(np.log(self.mse[order]), np.log(self.alphas[order]))

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (alpha, k) with columns alpha, k, q, eigenvalue,
        is_outlier, alpha_k, bulk_edge, mse, mse_plugin, n_outliers."""
        A, m = self.q.shape
        return pd.DataFrame({
            "alpha": np.repeat(self.alphas, m),
            "k": np.tile(np.arange(1, m + 1), A),
            "q": self.q.ravel(),
            "eigenvalue": self.eigenvalues.ravel(),
            "is_outlier": self.is_outlier.ravel(),
            "alpha_k": np.tile(self.thresholds, A),
            "bulk_edge": np.repeat(self.bulk_edge, m),
            "mse": np.repeat(self.mse, m),
            "mse_plugin": np.repeat(self.mse_plugin, m),
            "n_outliers": np.repeat(self.n_outliers, m),
        })


_MF_CACHE: dict = {}


def matrix_functions(sf: SpectralFunctions):
    """The tabulated m x m functions M, H of docs/theory.md §2.2 (cached per law)."""
    from .multi_index import MatrixFunctions

    mf = _MF_CACHE.get(id(sf))
    if mf is None or mf.sf is not sf:
        mf = MatrixFunctions(sf)
        _MF_CACHE[id(sf)] = mf
    return mf


COUPLING_TOL = 1e-10


def _solver(sf, solver):
    """'diagonal' or 'matrix': the per-direction split holds when M(lambda) is diagonal.

    Pairs of non-even links are the only ones that can couple (``coupled_pairs``); for
    them the off-diagonal entries are computed and compared with the diagonal ones on the
    whole lambda table, so the shortcut is used only where it was checked.
    """
    if solver not in ("auto", "diagonal", "matrix"):
        raise ValueError(f"solver: must be 'auto', 'diagonal' or 'matrix', got {solver!r}")
    if solver == "matrix":
        return "matrix"
    coupled = bool(sf.law.pairs) and matrix_functions(sf).coupling > COUPLING_TOL
    if solver == "diagonal" and coupled:
        raise ValueError(f"solver: the directions couple (off-diagonal/diagonal = {matrix_functions(sf).coupling:.2e}), "
                         "so the per-direction split of docs/theory.md §2.2 does not hold; use solver='matrix' or 'auto'")
    return "matrix" if coupled else "diagonal"


MAX_DIRECTIONS = 100_000  #: directions represented at once (F_k, H_k tables: about 20 kB each)


def predict(model: HierarchicalModel, alphas, law: LabelLaw | None = None, solver: str = "auto",
            directions: int | None = None, **law_options) -> Prediction:
    """Bulk edge, outlier eigenvalues, overlaps q_k, thresholds and MSE on an alpha grid.

    Parameters
    ----------
    model : theory.HierarchicalModel (m may be ``"inf"``)
    alphas : sequence of float > 0
    law : LabelLaw, optional
        A prebuilt label law (else ``label_law(model, **law_options)``, cached).
    solver : "auto" | "diagonal" | "matrix"
        "auto" detects coupled directions (see ``_solver``) and uses the m x m form then.
    directions : int, optional (m = infinity only)
        Report at least the directions 1..directions. By default every direction that is an
        outlier somewhere on the grid is reported (and all K exact ones); the MSE always counts
        every direction, the unreported ones (all below threshold on the grid) at q_k = 0.

    Large m (docs/numerics.md §"Large m"): past K exact directions the label's tail is closed and
    the tail directions come from per-link tables, so the cost hardly grows with m;
    ``settings`` reports K (``exact_directions``) and the closure bound (``closure_error``).
    """
    check_model(model, allow_infinite_m=True)
    a = _alphas(alphas)
    inf = model.m == sp.oo
    if directions is not None:
        if not inf:
            raise ValueError(f"directions: only for m = infinity (a finite m reports all {model.m} directions)")
        if isinstance(directions, bool) or not isinstance(directions, (int, np.integer)) or not 1 <= directions <= MAX_DIRECTIONS:
            raise ValueError(f"directions: an integer in [1, {MAX_DIRECTIONS}], got {directions!r}")
    t0 = time.perf_counter()
    law = law if law is not None else label_law(model, **law_options)
    sf = spectral_functions(law)
    t1 = time.perf_counter()
    ubar = sf.lambda_bar_u(a)
    lbar, edge = _edge(sf, a, ubar)
    if law.settings.get("support") == "effective":
        _check_effective_support(sf, a, ubar)
    kind = _solver(sf, solver)
    if kind == "matrix":
        if law.tail is not None:
            raise ValueError("solver: coupled directions (non-even links) need every direction exact; the large-m "
                             "tail is for even links (pass exact_directions=m, or closure_tol, to keep them all)")
        return _predict_matrix(model, a, law, sf, ubar, lbar, edge, t0, t1)
    if inf:
        thr = _reported_thresholds(sf, float(a.max()), directions or 1)
    else:
        _check_memory(model.m, a.size, sf.u.size)
        sf.extend(model.m)
        thr = sf.thresholds()[: model.m]
    m = thr.size
    q = np.zeros((a.size, m))
    eig = np.full((a.size, m), np.nan)
    for k in sf.outlier_candidates(ubar, a):
        if k >= m:
            continue
        us = sf.outlier_u(a, ubar, k)
        ok = np.isfinite(us)
        if not np.any(ok):
            continue
        u = us[ok]
        lam = sf.to_lam(u)
        G1, G2, _, H = sf.at(u, k)
        dpsi = 1 / a[ok] - G2
        q[ok, k] = np.clip(dpsi / (dpsi + H), 0.0, 1.0)
        eig[ok, k] = lam * (1 / a[ok] + G1)
    mse, mse_plugin = _mse(model, q)
    settings = dict(law.settings, grid_error=law.grid_error, n_atoms=int(law.tau.size),
                    n_table=int(sf.u.size), setup_s=t1 - t0, solve_s=time.perf_counter() - t1, solver="diagonal",
                    directions_reported=m)
    return Prediction(model=model, alphas=a, bulk_edge=edge, lambda_bar=lbar, eigenvalues=eig,
                      is_outlier=np.isfinite(eig), q=q, thresholds=thr, mse=mse, mse_plugin=mse_plugin,
                      settings=settings)


def _check_memory(n_dirs, n_alphas, n_table):
    """Refuse up front what the per-direction tables and outputs cannot hold: about
    (2 n_table + 3 n_alphas) 8-byte numbers per direction."""
    from .label_law import _memory_budget

    need = 8.0 * n_dirs * (2 * n_table + 3 * n_alphas)
    if need > _memory_budget():
        raise ValueError(f"m: {n_dirs} directions x {n_alphas} alphas need an estimated {need / 2**30:.1f} GiB of "
                         f"per-direction tables and outputs (8 (2 x {n_table} + 3 x {n_alphas}) bytes each), above half "
                         "the machine's memory; use m='inf' (it reports only the directions learned on the grid) "
                         "or fewer alphas")


def _reported_thresholds(sf, alpha_max, at_least):
    """m = infinity: thresholds of directions 1..n, where n >= at_least covers every direction with
    alpha_k <= alpha_max (tail thresholds grow like k^(2 gamma): extrapolate, then check)."""
    gamma = float(sf.tail.model.gamma)
    n = max(sf.m, at_least)
    while True:
        if n > MAX_DIRECTIONS:
            raise ValueError(f"alphas: directions up to k > {MAX_DIRECTIONS} are learned below alpha = {alpha_max:g} "
                             f"(thresholds grow like k^(2 gamma) = k^{2 * gamma:g}); use a smaller largest alpha")
        _check_memory(n, 1, sf.u.size)
        sf.extend(n)
        thr = sf.thresholds()
        if thr[-1] > alpha_max and n >= at_least:
            last = int(np.nonzero(thr <= alpha_max)[0].max()) + 1 if np.any(thr <= alpha_max) else 0
            n_rep = max(last, at_least, sf.tail.K)
            return thr[:n_rep]
        grow = (alpha_max / thr[-1]) ** (1 / (2 * gamma)) if np.isfinite(thr[-1]) and thr[-1] > 0 else 2.0
        n = int(min(MAX_DIRECTIONS + 1, max(n + 1, np.ceil(1.2 * n * grow) + 2)))


def _check_effective_support(sf, a, ubar, tail_mass=1e-12, tol=1e-8):
    r"""With T unbounded above (``support="effective"``), the law is truncated where its mass
    is below float64 resolution. The result stands only if the far tail of T(Y) cannot
    reach the bulk edge: the atoms in the top ``tail_mass`` of the law must carry less than
    ``tol`` of :math:`G_2(\bar\lambda)`, and :math:`\bar\lambda` must be an interior minimum."""
    tau, p = sf._tau, sf._p
    order = np.argsort(tau)[::-1]
    cum = np.cumsum(p[order])
    tail = order[: max(1, int(np.searchsorted(cum, tail_mass)))]
    lam = sf.to_lam(ubar)
    share = (p[tail] @ (tau[tail, None] ** 2 / (lam[None, :] - tau[tail, None]) ** 2)) / sf.G2(ubar)
    bad = (ubar <= sf.u[0]) | ~(np.abs(share) < tol)
    if np.any(bad):
        raise ConvergenceError(
            f"bulk edge at alpha = {a[bad].min():g}: T is unbounded above and the edge is set by the far tail of "
            "T(Y) (the d = infinity limit does not exist there); use a larger alpha or a clipped T")


def mse_forms(weights2, q):
    r"""The two error forms of docs/theory.md §2.4 for overlaps q (..., m) and squared weights a_k^2:
    optimal shrinkage :math:`\sum_k a_k^2(1 - q_k^2)` and plug-in :math:`2\sum_k a_k^2(1 - q_k)`.

    >>> mse_forms(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    (0.5, 1.0)
    """
    w2 = finite_array(weights2, "weights2")
    q = finite_array(q, "q")
    opt, plug = (w2 * (1 - q**2)).sum(axis=-1), 2 * (w2 * (1 - q)).sum(axis=-1)
    return (float(opt), float(plug)) if np.ndim(opt) == 0 else (opt, plug)


def _mse(model, q):
    """The two error forms over every direction: the columns of q, and at m = infinity the unreported
    tail (q_k = 0) through its exact power sum."""
    if model.m != sp.oo:
        return mse_forms(model.weight_array**2, q)
    from .tail_closure import power_sum, weights_of

    n = q.shape[-1]
    opt, plug = mse_forms(weights_of(model, np.arange(1, n + 1)) ** 2, q)
    rest = power_sum(model, 2, n)
    return opt + rest, plug + 2 * rest


def _predict_matrix(model, a, law, sf, ubar, lbar, edge, t0, t1):
    mf = matrix_functions(sf)
    m = model.m
    eig = np.full((a.size, m), np.nan)
    bq = np.full((a.size, m), np.nan)
    bv = np.full((a.size, m, m), np.nan)
    proj = np.zeros((a.size, m))
    for ia, found in enumerate(mf.solve(a, ubar)):
        for i, (u, qi, vec) in enumerate(found):
            lam = float(sf.to_lam(u))
            eig[ia, i] = lam * (1 / a[ia] + float(sf.G1(u)))
            bq[ia, i], bv[ia, i] = qi, vec
            proj[ia] += qi * vec**2
    proj = np.clip(proj, 0.0, 1.0)
    mse, mse_plugin = _mse(model, proj)
    settings = dict(law.settings, grid_error=law.grid_error, n_atoms=int(law.tau.size), n_table=int(sf.u.size),
                    setup_s=t1 - t0, solve_s=time.perf_counter() - t1, solver="matrix", coupling=mf.coupling)
    return Prediction(model=model, alphas=a, bulk_edge=edge, lambda_bar=lbar, eigenvalues=eig,
                      is_outlier=np.isfinite(eig), q=proj, thresholds=mf.thresholds(), mse=mse,
                      mse_plugin=mse_plugin, settings=settings, branch_q=bq, branch_vectors=bv)


def _edge(sf, a, ubar):
    """(lambda_bar, bulk edge); in the boundary regime lambda_bar = sup T exactly."""
    lbar = sf.to_lam(ubar)
    edge = lbar * (1 / a + sf.at(ubar, 0)[0])
    if sf.open_top:
        at_sup = ubar <= sf.u[0]
        lbar = np.where(at_sup, sf.tmax, lbar)
        edge = np.where(at_sup, sf.tmax * (1 / a + sf.G1_0), edge)
    return lbar, edge


def thresholds(model: HierarchicalModel, directions: int | None = None, **law_options) -> np.ndarray:
    r"""k-critical thresholds :math:`\alpha_1..\alpha_m` (inf where a spike never leaves the bulk).

    At m = infinity pass ``directions`` = n for :math:`\alpha_1..\alpha_n`.

    >>> from theory import HierarchicalModel
    >>> round(float(thresholds(HierarchicalModel(m=1, link="z**2", preprocessing="1 - 1/y"))[0]), 10)
    0.5
    """
    check_model(model, allow_infinite_m=True)
    if model.m == sp.oo:
        if isinstance(directions, bool) or not isinstance(directions, (int, np.integer)) or not 1 <= directions <= MAX_DIRECTIONS:
            raise ValueError(f"directions: m = infinity has infinitely many thresholds; pass directions = n in "
                             f"[1, {MAX_DIRECTIONS}], got {directions!r}")
        n = int(directions)
    elif directions is not None:
        raise ValueError(f"directions: only for m = infinity (a finite m gives all {model.m})")
    else:
        n = model.m
    sf = spectral_functions(label_law(model, **law_options))
    if _solver(sf, "auto") == "matrix":
        return matrix_functions(sf).thresholds()
    _check_memory(n, 1, sf.u.size)
    sf.extend(n)
    return sf.thresholds(np.arange(n))


def bulk_edge(model: HierarchicalModel, alpha, **law_options):
    r"""Right edge :math:`b = \psi_\alpha(\bar\lambda)` of the bulk (array over alpha).

    With T = 1 the bulk is Marchenko-Pastur and :math:`b = (1 + 1/\sqrt\alpha)^2`:

    >>> from theory import HierarchicalModel
    >>> round(float(bulk_edge(HierarchicalModel(m=1, preprocessing="1"), 4.0)[0]), 10)
    2.25
    """
    check_model(model, allow_infinite_m=True)
    a = _alphas(alpha)
    sf = spectral_functions(label_law(model, **law_options))
    return _edge(sf, a, sf.lambda_bar_u(a))[1]


def outliers(model: HierarchicalModel, alpha: float, **law_options) -> list:
    """Per direction k: {"k", "eigenvalue" (None if no outlier), "q"} at one alpha."""
    p = predict(model, [alpha], **law_options)
    return [{"k": k + 1, "eigenvalue": (float(p.eigenvalues[0, k]) if p.is_outlier[0, k] else None),
             "q": float(p.q[0, k])} for k in range(model.m)]


def kappa_T(model: HierarchicalModel, **law_options) -> float:
    r""":math:`\kappa_T = E[T(Y)^2]/E[T'(Y)]^2` over the full label law (docs/theory.md §2.3)."""
    check_model(model, allow_infinite_m=True)
    law = label_law(model, **law_options)
    from .label_law import preprocessing_function

    dT = preprocessing_function(sp.diff(model.T, Y))(law.y)
    T = preprocessing_function(model.T)(law.y)
    num, den = float(law.p @ T**2), float(law.p @ dT)
    if den == 0:
        raise ValueError("preprocessing: E[T'(Y)] = 0, so the weak-signal constant kappa_T is infinite")
    return num / den**2


def bulk_density(model: HierarchicalModel, alpha: float, x, eta: float = 1e-9, **law_options) -> np.ndarray:
    r"""Bulk density :math:`\mathrm{Im}\, s(x+i0)/\pi` from the Stieltjes fixed point
    :math:`s = (-x + E[\tau/(1+\tau s/\alpha)])^{-1}` (physical branch, Im s > 0).

    The law of tau is binned on 4096 points for speed. Each x starts from the fixed point at
    Im z = 1 and follows the branch by Newton steps as Im z decreases to ``eta``.

    >>> from theory import HierarchicalModel
    >>> x = np.linspace(0.0, 3.0, 7)
    >>> mp = bulk_density(HierarchicalModel(m=1, preprocessing="1"), 4.0, x)
    >>> lo, hi = 0.25, 2.25   # MP with ratio 1/4: (1 -+ 1/2)^2, density sqrt((hi-x)(x-lo))/(2 pi x/4)
    >>> ref = np.where((x > lo) & (x < hi), np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * np.maximum(x, 1e-300) / 4), 0)
    >>> bool(np.allclose(mp, ref, atol=1e-6))
    True
    """
    check_model(model)
    a = float(_alphas(alpha)[0])
    law = label_law(model, **law_options)
    tau, p, _ = _binned(law.tau, law.p)
    s = axis_stieltjes(tau, p, a, np.atleast_1d(np.asarray(x, dtype=float)), eta)
    return np.maximum(s.imag, 0.0) / np.pi