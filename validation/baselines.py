r"""Non-hierarchical baselines on the raw input x (Model C separation, docs/theory.md §3).

* kernel ridge regression with an RBF kernel :math:`\exp(-\|x-x'\|^2/(2\ell^2))`, :math:`\ell` =
  the median pairwise distance of the training inputs (the median heuristic), and with the
  polynomial kernel :math:`(1 + \langle x, x'\rangle/d)^{p}`, p = 2q (the degree of the
  target for :math:`g_* = id`);
* the shallow spectral method on x: the outliers of :math:`\frac1n\sum_\mu y_\mu x_\mu x_\mu^\top`
  (both sides of the bulk, edges from the empirical labels as in Model S, at most ``kmax``),
  then least squares on the Hermite products of degree <= 2q of the projections;
* random-feature ridge: P ReLU features :math:`\max(0, \langle w_j, x\rangle)/\sqrt P`,
  :math:`w_j \sim N(0, I_d/d)`.

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

__all__ = ["kernel_ridge", "random_features_ridge", "shallow_spectral"]

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


def kernel_ridge(X, y, Xtest, ytest, kernel="rbf", degree=4, n_cap=6000) -> dict:
    """Kernel ridge regression on x with the documented bandwidth and ridge rules."""
    if isinstance(n_cap, bool) or not isinstance(n_cap, (int, np.integer)) or n_cap < 10:
        raise ValueError(f"n_cap: must be an integer >= 10, got {n_cap!r}")
    X, y = X[:n_cap], y[:n_cap]
    n, d = X.shape
    sub = X[: min(n, 1000)]
    dist = np.sqrt(np.maximum((sub**2).sum(1)[:, None] + (sub**2).sum(1)[None, :] - 2 * sub @ sub.T, 0))
    ell = float(np.median(dist[np.triu_indices(len(sub), 1)]))
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
    """Ridge on P ReLU random features of x."""
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P < 1:
        raise ValueError(f"P: must be a positive integer, got {P!r}")
    n, d = X.shape
    W = np.random.default_rng(np.random.SeedSequence([seed, P, d])).standard_normal((d, P)) / np.sqrt(d)
    F, Ft = np.maximum(X @ W, 0) / np.sqrt(P), np.maximum(Xtest @ W, 0) / np.sqrt(P)
    F = np.column_stack([np.ones(n), F])
    Ft = np.column_stack([np.ones(len(Ft)), Ft])
    scale = float(np.mean((F**2).sum(1)))

    def solve(Fm, ym, lam):
        return np.linalg.solve(Fm.T @ Fm + lam * scale * np.eye(Fm.shape[1]), Fm.T @ ym)

    def fit_predict(tr, va, lam):
        return _nmse(F[va] @ solve(F[tr], y[tr], lam), y[va])

    lam = _select_ridge(fit_predict, n)
    return {"method": f"RF ridge P={P}", "nmse": _nmse(Ft @ solve(F, y, lam), ytest), "n_used": n, "ridge": lam,
            "bandwidth": None}


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
