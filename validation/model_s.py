r"""The Model S experiment (docs/theory.md §2): the shallow hierarchical multi-index model.

Estimators:

* ``spectral``: the preprocessed spectral estimator; theory ``numerics.predict`` (§2.2),
  finite-size algorithm ``validation.simulate`` (§2.1);
* ``bayes``: the Bayes-optimal estimator; theory ``numerics.bayes.state_evolution``
  (docs/bayes.md); its finite-size algorithm (AMP) is not built yet.

>>> from validation.experiment import experiment_for
>>> exp = experiment_for("S")
>>> sorted(exp.estimators)
['bayes', 'spectral']
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import sympy as sp

from theory import HierarchicalModel
from theory.model import DEFAULT_LINK, DEFAULT_PREPROCESSING

from .experiment import Estimator, Experiment, register, table_metadata, without_metadata

__all__ = ["ModelS", "SpectralEstimator", "BayesEstimator"]


class SpectralEstimator(Estimator):
    name = "spectral"
    summary = "spectral estimator D_n = (1/n) sum T(y) x x^T (docs/theory.md §2.1-2.2)"
    has_simulation = True

    def predict(self, model, sizes, solver: str = "auto", progress=None, **_):
        from numerics import predict

        return predict(model, sizes, solver=solver, progress=progress)


class BayesEstimator(Estimator):
    name = "bayes"
    summary = "Bayes-optimal estimator: state evolution with a Gaussian prior, AMP at finite d (docs/bayes.md)"
    has_simulation = True   # AMP (validation.amp), run by `cascade validate --estimator amp`

    def predict(self, model, sizes, init: str = "uninformed", n_samples=None, progress=None, **_):
        from numerics.bayes import state_evolution

        return state_evolution(model, sizes, init=init, n_samples=n_samples, progress=progress)


#: the wide prediction table holds q_k for k <= Q_COLUMNS (every threshold is in the thresholds table)
Q_COLUMNS = 20


class ModelS(Experiment):
    name = "S"
    aliases = ("shallow",)
    title = "Model S: y = sum_k a_k g_k(<w_k, x>) + sqrt(Delta) xi"
    size_name = "alpha = n/d"
    estimators = {"spectral": SpectralEstimator(), "bayes": BayesEstimator()}
    model_defaults = {"link": DEFAULT_LINK, "gamma": "13/10", "m": "10", "delta": "0",
                      "preprocessing": DEFAULT_PREPROCESSING, "no_normalize": False}
    run_defaults = {
        "validate": {"d": "600", "alphas": "2,5,10,20,50,100,200,400", "seeds": "6", "estimator": "spectral"},
        "predict": {"alphas": "1:2000:40log", "estimator": "spectral"},
        "sweep": {"alphas": "5,20,50", "seeds": "4"},
        "exponents": {"alphas": "10:1000:41log", "estimator": "spectral"},
        "fluctuation": {"d": "400", "alphas": "5,10,20,50"},
    }
    #: flags that exist for a command, beyond the model fields
    run_flags = {"validate": ("d", "alphas", "seeds", "estimator", "float32"), "finite-size": ("float32",),
                 "predict": ("alphas", "estimator", "solver", "bayes_samples", "init"),
                 "thresholds": ("kappa_T",), "sweep": ("ds", "alphas", "seeds"),
                 "exponents": ("alphas", "estimator", "bayes_samples"), "fluctuation": ("d", "alphas")}

    # -- flags --------------------------------------------------------------------------
    def cli_flags(self, command: str) -> dict:
        out = dict(self.model_defaults)
        for dest in self.run_flags.get(command, ()):
            out[dest] = self.run_defaults.get(command, {}).get(dest)
        return out

    def from_args(self, args):
        m = args.m
        if isinstance(m, str) and m.strip().lower() not in ("inf", "oo"):
            try:
                m = int(m)
            except ValueError:
                raise ValueError(f"--m: expected an integer >= 1 or inf, got {args.m!r}") from None
        return HierarchicalModel(link=args.link, gamma=args.gamma, m=m, delta=args.delta,
                                 normalize=not args.no_normalize, preprocessing=args.preprocessing)

    def model_from_description(self, desc):
        return HierarchicalModel.from_description(desc)

    # -- theory ---------------------------------------------------------------------------
    def thresholds(self, model, kappa_T=None, bayes=None):
        """Per-direction thresholds: the spectral weak-signal laws (symbolic, ``kappa_T`` substituted
        when given) or, with ``bayes`` = "scratch" | "oracle" | "sequential", the Bayes-optimal
        weak-recovery thresholds of docs/bayes.md §5."""
        if bayes is not None:
            from numerics.bayes import bayes_thresholds

            if model.m == sp.oo:
                raise ValueError("--m: the Bayes-optimal thresholds need a finite m")
            b = bayes_thresholds(model, bayes)
            rows = [{"k": k + 1, "alpha_k_bayes": float(v), "se": float(e), "trivial": bool(t)}
                    for k, (v, e, t) in enumerate(zip(b.alphas, b.se, b.trivial))]
            return (f"Bayes-optimal weak-recovery thresholds ({bayes}; docs/bayes.md §5); "
                    "trivial: E[z_k | y] != 0, so 0"), rows
        from theory import critical_alpha_law, mse_exponent
        from theory.model import as_exact
        from theory.symbols import kappa_T as KT

        kmax = model.m if model.m != sp.oo else 10
        kt = as_exact(kappa_T, "--kappa-T", allow_symbol=False) if kappa_T is not None else None
        rows = []
        for k in range(1, kmax + 1):
            law = critical_alpha_law(model, k)
            rows.append({"k": k, "alpha_k": law.subs(KT, kt) if kt is not None else law})
        head = (f"Weak-signal thresholds alpha_k ~ kappa_T Z k^(2 gamma) / mu_2^2 "
                f"(MSE exponent {mse_exponent(model.gamma)})")
        return head, rows

    def fluctuation(self, model, alphas, d: int, n_samples: int = 2**19):
        r"""The finite-d law of the outlier overlaps at dimension ``d`` (docs/theory.md §4.2-4.4), one row per
        outlier that the exact law has and the ``n_samples`` latent draws find: the d = infinity overlap ``q``,
        ``sigma`` (:math:`\sqrt d` sd), ``eps`` = sigma / (sqrt(d) q) (the CLT's gate is eps <=
        EPS_CLT = 1/2, :mod:`validation.compare`) and ``d_bias`` (d times the O(1/d) bias, where eps <= EPS_CLT).
        Uncoupled directions: per (alpha, k), from :func:`numerics.outlier_moments`. Coupled ones (the matrix
        solver): per (alpha, branch, k), the branch's share of w_k (:func:`numerics.branch_fluctuation`), with its
        outlier eigenvalue ``zeta`` (the exact d = infinity location of ``predict``), that eigenvalue's ``zeta_sigma``
        (:math:`\sqrt d` sd), ``d_zeta_bias`` (d times its O(1/d) mean shift, where the branch's largest share has
        eps <= EPS_CLT) and ``gap_sigma`` (:math:`\sqrt d` sd of the eigenvalue minus the edge of the realised labels,
        what the estimator's cut sees; docs/theory.md §4.3), and per (alpha, k) a row with branch ``"all"``: the
        projection on every outlier branch, the sum of the shares, with its sd from the branches' joint law
        (:func:`numerics.branch_fluctuation.branch_covariance`) and the summed bias; compare's proj uses it where the
        estimator's cut keeps every branch (docs/theory.md §4.3, "The projection on coupled branches"). ``"all"``
        rows need two branches or more, each found by the draws."""
        from numerics import branch_fluctuation, outlier_moments
        from numerics.branch_fluctuation import projection_law
        from theory.model import integer
        from validation.compare import EPS_CLT, branch_clear

        if model.m == sp.oo:
            raise ValueError("--m: the finite-d laws need a finite m")
        d = integer(d, "--d", int(model.m) + 1)
        p = self.predict(model, alphas, "spectral")
        a = np.asarray(p.alphas, dtype=float)
        rows = []
        with np.errstate(divide="ignore", invalid="ignore"):
            if p.settings.get("solver") == "matrix":
                r = branch_fluctuation(model, a, n_samples=n_samples, d=d)
                for ia in range(a.size):
                    # an outlier that the exact law has and the latent draws find (near a threshold they may not agree)
                    exact, found = np.isfinite(p.branch_q[ia]), np.isfinite(r["lam"][ia])
                    for i in np.flatnonzero(exact & found):
                        share = p.branch_shares[ia, i]
                        eps = r["sigma"][ia, i] / (np.sqrt(d) * share)
                        clear = branch_clear(r["sigma"][ia, i], share, d)
                        zb = d * r["zeta_bias"][ia, i] if clear and np.isfinite(r["zeta_bias"][ia, i]) else None
                        for k in range(model.m):
                            bias = d * r["bias"][ia, i, k]
                            rows.append({"alpha": a[ia], "branch": i + 1, "k": k + 1, "q": share[k],
                                         "sigma": r["sigma"][ia, i, k], "eps": eps[k],
                                         "d_bias": bias if eps[k] <= EPS_CLT and np.isfinite(bias) else None,
                                         "zeta": p.eigenvalues[ia, i], "zeta_sigma": r["zeta_sigma"][ia, i],
                                         "d_zeta_bias": zb, "gap_sigma": np.sqrt(r["gap_cov"][ia, i, i])})
                    b = np.flatnonzero(exact)
                    if b.size < 2 or not np.array_equal(exact, found):  # one branch: its own rows say it
                        continue
                    qs, ss, bs = projection_law(p.branch_shares[ia], r["share_cov"][ia], r["bias"][ia], b)
                    for k in range(model.m):  # the projection on every outlier branch (docs/theory.md §4.3)
                        q, s, bias = float(qs[k]), float(ss[k]), float(bs[k])
                        eps = s / (np.sqrt(d) * q)
                        rows.append({"alpha": a[ia], "branch": "all", "k": k + 1, "q": q, "sigma": s, "eps": eps,
                                     "d_bias": d * bias if eps <= EPS_CLT and np.isfinite(bias) else None,
                                     "zeta": None, "zeta_sigma": None, "d_zeta_bias": None, "gap_sigma": None})
                head = ("coupled directions: per outlier branch, its share q of w_k, and (branch all) their sum, the "
                        "projection on every outlier branch (docs/theory.md §4.3)")
            else:
                r = outlier_moments(model, a, d, n_samples=n_samples, eps_max=EPS_CLT)
                for ia, k in zip(*np.nonzero(np.isfinite(r["sigma"]) & (p.q > 0))):
                    s = r["sigma"][ia, k]
                    rows.append({"alpha": a[ia], "k": k + 1, "q": p.q[ia, k], "sigma": s,
                                 "eps": s / (np.sqrt(d) * p.q[ia, k]),
                                 "d_bias": d * r["bias"][ia, k] if np.isfinite(r["bias"][ia, k]) else None})
                head = "per direction with an outlier (docs/theory.md §4.2, §4.4)"
        rows = [{key: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v) for key, v in row.items()}
                for row in rows]
        if not rows:
            head += "; no outlier at these alphas"
        return (f"Finite-d law of the outlier overlaps at d = {d}: sqrt(d) (q_d - q) ~ N(d_bias/sqrt(d), sigma^2); "
                f"{head}; eps = sigma/(sqrt(d) q) <= {EPS_CLT} is where it holds (d_bias: none beyond); "
                f"{n_samples} latent draws"), rows

    def predict_table(self, model, alphas, estimator: str, solver="auto", n_samples=None, init="uninformed",
                      progress=None, law_progress=None) -> dict:
        """Theory of one estimator or both on an alpha grid: a tidy table, per-direction thresholds
        and the result objects."""
        if estimator not in ("spectral", "bayes", "both"):
            raise ValueError(f"--estimator: Model S has spectral, bayes or both, got {estimator!r}")
        names = ("spectral", "bayes") if estimator == "both" else (estimator,)
        if model.m == sp.oo and "bayes" in names:
            raise ValueError("--m: the Bayes-optimal state evolution needs a finite m (m = inf: --estimator spectral)")
        results = {}
        table = pd.DataFrame({"alpha": np.asarray(alphas, dtype=float)})
        thr = None
        if "spectral" in names:
            p = self.predict(model, alphas, "spectral", solver=solver, progress=law_progress)
            results["spectral"] = p
            n = p.q.shape[1]  # m, or at m = inf the directions reported
            thr = pd.DataFrame({"k": np.arange(1, n + 1), "alpha_k_spectral": p.thresholds})
            table["bulk_edge"], table["n_outliers"] = p.bulk_edge, p.n_outliers
            table["mse_spectral"], table["mse_plugin_spectral"] = p.mse, p.mse_plugin
            for k in range(min(n, Q_COLUMNS)):
                table[f"q_{k + 1}_spectral"] = p.q[:, k]
        if "bayes" in names:
            se = self.predict(model, alphas, "bayes", n_samples=n_samples, init=init, progress=progress)
            results["bayes"] = se
            if thr is None:
                thr = pd.DataFrame({"k": np.arange(1, model.m + 1)})
            table["mse_bayes"], table["mse_bayes_se"] = se.mse, se.mse_se
            for k in range(min(model.m, Q_COLUMNS)):
                table[f"q_{k + 1}_bayes"] = se.q[:, k]
            if se.branch is not None:
                table["branch"] = se.branch
            thr["alpha_k_bayes_grid"] = se.threshold_estimates()
        if len(names) == 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                thr["ratio_spectral_over_bayes"] = thr["alpha_k_spectral"] / thr["alpha_k_bayes_grid"]
        for key, val in table_metadata(model, "prediction").items():
            table[key] = val
        return {"table": table, "thresholds": thr, "results": results, "model": model, "estimators": names}

    def predict_report(self, res: dict) -> str:
        """The text report of :meth:`predict_table` (cascade predict)."""
        fmt = lambda v: f"{v:.4g}"  # noqa: E731
        head = ["d = infinity prediction, Model S (MSE: optimal shrinkage sum a_k^2 (1 - q_k^2))",
                "estimators: " + ", ".join(f"{n} ({self.estimator(n).summary})" for n in res["estimators"])]
        if "spectral" in res["results"]:
            solver = res["results"]["spectral"].settings["solver"]
            head.append(f"spectral solver: {solver}" + (" (coupled directions: q_k are subspace projections, "
                                                        "thresholds are per eigen-branch)" if solver == "matrix" else ""))
        if "bayes" in res["results"]:
            se = res["results"]["bayes"]
            st = se.settings
            head.append(f"bayes: {st['method']} over omega ({st['n_draws']} draws"
                        + (f", {st['replicates']} replicates: mse_bayes_se is their standard error"
                           if st["method"] == "qmc" else "")
                        + f"), init {st['init']}; thresholds read off this grid (alpha_k_bayes_grid; "
                        "cascade thresholds --bayes sequential resolves them)")
            for t in se.transitions:
                head.append(f"  first-order transition ({t['kind']}) near alpha = {t['alpha']:.4g}, "
                            f"bracket {t['bracket']}")
        thr = res["thresholds"]
        more = len(thr) - Q_COLUMNS
        head.append("thresholds:\n" + thr.head(Q_COLUMNS).to_string(index=False, float_format=fmt)
                    + (f"\n  ... {more} more directions (--format json or --out write them all)" if more > 0 else ""))
        if "spectral" in res["results"]:
            st = res["results"]["spectral"].settings
            if "exact_directions" in st:
                head.append(f"large m: {st['exact_directions']} exact directions, the tail closed (closure error "
                            f"{st['closure_error']:.1e}, docs/numerics.md \"Large m\"); q_k shown for k <= "
                            f"{min(Q_COLUMNS, len(thr))} of {len(thr)} reported")
        shown = without_metadata(res["table"])
        return "\n".join([*head, shown.to_string(index=False, float_format=fmt)])

    # -- simulation ---------------------------------------------------------------------------
    def simulate(self, model, sizes, seed, d=600, dtype=np.float64, estimator="spectral", max_iter=None,
                 damping=None, **kw):
        """One sweep task: the spectral estimator (``simulate_task``) or AMP from the spectral start
        (``amp_table`` with ``max_iter`` and ``damping``, run_amp's defaults when None) on the same
        seeded samples."""
        if estimator == "amp":
            from .amp import amp_table

            opts = {k: v for k, v in (("max_iter", max_iter), ("damping", damping)) if v is not None}
            if "chunk" in kw:   # the sample stream's batch size is part of what fixes the noisy data
                opts["chunk"] = kw["chunk"]
            return amp_table(model, d, sizes, [seed], **opts)
        if estimator != "spectral":
            raise ValueError(f"estimator: a Model S task runs 'spectral' or 'amp', got {estimator!r}")
        from .simulate import simulate_task

        return simulate_task(model, d, sizes, seed, dtype=dtype, **kw)[0]

    def validate(self, model, d, alphas, seeds, outdir, dtype=np.float64, progress=True, estimator="spectral"):
        from .validate import run_validate

        if estimator not in ("spectral", "amp", "bayes", "both"):
            raise ValueError(f"--estimator: validate runs spectral, amp (the Bayes-optimal algorithm; also spelled "
                             f"bayes) or both on the same data, got {estimator!r}")
        if model.m == sp.oo:
            raise ValueError("--m: simulation needs a finite m")
        out = {}
        if estimator in ("amp", "bayes", "both"):
            import sys

            from .amp import OutputDenoiser, amp_cost_seconds, run_validate_amp

            OutputDenoiser(model)  # a model AMP cannot run is refused before the spectral part starts
            est = amp_cost_seconds(model, d, alphas, seeds)
            if progress and est > 10:
                print(f"AMP: estimated {est / 60:.1f} min for {len(list(seeds))} seeds x {len(alphas)} alphas at "
                      f"d = {d} (about 100 iterations each)", file=sys.stderr)
        if estimator in ("spectral", "both"):
            out["spectral"] = run_validate(model, d=d, alphas=alphas, seeds=seeds, outdir=outdir, dtype=dtype,
                                           progress=progress)
        if estimator in ("amp", "bayes", "both"):
            out["amp"] = run_validate_amp(model, d, alphas, seeds, outdir=outdir, progress=progress)
        if len(out) == 1:
            return next(iter(out.values()))
        summary = pd.concat([r["summary"].assign(estimator=name) for name, r in out.items()], ignore_index=True)
        return {**out, "summary": summary}

    def report(self, result):
        from .amp import format_amp_report
        from .validate import format_report

        if "spectral" in result and "amp" in result:
            return format_report(result["spectral"]) + "\n\n" + format_amp_report(result["amp"])
        return format_amp_report(result) if "state_evolution" in result else format_report(result)

    # -- figures from tables ------------------------------------------------------------------------
    def plot_table(self, df, kind, out):
        from .plots import plot_estimators, plot_prediction, plot_spectra
        from .reproduce import prediction_grid

        model = self.model_from_description(json.loads(df["model_json"].iloc[0]))
        if kind == "spectra":
            spectra = {a: g["eigenvalue"].to_numpy() for a, g in df.groupby("alpha")}
            return plot_spectra(model, spectra, int(df["d"].iloc[0]), out)
        if kind == "prediction":
            return plot_estimators(df, model, out)
        if kind == "optimal":
            from .reproduce import plot_D_optimal

            return plot_D_optimal(df, out)
        if kind != "comparison":
            raise ValueError(f"table: Model S draws comparison, prediction, spectra and optimal tables, not {kind!r}")
        need = {"alpha", "k", "q_sim", "q_sem", "mse_sim", "mse_sem"}
        if not need <= set(df.columns):
            raise ValueError(f"table: expected the columns {sorted(need)} of a comparison summary")
        pred = prediction_grid(model, np.unique(df["alpha"].to_numpy()))
        return plot_prediction(pred, out, sim=df)


def write_prediction(res: dict, out) -> list[str]:
    """Write a predict table (Parquet) next to its figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res["table"].to_parquet(out.with_suffix(".parquet"), index=False)
    return [str(out.with_suffix(".parquet"))]


register(ModelS())
