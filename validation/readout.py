r"""The two-stage predictor of docs/theory.md §2.4: spectral first layer, ridge readout second.

Stage 1 is ``simulate_task``: the k_hat selected outlier eigenvectors :math:`\hat V`.
Stage 2 draws *fresh* samples, forms :math:`\hat z = \hat V^\top x` and fits ridge
regression on the orthonormal Hermite-product basis
:math:`\prod_i He_{j_i}(\hat z_i)/\sqrt{j_i!}`, :math:`\sum_i j_i \le` ``degree``. That
basis contains :math:`E[f^*(x)\,|\,\hat V^\top x]` exactly for polynomial links of degree
``degree``, also when adjacent eigenvectors mix (docs/theory.md §5), so the fitted excess risk
:math:`E[(\hat f - f^*)^2]` on a test set estimates

.. math:: R = \sum_k a_k^2 \sum_{j\ge1}\frac{\mu_j^2}{j!}(1 - p_k^j),\qquad p_k = \|\hat P w_k\|^2,

(``theory.readout_excess_risk``) plus the ridge estimation overhead, about
:math:`(\text{features}/n_{fit})(R + \Delta)` for least squares.

Examples
--------
>>> from theory import HierarchicalModel
>>> r = two_stage(HierarchicalModel(m=2, gamma=1), d=60, alphas=[40], seed=0, n_fit=4000, n_test=2000)
>>> list(r.columns[:4]), bool(r["excess_risk"].iloc[0] < 49 / 96)   # below the variance of the target
(['alpha', 'd', 'seed', 'k_hat'], True)
"""
from __future__ import annotations

from itertools import combinations_with_replacement
from math import factorial

import numpy as np
import pandas as pd

from numerics.label_law import link_function
from theory import HierarchicalModel, readout_excess_risk

from .simulate import _labels, model_hash, simulate_task

__all__ = ["hermite_product_features", "two_stage"]


def _multi_indices(k, degree, lowest=1):
    """Exponent vectors (length k) with lowest <= total degree <= degree."""
    out = []
    for total in range(lowest, degree + 1):
        for combo in combinations_with_replacement(range(k), total):
            e = np.zeros(k, dtype=int)
            for i in combo:
                e[i] += 1
            out.append(e)
    return np.array(out).reshape(-1, k)


def hermite_product_features(zhat: np.ndarray, degree: int, exact: bool = False) -> np.ndarray:
    """Orthonormal Hermite-product features of the columns of ``zhat`` (n x k), with the
    constant first: ``1 + C(k + degree, degree) - 1`` columns. With ``exact``, only the
    C(k + degree - 1, degree) products of total degree ``degree`` (the Z(x) of Model C)."""
    n, k = zhat.shape
    He = np.empty((degree + 1, n, k))
    He[0] = 1.0
    if degree >= 1:
        He[1] = zhat
    for j in range(1, degree):
        He[j + 1] = zhat * He[j] - j * He[j - 1]
    for j in range(degree + 1):
        He[j] /= np.sqrt(factorial(j))
    cols = [] if exact else [np.ones(n)]
    for e in _multi_indices(k, degree, lowest=degree if exact else 1):
        f = np.ones(n)
        for i in np.nonzero(e)[0]:
            f = f * He[e[i], :, i]
        cols.append(f)
    return np.column_stack(cols)


def _target(model, X, W, links):
    a = np.array(model.weight_array)
    Zt = X @ W
    return sum(a[k] * links[k](Zt[:, k]) for k in range(model.m))


def two_stage(model: HierarchicalModel, d: int, alphas, seed: int, degree: int | None = None,
              n_fit: int | None = None, n_test: int = 20_000, ridge: float = 1e-8) -> pd.DataFrame:
    """Excess risk of the two-stage network at each alpha, next to ``theory.readout_excess_risk``
    evaluated at the measured projections p_k (one row per alpha).

    ``degree`` defaults to the largest link degree (polynomial links; 4 otherwise).
    ``n_fit`` defaults to max(20000, 40 x features). Fresh samples come from a stream
    seeded by (seed, d, model, "readout"), independent of the spectral samples.
    """
    links_expr = [model.link_of(k + 1) for k in range(model.m)]
    from theory.parsing import Z

    if degree is None:
        degs = [int(g.as_poly(Z).degree()) if g.is_polynomial(Z) else 4 for g in links_expr]
        degree = max(max(degs), 1)
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 1 <= degree <= 8:
        raise ValueError(f"degree: must be an integer in [1, 8], got {degree!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or n_test < 100:
        raise ValueError(f"n_test: must be an integer >= 100, got {n_test!r}")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge: must be a number >= 0, got {ridge!r}")
    df, est = simulate_task(model, d, alphas, seed, keep_estimates=True)
    W = est["W"]
    links = [link_function(g) for g in links_expr]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(d), model_hash(model), 2024]))
    a_float = list(model.weight_array)
    rows = []
    for alpha, V in est["V_hat"].items():
        k_hat = V.shape[1]
        p = len(_multi_indices(k_hat, degree)) + 1 if k_hat else 1   # no outlier: the constant alone
        nf = n_fit if n_fit is not None else max(20_000, 40 * p)
        if isinstance(nf, bool) or not isinstance(nf, (int, np.integer)) or nf <= p:
            raise ValueError(f"n_fit: must be an integer larger than the {p} features, got {nf!r}")
        G, b = np.zeros((p, p)), np.zeros(p)
        for start in range(0, nf, 8192):
            m = min(8192, nf - start)
            X = rng.standard_normal((m, d))
            y = _labels(model, X @ W, rng, links, a_float)
            F = hermite_product_features(X @ V, degree) if k_hat else np.ones((m, 1))
            G += F.T @ F
            b += F.T @ y
        coef = np.linalg.solve(G / nf + ridge * np.eye(p), b / nf)
        X = rng.standard_normal((n_test, d))
        F = hermite_product_features(X @ V, degree) if k_hat else np.ones((n_test, 1))
        err = (F @ coef - _target(model, X, W, links)) ** 2
        proj = df[df["alpha"] == alpha].sort_values("k")["proj"].to_numpy()
        theory_risk = float(readout_excess_risk(model, [float(v) for v in np.clip(proj, 0, 1)], jmax=degree))
        rows.append({"alpha": alpha, "d": d, "seed": seed, "k_hat": k_hat, "features": p, "n_fit": nf,
                     "excess_risk": float(err.mean()), "excess_risk_sem": float(err.std(ddof=1) / np.sqrt(n_test)),
                     "theory_at_proj": theory_risk,
                     "estimation_overhead": p / nf * (theory_risk + float(model.delta)),
                     "mse": float(df[df["alpha"] == alpha]["mse"].iloc[0])})
    return pd.DataFrame(rows)


def readout_report(df) -> str:
    """The text report of :func:`two_stage` runs (one frame, any number of seeds)."""
    return ("two-stage network: excess risk of the ridge readout (fresh samples) vs "
            "sum_k a_k^2 sum_j mu_j^2 (1 - p_k^j)/j! at the measured projections p_k\n"
            + df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
