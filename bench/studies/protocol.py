"""A run's protocol: what every trial of a study shares, from a preset plus explicit flags.

Presets are TOML files shipped in bench/presets/; a flag given on the command line always wins.
A run folder holds studies of one protocol at a time: rerunning with a different one is refused
(field by field) unless forced, and then its studies live beside the old ones, never mixed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Optional

from bench.config import BATCH_SIZE, EXTRACTORS, NLL_K, TrialConfig, nll_settings, positive_int
from bench.errors import BenchError
from bench.numerics import NUMERICS

SEARCHES = ("wide", "narrow")
MATCHES = ("steps", "flops")
REFERENCE_MODEL = "ns_gan"  # with --match flops every model spends what ns_gan's defaults spend


@dataclass(frozen=True)
class RunProtocol:
    dataset: str
    search: str
    steps: int
    eval_every: int
    eval_samples: int
    extractor: str
    match: str
    batch_size: int = BATCH_SIZE
    nll_k: int = NLL_K  # explicit models' NLL: importance samples and test images per evaluation
    nll_n: int = 10000
    numerics: str = "float32"  # bench/numerics.py: the presets train in true float32 (TF32 off)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunProtocol":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def digest(self) -> str:
        """Eight hex digits naming this protocol's studies. A field added after runs were stored
        counts only where it differs from the value those runs had, so their studies keep their names."""
        fields_ = {k: v for k, v in self.to_dict().items() if ADDED_LATER.get(k, _ABSENT) != v}
        return hashlib.sha256(json.dumps(fields_, sort_keys=True).encode()).hexdigest()[:8]

    def differences(self, other: "RunProtocol") -> list[str]:
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {theirs[k]!r} stored, {mine[k]!r} asked" for k in mine if mine[k] != theirs[k]]

    def trial_config(self, model: str, hparams: dict, seed: int) -> TrialConfig:
        """The trial of one configuration; with match = flops its length is scaled to the FLOPs
        that ns_gan's author defaults spend in `steps` (evaluation points scale alike)."""
        steps, eval_every = self.steps, self.eval_every
        if self.match == "flops":
            ratio = _reference_flops(self) / _model_flops(self, model, hparams)
            steps, eval_every = max(1, round(steps * ratio)), max(1, round(eval_every * ratio))
        from bench.data import get_dataset
        from bench.models import get_model_class

        nll_k, nll_n = nll_settings(get_model_class(model), get_dataset(self.dataset).info, self.nll_k,
                                    self.nll_n, strict=False)
        return TrialConfig(model=model, dataset=self.dataset, hparams=dict(hparams), steps=steps,
                           eval_every=eval_every, eval_samples=self.eval_samples, seed=seed,
                           batch_size=self.batch_size, extractor=self.extractor, nll_k=nll_k, nll_n=nll_n,
                           numerics=self.numerics)


# Protocol fields added after runs were first stored, with the value those runs trained under
# (float32: nothing had run on CUDA, and on a CPU TF32 does not exist).
_ABSENT = object()
ADDED_LATER = {"numerics": "float32"}


def _model_flops(protocol: RunProtocol, model: str, hparams: dict) -> float:
    from bench.flops import flops_per_step
    from bench.data import get_dataset

    shape = get_dataset(protocol.dataset).info.image_shape
    return flops_per_step(model, shape, hparams, protocol.batch_size)


def _reference_flops(protocol: RunProtocol) -> float:
    from bench.models import get_model_class

    return _model_flops(protocol, REFERENCE_MODEL, dict(get_model_class(REFERENCE_MODEL).search_space.defaults))


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("bench.presets").iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if name not in preset_names():
        raise BenchError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return tomllib.loads(resources.files("bench.presets").joinpath(f"{name}.toml").read_text())


def preset_seeds(name: str) -> int:
    """Seed re-runs of each model's best configuration that the preset asks for (paper: 50)."""
    return int(load_preset(name).get("seeds", 0))


def resolve_protocol(dataset: str, preset: str = "paper", *, search: Optional[str] = None,
                     steps: Optional[int] = None, eval_every: Optional[int] = None,
                     eval_samples: Optional[int] = None, extractor: Optional[str] = None,
                     match: Optional[str] = None, nll_k: Optional[int] = None,
                     nll_n: Optional[int] = None, numerics: Optional[str] = None) -> RunProtocol:
    """Preset values, the dataset's study schedule where the preset leaves it open, flags on top."""
    from bench.data import get_dataset

    info = get_dataset(dataset).info
    values = load_preset(preset)
    chosen = {
        "search": search or values.get("search", "wide"),
        "steps": steps or values.get("steps", info.steps),
        "eval_every": eval_every or values.get("eval_every", info.eval_every),
        "eval_samples": eval_samples or values.get("eval_samples", info.reference_size),
        "extractor": extractor or values.get("extractor", "inception"),
        "match": match or values.get("match", "steps"),
        "nll_k": nll_k or values.get("nll_k", NLL_K),
        "nll_n": nll_n or values.get("nll_n", info.reference_size),
        "numerics": numerics or values.get("numerics", "float32"),
    }
    for key, accepted in (("search", SEARCHES), ("extractor", EXTRACTORS), ("match", MATCHES),
                          ("numerics", tuple(NUMERICS))):
        if chosen[key] not in accepted:
            raise BenchError(f"unknown {key} {chosen[key]!r}; accepted: {', '.join(accepted)}")
    for key in ("steps", "eval_every", "eval_samples", "nll_k", "nll_n"):
        chosen[key] = positive_int(f"--{key.replace('_', '-')}", chosen[key])
    chosen["eval_samples"] = min(chosen["eval_samples"], info.reference_size)
    chosen["nll_n"] = min(chosen["nll_n"], info.reference_size)
    if chosen["eval_samples"] < 2:
        raise BenchError("--eval-samples must be at least 2: FID needs a covariance")
    return RunProtocol(dataset=info.name, **chosen)
