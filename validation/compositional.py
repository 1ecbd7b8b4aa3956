r"""Model C at finite size: samplers, the layer-wise spectral algorithm, metrics (docs/theory.md §3).

Samplers (one stream per (model, seed, kind) from ``numpy.random.SeedSequence``):

* ``"ge"`` (Gaussian-equivalent): :math:`Z \sim N(0, I_D)` directly, in an abstract D;
* ``"true"``: :math:`Z(x)`, the orthonormal degree-q Hermite products of
  :math:`x \sim N(0, I_d)` (:math:`x_ix_j`, :math:`He_2(x_i)/\sqrt2` for q = 2).

Latent directions :math:`A_i` are Haar-orthonormal in :math:`R^D`, signs random,
:math:`b_i = \pm i^{-\gamma}`, :math:`s = \sum_i b_i He_2(h_i)`, :math:`y = g_*(s)`
standardized (exactly for the GE model with :math:`g_* = id`; otherwise with the mean and
standard deviation of :math:`g_*(s)` over a 200 000-sample pilot from its own stream: in the
true model :math:`h_i` is a quadratic form of x, so :math:`\mathrm{Var}\,He_2(h_i) \ne 2`).

Layer 1: :math:`M_1 = \frac1{2n}\sum_\mu y_\mu(Z_\mu Z_\mu^\top - I_D)`, accumulated in
chunks (``dense``), or, for the true model with q = 2, applied matrix-free in the d x d
form (``matrix_free``, :mod:`validation.layer1_operator`) and diagonalised on a
``LinearOperator`` (ARPACK or block Krylov): never a D x D matrix. The top d1 eigenvectors by |eigenvalue| give
:math:`\hat A`, :math:`\hat h = \hat A^\top Z(x)`.

Layer 2 (same samples, as in [S]): :math:`\hat B = \frac1{2n}\sum y(\hat h\hat h^\top - I)`,
:math:`\hat s = \hat h^\top\hat B\hat h - \mathrm{tr}\hat B`, then a 1-d least-squares
readout of y on :math:`(1, \hat s)` (:math:`g_* = id`) or on :math:`1, \hat s, \hat s^2, \hat s^3`.

The matrix-free layer 1 for q = 2 (its d x d form, the sample storage and the eigensolvers)
is :mod:`validation.layer1_operator`.

Examples
--------
>>> from theory import CompositionalModel
>>> r = run_layerwise(CompositionalModel(d=10, eps=0.5, gamma=1), n=4000, seed=0, kind="ge")
>>> r["d1"], r["layer1"], 0 <= r["subspace_overlap"] <= 1
(3, 'dense', True)
"""
from __future__ import annotations

import time

import numpy as np

from numerics.label_law import link_function
from numerics.quadratic_chaos import second_chaos, second_chaos_share, sym_to_vec, vec_to_sym
from theory import CompositionalModel
from theory.compositional import label_scale

from .experiment import model_hash
from .layer1_operator import Layer1Operator, SampleBlocks, layer1_form, sample_block, top_eigenpairs
from .readout import hermite_product_features
from .simulate import _Accumulator, two_sided_outliers

__all__ = ["CompositionalSampler", "run_layerwise", "matrix_free_layer1", "layer1_matvec", "sym_to_vec", "vec_to_sym"]


class CompositionalSampler:
    """Draws (Z or x, y) chunks of Model C; holds the latent directions and signs of one seed."""

    def __init__(self, model: CompositionalModel, seed: int, kind: str = "ge", D: int | None = None):
        if not isinstance(model, CompositionalModel):
            raise TypeError(f"model: expected a theory.CompositionalModel, got {type(model).__name__}")
        if kind not in ("ge", "true"):
            raise ValueError(f"kind: must be 'ge' or 'true', got {kind!r}")
        if kind == "true" and D is not None and D != model.D:
            raise ValueError(f"D: the true model has D = C(d+q-1, q) = {model.D}; an abstract D needs kind='ge'")
        self.model, self.kind, self.seed = model, kind, int(seed)
        self.D = model.D if D is None else int(D)
        self.d1 = model.d1
        if self.d1 > self.D:
            raise ValueError(f"d1 = {self.d1} latent features exceed D = {self.D}; lower eps or raise d")
        self.rng = self.stream(model, seed, kind, self.D)
        self.A, self.signs = self.latents(self.rng, self.D, self.d1)
        self.b = self.signs * np.arange(1, self.d1 + 1, dtype=float) ** (-float(model.gamma))
        self.g = link_function(model.g)
        if model.is_identity_link and kind == "ge":
            self.mean, self.std = 0.0, float(label_scale(model))
        else:
            # the true model's h_i are quadratic forms of x, not Gaussian, so Var He2(h_i) != 2 and the
            # law of s depends on A; with another g_star the moments are not closed-form either.
            # Standardize once from a pilot sample drawn from its own stream; with mean 0 and sd 1,
            # labels() gives the raw g_star(sum_i b_i He2(h_i)) (the same floats: x - 0.0 and x / 1.0)
            self.mean, self.std = 0.0, 1.0
            pilot = np.random.default_rng(np.random.SeedSequence([int(seed), self.D, 7]))
            gs, rows = [], sample_block(self.D, 20_000)  # Z of a piece stays ~128 MiB; same stream
            for start in range(0, 200_000, rows):
                z = pilot.standard_normal((min(rows, 200_000 - start), self.D if kind == "ge" else model.d))
                Z = z if kind == "ge" else self.features(z)
                gs.append(self.labels(Z))
            gs = np.concatenate(gs)
            self.mean, self.std = float(gs.mean()), float(gs.std())

    @staticmethod
    def stream(model: CompositionalModel, seed: int, kind: str, D: int) -> np.random.Generator:
        """The sample stream of (model, seed, kind, D): latent directions first, then the draws."""
        return np.random.default_rng(np.random.SeedSequence([int(seed), int(D), model_hash(model),
                                                             0 if kind == "ge" else 1]))

    @staticmethod
    def latents(rng: np.random.Generator, D: int, d1: int):
        """(A, signs): Haar-orthonormal latent directions (D x d1) and the signs of b, the first draws
        of a stream; ``latents(stream(model, seed, kind, D), D, d1)`` gives a seed's latents without
        the sampler's pilot."""
        A = np.linalg.qr(rng.standard_normal((D, d1)))[0]
        return A, rng.choice([-1.0, 1.0], size=d1)

    def features(self, X):
        """Z(x): the orthonormal degree-q Hermite products of the rows of X."""
        return hermite_product_features(X, self.model.q, exact=True)

    def degree2_share(self, n_samples: int = 400_000, route: str = "auto", stream: int = 11,
                      block: int = 20_000) -> float:
        r"""The share of the (standardised) target's variance in the degree-2 chaos of x,
        :math:`f_2 = \tfrac12\|E[y(xx^\top - I)]\|_F^2` (true model, q = 2). The test NMSE of a kernel or
        random-feature method on x tends to 1 - f_2 for d^2 << n << d^4 samples and rank >> D
        (docs/figures/separation.md, "The kernels' floor", with the finite-d measurements).

        g_star = identity: the closed form :math:`C_2 = 8\sum_i c_iS_i^2`, c_i = b_i / sd
        (``numerics.quadratic_chaos.second_chaos_share``). Any other link: Monte Carlo on
        ``n_samples`` fresh draws (stream (seed, D, ``stream``)), split in two halves whose estimates of
        :math:`C_2` are independent, so that :math:`\tfrac12\langle\hat C_2^{(1)}, \hat C_2^{(2)}\rangle`
        is unbiased. ``route="monte-carlo"`` takes that route for the identity as well (a check of the
        closed form).

        >>> from theory import CompositionalModel
        >>> smp = CompositionalSampler(CompositionalModel(d=12, eps="1/2", gamma=1), 0, "true")
        >>> 0 < smp.degree2_share() < 1
        True
        """
        from theory.model import integer

        if self.kind != "true" or self.model.q != 2:
            raise ValueError(f"kind: the degree-2 share is that of the true model with q = 2, got kind = "
                             f"{self.kind!r}, q = {self.model.q}")
        if route not in ("auto", "monte-carlo"):
            raise ValueError(f"route: must be 'auto' or 'monte-carlo', got {route!r}")
        d = self.model.d
        if self.model.is_identity_link and route == "auto":
            return second_chaos_share(self.A, self.b / self.std, d)
        n = integer(n_samples, "n_samples", 2)
        block = integer(block, "block", 1)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.D, integer(stream, "stream", 0)]))
        C = np.zeros((2, d, d))
        for half in range(2):
            for start in range(0, n // 2, block):
                x = rng.standard_normal((min(block, n // 2 - start), d))
                y = self.labels(self.features(x))
                C[half] += (x * y[:, None]).T @ x - y.sum() * np.eye(d)
        C /= n // 2
        return 0.5 * float(np.sum(C[0] * C[1]))

    def draw(self, n):
        """(inputs, Z, y): inputs are x (true) or Z (ge)."""
        if self.kind == "ge":
            Z = self.rng.standard_normal((n, self.D))
            inputs = Z
        else:
            inputs = self.rng.standard_normal((n, self.model.d))
            Z = self.features(inputs)
        return inputs, Z, self.labels(Z)

    def labels(self, Z):
        """The standardised labels y = (g*(sum_i b_i He2(<A_i, Z>)) - mean) / sd of the rows of Z."""
        return (self.g(((Z @ self.A) ** 2 - 1) @ self.b) - self.mean) / self.std


def layer1_matvec(X: np.ndarray, y: np.ndarray, estimator: str = "plain"):
    r"""The map :math:`a \mapsto M_1 a` of the true model (q = 2) in the d x d form, O(n d^2), on
    samples held in memory: :class:`validation.layer1_operator.Layer1Operator`'s product.

    ``estimator="wick"`` subtracts :math:`\frac12(\hat C_2M + M\hat C_2)`,
    :math:`\hat C_2 = \frac1n\sum_\mu y_\mu(x_\mu x_\mu^\top - I)`: the per-sample degree-4 Wick
    product (``numerics.quadratic_chaos``).
    """

    return Layer1Operator(SampleBlocks(X.shape[1], [X.shape[0]], arrays=[X]), y, estimator).matvec


def matrix_free_layer1(X: np.ndarray, y: np.ndarray, k: int, tol: float = 1e-8, estimator: str = "plain"):
    """Top-k eigenpairs by |eigenvalue| of M1 for the true model with q = 2, matrix-free.

    ARPACK (``scipy.sparse.linalg.eigsh``, which="LM") on the samples held in memory
    (``validation.layer1_operator``), each product O(n d^2); converged to ``tol`` relative
    (ARPACK's own criterion). Returns (eigenvalues, D x k eigenvectors).
    """

    op = Layer1Operator(SampleBlocks(X.shape[1], [X.shape[0]], arrays=[X]), y, estimator)
    vals, vecs, _ = top_eigenpairs(op, k, "arpack", tol=tol)
    return vals, vecs


def run_layerwise(model: CompositionalModel, n: int, seed: int, kind: str = "ge", D: int | None = None,
                  layer1: str = "auto", n_test: int = 20_000, chunk: int = 4096, fresh_split: bool = False,
                  keep: str = "top", layer2: str = "auto", estimator: str = "plain", storage: str = "auto",
                  eig: str = "auto", init=None, client=None) -> dict:
    r"""Draw n samples, run the layer-wise algorithm, return the metrics.

    Metrics: ``nmse`` (test-set mean squared error / Var y, Var y = 1), ``subspace_overlap``
    = ||A^T A_hat||_F^2 / d1, ``feature_proj`` (||P_sel A_i||^2 on the selected outliers,
    docs/theory.md §5), ``feature_proj_top`` (||P A_i||^2 on all d1 kept eigenvectors),
    ``feature_cos2`` (best-match <A_i, A_hat_j>^2), ``principal_cos2`` (the squared singular
    values of A^T A_hat, decreasing), ``recovered`` (# principal cos^2 > 1/2), ``k_sel``
    (outliers selected from the data: beyond the edges of psi of the empirical labels, both
    signs; for the true model of the effective labels :math:`y\,|Z|^2/D`), ``eigenvalues``
    (the d1 largest |eigenvalue| of M1).
    ``fresh_split`` fits layer 2 and the readout on n fresh samples instead of reusing them.
    ``layer2``: "auto" (moment for GE, lstsq for the true model), "moment" (docs/theory.md §3's :math:`\hat B`, exact in law for Gaussian :math:`\hat h`, i.e. GE) or
    "lstsq" (B fitted by least squares on :math:`\hat h_i\hat h_j - \delta_{ij}`: the true model's
    :math:`\hat h` are quadratic forms of x, not Gaussian, and the moment estimator is biased there).
    ``keep``: "top" (docs/theory.md §3: the d1 eigenvectors of largest |eigenvalue| feed layer 2) or
    "outliers" (only the selected outliers, as the Model S estimator does). With "top" and
    reused samples, the bulk eigenvectors among the top d1 enter layer 2 with
    :math:`\hat B = \hat A^\top M_1 \hat A = \mathrm{diag}(\lambda)`, i.e. with weights equal
    to their (edge) eigenvalues: fitted noise, which the NMSE pays for.
    ``estimator``: "plain" (docs/theory.md §3's :math:`M_1`) or "wick" (true model, q = 2: each sample's
    degree-4 Wick product, i.e. :math:`M_1 - \frac12(\hat C_2\cdot + \cdot\hat C_2)`, which removes
    the degree-2 chaos part of the spurious spectrum; ``numerics.quadratic_chaos``). In the
    GE model :math:`ZZ^\top - I` is already Wick-ordered and the two coincide.

    The matrix-free layer 1 (``validation.layer1_operator``, docs/scaling.md) takes
    ``storage`` ("auto": in memory when n x d floats fit in 4 GiB, else "redraw" from saved
    generator states: memory independent of n), ``eig`` ("auto", "arpack", "block_krylov",
    "lobpcg"), ``init`` (D x j vectors to warm-start the eigensolver, e.g. the previous n's
    ``_A_hat``) and ``client`` (a Dask client whose workers keep the sample blocks). The result
    reports ``storage``, ``eig_method``, ``eig_products`` (passes over the samples),
    ``eig_vectors`` and ``eig_residual``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 10:
        raise ValueError(f"n: the number of samples must be an integer >= 10, got {n!r}")
    if layer2 not in ("auto", "moment", "lstsq"):
        raise ValueError(f"layer2: must be 'auto', 'moment' or 'lstsq', got {layer2!r}")
    if layer2 == "auto":
        layer2 = "moment" if kind == "ge" else "lstsq"
    if keep not in ("top", "outliers"):
        raise ValueError(f"keep: must be 'top' or 'outliers', got {keep!r}")
    if estimator not in ("plain", "wick"):
        raise ValueError(f"estimator: must be 'plain' or 'wick', got {estimator!r}")
    if estimator == "wick" and kind == "true" and model.q != 2:
        raise ValueError("estimator: the Wick-ordered layer 1 is implemented for q = 2; use 'plain'")
    if layer1 not in ("auto", "dense", "matrix_free"):
        raise ValueError(f"layer1: must be 'auto', 'dense' or 'matrix_free', got {layer1!r}")
    smp = CompositionalSampler(model, seed, kind, D)
    Dm, d1 = smp.D, smp.d1
    if layer1 == "auto":
        layer1 = layer1_form(kind, model.q, Dm)
    if storage not in ("auto", "memory", "redraw"):
        raise ValueError(f"storage: must be 'auto', 'memory' or 'redraw', got {storage!r}")
    if layer1 == "matrix_free" and (kind != "true" or model.q != 2):
        raise ValueError("layer1: the matrix-free operator is the q = 2 true model's; use 'dense'")
    if n <= d1:
        raise ValueError(f"n: {n} samples cannot estimate d1 = {d1} features")
    t0 = time.perf_counter()
    wick = estimator == "wick" and kind == "true"

    # one pass draws the samples block by block (a block of Z(x) is cut to ~128 MiB; the x stream
    # is the same whatever the cut), fixes y and gathers what the dense layer 1 needs; the inputs
    # (x, or Z for GE) are then held or re-drawn from the saved generator states (``storage``)
    block = sample_block(Dm, chunk)
    if client is not None and layer1 == "matrix_free" and storage == "auto":
        storage = "redraw"  # the workers draw their blocks from the saved states: no samples shipped
    r2s = []
    acc = _Accumulator(Dm, np.float64) if layer1 == "dense" else None
    C2 = np.zeros((model.d, model.d)) if (layer1 == "dense" and wick) else None

    def first_pass(x, Z, yb):
        r2s.append(np.einsum("ij,ij->i", Z, Z) / Dm)
        if acc is not None:
            acc.add(Z, yb)
        if C2 is not None:
            C2[...] += (x.T * yb) @ x

    blocks, y = SampleBlocks.draw(smp, n, block=block, storage=storage, extra=first_pass)
    if layer1 == "dense":
        M1 = (acc.matrix(n) - y.mean() * np.eye(Dm)) / 2
        if wick:
            M1 -= second_chaos((C2 - y.sum() * np.eye(model.d)) / n)
        vals, vecs = np.linalg.eigh(M1)
        order = np.argsort(-np.abs(vals))
        vals, vecs = vals[order], vecs[:, order]
        solve = {"eig_method": "eigh", "eig_products": 0, "eig_vectors": 0, "eig_residual": float("nan")}
    else:
        op = Layer1Operator(blocks, y, "wick" if wick else "plain", client=client)
        vals, vecs, info = top_eigenpairs(op, d1, eig, init=init)
        solve = {"eig_method": info["method"], "eig_products": info["products"], "eig_vectors": info["vectors"],
                 "eig_residual": info["residual"]}
    solve["storage"] = blocks.storage if client is None else "dask"
    A_hat = vecs[:, :d1]
    # outliers from the data alone: the psi edge of the empirical labels on each side (M1 = D_n / 2).
    # The true model's Z(x) = r u is elliptical: r^2 = |Z|^2 / D = (|x|^4 - 2|x|^2 + d) / (2D) for q = 2
    # fluctuates by ~2 sqrt(2/d) (50% at d = 30) and is a function of |x| that y depends on, so its
    # noise is that of the effective label tau = y r^2 (docs/compositional.md: 'elliptical noise').
    tau = y if kind == "ge" else y * np.concatenate(r2s)
    sel = two_sided_outliers(vals[:d1], tau, n / Dm, Dm, scale=0.5)
    O = (smp.A.T @ A_hat) ** 2  # d1 x d1
    proj = O[:, sel].sum(axis=1)
    cos2 = np.linalg.svd(smp.A.T @ A_hat, compute_uv=False) ** 2
    t1 = time.perf_counter()
    A2 = A_hat if keep == "top" else A_hat[:, sel]
    # layer 2 on the same samples (or a fresh split) and the 1-d readout
    if fresh_split:
        blocks2, y2 = SampleBlocks.draw(smp, n, block=block, storage=storage)
    else:
        blocks2, y2 = blocks, y

    def hhat(inp):
        return (inp if kind == "ge" else smp.features(inp)) @ A2

    H = np.vstack([hhat(xb) for xb in blocks2])  # the inputs block by block (re-drawn if so stored)
    B = (H.T * y2) @ H / (2 * n) - y2.mean() / 2 * np.eye(A2.shape[1])

    if layer2 == "lstsq":  # B by least squares on the quadratic forms of h_hat (non-Gaussian h_hat)
        iu = np.triu_indices(A2.shape[1])

        def quad(Hm):
            Q = Hm[:, iu[0]] * Hm[:, iu[1]]
            Q[:, iu[0] == iu[1]] -= 1.0
            return Q

        Q = quad(H)
        c = np.linalg.lstsq(np.column_stack([np.ones(len(Q)), Q]), y2, rcond=None)[0]
        B = np.zeros((A2.shape[1], A2.shape[1]))
        B[iu] = c[1:]
        B = (B + B.T) / 2
        # x^T B x - tr B reproduces sum_{i<=j} c_ij (h_i h_j - delta_ij) with the off-diagonal c split in two

    def shat(Hm):
        return np.einsum("ij,jk,ik->i", Hm, B, Hm) - np.trace(B)

    degree = 1 if model.is_identity_link else 3
    V = np.vander(shat(H), degree + 1, increasing=True)
    coef = np.linalg.lstsq(V, y2, rcond=None)[0]
    xt, _, yt = smp.draw(n_test)
    pred = np.vander(shat(hhat(xt)), degree + 1, increasing=True) @ coef
    nmse = float(np.mean((pred - yt) ** 2) / np.var(yt))
    return {"kind": kind, "n": int(n), "D": Dm, "d1": d1, "seed": int(seed), "layer1": layer1,
            "estimator": "wick" if wick else "plain",
            "nmse": nmse, "nmse_sem": float(np.std((pred - yt) ** 2, ddof=1) / np.sqrt(n_test)),
            "subspace_overlap": float(O.sum() / d1), "feature_proj": proj, "feature_proj_top": O.sum(axis=1),
            "feature_cos2": O.max(axis=1),
            "principal_cos2": cos2, "recovered": int(np.sum(cos2 > 0.5)), "k_sel": int(sel.sum()),
            "eigenvalues": vals[:d1], "signs": smp.signs, "wall_layer1_s": t1 - t0, **solve,
            "wall_s": time.perf_counter() - t0, "_A_hat": A_hat}
