r"""Non-hierarchical baselines on the raw input x (Model C separation, docs/theory.md §3).

* kernel ridge regression with an RBF kernel :math:`\exp(-\|x-x'\|^2/(2\ell^2))`, :math:`\ell` =
  the median pairwise distance of the training inputs (the median heuristic), and with the
  polynomial kernel :math:`(1 + \langle x, x'\rangle/d)^{p}`, p = 2q (the degree of the
  target for :math:`g_* = id`);
* the shallow spectral method on x: the outliers of :math:`\frac1n\sum_\mu y_\mu x_\mu x_\mu^\top`
  (both sides of the bulk, edges from the empirical labels as in Model S, at most ``kmax``),
  then least squares on the Hermite products of degree <= 2q of the projections;
* random-feature ridge: P ReLU features :math:`\max(0, \langle w_j, x\rangle)/\sqrt P`,
  :math:`w_j \sim N(0, I_d/d)`;
* Nystrom kernel ridge (the same kernels, on all n samples): r landmarks :math:`L` drawn uniformly
  (seeded) from the training inputs and the features
  :math:`\phi(x) = K_{LL}^{-1/2} k(L, x)`, so that :math:`\phi(x)^\top\phi(x')` is the Nystrom
  approximation :math:`k(x, L)K_{LL}^{-1}k(L, x')` of the kernel (Williams & Seeger 2001); ridge on
  :math:`\phi` is kernel ridge with that kernel, and with r = n landmarks it is exact kernel ridge.
  The rank r is reported (``rank``).

Random features and Nystrom features are streamed in blocks of rows: only the r x r (P x P)
Gram matrices of the fit and hold-out parts are kept, so memory does not grow with n.

The ridge is chosen on a 20% hold-out of the training set from
:math:`\lambda \in \{10^{-6}, 10^{-5}, \dots, 10\}` (times the kernel's mean diagonal), then
refitted on all of it. Kernel methods need an n x n matrix: n is capped at ``n_cap``
(default 6000, 288 MB) and the result says so (``n_used``). Each returns the test NMSE.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X, Xt = rng.standard_normal((400, 3)), rng.standard_normal((200, 3))
>>> f = lambda X: X[:, 0] * X[:, 1]
>>> r = kernel_ridge(X, f(X), Xt, f(Xt), kernel="poly", degree=2)
>>> r["nmse"] < 0.05, r["n_used"]
(True, 400)
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from theory.model import integer

__all__ = ["kernel_ridge", "nystrom_ridge", "random_features_ridge", "shallow_spectral"]

RIDGES = 10.0 ** np.arange(-6, 2)


def _kernel(kind, degree, ell, d):
    if kind == "rbf":
        def k(A, B):
            sq = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
            return np.exp(-np.maximum(sq, 0) / (2 * ell**2))
    elif kind == "poly":
        def k(A, B):
            return (1 + A @ B.T / d) ** degree
    else:
        raise ValueError(f"kernel: must be 'rbf' or 'poly', got {kind!r}")
    return k


def _nmse(pred, y):
    return float(np.mean((pred - y) ** 2) / np.var(y))


def _select_ridge(fit_predict, n):
    cut = int(0.8 * n)
    errs = [fit_predict(slice(0, cut), slice(cut, n), lam) for lam in RIDGES]
    return float(RIDGES[int(np.argmin(errs))])


def _median_bandwidth(X):
    """The median pairwise distance of (the first 1000 of) the training inputs."""
    sub = X[: min(len(X), 1000)]
    dist = np.sqrt(np.maximum((sub**2).sum(1)[:, None] + (sub**2).sum(1)[None, :] - 2 * sub @ sub.T, 0))
    return float(np.median(dist[np.triu_indices(len(sub), 1)]))


def _ridge_on_features(featurize, X, y, Xtest, ytest, intercept=True, block=8192):
    r"""Ridge on the features ``featurize(rows)`` (plus a constant column if ``intercept``) with the hold-out
    rule of ``_select_ridge``, streamed in blocks: the Gram matrices of the first 80% (fit) and
    the last 20% (hold-out) give every hold-out error in closed form,
    :math:`\|F_{va}\beta - y_{va}\|^2 = \beta^\top G_{va}\beta - 2\beta^\top b_{va} + y_{va}^\top y_{va}`.
    The ridge is lambda times the mean squared feature norm. Returns (test NMSE, lambda)."""
    n = len(X)
    cut = int(0.8 * n)

    def feats(A):
        F = featurize(A)
        return np.column_stack([np.ones(len(A)), F]) if intercept else F

    parts = []
    for lo, hi in ((0, cut), (cut, n)):
        G, b = 0.0, 0.0
        for s in range(lo, hi, block):
            F = feats(X[s: min(s + block, hi)])
            G = G + F.T @ F
            b = b + F.T @ y[s: min(s + block, hi)]
        parts.append((G, b))
    (Gtr, btr), (Gva, bva) = parts
    yva = y[cut:]
    scale = float(np.trace(Gtr + Gva)) / n
    eye = np.eye(Gtr.shape[0])

    def holdout(lam):
        beta = np.linalg.solve(Gtr + lam * scale * eye, btr)
        return float(beta @ Gva @ beta - 2 * beta @ bva + yva @ yva) / len(yva) / np.var(yva)

    lam = float(RIDGES[int(np.argmin([holdout(lam) for lam in RIDGES]))])
    beta = np.linalg.solve(Gtr + Gva + lam * scale * eye, btr + bva)
    pred = np.concatenate([feats(Xtest[s: s + block]) @ beta for s in range(0, len(Xtest), block)])
    return _nmse(pred, ytest), lam


def nystrom_ridge(X, y, Xtest, ytest, kernel="rbf", degree=4, rank=2000, seed=0) -> dict:
    """Kernel ridge in the Nystrom approximation of rank ``rank``, on all n training samples.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, Xt = rng.standard_normal((2000, 3)), rng.standard_normal((500, 3))
    >>> f = lambda X: X[:, 0] * X[:, 1]
    >>> r = nystrom_ridge(X, f(X), Xt, f(Xt), kernel="poly", degree=2, rank=50)
    >>> r["nmse"] < 0.05, r["n_used"], r["rank"]  # the degree-2 kernel in d = 3 has rank C(5, 2) = 10 < 50
    (True, 2000, 10)
    """
    rank = integer(rank, "rank", 1)
    n, d = X.shape
    if rank > n:
        raise ValueError(f"rank: must be <= n = {n} (the landmarks are training samples), got {rank}")
    ell = _median_bandwidth(X)
    k = _kernel(kernel, degree, ell, d)
    L = X[np.sort(np.random.default_rng(np.random.SeedSequence([seed, rank, n])).choice(n, rank, replace=False))]
    ev, U = np.linalg.eigh(k(L, L))
    keep = ev > 1e-10 * ev.max()  # K_LL^(-1/2) on its numerically non-zero range (pseudo-inverse)
    M = U[:, keep] / np.sqrt(ev[keep])
    nmse, lam = _ridge_on_features(lambda A: k(A, L) @ M, X, y, Xtest, ytest, intercept=False)  # as kernel ridge
    return {"method": f"Nystrom {kernel}" + (f" deg {degree}" if kernel == "poly" else ""), "nmse": nmse,
            "n_used": n, "rank": int(keep.sum()), "ridge": lam, "bandwidth": ell if kernel == "rbf" else None}


def kernel_ridge(X, y, Xtest, ytest, kernel="rbf", degree=4, n_cap=6000) -> dict:
    """Kernel ridge regression on x with the documented bandwidth and ridge rules."""
    integer(n_cap, "n_cap", 10)
    X, y = X[:n_cap], y[:n_cap]
    n, d = X.shape
    ell = _median_bandwidth(X)
    k = _kernel(kernel, degree, ell, d)
    K = k(X, X)
    scale = float(np.mean(np.diag(K)))

    def solve(Ktr, ytr, lam):
        return cho_solve(cho_factor(Ktr + lam * scale * np.eye(len(Ktr))), ytr)

    def fit_predict(tr, va, lam):
        coef = solve(K[tr, tr], y[tr], lam)
        return _nmse(K[va, tr] @ coef, y[va])

    lam = _select_ridge(fit_predict, n)
    coef = solve(K, y, lam)
    pred = np.concatenate([k(Xtest[s: s + 4096], X) @ coef for s in range(0, len(Xtest), 4096)])
    return {"method": f"KRR {kernel}" + (f" deg {degree}" if kernel == "poly" else ""), "nmse": _nmse(pred, ytest),
            "n_used": n, "ridge": lam, "bandwidth": ell if kernel == "rbf" else None}


def random_features_ridge(X, y, Xtest, ytest, P=2000, seed=0) -> dict:
    """Ridge on P ReLU random features of x, on all n samples (streamed)."""
    P = integer(P, "P", 1)
    n, d = X.shape
    W = np.random.default_rng(np.random.SeedSequence([seed, P, d])).standard_normal((d, P)) / np.sqrt(d)
    nmse, lam = _ridge_on_features(lambda A: np.maximum(A @ W, 0) / np.sqrt(P), X, y, Xtest, ytest)
    return {"method": f"RF ridge P={P}", "nmse": nmse, "n_used": n, "rank": P, "ridge": lam, "bandwidth": None}


def shallow_spectral(X, y, Xtest, ytest, degree=4, kmax=6) -> dict:
    """Spectral estimator on x (Model S style, T(y) = y) plus a polynomial readout."""
    from .readout import hermite_product_features
    from .simulate import two_sided_outliers

    n, d = X.shape
    Dn = (X.T * y) @ X / n
    vals, vecs = np.linalg.eigh(Dn)
    out = np.nonzero(two_sided_outliers(vals, y, n / d, d))[0]
    out = out[np.argsort(-np.abs(vals[out]))][:kmax]
    V = vecs[:, out]
    F = hermite_product_features(X @ V, degree) if out.size else np.ones((n, 1))
    Ft = hermite_product_features(Xtest @ V, degree) if out.size else np.ones((len(Xtest), 1))
    coef = np.linalg.lstsq(F, y, rcond=None)[0]
    return {"method": f"shallow spectral (k = {out.size})", "nmse": _nmse(Ft @ coef, ytest), "n_used": n,
            "ridge": 0.0, "bandwidth": None}
