r"""One experiment interface for both models (docs/experiments.md).

Each model is one :class:`Experiment` adapter with the same shape:

* its command-line flags with its own defaults (:meth:`Experiment.add_flags`,
  :meth:`Experiment.from_args`);
* ``predict(model, sizes, estimator)``: the d = infinity theory of an estimator;
* ``simulate(model, sizes, seed, ...)``: one finite-size task (a tidy table);
* ``compare``, ``plot``, ``report`` and ``thresholds``;
* ``validate``: the main job of the model, theory next to simulation.

Estimators plug in per model (:attr:`Experiment.estimators`): Model S has the spectral
estimator and the Bayes-optimal one; Model C the layer-wise spectral algorithm. The CLI,
the sweep store and ``cascade plot`` dispatch through :func:`experiment_for` on the model
description (``describe()`` / ``from_description``), never on default strings or column
names.

>>> experiment_for("compositional").name, experiment_for({"model": "S", "m": "3"}).name
('C', 'S')
"""
from __future__ import annotations

import hashlib
import json

__all__ = ["Experiment", "Estimator", "EXPERIMENTS", "experiment_for", "register", "model_from_description",
           "MODEL_FLAG_HELP", "table_metadata", "read_table_metadata", "model_hash", "add_provenance",
           "without_metadata"]


class Estimator:
    """An estimator of a model: its d = infinity theory and (if any) its finite-size algorithm."""

    name = ""
    summary = ""
    has_simulation = False

    def predict(self, model, sizes, **options):
        raise NotImplementedError

    def __repr__(self):
        return f"<estimator {self.name}: {self.summary}>"


class Experiment:
    """Base class of the per-model adapters (see the module docstring)."""

    name = ""              # the canonical --model value
    aliases: tuple = ()    # accepted spellings
    title = ""
    size_name = ""         # the size variable of predict/simulate ("alpha = n/d", "n/D")
    estimators: dict = {}
    #: flag dest -> (default per command or a single default, help); None means "the model's field default"
    flags: dict = {}
    #: per-command defaults of the run flags (--d, --alphas, --seeds)
    run_defaults: dict = {}

    # -- flags ----------------------------------------------------------------------------
    def from_args(self, args):
        """The model described by the flags (unset flags take this model's defaults)."""
        raise NotImplementedError

    def default(self, command: str, dest: str):
        table = self.run_defaults.get(command, {})
        return table.get(dest, self.run_defaults.get("*", {}).get(dest))

    # -- the interface --------------------------------------------------------------------
    def estimator(self, name: str) -> Estimator:
        if name not in self.estimators:
            raise ValueError(f"estimator: model {self.name} has the estimators {', '.join(self.estimators)}; "
                             f"got {name!r}")
        return self.estimators[name]

    def predict(self, model, sizes, estimator: str, **options):
        return self.estimator(estimator).predict(model, sizes, **options)

    def simulate(self, model, sizes, seed: int, **options):
        raise NotImplementedError

    def thresholds(self, model, **options) -> tuple[str, list[dict]]:
        raise NotImplementedError

    def validate(self, model, **options) -> dict:
        raise NotImplementedError

    def estimate(self, model, sizes, seeds, **options) -> str | None:
        """A one-paragraph estimate of ``validate``'s time and peak memory on this machine, printed
        before it starts; None where the run is short enough not to need one."""
        return None

    def report(self, result: dict) -> str:
        raise NotImplementedError

    def plot_table(self, table, kind: str, out) -> list[str]:
        raise NotImplementedError

    def model_from_description(self, desc: dict):
        raise NotImplementedError

    def __repr__(self):
        return f"<experiment {self.name}: {self.title}; estimators {', '.join(self.estimators)}>"


EXPERIMENTS: dict = {}
MODEL_FLAG_HELP = "S: the shallow multi-index model [D]; C: the compositional model [S], [T] (aliases: shallow, compositional)"


def register(exp: Experiment) -> Experiment:
    EXPERIMENTS[exp.name] = exp
    return exp


def _load():
    if not EXPERIMENTS:
        from . import model_c, model_s  # noqa: F401 (they register themselves)


def experiment_for(key) -> Experiment:
    """The adapter for a --model spelling, a description dict, or a model object."""
    _load()
    if isinstance(key, dict):
        key = key.get("model", "S")
    elif not isinstance(key, str):
        if not callable(getattr(key, "describe", None)):
            raise TypeError(f"model: expected S, C, a description dict or a model, got {type(key).__name__}")
        key = key.describe()["model"]
    for exp in EXPERIMENTS.values():
        if key == exp.name or key in exp.aliases:
            return exp
    names = ", ".join(f"{e.name} ({', '.join(e.aliases)})" for e in EXPERIMENTS.values())
    raise ValueError(f"model: unknown model {key!r}; choose {names}")


def model_from_description(desc: dict):
    """A HierarchicalModel or CompositionalModel from its ``describe()`` dict."""
    if not isinstance(desc, dict):
        raise TypeError(f"desc: expected a dict of model fields, got {type(desc).__name__}")
    return experiment_for(desc).model_from_description(desc)


def model_hash(model) -> int:
    """A stable 32-bit hash of a model's description (seeds every random stream of its simulations).

    >>> from theory import HierarchicalModel
    >>> model_hash(HierarchicalModel(m=3)) == model_hash(HierarchicalModel(m=3))
    True
    """
    return int(description_digest(model.describe(), 8), 16)


def description_digest(desc, length: int) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``desc`` (a model description, or a list of
    them) as canonical JSON (sorted keys): the one hash behind every seed stream (``model_hash``) and
    every store name derived from a model (the lag, separation and Model C sweeps).

    >>> description_digest({"model": "C", "d": 20}, 10) == description_digest({"d": 20, "model": "C"}, 10)
    True
    """
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:length]


def add_provenance(df, desc: dict, dtype: str | None = None, **extra):
    """The provenance columns of a simulation table, in place: every model field (lists as JSON),
    the dtype, the package version and any ``extra`` columns (e.g. the sweep task). Returns df."""
    from theory import __version__

    for key, val in desc.items():
        df[key] = json.dumps(val) if isinstance(val, list) else val
    if dtype is not None:
        df["dtype"] = dtype
    for key, val in extra.items():
        df[key] = val
    df["version"] = __version__
    return df


#: the columns a stored table carries for ``cascade plot`` and ``cascade predict --out``, not for reading
METADATA_COLUMNS = ("model_json", "table_kind", "thresholds_json")


def without_metadata(table):
    """The table as shown to a reader: without the :data:`METADATA_COLUMNS` it may carry."""
    return table.drop(columns=list(METADATA_COLUMNS), errors="ignore")


def table_metadata(model, kind: str) -> dict:
    """Columns that let ``cascade plot`` redraw a table: the model description and the table kind."""
    return {"model_json": json.dumps(model.describe()), "table_kind": kind}


def read_parquet_table(path):
    """A stored Parquet table (``cascade plot``, ``cascade coverage``); ValueError naming ``table`` where the file
    is missing or is not a readable Parquet table."""
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"table: no such Parquet file {str(path)!r}")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow: not Parquet, truncated, unreadable
        raise ValueError(f"table: cannot read {str(path)!r} as a Parquet table ({exc})") from None


def read_table_metadata(df) -> tuple[dict, str]:
    """(model description, table kind) of a stored table; ValueError if it carries none."""
    if "model_json" not in df.columns:
        raise ValueError("table: it carries no model_json column; cascade plot redraws tables written by "
                         "cascade validate, predict --out and reproduce")
    desc = json.loads(df["model_json"].iloc[0])
    kind = str(df["table_kind"].iloc[0]) if "table_kind" in df.columns else _legacy_kind(df)
    return desc, kind


def _legacy_kind(df) -> str:
    """Tables written before the table_kind column: their kind from the figure they belong to."""
    cols = set(df.columns)
    if {"method", "nmse", "log_d_n"} <= cols:
        return "separation"
    if {"kind", "log_d_n", "staircase"} <= cols:
        return "staircase"
    if {"alpha", "eigenvalue", "d"} <= cols and "q_sim" not in cols:
        return "spectra"
    return "comparison"
