"""Scores generated samples against a reference set, with the protocol behind every number.

One evaluator serves a whole trial (and `bench score`): the reference features come from the
on-disk cache once, each call extracts the samples' features once, and every registered metric
that applies (bench/metrics/registry.py) is computed: the feature metrics always, the triangle
metric on triangles, the NLL for explicit models. What applies is decided once, from the dataset,
the model (None for samples from files) and the test images, so the trial loop has no special cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import torch

from bench.data.base import ImageSplit
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_set import MetricSettings, settings_dict
from bench.metrics.reference_side import reference_side
from bench.metrics.reference_stats import reference_statistics
from bench.metrics.registry import MetricInputs, get_metric, parse_metrics, registered_metrics, trial_metrics
from bench.numerics import METRICS
from bench.progress import shown

SAMPLE_INPUT = "float [0,1] x 255 = float [0,255], not quantised"
INCEPTION_BATCH = {"cpu": 64, "cuda": 250}  # images per feature-extractor call, by device type


@dataclass
class Evaluation:
    metrics: dict = field(default_factory=dict)  # name -> float: the numbers of this evaluation point
    unavailable: dict = field(default_factory=dict)  # metric -> why it has no number
    finite: bool = True  # False when samples, their features or the NLL hold NaN/Inf (the trial diverged)


class SampleEvaluator:
    """Built once per trial; `evaluate` is called at every evaluation point.

    `n` is the number of generated samples per evaluation (n_fake) and also caps the reference set
    at its first n images (PROTOCOL §3); the reference statistics come from the on-disk cache.
    `metrics`: the names asked for (default: every metric trials compute); of those, the ones that
    apply to `dataset_name`, `model` and `test_images` are computed (`self.metrics`). `model` is
    the trial's model, scored as it trains; `test_images` (uint8) are the explicit models' NLL
    images, with `nll_k` importance samples; `data_root` is where the triangle metric's splits live.
    """

    def __init__(self, dataset_name: str, reference: ImageSplit, n: int, extractor: FeatureExtractor,
                 device=None, cache_dir: Optional[Path] = None, progress: bool = True, batch_size: Optional[int] = None,
                 metrics: Optional[Iterable[str]] = None, settings: MetricSettings = MetricSettings(),
                 model=None, test_images: Optional[torch.Tensor] = None, nll_k: int = 1,
                 data_root: Optional[Path] = None):
        if n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got n={n}")
        self.dataset_name, self.n, self.extractor = dataset_name, n, extractor
        # Inception batches: larger on a GPU, where 64 images keep it a fraction busy (unmeasured).
        batch_size = batch_size or INCEPTION_BATCH.get(extractor.device.type, 64)
        self.device, self.progress, self.batch_size = device, progress, batch_size
        self.settings, self.model, self.test_images = settings, model, test_images
        self.nll_k, self.cache_dir, self.data_root = nll_k, cache_dir, data_root
        asked = trial_metrics() if metrics is None else parse_metrics(metrics, model=model is not None)
        self.metrics = tuple(m for m in asked if get_metric(m).applies(dataset_name, model, test_images))
        self.reference = reference.head(n)
        self.stats = reference_statistics(self.reference, dataset_name, extractor, device=device, cache_dir=cache_dir,
                                          progress=progress, batch_size=batch_size)
        self.side = reference_side(self.stats, extractor.device)  # once per process and device
        self._last_inputs: Optional[MetricInputs] = None
        self._last_protocol: dict = {}
        self._last_beside: dict = {}  # protocol entries stored beside per_metric (the NLL's)

    def evaluate(self, samples: torch.Tensor, nll_k: Optional[int] = None) -> Evaluation:
        """All applicable metrics of `samples` (float [n, C, H, W] in [0, 1] or uint8) and of the model;
        `nll_k` for this call only (default: the evaluator's), the record saying which k it used."""
        if samples.dim() != 4 or not (samples.is_floating_point() or samples.dtype == torch.uint8):
            raise ValueError(f"samples must be float [N, C, H, W] in [0, 1] or uint8, got {samples.dtype} {tuple(samples.shape)}")
        if len(samples) != self.n:
            raise ValueError(f"the protocol scores {self.n} samples (n_fake), got {len(samples)}")
        if samples.is_floating_point() and not torch.isfinite(samples).all():
            return Evaluation(finite=False)
        out = extract_features(self.extractor, samples, batch_size=self.batch_size, device=self.device,
                               progress=self.progress, on_device=True)
        if not bool(torch.stack([torch.isfinite(v).all() for v in out.values()]).all()):  # one host read
            return Evaluation(finite=False)
        reason = (f"{self.extractor.name} has no classifier layer "
                  f"(weights: {self.extractor.protocol().get('weights_source', 'n/a')})")
        inputs = MetricInputs(real_features=self.side.features, fake_features=out["features"],
                              fake_logits=out.get("logits"), reference=self.side,
                              settings=self.settings, device=self.device, no_logits_reason=reason, n_fake=self.n,
                              model=self.model, test_images=self.test_images, dataset=self.dataset_name,
                              nll_k=nll_k or self.nll_k, cache_dir=self.cache_dir, data_root=self.data_root)
        self._last_inputs = inputs
        values, unavailable, per_metric, beside = {}, {}, {}, {}
        with shown(self.progress):
            for metric in self._in_registry_order():
                if not self._compute(metric, inputs, values, unavailable, per_metric, beside):
                    return Evaluation(finite=False)
        self._last_protocol, self._last_beside = per_metric, beside
        return Evaluation(values, unavailable)

    def recompute(self, evaluation: Evaluation, metric_name: str, **inputs) -> Evaluation:
        """`evaluation` (the last `evaluate`'s) with one metric computed again on the same samples
        and changed inputs, e.g. the NLL with a larger k at a point a report quotes."""
        if metric_name not in self.metrics:
            return evaluation
        values, unavailable = dict(evaluation.metrics), dict(evaluation.unavailable)
        self._last_inputs = dataclasses.replace(self._last_inputs, **inputs)
        with shown(self.progress):
            computed = self._compute(get_metric(metric_name), self._last_inputs, values, unavailable,
                                     self._last_protocol, self._last_beside)
        if not computed:
            return Evaluation(finite=False)
        return Evaluation(values, unavailable)

    @staticmethod
    def _compute(metric, inputs, values, unavailable, per_metric, beside) -> bool:
        with metric.numerics.applied() if metric.numerics is not None else contextlib.nullcontext():
            result = metric.compute(inputs)
        if metric.diverged_if_not_finite and not all(math.isfinite(v) for v in result.values.values()):
            return False
        values.update(result.values)
        unavailable.update(result.unavailable)
        if result.protocol is not None:
            (per_metric if metric.protocol_in == "per_metric" else beside)[metric.protocol_key] = result.protocol
        return True

    def _in_registry_order(self):
        return [m for m in registered_metrics() if m.name in self.metrics]

    def protocol(self) -> dict:
        """Every variable that changes the numbers; stored beside each result."""
        return {
            # The NLL (protocol_in "protocol") has never been listed here: its entry is protocol["nll"].
            "metrics": [m for m in self.metrics if get_metric(m).protocol_in == "per_metric"],
            "extractor": self.extractor.protocol(),
            "metric_numerics": METRICS.to_dict(),  # features, triangle P/R and NLL (bench/numerics.py)
            "standard": self.extractor.standard,
            "dataset": self.dataset_name,
            "reference": self.reference.description,
            "n_real": len(self.reference),
            "n_fake": self.n,
            "samples": SAMPLE_INPUT,
            "settings": settings_dict(self.settings),
            "per_metric": self._last_protocol,
            "versions": {p: _version(p) for p in ("bench", "torch", "torch-fidelity", "numpy", "scipy")},
            **self._last_beside,
        }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
