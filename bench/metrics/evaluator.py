"""Scores generated samples against a reference set, with the protocol behind every number.

One evaluator serves a whole trial (and `bench score`): the reference features come from the
on-disk cache once, each call extracts the samples' features once, and every requested metric is
computed from those (bench/metrics/metric_set.py). On the triangles dataset a trial also gets
the study's triangle precision/recall, which needs the model itself (for recall, by inversion).
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bench.data.base import ImageSplit
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_set import TRIAL_METRICS, MetricSettings, compute_metrics, settings_dict
from bench.metrics.reference_stats import reference_statistics
from bench.numerics import METRICS

SAMPLE_INPUT = "float [0,1] x 255 = float [0,255], not quantised"


@dataclass
class Evaluation:
    metrics: dict = field(default_factory=dict)  # name -> float: the numbers of this evaluation point
    unavailable: dict = field(default_factory=dict)  # metric -> why it has no number
    finite: bool = True  # False when samples or their features hold NaN/Inf (the trial diverged)


class SampleEvaluator:
    """Built once per trial; `evaluate` is called at every evaluation point.

    `n` is the number of generated samples per evaluation (n_fake) and also caps the reference set
    at its first n images (PROTOCOL §3); the reference statistics come from the on-disk cache.
    `triangle_pr`: a `bench.metrics.metric_triangles` settings object, for trials on triangles.
    """

    def __init__(self, dataset_name: str, reference: ImageSplit, n: int, extractor: FeatureExtractor,
                 device=None, cache_dir: Optional[Path] = None, progress: bool = True, batch_size: int = 64,
                 metrics: tuple[str, ...] = TRIAL_METRICS, settings: MetricSettings = MetricSettings(),
                 triangle_pr=None):
        if n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got n={n}")
        self.dataset_name, self.n, self.extractor = dataset_name, n, extractor
        self.device, self.progress, self.batch_size = device, progress, batch_size
        self.metrics, self.settings, self.triangle_pr = tuple(metrics), settings, triangle_pr
        self.reference = reference.head(n)
        self.stats = reference_statistics(self.reference, dataset_name, extractor, device=device, cache_dir=cache_dir,
                                          progress=progress, batch_size=batch_size)
        self._last_protocol: dict = {}

    def evaluate(self, samples: torch.Tensor, model=None) -> Evaluation:
        """All metrics of `samples` (float [n, C, H, W] in [0, 1] or uint8); `model` for triangle P/R."""
        if samples.dim() != 4 or not (samples.is_floating_point() or samples.dtype == torch.uint8):
            raise ValueError(f"samples must be float [N, C, H, W] in [0, 1] or uint8, got {samples.dtype} {tuple(samples.shape)}")
        if len(samples) != self.n:
            raise ValueError(f"the protocol scores {self.n} samples (n_fake), got {len(samples)}")
        if samples.is_floating_point() and not torch.isfinite(samples).all():
            return Evaluation(finite=False)
        out = extract_features(self.extractor, samples, batch_size=self.batch_size, device=self.device,
                               progress=self.progress)
        if not all(np.isfinite(v).all() for v in out.values()):
            return Evaluation(finite=False)
        reason = (f"{self.extractor.name} has no classifier layer "
                  f"(weights: {self.extractor.protocol().get('weights_source', 'n/a')})")
        values = compute_metrics(self.metrics, self.stats.features, out["features"], out.get("logits"), self.settings,
                                 real_stats=(self.stats.mu, self.stats.sigma), device=self.device,
                                 no_logits_reason=reason)
        if self.triangle_pr is not None and model is not None:
            from bench.metrics.metric_triangles import triangle_precision_recall

            with METRICS.applied():  # the number triangles are ranked by: true float32, as the features
                tri = triangle_precision_recall(model, **self.triangle_pr)
            values.values["tri_precision"] = tri.precision
            if math.isnan(tri.recall):
                values.unavailable.update({"tri_recall": f"{type(model).__name__} cannot be inverted by gradient "
                                                         "descent on its input noise", "tri_f1": "needs recall"})
            else:
                values.values.update(tri_recall=tri.recall, tri_f1=tri.f1)
            values.protocol["triangles"] = tri.protocol()
        self._last_protocol = values.protocol
        return Evaluation(values.values, values.unavailable)

    def protocol(self) -> dict:
        """Every variable that changes the numbers; stored beside each result."""
        return {
            "metrics": list(self.metrics) + (["triangle_pr"] if self.triangle_pr is not None else []),
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
        }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
