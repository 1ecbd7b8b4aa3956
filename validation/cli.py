"""The ``cascade`` command line: a thin layer over the theory, numerics and validation APIs.

Every subcommand has ``--help`` and ``--format``. Bad flags and bad values exit with
status 2 and a one-line message (no traceback).
"""
from __future__ import annotations

import argparse
import json
import re
import sys

import sympy as sp

from .experiment import without_metadata
from .render import render_frame, render_rows

__all__ = ["main", "build_parser"]


class CascadeError(Exception):
    """A user error reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_format(p, choices=("text", "json", "latex", "csv")):
    p.add_argument("--format", choices=choices, default="text", help="output format (default: text)")


# --- model flags: one spelling, dispatched through validation.experiment ------------------
#: every model and run flag: dest -> (option, argparse keywords, help)
FLAGS = {
    "link": ("--link", {}, "link g(z)"),
    "gamma": ("--gamma", {}, "power-law exponent"),
    "m": ("--m", {}, "number of directions, or inf"),
    "delta": ("--delta", {}, "noise variance"),
    "preprocessing": ("--preprocessing", {}, "T(y)"),
    "no_normalize": ("--no-normalize", {"action": "store_true", "default": None}, "use a_k = k^-gamma (no 1/sqrt(Z_m))"),
    "d": ("--d", {}, "dimension (Model S: of the simulation; Model C: of the model)"),
    "q": ("--q", {}, "Hermite degree of the features"),
    "eps": ("--eps", {}, "d1 = round(d^eps)"),
    "g_star": ("--g-star", {}, "outer link"),
    "alphas": ("--alphas", {}, "sizes LO:HI:N, LO:HI:Nlog or a list (alpha = n/d for S, n/D for C)"),
    "seeds": ("--seeds", {}, "number of seeds 0..N-1"),
    "estimator": ("--estimator", {}, "S: spectral, bayes (or both, for predict); validate: spectral, amp (= bayes) or both; C: layerwise"),
    "kappa_T": ("--kappa-T", {}, "substitute a value of kappa_T (Model S law)"),
    "solver": ("--solver", {"choices": ("auto", "diagonal", "matrix")},
               "spectral: per-direction split or the m x m form of docs/theory.md §2.2"),
    "bayes_samples": ("--bayes-samples", {}, "bayes: QMC draws of omega (power of two per replicate) or quadrature "
                                             "nodes per direction"),
    "init": ("--init", {"choices": ("uninformed", "informed", "both")},
             "bayes: start of the state evolution; both picks the branch of larger free entropy"),
    "float32": ("--float32", {"action": "store_true", "default": None}, "accumulate in float32"),
    "ds": ("--ds", {}, "dimensions, e.g. 200,400 (Model S sweeps)"),
}


def add_model_options(p, command: str, models=("S", "C")):
    """``--model`` and the flags of every model for ``command``, all defaulting to "not given";
    :func:`resolve_model` then applies the chosen model's defaults and refuses flags that do
    not apply to it."""
    from .experiment import MODEL_FLAG_HELP, experiment_for

    exps = [experiment_for(m) for m in models]
    if len(models) > 1:
        p.add_argument("--model", default="S", help=f"{MODEL_FLAG_HELP} (default: S)")
    dests = list(dict.fromkeys(d for e in exps for d in e.cli_flags(command)))
    for dest in dests:
        opt, kw, help_ = FLAGS[dest]
        defaults = [f"{e.name}: {e.cli_flags(command)[dest]}" for e in exps if dest in e.cli_flags(command)]
        shown = "; ".join(x for x in defaults if not x.endswith(": None") and not x.endswith(": False"))
        kw = dict(kw)
        kw.setdefault("default", None)
        p.add_argument(opt, dest=dest, help=help_ + (f" (default {shown})" if shown else ""), **kw)
    p.set_defaults(_command=command, _models=tuple(models), _model_dests=tuple(dests))


def resolve_model(args):
    """(experiment, model) for parsed arguments; unset flags get the model's defaults."""
    from .experiment import experiment_for

    exp = experiment_for(getattr(args, "model", args._models[0]))
    if exp.name not in args._models:
        raise CascadeError(f"--model: cascade {args._command} takes {' or '.join(args._models)}, got {args.model!r}")
    allowed = exp.cli_flags(args._command)
    for dest in args._model_dests:
        val = getattr(args, dest)
        if dest not in allowed:
            if val is not None:
                raise CascadeError(f"{FLAGS[dest][0]}: does not apply to cascade {args._command} --model {exp.name} "
                                   f"({exp.title}); its flags: "
                                   + ", ".join(FLAGS[d][0] for d in allowed))
            continue
        if val is None:
            setattr(args, dest, allowed[dest])
    return exp, exp.from_args(args)


def _out(path, name, kind="dir"):
    """A checked output path (see validation.outputs): refused before any work, nothing created."""
    from .outputs import check_writable

    return None if path is None else check_writable(path, name, kind)


def _int(text, name):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise CascadeError(f"{name}: expected an integer, got {text!r}") from None


def model_s_from_args(args):
    """The Model S of a command that has no --model option (finite-size, readout)."""
    return resolve_model(args)[1]


# --- subcommands --------------------------------------------------------------------
def cmd_exponents(args):
    from theory import c_gamma, mse_exponent

    if not args.measured:
        extra = [FLAGS[d][0] for d in args._model_dests if d != "gamma" and getattr(args, d) is not None]
        if extra:
            raise CascadeError(f"{extra[0]}: applies only with --measured (the exact exponent depends on gamma alone)")
        gamma = _gamma_arg(args.gamma or "13/10")
        rows = [{"gamma": gamma, "mse_exponent": mse_exponent(gamma), "C_gamma": c_gamma(gamma)}]
        return render_rows(rows, args.format, "Scaling law MSE ~ (C_gamma/Z) (alpha/kappa)^(-exponent)")
    from numerics.exponent_fit import fit_exponent

    exp, model = resolve_model(args)
    sizes = parse_alphas(args.alphas)
    if args.estimator not in ("spectral", "bayes", "both"):
        raise CascadeError(f"--estimator: spectral, bayes or both, got {args.estimator!r}")
    names = ("spectral", "bayes") if args.estimator == "both" else (args.estimator,)
    rows = []
    for name in names:
        opts = {"n_samples": _int(args.bayes_samples, "--bayes-samples")} if name == "bayes" and args.bayes_samples else {}
        f = fit_exponent(model, (sizes.min(), sizes.max()), n_alphas=len(sizes), estimator=name, **opts)
        rows.append({"estimator": name, "alpha_lo": float(f"{f.window[0]:.6g}"), "alpha_hi": float(f"{f.window[1]:.6g}"),
                     "n_alphas": len(sizes), "measured_exponent": round(f.exponent, 4),
                     "local_slope_min": round(f.local_slope_range[0], 4),
                     "local_slope_max": round(f.local_slope_range[1], 4), "exact_exponent": f.exact})
    head = (f"MSE ~ alpha^(-exponent) fitted on the d = infinity curve of {model} "
            "(least squares in log-log; docs/numerics.md)")
    return render_rows(rows, args.format, head)


def _gamma_arg(text):
    from theory import as_exact

    return as_exact(text, "gamma")


def cmd_hermite(args):
    from theory import hermite_moments, information_exponent

    mus = hermite_moments(args.link, args.kmax, dps=args.dps)
    rows = [{"k": k, "mu_k": v, "c_k": sp.simplify(v / sp.sqrt(sp.factorial(k)))} for k, v in mus.items()]
    if args.format == "latex":
        return "\n".join(f"\\mu_{{{r['k']}}} = {sp.latex(r['mu_k'])}" for r in rows)
    out = render_rows(rows, args.format)
    if args.format == "text":
        out += f"\ninformation exponent (k <= {args.kmax}): {information_exponent(args.link, max(args.kmax, 1), args.dps)}"
    return out


def cmd_thresholds(args):
    exp, model = resolve_model(args)
    head, rows = exp.thresholds(model, kappa_T=args.kappa_T, bayes=args.bayes_kind)
    return render_rows(rows, args.format, head)


def cmd_fluctuation(args):
    exp, model = resolve_model(args)
    sizes = parse_alphas(args.alphas)
    n = _int(args.latents, "--latents")
    if n < 10_000:
        raise CascadeError(f"--latents: expected an integer >= 10000 (the expectations' draws), got {args.latents!r}")
    head, rows = exp.fluctuation(model, sizes, _int(args.d, "--d"), n_samples=n)
    return render_rows(rows, args.format, head)


def parse_alphas(text: str, name: str = "--alphas"):
    """'1:2000:200log' (geometric), '1:10:10' (linear) or '5,20,50' (a list)."""
    from .grids import parse_grid

    try:
        return parse_grid(text, name)
    except ValueError as exc:
        raise CascadeError(str(exc)) from None


def cmd_predict(args):
    exp, model = resolve_model(args)
    sizes = parse_alphas(args.alphas)
    _out(args.out, "--out", "file")
    _out(args.plot, "--plot", "file")
    if exp.name == "S":
        n_samples = _int(args.bayes_samples, "--bayes-samples") if args.bayes_samples else None
        from .progress import Progress

        bar = Progress(len(sizes), "state evolution", enabled=args.estimator != "spectral" and not args.quiet)
        # the label law is the slow part of the spectral theory at large m: a bar over its rows
        law_bar = Progress(1, "d = infinity label law (rows)", enabled=args.estimator != "bayes" and not args.quiet)
        res = exp.predict_table(model, sizes, args.estimator, solver=args.solver or "auto", n_samples=n_samples,
                                init=args.init or "uninformed", progress=bar, law_progress=law_bar)
    else:
        res = exp.predict_table(model, sizes, args.estimator)
    table, thr = res["table"], res["thresholds"]
    table["thresholds_json"] = thr.to_json(orient="records")
    notes = []
    if args.out:
        from pathlib import Path

        p = Path(args.out)
        p.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(p.with_suffix(".parquet"), index=False)
        notes.append(f"wrote {p.with_suffix('.parquet')}")
    if args.plot:
        notes.append("wrote " + ", ".join(exp.plot_table(table, table["table_kind"].iloc[0], args.plot)))
    shown = without_metadata(table)
    if args.format == "json":
        return json.dumps({"model": model.describe(), "estimators": list(res["estimators"]),
                           "thresholds": json.loads(thr.to_json(orient="records")),
                           "settings": {k: _settings(v) for k, v in res["results"].items()},
                           "table": json.loads(shown.to_json(orient="records"))}, indent=2, default=str)
    if args.format == "csv":
        return shown.to_csv(index=False).rstrip("\n")
    if args.format == "latex":
        return shown.to_latex(index=False, float_format="%.4g") + "\n" + thr.to_latex(index=False, float_format="%.4g")
    return "\n".join([exp.predict_report(res), *notes])


def _settings(result):
    st = getattr(result, "settings", None)
    if st is None and isinstance(result, dict):
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in result.items() if k in ("D", "clip")}
    return st


def _seeds(text, name="--seeds"):
    n = _int(text, name)
    if n < 1:
        raise CascadeError(f"{name}: the number of seeds must be >= 1, got {n}")
    return range(n)


def cmd_validate(args):
    import numpy as np

    exp, model = resolve_model(args)
    sizes = parse_alphas(args.alphas)
    seeds = _seeds(args.seeds)
    _out(args.out, "--out")
    estimate = exp.estimate(model, sizes, seeds, estimator=args.estimator)
    if args.estimate:
        return estimate or f"--estimate: Model {exp.name}'s validate needs no estimate; it runs in about a minute"
    if estimate:
        print(estimate, file=sys.stderr, flush=True)
    if exp.name == "S":
        if args.scheduler is not None:
            raise CascadeError("--scheduler: Model S's validate runs locally; spread Model S work with "
                               "'cascade sweep run --scheduler'")
        res = exp.validate(model, d=_int(args.d, "--d"), alphas=sizes, seeds=seeds, outdir=args.out,
                           dtype=np.float32 if args.float32 else np.float64, progress=not args.quiet,
                           estimator=args.estimator)
        table = res["summary"]
    else:
        res = exp.validate(model, alphas=sizes, seeds=seeds, outdir=args.out, progress=not args.quiet,
                           estimator=args.estimator, **({"scheduler": args.scheduler} if args.scheduler else {}))
        table = res["table"]
    return render_frame(table, args.format, lambda: exp.report(res))


def _int_list(text, name):
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise CascadeError(f"{name}: expected a comma list of integers, got {text!r}") from None
    return vals


def cmd_finite_size(args):
    from pathlib import Path

    import numpy as np

    from .finite_size import finite_size_report, finite_size_study, plot_finite_size
    from .validate import Progress

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: simulation needs a finite m")
    ds = _int_list(args.ds, "--ds")
    seeds = _seeds(args.seeds)
    k = _int(args.k, "--k") if args.k else None
    _out(args.out, "--out")
    bar = Progress(len(ds) * len(seeds), "finite-size study", enabled=not args.quiet)
    res = finite_size_study(model, ds=ds, seeds=seeds, k=k, progress=bar,
                            dtype=np.float32 if args.float32 else np.float64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = plot_finite_size(res, out / "finite_size")
    res["summary"].to_parquet(out / "finite_size.parquet", index=False)
    files.append(str(out / "finite_size.parquet"))
    if args.format == "json":
        return json.dumps({"k": res["k"], "alpha_k": res["alpha_k"], "fit": res["fit"],
                           "per_d": res["per_d"].to_dict(orient="records"), "files": files}, indent=2)
    return render_frame(res["per_d"], args.format, lambda: finite_size_report(res) + "\nwrote " + ", ".join(files))


def cmd_readout(args):
    from .readout import readout_report, two_stage

    model = model_s_from_args(args)
    if model.m == sp.oo:
        raise CascadeError("--m: simulation needs a finite m")
    import pandas as pd

    frames = [two_stage(model, _int(args.d, "--d"), parse_alphas(args.alphas), s) for s in _seeds(args.seeds)]
    df = pd.concat(frames, ignore_index=True)
    return render_frame(df, args.format, lambda: readout_report(df))


def _sweep_spec_from_args(args):
    from .sweep import load_spec, sweep_spec

    if args.spec:
        return load_spec(args.spec)
    exp, model = resolve_model(args)
    grid = {"alphas": args.alphas, "seeds": len(_seeds(args.seeds))}
    if exp.name == "S":
        if not args.ds:
            raise CascadeError("sweep: give a spec file, or --ds (with --alphas and --seeds) and the model flags")
        grid["ds"] = _int_list(args.ds, "--ds")
    return sweep_spec({"name": args.name, "models": [model.describe()], "grid": grid})


def cmd_sweep(args):
    from .sweep import load_results, run_sweep, sweep_status

    spec = _sweep_spec_from_args(args)
    if args.action == "run":
        _out(args.store, "--store")
    if args.out is not None:
        if args.action != "collect":
            raise CascadeError(f"--out: applies to cascade sweep collect only, not {args.action}")
        _out(args.out, "--out", "file")
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
        return render_frame(df, args.format, lambda: df.to_string(index=False))
    jobs = _int(args.jobs, "--jobs")
    res = run_sweep(spec, args.store, jobs=jobs, scheduler=args.scheduler, progress=not args.quiet)
    if args.format == "json":
        return json.dumps(res, indent=2)
    lines = [f"sweep {res['name']} ({res['executor']}): {res['tasks']} tasks, {res['computed']} computed, "
             f"{res['skipped']} already stored, {res['failed']} failed, wall {res['wall_s']:.1f} s; store {res['store']}"]
    lines += [f"  failed {k}: {e}" for k, e in res["errors"].items()]
    return "\n".join(lines)


def cmd_reproduce(args):
    from .reproduce import optimal_report, reproduce

    jobs = _int(args.jobs, "--jobs")
    if jobs < 1:
        raise CascadeError(f"--jobs: must be an integer >= 1, got {jobs}")
    _out(args.out, "--out")
    _out(args.store, "--store")
    model_kw = {}
    for flag, dest in (("--gamma", "gamma"), ("--g-star", "g_star")):
        val = getattr(args, dest)
        if val is not None and args.name not in ("lag", "separation"):
            raise CascadeError(f"{flag}: only 'cascade reproduce lag' and 'cascade reproduce separation' take it "
                               "(the other figures fix their models)")
        if val is not None:
            model_kw[dest] = val
    if args.float32:
        if args.name != "D":
            raise CascadeError("--float32: only 'cascade reproduce D' takes it (the other figures run in float64)")
        model_kw["dtype"] = "float32"
    res = reproduce(args.name, outdir=args.out, full=args.full, jobs=jobs,
                    scheduler=args.scheduler, store=args.store, progress=not args.quiet, **model_kw)
    s = res["summary"]
    if args.name == "D-optimal":
        return optimal_report(res)
    if args.name == "lag":
        from .feature_lag import lag_report

        return lag_report(res)
    if args.name != "D":
        extra = ""
        if args.name == "separation":
            from .reproduce import separation_summary

            extra = "\n" + separation_summary(s).to_string(index=False, float_format=lambda v: f"{v:.3f}")
        if args.name == "S":
            extra = f"\ncollapse: crossover width ~ d^({res['fit']['width_exponent']:.3f} +- {res['fit']['width_exponent_se']:.3f})"
        return f"reproduced {args.name} at d = {res['d']}{extra}\nwrote " + ", ".join(res["files"])
    n_ok = int(s["agrees"].sum())
    return (f"reproduced {args.name} at d = {res['d']} with {res['seeds']} seeds in {res['dtype']} "
            f"({res['sweep']['computed']} tasks computed, {res['sweep']['skipped']} reused from the store); "
            f"{n_ok}/{len(s)} (alpha, k) points within the finite-size tolerance\nwrote " + ", ".join(res["files"]))


def cmd_coverage(args):
    from .coverage import table_coverage

    try:
        levels = [float(v) for v in args.levels.split(",")]
    except ValueError:
        raise CascadeError(f"--levels: expected a comma list of confidences in (0, 1), got {args.levels!r}") from None
    for v in levels:
        if not 0 < v < 1:
            raise CascadeError(f"--levels: each must be a confidence in (0, 1), got {v!r}")
    size = _int(args.group_size, "--group-size")
    if size < 1:
        raise CascadeError(f"--group-size: must be an integer >= 1, got {size}")
    quantities = [q.strip() for q in args.quantity.split(",")]
    for q in quantities:
        if q not in ("q_best", "q_rank", "proj"):
            raise CascadeError(f"--quantity: each must be q_best, q_rank or proj, got {q!r}")
    res = table_coverage(args.table, quantities, levels, size)

    def text():
        head = (f"coverage of compare's bounds over groups of {size} seeds (docs/theory.md §4.6); "
                "z: (fraction - level) / sd_level, the binomial sd with the design effect the groups show")
        return head + "\n" + res.to_string(index=False, float_format=lambda v: f"{v:.4g}")

    return render_frame(res, args.format, text)


def cmd_plot(args):
    from .reproduce import plot_table

    _out(args.out, "--out", "file")
    return "wrote " + ", ".join(plot_table(args.table, args.out))


def cmd_bench(args):
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cascade", description="Thresholds and exponents of hierarchical learning.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    e = sub.add_parser("exponents", help="MSE exponent 1 - 1/(2 gamma) and C_gamma")
    add_model_options(e, "exponents", models=("S",))
    e.add_argument("--measured", action="store_true",
                   help="also fit the exponent on the model's d = infinity MSE curve over --alphas")
    _add_format(e)
    e.set_defaults(func=cmd_exponents)

    h = sub.add_parser("hermite", help="Hermite moments mu_k = E[g(z) He_k(z)] of a link")
    h.add_argument("link", help='link in z, e.g. "He2/2 + He4/48", "relu(z)", "tanh(z)"')
    h.add_argument("--kmax", type=int, default=6, help="largest degree (default: %(default)s)")
    h.add_argument("--dps", type=int, default=30, help="digits for numeric links (default: %(default)s)")
    _add_format(h)
    h.set_defaults(func=cmd_hermite)

    t = sub.add_parser("thresholds", help="threshold laws (Model S or C); Bayes-optimal thresholds of Model S")
    add_model_options(t, "thresholds")
    t.add_argument("--bayes", dest="bayes_kind", choices=("scratch", "oracle", "sequential"), default=None,
                   help="Model S: the Bayes-optimal weak-recovery thresholds of docs/bayes.md §5 instead of the "
                        "spectral weak-signal law")
    _add_format(t)
    t.set_defaults(func=cmd_thresholds)

    pr = sub.add_parser("predict", help="d = infinity theory: Model S spectral and/or Bayes-optimal, Model C layer 1")
    add_model_options(pr, "predict")
    pr.add_argument("--plot", default=None, help="write the figure to this path (.png and .pdf)")
    pr.add_argument("--out", default=None, help="write the table to this path (.parquet); cascade plot redraws it")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(pr)
    pr.set_defaults(func=cmd_predict)

    fl = sub.add_parser("fluctuation", help="finite-d law of the outlier overlaps: sd, O(1/d) bias, the CLT's gate")
    add_model_options(fl, "fluctuation", models=("S",))
    fl.add_argument("--latents", default=str(2**19),
                    help="latent draws for the expectations (default: %(default)s; the bias's Monte Carlo sd is "
                         "about 0.2/d at 2^19, docs/theory.md §4.4)")
    _add_format(fl, ("text", "json", "csv"))
    fl.set_defaults(func=cmd_fluctuation)

    v = sub.add_parser("validate", help="main job: simulate at finite d and compare with the d = infinity theory")
    add_model_options(v, "validate")
    v.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument("--scheduler", default=None,
                   help="Model C: a Dask scheduler address; each run's layer-1 samples are drawn and kept by its workers")
    v.add_argument("--estimate", action="store_true",
                   help="print the estimated time and memory (Model C) and exit without simulating")
    _add_format(v, ("text", "json", "csv"))
    v.set_defaults(func=cmd_validate)

    fs = sub.add_parser("finite-size", help="finite-size smoothing of a threshold: distance, d^(-1/3) width, collapse")
    add_model_options(fs, "finite-size", models=("S",))
    fs.add_argument("--ds", default="250,500,1000,2000", help="dimensions (default: %(default)s)")
    fs.add_argument("--seeds", default="6", help="number of seeds per d (default: %(default)s)")
    fs.add_argument("--k", default=None, help="direction (default: the first with a continuous transition)")
    fs.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    fs.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(fs, ("text", "json", "csv"))
    fs.set_defaults(func=cmd_finite_size)

    ro = sub.add_parser("readout", help="two-stage network: spectral layer + ridge readout, excess risk vs theory")
    add_model_options(ro, "readout", models=("S",))
    ro.add_argument("--d", default="400", help="dimension (default: %(default)s)")
    ro.add_argument("--alphas", default="20,100,400", help="sample ratios (default: %(default)s)")
    ro.add_argument("--seeds", default="1", help="number of seeds (default: %(default)s)")
    _add_format(ro, ("text", "json", "csv"))
    ro.set_defaults(func=cmd_readout)

    sw = sub.add_parser("sweep", help="run a sweep of simulations into a resumable Parquet store (local or Dask)")
    sw.add_argument("action", choices=("run", "status", "collect"), help="run the pending tasks, show status, or collect the table")
    sw.add_argument("spec", nargs="?", default=None, help="TOML spec file (or give the model and grid flags)")
    add_model_options(sw, "sweep")
    sw.add_argument("--name", default="sweep", help="sweep name without a spec file (default: %(default)s)")
    sw.add_argument("--store", default="cascade-store", help="store directory (default: %(default)s)")
    sw.add_argument("--jobs", default="1", help="local worker processes (default: %(default)s)")
    sw.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    sw.add_argument("--out", default=None, help="collect: write the table to this Parquet file")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_format(sw, ("text", "json", "csv"))
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("reproduce", help="regenerate a figure of the seed papers (scaled down unless --full)")
    rp.add_argument("name", choices=("D", "D-optimal", "S", "separation", "lag"),
                    help="D: [D] MSE, overlaps, spectra; D-optimal: spectral vs Bayes-optimal (AMP, state "
                         "evolution, two-stage network, thresholds) on the same data; S: [S] NMSE/staircase vs "
                         "log n/log d, collapse; separation: layer-wise vs kernels, "
                         "random features and the shallow method at equal n; lag: the true Model C's lag "
                         "behind the GE staircase, per feature")
    rp.add_argument("--full", action="store_true", help="the papers' sizes (D: d = 1000, 70 seeds, resumable; "
                                                        "separation and lag: d = 20, 30, 40, 3 seeds)")
    rp.add_argument("--out", default="cascade-out", help="output directory (default: %(default)s)")
    rp.add_argument("--jobs", default="1", help="local worker processes (default: %(default)s)")
    rp.add_argument("--scheduler", default=None, help="Dask scheduler address")
    rp.add_argument("--store", default=None, help="sweep store for the simulations (default: OUT/store)")
    rp.add_argument("--gamma", default=None, help="lag and separation only: the power-law exponent of the "
                                                  "features (default 1; [S]'s experiments use 0.4)")
    rp.add_argument("--g-star", dest="g_star", default=None,
                    help="lag and separation only: the outer link (default z). For lag with another link n_GE "
                         "comes from the GE model simulated at the same d, since the d = infinity GE solver needs "
                         "the identity")
    rp.add_argument("--float32", action="store_true",
                    help="D only: accumulate in float32 (the same samples; 0.6-0.8 of the float64 time at d = 1000)")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    rp.set_defaults(func=cmd_reproduce, format="text")

    cv = sub.add_parser("coverage", help="how often compare's bounds hold: coverage over groups of seeds of a stored "
                                         "simulation table, with the error of correlated trials")
    cv.add_argument("table",
                    help="a per-seed Model S table (Parquet: cascade sweep collect --out, or validate.parquet)")
    cv.add_argument("--quantity", default="q_best,q_rank", help="q_best, q_rank and/or proj (default: %(default)s)")
    cv.add_argument("--levels", default="0.5,0.8,0.95", help="confidence levels (default: %(default)s)")
    cv.add_argument("--group-size", dest="group_size", default="6",
                    help="seeds per group, the S of compare's seed mean (default: %(default)s)")
    _add_format(cv, ("text", "json", "csv", "latex"))
    cv.set_defaults(func=cmd_coverage)

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


_USER_TYPE_ERROR = re.compile(r"^[\w\-\.\[\]]+: ")


def main(argv=None) -> int:
    """Run the CLI. Errors of the user's input (ValueError, NotImplementedError, a solver's
    ConvergenceError, and TypeErrors whose message names a parameter, "name: ...") print one
    line and exit 2; anything else is a bug and keeps its traceback."""
    from numerics import ConvergenceError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = args.func(args)
    except (CascadeError, ValueError, NotImplementedError, ConvergenceError) as exc:
        print(f"cascade {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TypeError as exc:
        if not _USER_TYPE_ERROR.match(str(exc)):
            raise
        print(f"cascade {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if out:
        print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
