"""Scores a trial's generated samples against its reference set, with the protocol behind the numbers."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bench.data.base import ImageSplit
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_fid import feature_statistics, frechet_distance
from bench.metrics.reference_stats import reference_statistics

SAMPLE_INPUT = "float [0,1] x 255 = float [0,255], not quantised"


class SampleEvaluator:
    """Built once per trial; `evaluate` is called at every evaluation point.

    `n` is the number of generated samples per evaluation (n_fake) and also caps the reference set
    at its first n images (PROTOCOL §3); the reference statistics come from the on-disk cache.
    """

    def __init__(self, dataset_name: str, reference: ImageSplit, n: int, extractor: FeatureExtractor,
                 device=None, cache_dir: Optional[Path] = None, progress: bool = True, batch_size: int = 64):
        if n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, got n={n}")
        self.dataset_name, self.n, self.extractor = dataset_name, n, extractor
        self.device, self.progress, self.batch_size = device, progress, batch_size
        self.reference = reference.head(n)
        self.stats = reference_statistics(self.reference, dataset_name, extractor, device=device, cache_dir=cache_dir,
                                          progress=progress, batch_size=batch_size)

    def evaluate(self, samples: torch.Tensor) -> dict:
        """{"fid": float}; {"fid": None, "non_finite_samples": True} when samples or features are not finite
        (the trainer records that as divergence)."""
        if not samples.is_floating_point() or samples.dim() != 4:
            raise ValueError(f"samples must be float [N, C, H, W] in [0, 1], got {samples.dtype} {tuple(samples.shape)}")
        if len(samples) != self.n:
            raise ValueError(f"the protocol scores {self.n} samples (n_fake), got {len(samples)}")
        if not torch.isfinite(samples).all():
            return {"fid": None, "non_finite_samples": True}
        features = extract_features(self.extractor, samples, batch_size=self.batch_size, device=self.device,
                                    progress=self.progress)["features"]
        if not np.isfinite(features).all():
            return {"fid": None, "non_finite_samples": True}
        mu, sigma = feature_statistics(features)
        return {"fid": frechet_distance(self.stats.mu, self.stats.sigma, mu, sigma)}

    def protocol(self) -> dict:
        """Every variable that changes the numbers; stored beside each result."""
        return {
            "metrics": ["fid"],
            "extractor": self.extractor.protocol(),
            "standard": self.extractor.standard,
            "dataset": self.dataset_name,
            "reference": self.reference.description,
            "n_real": len(self.reference),
            "n_fake": self.n,
            "samples": SAMPLE_INPUT,
            "fid": "float64, eigvalsh of sigma_ref^1/2 sigma_fake sigma_ref^1/2",
            "versions": {p: _version(p) for p in ("torch", "torch-fidelity", "numpy", "scipy")},
        }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
