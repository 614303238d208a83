"""Typed, validated specifications. Bad input stops here with one line (DESIGN.md, data flow step 1)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError

BATCH_SIZE = 64  # PROTOCOL §1, for every model and dataset
EVAL_NOISE_SEED = 0  # every checkpoint of every trial is scored on the same z (PROTOCOL §3)
EXTRACTORS = ("inception", "tiny")


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines a trial's numbers. Two runs with equal configs are the same
    trial: a rerun resumes it, and a different config refuses to reuse its folder."""

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
    numerics: str = "float32"  # bench/numerics.py: the floating-point flags it trains under

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrialConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

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
    device: str = "auto"
    data_root: Optional[Path] = None
    inception_weights: Optional[Path] = None
    progress: bool = True
    cache_dir: Optional[Path] = None


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


def make_trial_config(
    model: str,
    dataset: str,
    *,
    steps: Optional[int] = None,
    eval_every: Optional[int] = None,
    eval_samples: Optional[int] = None,
    seed: int = 0,
    overrides: Optional[dict] = None,
    extractor: str = "inception",
    base_hparams: Optional[dict] = None,
    nll_k: Optional[int] = None,
    nll_n: Optional[int] = None,
    numerics: str = "float32",
) -> TrialConfig:
    """Validate names and numbers and fill the study's defaults for the dataset (PROTOCOL §3)."""
    from bench.data import get_dataset
    from bench.models import get_model_class

    model_cls = get_model_class(model)
    info = get_dataset(dataset).info
    if extractor not in EXTRACTORS:
        raise BenchError(f"unknown feature extractor {extractor!r}; accepted: {', '.join(EXTRACTORS)}")
    steps = positive_int("--steps", steps if steps is not None else info.steps)
    eval_every = positive_int("--eval-every", eval_every if eval_every is not None else info.eval_every)
    eval_samples = positive_int("--eval-samples", eval_samples if eval_samples is not None else info.reference_size)
    if eval_samples < 2:
        raise BenchError("--eval-samples must be at least 2: FID needs a covariance")
    if eval_samples > info.reference_size:
        raise BenchError(
            f"--eval-samples {eval_samples} exceeds the {info.reference_size} reference images of {dataset}"
        )
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise BenchError(f"--seed must be an integer, got {seed!r}") from None
    from bench.numerics import numerics_named

    numerics_named(numerics)  # one line for an unknown name
    hparams = model_cls.search_space.resolve(overrides, base=base_hparams)
    nll_k, nll_n = nll_settings(model_cls, info, nll_k, nll_n)
    return TrialConfig(
        model=model,
        dataset=dataset,
        hparams=hparams,
        steps=steps,
        eval_every=eval_every,
        eval_samples=eval_samples,
        seed=seed,
        extractor=extractor,
        nll_k=nll_k,
        nll_n=nll_n,
        numerics=numerics,
    )


NLL_K = 1000  # importance samples for reported VAE numbers (PROTOCOL §5)


def nll_settings(model_cls, info, nll_k: Optional[int], nll_n: Optional[int], strict: bool = True) -> tuple[int, int]:
    """(k, n) of a model's NLL evaluation: 0, 0 for implicit models. Asking an implicit model
    for an NLL is an error when `strict` (one model named), ignored for `--model all`."""
    if nll_k is not None:
        nll_k = positive_int("--nll-k", nll_k)
    if nll_n is not None:
        nll_n = positive_int("--nll-n", nll_n)
    if not model_cls.explicit:
        if strict and (nll_k is not None or nll_n is not None):
            raise BenchError(f"{model_cls.name} is implicit: it has no likelihood for --nll-k/--nll-n; for a "
                             "decoder-based model use AIS (`bench score --nll ais --checkpoint TRIAL_DIR`)")
        return 0, 0
    return nll_k or NLL_K, min(nll_n or info.reference_size, info.reference_size)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device} was asked for but no CUDA device is available; use --device cpu or auto")
        return device
    if device == "cpu":
        return device
    raise BenchError(f"unknown device {device!r}; accepted: auto, cpu, cuda, cuda:N")


def default_cache_dir() -> Path:
    env = os.environ.get("BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"
