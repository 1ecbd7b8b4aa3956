r"""Model C's layer-1 operator at scale: seeded sample blocks, block products, block eigensolvers
(docs/scaling.md §"Model C's layer 1 at scale"; the operator itself is docs/theory.md §3).

For the true model with q = 2, :math:`M_1 = \frac1{2n}\sum_\mu y_\mu(Z(x_\mu)Z(x_\mu)^\top - I_D)`
acts on :math:`a \in R^D` through the symmetric d x d matrix M of a
(``numerics.quadratic_chaos.vec_to_sym``):

.. math:: M_1 a \leftrightarrow \frac1{4n}\Big[\sum_\mu w_\mu x_\mu x_\mu^\top
          - \big(\textstyle\sum_\mu w_\mu\big) I - 2\big(\textstyle\sum_\mu y_\mu\big)M\Big],
          \qquad w_\mu = y_\mu(x_\mu^\top M x_\mu - \mathrm{tr}M),

and the Wick-ordered estimator subtracts :math:`\frac12(\hat C_2M + M\hat C_2)`,
:math:`\hat C_2 = \frac1n\sum_\mu y_\mu(x_\mu x_\mu^\top - I)`.

The only part that touches the samples is :math:`S(M) = \sum_\mu w_\mu x_\mu x_\mu^\top` and
:math:`\sum_\mu w_\mu`: a sum over sample blocks. :func:`partial_product` computes it for one
block and k matrices at once with two GEMMs, (m x d)(d x kd) and (d x m)(m x kd), so a
block of k vectors costs one pass over the samples. The blocks are

* held in memory (``storage="memory"``), or
* re-drawn from the sampler's saved generator state at the block's start
  (``storage="redraw"``): memory O(block x d), independent of n, for an extra
  n x d Gaussians per pass; the draws are bit-identical to the first pass, or
* drawn and kept by Dask workers (``storage="dask"``): each worker returns its partial
  sums, the client adds them.

All three give the same operator (to rounding in the order of the block sums).

Examples
--------
>>> import numpy as np
>>> from theory import CompositionalModel
>>> from validation.compositional import CompositionalSampler
>>> smp = CompositionalSampler(CompositionalModel(d=8, eps="1/2", gamma=1), 0, "true")
>>> blocks, y = SampleBlocks.draw(smp, 3000, block=1000, storage="redraw")
>>> mem, _ = SampleBlocks.draw(CompositionalSampler(smp.model, 0, "true"), 3000, block=1000, storage="memory")
>>> V = np.random.default_rng(0).standard_normal((36, 2))
>>> bool(np.allclose(Layer1Operator(blocks, y) @ V, Layer1Operator(mem, y) @ V, rtol=0, atol=1e-12))
True
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from numerics.quadratic_chaos import sym_to_vec, vec_to_sym
from theory.model import integer

__all__ = ["SampleBlocks", "Layer1Operator", "partial_product", "top_eigenpairs", "choose_storage", "block_krylov",
           "layer1_cost", "layerwise_cost", "unit_costs", "SOLVER_COUNTS", "MEMORY_BUDGET_BYTES", "krylov_block",
           "auto_method", "layer1_form", "sample_block"]

#: samples are held in memory when their n x d float64 array fits under this (else re-drawn)
MEMORY_BUDGET_BYTES = 4 * 2**30
#: the largest work array of one block product, m x k x d float64 (block rows are cut to fit)
WORK_BYTES = 64 * 2**20


def _redraw(state: dict, m: int, d: int) -> np.ndarray:
    g = np.random.Generator(np.random.PCG64())
    g.bit_generator.state = state
    return g.standard_normal((m, d))


def choose_storage(n: int, d: int, budget: float = MEMORY_BUDGET_BYTES) -> str:
    """``"memory"`` when the n x d float64 samples fit in ``budget`` bytes, else ``"redraw"``.

    >>> choose_storage(10**5, 100), choose_storage(10**7, 150)
    ('memory', 'redraw')
    """
    return "memory" if 8.0 * n * d <= budget else "redraw"


def krylov_block(k: int) -> int:
    """The block size of :func:`block_krylov` for k eigenpairs: max(2, ceil(k/2)) vectors per pass
    (blocks of k + k/2 applied twice the vectors at d = 60; docs/scaling.md).

    >>> [krylov_block(k) for k in (1, 4, 5, 10)]
    [2, 2, 3, 5]
    """
    return max(2, (k + 1) // 2)


def auto_method(storage: str) -> str:
    """The eigensolver that ``"auto"`` picks for samples stored as ``storage``: ARPACK when they
    are held (it applies the fewest vectors), block Krylov when each product is a pass over
    re-drawn samples or a round trip to Dask workers (measured, docs/scaling.md).

    >>> auto_method("memory"), auto_method("redraw"), auto_method("dask")
    ('arpack', 'block_krylov', 'block_krylov')
    """
    return "block_krylov" if storage in ("redraw", "dask") else "arpack"


def layer1_form(kind: str, q: int, D: int) -> str:
    """The layer-1 form that ``run_layerwise`` uses by default: the q = 2 true model's
    matrix-free operator once the dense D x D matrix passes D = 2000, else the dense matrix
    (always for the GE model, whose operator has no d x d form).

    >>> layer1_form("true", 2, 2145), layer1_form("true", 2, 1830), layer1_form("ge", 2, 5050)
    ('matrix_free', 'dense', 'dense')
    """
    return "matrix_free" if (kind == "true" and q == 2 and D > 2000) else "dense"


def sample_block(D: int, chunk: int = 4096) -> int:
    """Rows per sample block when each row carries D features: at most ``chunk`` and at most
    2**24 / D (a block of Z(x) stays within 128 MiB), at least 256.

    >>> sample_block(465), sample_block(5050), sample_block(80_000)
    (4096, 3322, 256)
    """
    return max(256, min(chunk, 2**24 // D))


class SampleBlocks:
    """The inputs (x of the true model, Z of the GE model) as row blocks: arrays, or generator states to re-draw from.

    Build it with :meth:`draw`, which runs the sampler once (that pass fixes the labels y) and
    records the generator state at each block's start. Iterating yields the x blocks in order.
    """

    def __init__(self, d: int, sizes, states=None, arrays=None):
        self.d, self.sizes = int(d), [int(s) for s in sizes]
        self.states, self.arrays = states, arrays
        self.storage = "memory" if arrays is not None else "redraw"
        self.n = int(sum(self.sizes))

    @classmethod
    def draw(cls, sampler, n: int, block: int = 4096, storage: str = "auto", extra=None):
        """Draw n samples from ``sampler`` (a ``CompositionalSampler``) in blocks of its inputs
        (x for the true model, Z for GE).

        Returns (blocks, y). ``extra(x, Z, y)``, when given, is called on every block of the
        first pass (for statistics that need Z, e.g. |Z|^2).
        """
        if storage not in ("auto", "memory", "redraw"):
            raise ValueError(f"storage: must be 'auto', 'memory' or 'redraw', got {storage!r}")
        n, block = integer(n, "n", 1), integer(block, "block", 1)
        d = sampler.model.d if sampler.kind == "true" else sampler.D  # the inputs: x, or Z for GE
        if storage == "auto":
            storage = choose_storage(n, d)
        states, arrays, sizes, ys = [], [], [], []
        for start in range(0, n, block):
            m = min(block, n - start)
            states.append(sampler.rng.bit_generator.state)
            x, Z, y = sampler.draw(m)
            if extra is not None:
                extra(x, Z, y)
            sizes.append(m)
            ys.append(y)
            if storage == "memory":
                arrays.append(x)
        y = np.concatenate(ys)
        if storage == "memory":
            return cls(d, sizes, arrays=arrays), y
        return cls(d, sizes, states=states), y

    def __iter__(self):
        if self.arrays is not None:
            yield from self.arrays
        else:
            for st, m in zip(self.states, self.sizes):
                yield _redraw(st, m, self.d)

    def shards(self, n_shards: int):
        """Split the blocks into ``n_shards`` contiguous groups: (block index range, row range)."""
        bounds = np.linspace(0, len(self.sizes), n_shards + 1).round().astype(int)
        offs = np.concatenate([[0], np.cumsum(self.sizes)])
        return [(range(a, b), (int(offs[a]), int(offs[b]))) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    @property
    def nbytes(self) -> int:
        """Bytes the samples occupy: n x d x 8 in memory, one block when re-drawn."""
        return 8 * self.d * (self.n if self.storage == "memory" else max(self.sizes))


def partial_product(X: np.ndarray, y: np.ndarray, Ms: np.ndarray):
    r"""One block's share of the operator: :math:`S_j = \sum_\mu w_{\mu j} x_\mu x_\mu^\top` and
    :math:`\sum_\mu w_{\mu j}`, :math:`w_{\mu j} = y_\mu(x_\mu^\top M_j x_\mu - \mathrm{tr}M_j)`, for
    the k matrices ``Ms`` (k x d x d). Rows are processed in pieces whose m x k x d work array
    stays under 64 MiB. Returns (S: k x d x d, wsum: k).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((50, 3)); y = rng.standard_normal(50)
    >>> M = np.eye(3)[None]
    >>> S, ws = partial_product(X, y, M)
    >>> w = y * ((X**2).sum(1) - 3)
    >>> bool(np.allclose(S[0], (X.T * w) @ X)), bool(np.isclose(ws[0], w.sum()))
    (True, True)
    """
    k, d = Ms.shape[0], Ms.shape[1]
    S, wsum = np.zeros((k, d, d)), np.zeros(k)
    tr = np.trace(Ms, axis1=1, axis2=2)
    Mcat = Ms.transpose(1, 0, 2).reshape(d, k * d)  # column block j = M_j
    rows = max(1, int(WORK_BYTES // (8 * k * d)))
    for s in range(0, X.shape[0], rows):
        Xs, ys = X[s: s + rows], y[s: s + rows]
        XM = (Xs @ Mcat).reshape(-1, k, d)  # (X M_j) rows
        W = ys[:, None] * (np.einsum("mkd,md->mk", XM, Xs) - tr)
        wsum += W.sum(axis=0)
        np.multiply(W[:, :, None], Xs[:, None, :], out=XM)  # reuse the work array: w_j(mu) x_mu
        S += (Xs.T @ XM.reshape(-1, k * d)).reshape(d, k, d).transpose(1, 0, 2)
    return S, wsum


class Layer1Operator(LinearOperator):
    """M1 of the true model (q = 2) as a ``scipy.sparse.linalg.LinearOperator`` on R^D.

    ``blocks`` is a :class:`SampleBlocks`; ``y`` the n labels; ``estimator`` "plain" or "wick";
    ``client`` a ``dask.distributed.Client`` to keep the blocks on its workers (``storage="dask"``).
    ``n_products`` counts the passes over the samples; ``n_vectors`` the vectors applied.
    """

    def __init__(self, blocks: SampleBlocks, y, estimator: str = "plain", client=None):
        if estimator not in ("plain", "wick"):
            raise ValueError(f"estimator: must be 'plain' or 'wick', got {estimator!r}")
        d, y = blocks.d, np.asarray(y, dtype=float)
        if y.shape != (blocks.n,):
            raise ValueError(f"y: expected {blocks.n} labels, one per sample, got shape {y.shape}")
        super().__init__(dtype=np.float64, shape=(d * (d + 1) // 2, d * (d + 1) // 2))
        self.blocks, self.y, self.d, self.n, self.estimator = blocks, y, d, blocks.n, estimator
        self.ysum = float(y.sum())
        self.n_products = self.n_vectors = 0
        self.client, self._shards = client, None
        if client is not None:
            self._scatter(client)
        self.C2 = None
        if estimator == "wick":  # C2 = (1/n) sum_mu y_mu (x_mu x_mu^T - I), one pass
            self.C2 = (sum(self._parts("_second_moment")) - self.ysum * np.eye(d)) / self.n

    # -- the sums over samples -------------------------------------------------------------
    def _scatter(self, client):
        workers = sorted(client.scheduler_info()["workers"])
        self._shards = []
        for w, (brange, (r0, r1)) in zip(workers, self.blocks.shards(len(workers))):
            spec = {"d": self.blocks.d, "sizes": [self.blocks.sizes[b] for b in brange],
                    "states": None if self.blocks.states is None else [self.blocks.states[b] for b in brange],
                    "arrays": None if self.blocks.arrays is None else [self.blocks.arrays[b] for b in brange]}
            self._shards.append((w, client.submit(_worker_shard, spec, self.y[r0:r1], workers=[w], pure=False)))

    def _parts(self, name, *args):
        """The per-block (or, on Dask, per-worker) results of ``_WORKER_FNS[name](X, y, *args)``."""
        if self._shards is not None:
            return self.client.gather([self.client.submit(_on_shard, fut, name, *args, workers=[w], pure=False)
                                       for w, fut in self._shards])
        parts, off = [], 0
        for X in self.blocks:
            parts.append(_WORKER_FNS[name](X, self.y[off: off + X.shape[0]], *args))
            off += X.shape[0]
        return parts

    def _matmat(self, V):
        V = np.asarray(V, dtype=float)
        Ms = vec_to_sym(V, self.d)
        parts = self._parts("partial_product", Ms)
        S, wsum = sum(p[0] for p in parts), sum(p[1] for p in parts)
        eye = np.eye(self.d)
        out = (S - wsum[:, None, None] * eye - 2 * self.ysum * Ms) / (4 * self.n)
        if self.C2 is not None:
            out -= (self.C2 @ Ms + Ms @ self.C2) / 2
        self.n_products += 1
        self.n_vectors += V.shape[1]
        return sym_to_vec(out)

    def _matvec(self, v):
        return self._matmat(np.asarray(v).reshape(-1, 1))[:, 0]

    def _adjoint(self):
        return self  # symmetric


def _second_moment(X, y):
    return (X.T * y) @ X


_WORKER_FNS = {"partial_product": partial_product, "_second_moment": _second_moment}


def _worker_shard(spec, y):
    """On a Dask worker: draw (or receive) this shard's blocks once and keep them with its labels."""
    X = np.vstack(spec["arrays"] if spec["arrays"] is not None else
                  [_redraw(st, m, spec["d"]) for st, m in zip(spec["states"], spec["sizes"])])
    return X, np.asarray(y, dtype=float)


def _on_shard(shard, name, *args):
    X, y = shard
    return _WORKER_FNS[name](X, y, *args)


def block_krylov(op: LinearOperator, k: int, init=None, tol: float = 1e-8, seed: int = 0, block: int | None = None,
                 max_dim: int | None = None):
    r"""Block Krylov (block Lanczos with full reorthogonalization) for the k eigenpairs of largest
    |eigenvalue| of a symmetric operator: one product with a block of b vectors per iteration.

    The basis :math:`Q = [V_0, V_1, \dots]` spans :math:`\mathcal K_j(M, V_0)`; each new block is
    the image of the last one, orthogonalized against the whole basis (classical Gram-Schmidt,
    twice) and QR-normalized. The images W = MQ are kept, so the Rayleigh-Ritz matrix
    :math:`T = Q^\top W` and the residuals :math:`\|Wy - \theta Qy\|` cost no product. It stops
    when every residual is below ``tol`` times :math:`|\theta_1|`; when the basis reaches
    ``max_dim`` it restarts from the current max(b, k) leading Ritz vectors (Golub & Van Loan,
    *Matrix Computations*, 4th ed., §10.3.6; Musco & Musco, NeurIPS 2015, for the randomized
    start). Returns (eigenvalues, D x k vectors, iterations).
    """
    D = op.shape[0]
    b = min(D, block or krylov_block(k))
    max_dim = min(D, max_dim or max(40 * b, 400))
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((D, b))
    if init is not None:
        init = np.asarray(init, dtype=float).reshape(D, -1)[:, :b]
        V[:, : init.shape[1]] = init
    Q = np.linalg.qr(V)[0]
    W = op @ Q
    it = 1
    while True:
        T = Q.T @ W
        theta, Y = np.linalg.eigh((T + T.T) / 2)
        top = np.argsort(-np.abs(theta))[: max(b, k)]
        theta, Y = theta[top], Y[:, top]
        R = np.linalg.norm(W @ Y[:, :k] - (Q @ Y[:, :k]) * theta[:k], axis=0)
        if R.max() <= tol * abs(theta[0]):
            return theta[:k], Q @ Y[:, :k], it
        if Q.shape[1] + b > max_dim:  # restart from the leading max(b, k) Ritz vectors
            Q, W = Q @ Y, W @ Y
            Q, Rq = np.linalg.qr(Q)
            W = np.linalg.solve(Rq.T, W.T).T
            continue
        Z = W[:, -b:]
        for _ in range(2):
            Z = Z - Q @ (Q.T @ Z)
        Z, Rz = np.linalg.qr(Z)
        keep = np.abs(np.diag(Rz)) > 1e-10 * max(1.0, np.abs(Rz).max())
        if not keep.any():  # invariant subspace: the Ritz pairs are exact
            return theta[:k], Q @ Y[:, :k], it
        Z = Z[:, keep]
        Q = np.hstack([Q, Z])
        W = np.hstack([W, op @ Z])
        it += 1


def top_eigenpairs(op: LinearOperator, k: int, method: str = "auto", init=None, tol: float = 1e-8,
                   seed: int = 0, maxiter: int = 300):
    r"""The k eigenpairs of largest |eigenvalue| of a symmetric operator, in decreasing |eigenvalue|.

    ``method``:

    * ``"arpack"``: ``scipy.sparse.linalg.eigsh``, which="LM" (implicitly restarted Lanczos),
      one vector per product;
    * ``"block_krylov"``: :func:`block_krylov`, a block of max(2, ceil(k/2)) vectors per product;
    * ``"lobpcg"``: ``scipy.sparse.linalg.lobpcg`` on :math:`M^2` (whose top eigenvectors are
      those of largest |eigenvalue| of M), then a Rayleigh-Ritz step on M for the signs.

    ``init`` (D x j) warm-starts: ARPACK from its first column, the block methods from all of
    them (padded with seeded random columns). ``"auto"`` is ARPACK when the samples are held
    in memory, where it applies the fewest vectors, and block Krylov when they are re-drawn or
    on Dask, where each product is a pass over the samples (or a round trip) and the block
    shares it (docs/scaling.md, measured). Returns (eigenvalues, D x k eigenvectors, info),
    ``info`` = method, products (passes over the samples), vectors applied, and the largest
    relative residual :math:`\|Mv - \lambda v\| / |\lambda_1|` (one more product).
    """
    from scipy.sparse.linalg import eigsh, lobpcg

    D = op.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < D:
        raise ValueError(f"k: the number of eigenpairs must be an integer in [1, {D - 1}], got {k!r}")
    if method not in ("auto", "arpack", "lobpcg", "block_krylov"):
        raise ValueError(f"method: must be 'auto', 'arpack', 'block_krylov' or 'lobpcg', got {method!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol: the relative residual tolerance must be in (0, 1), got {tol!r}")
    storage = getattr(getattr(op, "blocks", None), "storage", "memory")
    if method == "auto":
        method = auto_method("dask" if getattr(op, "client", None) is not None else storage)
    p0, v0 = getattr(op, "n_products", 0), getattr(op, "n_vectors", 0)
    if method == "arpack":
        v_init = None if init is None else np.asarray(init, dtype=float).reshape(D, -1)[:, 0]
        vals, vecs = eigsh(op, k=k, which="LM", tol=tol, v0=v_init)
    elif method == "block_krylov":
        vals, vecs, _ = block_krylov(op, k, init=init, tol=tol, seed=seed)
    else:
        b = min(D - 1, k + max(2, k // 2))
        X0 = np.random.default_rng(seed).standard_normal((D, b))
        if init is not None:
            init = np.asarray(init, dtype=float).reshape(D, -1)[:, :b]
            X0[:, : init.shape[1]] = init
        sq = LinearOperator(op.shape, matvec=lambda v: op @ (op @ v), matmat=lambda V: op @ (op @ V), dtype=float)
        _, U = lobpcg(sq, X0, tol=tol, maxiter=maxiter, largest=True)
        U = np.linalg.qr(U)[0]
        vals, W = np.linalg.eigh(U.T @ (op @ U))
        vecs = U @ W
    order = np.argsort(-np.abs(vals))[:k]
    vals, vecs = vals[order], vecs[:, order]
    info = {"method": method, "products": getattr(op, "n_products", 0) - p0,
            "vectors": getattr(op, "n_vectors", 0) - v0}
    resid = np.linalg.norm(op @ vecs - vecs * vals, axis=0)
    info["residual"] = float(resid.max() / max(abs(vals[0]), 1e-300))
    return vals, vecs, info


#: vectors applied and passes over the samples per wanted eigenpair, measured on Model C's layer 1
#: (d = 20-64, n = 30-100 D, tol 1e-8; docs/scaling.md): ARPACK one vector per pass, block
#: Krylov a block of max(2, ceil(k/2)) per pass
SOLVER_COUNTS = {"arpack": (12.0, 12.0), "block_krylov": (20.0, 5.5)}


_UNIT = {}


def unit_costs(d: int, q: int = 2, d1: int = 1, kind: str = "true") -> dict:
    """Seconds per sample of each stage at this (d, q, d1, kind), timed on one block here
    (cached per process): ``draw`` (Gaussians, features Z, labels), ``gemm_flops`` (flop/s of a
    2048 x 1000 Gram product), ``gauss`` (the Gaussians
    alone: a re-draw), ``vector`` (one vector of :func:`partial_product`), ``block`` (one vector
    within a block of max(2, ceil(k/2))), ``accumulate`` (the dense D x D accumulation), and the
    seconds of a 1000 x 1000 ``eigh``."""
    from math import comb

    from .bench import best_time
    from .readout import hermite_product_features

    key = (d, q, d1, kind)
    if key in _UNIT:
        return _UNIT[key]
    D = comb(d + q - 1, q)
    width = d if kind == "true" else D
    m = max(64, min(2048, 2**23 // D))
    rng = np.random.default_rng(0)
    A = np.linalg.qr(rng.standard_normal((D, d1)))[0]
    g = best_time(lambda: rng.standard_normal((m, width))) / m
    x = rng.standard_normal((m, width))

    def draw():
        Z = hermite_product_features(x, q, exact=True) if kind == "true" else x
        return ((Z @ A) ** 2 - 1).sum(1)

    out = {"gauss": g, "draw": g + best_time(draw) / m}
    G = rng.standard_normal((2048, 1000))
    out["gemm_flops"] = 2 * 2048 * 1000 * 1000 / best_time(lambda: G.T @ G)
    if kind == "true":
        b = krylov_block(d1)
        X = rng.standard_normal((max(m, 4096), d))
        yy = rng.standard_normal(X.shape[0])
        M = rng.standard_normal((b, d, d))
        out["vector"] = best_time(lambda: partial_product(X, yy, M[:1])) / X.shape[0]
        out["block"] = best_time(lambda: partial_product(X, yy, M)) / X.shape[0] / b
    if D <= 4000:
        from .simulate import _Accumulator

        Z = hermite_product_features(x, q, exact=True) if kind == "true" else x
        acc = _Accumulator(D, np.float64)
        out["accumulate"] = best_time(lambda: acc.add(Z, np.ones(m))) / m
    E = rng.standard_normal((500, 500))
    out["eigh_1000"] = 8 * best_time(lambda: np.linalg.eigh(E + E.T), 1)
    _UNIT[key] = out
    return out


def layer1_cost(d: int, n: int, k: int, storage: str = "auto", method: str = "auto", unit=None) -> dict:
    r"""Cost model of the matrix-free layer-1 eigensolve (k eigenpairs, n samples, dimension d):
    vectors applied and passes over the samples from :data:`SOLVER_COUNTS` (measured), each
    vector at the per-sample cost of :func:`partial_product` timed here (one vector for ARPACK,
    a block for block Krylov), each pass over re-drawn samples n d Gaussians. ``storage`` and
    ``method`` "auto" resolve as in :func:`top_eigenpairs`. Returns seconds and peak bytes.

    With unit costs given, by hand: ARPACK, 12 x 10 vectors x 1e6 samples x 1e-6 s = 120 s:

    >>> c = layer1_cost(100, 10**6, 10, unit={"vector": 1e-6, "block": 5e-7, "gauss": 1e-7})
    >>> c["storage"], c["method"], round(c["seconds"])
    ('memory', 'arpack', 120)
    """
    if storage == "auto":
        storage = choose_storage(n, d)
    if method == "auto":
        method = auto_method(storage)
    unit = unit or unit_costs(d, 2, k, "true")
    D = d * (d + 1) // 2
    per_vec, per_pass = SOLVER_COUNTS[method]
    vectors, passes = per_vec * k, per_pass * k
    b = krylov_block(k) if method == "block_krylov" else 1
    seconds = n * vectors * unit["vector" if b == 1 else "block"]
    if storage == "redraw":
        seconds += n * passes * unit["gauss"]
    work = min(WORK_BYTES, 8 * n * b * d) + 8 * d * d * b * 2
    basis = 8 * D * (min(D, max(40 * b, 400)) * 2 if method == "block_krylov" else 3 * k + 2)
    return {"storage": storage, "method": method, "vectors": vectors, "passes": passes, "seconds": seconds,
            "bytes": (8 * n * d if storage == "memory" else 0) + work + basis}


def layerwise_cost(d: int, D: int, d1: int, n: int, kind: str = "true", layer1: str = "auto",
                   storage: str = "auto", n_test: int = 20_000, pilot: bool = True, q: int = 2) -> dict:
    r"""Cost model of one ``run_layerwise`` call, with its choices (dense layer 1 for GE or
    D <= 2000, else matrix-free; inputs held when n x width floats fit in 4 GiB, else re-drawn).

    Stages, each at a per-sample cost timed here (:func:`unit_costs`): the standardizing pilot
    (200 000 draws, ``pilot``), the first pass (n draws, plus the D x D accumulation when
    dense), the eigensolve (a 1000 x 1000 ``eigh`` scaled by :math:`(D/1000)^3`, or
    :func:`layer1_cost`), layer 2 (n draws again) and the test set (``n_test`` draws). Returns
    seconds, peak bytes and the choices. Measured against wall times in docs/scaling.md.
    """
    width = d if kind == "true" else D
    if layer1 == "auto":
        layer1 = layer1_form(kind, q, D)
    if storage == "auto":
        storage = choose_storage(n, width)
    u = unit_costs(d, q, d1, kind)
    block = sample_block(D)
    draws = (200_000 if pilot else 0) + 2 * n + n_test
    seconds = draws * u["draw"]
    held = 8 * n * width if storage == "memory" else 0
    if layer1 == "dense":
        seconds += n * u.get("accumulate", 0.0) + u["eigh_1000"] * (D / 1000) ** 3
        peak, method = held + 3 * 8 * D * D, "eigh"
    else:
        c = layer1_cost(d, n, d1, storage, unit=u)
        seconds, peak, method = seconds + c["seconds"], c["bytes"], c["method"]
    peak += 8 * block * (D + width) * 2 + 8 * n * (d1 + 4)
    return {"layer1": layer1, "storage": storage, "method": method, "seconds": seconds, "bytes": peak}
