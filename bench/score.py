"""`bench score`: metrics of samples someone else generated, against a dataset's reference split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from bench.config import resolve_device
from bench.data import get_dataset
from bench.data.samples import load_samples
from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.files import atomic_write_json
from bench.files import now


@dataclass
class ScoreResult:
    samples: str
    dataset: str
    n: int
    metrics: dict
    unavailable: dict
    protocol: dict

    def as_dict(self) -> dict:
        return {"samples": self.samples, "dataset": self.dataset, "n": self.n, "metrics": self.metrics,
                "unavailable": self.unavailable, "protocol": self.protocol, "time": now()}


def score_samples(samples_path: str | Path, dataset: str, metrics: tuple[str, ...], n: Optional[int] = None,
                  device: str = DEFAULTS["device"], data_root: Optional[Path] = None, extractor: Optional[str] = None,
                  inception_weights: Optional[Path] = None, cache_dir: Optional[Path] = None,
                  progress: bool = True, out: Optional[Path] = None) -> ScoreResult:
    """Score the first n samples against the first n reference images (PROTOCOL §3); write JSON to `out`.
    `extractor` None is the defaults table's."""
    from bench.metrics import SampleEvaluator, get_extractor

    extractor = DEFAULTS["extractor"] if extractor is None else extractor
    data = get_dataset(dataset)
    samples = load_samples(samples_path, data_root)
    expected = tuple(data.info.image_shape)
    if tuple(samples.shape[1:]) != expected:
        c, h, w = samples.shape[1:]
        raise BenchError(f"samples are {h}x{w}x{c} but {dataset} images are {expected[1]}x{expected[2]}x{expected[0]}; "
                         "score samples at the dataset's resolution and channels")
    if samples.is_floating_point() and not torch.isfinite(samples).all():
        raise BenchError(f"samples {samples_path} contain NaN or infinity")
    reference = data.load("reference", data_root)
    n = min(len(samples), len(reference)) if n is None else n
    if n > len(samples) or n > len(reference) or n < 2:
        raise BenchError(f"--n {n} must lie in 2..{min(len(samples), len(reference))} "
                         f"({len(samples)} samples, {len(reference)} reference images)")
    torch_device = torch.device(resolve_device(device))
    evaluator = SampleEvaluator(data.name, reference.head(n), n, get_extractor(extractor, inception_weights, torch_device),
                                device=torch_device, cache_dir=cache_dir, progress=progress, metrics=metrics)
    evaluation = evaluator.evaluate(samples[:n])
    result = ScoreResult(str(samples_path), data.name, n, evaluation.metrics, evaluation.unavailable,
                         evaluator.protocol())
    if out is not None:
        atomic_write_json(out, result.as_dict())
    return result
