r"""``cascade reproduce NAME``: the figure types of the seed papers, scaled down by default.

``D`` ([D], Defilippis et al.): MSE_gamma vs alpha with the power-law guide and the
per-direction overlaps (their Fig. 1: m = 10, d = 1000, 70 instances, gamma = 1.3,
g = He2/2 + He4/48, T = y/(1+|y|)), and the spectra at alpha = 5, 164, 611, 1638 with the
d = infinity bulk density (their Figs. 2-3: m = 20). The default runs d = 300 with 4 seeds
(about a minute on 2 cores); ``full=True`` runs the papers' sizes (d = 1000, 70 seeds,
about an hour on 2 cores, extrapolated; 43 minutes measured with ``dtype="float32"``, docs/figures/D.md): the simulations go through the
resumable sweep store, so an interrupted run continues where it stopped, and
``jobs``/``scheduler`` spread it out.

``S`` ([S], Wortsman-Zurich et al.): Model C (Gaussian-equivalent, d = 30, q = 2, D = 465,
d1 = 5) for gamma = 1/2, 1, 3/2: NMSE and the per-feature overlaps against log n / log d with
the staircase, and the finite-size collapse of a threshold (Model S machinery, docs/theory.md §4).
``separation``: the true Model C (d = 30; d = 20, 30, 40 with three seeds with ``full``),
layer-wise against Nystrom kernel ridge (RBF, polynomial of degree 2q), random-feature ridge and
the shallow spectral method, every method trained on the same draw of all n samples, well below
d^(2q).

Every figure is written as PNG and PDF next to the Parquet table it was drawn from;
``cascade plot TABLE`` redraws it from the table alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from numerics import predict
from theory import HierarchicalModel

from .compare import compare
from .experiment import description_digest, table_metadata
from .plots import plot_prediction, plot_spectra
from .simulate import simulate_task
from .sweep import load_results, run_sweep, sweep_spec

__all__ = ["FIGURES", "reproduce", "plot_table", "prediction_grid", "reproduce_D_optimal", "plot_D_optimal",
           "optimal_report"]

D_SPECTRUM_ALPHAS = (5.0, 164.0, 611.0, 1638.0)
D_ALPHAS = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 164.0, 300.0, 611.0, 1000.0, 1638.0)


def prediction_grid(model, alphas):
    """The spectral prediction on a fine geometric grid around (and including) the given alphas."""
    grid = np.geomspace(min(alphas) / 2, max(alphas) * 2, 160)
    return predict(model, np.unique(np.concatenate([grid, alphas])))


def reproduce_D(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                d: int | None = None, seeds: int | None = None, dtype: str = "float64") -> dict:
    """[D] figures; ``d``/``seeds`` override the preset sizes (for quick checks). ``dtype="float32"``
    accumulates in single precision (the same samples, docs/reliability.md §"float32"; its tasks are
    stored in their own sweep, ``reproduce-D-d{d}-float32``)."""
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype: must be 'float64' or 'float32', got {dtype!r}")
    outdir = Path(outdir)
    d0, s0 = (1000, 70) if full else (300, 4)
    d, seeds = d or d0, seeds or s0
    model = HierarchicalModel(m=10)
    spec = sweep_spec({"name": f"reproduce-D-d{d}" + ("-float32" if dtype == "float32" else ""),
                       "models": [model.describe()], "options": {"dtype": dtype},
                       "grid": {"ds": [d], "alphas": list(D_ALPHAS), "seeds": seeds}})
    store = store or outdir / "store"
    run = run_sweep(spec, store, jobs=jobs, scheduler=scheduler, progress=progress)
    if run["failed"]:
        raise RuntimeError(f"reproduce D: {run['failed']} simulation task(s) failed: {run['errors']}")
    rows = load_results(spec, store)
    pred = prediction_grid(model, np.array(D_ALPHAS))
    summary = compare(pred, rows)
    for key, val in table_metadata(model, "comparison").items():
        summary[key] = val
    files = []
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    summary.to_parquet(outdir / "reproduce_D.parquet", index=False)
    files += plot_prediction(pred, outdir / "reproduce_D_mse_overlaps", sim=summary)
    files.append(str(outdir / "reproduce_D.parquet"))
    m20 = HierarchicalModel(m=20)
    _, spectra = simulate_task(m20, d, D_SPECTRUM_ALPHAS, seed=0, keep_spectrum=True, dtype=np.dtype(dtype).type)
    spec_table = pd.DataFrame([{"alpha": a, "eigenvalue": float(e)} for a in D_SPECTRUM_ALPHAS for e in spectra[a]])
    spec_table["d"] = d
    for key, val in table_metadata(m20, "spectra").items():
        spec_table[key] = val
    spec_table.to_parquet(outdir / "reproduce_D_spectra.parquet", index=False)
    files += plot_spectra(m20, {a: spectra[a] for a in D_SPECTRUM_ALPHAS}, d, outdir / "reproduce_D_spectra")
    files.append(str(outdir / "reproduce_D_spectra.parquet"))
    return {"files": files, "summary": summary, "sweep": run, "d": d, "seeds": seeds, "dtype": dtype}


def reproduce_S(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                d: int | None = None, seeds: int | None = None) -> dict:
    """[S] figure types: NMSE / overlaps / staircase vs log n / log d for several gamma, and a collapse."""
    from theory import CompositionalModel

    from .finite_size import finite_size_study, plot_finite_size
    from .validate_compositional import plot_compositional, run_validate_compositional

    outdir = Path(outdir)
    d = d or (40 if full else 30)
    nseeds = seeds or (8 if full else 2)
    files, tables, runs = [], [], []
    for gamma in ("1/2", "1", "3/2"):
        model = CompositionalModel(d=d, eps="1/2", gamma=gamma)
        sub = outdir / f"S_gamma_{gamma.replace('/', '_')}"
        res = run_validate_compositional(model, ratios=(10, 20, 50, 100, 200), seeds=range(nseeds), outdir=sub,
                                         baseline_cap=2000, jobs=jobs, scheduler=scheduler, store=store or outdir / "store")
        files += [f for f in res["files"] if f.endswith(".png")]
        tables.append(res["table"].assign(gamma=gamma))
        runs.append(res["sweep"])
    table = pd.concat(tables, ignore_index=True)
    table["table_kind"] = "staircase"
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    table.to_parquet(outdir / "reproduce_S.parquet", index=False)
    files += plot_S(table, outdir / "reproduce_S")
    study = finite_size_study(HierarchicalModel(m=1, link="He2", preprocessing="clip(y, -1, 3)"),
                              ds=(100, 200, 400, 800) if not full else (250, 500, 1000, 2000),
                              seeds=range(8 if not full else 24))
    study["summary"].to_parquet(outdir / "reproduce_S_collapse.parquet", index=False)
    files += plot_finite_size(study, outdir / "reproduce_S_collapse")
    files += [str(outdir / "reproduce_S.parquet"), str(outdir / "reproduce_S_collapse.parquet")]
    return {"files": files, "summary": table, "d": d, "seeds": nseeds, "fit": study["fit"],
            "sweep": {"computed": sum(x["computed"] for x in runs), "skipped": sum(x["skipped"] for x in runs)}}


def plot_S(table, path) -> list[str]:
    """NMSE vs log n / log d for each gamma (GE, true, true with the Wick-ordered M1), with the NMSE law."""
    from .plots import plt, save

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for j, (gamma, grp) in enumerate(table.groupby("gamma")):
        c = f"C{j}"
        for kind, ls in (("ge", "o-"), ("true", "s:"), ("true-wick", "^-.")):
            g = grp[grp["kind"] == kind].groupby("n").agg(x=("log_d_n", "first"), nmse=("nmse", "mean"),
                                                            rec=("recovered", "mean"), st=("staircase", "first"))
            ax[0].plot(g["x"], g["nmse"], ls, color=c, ms=4, label=f"gamma = {gamma}, {kind}")
            if kind == "ge":
                ax[1].plot(g["x"], g["rec"], "o", color=c, label=f"recovered (GE), gamma = {gamma}")
                ax[1].step(g["x"], g["st"], where="post", color=c, lw=1, label=f"staircase, gamma = {gamma}")
        law = grp[grp["kind"] == "ge"].groupby("n").agg(x=("log_d_n", "first"), law=("nmse_law", "first"))
        ax[0].plot(law["x"], law["law"], "--", color=c, lw=1)
    ax[0].set_yscale("log")
    ax[0].set_xlabel(r"$\log n / \log d$")
    ax[0].set_ylabel("test NMSE (dashed: NMSE law)")
    ax[0].legend(fontsize=7)
    ax[1].set_xlabel(r"$\log n / \log d$")
    ax[1].set_ylabel("features recovered")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


SEPARATION_RATIOS = (20, 50, 200)  # n / D


def reproduce_separation(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                         d: int | None = None, seeds: int | None = None, rank: int = 1000, gamma="1",
                         g_star="z") -> dict:
    """Layer-wise vs non-hierarchical baselines on the true Model C at equal n (table + figure).

    For each d, seed and n = ratio D (ratio in ``SEPARATION_RATIOS``) one draw of n samples is
    offered to every method, and every method uses all of it: the layer-wise spectral method (through
    the sweep store), Nystrom kernel ridge (RBF and polynomial of degree 2q, ``rank`` landmarks),
    ReLU random-feature ridge (P = ``rank``) and the shallow spectral method on x; per seed also
    ``degree2_floor`` = 1 - f2, what a kernel method on x reaches at d^2 << n << d^4
    (``CompositionalSampler.degree2_share``). The default is
    d = 30 with one seed; ``full`` runs d = 20, 30, 40 with three seeds (``d``/``seeds`` override).
    ``gamma`` and ``g_star`` as in ``theory.CompositionalModel`` (eps = 1/2; default gamma = 1 and
    the identity, docs/figures/separation.md; [S]'s experiments use gamma = 0.4 and also tanh).
    """
    from theory import CompositionalModel

    from theory.model import integer

    from .baselines import nystrom_ridge, random_features_ridge, shallow_spectral
    from .compositional import CompositionalSampler
    from .layer1_operator import SampleBlocks

    outdir = Path(outdir)
    ds = [integer(d, "d", 8)] if d is not None else ([20, 30, 40] if full else [30])
    nseeds = integer(seeds, "seeds", 1) if seeds is not None else (3 if full else 1)
    rank = integer(rank, "rank", 10)
    models = [CompositionalModel(d=dd, eps="1/2", gamma=gamma, g_star=g_star) for dd in ds]
    # the default model keeps its store directory; another gamma or link gets its own (a name is a path)
    tag = "" if models[0].gamma == 1 and models[0].is_identity_link else "-" + description_digest(models[0].describe(), 10)
    spec = sweep_spec({"name": "separation-d" + "-".join(map(str, ds)) + tag, "models": [m.describe() for m in models],
                       "grid": {"alphas": list(SEPARATION_RATIOS), "seeds": list(range(nseeds))},
                       "options": {"series": ["true"]}})
    run = run_sweep(spec, store or outdir / "store", jobs=jobs, scheduler=scheduler, progress=progress)
    if run["failed"]:
        raise RuntimeError(f"reproduce separation: {run['failed']} task(s) failed: {run['errors']}")
    layerwise = load_results(spec, store or outdir / "store").groupby(["d", "seed", "n"])["nmse"].first()
    tables = []
    for model in models:
        rows, floors = [], {}
        for seed in range(nseeds):
            smp = CompositionalSampler(model, seed, "true")  # one pilot (standardisation) per seed
            start = smp.rng.bit_generator.state  # the sample stream just after the latents
            floors[seed] = 1 - smp.degree2_share()  # what a kernel on x reaches at d^2 << n << d^4
            for ratio in SEPARATION_RATIOS:
                n = int(ratio * model.D)
                smp.rng.bit_generator.state = start  # every n draws the stream's first n samples, as the sweep
                # x block by block (the same stream as one draw), never the whole n x D of Z(x)
                blocks, y = SampleBlocks.draw(smp, n, storage="memory")
                X = np.vstack(list(blocks))
                Xt, _, yt = smp.draw(4000)
                rows.append({"seed": seed, "n": n, "method": "layer-wise (true model)",
                             "nmse": float(layerwise.loc[(model.d, seed, n)]), "n_used": n, "rank": np.nan})
                # the shallow method's k varies with n: one legend entry
                for b in (nystrom_ridge(X, y, Xt, yt, "rbf", rank=min(rank, n), seed=seed),
                          nystrom_ridge(X, y, Xt, yt, "poly", degree=2 * model.q, rank=min(rank, n), seed=seed),
                          random_features_ridge(X, y, Xt, yt, P=rank, seed=seed),
                          shallow_spectral(X, y, Xt, yt, degree=2 * model.q)):
                    method = "shallow spectral on x" if b["method"].startswith("shallow") else b["method"]
                    rows.append({"seed": seed, "n": n, "method": method, "nmse": b["nmse"], "n_used": b["n_used"],
                                 "rank": b.get("rank", np.nan)})
        tab = pd.DataFrame(rows)
        tab["degree2_floor"] = tab["seed"].map(floors)
        tables.append(tab.assign(d=model.d, D=model.D, **table_metadata(model, "separation")))
    table = pd.concat(tables, ignore_index=True)
    table["log_d_n"] = np.log(table["n"]) / np.log(table["d"])
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    table.to_parquet(outdir / "reproduce_separation.parquet", index=False)
    files = plot_separation(table, outdir / "reproduce_separation") + [str(outdir / "reproduce_separation.parquet")]
    return {"files": files, "summary": table, "d": ds[0] if len(ds) == 1 else ds, "seeds": nseeds, "sweep": run,
            "spec": spec}


def separation_summary(table) -> pd.DataFrame:
    """Mean test NMSE and its standard error over seeds, per (d, n, method); with one seed there
    is no standard error and the column is left out. Tables that carry it also get ``degree2_floor``,
    the mean over seeds of 1 - f2 (``CompositionalSampler.degree2_share``), per d."""
    g = table.groupby(["d", "n", "method"])["nmse"]
    out = pd.DataFrame({"nmse": g.mean(), "nmse_se": g.sem(), "seeds": g.size()}).reset_index()
    if "degree2_floor" in table:  # tables written before it have no such column
        out["degree2_floor"] = out["d"].map(table.groupby("d")["degree2_floor"].mean())
    return out if (out["seeds"] > 1).all() else out.drop(columns="nmse_se")


def plot_separation(table, path) -> list[str]:
    """Test NMSE (mean +- SE over seeds) against n, one panel per d, every method at the n it was
    offered and used, with the predicted sample complexities n = d^(layer-wise exponent) and
    n = d^(kernel exponent) of ``theory.separation`` marked."""
    from theory import CompositionalModel, separation

    from .plots import plt, save

    summ = separation_summary(table)
    desc = json.loads(table["model_json"].iloc[0])
    ds = sorted(summ["d"].unique())
    fig, axes = plt.subplots(1, len(ds), figsize=(5.2 * len(ds), 4.2), squeeze=False)
    for ax, d in zip(axes[0], ds):
        sub = table[table["d"] == d]
        model = CompositionalModel.from_description(json.loads(sub["model_json"].iloc[0]))
        exps = separation(model)
        for i, (method, g) in enumerate(summ[summ["d"] == d].groupby("method")):
            cap = sub[sub["method"] == method]
            label = method + (" (n capped)" if (cap["n_used"] < cap["n"]).any() else "")
            ax.errorbar(g["n"], g["nmse"], yerr=g.get("nmse_se"), fmt="o-", ms=4, color=f"C{i}", label=label)
        if "degree2_floor" in sub:
            ax.axhline(sub["degree2_floor"].mean(), color="0.3", ls="-.", lw=1,
                       label="1 - f2 (kernel floor, d^2 << n << d^4)")
        for name, style in (("layerwise", ":"), ("kernel", "--")):
            e = exps[name]
            if e.is_finite:
                ax.axvline(float(d) ** float(e), color="0.5", ls=style,
                           label=f"n = d^{e} ({'layer-wise' if name == 'layerwise' else 'kernel'} scale)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n (every method uses all n)")
        ax.set_ylabel("test NMSE")
        ax.set_title(f"true Model C, d = {d}, q = {desc['q']}, gamma = {desc['gamma']}, g* = {desc['g_star']}, "
                     f"{int(summ['seeds'].max())} seed(s)", fontsize=9)
        if ax is axes[0][0]:  # one legend: the panels share their entries; the layer-wise curve falls to the right
            ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return save(fig, path)


#: [D]'s optimal-side comparison: the default model with label noise (the Bayes-optimal error
#: of the noiseless model is exactly 0 from alpha = m on, docs/bayes.md section 8)
D_OPT_DELTA = "1/10"
D_OPT_ALPHAS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
D_OPT_AMP_ALPHAS = (2.0, 5.0, 10.0, 20.0, 50.0)
D_OPT_AMP_ITER = 80
#: damping 0.5 (run_amp's default with noise) oscillates at alpha >= 10 with m >= 4 (the V_k on a
#: growing period-2 cycle) and AMP leaves its fixed point; 0.8 converges (docs/bayes.md section 11)
D_OPT_AMP_DAMPING = 0.8


def reproduce_D_optimal(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                        d: int | None = None, seeds: int | None = None, amp_alphas=None, alphas=None,
                        se_samples: int | None = None, model: HierarchicalModel | None = None) -> dict:
    r"""[D]'s comparison of the spectral estimator with the Bayes-optimal one, on one model and one
    data set (docs/figures/D-optimal.md).

    The default [D] model with :math:`\Delta = 0.1` (m = 10, gamma = 1.3): at each
    alpha of ``D_OPT_ALPHAS`` and seed, one seeded sample stream feeds the spectral estimator
    (:func:`simulate_task`), the two-stage network (its first layer is that spectral estimate;
    the ridge readout is fitted on fresh samples, :func:`validation.readout.two_stage`) and, at
    ``D_OPT_AMP_ALPHAS``, AMP from the spectral start (:func:`validation.amp.run_amp`, at most
    ``D_OPT_AMP_ITER`` iterations, damping ``D_OPT_AMP_DAMPING``). Next to them the d = infinity
    theories: ``numerics.predict``, the state evolution (uninformed branch), the readout risk at the
    predicted overlaps, and the per-direction thresholds (spectral, and Bayes-optimal sequential,
    docs/bayes.md section 5).

    The simulations go through the sweep store (spectral and AMP tasks), so an interrupted run
    resumes. Default d = 200 with 2 seeds (36 minutes on 2 cores with ``jobs=2``: about 13 for AMP,
    20 for the state evolution and the threshold scan; docs/figures/D-optimal.md);
    ``full=True`` runs d = 500 with 4 seeds (estimated 2-3 hours: a documented one-off run).
    ``d``, ``seeds``, ``alphas``, ``amp_alphas``, ``se_samples`` (the QMC draws of the state
    evolution and the thresholds) and ``model`` override the presets (for quick checks).
    """
    from numerics.bayes import bayes_thresholds, state_evolution

    from .amp import compare_amp
    from .progress import Progress
    from .readout import two_stage

    outdir = Path(outdir)
    d0, s0 = (500, 4) if full else (200, 2)
    d, seeds = d or d0, seeds or s0
    alphas = tuple(float(a) for a in (alphas if alphas is not None else D_OPT_ALPHAS))
    amp_alphas = tuple(float(a) for a in (amp_alphas if amp_alphas is not None else D_OPT_AMP_ALPHAS))
    model = model or HierarchicalModel(m=10, delta=D_OPT_DELTA)
    if float(model.delta) <= 0:
        raise ValueError("model: the D-optimal figure needs label noise (delta > 0): without it the "
                         "Bayes-optimal error is exactly 0 from alpha = m on")
    store = store or outdir / "store"
    base = {"models": [model.describe()], "grid": {"ds": [d], "seeds": seeds}}
    spec = sweep_spec(dict(base, name=f"reproduce-Dopt-d{d}", grid=dict(base["grid"], alphas=list(alphas))))
    runs = [run_sweep(spec, store, jobs=jobs, scheduler=scheduler, progress=progress)]
    spectral_rows = load_results(spec, store)
    # one AMP sweep per alpha: a task is (d, seed, alpha), so an interrupted run loses one alpha at most
    amp_specs = [sweep_spec(dict(base, name=f"reproduce-Dopt-d{d}", grid=dict(base["grid"], alphas=[a]),
                                 options={"estimator": "amp", "max_iter": D_OPT_AMP_ITER,
                                          "damping": D_OPT_AMP_DAMPING})) for a in amp_alphas]
    for sp_a in amp_specs:
        runs.append(run_sweep(sp_a, store, jobs=jobs, scheduler=scheduler, progress=progress))
    failed = sum(r["failed"] for r in runs)
    if failed:
        errors = {k: v for r in runs for k, v in r["errors"].items()}
        raise RuntimeError(f"reproduce D-optimal: {failed} simulation task(s) failed: {errors}")
    amp_rows = pd.concat([load_results(sp_a, store) for sp_a in amp_specs], ignore_index=True)
    readout = pd.concat([two_stage(model, d, alphas, s) for s in range(seeds)], ignore_index=True)

    grid = np.unique(np.concatenate([np.geomspace(0.5, 2 * max(alphas), 16), alphas, amp_alphas]))
    pred = predict(model, grid)
    # a figure needs q to 1e-5, not the default 1e-7: near a threshold the contraction rate tends
    # to 1 and the tighter test can take more than max_iter iterations
    se = state_evolution(model, grid, n_samples=se_samples, tol=1e-5, max_iter=5000,
                         progress=Progress(len(grid), "state evolution", enabled=progress))
    seq = bayes_thresholds(model, "sequential", n_samples=se_samples,
                           progress=Progress(1, "Bayes-optimal thresholds (sequential scan)", enabled=progress))
    table = optimal_table(model, pred, se, seq, compare(pred, spectral_rows), compare_amp(se, amp_rows), readout, d)
    files = []
    outdir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves nothing behind
    table.to_parquet(outdir / "reproduce_D_optimal.parquet", index=False)
    files += plot_D_optimal(table, outdir / "reproduce_D_optimal") + [str(outdir / "reproduce_D_optimal.parquet")]
    return {"files": files, "summary": table, "d": d, "seeds": seeds, "model": model,
            "sweep": {"computed": sum(r["computed"] for r in runs), "skipped": sum(r["skipped"] for r in runs)}}


def optimal_table(model, pred, se, seq, spectral, amp, readout, d) -> pd.DataFrame:
    """The long table behind the D-optimal figure: one row per (source, quantity, alpha, k) with
    value, sem and (simulation rows) the d = infinity value and whether it lies within tolerance."""
    from theory import readout_excess_risk

    rows = []

    def add(source, quantity, alpha, k, value, sem=0.0, theory=np.nan, tol=np.nan, n_seeds=0, agrees=None):
        rows.append({"source": source, "quantity": quantity, "alpha": float(alpha), "k": int(k),
                     "value": float(value), "sem": float(sem), "theory": float(theory), "tolerance": float(tol),
                     "agrees": None if agrees is None else bool(agrees), "n_seeds": int(n_seeds)})

    for i, a in enumerate(pred.alphas):
        add("spectral theory", "mse", a, 0, pred.mse[i])
        for k in range(model.m):
            add("spectral theory", "q", a, k + 1, pred.q[i, k])
        add("two-stage theory", "excess_risk", a, 0,
            float(readout_excess_risk(model, [float(v) for v in np.clip(pred.q[i], 0, 1)])))
    for i, a in enumerate(se.alphas):
        add("state evolution", "mse", a, 0, se.mse[i], se.mse_se[i])
        for k in range(model.m):
            add("state evolution", "q", a, k + 1, se.q[i, k])
    for _, r in spectral.iterrows():
        add("spectral simulation", "q", r["alpha"], r["k"], r["q_sim"], r["q_sem"], r["q_theory"], r["tol"],
            r["n_seeds"], r["agrees"])
    for a, g in spectral.groupby("alpha"):
        r = g.iloc[0]
        add("spectral simulation", "mse", a, 0, r["mse_sim"], r["mse_sem"], r["mse_theory"], np.nan, r["n_seeds"])
    for _, r in amp.iterrows():
        add("AMP", "q", r["alpha"], r["k"], r["q_amp"], r["q_sem"], r["q_se"], r["tolerance"], r["n_seeds"],
            r["agrees"])
    for a, g in amp.groupby("alpha"):
        r = g.iloc[0]
        add("AMP", "mse", a, 0, r["mse_amp"], r["mse_sem"], r["mse_se"], np.nan, r["n_seeds"])
    for a, g in readout.groupby("alpha"):
        n = len(g)
        sem = float(g["excess_risk"].std(ddof=1) / np.sqrt(n)) if n > 1 else float(g["excess_risk_sem"].iloc[0])
        add("two-stage network", "excess_risk", a, 0, g["excess_risk"].mean(), sem,
            g["theory_at_proj"].mean(), np.nan, n)
    for k in range(model.m):
        add("spectral", "threshold", 0.0, k + 1, pred.thresholds[k])
        add("Bayes-optimal (sequential)", "threshold", 0.0, k + 1, seq.alphas[k], seq.se[k])
    table = pd.DataFrame(rows)
    table["d"] = int(d)
    for key, val in table_metadata(model, "optimal").items():
        table[key] = val
    return table


def optimal_report(res: dict) -> str:
    """The text report of :func:`reproduce_D_optimal`: agreement counts, the errors at the simulated
    alphas, and the thresholds side by side."""
    t = res["summary"]
    lines = [f"reproduced D-optimal at d = {res['d']} with {res['seeds']} seeds ({res['sweep']['computed']} tasks "
             f"computed, {res['sweep']['skipped']} reused from the store); model {json.dumps(res['model'].describe())}"]
    for source, theory in (("spectral simulation", "its d = inf theory"), ("AMP", "the state evolution")):
        g = t[(t["source"] == source) & (t["quantity"] == "q")]
        lines.append(f"{source}: {int(g['agrees'].sum())}/{len(g)} (alpha, k) overlaps within the finite-size "
                     f"tolerance of {theory}")
    err = t[t["quantity"].isin(["mse", "excess_risk"]) & t["source"].isin(
        ["spectral simulation", "AMP", "two-stage network"])]
    wide = err.pivot_table(index="alpha", columns="source", values="value").reset_index()
    lines.append("errors (MSE_gamma; two-stage network: test excess risk):")
    lines.append(wide.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    thr = t[t["quantity"] == "threshold"].pivot_table(index="k", columns="source", values="value").reset_index()
    lines.append("thresholds alpha_k:")
    lines.append(thr.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    lines.append("wrote " + ", ".join(res["files"]))
    return "\n".join(lines)


def plot_D_optimal(table, path) -> list[str]:
    """Three panels from the D-optimal table alone: the errors against alpha (spectral simulation and
    theory, AMP and the state evolution, the two-stage network and its theory; the alpha^-(1 - 1/2gamma)
    guide), the overlaps q_k of the first directions, and the thresholds against k with the k^(2 gamma)
    guide."""
    from .plots import plt, save

    from .experiment import model_from_description

    gamma = float(model_from_description(json.loads(table["model_json"].iloc[0])).gamma)
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.6))

    def get(source, quantity, k=None):
        g = table[(table["source"] == source) & (table["quantity"] == quantity)]
        return (g if k is None else g[g["k"] == k]).sort_values(["alpha", "k"])

    for source, style, color, label in (("spectral theory", "-", "C0", "spectral, d = inf (predict)"),
                                        ("state evolution", "-", "C3", "Bayes-optimal, d = inf (state evolution)")):
        g = get(source, "mse")
        ax[0].loglog(g["alpha"], g["value"], style, color=color, lw=1.6, label=label)
    g = get("two-stage theory", "excess_risk")
    ax[0].loglog(g["alpha"], g["value"], ":", color="C2", lw=1.4, label="two-stage network, d = inf (readout risk)")
    for source, quantity, color, marker, label in (
            ("spectral simulation", "mse", "C0", "o", "spectral estimator"),
            ("AMP", "mse", "C3", "s", "AMP (spectral start)"),
            ("two-stage network", "excess_risk", "C2", "^", "two-stage network (test excess risk)")):
        g = get(source, quantity)
        ax[0].errorbar(g["alpha"], g["value"], yerr=g["sem"], fmt=marker, color=color, ms=4.5, capsize=2,
                       label=label + f", d = {int(table['d'].iloc[0])}")
    g = get("spectral theory", "mse")
    slope = -(1 - 1 / (2 * gamma))
    a0 = float(np.sqrt(g["alpha"].min() * g["alpha"].max()))
    i0 = int(np.argmin(np.abs(g["alpha"].to_numpy() - a0)))
    ax[0].loglog(g["alpha"], 1.8 * g["value"].iloc[i0] * (g["alpha"] / g["alpha"].iloc[i0]) ** slope, "--",
                 color="0.5", lw=1, label=rf"$\alpha^{{{slope:.3f}}}$ (slope $-(1-1/2\gamma)$)")
    ax[0].set_xlabel(r"$\alpha = n/d$")
    ax[0].set_ylabel(r"$\mathrm{MSE}_\gamma$ (network: excess risk)")
    ax[0].set_title("error against alpha")
    ax[0].legend(fontsize=6.5)
    colors = plt.cm.viridis(np.linspace(0, 0.8, 3))
    for k in (1, 2, 3):
        c = colors[k - 1]
        for source, ls in (("spectral theory", "-"), ("state evolution", "--")):
            g = get(source, "q", k)
            ax[1].semilogx(g["alpha"], g["value"], ls, color=c, lw=1.2, label=f"k = {k}" if ls == "-" else None)
        for source, marker in (("spectral simulation", "o"), ("AMP", "s")):
            g = get(source, "q", k)
            ax[1].errorbar(g["alpha"], g["value"], yerr=g["sem"], fmt=marker, color=c, ms=4, capsize=2,
                           mfc="white" if marker == "s" else c)
    ax[1].set_xlabel(r"$\alpha$")
    ax[1].set_ylabel(r"$q_k$")
    ax[1].set_title("overlaps: spectral (solid, o) vs Bayes-optimal (dashed) and AMP (open squares)", fontsize=8)
    ax[1].legend(fontsize=7)
    for source, style, color in (("spectral", "o-", "C0"), ("Bayes-optimal (sequential)", "s-", "C3")):
        g = get(source, "threshold")
        ok = np.isfinite(g["value"]) & (g["value"] > 0)
        ax[2].loglog(g["k"][ok], g["value"][ok], style, color=color, ms=4, label=source)
    g = get("Bayes-optimal (sequential)", "threshold")
    ks = g["k"].to_numpy(dtype=float)
    last = float(g["value"].iloc[-1])
    ax[2].loglog(ks, last * (ks / ks[-1]) ** (2 * gamma), ":", color="0.5", label=r"$\propto k^{2\gamma}$")
    ax[2].set_xlabel("k")
    ax[2].set_ylabel(r"threshold $\alpha_k$")
    ax[2].set_title("per-direction thresholds")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def _reproduce_lag(outdir, **kw):
    from .feature_lag import reproduce_lag

    return reproduce_lag(outdir, **kw)


FIGURES = {"D": reproduce_D, "D-optimal": reproduce_D_optimal, "S": reproduce_S, "separation": reproduce_separation,
           "lag": _reproduce_lag}


def reproduce(name: str, outdir="cascade-out", **kw) -> dict:
    """Regenerate the figure NAME (one of ``FIGURES``)."""
    if name not in FIGURES:
        raise ValueError(f"name: unknown figure {name!r}; available: {', '.join(FIGURES)}")
    from theory.model import integer

    integer(kw.get("jobs", 1), "jobs", 1)  # every figure, also those that run in-process
    return FIGURES[name](outdir, **kw)


def plot_table(path, out=None) -> list[str]:
    """Redraw a figure from a stored table, dispatching on the model description and table kind
    that every table carries (``model_json``, ``table_kind``): comparison summaries, spectra,
    predictions (Model S), the Model C validate table, ``reproduce_S`` and
    ``reproduce_separation``. Only d = infinity curves are recomputed; no simulation runs."""
    from .experiment import experiment_for, read_parquet_table, read_table_metadata

    df = read_parquet_table(path)
    path = Path(path)
    out = Path(out) if out else path.with_name(path.stem + "_redrawn")
    desc, kind = read_table_metadata(df)
    return experiment_for(desc).plot_table(df, kind, out)
