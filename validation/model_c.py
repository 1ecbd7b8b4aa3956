r"""The Model C experiment (docs/theory.md §3): the compositional model, its layer-wise algorithm.

Estimator ``layerwise``: theory ``numerics.layer1_prediction`` (the GE layer 1 through the
Model S solver) and the closed forms of ``theory.compositional``; finite-size algorithm
``validation.compositional.run_layerwise`` on the Gaussian-equivalent (``ge``), the true
(``true``) and the true model with the Wick-ordered layer 1 (``true-wick``).

Sizes are n/D (samples per degree-2 feature).

>>> from validation.experiment import experiment_for
>>> experiment_for("C").cli_flags("validate")["d"]
'30'
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from theory import CompositionalModel

from .experiment import Estimator, Experiment, register, table_metadata, without_metadata

__all__ = ["ModelC", "LayerwiseEstimator", "SERIES"]

#: the finite-size series of Model C: (label, sampler kind, layer-1 estimator)
SERIES = (("ge", "ge", "plain"), ("true", "true", "plain"), ("true-wick", "true", "wick"))


class LayerwiseEstimator(Estimator):
    name = "layerwise"
    summary = "layer-wise spectral algorithm (docs/theory.md §3)"
    has_simulation = True

    def predict(self, model, sizes, **_):
        from numerics import layer1_prediction

        return layer1_prediction(model, n=[int(round(r * model.D)) for r in np.atleast_1d(sizes)])


class ModelC(Experiment):
    name = "C"
    aliases = ("compositional",)
    title = "Model C: y = g*(sum_i b_i He2(<A_i, Z(x)>))"
    size_name = "n/D"
    estimators = {"layerwise": LayerwiseEstimator()}
    model_defaults = {"d": "100", "q": "2", "eps": "1/2", "gamma": "1", "g_star": "z"}
    run_defaults = {
        "validate": {"d": "30", "alphas": "10,20,50,100,200", "seeds": "2", "estimator": "layerwise"},
        "predict": {"alphas": "10,20,50,100,200,500", "estimator": "layerwise"},
        "sweep": {"alphas": "10,50,200", "seeds": "2"},
    }
    run_flags = {"validate": ("alphas", "seeds", "estimator"), "predict": ("alphas", "estimator"), "thresholds": (),
                 "sweep": ("alphas", "seeds")}

    def cli_flags(self, command: str) -> dict:
        out = dict(self.model_defaults)
        if command in self.run_defaults and "d" in self.run_defaults[command]:
            out["d"] = self.run_defaults[command]["d"]
        for dest in self.run_flags.get(command, ()):
            out[dest] = self.run_defaults.get(command, {}).get(dest)
        return out

    def from_args(self, args):
        def integer(text, flag):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{flag}: expected an integer, got {text!r}") from None

        return CompositionalModel(d=integer(args.d, "--d"), q=integer(args.q, "--q"), eps=args.eps, gamma=args.gamma,
                                  g_star=args.g_star)

    def model_from_description(self, desc):
        return CompositionalModel.from_description(desc)

    # -- theory ---------------------------------------------------------------------------
    def thresholds(self, model, bayes=None, **_):
        if bayes is not None:
            raise ValueError("--bayes: Model C has no Bayes-optimal thresholds (Model S only)")
        import sympy as sp

        from theory import separation, threshold_exponents, thresholds_n

        ns, ks = thresholds_n(model), threshold_exponents(model)
        rows = [{"i": i + 1, "n_star": n_, "kappa_i": sp.nsimplify(k_) if k_.is_Rational else k_.evalf(6)}
                for i, (n_, k_) in enumerate(zip(ns, ks))]
        sep = separation(model)
        head = (f"Model C (GE layer 1): D = {model.D}, d1 = {model.d1}; n_i* = D/(4 theta_i^2); "
                f"layer-wise exponent {sep['layerwise']}, kernel exponent {sep['kernel']}")
        return head, rows

    def predict_table(self, model, ratios, estimator="layerwise", **_):
        self.estimator(estimator)
        r = self.predict(model, ratios, estimator)
        rows = []
        for j, n in enumerate(r["n"]):
            for i in range(model.d1):
                rows.append({"n_over_D": float(r["alpha"][j]), "n": int(n), "i": i + 1, "rho2_solver": r["rho2"][j, i],
                             "rho2_closed_form": r["rho2_closed_form"][j, i]})
        table = pd.DataFrame(rows)
        for key, val in table_metadata(model, "layer1").items():
            table[key] = val
        _, thr_rows = self.thresholds(model)
        thr = pd.DataFrame([{"i": t["i"], "n_star": float(t["n_star"])} for t in thr_rows])
        return {"table": table, "thresholds": thr, "results": {"layerwise": r}, "model": model,
                "estimators": (estimator,)}

    def predict_report(self, res: dict) -> str:
        """The text report of :meth:`predict_table` (cascade predict --model C)."""
        fmt = lambda v: f"{v:.4g}"  # noqa: E731
        model = res["model"]
        shown = without_metadata(res["table"])
        return "\n".join([f"d = infinity prediction, Model C layer 1 (GE, via the Model S solver): D = {model.D}, "
                          f"d1 = {model.d1}", "thresholds n_i*:\n" + res["thresholds"].to_string(index=False, float_format=fmt),
                          shown.to_string(index=False, float_format=fmt)])

    # -- simulation ---------------------------------------------------------------------------
    def simulate(self, model, sizes, seed, series=SERIES, client=None, **_):
        """Rows of the layer-wise algorithm at n = ratio D for each series (one seed). With a Dask
        ``client`` the matrix-free layer 1 keeps its sample blocks on the cluster's workers."""
        from numerics import layer1_prediction

        from .compositional import run_layerwise

        rows = []
        for label, kind, estimator in series:
            for ratio in np.atleast_1d(sizes):
                n = int(ratio * model.D)
                r = run_layerwise(model, n=n, seed=int(seed), kind=kind, estimator=estimator, client=client)
                # the d = infinity GE solver covers g_star = identity only (docs/theory.md §3)
                theory = layer1_prediction(model, n=[n], signs=r["signs"])["rho2"][0] \
                    if (kind == "ge" and model.is_identity_link) else np.full(model.d1, np.nan)
                for i in range(model.d1):
                    rows.append({"kind": label, "estimator": estimator, "n": n, "log_d_n": np.log(n) / np.log(model.d),
                                 "seed": int(seed), "i": i + 1, "proj": r["feature_proj"][i],
                                 "proj_top": r["feature_proj_top"][i],
                                 "cos2_best": r["feature_cos2"][i], "rho2_solver": theory[i], "nmse": r["nmse"],
                                 "recovered": r["recovered"], "k_sel": r["k_sel"],
                                 "subspace_overlap": r["subspace_overlap"]})
        return pd.DataFrame(rows)

    def estimate(self, model, sizes, seeds, estimator="layerwise", **_):
        from .validate_compositional import estimate_validate_compositional

        self.estimator(estimator)  # a bad --estimator is refused before anything is timed or printed
        return estimate_validate_compositional(model, ratios=[float(a) for a in sizes], seeds=list(seeds))["text"]

    def validate(self, model, alphas, seeds, outdir, progress=True, estimator="layerwise", scheduler=None, **_):
        from .progress import Progress
        from .validate_compositional import run_validate_compositional

        self.estimator(estimator)
        seeds = list(seeds)
        bar = Progress(len(SERIES) * len(alphas) * len(seeds), "simulating Model C", enabled=progress)
        if scheduler is None:
            return run_validate_compositional(model, ratios=[float(a) for a in alphas], seeds=seeds, outdir=outdir,
                                              progress=bar)
        from .sweep import _connect

        with _connect(scheduler) as client:  # one run at a time, its layer-1 samples spread over the workers
            return run_validate_compositional(model, ratios=[float(a) for a in alphas], seeds=seeds, outdir=outdir,
                                              progress=bar, client=client)

    def report(self, result):
        from .validate_compositional import format_compositional

        return format_compositional(result)

    def plot_table(self, df, kind, out):
        from .reproduce import plot_S, plot_separation
        from .validate_compositional import plot_compositional_table

        if kind == "separation":
            return plot_separation(df, out)
        if kind == "lag":
            from .feature_lag import plot_lag

            return plot_lag(df, out)
        if kind == "staircase" and "gamma" in df.columns and df["gamma"].nunique() > 1:
            return plot_S(df, out)
        if kind == "layer1":
            from .plots import plot_layer1

            return plot_layer1(df, self.model_from_description(json.loads(df["model_json"].iloc[0])), out)
        if kind in ("staircase", "compositional"):
            model = self.model_from_description(json.loads(df["model_json"].iloc[0]))
            return plot_compositional_table(model, df, out)
        raise ValueError(f"table: Model C draws staircase, compositional, separation and lag tables, not {kind!r}")


register(ModelC())
