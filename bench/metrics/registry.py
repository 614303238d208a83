"""Every metric the suite knows, declared once: its name, the record columns it writes, what it
needs and where it applies (after stylegan2-ada's `register_metric` and torch-fidelity's registry).

The evaluator, `bench score --metrics`, `bench list metrics` and the report tables all read this
one list, so a new metric is a module with a `@register_metric` function and nothing else: no
caller holds a list of metric names or columns of its own.

A metric's compute function takes the `MetricInputs` of one evaluation point and returns a
`MetricOutput`. Metrics needing only features (and logits) are pure functions of two feature sets
(bench/metrics/metric_*.py); those needing the model or test images live in bench/model_metrics/.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from bench.errors import BenchError

# What a metric may need: the first two come from one pass of the samples through the feature
# extractor; "samples" are the generated images themselves; "model" and "test_images" exist only
# inside a trial (or `bench score --checkpoint`), never for samples scored from files.
NEEDS = ("features", "logits", "samples", "model", "test_images")
# Where a metric applies: "all" datasets and models, the "triangles" dataset only, "explicit"
# models only (those with a likelihood), or "decoders" (models differentiable in z).
SCOPES = ("all", "triangles", "explicit", "decoders")
FROM_SAMPLES = frozenset({"features", "logits", "samples"})
# Modules whose `@register_metric` functions make up the suite, in the order `bench list metrics`
# shows them (the order of today's records and of the old METRICS table).
BUILTIN_MODULES = (
    "bench.metrics.metric_set", "bench.model_metrics.metric_triangles", "bench.model_metrics.metric_nll",
    "bench.model_metrics.metric_ais",
)


@dataclass
class MetricInputs:
    """Everything one evaluation point offers a metric; a metric reads only what it declares."""

    real_features: Optional[np.ndarray] = None
    fake_features: Optional[np.ndarray] = None
    fake_logits: Optional[np.ndarray] = None
    real_stats: Optional[tuple] = None  # cached (mu, sigma) of the reference features
    reference: object = None  # bench.metrics.reference_side.ReferenceSide: the reference half, on the device
    settings: object = None  # bench.metrics.metric_set.MetricSettings
    device: object = None
    no_logits_reason: str = "the feature extractor has no classifier layer"
    n_fake: int = 0
    model: object = None
    test_images: object = None  # uint8 [N, C, H, W]: the explicit models' NLL images
    dataset: Optional[str] = None
    nll_k: int = 1
    cache_dir: Optional[Path] = None
    data_root: Optional[Path] = None
    ais: object = None  # bench.model_metrics.metric_ais.AISSettings, for "ais"


@dataclass
class MetricOutput:
    values: dict = field(default_factory=dict)  # column -> float
    unavailable: dict = field(default_factory=dict)  # column or metric -> why it has no number
    protocol: Optional[dict] = None  # the parameters actually used


@dataclass(frozen=True)
class Metric:
    """One registered metric. `protocol_key` names its entry in the record's protocol: under
    `per_metric` (and then the metric is listed in the protocol's `metrics`), or, for
    `protocol_in="protocol"`, beside them at the top (the NLL has been stored as protocol["nll"]
    since it was introduced, and stored runs are read that way)."""

    name: str
    columns: tuple
    needs: tuple
    applies_to: str
    in_trials: bool
    compute: Callable[[MetricInputs], MetricOutput]
    description: str = ""
    protocol_key: str = ""
    protocol_in: str = "per_metric"
    numerics: object = None  # a bench.numerics.Numerics to compute under; None: the caller's
    diverged_if_not_finite: bool = False  # a NaN here means the model diverged (NLL), not "no number"
    table_columns: tuple = ()  # what results tables show; a spread over subsets or splits stays in the records

    @property
    def needs_model(self) -> bool:
        return not set(self.needs) <= FROM_SAMPLES

    def applies(self, dataset: Optional[str], model=None, test_images=None) -> bool:
        """Whether this metric has a number to give for this dataset and model (None: samples from files)."""
        if "model" in self.needs and model is None or "test_images" in self.needs and test_images is None:
            return False
        return {"all": True, "triangles": dataset == "triangles",
                "explicit": model is not None and bool(getattr(model, "explicit", False)),
                "decoders": model is not None and bool(getattr(model, "invertible_by_gradient", True))}[self.applies_to]


_REGISTRY: dict[str, Metric] = {}
_loaded = False


def register_metric(name: str, *, columns: Iterable[str], needs: Iterable[str], applies_to: str = "all",
                    in_trials: bool = True, description: str = "", protocol_key: Optional[str] = None,
                    protocol_in: str = "per_metric", numerics=None, diverged_if_not_finite: bool = False,
                    table_columns: Optional[Iterable[str]] = None):
    """Decorator registering `fn(inputs: MetricInputs) -> MetricOutput` as metric `name`.

    Refuses a name already taken, an unknown need or scope, and a column another metric writes:
    two metrics writing one column would overwrite each other in a record.
    """
    columns, needs = tuple(columns), tuple(needs)
    table_columns = columns if table_columns is None else tuple(table_columns)

    def decorate(fn):
        problems = []
        if not name or not name.isidentifier():
            problems.append(f"metric name {name!r} is not an identifier")
        if name in _REGISTRY:
            problems.append(f"metric {name!r} is already registered (by {_REGISTRY[name].compute.__module__})")
        if not columns:
            problems.append(f"metric {name!r} declares no record columns")
        if unknown := [n for n in needs if n not in NEEDS]:
            problems.append(f"metric {name!r} needs unknown {unknown[0]!r}; accepted: {', '.join(NEEDS)}")
        if applies_to not in SCOPES:
            problems.append(f"metric {name!r} applies to unknown {applies_to!r}; accepted: {', '.join(SCOPES)}")
        if protocol_in not in ("per_metric", "protocol"):
            problems.append(f"metric {name!r}: protocol_in must be 'per_metric' or 'protocol', got {protocol_in!r}")
        taken = {c: m.name for m in _REGISTRY.values() for c in m.columns}
        if stray := [c for c in table_columns if c not in columns]:
            problems.append(f"metric {name!r}: table column {stray[0]!r} is not among its columns")
        if clash := [c for c in columns if c in taken]:
            problems.append(f"metric {name!r} writes column {clash[0]!r}, already written by {taken[clash[0]]!r}")
        if problems:
            raise BenchError("; ".join(problems))
        _REGISTRY[name] = Metric(name, columns, needs, applies_to, in_trials, fn, description, protocol_key or name,
                                 protocol_in, numerics, diverged_if_not_finite, table_columns)
        return fn

    return decorate


def unregister_metric(name: str) -> None:
    """For tests and plug-ins that register a metric for a while."""
    _REGISTRY.pop(name, None)


def registered_metrics() -> tuple[Metric, ...]:
    """Every metric: the built-in ones in BUILTIN_MODULES order whatever was imported first, then
    plug-ins in the order they registered."""
    _load_builtins()
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    order = sorted(enumerate(_REGISTRY.values()), key=lambda im: (rank.get(im[1].compute.__module__, len(rank)), im[0]))
    return tuple(m for _, m in order)


def get_metric(name: str) -> Metric:
    _load_builtins()
    if name not in _REGISTRY:
        raise BenchError(f"unknown metric {name!r}; accepted: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def trial_metrics() -> tuple[str, ...]:
    """What a trial computes where it applies (PRD's repeated k-means is left to `bench score`)."""
    return tuple(m.name for m in registered_metrics() if m.in_trials)


def score_choices() -> tuple[str, ...]:
    """The `--metrics` choices of `bench score` on sample files: every metric needing no model."""
    return tuple(m.name for m in registered_metrics() if not m.needs_model)


def default_score_metrics() -> tuple[str, ...]:
    """`bench score`'s default `--metrics`: what a trial computes from samples alone."""
    return tuple(m.name for m in registered_metrics() if m.in_trials and not m.needs_model)


def parse_metrics(text: str | Iterable[str], model: bool = False) -> tuple[str, ...]:
    """Metric names from "fid,kid" or a list, validated, without repeats, in the order given.

    Without a `model` (samples from files) a metric that needs one is refused in one line.
    """
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    accepted = ", ".join(m.name for m in registered_metrics() if model or not m.needs_model)
    if not names:
        raise BenchError(f"no metrics asked for; accepted: {accepted}")
    for name in names:
        metric = _REGISTRY.get(name)
        if metric is None:
            raise BenchError(f"unknown metric {name!r}; accepted: {accepted}")
        if metric.needs_model and not model:
            raise BenchError(f"metric {name!r} needs the model ({', '.join(metric.needs)}), not only its samples; "
                             f"it is computed in trials (or by `bench score --checkpoint`); accepted here: {accepted}")
    return tuple(dict.fromkeys(names))


def record_columns(metrics: Optional[Iterable[str]] = None) -> tuple[str, ...]:
    """The record columns of `metrics` (default: all), in registry order: for results tables."""
    wanted = None if metrics is None else set(metrics)
    return tuple(c for m in registered_metrics() if wanted is None or m.name in wanted for c in m.columns)


def table_columns() -> tuple[str, ...]:
    """The metric columns results tables show, of the metrics trials compute, in registry order."""
    return tuple(c for m in registered_metrics() if m.in_trials for c in m.table_columns)


def listing() -> list[dict]:
    """One row per metric for `bench list metrics`."""
    return [{"name": m.name, "columns": ", ".join(m.columns), "needs": ", ".join(m.needs),
             "applies to": m.applies_to, "in trials": "yes" if m.in_trials else "no", "what": m.description}
            for m in registered_metrics()]


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
