"""A run's protocol as stored: what every trial of a study shares (run.json, each study's
metadata), the digest its studies are named by, and the trial configuration it gives a model.
How a protocol is chosen (presets, flags) is bench/studies/protocol.py's."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from bench.config import BATCH_SIZE, NLL_K, TrialConfig, check_protocol, known_keys, trial_config
from bench.defaults import TRIAL_KEYS

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
    # Field defaults are what protocols stored before the field existed meant (see ADDED_LATER).
    batch_size: int = BATCH_SIZE
    nll_k: int = NLL_K  # explicit models' NLL: importance samples and test images per evaluation
    nll_n: int = 10000
    numerics: str = "float32"  # bench/numerics.py: the presets train in true float32 (TF32 off)
    arch: str = "infogan"  # the networks its models are built on (bench/models/architectures.py)
    sample_steps: int = 1000  # iterative samplers' steps per sample (bench/models/ddpm.py)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: object = "a stored run protocol") -> "RunProtocol":
        return cls(**known_keys(cls, data, where))

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
        from bench.data import get_dataset
        from bench.models import get_model_class

        values = {k: getattr(self, k) for k in TRIAL_KEYS}
        if self.match == "flops":
            ratio = _reference_flops(self) / _model_flops(self, model, hparams)
            values["steps"], values["eval_every"] = (max(1, round(values[k] * ratio)) for k in ("steps", "eval_every"))
        values = check_protocol(get_dataset(self.dataset).info, {}, values)  # stored values: capped, as presets'
        return trial_config(model, self.dataset, get_model_class(model), values, hparams, seed, self.batch_size)


# Protocol fields added after runs were first stored, with the value those runs trained under
# (float32: nothing had run on CUDA, and on a CPU TF32 does not exist; infogan: the only networks;
# 1000 sampling steps: no model sampled iteratively, so any value left their trials as they were).
_ABSENT = object()
ADDED_LATER = {"numerics": "float32", "arch": "infogan", "sample_steps": 1000}


def _model_flops(protocol: RunProtocol, model: str, hparams: dict) -> float:
    from bench.flops import flops_per_step
    from bench.data import get_dataset

    shape = get_dataset(protocol.dataset).info.image_shape
    return flops_per_step(model, shape, hparams, protocol.batch_size, protocol.arch)


def _reference_flops(protocol: RunProtocol) -> float:
    from bench.models import get_model_class

    return _model_flops(protocol, REFERENCE_MODEL, dict(get_model_class(REFERENCE_MODEL).search_space.defaults))
