r"""The BBP critical window: the law of the top eigenvectors' overlaps near a threshold (docs/theory.md §4.5).

Near the threshold of direction k the outlier has not yet left the bulk at finite d, and neither
the outlier CLT (§4.2) nor the subcritical edge share (§4.1) applies. By the Schur complement of
§4.1, the eigenvalues of :math:`D_n` outside the spectrum of B are the zeros of
:math:`f(\zeta) = a - \zeta - b^\top(B-\zeta)^{-1}b`, and an eigenvector's overlap is
:math:`q = -1/f'(\zeta)`. At d = infinity, :math:`f \to \bar f(\zeta) = \lambda(F_k(\lambda) - 1/\alpha)`
with :math:`\zeta = \psi_\alpha(\lambda)`; near the square-root edge E, where
:math:`\zeta - E \approx \psi''\,(\lambda-\bar\lambda)^2/2` and :math:`(\lambda F_k)' = G_2 - H_k`,

.. math:: \bar f(\zeta) \approx f_0 - c\,\sqrt{\zeta - E},\qquad
          f_0 = \bar\lambda\,(F_k - G_2),\quad c = H_k\sqrt{2/\psi''}\quad\text{at}\ \bar\lambda.

The spiked GOE :math:`W + \theta e_1e_1^\top` (N x N, edge 2, Tracy-Widom scale :math:`N^{-2/3}`) has
:math:`\bar f = (\theta - 1) - \sqrt{\zeta - 2}` to the same order. Measuring :math:`\zeta - E` in
Tracy-Widom units :math:`s\,d^{-2/3}` (s the edge scale of §4) maps one onto the other:

.. math:: w' = \frac{d^{1/3} f_0}{c\sqrt s},\qquad d^{1/3}\,q_{k,d} \approx \kappa\; N^{1/3}\langle e_1, v\rangle^2
          \big|_{\theta = 1 + w' N^{-1/3}},\qquad \kappa = \frac{\sqrt s}{c},

and the random part of f, the edge eigenvalues of B weighted by their projections on b, is taken to
be the same point process in both: independent :math:`\chi^2_1` weights times a smooth mean (edge
universality; Bloemendal & Virág 2013 for the spiked ensembles' limit, an operator that depends on w'
alone). Measured against simulation the mean is right to O(d^{-1/3}) and the spread 6-28 % too large
near the threshold (docs/theory.md §4.5). :func:`spiked_goe_overlaps` draws the
canonical side from the Dumitriu-Edelman tridiagonal model, whose Householder reduction fixes
:math:`e_1` so the spike stays on :math:`T_{11}`; the top eigenvectors live on the first
:math:`O(N^{1/3})` rows, so the matrix is cut at :math:`40N^{1/3}` rows (Edelman & Persson's
truncation). Two limits check the map: far below the threshold :math:`d\,q \to \kappa d^{2/3}/w'^2`,
which is :func:`numerics.edge_overlap.edge_overlap`'s :math:`R_k = (H_k/G_2)/(1-F_k/G_2)^2`
exactly; far above, :math:`q \to 2\kappa w' d^{-1/3} = 2f_0/c^2`, the d = infinity overlap to first
order in :math:`\alpha - \alpha_k`.

>>> o = spiked_goe_overlaps(-30.0, 2000, seed=0)        # far below: N q -> 1/(1 - theta)^2 = N^(2/3)/w'^2
>>> round(float(o.mean() * 30.0**2), 1)
1.0
"""
from __future__ import annotations

import numpy as np

from theory import HierarchicalModel
from theory.model import finite_array, integer

from .edge_overlap import _tau_sup, edge_regime
from .label_law import check_model, label_law
from .resolvent import edge_of_atoms, resolvent_sums

__all__ = ["spiked_goe_overlaps", "window_map", "CANONICAL_N", "TRUNCATION"]

#: the size of the canonical spiked GOE (N^{1/3}-scaled overlaps change by < 1 % from N = 1e5 to 1e6, §4.5)
CANONICAL_N = 10**5
#: rows kept of the tridiagonal model, in units of N^{1/3} (the top eigenvectors decay like Ai(x), x = row / N^{1/3})
TRUNCATION = 16
_BISECT = 48  # bisection steps: a bracket of width < 7 shrinks below 3e-14


def spiked_goe_overlaps(wprime: float, n_draws: int, seed: int = 0, J: int = 1, N: int = CANONICAL_N) -> np.ndarray:
    r""":math:`N^{1/3}\langle e_1, v_j\rangle^2` for the top ``J`` eigenvectors :math:`v_j` of
    :math:`W + \theta e_1e_1^\top`, :math:`\theta = 1 + w'N^{-1/3}`, W a GOE of size N with spectrum
    [-2, 2]; ``n_draws`` seeded draws, shape (n_draws, J), largest eigenvalue first.

    Vectorised over the draws: the eigenvalues by Sturm-sequence bisection on the tridiagonal model,
    the overlaps by the Schur complement on :math:`e_1`,
    :math:`\langle e_1, v\rangle^2 = 1/(1 + b_1^2[(T' - \lambda)^{-2}]_{11})` (T' the matrix without
    its first row and column), both by the continued fraction of the tridiagonal matrix.

    >>> o = spiked_goe_overlaps(40.0, 500, seed=1)   # far above: BBP's 1 - 1/theta^2, in units of N^(-1/3)
    >>> bool(abs(o.mean() / (1e5 ** (1 / 3) * (1 - (1 + 40 * 1e5 ** (-1 / 3)) ** -2)) - 1) < 0.02)
    True
    """
    N = integer(N, "N", 1000, 10**9)
    wprime = float(finite_array(wprime, "wprime"))
    if not -N ** (1 / 3) <= wprime <= 10 * N ** (1 / 3):
        raise ValueError(f"wprime: must lie in [-N^(1/3), 10 N^(1/3)] = [{-N ** (1 / 3):.4g}, {10 * N ** (1 / 3):.4g}] "
                         f"(a spike theta = 1 + wprime N^(-1/3) in [0, 11]), got {wprime!r}")
    n_draws, seed = integer(n_draws, "n_draws", 1, 10**6), integer(seed, "seed", 0)
    a, b2 = _tridiagonal(wprime, n_draws, seed, N)
    J = integer(J, "J", 1, a.shape[0] // 4)
    return N ** (1 / 3) * _top_overlaps(a, b2, J)


def _tridiagonal(wprime: float, n_draws: int, seed: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The first TRUNCATION N^(1/3) rows of the Dumitriu-Edelman model of a GOE (spectrum [-2, 2]) plus
    theta e1 e1^T: the diagonals (K, n_draws) and the squared off-diagonals (K - 1, n_draws)."""
    K = int(TRUNCATION * N ** (1 / 3))
    rng = np.random.default_rng([seed, 20261202])
    a = rng.normal(0.0, np.sqrt(2.0), (K, n_draws)) / np.sqrt(N)  # rows = matrix index, columns = draws
    b2 = rng.chisquare(N - np.arange(1, K)[:, None], (K - 1, n_draws)) / N
    a[0] += 1 + wprime * N ** (-1 / 3)
    return a, b2


def _top_overlaps(a: np.ndarray, b2: np.ndarray, J: int) -> np.ndarray:
    """<e1, v_j>^2 of the top J eigenvectors of each tridiagonal matrix (columns of ``a``, ``b2``)."""
    K, n_draws = a.shape

    def below(lam):  # the number of eigenvalues below lam (negative pivots of T - lam), per bracket and draw
        piv = a[0] - lam
        count = (piv < 0).astype(np.int32)
        for i in range(1, K):  # a zero pivot (probability 0) gives -inf, then -0: the count stays right
            piv = a[i] - lam - b2[i - 1] / piv
            count += piv < 0
        return count

    with np.errstate(divide="ignore", invalid="ignore"):
        # all J brackets at once, shape (J, n_draws): [2 - 40 N^(-2/3) ... Gershgorin], the left end
        # widened to -3 for the draws with fewer than J eigenvalues above it
        off = np.sqrt(b2)
        right = np.full((J, n_draws), float(np.max(a + np.vstack([off, 0 * off[:1]]) + np.vstack([0 * off[:1], off]))))
        left0 = 2 - 40 * (K / TRUNCATION) ** -2
        ok = below(np.array([left0]))[0] <= K - J
        left = np.tile(np.where(ok, left0, -3.0), (J, 1))
        target = (K - np.arange(J))[:, None]  # the j-th largest: at least K - j eigenvalues below anything above it
        for _ in range(_BISECT):
            mid = (left + right) / 2
            above = below(mid) >= target
            right = np.where(above, mid, right)
            left = np.where(above, left, mid)
        lam = (left + right) / 2
        # [(T' - lam)^{-1}]_{11} and its lam-derivative by the continued fraction from the bottom row
        g = 1 / (a[K - 1] - lam)
        dg = g**2
        for i in range(K - 2, 0, -1):
            den = a[i] - lam - b2[i] * g
            g, dg = 1 / den, (1 + b2[i] * dg) / den**2
    out = (1 / (1 + b2[0] * dg)).T
    if not np.all(np.isfinite(out)):
        raise ArithmeticError("spiked_goe_overlaps: a non-finite overlap")
    return out


def window_map(model: HierarchicalModel, alphas, d: int, **law_options) -> tuple[np.ndarray, np.ndarray]:
    r"""The canonical window variable :math:`w'` and the overlap scale :math:`\kappa` of each direction
    at each alpha (module docstring), two arrays of shape (len(alphas), m); NaN in the boundary regime
    (no square-root edge) and where :math:`H_k = 0`.

    >>> from theory import HierarchicalModel
    >>> from numerics import predict
    >>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
    >>> a1 = float(predict(model, [1.0]).thresholds[0])
    >>> w, kap = window_map(model, [a1 * 0.9, a1 * 1.1], d=600)
    >>> bool(w[0, 0] < 0 < w[1, 0]), bool(np.all(kap > 0))
    (True, True)
    """
    check_model(model)
    a = np.atleast_1d(finite_array(alphas, "alphas"))
    if a.ndim != 1 or a.size == 0 or np.any(a <= 0):
        raise ValueError(f"alphas: expected sample ratios > 0, got {alphas!r}")
    d = integer(d, "d", 2)
    law = label_law(model, **law_options)
    tau, p, R = law.tau, law.p, np.asarray(law.r)
    wp, kappa = np.full((a.size, R.shape[0]), np.nan), np.full((a.size, R.shape[0]), np.nan)
    square_root = edge_regime(model, a, **law_options)
    for i in np.nonzero(square_root)[0]:
        lbar, _, psi2 = edge_of_atoms(tau, p, a[i], _tau_sup(law))
        _, G2, F, H = resolvent_sums(tau, p, R, lbar)
        f0, H = lbar * (F[:, 0] - G2[0]), H[:, 0]
        c = H * np.sqrt(2 / psi2)
        s = (a[i] / lbar**2 * np.sqrt(2 / psi2)) ** (-2 / 3)
        ok = c > 0
        wp[i, ok] = d ** (1 / 3) * f0[ok] / (c[ok] * np.sqrt(s))
        kappa[i, ok] = np.sqrt(s) / c[ok]
    return wp, kappa
