r"""mpmath reference for single-direction models (m = 1): the same d = infinity
equations with every expectation a direct ``mpmath.quad`` over z at ``dps`` digits.

It shares no code path with the float64 solver (no atoms, tables or splines) and
serves as its reference in the tests.

>>> from theory import HierarchicalModel
>>> r = predict_mp(HierarchicalModel(m=1, preprocessing="1"), [4], dps=20)
>>> r["bulk_edge"][0]       # Marchenko-Pastur: (1 + 1/2)^2
mpf('2.25')
"""
from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from theory import HierarchicalModel
from theory.parsing import Y, Z

from .label_law import _tau_sup, check_model, z_kinks
from .resolvent import ConvergenceError

__all__ = ["predict_mp"]


def predict_mp(model: HierarchicalModel, alphas, dps: int = 30) -> dict:
    """Bulk edge, outlier eigenvalue, q and threshold of an m = 1 model, in mpmath.

    Returns a dict of lists of mpf: ``bulk_edge``, ``eigenvalue`` (None below the
    threshold), ``q``, and the mpf ``threshold``.
    """
    check_model(model)
    if model.m != 1 or model.delta != 0:
        raise ValueError("model: the mpmath reference integrates the label law directly, so it needs m = 1 and delta = 0")
    if isinstance(dps, bool) or not isinstance(dps, int) or not 15 <= dps <= 200:
        raise ValueError(f"dps: must be an integer in [15, 200], got {dps!r}")
    with mpmath.workdps(dps + 5):
        a = sp.N(model.weights()[0], dps + 10)
        gf = sp.lambdify(Z, a * model.link_of(1), modules="mpmath")
        Tf = sp.lambdify(Y, model.T, modules="mpmath")
        kinks = sorted({mpmath.mpf(k) for k in z_kinks(model, 1)} | {mpmath.mpf(0)})
        # |z| > 40 carries mass < 1e-340, below every precision used here; beyond it the
        # quadrature's far nodes would round T(a g(z)) onto sup T and divide by zero
        pts = [mpmath.mpf(-40), *kinks, mpmath.mpf(40)]
        tau_max = _tau_sup(model, np.array([-np.inf]))
        # the atoms' maximum is replaced by the maximum of T(a g(z)) over a fine z-scan
        zz = np.linspace(-12, 12, 24001)
        tscan = [Tf(gf(mpmath.mpf(float(x)))) for x in zz[::40]]
        tmax = mpmath.mpf(max(tau_max, float(max(tscan))))
        open_top = float(max(tscan)) < tau_max

        def E(fun):
            return mpmath.quad(lambda z: fun(Tf(gf(z)), z) * mpmath.npdf(z), pts)

        G1 = lambda lam: E(lambda t, z: t / (lam - t))  # noqa: E731
        G2 = lambda lam: E(lambda t, z: t**2 / (lam - t) ** 2)  # noqa: E731
        F = lambda lam: E(lambda t, z: t * (z**2 - 1) / (lam - t))  # noqa: E731
        H = lambda lam: E(lambda t, z: t**2 * z**2 / (lam - t) ** 2)  # noqa: E731
        tol = mpmath.mpf(10) ** (-dps + 3)

        def bisect(f, lo, hi):
            flo = f(lo)
            for _ in range(4 * dps):
                mid = (lo + hi) / 2
                fm = f(mid)
                if (fm > 0) == (flo > 0):
                    lo, flo = mid, fm
                else:
                    hi = mid
                if hi - lo < tol * (1 + abs(hi)):
                    break
            return (lo + hi) / 2

        def grow(f, lo):
            step = mpmath.mpf(1)
            hi = lo + step
            while f(hi) > 0:
                step *= 4
                hi = lo + step
                if step > 1e30:
                    raise ConvergenceError("reference: could not bracket a root; check the model")
            return hi

        g2_top = G2(tmax) if open_top else mpmath.inf
        f_top = F(tmax) if open_top else None
        # threshold: F = G2 at lambda_bar; boundary case alpha = 1/F(sup T)
        D = lambda lam: F(lam) - G2(lam)  # noqa: E731
        eps0 = mpmath.mpf(10) ** (-dps // 3)
        if open_top and D(tmax + eps0) > 0:
            threshold = 1 / f_top
        else:
            lo = tmax + eps0
            while D(lo) > 0:
                lo = tmax + (lo - tmax) / 16
            hi = lo + 1
            while D(hi) <= 0:
                hi = tmax + (hi - tmax) * 4
                if hi > 1e30:
                    break
            threshold = mpmath.inf if hi > 1e30 else 1 / G2(bisect(D, lo, hi))
        edges, eigs, qs = [], [], []
        for alpha in alphas:
            al = mpmath.mpf(alpha)
            if open_top and g2_top < 1 / al:
                lbar = tmax
            else:
                f = lambda lam: G2(lam) - 1 / al  # noqa: E731
                lo = tmax + eps0
                while f(lo) < 0:
                    lo = tmax + (lo - tmax) / 16
                lbar = bisect(f, lo, grow(f, lo))
            edges.append(lbar * (1 / al + G1(lbar)))
            fbar = f_top if lbar == tmax else F(lbar)
            if fbar > 1 / al:
                f = lambda lam: F(lam) - 1 / al  # noqa: E731
                lo = lbar if lbar > tmax else tmax + eps0
                lam = bisect(f, lo, grow(f, lo))
                dpsi = 1 / al - G2(lam)
                eigs.append(lam * (1 / al + G1(lam)))
                qs.append(dpsi / (dpsi + H(lam)))
            else:
                eigs.append(None)
                qs.append(mpmath.mpf(0))
        return {"bulk_edge": edges, "eigenvalue": eigs, "q": qs, "threshold": threshold}
