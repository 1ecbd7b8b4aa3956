r"""The lag of the true Model C behind its Gaussian-equivalent staircase, feature by feature
(docs/compositional.md, "Lag against d").

For feature i of one seed, the lag is

.. math:: L_i = n_i^{\rm true} / n_i^{\rm GE},

where :math:`n_i^{\rm true}` is the n at which the true model's projection
:math:`\|P_{\rm top}A_i\|^2` on the top d1 eigenvectors of layer 1 (Wick-ordered by default)
first reaches 1/2 on a geometric n grid, interpolated linearly in log n between the grid
points, and :math:`n_i^{\rm GE}` is the n at which the d = infinity GE solver's
:math:`\rho_i^2` (``numerics.layer1_prediction`` with the same seed's signs) reaches 1/2. The
simulations run as sweep tasks (series ``true-wick``) through the resumable store. A feature
that never reaches 1/2 on the grid is censored: its lag is NaN and counted as not reached.
Each seed's population operator (``numerics.population_layer1``, n = infinity) gives the
features that any n can separate. A feature outside that set is population-limited, not
late. The GE solver needs :math:`g_* = \mathrm{id}`; with another link :math:`n_i^{\rm GE}` is
the first crossing of the GE model simulated at the same d on the same n grid (series ``ge``,
``reference="simulation"``). The GE stream of a seed draws its own latent signs, so with that
reference only the mean over seeds is a like-for-like comparison.

>>> import numpy as np
>>> float(first_crossing([100, 200, 400], [0.2, 0.4, 0.8]))   # a quarter of the way: 200 * 2**0.25
237.841423000544
>>> bool(np.isnan(first_crossing([100, 200], [0.1, 0.3])))
True
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from theory import CompositionalModel
from theory.model import integer

from .experiment import description_digest

__all__ = ["first_crossing", "ge_crossings", "population_separable", "feature_lags", "lag_summary",
           "reproduce_lag", "lag_report", "plot_lag", "LAG_RATIOS", "LAG_RATIOS_SIMULATED", "LAG_LEVEL"]

#: the n/D grid of the lag measurement (geometric, a factor 2 apart)
LAG_RATIOS = (12.5, 25, 50, 100, 200, 400, 800, 1600)
#: the grid when n_GE is simulated: the finite-d GE model can cross below 12.5 D (about 2-3 D for
#: feature 1 with g_star = tanh at d = 12-40), where LAG_RATIOS would censor it on the left
LAG_RATIOS_SIMULATED = tuple(12.5 * 2.0**k for k in range(-4, 8))
#: the projection (true model) and rho^2 (GE solver) at which a feature counts as recovered
LAG_LEVEL = 0.5


def first_crossing(ns, values, level: float = LAG_LEVEL) -> float:
    """The first n where ``values`` (on the increasing grid ``ns``) reaches ``level``, linear in
    log n between the grid points around it; ``ns[0]`` if already there, NaN if never."""
    ns, values = np.asarray(ns, dtype=float), np.asarray(values, dtype=float)
    above = np.flatnonzero(values >= level)
    if above.size == 0:
        return float("nan")
    j = above[0]
    if j == 0:
        return float(ns[0])
    t = (level - values[j - 1]) / (values[j] - values[j - 1])
    return float(np.exp(np.log(ns[j - 1]) + t * (np.log(ns[j]) - np.log(ns[j - 1]))))


def ge_grid_start(model: CompositionalModel) -> int:
    """The first n of :func:`ge_crossings`' grid, max(2, D/100): a crossing returned there is
    left-censored (rho^2 was already at 1/2).

    >>> ge_grid_start(CompositionalModel(d=20, eps="1/2", gamma=1))   # D = 210
    2
    """
    return int(max(2.0, model.D / 100))


def ge_crossings(model: CompositionalModel, signs, n_max: float, points: int = 12, xtol: float = 0.01) -> np.ndarray:
    """For each feature, the n at which the GE solver's rho_i^2 (with these signs) reaches 1/2:
    bracketed on a geometric grid of ``points`` from max(2, D/100) to ``n_max``, then solved by
    brentq in log n to ``xtol`` (relative in n). NaN where rho_i^2 stays below 1/2 up to ``n_max``.
    Each evaluation is a solver run (``numerics.layer1_prediction``), cached by n."""
    from scipy.optimize import brentq

    from numerics import layer1_prediction
    from numerics.label_law import clear_cache

    cache = {}

    def rho2(n):
        n = int(round(n))
        if n not in cache:
            cache[n] = np.asarray(layer1_prediction(model, n=[n], signs=np.asarray(signs))["rho2"])[0]
        return cache[n]

    grid = np.unique(np.geomspace(ge_grid_start(model), float(n_max), points).astype(int))
    vals = np.array([rho2(n) for n in grid])
    out = np.full(model.d1, np.nan)
    for i in range(model.d1):
        above = np.flatnonzero(vals[:, i] >= LAG_LEVEL)
        if above.size == 0:
            continue
        j = above[0]
        if j == 0:
            out[i] = grid[0]
            continue
        out[i] = np.exp(brentq(lambda u: rho2(np.exp(u))[i] - LAG_LEVEL, np.log(grid[j - 1]), np.log(grid[j]),
                               xtol=xtol))
    clear_cache()  # each n has its own clipped label law; do not keep them all
    return out


def population_separable(model: CompositionalModel, seed: int, wick: bool = True) -> np.ndarray:
    """Boolean per feature: its projection on the top d1 eigenvectors (by |eigenvalue|) of the
    true model's population layer-1 operator exceeds 1/2 (docs/compositional.md, item 2)."""
    from numerics.quadratic_chaos import population_layer1

    from .compositional import CompositionalSampler

    smp = CompositionalSampler(model, seed, "true")
    vals, V = np.linalg.eigh(population_layer1(smp.A, smp.b / smp.std, model.d, wick=wick))
    top = V[:, np.argsort(-np.abs(vals))[: model.d1]]
    return ((smp.A.T @ top) ** 2).sum(axis=1) > 0.5


def feature_lags(models, ratios=LAG_RATIOS, seeds=(0, 1, 2), store="cascade-store", jobs: int = 1,
                 scheduler=None, progress: bool = False, series: str = "true-wick",
                 reference: str = "auto") -> pd.DataFrame:
    """One row per (d, seed, feature): ``n_true``, ``n_ge``, ``lag`` (NaN when censored),
    ``reached``, ``separable`` (population), ``reference``, ``ge_censored_left`` (the GE
    reference already at 1/2 on its grid's first point, n/D = min(ratios) for the simulation,
    :func:`ge_grid_start` for the solver: the lag is a lower bound) and ``true_censored_left`` (the
    true model already at 1/2 at n/D = min(ratios): the lag is an upper bound). The simulations are the sweep
    tasks of ``validation.sweep`` (one per model, seed and series), so a rerun reuses the store.

    ``reference`` says where :math:`n_i^{GE}` comes from: ``"solver"`` (the d = infinity GE
    solver with the seed's signs; needs g_star = identity), ``"simulation"`` (the GE model
    simulated at the same d and n grid, series ``ge``, first crossing as for the true model; the
    GE stream of a seed has its own latent signs, so only the mean over seeds compares), or
    ``"auto"`` (the solver when g_star is the identity, else the simulation)."""
    from .compositional import CompositionalSampler
    from .sweep import load_results, run_sweep, sweep_spec

    models = list(models)
    for m in models:
        if not isinstance(m, CompositionalModel):
            raise TypeError(f"models: expected theory.CompositionalModel instances, got {type(m).__name__}")
    if reference not in ("auto", "solver", "simulation"):
        raise ValueError(f"reference: must be 'auto', 'solver' or 'simulation', got {reference!r}")
    if reference == "solver" and not all(m.is_identity_link for m in models):
        raise ValueError("reference: the GE solver needs g_star = identity; use 'simulation' (or 'auto')")
    seeds = [integer(s, "seeds", 0) for s in seeds]
    ratios = sorted(float(r) for r in ratios)
    if len(ratios) < 2 or ratios[0] <= 0:
        raise ValueError(f"ratios: need at least two n/D values > 0, got {ratios!r}")
    refs = {m.d: ("solver" if m.is_identity_link else "simulation") if reference == "auto" else reference
            for m in models}
    key = description_digest([m.describe() for m in models], 10)
    all_series = [series] + (["ge"] if "simulation" in refs.values() else [])
    spec = sweep_spec({"name": f"lag-{key}", "models": [m.describe() for m in models],
                       "grid": {"alphas": ratios, "seeds": seeds}, "options": {"series": all_series}})
    run = run_sweep(spec, store, jobs=jobs, scheduler=scheduler, progress=progress)
    if run["failed"]:
        raise RuntimeError(f"feature_lags: {run['failed']} simulation task(s) failed: {run['errors']}")
    table = load_results(spec, store)
    rows = []
    for model in models:
        sub = table[table["d"] == model.d]
        n_max, n_min = max(ratios) * model.D, float(sub["n"].min())

        def crossing(kind, seed, i, sub=sub):  # first n where series ``kind`` puts feature i at 1/2
            g = sub[(sub["kind"] == kind) & (sub["seed"] == seed) & (sub["i"] == i)].sort_values("n")
            return first_crossing(g["n"], g["proj_top"])

        for seed in seeds:
            if refs[model.d] == "solver":
                _, signs = CompositionalSampler.latents(CompositionalSampler.stream(model, seed, "true", model.D),
                                                        model.D, model.d1)
                n_ge = ge_crossings(model, signs, n_max * 10)
            else:
                n_ge = [crossing("ge", seed, i) for i in range(1, model.d1 + 1)]
            sep = population_separable(model, seed, wick=series == "true-wick")
            for i in range(1, model.d1 + 1):
                n_true = crossing(series, seed, i)
                rows.append({"d": model.d, "D": model.D, "d1": model.d1, "gamma": str(model.gamma),
                             "g_star": str(model.g_star), "seed": seed, "i": i, "n_true": n_true,
                             "n_ge": n_ge[i - 1], "lag": n_true / n_ge[i - 1], "reference": refs[model.d],
                             "reached": bool(np.isfinite(n_true)), "separable": bool(sep[i - 1]),
                             # already at 1/2 on the grid's first point: n_GE is an upper bound, the lag a lower one
                             "ge_censored_left": bool(n_ge[i - 1] == (n_min if refs[model.d] == "simulation"
                                                                      else ge_grid_start(model))),
                             # the true model already at 1/2 on the grid's first point: n_true is an upper
                             # bound, and so is the lag
                             "true_censored_left": bool(n_true == n_min),
                             "n_max": n_max})
    out = pd.DataFrame(rows)
    out.attrs["sweep"] = run
    return out


def lag_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (d, feature): the geometric mean lag over the seeds that reached 1/2 with its standard
    error in log (``log_lag_se``; NaN with fewer than two), the geometric means of n_true / D and
    n_GE / D over the same seeds, how many seeds reached it, how many seeds' population
    operators separate it, and ``bounds``: how many of the reached seeds' lags are only bounds,
    because n_true or n_GE was censored at its grid's first point (tables written before the
    flags existed count as none)."""
    out = []
    for (d, i), g in rows.groupby(["d", "i"]):
        ok = g["reached"] & np.isfinite(g["lag"])
        bound = np.zeros(len(g), dtype=bool)
        for col in ("ge_censored_left", "true_censored_left"):
            if col in g:
                bound |= g[col].to_numpy(dtype=bool)
        lags = np.log(g.loc[ok, "lag"].to_numpy())

        def gmean(col):
            v = np.log(g.loc[ok, col].to_numpy() / g.loc[ok, "D"].to_numpy())
            return float(np.exp(v.mean())) if v.size else float("nan")

        out.append({"d": d, "i": i, "lag": float(np.exp(lags.mean())) if lags.size else float("nan"),
                    "log_lag_se": float(lags.std(ddof=1) / np.sqrt(lags.size)) if lags.size > 1 else float("nan"),
                    "n_true/D": gmean("n_true"), "n_ge/D": gmean("n_ge"),
                    "reached": f"{int(g['reached'].sum())}/{len(g)}",
                    "separable": f"{int(g['separable'].sum())}/{len(g)}",
                    "bounds": f"{int(bound[ok.to_numpy()].sum())}/{int(ok.sum())}"})
    return pd.DataFrame(out)


def reproduce_lag(outdir, full: bool = False, jobs: int = 1, scheduler=None, store=None, progress=True,
                  d=None, seeds=None, gamma="1", g_star="z", ratios=None, reference="auto") -> dict:
    """`cascade reproduce lag`: the per-feature lag at several d (docs/compositional.md, "Lag
    against d"). Default d = 20 with 2 seeds; ``full``: d = 20, 30, 40 with 3 seeds; ``gamma``
    and ``g_star`` as in ``theory.CompositionalModel`` (eps = 1/2); ``ratios``: the n/D grid
    (default ``LAG_RATIOS``, or ``LAG_RATIOS_SIMULATED`` when n_GE is simulated); ``reference`` as
    in :func:`feature_lags`. Writes
    ``reproduce_lag.parquet`` (one row per d, seed and feature) and returns the summary."""
    from pathlib import Path

    from .experiment import table_metadata

    outdir = Path(outdir)
    ds = [integer(v, "d", 8) for v in np.atleast_1d(d)] if d is not None else ([20, 30, 40] if full else [20])
    nseeds = integer(seeds, "seeds", 1) if seeds is not None else (3 if full else 2)
    models = [CompositionalModel(d=dd, eps="1/2", gamma=gamma, g_star=g_star) for dd in ds]
    if ratios is None:
        simulated = reference == "simulation" or (reference == "auto" and not models[0].is_identity_link)
        ratios = LAG_RATIOS_SIMULATED if simulated else LAG_RATIOS
    rows = feature_lags(models, ratios=ratios, seeds=range(nseeds),
                        store=store or outdir / "store", jobs=jobs, scheduler=scheduler, progress=progress,
                        reference=reference)
    for key, val in table_metadata(models[0], "lag").items():
        rows[key] = val
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "reproduce_lag.parquet"
    rows.to_parquet(path, index=False)
    files = plot_lag(rows, outdir / "reproduce_lag") + [str(path)]
    return {"summary": lag_summary(rows), "rows": rows, "files": files, "d": ds[0] if len(ds) == 1 else ds,
            "seeds": nseeds, "sweep": rows.attrs.get("sweep")}


def lag_report(res) -> str:
    """The text of `cascade reproduce lag`."""
    s = res["summary"].copy()
    s["lag"] = s["lag"].map(lambda v: "censored" if not np.isfinite(v) else f"{v:.1f}")
    s["log_lag_se"] = s["log_lag_se"].map(lambda v: "" if not np.isfinite(v) else f"{v:.2f}")
    for col in ("n_true/D", "n_ge/D"):
        s[col] = s[col].map(lambda v: "" if not np.isfinite(v) else f"{v:.1f}")
    head = _describe(res["rows"]) + "\n"
    return (head + "lag n_true / n_GE per feature (geometric mean over the seeds that reached 1/2; "
            "se of log lag; separable = population operator; bounds = reached seeds whose n_true or n_GE "
            "was already at 1/2 on its grid's first point, so that their lag is only a bound):\n" + s.to_string(index=False)
            + "\nwrote " + ", ".join(res["files"]))


def _describe(rows: pd.DataFrame) -> str:
    """gamma, g_star and the GE reference of a lag table (tables written before the
    ``g_star``/``reference`` columns existed used g_star = z and the solver)."""
    g_star = rows["g_star"].iloc[0] if "g_star" in rows else "z"
    ref = sorted(set(rows["reference"])) if "reference" in rows else ["solver"]
    return f"gamma = {rows['gamma'].iloc[0]}, g_star = {g_star}; n_GE from the GE " + " and ".join(ref)


def plot_lag(rows: pd.DataFrame, path) -> list[str]:
    """Lag against d per feature (log-log): each seed a dot, the geometric mean over the seeds
    that reached 1/2 a line; censored features are listed in the legend."""
    from .plots import plt, save

    summ = lag_summary(rows)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, g in summ.groupby("i"):
        c = f"C{(i - 1) % 10}"
        pts = rows[(rows["i"] == i) & rows["reached"]]
        ax.plot(pts["d"], pts["lag"], "o", color=c, ms=3, alpha=0.5)
        ok = g[np.isfinite(g["lag"])]
        censored = g.loc[~np.isfinite(g["lag"]), "d"].tolist()
        ax.plot(ok["d"], ok["lag"], "-", color=c,
                label=f"feature {i}" + (f" (not reached at d = {censored})" if censored else ""))
    ax.axhline(1.0, color="0.5", ls=":", label="no lag")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d")
    ax.set_ylabel(r"lag $n_i^{true} / n_i^{GE}$")
    ax.set_title("true Model C (Wick-ordered layer 1) behind the GE staircase\n" + _describe(rows), fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, path)
