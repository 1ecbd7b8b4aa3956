r"""The law of z ~ N(0, 1) given a noiseless label y = g(z), for piecewise-monotone links
(docs/numerics.md, section "Optimal preprocessing").

The real line splits at the kinks of g (:func:`theory.links.pieces`) and at the zeros of g'
inside each smooth piece into intervals where g is either constant or strictly monotone:

* a constant piece :math:`g \equiv c` on :math:`(a, b)` is an **atom** of the label law at c, of
  mass :math:`\Phi(b) - \Phi(a)`; given y = c, z is N(0, 1) restricted to the union of the
  pieces with that value, so :math:`E[z^2\mid y=c] = \sum \int_a^b z^2\varphi / \sum(\Phi(b) - \Phi(a))`
  (e.g. relu: y = 0 has mass 1/2 and E[z^2 | y = 0] = 1);
* on the strictly monotone pieces y has a density, and given y the preimages :math:`t_j` (one
  per piece whose image contains y) carry weights :math:`\varphi(t_j)/|g'(t_j)|`, so
  :math:`E[z^2\mid y] = \sum_j t_j^2\varphi(t_j)/|g'(t_j)| \,/\, \sum_j \varphi(t_j)/|g'(t_j)|`.

Preimages come from a vectorised bisection (60 halvings, to float resolution).

>>> law = NoiselessLaw("relu(z)")
>>> [(float(c), round(float(p), 12), round(float(m2), 12)) for c, p, m2 in law.atoms]
[(0.0, 0.5, 1.0)]
>>> law.second_moment([0.0, 2.0]).tolist()
[1.0, 4.0]
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.special import ndtr

from theory.links import as_link, pieces
from theory.parsing import Z

from .label_law import link_function

__all__ = ["NoiselessLaw"]

_ZMAX = 12.0    # the infinite ends of the first and last pieces (mass beyond: 3.6e-33)
_SCAN = 4801    # points per piece to find the zeros of g' of a non-polynomial piece


def _phi(z):
    return np.exp(-np.asarray(z) ** 2 / 2) / np.sqrt(2 * np.pi)


def _second_moment(a, b):
    """int_a^b z^2 phi(z) dz = Phi(b) - Phi(a) + a phi(a) - b phi(b)."""
    return ndtr(b) - ndtr(a) + a * _phi(a) - b * _phi(b)


class NoiselessLaw:
    """Atoms and strictly monotone pieces of a link (see the module docstring)."""

    def __init__(self, link):
        g = as_link(link)
        self.link = g
        self.atoms = []      # (value, mass, E[z^2; piece]) merged by value
        self.monotone = []   # (lo, hi, f, df) with f strictly monotone on [lo, hi]
        atoms = {}
        for a, b, expr in pieces(g, polynomial=False):
            lo = -_ZMAX if a == -sp.oo else max(float(a), -_ZMAX)
            hi = _ZMAX if b == sp.oo else min(float(b), _ZMAX)
            if hi <= lo:
                continue
            if not expr.has(Z):
                c = float(expr)
                mass, m2 = atoms.get(c, (0.0, 0.0))
                atoms[c] = (mass + ndtr(hi) - ndtr(lo), m2 + _second_moment(lo, hi))
                continue
            f, df = link_function(expr), link_function(sp.diff(expr, Z))
            cuts = [lo, *self._critical(expr, df, lo, hi), hi]
            for s, t in zip(cuts[:-1], cuts[1:]):
                if t - s > 1e-14:
                    self.monotone.append((s, t, f, df))
        self.atoms = [(c, mass, m2 / mass) for c, (mass, m2) in sorted(atoms.items()) if mass > 0]
        ends = {float(a) for a, _, _ in pieces(g, polynomial=False) if a != -sp.oo}
        ends |= {e for s_, t_, _, _ in self.monotone for e in (s_, t_)}
        #: where g turns or kinks: the ends of every constant or strictly monotone piece
        self.breakpoints = np.array(sorted(e for e in ends if -_ZMAX < e < _ZMAX))

    @staticmethod
    def _critical(expr, df, lo, hi):
        """Zeros of g' inside (lo, hi): exact roots for polynomials, a sign scan plus bisection otherwise."""
        if expr.is_polynomial(Z) and sp.Poly(expr, Z).degree() >= 2:
            roots = np.roots([float(c) for c in sp.Poly(sp.diff(expr, Z), Z).all_coeffs()])
            return sorted(float(r.real) for r in roots if abs(r.imag) < 1e-10 and lo < r.real < hi)
        zz = np.linspace(lo, hi, _SCAN)
        v = df(zz)
        out = [float(z) for z in zz[1:-1][v[1:-1] == 0]]  # a scan point that hits a zero exactly
        for i in np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]:
            a, b = zz[i], zz[i + 1]
            sa = np.sign(df(np.array([a]))[0])
            for _ in range(60):
                mid = (a + b) / 2
                if np.sign(df(np.array([mid]))[0]) == sa:
                    a = mid
                else:
                    b = mid
            out.append((a + b) / 2)
        return sorted(out)

    def _preimages(self, ys, s, t, f):
        """Preimage of each y in f([s, t]) (NaN outside), by vectorised bisection."""
        fs, ft = f(np.array([s]))[0], f(np.array([t]))[0]
        inc = ft > fs
        lo_v, hi_v = min(fs, ft), max(fs, ft)
        # rounding: g near a flat end can evaluate a hair outside [g(s), g(t)]
        slack = 1e-10 * max(1.0, abs(lo_v), abs(hi_v))
        inside = (ys >= lo_v - slack) & (ys <= hi_v + slack)
        ys = np.clip(ys, lo_v, hi_v)
        a = np.full(ys.shape, s)
        b = np.full(ys.shape, t)
        for _ in range(60):
            mid = (a + b) / 2
            fm = f(mid)
            below = (fm < ys) if inc else (fm > ys)
            a = np.where(below, mid, a)
            b = np.where(below, b, mid)
        return np.where(inside, (a + b) / 2, np.nan)

    def second_moment(self, y):
        """E[z^2 | y] at the points y (NaN off the support)."""
        y = np.atleast_1d(np.asarray(y, dtype=float))
        num = np.zeros(y.shape)
        den = np.zeros(y.shape)
        for s, t, f, df in self.monotone:
            tt = self._preimages(y, s, t, f)
            ok = np.isfinite(tt)
            w = np.zeros(y.shape)
            w[ok] = _phi(tt[ok]) / np.maximum(np.abs(df(tt[ok])), 1e-300)
            num += np.where(ok, w * np.where(ok, tt, 0) ** 2, 0.0)
            den += w
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        for c, _, m2 in self.atoms:  # an atom outweighs any density at its value
            out = np.where(np.abs(y - c) <= 1e-12 * max(1.0, abs(c)), m2, out)
        return out

    def expect_he2_squared(self, nodes: int = 24, panel: float = 0.125) -> float:
        r""":math:`E_y[(E[z^2\mid y] - 1)^2] = E_y[(E[He_2(z)\mid y])^2]`: atoms exactly, the monotone
        pieces by Gauss-Legendre panels in z (each z maps to y = g(z), whose preimages give the
        conditional moment)."""
        total = sum(mass * (m2 - 1) ** 2 for _, mass, m2 in self.atoms)
        x, wx = np.polynomial.legendre.leggauss(nodes)
        # E[z^2 | y] jumps where y crosses the image of a breakpoint (the number of preimages
        # changes there): split every piece at the preimages of those values
        levels = np.array(sorted({float(f(np.array([e]))[0]) for s_, t_, f, _ in self.monotone for e in (s_, t_)}
                                 | {c for c, _, _ in self.atoms}))
        for s, t, f, _ in self.monotone:
            inner = self._preimages(levels, s, t, f)
            cuts = np.unique(np.concatenate([[s, t], inner[np.isfinite(inner) & (inner > s) & (inner < t)]]))
            edges = np.unique(np.concatenate([np.linspace(s, t, max(1, int(np.ceil((t - s) / panel))) + 1), cuts]))
            edges = edges[np.concatenate([[True], np.diff(edges) > 1e-10 * (1 + np.abs(edges[1:]))])]
            a, b = edges[:-1, None], edges[1:, None]
            z = ((b - a) / 2 * x + (b + a) / 2).ravel()
            w = ((b - a) / 2 * wx).ravel() * _phi(z)
            fz = self.second_moment(f(z))
            total += float(np.sum(w * (fz - 1) ** 2))
        return total
