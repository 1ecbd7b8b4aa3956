r"""The exact Schur complement of one simulated :math:`D_n` (docs/theory.md §4.3, "Checking the block on
simulated samples").

The outlier law of :mod:`numerics.outlier_fluctuation` models the m x m matrix

.. math:: F(\zeta) = A - \zeta I - C^\top (B - \zeta)^{-1} C,
          \qquad -F'(\zeta) = I + C^\top (B - \zeta)^{-2} C,

with :math:`A = W^\top D_n W`, :math:`C = W_\perp^\top D_n W` and :math:`B = W_\perp^\top D_n W_\perp`
(W the d x m true directions, :math:`W_\perp` an orthonormal basis of their complement). Every eigenvalue
:math:`\zeta` of :math:`D_n` above the spectrum of B is a zero of :math:`\det F(\zeta)`, and its eigenvector's
overlap with :math:`w_k` is :math:`c_k^2/(c^\top(-F'(\zeta))c)` for the null vector c of :math:`F(\zeta)`.
Here F is computed exactly on the samples of :func:`validation.simulate.simulate_task`, so each piece of the
law (a coupling's spread, the slope at a root) can be set against its finite-d value seed by seed.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=2, gamma=1, link="He2", preprocessing="clip(y, -1, 3)")
>>> r = schur_complement(model, d=80, alpha=10.0, seed=0, zetas=[2.0, 3.0])
>>> r["F"].shape, r["slope"].shape, r["overlaps"].shape        # zetas x m x m; m x (m + 1) eigenvectors
((2, 2, 2), (2, 2, 2), (2, 3))
>>> bool(np.all(np.linalg.eigvalsh(r["slope"]) >= 1.0))       # -F' = I + a positive semidefinite part
True
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import null_space

from numerics.label_law import check_model, preprocessing_function
from theory import HierarchicalModel
from theory.model import finite_array, integer, sample_ratio

from .simulate import SampleStream, _Accumulator

__all__ = ["schur_complement"]


def schur_complement(model: HierarchicalModel, d: int, alpha: float, seed: int, zetas, chunk: int = 4096) -> dict:
    r""":math:`F(\zeta)` and :math:`-F'(\zeta)` of one seed's :math:`D_n`, n = round(alpha d), at each point of
    ``zetas`` (the same samples as :func:`validation.simulate.simulate_task` with the grid [alpha] and the same
    ``chunk``). Returns ``F`` and ``slope`` (:math:`-F'`), shape (len(zetas), m, m) in the order of the model's
    directions; ``bulk`` (the d - m eigenvalues of B, ascending) and ``weights`` ((d - m) x m: the squared
    projections :math:`\tilde c_{ik}^2` of each :math:`C_k` on B's eigenvectors, the spectral weights whose sums
    :math:`\sum_i \tilde c_{ik}^2/(b_i - \zeta)^p` are the diagonals); ``eigenvalues`` (the m + 1 largest of
    :math:`D_n`, descending); ``overlaps`` (m x (m + 1)): :math:`(w_k^\top v_j)^2` for their eigenvectors; and
    ``n``. Raises ValueError where a point of ``zetas`` is an eigenvalue of B (F has a pole there)."""
    check_model(model)
    d = integer(d, "d", model.m + 1)
    seed = integer(seed, "seed", 0)
    chunk = integer(chunk, "chunk", 1)
    a = sample_ratio(alpha)
    n = int(round(float(a) * d))
    if n < 1:
        raise ValueError(f"alpha: alpha * d must round to at least one sample, got alpha = {alpha!r} at d = {d}")
    z = finite_array(zetas, "zetas")
    if z.ndim != 1 or z.size == 0:
        raise ValueError(f"zetas: expected a non-empty list of points, got shape {z.shape}")
    stream = SampleStream(model, d, seed)
    acc = _Accumulator(d, np.float64)
    T = preprocessing_function(model.T)
    for X, y in stream.batches(n, chunk, reuse=True):
        acc.add(X, T(y), consume=True)
    D = acc.matrix(n)
    W, m = stream.W, model.m
    Wp = null_space(W.T)  # d x (d - m), orthonormal
    A, C = W.T @ D @ W, Wp.T @ D @ W
    bulk, U = np.linalg.eigh(Wp.T @ D @ Wp)
    if np.any(np.min(np.abs(bulk[None, :] - z[:, None]), axis=1) == 0):
        raise ValueError("zetas: a point coincides with an eigenvalue of the bulk block B, where F has a pole")
    UC = U.T @ C  # C in B's eigenbasis
    R = 1.0 / (bulk[None, :] - z[:, None])  # zetas x (d - m)
    F = A[None] - z[:, None, None] * np.eye(m) - np.einsum("ia,zi,ib->zab", UC, R, UC)
    slope = np.eye(m)[None] + np.einsum("ia,zi,ib->zab", UC, R**2, UC)
    vals, vecs = np.linalg.eigh(D)
    top = slice(d - 1, d - m - 2, -1)  # the m + 1 largest, descending
    return {"F": F, "slope": slope, "bulk": bulk, "weights": UC**2, "eigenvalues": vals[top],
            "overlaps": (W.T @ vecs[:, top]) ** 2, "n": n}
