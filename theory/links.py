r"""Symbolic analysis of a link g(z): its smooth pieces, kinks and parity (docs/theory.md, section 1).

A link built from polynomials and the non-smooth functions ``relu``, ``abs``, ``sign``,
``min``, ``max`` and ``clip`` is smooth between finitely many *kinks*: the real roots of the
arguments of the non-smooth atoms. :func:`pieces` splits the real line there and returns the
smooth expression of each piece; the Hermite moments (exact Gaussian integrals per piece),
the label-law quadratures (split at kinks) and the noiseless conditional laws (monotone
pieces and atoms) all start from it.

>>> kinks("relu(z - 1) + |z|")
[0.0, 1.0]
>>> is_even("He2/2 + He4/48")
True
"""
from __future__ import annotations

import sympy as sp

from .parsing import Z, parse_link

__all__ = ["as_link", "pieces", "kinks", "is_even", "is_piecewise_polynomial", "NotPiecewisePolynomial"]


def as_link(link):
    """A parsed link: a sympy expression in z is kept, a string goes through the safe parser."""
    return link if isinstance(link, sp.Expr) and link.free_symbols <= {Z} else parse_link(link)


_NONSMOOTH = (sp.Abs, sp.sign, sp.Max, sp.Min, sp.Heaviside)


# --- piecewise-polynomial splitting -------------------------------------------------
def _innermost_nonsmooth(expr):
    """Non-smooth atoms whose own arguments are smooth."""
    found = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _NONSMOOTH) and not any(a.has(*_NONSMOOTH) for a in node.args):
            found.append(node)
    return list(dict.fromkeys(found))


def _branch(node, t):
    """The smooth branch of a non-smooth atom at the point z = t (t not a kink)."""
    if isinstance(node, (sp.Max, sp.Min)):
        values = [sp.N(a.subs(Z, t), 30) for a in node.args]
        pick = max if isinstance(node, sp.Max) else min
        return node.args[values.index(pick(values))]
    u = node.args[0]
    s = sp.sign(sp.N(u.subs(Z, t), 30))
    if isinstance(node, sp.Abs):
        return s * u
    if isinstance(node, sp.Heaviside):
        return sp.Integer(1) if s > 0 else sp.Integer(0)
    return s


def _real_roots(u):
    poly = sp.Poly(u, Z)
    if poly.degree() <= 0:
        return []
    return [sp.nsimplify(r) if r.is_Rational else r for r in poly.real_roots()]


def _midpoint(a, b):
    if a == -sp.oo and b == sp.oo:
        return sp.Integer(0)
    if a == -sp.oo:
        return sp.floor(b) - 1
    if b == sp.oo:
        return sp.ceiling(a) + 1
    return sp.nsimplify(sp.Rational(str(float((a + b) / 2))))  # exact rational strictly inside (a, b)


def pieces(expr, a=-sp.oo, b=sp.oo, var=Z, polynomial=True):
    """Yield (a, b, piece) with expr == piece (smooth; a polynomial if ``polynomial``) on (a, b).

    Raises NotPiecewisePolynomial when a piece is not polynomial (with ``polynomial``)
    or a kink sits where a non-polynomial argument vanishes.
    """
    atoms = _innermost_nonsmooth(expr)
    if not atoms:
        if polynomial and not expr.is_polynomial(var):
            raise NotPiecewisePolynomial
        yield a, b, sp.expand(expr) if polynomial else expr
        return
    cuts = set()
    for node in atoms:
        args = node.args if isinstance(node, (sp.Max, sp.Min)) else (node.args[0],)
        diffs = [x - y for i, x in enumerate(args) for y in args[i + 1:]] if len(args) > 1 else args
        for u in diffs:
            if not u.is_polynomial(var):
                raise NotPiecewisePolynomial
            u = u.subs(var, Z)
            cuts.update(r for r in _real_roots(u) if (a == -sp.oo or r > a) and (b == sp.oo or r < b))
    edges = [a, *sorted(cuts, key=lambda r: float(r)), b]
    for lo, hi in zip(edges[:-1], edges[1:]):
        t = _midpoint(lo, hi)
        piece = expr.subs(var, Z).xreplace({node.subs(var, Z): _branch(node.subs(var, Z), t) for node in atoms})
        yield from pieces(piece.subs(Z, var), lo, hi, var, polynomial)


class NotPiecewisePolynomial(Exception):
    """Raised by :func:`pieces` when a piece is not a polynomial (with ``polynomial=True``)."""


def is_piecewise_polynomial(link) -> bool:
    """True if the link is a polynomial on each piece of a finite partition of R.

    >>> is_piecewise_polynomial("relu(z) - |z - 1|"), is_piecewise_polynomial("tanh(z)")
    (True, False)
    """
    try:
        list(pieces(as_link(link)))
    except NotPiecewisePolynomial:
        return False
    return True


def kinks(expr, var=Z):
    """Real kinks of a non-smooth expression in ``var`` (numeric floats), used to split quadratures.

    ``expr`` is a sympy expression in ``var`` or, for ``var = z``, a link string.
    """
    if isinstance(expr, str):
        expr = parse_link(expr, variable=str(var))
    try:  # nested kinks (clip = Min(c, Max(-c, y))) come out of the recursive splitter
        edges = {float(a) for a, b, _ in pieces(expr, var=var, polynomial=False)} - {float("-inf")}
        return sorted(edges)
    except NotPiecewisePolynomial:
        pass
    pts = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, _NONSMOOTH):
            args = node.args if isinstance(node, (sp.Max, sp.Min)) else (node.args[0],)
            diffs = [x - y for i, x in enumerate(args) for y in args[i + 1:]] if len(args) > 1 else args
            for u in diffs:
                if u.is_polynomial(var) and not u.has(*_NONSMOOTH) and u.has(var):
                    u = u.subs(var, Z)
                    pts.update(float(r) for r in _real_roots(u))
    return sorted(pts)


def is_even(link) -> bool:
    """True if g(-z) = g(z) identically (exact, by sympy).

    >>> is_even("He2/2 + He4/48"), is_even("relu(z)"), is_even("|z| + cos(z)")
    (True, False, True)
    """
    expr = as_link(link)
    return sp.simplify(expr - expr.subs(Z, -Z)) == 0
