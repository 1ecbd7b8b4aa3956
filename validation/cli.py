"""The ``cascade`` command line: a thin layer over the theory, numerics and validation APIs.

Every subcommand has ``--help`` and ``--format``. Bad flags and bad values exit with
status 2 and a one-line message (no traceback).
"""
from __future__ import annotations

import argparse
import json
import sys

import sympy as sp

__all__ = ["main", "build_parser"]


class CascadeError(Exception):
    """A user error reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# --- output -------------------------------------------------------------------------
def _jsonable(v):
    if isinstance(v, sp.Basic):
        try:
            f = float(v)
            return {"exact": str(v), "value": f}
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return v


def _render(rows: list[dict], fmt: str, title: str = "") -> str:
    """rows: list of {name: value}; values may be sympy objects."""
    if fmt == "json":
        return json.dumps(_jsonable(rows if len(rows) != 1 else rows[0]), indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (float(v) if isinstance(v, sp.Basic) and v.is_number and v.is_finite else v)
                        for k, v in r.items()})
        return buf.getvalue().rstrip("\n")
    if fmt == "latex":
        lines = []
        for r in rows:
            for k, v in r.items():
                if isinstance(v, sp.Basic):
                    lines.append(f"{k} = {sp.latex(v)}")
        return "\n".join(lines)
    # text
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


def _add_format(p, choices=("text", "json", "latex", "csv")):
    p.add_argument("--format", choices=choices, default="text", help="output format (default: text)")


# --- model flags ----------------------------------------------------------------------
def add_model_s_flags(p):
    g = p.add_argument_group("Model S")
    g.add_argument("--link", default="He2/2 + He4/48", help="link g(z) (default: %(default)s)")
    g.add_argument("--gamma", default="13/10", help="power-law exponent (default: %(default)s)")
    g.add_argument("--m", default="10", help="number of directions, or inf (default: %(default)s)")
    g.add_argument("--delta", default="0", help="noise variance (default: %(default)s)")
    g.add_argument("--preprocessing", default="y/(1+|y|)", help="T(y) (default: %(default)s)")
    g.add_argument("--no-normalize", action="store_true", help="use a_k = k^-gamma (no 1/sqrt(Z_m))")


def model_s_from_args(args):
    from theory import HierarchicalModel

    m = args.m if args.m.lower() in ("inf", "oo") else _int(args.m, "--m")
    return HierarchicalModel(link=args.link, gamma=args.gamma, m=m, delta=args.delta,
                             normalize=not args.no_normalize, preprocessing=args.preprocessing)


def add_model_c_flags(p):
    g = p.add_argument_group("Model C")
    g.add_argument("--d", default="100", help="input dimension (default: %(default)s)")
    g.add_argument("--q", default="2", help="Hermite degree of the features (default: %(default)s)")
    g.add_argument("--eps", default="1/2", help="d1 = round(d^eps) (default: %(default)s)")
    g.add_argument("--g-star", default="z", help="outer link (default: %(default)s)")


def model_c_from_args(args, gamma):
    from theory import CompositionalModel

    return CompositionalModel(d=_int(args.d, "--d"), q=_int(args.q, "--q"), eps=args.eps, gamma=gamma,
                              g_star=args.g_star)


def _int(text, name):
    try:
        return int(text)
    except ValueError:
        raise CascadeError(f"{name}: expected an integer, got {text!r}") from None


# --- subcommands --------------------------------------------------------------------
def cmd_exponents(args):
    from theory import c_gamma, mse_exponent

    rows = [{"gamma": _gamma_arg(args.gamma), "mse_exponent": mse_exponent(args.gamma), "C_gamma": c_gamma(args.gamma)}]
    return _render(rows, args.format, "Scaling law MSE ~ (C_gamma/Z) (alpha/kappa)^(-exponent)")


def _gamma_arg(text):
    from theory import as_exact

    return as_exact(text, "gamma")


def cmd_hermite(args):
    from theory import hermite_moments, information_exponent

    mus = hermite_moments(args.link, args.kmax, dps=args.dps)
    rows = [{"k": k, "mu_k": v, "c_k": sp.simplify(v / sp.sqrt(sp.factorial(k)))} for k, v in mus.items()]
    if args.format == "latex":
        return "\n".join(f"\\mu_{{{r['k']}}} = {sp.latex(r['mu_k'])}" for r in rows)
    out = _render(rows, args.format)
    if args.format == "text":
        out += f"\ninformation exponent (k <= {args.kmax}): {information_exponent(args.link, max(args.kmax, 1), args.dps)}"
    return out


def cmd_thresholds(args):
    if args.model == "S":
        from theory import critical_alpha_law, mse_exponent
        from theory.symbols import kappa_T

        model = model_s_from_args(args)
        kmax = model.m if model.m != sp.oo else 10
        kt = None
        if args.kappa_T is not None:
            kt = _gamma_arg(args.kappa_T)
        rows = []
        for k in range(1, kmax + 1):
            law = critical_alpha_law(model, k)
            row = {"k": k, "alpha_k": law}
            if kt is not None:
                row["alpha_k"] = law.subs(kappa_T, kt)
            rows.append(row)
        head = f"Weak-signal thresholds alpha_k ~ kappa_T Z k^(2 gamma) / mu_2^2 (MSE exponent {mse_exponent(model.gamma)})"
        return _render(rows, args.format, head)
    from theory import separation, threshold_exponents, thresholds_n

    model = model_c_from_args(args, args.gamma)
    ns, ks = thresholds_n(model), threshold_exponents(model)
    rows = [{"i": i + 1, "n_star": n_, "kappa_i": sp.nsimplify(k_) if k_.is_Rational else k_.evalf(6)}
            for i, (n_, k_) in enumerate(zip(ns, ks))]
    sep = separation(model)
    head = (f"Model C (GE layer 1): D = {model.D}, d1 = {model.d1}; n_i* = D/(4 theta_i^2); "
            f"layer-wise exponent {sep['layerwise']}, kernel exponent {sep['kernel']}")
    return _render(rows, args.format, head)


def parse_alphas(text: str):
    """'1:2000:200log' (geometric), '1:10:10' (linear) or '5,20,50' (a list)."""
    import numpy as np

    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = parts
            geometric = n.endswith("log")
            n = int(n[:-3] if geometric else n)
            lo, hi = float(lo), float(hi)
            if n < 1 or not (0 < lo <= hi):
                raise ValueError
            return np.geomspace(lo, hi, n) if geometric else np.linspace(lo, hi, n)
        vals = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise CascadeError(f"--alphas: expected LO:HI:N, LO:HI:Nlog or a comma list of numbers > 0, got {text!r}") from None
    if vals.size == 0 or np.any(~(vals > 0)):
        raise CascadeError(f"--alphas: every sample ratio must be > 0, got {text!r}")
    return vals


def cmd_predict(args):
    import pandas as pd

    from numerics import predict

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: numerics needs a finite m")
    pred = predict(model, parse_alphas(args.alphas), solver=args.solver)
    table = pd.DataFrame({"alpha": pred.alphas, "bulk_edge": pred.bulk_edge, "n_outliers": pred.n_outliers,
                          "mse": pred.mse, "mse_plugin": pred.mse_plugin})
    for k in range(model.m):
        table[f"q_{k + 1}"] = pred.q[:, k]
    notes = []
    if args.plot:
        from .plots import plot_prediction

        notes.append("wrote " + ", ".join(plot_prediction(pred, args.plot)))
    thr = ", ".join(f"{t:.6g}" for t in pred.thresholds)
    if args.format == "json":
        return json.dumps({"model": model.describe(), "thresholds": pred.thresholds.tolist(),
                           "settings": pred.settings, "table": table.to_dict(orient="records")}, indent=2, default=str)
    if args.format == "csv":
        return table.to_csv(index=False).rstrip("\n")
    if args.format == "latex":
        return table.to_latex(index=False, float_format="%.4g")
    solver = pred.settings["solver"]
    head = (f"d = infinity prediction (MSE: optimal shrinkage sum a_k^2 (1 - q_k^2); plug-in 2 sum a_k^2 (1 - q_k))\n"
            f"solver: {solver}" + (" (coupled directions: q_k are subspace projections, thresholds are per "
                                   "eigen-branch)" if solver == "matrix" else "") + f"\nthresholds alpha_k: {thr}")
    return "\n".join([head, table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), *notes])


def cmd_validate(args):
    import numpy as np

    from .validate import DEFAULT_ALPHAS, DEFAULT_D, Progress, format_report, run_validate

    if args.model == "compositional":
        from theory import CompositionalModel

        from .validate_compositional import DEFAULT_C_MODEL, DEFAULT_C_RATIOS, format_compositional, \
            run_validate_compositional

        kw = dict(DEFAULT_C_MODEL)
        if args.d:
            kw["d"] = _int(args.d, "--d")
        if args.eps:
            kw["eps"] = args.eps
        if args.gamma != "13/10":
            kw["gamma"] = args.gamma
        ratios = [float(v) for v in parse_alphas(args.alphas)] if args.alphas else DEFAULT_C_RATIOS
        seeds = range(_int(args.seeds, "--seeds") if args.seeds != "6" else 2)
        bar = Progress(3 * len(ratios) * len(seeds), "simulating Model C", enabled=not args.quiet)
        res = run_validate_compositional(CompositionalModel(**kw), ratios=ratios, seeds=seeds, outdir=args.out,
                                         progress=bar)
        if args.format == "json":
            return res["table"].to_json(orient="records", indent=2)
        if args.format == "csv":
            return res["table"].to_csv(index=False).rstrip("\n")
        return format_compositional(res)

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: simulation needs a finite m")
    alphas = parse_alphas(args.alphas) if args.alphas else np.array(DEFAULT_ALPHAS)
    d = _int(args.d, "--d") if args.d else DEFAULT_D
    seeds = range(_int(args.seeds, "--seeds"))
    if len(seeds) < 1:
        raise CascadeError("--seeds: need at least 1 seed")
    res = run_validate(model, d=d, alphas=alphas, seeds=seeds, outdir=args.out,
                       dtype=np.float32 if args.float32 else np.float64, progress=not args.quiet)
    if args.format == "json":
        return res["summary"].to_json(orient="records", indent=2)
    if args.format == "csv":
        return res["summary"].to_csv(index=False).rstrip("\n")
    return format_report(res)


def _int_list(text, name):
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise CascadeError(f"{name}: expected a comma list of integers, got {text!r}") from None
    return vals


def cmd_finite_size(args):
    from pathlib import Path

    from .finite_size import finite_size_study, plot_finite_size
    from .validate import Progress

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: simulation needs a finite m")
    ds = _int_list(args.ds, "--ds")
    seeds = range(_int(args.seeds, "--seeds"))
    k = _int(args.k, "--k") if args.k else None
    bar = Progress(len(ds) * len(seeds), "finite-size study", enabled=not args.quiet)
    res = finite_size_study(model, ds=ds, seeds=seeds, k=k, progress=bar)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = plot_finite_size(res, out / "finite_size")
    res["summary"].to_parquet(out / "finite_size.parquet", index=False)
    files.append(str(out / "finite_size.parquet"))
    if args.format == "json":
        return json.dumps({"k": res["k"], "alpha_k": res["alpha_k"], "fit": res["fit"],
                           "per_d": res["per_d"].to_dict(orient="records"), "files": files}, indent=2)
    if args.format == "csv":
        return res["per_d"].to_csv(index=False).rstrip("\n")
    fit = res["fit"]
    return "\n".join([
        f"finite-size study of direction k = {res['k']} (alpha_k = {res['alpha_k']:.5g}, slope s = {res['slope']:.4g}), "
        f"{len(seeds)} seeds per d",
        res["per_d"].to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        f"crossover width ~ d^({fit['width_exponent']:.3f} +- {fit['width_exponent_se']:.3f}); docs/theory.md §4: -1/3",
        "wrote " + ", ".join(files)])


def cmd_readout(args):
    from .readout import two_stage

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: simulation needs a finite m")
    import pandas as pd

    frames = [two_stage(model, _int(args.d, "--d"), parse_alphas(args.alphas), s) for s in range(_int(args.seeds, "--seeds"))]
    df = pd.concat(frames, ignore_index=True)
    if args.format == "json":
        return df.to_json(orient="records", indent=2)
    if args.format == "csv":
        return df.to_csv(index=False).rstrip("\n")
    return ("two-stage network: excess risk of the ridge readout (fresh samples) vs "
            "sum_k a_k^2 sum_j mu_j^2 (1 - p_k^j)/j! at the measured projections p_k\n"
            + df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _sweep_spec_from_args(args):
    from .sweep import load_spec, sweep_spec

    if args.spec:
        return load_spec(args.spec)
    model = model_s_from_args(args)
    if not args.ds:
        raise CascadeError("sweep: give a spec file, or --ds (with --alphas and --seeds) and the model flags")
    return sweep_spec({"name": args.name, "models": [model.describe()],
                       "grid": {"ds": _int_list(args.ds, "--ds"), "alphas": args.alphas or "5,20,50",
                                "seeds": _int(args.seeds, "--seeds")}})


def cmd_sweep(args):
    from .sweep import load_results, run_sweep, sweep_status

    spec = _sweep_spec_from_args(args)
    if args.action == "status":
        st = sweep_status(spec, args.store)
        if args.format == "json":
            return json.dumps(st, indent=2)
        lines = [f"sweep {spec.name}: {len(st['done'])} done, {len(st['pending'])} pending, "
                 f"{len(st['failed'])} failed of {st['total']} tasks (store {args.store})"]
        lines += [f"  failed {k}: {e}" for k, e in st["errors"].items()]
        return "\n".join(lines)
    if args.action == "collect":
        df = load_results(spec, args.store)
        if args.out:
            df.to_parquet(args.out, index=False)
            return f"wrote {len(df)} rows to {args.out}"
        return df.to_csv(index=False).rstrip("\n") if args.format == "csv" else df.to_string(index=False)
    jobs = _int(args.jobs, "--jobs")
    res = run_sweep(spec, args.store, jobs=jobs, scheduler=args.scheduler, progress=not args.quiet)
    if args.format == "json":
        return json.dumps(res, indent=2)
    lines = [f"sweep {res['name']} ({res['executor']}): {res['tasks']} tasks, {res['computed']} computed, "
             f"{res['skipped']} already stored, {res['failed']} failed, wall {res['wall_s']:.1f} s; store {res['store']}"]
    lines += [f"  failed {k}: {e}" for k, e in res["errors"].items()]
    return "\n".join(lines)


def cmd_reproduce(args):
    from .reproduce import reproduce

    res = reproduce(args.name, outdir=args.out, full=args.full, jobs=_int(args.jobs, "--jobs"),
                    scheduler=args.scheduler, progress=not args.quiet)
    s = res["summary"]
    if args.name != "D":
        extra = ""
        if args.name == "separation":
            extra = "\n" + s[["n", "method", "nmse", "n_used"]].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        if args.name == "S":
            extra = f"\ncollapse: crossover width ~ d^({res['fit']['width_exponent']:.3f} +- {res['fit']['width_exponent_se']:.3f})"
        return f"reproduced {args.name} at d = {res['d']}{extra}\nwrote " + ", ".join(res["files"])
    n_ok = int(s["agrees"].sum())
    return (f"reproduced {args.name} at d = {res['d']} with {res['seeds']} seeds "
            f"({res['sweep']['computed']} tasks computed, {res['sweep']['skipped']} reused from the store); "
            f"{n_ok}/{len(s)} (alpha, k) points within the finite-size tolerance\nwrote " + ", ".join(res["files"]))


def cmd_plot(args):
    from .reproduce import plot_table

    return "wrote " + ", ".join(plot_table(args.table, args.out))


def cmd_bench(args):
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cascade", description="Thresholds and exponents of hierarchical learning.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    e = sub.add_parser("exponents", help="MSE exponent 1 - 1/(2 gamma) and C_gamma")
    e.add_argument("--gamma", default="13/10", help="power-law exponent, e.g. 13/10 (default: %(default)s)")
    _add_format(e)
    e.set_defaults(func=cmd_exponents)

    h = sub.add_parser("hermite", help="Hermite moments mu_k = E[g(z) He_k(z)] of a link")
    h.add_argument("link", help='link in z, e.g. "He2/2 + He4/48", "relu(z)", "tanh(z)"')
    h.add_argument("--kmax", type=int, default=6, help="largest degree (default: %(default)s)")
    h.add_argument("--dps", type=int, default=30, help="digits for numeric links (default: %(default)s)")
    _add_format(h)
    h.set_defaults(func=cmd_hermite)

    t = sub.add_parser("thresholds", help="closed-form threshold laws of Model S or Model C")
    t.add_argument("--model", choices=("S", "C"), default="S", help="S: shallow, C: compositional")
    add_model_s_flags(t)
    add_model_c_flags(t)
    t.add_argument("--kappa-T", default=None, help="substitute a value of kappa_T (Model S)")
    _add_format(t)
    t.set_defaults(func=cmd_thresholds)

    pr = sub.add_parser("predict", help="d = infinity bulk edge, overlaps q_k, thresholds and MSE (Model S)")
    add_model_s_flags(pr)
    pr.add_argument("--alphas", default="1:2000:40log", help="LO:HI:N, LO:HI:Nlog or a list (default: %(default)s)")
    pr.add_argument("--plot", default=None, help="write q_k(alpha) and MSE(alpha) to this path (.png and .pdf)")
    pr.add_argument("--solver", choices=("auto", "diagonal", "matrix"), default="auto",
                    help="per-direction split or the m x m form of docs/theory.md §2.2 (default: auto-detect coupling)")
    _add_format(pr)
    pr.set_defaults(func=cmd_predict)

    v = sub.add_parser("validate", help="main job: simulate Model S at finite d and compare with the theory")
    v.add_argument("--model", choices=("S", "compositional"), default="S",
                   help="S (default) or compositional: Model C, GE, true and true with the Wick-ordered M1 side "
                        "by side (--alphas are n/D there)")
    v.add_argument("--eps", default=None, help="Model C: d1 = round(d^eps) (default 1/2)")
    add_model_s_flags(v)
    v.add_argument("--d", default=None, help="dimension (default: 600)")
    v.add_argument("--alphas", default=None, help="LO:HI:N[log] or a list (default: 2,5,10,20,50,100,200,400)")
    v.add_argument("--seeds", default="6", help="number of seeds 0..N-1 (default: %(default)s)")
    v.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    v.add_argument("--float32", action="store_true", help="accumulate in float32")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(v, ("text", "json", "csv"))
    v.set_defaults(func=cmd_validate)

    fs = sub.add_parser("finite-size", help="finite-size smoothing of a threshold: distance, d^(-1/3) width, collapse")
    add_model_s_flags(fs)
    fs.add_argument("--ds", default="250,500,1000,2000", help="dimensions (default: %(default)s)")
    fs.add_argument("--seeds", default="6", help="number of seeds per d (default: %(default)s)")
    fs.add_argument("--k", default=None, help="direction (default: the first with a continuous transition)")
    fs.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    fs.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(fs, ("text", "json", "csv"))
    fs.set_defaults(func=cmd_finite_size)

    ro = sub.add_parser("readout", help="two-stage network: spectral layer + ridge readout, excess risk vs theory")
    add_model_s_flags(ro)
    ro.add_argument("--d", default="400", help="dimension (default: %(default)s)")
    ro.add_argument("--alphas", default="20,100,400", help="sample ratios (default: %(default)s)")
    ro.add_argument("--seeds", default="1", help="number of seeds (default: %(default)s)")
    _add_format(ro, ("text", "json", "csv"))
    ro.set_defaults(func=cmd_readout)

    sw = sub.add_parser("sweep", help="run a sweep of simulations into a resumable Parquet store (local or Dask)")
    sw.add_argument("action", choices=("run", "status", "collect"), help="run the pending tasks, show status, or collect the table")
    sw.add_argument("spec", nargs="?", default=None, help="TOML spec file (or give --ds/--alphas/--seeds and model flags)")
    add_model_s_flags(sw)
    sw.add_argument("--name", default="sweep", help="sweep name without a spec file (default: %(default)s)")
    sw.add_argument("--ds", default=None, help="dimensions, e.g. 200,400")
    sw.add_argument("--alphas", default=None, help="sample ratios (default: 5,20,50)")
    sw.add_argument("--seeds", default="4", help="number of seeds (default: %(default)s)")
    sw.add_argument("--store", default="cascade-store", help="store directory (default: %(default)s)")
    sw.add_argument("--jobs", default="1", help="local worker processes (default: %(default)s)")
    sw.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    sw.add_argument("--out", default=None, help="collect: write the table to this Parquet file")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(sw, ("text", "json", "csv"))
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("reproduce", help="regenerate a figure of the seed papers (scaled down unless --full)")
    rp.add_argument("name", choices=("D", "S", "separation"),
                    help="D: [D] MSE, overlaps, spectra; S: [S] NMSE/staircase vs log n/log d, collapse; "
                         "separation: layer-wise vs kernels")
    rp.add_argument("--full", action="store_true", help="the papers' sizes (d = 1000, 70 seeds; resumable)")
    rp.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    rp.add_argument("--jobs", default="1", help="local worker processes (default: %(default)s)")
    rp.add_argument("--scheduler", default=None, help="Dask scheduler address")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    rp.set_defaults(func=cmd_reproduce, format="text")

    pl = sub.add_parser("plot", help="redraw a figure from a stored Parquet table (no simulation)")
    pl.add_argument("table", help="a table written by validate or reproduce")
    pl.add_argument("--out", default=None, help="output path without extension (default: next to the table)")
    pl.set_defaults(func=cmd_plot, format="text")

    b = sub.add_parser("bench", help="speed and memory benchmarks, reported as ratios measured in one run")
    b.add_argument("--quick", action="store_true", help="smaller sizes")
    b.add_argument("--sweep", action="store_true", help="also time a sweep on 1 and 2 local workers and on Dask")
    _add_format(b, ("text", "json"))
    b.set_defaults(func=cmd_bench)
    return p


def cli_reference() -> str:
    """The CLI reference (docs/cli.md), generated from the parsers themselves."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: fix the width
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["# Command-line reference", "",
                 "Generated from the parsers by `python -m validation.cli_reference`; a test checks it is current.",
                 "", "```text", parser.format_help().rstrip(), "```"]
        for name, sp_ in sub.choices.items():
            parts += ["", f"## cascade {name}", "", "```text", sp_.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except (CascadeError, ValueError, TypeError) as exc:
        print(f"cascade {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if out:
        print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
