r"""Finite-d fluctuations of an outlier eigenvector's overlap (docs/theory.md §4.2).

Above its threshold direction k has an outlier of :math:`D_n = \frac1n\sum_i \tau_i x_ix_i^\top`, and
the squared overlap :math:`q_{k,d} = \langle w_k, u_k\rangle^2` of its eigenvector tends to
:math:`q_k` (docs/theory.md §2.2). Its fluctuations are Gaussian of order :math:`d^{-1/2}`:

.. math:: \sqrt d\,(q_{k,d} - E\,q_{k,d}) \Rightarrow N(0, \sigma_k^2).

This module computes :math:`\sigma_k` for the model at hand. The route: split
:math:`x = (z_k, u)`; by the Schur complement the outlier :math:`\zeta` is the zero of
:math:`f(\zeta) = a - \zeta - b^\top(B-\zeta)^{-1}b` outside the spectrum of B, and its overlap is
exactly :math:`q = -1/f'(\zeta)`. So to first order (the delta method)

.. math:: \delta q = q^2\,(\delta f' + q\,\bar f''\,\delta f)\quad\text{at}\ \zeta_k^*,

and :math:`\sigma_k^2` is a quadratic form in the covariance of :math:`(\delta f, \delta f')`.
That covariance has three parts (docs/theory.md §4.2 derives each): the sample average of the
influence :math:`\hat h = \lambda K z^2 + (H_k/\psi')\,\lambda K`, :math:`K = \tau/(\lambda-\tau)`
(the second term is the fluctuation of the bulk's Stieltjes transform through the empirical law of
the labels), and the off-diagonal pairs :math:`i\ne j` of :math:`b^\top(B-\zeta)^{-1}b`, whose
covariance is :math:`\frac{2}{\alpha n}E[\tilde c_1\tilde c_2]^2\,\frac{s(\zeta_1)-s(\zeta_2)}{\zeta_1-\zeta_2}`
with :math:`\tilde c = \lambda K z`.

The expectations over :math:`(\tau, z_k)` are Monte Carlo averages over ``n_samples`` seeded draws of
the latents: the variance needs :math:`E[z_k^4\,\cdot\,]`, which the label law
(:mod:`numerics.label_law`) does not hold. At the default size two seeds give :math:`\sigma_k` within
0.2-0.6 % of each other for :math:`\alpha \ge 2\alpha_k` (docs/theory.md §4.2, measured).

The derivation takes the coordinates u independent of :math:`(\tau, z_k)`: exact for m = 1. For
m > 1 the other directions' coordinates enter :math:`\tau`; that changes O(1) terms of traces of
order d and is expected not to change :math:`\sigma_k` to leading order, but it is not checked, and
near-degenerate outliers mix (docs/theory.md §5). :func:`validation.compare.compare` uses
:math:`\sigma_k` for m = 1 only.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=1, link="He2", preprocessing="tanh(y)")
>>> s = outlier_fluctuation(model, [0.5, 6.4], n_samples=2**18)
>>> bool(np.isnan(s[0, 0])), 0.2 < float(s[1, 0]) < 0.4     # below alpha_1 = 0.639: no outlier
(True, True)
"""
from __future__ import annotations

import numpy as np

from theory import HierarchicalModel
from theory.model import finite_array, integer

from .label_law import check_model, draw_latents
from .resolvent import edge_of_atoms, outlier_of_atoms

__all__ = ["outlier_fluctuation", "outlier_variance_parts"]


def outlier_variance_parts(tau, z, alpha: float, weights=None) -> dict | None:
    r"""The first-order fluctuation of one direction's outlier overlap from a discrete law of
    :math:`(\tau, z_k)`: atoms ``tau``, ``z`` with ``weights`` summing to 1 (None: equal weights, i.e.
    samples), at ratio ``alpha``; None if there is no outlier.

    Returns q, lam (:math:`\lambda_k^*`), sigma (:math:`\sigma_k`), and the two parts of
    :math:`\sigma_k^2`: ``diagonal`` (the label average, the Stieltjes term included) and
    ``pairs`` (the off-diagonal pairs); ``sigma**2 = diagonal + pairs``.
    """
    w = np.full(tau.size, 1.0 / tau.size) if weights is None else np.asarray(weights, dtype=float)
    E = lambda v: float(w @ v)  # noqa: E731
    z2 = z * z
    lbar = edge_of_atoms(tau, w, alpha)[0]
    lam = outlier_of_atoms(tau, w, w * z2, alpha, lbar)
    if lam is None:
        return None
    K = tau / (lam - tau)
    G2, H = E(K**2), E(z2 * K**2)
    p1 = 1 / alpha - G2  # psi', psi'', psi''' in lambda
    p2 = 2 * E(K**2 / (lam - tau))
    p3 = -6 * E(K**2 / (lam - tau) ** 2)
    q = p1 / (p1 + H)
    # f-bar = lam (F_k - 1/alpha) as a function of zeta = psi(lam): f' = -1/q, and f''
    H1 = -2 * E(z2 * K**2 / (lam - tau))
    f_l, f_ll = -(H + p1), -H1 - p2
    f_zz = (f_ll * p1 - f_l * p2) / p1**3
    # s(zeta) = -alpha/lam: its first three zeta-derivatives (chain rule through psi)
    s_l, s_ll, s_lll = alpha / lam**2, -2 * alpha / lam**3, 6 * alpha / lam**4
    s1 = s_l / p1
    A = s_ll * p1 - s_l * p2
    s2 = A / p1**3
    s3 = ((s_lll * p1 - s_l * p3) * p1 - 3 * A * p2) / p1**5
    # diagonal: the influence h of one sample on f, and its zeta-derivative
    cH, cH_l = H / p1, (H1 * p1 - H * p2) / p1**2
    lamK, lamK_l = lam * K, -K**2
    h = lamK * z2 + cH * lamK
    h_z = (-K**2 * z2 + cH_l * lamK + cH * lamK_l) / p1
    C = np.cov(np.vstack([h, h_z]), aweights=w, bias=True)
    # off-diagonal pairs: kernel (2/alpha) E[c1 c2]^2 (s1 - s2)/(zeta1 - zeta2), c = lam K z
    c, c_z = lamK * z, -K**2 * z / p1
    k0, k1, k11 = E(c * c), E(c * c_z), E(c_z * c_z)
    O0 = 2 / alpha * k0**2 * s1
    O1 = 2 / alpha * (2 * k0 * k1 * s1 + k0**2 * s2 / 2)
    O11 = 2 / alpha * (2 * k1**2 * s1 + 2 * k0 * k11 * s1 + 2 * k0 * k1 * s2 + k0**2 * s3 / 6)

    def form(v00, v01, v11):  # q^4 Var(f' + q f'' f), per 1/(alpha d) -> per 1/d
        return q**4 * (v11 + 2 * q * f_zz * v01 + (q * f_zz) ** 2 * v00) / alpha

    diagonal, pairs = form(C[0, 0], C[0, 1], C[1, 1]), form(O0, O1, O11)
    return {"q": q, "lam": lam, "sigma": float(np.sqrt(diagonal + pairs)), "diagonal": diagonal, "pairs": pairs}


def outlier_fluctuation(model: HierarchicalModel, alphas, n_samples: int = 2**21, seed: int = 0) -> np.ndarray:
    r""":math:`\sigma_k(\alpha) = \lim_d \sqrt d\ \mathrm{sd}(q_{k,d})` for every direction k with an outlier
    at each alpha (module docstring): shape (len(alphas), m), NaN where direction k has no outlier.

    ``n_samples`` seeded draws (``seed``) of the latents carry the expectations.
    """
    check_model(model)
    a = np.atleast_1d(finite_array(alphas, "alphas"))
    if a.ndim != 1 or a.size == 0 or np.any(a <= 0):
        raise ValueError(f"alphas: expected sample ratios > 0, got {alphas!r}")
    n_samples = integer(n_samples, "n_samples", 10_000)
    seed = integer(seed, "seed", 0)
    _, tau, z = draw_latents(model, n_samples, seed)
    if not np.all(np.isfinite(tau)):
        raise ValueError("preprocessing: T(y) is not finite on a drawn label (division by zero?)")
    out = np.full((a.size, model.m), np.nan)
    for i, alpha in enumerate(a):
        for k in range(model.m):
            r = outlier_variance_parts(tau, z[:, k], float(alpha))
            if r is not None:
                out[i, k] = r["sigma"]
    return out
