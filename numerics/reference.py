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
from theory.links import kinks
from theory.parsing import Y, Z

from .label_law import _tau_sup, check_model, z_kinks
from .resolvent import ConvergenceError

__all__ = ["predict_mp", "resolvent_mp"]


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


def _real_roots(coeffs):
    """Real roots of a polynomial given by float coefficients (highest degree first)."""
    return [float(r.real) for r in np.roots(coeffs) if abs(r.imag) < 1e-10] if len(coeffs) > 1 else []


def _tanh_sinh(a, b, level):
    """(nodes, weights) of the tanh-sinh rule on [a, b] with step 2^-level (mpmath's nodes;
    endpoint singularities such as the sqrt at a merging kink cost no accuracy)."""
    from mpmath.calculus.quadrature import TanhSinh

    ts = TanhSinh(mpmath.mp)
    nodes = [nw for d in range(1, level + 1) for nw in ts.get_nodes(a, b, d, mpmath.mp.prec)]
    h = mpmath.mpf(2) ** (-level)
    return [x for x, _ in nodes], [w * h for _, w in nodes]


def resolvent_mp(model: HierarchicalModel, lams, dps: int = 20, level: int = 3) -> dict:
    r"""G1, G2, F_k, H_k (and the cross moments C1, C2 of coupled pairs) at the points
    ``lams`` for an m = 2 model with polynomial links, by nested tanh-sinh quadrature in
    mpmath (docs/theory.md §2.2).

    The inner integral over z_2 is split at the z_2 where y = a_1 g_1(z_1) + a_2 g_2(z_2)
    hits a kink of T; the outer one over z_1 is split where those points appear or merge
    (a kink level minus a_1 g_1(z_1) equals a critical value of a_2 g_2). No atoms, grids
    or FFTs: an independent route to the expectations behind the float64 tables. Each
    value is a list over ``lams``; ``error`` is the largest change from ``level - 1``.

    It takes about a minute per model at dps = 15 (one pass evaluates T once per node for
    every function and every lambda); tests/numerics/test_multi_index.py runs it.

    >>> from theory import HierarchicalModel
    >>> resolvent_mp(HierarchicalModel(m=2, link="tanh(z)"), [2.0])
    Traceback (most recent call last):
    ...
    ValueError: link: the nested-quadrature reference needs polynomial links (the kinks of T are located by roots)
    """
    from .label_law import coupled_pairs

    check_model(model)
    if model.m != 2 or model.delta != 0:
        raise ValueError("model: the nested-quadrature reference needs m = 2 and delta = 0")
    links = [model.link_of(k) for k in (1, 2)]
    if not all(g.is_polynomial(Z) for g in links):
        raise ValueError("link: the nested-quadrature reference needs polynomial links (the kinks of T are located by roots)")
    if isinstance(dps, bool) or not isinstance(dps, int) or not 15 <= dps <= 60:
        raise ValueError(f"dps: must be an integer in [15, 60], got {dps!r}")
    if isinstance(level, bool) or not isinstance(level, int) or not 2 <= level <= 8:
        raise ValueError(f"level: must be an integer in [2, 8], got {level!r}")
    coupled = bool(coupled_pairs(model))
    with mpmath.workdps(dps + 5):
        a = [sp.N(w, dps + 10) for w in model.weights()]
        gs = [sp.lambdify(Z, a[k] * links[k], modules="mpmath") for k in range(2)]
        polys = [[float(c) for c in sp.Poly(sp.N(a[k] * links[k], 20), Z).all_coeffs()] for k in range(2)]
        Tf = sp.lambdify(Y, model.T, modules="mpmath")
        lams = [mpmath.mpf(x) for x in np.atleast_1d(np.asarray(lams, dtype=float))]
        levels = [float(c) for c in kinks(model.T, Y)]
        crit2 = [np.polyval(polys[1], z) for z in _real_roots(np.polyder(polys[1]))]
        zlim = 8.0  # mass beyond |z| = 8 is 1.2e-15 per direction: below the 1e-12 this reference targets

        def pieces(points):
            # narrow panels (<= 1) keep tanh-sinh from spending its nodes on the Gaussian tails
            grid = np.arange(-zlim, zlim + 1e-9, 1.0)
            pts = sorted({*grid.tolist(), *(p for p in points if -zlim < p < zlim)})
            return list(zip(pts[:-1], pts[1:]))

        def inner_points(g1):
            out = []
            for c in levels:
                shifted = list(polys[1])
                shifted[-1] -= c - g1
                out += _real_roots(shifted)
            return out

        outer_pts = []
        for c in levels:
            for v in crit2:
                shifted = list(polys[0])
                shifted[-1] -= c - v
                outer_pts += _real_roots(shifted)

        def run(lev):
            # one pass evaluates T once per node and accumulates every function at every lambda
            nf = 8 if coupled else 6
            acc = [[mpmath.mpf(0)] * nf for _ in lams]
            for lo, hi in pieces(outer_pts):
                xs, ws = _tanh_sinh(lo, hi, lev)
                for z1, w1 in zip(xs, ws):
                    g1 = gs[0](z1)
                    p1 = w1 * mpmath.npdf(z1)
                    for lo2, hi2 in pieces(inner_points(float(g1))):
                        x2, w2s = _tanh_sinh(lo2, hi2, lev)
                        for z2, w2 in zip(x2, w2s):
                            t = Tf(g1 + gs[1](z2))
                            pw = p1 * w2 * mpmath.npdf(z2)
                            for il, lam in enumerate(lams):
                                k1 = t / (lam - t)
                                k2 = k1 * k1
                                row = acc[il]
                                row[0] += pw * k1
                                row[1] += pw * k2
                                row[2] += pw * k1 * (z1 * z1 - 1)
                                row[3] += pw * k1 * (z2 * z2 - 1)
                                row[4] += pw * k2 * z1 * z1
                                row[5] += pw * k2 * z2 * z2
                                if coupled:
                                    row[6] += pw * k1 * z1 * z2
                                    row[7] += pw * k2 * z1 * z2
            return acc

        fine, coarse = run(level), run(level - 1)
        err = max(abs(f - c) / max(abs(f), mpmath.mpf(10) ** -dps) for rf, rc in zip(fine, coarse)
                  for f, c in zip(rf, rc))
        out = {"lams": lams, "G1": [r[0] for r in fine], "G2": [r[1] for r in fine],
               "F": [[r[2] for r in fine], [r[3] for r in fine]], "H": [[r[4] for r in fine], [r[5] for r in fine]],
               "error": err}
        if coupled:
            out["C1"], out["C2"] = [r[6] for r in fine], [r[7] for r in fine]
        return out
