"""Output formats of the command line: text, JSON, CSV and LaTeX for rows of named values
(sympy objects included) and for pandas tables.

>>> import sympy as sp
>>> print(render_rows([{"gamma": sp.Rational(13, 10), "exponent": sp.Rational(8, 13)}], "text"))
gamma = 13/10 = 1.3  exponent = 8/13 = 0.615385
>>> print(render_rows([{"gamma": sp.Rational(13, 10)}], "json"))
{
  "gamma": {
    "exact": "13/10",
    "value": 1.3
  }
}
"""
from __future__ import annotations

import csv
import io
import json

import sympy as sp

__all__ = ["jsonable", "render_rows", "render_frame"]


def jsonable(v):
    """A JSON-ready copy of ``v``: sympy numbers become {"exact", "value"}, numpy scalars floats."""
    if isinstance(v, sp.Basic):
        try:
            return {"exact": str(v), "value": float(v)}
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return v


def render_rows(rows: list[dict], fmt: str, title: str = "") -> str:
    """Rows of {name: value} (values may be sympy objects) as text, json, csv or latex."""
    if fmt == "json":
        return json.dumps(jsonable(rows if len(rows) != 1 else rows[0]), indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (float(v) if isinstance(v, sp.Basic) and v.is_number and v.is_finite else v)
                        for k, v in r.items()})
        return buf.getvalue().rstrip("\n")
    if fmt == "latex":
        return "\n".join(f"{k} = {sp.latex(v)}" for r in rows for k, v in r.items() if isinstance(v, sp.Basic))
    out = [title] if title else []
    for r in rows:
        parts = []
        for k, v in r.items():
            if isinstance(v, sp.Basic) and v.is_number and not v.is_Integer and v.is_finite and not v.is_Float:
                parts.append(f"{k} = {v} = {float(v):.6g}")
            elif isinstance(v, sp.Float):
                parts.append(f"{k} = {float(v):.15g}")
            else:
                parts.append(f"{k} = {v}")
        out.append("  ".join(parts))
    return "\n".join(out)


def render_frame(df, fmt: str, text) -> str:
    """A pandas table as json (records), csv or latex; ``text`` (a string or a function of no
    arguments, called only when needed) for the text format."""
    if fmt == "json":
        return df.to_json(orient="records", indent=2)
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "latex":
        return df.to_latex(index=False, float_format="%.4g")
    return text() if callable(text) else text
