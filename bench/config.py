"""Typed, validated specifications. Bad input stops here with one line (DESIGN.md, data flow step 1)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from bench.defaults import CHOICES, DEFAULTS, FROM_DATASET, STUDY_KEYS, TRIAL_KEYS
from bench.errors import BenchError

BATCH_SIZE = DEFAULTS["batch_size"]
EVAL_NOISE_SEED = 0  # every checkpoint of every trial is scored on the same z (PROTOCOL §3)
EXTRACTORS = CHOICES["extractor"]
NLL_K = DEFAULTS["nll_k"]


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines a trial's numbers. Two runs with equal configs are the same
    trial: a rerun resumes it, and a different config refuses to reuse its folder. Field defaults
    are what records written before the field existed meant, not option defaults (bench/defaults.py)."""

    model: str
    dataset: str
    hparams: dict
    steps: int
    eval_every: int
    eval_samples: int
    seed: int = 0
    batch_size: int = BATCH_SIZE
    extractor: str = "inception"
    # Explicit models: importance samples and test images of the NLL at each evaluation point
    # (0 for implicit models, which have no likelihood to evaluate).
    nll_k: int = 0
    nll_n: int = 0
    # Iterative samplers (DDPM): steps per sample at evaluation points (0 for every other model).
    sample_steps: int = 0
    numerics: str = "float32"  # bench/numerics.py: the floating-point flags it trains under
    arch: str = "infogan"  # the networks it is built on (bench/models/architectures.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: object = "a stored trial configuration") -> "TrialConfig":
        return cls(**known_keys(cls, data, where))

    def differences(self, other: "TrialConfig") -> list[str]:
        """Human-readable `field: ours vs theirs` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for key in mine:
            if key == "hparams":
                for hk in sorted(set(mine[key]) | set(theirs[key])):
                    if mine[key].get(hk) != theirs[key].get(hk):
                        out.append(f"{hk}: {mine[key].get(hk)!r} vs {theirs[key].get(hk)!r}")
            elif mine[key] != theirs[key]:
                out.append(f"{key}: {mine[key]!r} vs {theirs[key]!r}")
        return out

    def evaluation_steps(self) -> list[int]:
        return evaluation_steps(self.steps, self.eval_every)


@dataclass(frozen=True)
class RunOptions:
    """How a trial is run: may change between a run and its resumption without changing results."""

    out: Path
    device: str = DEFAULTS["device"]
    data_root: Optional[Path] = None
    inception_weights: Optional[Path] = None
    progress: bool = True
    cache_dir: Optional[Path] = None
    lease: Optional[object] = None  # a worker's `trial_folder.Lease` on the trial folder; None: `bench train`
    checkpoint_every: str = DEFAULTS["checkpoint_every"]  # N evaluation points, or a time: 90s, 10m, 1h
    keep: str = DEFAULTS["keep"]  # what ended trials keep on disk: best | weights | checkpoints (defaults.py)
    log: str = DEFAULTS["log"]  # none | tensorboard (bench/trial_log.py)

    @property
    def keep_checkpoints(self) -> bool:
        """An ended trial keeps its optimiser checkpoint (to train it further)."""
        return self.keep == "checkpoints"


_UNITS = {"s": 1, "m": 60, "h": 3600}


def checkpoint_interval(text: str) -> tuple[str, float]:
    """("points", N) for `N`, ("seconds", S) for `90s`, `10m`, `1h`; a one-line error otherwise."""
    text = str(text).strip()
    try:
        if text[-1:] in _UNITS:
            value, kind = float(text[:-1]) * _UNITS[text[-1]], "seconds"
        else:
            value, kind = int(text), "points"
    except ValueError:
        value, kind = -1, ""
    if value < 0 or (kind == "points" and value < 1):
        raise BenchError(f"--checkpoint-every {text!r}: give a number of evaluation points (1, 2, ...) or a time "
                         "such as 90s, 10m, 1h")
    return kind, value


def evaluation_steps(steps: int, every: int) -> list[int]:
    """Steps after which a trial is evaluated: every `every` steps and always after the last.

    A remainder shorter than half an interval is folded into the last interval instead of adding
    an evaluation a few steps later: the study's 15,625 steps at 3,906 give four points
    (3906, 7812, 11718, 15625), as compare_gan's checkpoints did.
    """
    points = list(range(every, steps + 1, every))
    if not points or points[-1] != steps:
        if points and steps - points[-1] < every / 2:
            points[-1] = steps
        else:
            points.append(steps)
    return points


def known_keys(cls, data: dict, where: object) -> dict:
    """A stored record's fields, refusing a key the dataclass lacks: an older record has fewer
    keys (their field defaults fill in), never unknown ones, and dropping one would change a trial."""
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise BenchError(f"{where} has an unknown key {unknown[0]!r} (known: {', '.join(names)}); it was written "
                         "by a newer bench or edited by hand")
    return dict(data)


def positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
        if number != float(value) or number <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise BenchError(f"{name} must be a positive integer, got {value!r}") from None
    return number


def parse_assignments(items: Optional[list[str]]) -> dict:
    """`--set key=value` pairs into a dict of strings; types are checked by the model's search space."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BenchError(f"bad --set {item!r}: expected key=value, e.g. --set lr=1e-4")
        out[key.strip()] = value.strip()
    return out


def study_defaults(info) -> dict:
    """The defaults table's protocol values, with the dataset's own where the table defers to it."""
    own = {"steps": info.steps, "eval_every": info.eval_every, "eval_samples": info.reference_size,
           "nll_n": info.reference_size}
    return {k: own[k] if v == FROM_DATASET else v for k, v in DEFAULTS.items()
            if k in TRIAL_KEYS or k in STUDY_KEYS}


# Protocol values bounded by the dataset's reference split.
_REFERENCE_BOUND = ("eval_samples", "nll_n")


def check_protocol(info, given: dict, fallback: dict) -> dict:
    """The one validator of protocol values, behind `bench train` and `bench run` alike.

    Every key of `fallback` is taken from `given` where it is not None, else from `fallback` (the
    preset, the table, the dataset, or a stored protocol). A value given beyond the dataset's
    reference split is refused, naming the limit; a fallback is capped to it, so that the paper
    preset's 10000 samples still work on a folder of 500 images.
    """
    values = {}
    for key, default in fallback.items():
        explicit = given.get(key) is not None
        value = given[key] if explicit else default
        flag = f"--{key.replace('_', '-')}"
        if key in CHOICES:
            if value not in CHOICES[key]:
                raise BenchError(f"unknown {key} {value!r}; accepted: {', '.join(CHOICES[key])}")
        else:
            value = positive_int(flag, value)
        if key in _REFERENCE_BOUND and value > info.reference_size:
            if explicit:
                raise BenchError(f"{flag} {value} exceeds the {info.reference_size} reference images of {info.name}")
            value = info.reference_size
        values[key] = value
    if values.get("eval_samples", 2) < 2:
        raise BenchError("--eval-samples must be at least 2: FID needs a covariance")
    return values


def trial_config(model: str, dataset: str, model_cls, values: dict, hparams: dict, seed: int,
                 batch_size: int = BATCH_SIZE) -> TrialConfig:
    """The only constructor of trial configurations, from checked protocol values: implicit models
    have no likelihood, so their NLL settings are 0, 0 whatever the protocol says."""
    from bench.models.architectures import check_model_architecture

    check_model_architecture(model_cls, values["arch"])
    nll_k, nll_n = (values["nll_k"], values["nll_n"]) if model_cls.explicit else (0, 0)
    sample_steps = model_cls.sampling_steps(hparams, values["sample_steps"])
    return TrialConfig(model=model, dataset=dataset, hparams=dict(hparams), steps=values["steps"],
                       eval_every=values["eval_every"], eval_samples=values["eval_samples"], seed=seed,
                       batch_size=batch_size, extractor=values["extractor"], nll_k=nll_k, nll_n=nll_n,
                       sample_steps=sample_steps, numerics=values["numerics"], arch=values["arch"])


def make_trial_config(
    model: str,
    dataset: str,
    *,
    steps: Optional[int] = None,
    eval_every: Optional[int] = None,
    eval_samples: Optional[int] = None,
    seed: Optional[int] = None,
    overrides: Optional[dict] = None,
    extractor: Optional[str] = None,
    base_hparams: Optional[dict] = None,
    nll_k: Optional[int] = None,
    nll_n: Optional[int] = None,
    sample_steps: Optional[int] = None,
    numerics: Optional[str] = None,
    arch: Optional[str] = None,
) -> TrialConfig:
    """One trial under the study's protocol for the dataset (PROTOCOL §3); None takes the default."""
    from bench.data import get_dataset
    from bench.models import get_model_class
    from bench.models.architectures import own_networks

    model_cls = get_model_class(model)
    info = get_dataset(dataset).info
    given = {"steps": steps, "eval_every": eval_every, "eval_samples": eval_samples, "extractor": extractor,
             "nll_k": nll_k, "nll_n": nll_n, "sample_steps": sample_steps, "numerics": numerics, "arch": arch}
    values = check_protocol(info, given, {k: v for k, v in study_defaults(info).items() if k in TRIAL_KEYS})
    seed = DEFAULTS["seed"] if seed is None else seed
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise BenchError(f"--seed must be an integer, got {seed!r}") from None
    if not model_cls.explicit and (nll_k is not None or nll_n is not None):
        raise BenchError(f"{model_cls.name} is implicit: it has no likelihood for --nll-k/--nll-n; for a "
                         "decoder-based model use AIS (`bench score --nll ais --checkpoint TRIAL_DIR`)")
    hparams = model_cls.search_space.resolve(overrides, base=base_hparams)
    outside = model_cls.search_space.outside_search({k: hparams[k] for k in overrides or {}})
    if outside:
        print(f"bench: warning: {', '.join(outside)}: outside what the study searches, trained as asked",
              file=sys.stderr)
    if arch is not None and own_networks(model_cls):
        print(f"bench: warning: {model_cls.name} has networks of its own: --arch {arch} does not change them",
              file=sys.stderr)
    return trial_config(model, dataset, model_cls, values, hparams, seed)


def resolve_device(device: str) -> str:
    """The one device a process trains on: the first `--device` names (a list is for `--jobs`,
    bench/studies/placement.py spreads its workers over it)."""
    from bench.devices import device_list

    return device_list(device)[0]


def default_cache_dir() -> Path:
    env = os.environ.get("BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"
