r"""The finite-d bulk seen from d = infinity: the Stieltjes transform on the real axis, the bulk's density and
each direction's spectral density on it, and the bulk's typical eigenvalues by rigidity (docs/theory.md §4.3,
"The same from the theory alone").

Inside the bulk the d = infinity functions of :mod:`numerics.resolvent` continue to complex
:math:`\lambda = -\alpha/s`, s the Stieltjes transform at x + i0 on its physical branch (Im s > 0). Then
:math:`\rho(x) = \mathrm{Im}\,s/\pi` is the bulk's density and :math:`\rho_k(x) = \mathrm{Im}[-\bar f_k]/\pi`,
:math:`\bar f_k = \lambda(F_k(\lambda) - 1/\alpha)`, the spectral density of :math:`C_k = W_\perp^\top D_n w_k` on
the bulk block B: :math:`C_k^\top(B - \zeta)^{-1}C_k = \int\rho_k(b)/(b - \zeta)\,db` is the only non-real part
of the Schur complement's diagonal. Eigenvalue rigidity puts B's j-th largest eigenvalue within about
:math:`d^{-2/3}j^{-1/3}` of its classical location, where :math:`\rho` holds mass (j - 1/2)/(d - m) above it.

>>> from theory import HierarchicalModel
>>> model = HierarchicalModel(m=2, gamma=1, link="He2", preprocessing="clip(y, -1, 3)")
>>> r = typical_bulk(model, 6.0, d=200)
>>> r["locations"].shape, r["weights"].shape          # d - m classical locations, m x (d - m) weights
((198,), (2, 198))
>>> bool(np.all(np.diff(r["locations"]) < 0)), bool(np.all(r["weights"] >= 0))   # from the top down
(True, True)
"""
from __future__ import annotations

import numpy as np

from theory import HierarchicalModel
from theory.model import finite_array, integer, sample_ratio

from .label_law import check_model, label_law
from .resolvent import ConvergenceError, edge_of_atoms, resolvent_sums

__all__ = ["axis_stieltjes", "spectral_densities", "typical_bulk"]

#: the label law is binned on this many points of tau for the Stieltjes solves
BINS = 4096


def _binned(tau, p, r=None):
    """The label law (atoms ``tau``, masses ``p``, z^2-weighted masses ``r``: m x N or None) on :data:`BINS`
    equal bins of tau, each atom at its bin's mean; unchanged if it has at most BINS atoms."""
    if not (np.ptp(tau) > 0 and tau.size > BINS):
        return tau, p, r
    edges = np.linspace(tau.min(), tau.max(), BINS + 1)
    idx = np.clip(np.searchsorted(edges, tau) - 1, 0, BINS - 1)
    pm = np.bincount(idx, weights=p, minlength=BINS)
    tm = np.bincount(idx, weights=p * tau, minlength=BINS)
    keep = pm > 0
    rb = None if r is None else np.array([np.bincount(idx, weights=row, minlength=BINS)[keep] for row in r])
    return tm[keep] / pm[keep], pm[keep], rb


def axis_stieltjes(tau, p, a: float, x, eta: float = 1e-9) -> np.ndarray:
    r"""The Stieltjes transform s(x + i eta) of the bulk of a discrete label law (atoms ``tau``, masses ``p``) at
    ratio ``a``, on its physical branch (Im s > 0): the fixed point :math:`s = (-z + E[\tau/(1+\tau s/a)])^{-1}`.
    Each x starts from the fixed point at Im z = 1 and follows the branch by Newton steps as Im z decreases to
    ``eta``. Raises :class:`numerics.resolvent.ConvergenceError` where Newton does not converge."""
    xs = np.atleast_1d(np.asarray(x, dtype=float))
    # all x at once: (n_x, n_tau) kernels
    # homotopy in eta: at eta = 1 the fixed-point map s -> 1/(-z + E[tau/(1+tau s/a)])
    # contracts on the upper half-plane; Newton then follows the branch down to eta
    z = xs + 1j
    s = np.full(xs.shape, 1j)
    for _ in range(200):
        s_new = 1 / (-z + (tau[None, :] / (1 + tau[None, :] * s[:, None] / a)) @ p)
        change = np.abs(s_new - s).max()
        s = s_new
        if change < 1e-6:  # a start for Newton, not the answer
            break
    for e in np.geomspace(1.0, eta, 12)[1:]:
        active = np.arange(xs.size)  # Newton only on the points not yet converged
        for _ in range(100):
            sa, za = s[active], xs[active] + 1j * e
            den = 1 + tau[None, :] * sa[:, None] / a
            K = tau[None, :] / den
            f = 1 / sa + za - K @ p
            df = -1 / sa**2 + (K**2 / a) @ p
            # at a bulk edge df -> 0 and rounding in f dominates the step: a residual at
            # rounding level of the three terms also counts as converged
            small = np.abs(f) <= 1e-14 * (np.abs(1 / sa) + np.abs(za) + np.abs(K) @ np.abs(p))
            step = np.where(small, 0.0, f / df)
            s_new = sa - step
            for _ in range(200):  # damp to stay on the physical branch (Im s > 0)
                bad = s_new.imag <= 0
                if not np.any(bad):
                    break
                step = np.where(bad, step / 2, step)
                s_new = sa - step
            s[active] = s_new
            conv = small | (np.abs(step) < 1e-13 * np.maximum(1.0, np.abs(s_new)))
            active = active[~conv]
            if active.size == 0:
                break
        if active.size:
            raise ConvergenceError(f"Stieltjes transform at alpha = {a:g}, x = {xs[active[0]]:g}: Newton did not "
                                   "converge; use a larger eta")
    return s


def spectral_densities(model: HierarchicalModel, alpha: float, x, eta: float = 1e-9, **law_options) -> dict:
    r"""At the points ``x``: ``rho``, the bulk's density :math:`\mathrm{Im}\,s(x + i0)/\pi`, and ``rho_k``
    (m x len(x)), each direction's spectral density :math:`\mathrm{Im}[-\bar f_k(x + i0)]/\pi` on the bulk
    block (module docstring), both 0 outside the bulk; the label law binned on :data:`BINS` points.

    >>> from theory import HierarchicalModel
    >>> r = spectral_densities(HierarchicalModel(m=1, preprocessing="1"), 4.0, [1.0, 3.0])   # MP, ratio 1/4
    >>> bool(abs(r["rho"][0] - np.sqrt((2.25 - 1) * (1 - 0.25)) / (2 * np.pi / 4)) < 1e-6), bool(r["rho"][1] < 1e-8)
    (True, True)
    """
    check_model(model)
    a = sample_ratio(alpha)
    xs = np.atleast_1d(finite_array(x, "x"))
    law = label_law(model, **law_options)
    tau, p, r = _binned(law.tau, law.p, np.asarray(law.r))
    s = axis_stieltjes(tau, p, float(a), xs, eta)
    lam = -float(a) / s
    _, _, F, _ = resolvent_sums(tau, p, r, lam)
    f = lam[None, :] * (F - 1 / float(a))
    return {"rho": np.maximum(s.imag, 0.0) / np.pi, "rho_k": np.maximum((-f).imag, 0.0) / np.pi}


def typical_bulk(model: HierarchicalModel, alpha: float, d: int, points: int = 300, **law_options) -> dict:
    r"""The bulk block's typical eigenvalues at dimension ``d`` and ratio ``alpha`` (module docstring):
    ``locations``, the d - m classical locations from the top (the bulk's mass (j - 1/2)/(d - m) above the j-th),
    and ``weights`` (m x (d - m)), each direction's spectral mass :math:`\omega_{kj}` in the j-th cell (between the
    masses (j - 1)/(d - m) and j/(d - m)), so that :math:`1 + \sum_j \omega_{kj}/(x_j - \zeta)^2` is the slope
    :math:`-F'_{kk}(\zeta)` of the typical bulk. Also ``edge``, the d = infinity edge. The densities are
    integrated by the trapezoidal rule on ``points`` equal steps below edge - 0.05 (edge - spread / 10 where the
    bulk is narrower) and as many geometric ones above, down to 1e-9 below the edge; the bulk's mass is checked
    to 1e-4 (ConvergenceError otherwise)."""
    check_model(model)
    d = integer(d, "d", model.m + 2)
    points = integer(points, "points", 10)
    a = sample_ratio(alpha)
    from .edge_overlap import _tau_sup

    law = label_law(model, **law_options)
    edge = edge_of_atoms(law.tau, law.p, float(a), _tau_sup(law))[1]
    # below: the negative labels' part of the spectrum reaches at most min(tau) (1 + 1/sqrt(alpha))^2
    low = min(float(law.tau.min()), 0.0) * (1 + 1 / np.sqrt(float(a))) ** 2
    near = min(0.05, (edge - low) / 10)
    lo = low - near
    x = np.concatenate([np.linspace(lo, edge - near, points, endpoint=False),
                        edge - np.geomspace(near, 1e-9, points)])
    dens = spectral_densities(model, float(a), x, **law_options)
    cell = np.diff(x)

    def above(rho):  # the mass above each point of x (trapezoids), along the last axis
        pieces = ((rho[..., 1:] + rho[..., :-1]) / 2 * cell)[..., ::-1]
        return np.concatenate([np.cumsum(pieces, axis=-1)[..., ::-1], np.zeros(rho.shape[:-1] + (1,))], axis=-1)

    mass = above(dens["rho"])
    if abs(mass[0] - 1) > 1e-4:
        raise ConvergenceError(f"typical_bulk: the bulk's density integrates to {mass[0]:.6f}, not 1, at alpha = "
                               f"{float(a):g}; raise points")
    mass = mass / mass[0]
    N = d - model.m
    at = lambda q: np.interp(q, mass[::-1], x[::-1])  # noqa: E731  the point with mass q above it
    bounds = at(np.arange(N + 1) / N)
    above_k = above(dens["rho_k"])
    cum = np.array([np.interp(bounds, x, row) for row in above_k])  # rho_k's mass above each bound
    return {"locations": at((np.arange(N) + 0.5) / N), "weights": cum[:, 1:] - cum[:, :-1], "edge": edge}
