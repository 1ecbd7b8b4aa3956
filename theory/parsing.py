"""Safe parsing of link and preprocessing expressions.

A link ``g(z)`` is written in the variable ``z``; a preprocessing ``T(y)`` in ``y``.
The parser is a small recursive-descent parser over a whitelist of tokens: it builds
sympy objects directly and never hands the user's text to ``eval``, ``exec`` or
``sympify``.

Grammar (``^`` is accepted as a synonym of ``**``)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := ('+' | '-') unary | power
    power   := primary (('**' | '^') unary)?
    primary := NUMBER | VAR | 'pi' | 'HeK' | FUNC '(' args ')' | '(' expr ')' | '|' expr '|'

Functions: ``He(k, u)``, ``relu``, ``abs``, ``sign``, ``tanh``, ``erf``, ``exp``,
``sin``, ``cos``, ``sqrt``, ``min``, ``max``, ``clip(u, lo, hi)``.

Examples
--------
>>> parse_link("He2/2 + He4/48")
z**4/48 + 3*z**2/8 - 7/16
>>> parse_link("relu(z)")
Max(0, z)
>>> parse_link("y/(1+|y|)", variable="y")
y/(Abs(y) + 1)
>>> parse_link("__import__('os')")
Traceback (most recent call last):
...
ValueError: link: unexpected character "'" at position 11
>>> parse_link("os.system(1)")
Traceback (most recent call last):
...
ValueError: link: unexpected character '.' at position 2
>>> parse_link("exec(z)")
Traceback (most recent call last):
...
ValueError: link: unknown name 'exec' at position 0; allowed: He, HeK (K = 0..64), abs, clip, cos, erf, exp, max, min, pi, relu, sign, sin, sqrt, tanh, z
"""
from __future__ import annotations

import re
from fractions import Fraction

import sympy as sp

__all__ = ["parse_link", "Z", "Y", "MAX_HERMITE_DEGREE"]

#: The Gaussian variable of a link and the label variable of a preprocessing.
Z = sp.Symbol("z", real=True)
Y = sp.Symbol("y", real=True)
_VARIABLES = {"z": Z, "y": Y}

MAX_HERMITE_DEGREE = 64
_MAX_EXPONENT = 64
_MAX_LENGTH = 2000
_MAX_DEPTH = 60
_MAX_NUMBER_CHARS = 40
_MAX_DECIMAL_EXPONENT = 308   # the float64 range; an exact 10^e beyond it only costs time

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>\*\*|[-+*/^(),|]))"
)


def _relu(u):
    return sp.Max(u, 0)


def _clip(u, lo, hi):
    return sp.Min(sp.Max(u, lo), hi)


# name -> (constructor, number of arguments)
_FUNCTIONS = {
    "relu": (_relu, 1),
    "abs": (sp.Abs, 1),
    "sign": (sp.sign, 1),
    "tanh": (sp.tanh, 1),
    "erf": (sp.erf, 1),
    "exp": (sp.exp, 1),
    "sin": (sp.sin, 1),
    "cos": (sp.cos, 1),
    "sqrt": (sp.sqrt, 1),
    "min": (sp.Min, 2),
    "max": (sp.Max, 2),
    "clip": (_clip, 3),
}
_HE_NAME = re.compile(r"He(\d+)$")


class _Parser:
    def __init__(self, text: str, variable: str, what: str):
        self.text = text
        self.var_name = variable
        self.var = _VARIABLES[variable]
        self.what = what
        self.tokens = self._tokenize(text)
        self.i = 0
        self.depth = 0

    # -- errors -------------------------------------------------------------------
    def fail(self, msg: str):
        raise ValueError(f"{self.what}: {msg}")

    def _tokenize(self, text):
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            mt = _TOKEN.match(text, pos)
            if mt is None or mt.end() == pos:
                bad = text[pos:].lstrip()[:1]
                self.fail(f"unexpected character {bad!r} at position {pos}")
            kind = mt.lastgroup
            value = mt.group(kind)
            start = mt.start(kind)
            if kind == "num" and len(value) > _MAX_NUMBER_CHARS:
                self.fail(f"number {value[:12]}... at position {start} is longer than {_MAX_NUMBER_CHARS} characters")
            if kind == "num" and re.search(r"[eE]", value):
                # an exact rational 10^e has e digits: "1e99999999999999999999" would never finish
                e = int(re.split(r"[eE]", value)[1])
                if abs(e) > _MAX_DECIMAL_EXPONENT:
                    self.fail(f"number {value[:12]}... at position {start}: its decimal exponent must lie in "
                              f"[-{_MAX_DECIMAL_EXPONENT}, {_MAX_DECIMAL_EXPONENT}]")
            tokens.append((kind, value, start))
            pos = mt.end()
        return tokens

    # -- helpers ------------------------------------------------------------------
    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None, len(self.text))

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op):
        kind, value, pos = self.take()
        if kind != "op" or value != op:
            shown = "end of input" if kind is None else repr(value)
            self.fail(f"expected {op!r} at position {pos}, found {shown}")

    def enter(self):
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"expression nested deeper than {_MAX_DEPTH} levels")

    # -- grammar ------------------------------------------------------------------
    def parse(self):
        if not self.tokens:
            self.fail("empty expression")
        expr = self.expr()
        kind, value, pos = self.peek()
        if kind is not None:
            self.fail(f"unexpected token {value!r} at position {pos}")
        return expr

    def expr(self):
        self.enter()
        left = self.term()
        while True:
            kind, value, _ = self.peek()
            if kind == "op" and value in "+-":
                self.take()
                right = self.term()
                left = left + right if value == "+" else left - right
            else:
                break
        self.depth -= 1
        return left

    def term(self):
        left = self.unary()
        while True:
            kind, value, pos = self.peek()
            if kind == "op" and value in ("*", "/"):
                self.take()
                right = self.unary()
                if value == "/":
                    if right == 0:
                        self.fail(f"division by zero at position {pos}")
                    left = left / right
                else:
                    left = left * right
            else:
                break
        return left

    def unary(self):
        kind, value, _ = self.peek()
        if kind == "op" and value in "+-":
            self.take()
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return -operand if value == "-" else operand
        return self.power()

    def power(self):
        base = self.primary()
        kind, value, pos = self.peek()
        if kind == "op" and value in ("**", "^"):
            self.take()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            if exponent.free_symbols:
                self.fail(f"the exponent at position {pos} must be a number, not depend on {self.var_name}")
            if not exponent.is_real or abs(float(exponent)) > _MAX_EXPONENT:
                self.fail(f"the exponent at position {pos} must be a real number in [-{_MAX_EXPONENT}, {_MAX_EXPONENT}]")
            if base == 0 and exponent.is_negative:
                self.fail(f"division by zero (0 to a negative power) at position {pos}")
            return base**exponent
        return base

    def primary(self):
        kind, value, pos = self.take()
        if kind is None:
            self.fail("unexpected end of input")
        if kind == "num":
            return sp.Rational(Fraction(value))
        if kind == "op":
            if value == "(":
                inner = self.expr()
                self.expect(")")
                return inner
            if value == "|":
                inner = self.expr()
                self.expect("|")
                return sp.Abs(inner)
            self.fail(f"unexpected token {value!r} at position {pos}")
        # a name
        if value == self.var_name:
            return self.var
        if value == "pi":
            return sp.pi
        he = _HE_NAME.match(value)
        if he:
            return _hermite(self._degree(he.group(1), pos), self.var, self)
        if value == "He":
            self.expect("(")
            kk, kv, kpos = self.take()
            if kk != "num":
                self.fail(f"He(k, u) needs an integer degree k at position {kpos}")
            k = self._degree(kv, kpos)
            self.expect(",")
            arg = self.expr()
            self.expect(")")
            return _hermite(k, arg, self)
        if value in _FUNCTIONS:
            fn, nargs = _FUNCTIONS[value]
            self.expect("(")
            args = [self.expr()]
            for _ in range(nargs - 1):
                self.expect(",")
                args.append(self.expr())
            self.expect(")")
            return fn(*args)
        allowed = sorted(["He", "HeK (K = 0..64)", "pi", self.var_name, *_FUNCTIONS])
        self.fail(f"unknown name {value!r} at position {pos}; allowed: {', '.join(allowed)}")

    def _degree(self, text, pos):
        if not re.fullmatch(r"\d+", text) or int(text) > MAX_HERMITE_DEGREE:
            self.fail(f"Hermite degree {text!r} at position {pos} must be an integer in [0, {MAX_HERMITE_DEGREE}]")
        return int(text)


def _hermite(k, arg, parser):
    return sp.expand(sp.hermite_prob(k, arg))


def parse_link(text, variable: str = "z"):
    """Parse a link ``g(z)`` (or, with ``variable="y"``, a preprocessing ``T(y)``).

    Parameters
    ----------
    text : str or sympy.Expr
        The expression. A sympy expression is accepted as is when its only free
        symbol is the variable (``Z`` or ``Y`` of this module).
    variable : {"z", "y"}

    Returns
    -------
    sympy.Expr
        A real expression in ``Z`` (or ``Y``).

    Raises
    ------
    ValueError
        For any token outside the whitelist, a syntax error, a division by zero,
        an exponent outside [-64, 64] or a complex-valued constant; the message
        names the offending token and its position.

    Examples
    --------
    >>> parse_link("He(3, z) + 2*sign(z)")
    z**3 - 3*z + 2*sign(z)
    >>> parse_link("clip(y, -1, 1)", variable="y")
    Min(1, Max(-1, y))
    """
    if variable not in _VARIABLES:
        raise ValueError(f"variable: must be 'z' (links) or 'y' (preprocessing), got {variable!r}")
    what = "link" if variable == "z" else "preprocessing"
    var = _VARIABLES[variable]
    if isinstance(text, sp.Expr):
        expr = text
        extra = expr.free_symbols - {var}
        if extra:
            raise ValueError(f"{what}: free symbols {sorted(map(str, extra))} are not allowed; use {variable}")
    elif isinstance(text, (int, Fraction)) and not isinstance(text, bool):
        expr = sp.Rational(text)
    elif isinstance(text, str):
        if len(text) > _MAX_LENGTH:
            raise ValueError(f"{what}: expression longer than {_MAX_LENGTH} characters")
        expr = _Parser(text, variable, what).parse()
    else:
        raise TypeError(f"{what}: expected a string or sympy expression, got {type(text).__name__}")
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ValueError(f"{what}: {text!r} contains an undefined or infinite value")
    if expr.has(sp.I):
        raise ValueError(f"{what}: {text!r} is not real-valued")
    return expr
