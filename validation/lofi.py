r"""Neural low-degree filtering ([L], docs/theory.md §3): the layer-wise step on random-feature lifts.

Layer l lifts the current representation H (n x p) with P random features
:math:`Z = \sigma(H W)/\sqrt P`, :math:`W_{ij} \sim N(0, 1/p)`, forms the signed covariance
:math:`C = \frac1n Z^\top \mathrm{diag}(y) Z` (P x P), keeps its top-K eigenvectors U by
|eigenvalue|, and passes on :math:`H \leftarrow Z U`, standardized column-wise. After the
last layer a ridge readout on the degree-2 Hermite products of H (ridge chosen on a 20%
hold-out, as in ``validation.baselines``) predicts y.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X, Xt = rng.standard_normal((3000, 8)), rng.standard_normal((1000, 8))
>>> f = lambda X: (X[:, 0] ** 2 - 1) + (X[:, 1] ** 2 - 1) / 2
>>> r = lofi(X, f(X), Xt, f(Xt), layers=1, P=400, K=4)
>>> bool(r["nmse"] < 0.5), r["layers"]
(True, 1)
"""
from __future__ import annotations

import numpy as np

from .baselines import RIDGES, _nmse
from .readout import hermite_product_features

__all__ = ["lofi"]

_ACTIVATIONS = {"relu": lambda t: np.maximum(t, 0.0), "tanh": np.tanh, "abs": np.abs}


def lofi(X, y, Xtest, ytest, layers: int = 2, P: int = 2000, K: int = 10, activation: str = "relu",
         seed: int = 0) -> dict:
    """Fit neural low-degree filtering on (X, y) and return the test NMSE and the spectra."""
    for name, v, lo in (("layers", layers, 1), ("P", P, 2), ("K", K, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if K > P:
        raise ValueError(f"K: must be <= P = {P}, got {K}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    sigma = _ACTIVATIONS[activation]
    rng = np.random.default_rng(np.random.SeedSequence([seed, P, K, layers]))
    H, Ht = X, Xtest
    n = len(X)
    spectra = []
    for _ in range(layers):
        W = rng.standard_normal((H.shape[1], P)) / np.sqrt(H.shape[1])
        Z, Zt = sigma(H @ W) / np.sqrt(P), sigma(Ht @ W) / np.sqrt(P)
        mu = Z.mean(axis=0)
        Z, Zt = Z - mu, Zt - mu  # the mean of the lift carries no label information
        C = (Z.T * y) @ Z / n
        vals, vecs = np.linalg.eigh(C)
        top = np.argsort(-np.abs(vals))[:K]
        spectra.append(vals[top])
        H, Ht = Z @ vecs[:, top], Zt @ vecs[:, top]
        sd = H.std(axis=0)
        sd[sd == 0] = 1.0
        H, Ht = H / sd, Ht / sd
    F, Ft = hermite_product_features(H, 2), hermite_product_features(Ht, 2)
    cut = int(0.8 * n)

    def fit(Fm, ym, lam):
        return np.linalg.solve(Fm.T @ Fm + lam * len(Fm) * np.eye(Fm.shape[1]), Fm.T @ ym)

    errs = [_nmse(F[cut:] @ fit(F[:cut], y[:cut], lam), y[cut:]) for lam in RIDGES]
    lam = float(RIDGES[int(np.argmin(errs))])
    return {"method": f"LoFi {layers} layer(s), P={P}, K={K}", "nmse": _nmse(Ft @ fit(F, y, lam), ytest),
            "n_used": n, "ridge": lam, "layers": layers, "spectra": spectra}
