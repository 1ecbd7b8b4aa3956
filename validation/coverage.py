r"""How often compare's bounds hold: their coverage over groups of seeds, with the error of correlated trials
(docs/theory.md §4.6).

At level L, :func:`validation.compare.compare` claims that the mean of the S seeds it is given falls inside each
row's interval with probability L. Split a simulated table into G groups of S seeds, run compare on each, and
count, per ``tol_basis``, the trials inside: group g has :math:`I_g` of its :math:`N_g` trials inside, and

.. math:: \hat p = \frac{\sum_g I_g}{\sum_g N_g}

estimates the coverage. A binomial sd :math:`\sqrt{L(1-L)/N}`, N = :math:`\sum_g N_g`, treats the N trials
as independent. They are not: one seed's samples serve every alpha of its table (the samples are nested), so
the trials of one group move together. The groups are independent, so :math:`\hat p` is a ratio of two sums
of independent terms, and its linearised (between-group, cluster) variance is

.. math:: \widehat{\mathrm{Var}}\,\hat p = \frac{G}{G-1}\,\frac{\sum_g (I_g - \hat p N_g)^2}{(\sum_g N_g)^2}

(the variance of a ratio estimate over independent clusters: W. G. Cochran, *Sampling Techniques*, 3rd ed.,
Wiley 1977, ch. 6). For independent trials it is the binomial variance :math:`\hat p(1-\hat p)/N` up to
O(1/G); where the trials of a group are perfectly correlated it is G times smaller in count, the binomial
variance of G trials. Their ratio D is the design effect, and the sd of :math:`\hat p` were the coverage L is
:math:`\sqrt{D L(1-L)/N}`: the binomial sd with the correlation the groups show.

>>> r = coverage_error([2, 1, 3], [3, 3, 3], level=0.5)   # by hand: p = 6/9, residuals 0, -1, 1
>>> round(r["fraction"], 6), round(r["sd_groups"] ** 2 * 81, 6)   # 3/2 * 2 / 9^2
(0.666667, 3.0)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from theory.model import confidence, integer, require

__all__ = ["coverage_error", "group_coverage", "table_coverage"]


def coverage_error(inside, trials, level: float) -> dict:
    r"""The coverage of one bound over G independent groups, from each group's count inside (``inside``,
    :math:`I_g`) of its ``trials`` (:math:`N_g`), against the claimed ``level`` L. Returns ``fraction``
    (:math:`\hat p`), ``groups``, ``trials`` and ``inside`` (the totals), ``sd_binomial``
    (:math:`\sqrt{L(1-L)/N}`: independent trials at the level), ``sd_groups`` (the between-group sd of
    :math:`\hat p`, module docstring), ``design_effect`` (:math:`D = \mathrm{sd_{groups}}^2/(\hat p(1-\hat p)/N)`;
    1 for independent trials; taken as 1 where :math:`\hat p` is 0 or 1, which leaves no scatter to measure it
    by), ``sd_level`` (:math:`\sqrt{D}\,\mathrm{sd_{binomial}}`: the sd of :math:`\hat p` if the coverage were
    L, with the trials' measured correlation) and ``z_binomial``, ``z`` (:math:`\hat p - L` over ``sd_binomial``
    and over ``sd_level``; ``z`` is +-inf where the groups show no scatter at all and :math:`\hat p \ne L`).

    >>> r = coverage_error([5, 4, 5, 3], [5, 5, 5, 5], 0.8)
    >>> r["fraction"], r["groups"], r["trials"]
    (0.85, 4, 20)
    """
    L = confidence(level)
    I = np.asarray(inside, dtype=float)
    N = np.asarray(trials, dtype=float)
    if I.ndim != 1 or N.shape != I.shape:
        raise ValueError(f"inside, trials: expected two 1-d arrays of the same length (one entry per group), "
                         f"got shapes {I.shape} and {N.shape}")
    if I.size < 2:
        raise ValueError(f"inside: the between-group error needs at least 2 groups, got {I.size}")
    if not (np.all(np.isfinite(N)) and np.all(N >= 1) and np.all(N == np.round(N))):
        raise ValueError("trials: expected whole numbers >= 1 per group")
    if not (np.all(np.isfinite(I)) and np.all(I == np.round(I)) and np.all((I >= 0) & (I <= N))):
        raise ValueError("inside: expected whole numbers between 0 and the group's trials")
    G, total = I.size, float(N.sum())
    p = float(I.sum()) / total
    sd_groups = float(np.sqrt(G / (G - 1) * np.sum((I - p * N) ** 2)) / total)
    sd_binomial = float(np.sqrt(L * (1 - L) / total))
    binom = p * (1 - p) / total
    design = sd_groups**2 / binom if binom > 0 else 1.0
    sd_level = float(np.sqrt(design) * sd_binomial)
    if sd_level > 0:
        z = (p - L) / sd_level
    else:  # every group inside at the same fraction: no between-group scatter
        z = 0.0 if p == L else float(np.copysign(np.inf, p - L))
    return {"fraction": p, "groups": G, "trials": int(total), "inside": int(I.sum()), "sd_binomial": sd_binomial,
            "sd_groups": sd_groups, "design_effect": design, "sd_level": sd_level,
            "z_binomial": (p - L) / sd_binomial, "z": z}


def group_coverage(prediction, simulation: pd.DataFrame, quantity: str = "q_best", levels=(0.5, 0.8, 0.95),
                   group_size: int = 6) -> pd.DataFrame:
    r"""Coverage of :func:`validation.compare.compare`'s bounds over groups of ``group_size`` seeds of one
    simulated table (one d), per level and ``tol_basis``, with :func:`coverage_error`'s two errors.

    The seeds are taken in increasing order, in consecutive groups of ``group_size``; an incomplete last group
    is left out. compare runs on each group at each level of ``levels``, and its ``agrees`` flags are the
    trials. Returns one row per (level, tol_basis): ``quantity``, ``level``, ``tol_basis``, ``points`` (the
    (alpha, k) pairs with that basis in some group), ``groups``, ``trials``, ``inside``, ``fraction``,
    ``sd_binomial``, ``sd_groups``, ``design_effect``, ``sd_level``, ``z_binomial`` and ``z``. A basis is reported
    where at least 2 groups have rows of it.

    ``prediction``: a ``numerics.Prediction`` at the table's alphas, as for compare.
    """
    from .compare import compare

    require(simulation, pd.DataFrame, "simulation")
    if "seed" not in simulation.columns:
        raise ValueError("simulation: expected a per-seed table with a 'seed' column (validation.simulate)")
    S = integer(group_size, "group_size", 1)
    try:
        levels = [confidence(v, "levels") for v in levels]
    except TypeError:
        raise ValueError(f"levels: expected a list of confidences in (0, 1), got {levels!r}") from None
    if not levels:
        raise ValueError("levels: expected at least one confidence in (0, 1)")
    seeds = np.sort(simulation["seed"].unique())
    G = seeds.size // S
    if G < 2:
        raise ValueError(f"group_size: {seeds.size} seeds make {G} full group(s) of {S}; the between-group error "
                         f"needs at least 2 (use group_size <= {seeds.size // 2})" if seeds.size >= 2 else
                         f"simulation: the between-group error needs at least 2 seeds, got {seeds.size}")
    group_of = dict(zip(seeds[: G * S].tolist(), np.repeat(np.arange(G), S).tolist()))
    tagged = simulation.assign(_group=simulation["seed"].map(group_of))
    parts = [part.drop(columns="_group") for _, part in tagged.dropna(subset=["_group"]).groupby("_group")]
    rows = []
    for level in levels:
        tables = [compare(prediction, part, quantity, level=level).assign(_group=g) for g, part in enumerate(parts)]
        res = pd.concat(tables, ignore_index=True)
        for basis, b in res.groupby("tol_basis", sort=True):
            per = b.groupby("_group")["agrees"].agg(["sum", "size"])
            if len(per) < 2:
                continue
            err = coverage_error(per["sum"].to_numpy(), per["size"].to_numpy(), level)
            points = b[["alpha", "k"]].drop_duplicates().shape[0]
            rows.append({"quantity": quantity, "level": level, "tol_basis": basis, "points": points, **err})
    cols = ["quantity", "level", "tol_basis", "points", "groups", "trials", "inside", "fraction", "sd_binomial",
            "sd_groups", "design_effect", "sd_level", "z_binomial", "z"]
    return pd.DataFrame(rows, columns=cols)


def _table_model(table: pd.DataFrame):
    """The Model S a simulated table was drawn from, from its provenance columns (``model_json``, or the fields of
    ``describe()`` that :func:`validation.experiment.add_provenance` writes)."""
    import json

    from theory import HierarchicalModel

    from .experiment import model_from_description

    if "model_json" in table.columns:
        descs = table["model_json"].dropna().unique().tolist()
        descs = [json.loads(x) for x in descs]
    else:
        keys = [c for c in HierarchicalModel().describe() if c in table.columns]
        if "model" not in keys or len(keys) < 2:
            raise ValueError("table: no model columns (model, link, gamma, ...; see validation.simulate) to rebuild "
                             "the model from")
        descs = table[keys].drop_duplicates().to_dict("records")
    if len(descs) != 1:
        raise ValueError(f"table: expected the simulations of one model, got {len(descs)}; select one first")
    desc = descs[0]
    if desc.get("model", "S") != "S":
        raise ValueError(f"table: coverage applies to compare's bounds of Model S, got a Model {desc['model']} table")
    if "normalize" in desc:
        desc["normalize"] = bool(desc["normalize"])
    return model_from_description(desc)


def table_coverage(table, quantities=("q_best", "q_rank"), levels=(0.5, 0.8, 0.95), group_size: int = 6):
    """:func:`group_coverage` of a stored simulation table (a DataFrame, or the path of a Parquet file written by
    ``validation.simulate``, ``cascade validate`` or ``cascade sweep collect``): the model from its provenance
    columns, the d = infinity prediction at its alphas, and one block of rows per d and quantity, with a ``d``
    column first. Used by ``cascade coverage``."""
    from pathlib import Path

    from numerics import predict

    from .experiment import read_parquet_table

    if isinstance(table, (str, Path)):
        table = read_parquet_table(table)
    require(table, pd.DataFrame, "table")
    if isinstance(quantities, str):
        quantities = [quantities]
    quantities = list(quantities)
    bad = [q for q in quantities if q not in ("q_best", "q_rank", "proj")]
    if bad or not quantities:
        raise ValueError(f"quantities: each must be 'q_best', 'q_rank' or 'proj', got {quantities!r}")
    need = {"seed", "alpha", "k", "d", *quantities}
    missing = sorted(need - set(table.columns))
    if missing:
        raise ValueError(f"table: expected a per-seed simulation table; missing columns {missing}")
    model = _table_model(table)
    blocks = []
    for d, part in table.groupby("d", sort=True):
        pred = predict(model, np.unique(part["alpha"].to_numpy(dtype=float)))
        for q in quantities:
            blocks.append(group_coverage(pred, part, q, levels, group_size).assign(d=int(d)))
    out = pd.concat(blocks, ignore_index=True)
    return out[["d"] + [c for c in out.columns if c != "d"]]
