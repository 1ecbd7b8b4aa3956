r"""The two model descriptions of docs/theory.md: Model S (shallow) and Model C (compositional).

Both are frozen dataclasses validated on construction; numerics and validation consume
the same objects. Numbers are kept exact (``gamma=1.3`` becomes ``13/10``) and
``gamma`` may be a sympy Symbol for symbolic work.

Examples
--------
>>> m = HierarchicalModel(gamma="13/10", m=3)
>>> m.gamma, m.weights()[0]
(13/10, 1/sqrt(3**(2/5)/27 + 2**(2/5)/8 + 1))
>>> CompositionalModel(d=100, q=2, eps=0.5, gamma=1).d1
10
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np
import sympy as sp

from .parsing import Z, parse_link

__all__ = ["HierarchicalModel", "CompositionalModel", "as_exact"]

DEFAULT_LINK = "He2/2 + He4/48"
DEFAULT_PREPROCESSING = "y/(1+|y|)"


def _shown(value, limit: int) -> str:
    """``repr(value)`` cut to ``limit`` characters (an error message quotes the user's value, not a page of it)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def require(value, cls, name: str = "model"):
    """``value`` if it is a ``cls`` (a class or a tuple of classes), else a TypeError that names
    the parameter: every public function that takes a model checks it here first, so a wrong
    argument is one line, not an AttributeError from deep inside.

    >>> require(3, HierarchicalModel)
    Traceback (most recent call last):
    ...
    TypeError: model: expected a HierarchicalModel, got int (3)
    """
    if not isinstance(value, cls):
        names = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        raise TypeError(f"{name}: expected a {names}, got {type(value).__name__} ({_shown(value, 40)})")
    return value


def integer(value, name: str, lo: int, hi: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in [lo, hi] (hi None: no upper bound),
    else a ValueError that names the parameter and its range.

    >>> integer(3, "rank", 1)
    3
    >>> integer(0, "jobs", 1)
    Traceback (most recent call last):
    ...
    ValueError: jobs: must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or \
            (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name}: must be an integer {rng}, got {value!r}")
    return int(value)


def finite_array(value, name: str):
    """``value`` as a float array of finite numbers, else a ValueError that names the parameter
    (numeric helpers never return NaN silently).

    >>> finite_array([1, 2.5], "q")
    array([1. , 2.5])
    >>> finite_array([1, float("nan")], "q")
    Traceback (most recent call last):
    ...
    ValueError: q: expected finite numbers, got [1, nan]
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite numbers, got {_shown(value, 60)}")
    return arr


def sample_ratio(value, name: str = "alpha") -> float:
    """``value`` as one finite sample ratio > 0 (a float), else a ValueError that names the parameter;
    the one check of every single-ratio entry point.

    >>> sample_ratio(4)
    4.0
    >>> sample_ratio([1.0, 2.0])
    Traceback (most recent call last):
    ...
    ValueError: alpha: expected one sample ratio > 0, got [1.0, 2.0]
    """
    a = finite_array(value, name)
    if a.ndim or not a > 0:
        raise ValueError(f"{name}: expected one sample ratio > 0, got {_shown(value, 60)}")
    return float(a)


def confidence(value, name: str = "level") -> float:
    """``value`` as a float if it is a real number (not a bool) strictly between 0 and 1, else a ValueError
    that names the parameter; the one check of a confidence level (compare's bounds, their coverage).

    >>> confidence(np.float64(0.95))
    0.95
    >>> confidence(1)
    Traceback (most recent call last):
    ...
    ValueError: level: must be a confidence in (0, 1), got 1
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 < float(value) < 1:
        raise ValueError(f"{name}: must be a confidence in (0, 1), got {_shown(value, 60)}")
    return float(value)


def sample_ratios(value, name: str = "alphas") -> np.ndarray:
    """``value`` as a non-empty 1-d float array of finite sample ratios > 0 (a scalar becomes one
    entry), else a ValueError that names the parameter; the one check of every alpha grid.

    >>> sample_ratios(2.5)
    array([2.5])
    >>> sample_ratios([1, 0])
    Traceback (most recent call last):
    ...
    ValueError: alphas: expected sample ratios > 0, got [1, 0]
    """
    a = np.atleast_1d(finite_array(value, name))
    if a.ndim != 1 or a.size == 0 or np.any(a <= 0):
        raise ValueError(f"{name}: expected sample ratios > 0, got {_shown(value, 60)}")
    return a


def as_exact(value, name: str, allow_symbol: bool = True):
    """Turn a user number into an exact sympy number (or keep a Symbol).

    Floats go through their shortest decimal repr (1.3 -> 13/10); strings may be
    integers, decimals or fractions ("13/10") and are parsed with ``fractions``.

    >>> as_exact(1.3, "gamma"), as_exact("13/10", "gamma"), as_exact(2, "m")
    (13/10, 13/10, 2)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, sp.Basic):
        if value.free_symbols:
            if not allow_symbol:
                raise TypeError(f"{name}: must be a number here, got the expression {value}")
            return value
        if value in (sp.oo, -sp.oo) or value.has(sp.nan, sp.zoo) or not value.is_real:
            if value == sp.oo:
                return value
            raise ValueError(f"{name}: must be a finite real number, got {value}")
        return sp.nsimplify(value) if isinstance(value, sp.Float) else value
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, numbers.Real):
        if value != value or value in (float("inf"), float("-inf")):
            if value == float("inf"):
                return sp.oo
            raise ValueError(f"{name}: must be a finite real number, got {value}")
        return sp.Rational(Fraction(repr(float(value))))
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("inf", "oo", "infinity"):
            return sp.oo
        try:
            return sp.Rational(Fraction(text))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{name}: {value!r} is not a number (write e.g. 1.3 or 13/10)") from None
    raise TypeError(f"{name}: expected a number, got {type(value).__name__}")


def _num_ok(x):
    return not x.free_symbols


@dataclass(frozen=True)
class HierarchicalModel:
    r"""Model S: :math:`y = \sum_{k\le m} a_k g_k(z_k) + \sqrt{\Delta}\,\xi` (docs/theory.md §2).

    Parameters
    ----------
    link : str or tuple of str
        One link for every direction, or one per direction (length m).
    gamma : number, str or sympy Symbol
        Power-law exponent of the weights, :math:`a_k \propto k^{-\gamma}`.
    m : int or ``"inf"``
        Number of directions (m_star).
    delta : number
        Noise variance :math:`\Delta \ge 0`.
    normalize : bool
        If True, :math:`a_k = k^{-\gamma}/\sqrt{Z_m}` so that :math:`\sum a_k^2 = 1`.
    preprocessing : str
        :math:`T(y)`, written in ``y``.

    >>> HierarchicalModel(gamma=1.3, m=10).Z_m.evalf(6)   # sum(k**-2.6 for k in 1..10) = 1.29098
    1.29098
    >>> HierarchicalModel(gamma=0.4, m="inf")
    Traceback (most recent call last):
    ...
    ValueError: gamma: must be > 1/2 when normalize=True and m is infinite (Z_m = sum k^(-2 gamma) diverges), got 2/5
    """

    link: object = DEFAULT_LINK
    gamma: object = sp.Rational(13, 10)
    m: object = 10
    delta: object = 0
    normalize: bool = True
    preprocessing: object = DEFAULT_PREPROCESSING

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        gamma = as_exact(self.gamma, "gamma")
        if gamma == sp.oo:
            raise ValueError("gamma: must be finite")
        m = as_exact(self.m, "m", allow_symbol=False)
        if m != sp.oo and (not m.is_Integer or m < 1):
            raise ValueError(f"m: must be an integer >= 1 or 'inf', got {self.m!r}")
        delta = as_exact(self.delta, "delta", allow_symbol=False)
        if delta == sp.oo or delta < 0:
            raise ValueError(f"delta: the noise variance must be a finite number >= 0, got {self.delta!r}")
        if not isinstance(self.normalize, bool):
            raise TypeError(f"normalize: expected True or False, got {self.normalize!r}")
        if _num_ok(gamma) and gamma < 0:
            raise ValueError(f"gamma: must be >= 0, got {gamma}")
        if self.normalize and m == sp.oo and _num_ok(gamma) and gamma <= sp.Rational(1, 2):
            raise ValueError(
                "gamma: must be > 1/2 when normalize=True and m is infinite "
                f"(Z_m = sum k^(-2 gamma) diverges), got {gamma}"
            )
        link = self.link
        if isinstance(link, (list, tuple)):
            if m == sp.oo:
                raise ValueError("link: a list of links needs a finite m (one link per direction)")
            if len(link) != int(m):
                raise ValueError(f"link: got {len(link)} links for m = {m}; give one link or exactly m")
            link = tuple(link)
            if len(set(link)) == 1:
                link = link[0]
        exprs = tuple(parse_link(l) for l in (link if isinstance(link, tuple) else (link,)))
        texprs = parse_link(self.preprocessing, variable="y")
        set_("gamma", gamma)
        set_("m", int(m) if m != sp.oo else sp.oo)
        set_("delta", delta)
        set_("link", link)
        set_("_links", exprs)
        set_("_T", texprs)

    # -- links --------------------------------------------------------------------
    @property
    def links(self) -> tuple:
        """The parsed links, one per direction (or a single shared link)."""
        return self._links

    def link_of(self, k: int):
        """The link :math:`g_k` of direction k (1-based)."""
        if len(self._links) == 1:
            return self._links[0]
        if not 1 <= k <= self.m:
            raise ValueError(f"k: must lie in [1, {self.m}], got {k}")
        return self._links[k - 1]

    @property
    def T(self):
        """The preprocessing :math:`T(y)` as a sympy expression in ``y``."""
        return self._T

    @property
    def shared_link(self) -> bool:
        return len(self._links) == 1

    # -- weights ------------------------------------------------------------------
    @cached_property
    def Z_m(self):
        r""":math:`Z_m = \sum_{j\le m} j^{-2\gamma}` (exact; :math:`\zeta(2\gamma)` for m = oo)."""
        if self.m == sp.oo:
            return sp.zeta(2 * self.gamma)
        return sp.Add(*[sp.Integer(j) ** (-2 * self.gamma) for j in range(1, self.m + 1)])

    @property
    def weight_normalization(self):
        """:math:`Z_m` for normalized weights, 1 otherwise (the Z of docs/theory.md §2.3-2.4)."""
        return self.Z_m if self.normalize else sp.Integer(1)

    def weight(self, k):
        r""":math:`a_k = k^{-\gamma}/\sqrt{Z}` (``k`` may be a symbol)."""
        k = sp.Integer(k) if isinstance(k, numbers.Integral) else k
        return k ** (-self.gamma) / sp.sqrt(self.weight_normalization)

    @cached_property
    def weight_array(self):
        """The weights [a_1, ..., a_m] as float64 (numeric gamma, finite m), without building the
        exact sum Z_m: numerics and simulations use these.

        >>> import numpy as np
        >>> m = HierarchicalModel(gamma="13/10", m=3)
        >>> bool(np.allclose(m.weight_array, [float(w) for w in m.weights()], rtol=1e-14))
        True
        """
        import numpy as np

        if not self.is_numeric:
            raise ValueError("m: weight_array needs a numeric gamma and a finite m")
        k = np.arange(1, self.m + 1, dtype=float)
        g = float(self.gamma)
        w = k ** (-g)
        if self.normalize:
            w = w / np.sqrt(np.sum(k[::-1] ** (-2 * g)))  # smallest terms first
        w.setflags(write=False)
        return w

    def weights(self) -> list:
        """[a_1, ..., a_m] (finite m only)."""
        if self.m == sp.oo:
            raise ValueError("m: weights() needs a finite m")
        return [self.weight(k) for k in range(1, self.m + 1)]

    @property
    def is_numeric(self) -> bool:
        """True when every field is a number (so numerics can run on it)."""
        return _num_ok(self.gamma) and self.m != sp.oo

    def describe(self) -> dict:
        """A JSON-friendly description (for provenance columns and the CLI)."""
        return {
            "model": "S",
            "link": self.link if isinstance(self.link, str) else list(self.link),
            "gamma": str(self.gamma),
            "m": str(self.m),
            "delta": str(self.delta),
            "normalize": self.normalize,
            "preprocessing": str(self.preprocessing),
        }

    @classmethod
    def from_description(cls, desc: dict) -> "HierarchicalModel":
        """Inverse of :meth:`describe` (also accepts a subset of the fields; the rest default).

        >>> m = HierarchicalModel(gamma=1, m=3)
        >>> HierarchicalModel.from_description(m.describe()) == m
        True
        """
        if isinstance(desc, dict) and isinstance(desc.get("link"), list):
            desc = dict(desc, link=tuple(desc["link"]))
        if isinstance(desc, dict) and isinstance(desc.get("m"), str) and desc["m"].strip().lstrip("-").isdigit():
            desc = dict(desc, m=int(desc["m"]))
        return _from_description(cls, desc, "S", {"link", "gamma", "m", "delta", "normalize", "preprocessing"})

    def _repr_latex_(self) -> str:
        links = ", ".join(sp.latex(g) for g in self.links)
        a = r"k^{-%s}/\sqrt{Z_m}" % sp.latex(self.gamma) if self.normalize else r"k^{-%s}" % sp.latex(self.gamma)
        m = r"\infty" if self.m == sp.oo else str(self.m)
        return (rf"$\text{{Model S: }} y = \sum_{{k=1}}^{{{m}}} a_k g_k(z_k) + \sqrt{{\Delta}}\,\xi,\ a_k = {a},\ "
                rf"g = {links},\ \Delta = {sp.latex(self.delta)},\ T(y) = {sp.latex(self.T)}$")


@dataclass(frozen=True)
class CompositionalModel:
    r"""Model C: :math:`y = g_*(s)`, :math:`s = \sum_{i\le d_1} b_i He_2(h_i)`,
    :math:`h_i = \langle A_i, Z(x)\rangle` (docs/theory.md §3).

    Parameters
    ----------
    d : int
        Input dimension (>= 2).
    q : int
        Degree of the Hermite features Z(x) (>= 2); D = C(d+q-1, q).
    eps : number
        :math:`d_1 = \mathrm{round}(d^{\epsilon})` latent features, 0 <= eps < 1.
    gamma : number
        Feature weights :math:`|b_i| = i^{-\gamma}`, gamma >= 0.
    g_star : str
        Outer link, written in ``z`` (identity by default).

    >>> CompositionalModel(d=30, q=2, eps=0.5, gamma=1).D
    465
    """

    d: int = 100
    q: int = 2
    eps: object = sp.Rational(1, 2)
    gamma: object = 1
    g_star: object = "z"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for name in ("d", "q"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name}: expected an integer, got {v!r}")
        if self.d < 2:
            raise ValueError(f"d: must be an integer >= 2, got {self.d}")
        if self.q < 2:
            raise ValueError(f"q: must be an integer >= 2, got {self.q}")
        eps = as_exact(self.eps, "eps", allow_symbol=False)
        if not (0 <= eps < 1):
            raise ValueError(f"eps: must lie in [0, 1), got {self.eps!r}")
        gamma = as_exact(self.gamma, "gamma", allow_symbol=False)
        if gamma == sp.oo or gamma < 0:
            raise ValueError(f"gamma: must be a finite number >= 0, got {self.gamma!r}")
        try:
            g = parse_link(self.g_star)
        except ValueError as exc:  # the parser speaks of "link"; the parameter here is g_star
            raise ValueError("g_star: " + str(exc).removeprefix("link: ")) from None
        if not g.has(Z):
            raise ValueError("g_star: the outer link must depend on z (a constant target carries no signal)")
        set_("d", int(self.d))
        set_("q", int(self.q))
        set_("eps", eps)
        set_("gamma", gamma)
        set_("_g", g)
        if self.d1 < 1:
            raise ValueError(f"eps: d^eps rounds to {self.d1} latent features; need d1 >= 1")

    @property
    def g(self):
        """The outer link as a sympy expression in z."""
        return self._g

    @property
    def D(self) -> int:
        """Number of degree-q Hermite features, C(d+q-1, q)."""
        return int(sp.binomial(self.d + self.q - 1, self.q))

    @property
    def d1(self) -> int:
        r""":math:`d_1 = \mathrm{round}(d^\epsilon)` (half-integers round to even, as Python's round)."""
        return int(round(float(sp.Integer(self.d) ** self.eps)))

    @property
    def is_identity_link(self) -> bool:
        return sp.simplify(self._g - Z) == 0

    def describe(self) -> dict:
        """A JSON-friendly description; :meth:`from_description` inverts it."""
        return {"model": "C", "d": self.d, "q": self.q, "eps": str(self.eps), "gamma": str(self.gamma),
                "g_star": str(self.g_star)}

    @classmethod
    def from_description(cls, desc: dict) -> "CompositionalModel":
        """Inverse of :meth:`describe` (also accepts a subset of the fields; the rest default).

        >>> m = CompositionalModel(d=20, gamma="1/2")
        >>> CompositionalModel.from_description(m.describe()) == m
        True
        """
        return _from_description(cls, desc, "C", {"d", "q", "eps", "gamma", "g_star"}, ints=("d", "q"))

    def _repr_latex_(self) -> str:
        return (r"$\text{Model C: } y = g_*\Big(\sum_{i\le d_1} b_i He_2(\langle A_i, Z(x)\rangle)\Big),\ "
                rf"d = {self.d},\ q = {self.q},\ D = {self.D},\ d_1 = {self.d1},\ |b_i| = i^{{-{sp.latex(self.gamma)}}},\ "
                rf"g_*(z) = {sp.latex(self.g)}$")


def _from_description(cls, desc, tag, fields, ints=()):
    """Shared body of the from_description class methods."""
    if not isinstance(desc, dict):
        raise TypeError(f"desc: expected a dict of model fields, got {type(desc).__name__}")
    unknown = set(desc) - fields - {"model"}
    if unknown:
        raise ValueError(f"desc: unknown model field(s) {sorted(unknown)}; valid: {sorted(fields)}")
    if desc.get("model", tag) != tag:
        raise ValueError(f"desc: model must be {tag!r} for a {cls.__name__}, got {desc.get('model')!r}")
    kw = {k: v for k, v in desc.items() if k in fields}
    for k in ints:
        if isinstance(kw.get(k), str) and kw[k].strip().isdigit():
            kw[k] = int(kw[k])
    return cls(**kw)

