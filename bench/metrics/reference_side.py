"""The reference set's half of every feature metric, on the evaluation device, made once per process.

At every evaluation point FID needs μ_r, Σ_r^½ and Tr Σ_r, precision/recall and density/coverage
the k-NN radii of the real features, KID the real features themselves. They depend on the
reference statistics only (bench/metrics/reference_stats.py, cached on disk), so a worker makes
them once and every trial of the same protocol on the same device reuses them: nothing of the
reference side is copied to the device or recomputed per point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from bench.metrics.metric_fid import sqrt_psd_torch, statistics_torch
from bench.metrics.metric_prc import knn_radii
from bench.metrics.reference_stats import ReferenceStats

_SIDES: dict = {}  # (reference key, device) -> ReferenceSide, for the life of the process


@dataclass
class ReferenceSide:
    features: torch.Tensor  # float64 [n, d] on the device
    mu: torch.Tensor  # float64 [d]
    sigma: torch.Tensor  # float64 [d, d]
    sigma_root: torch.Tensor  # Σ_r^½ (symmetric PSD square root)
    trace: torch.Tensor  # Tr Σ_r
    _radii: dict = field(default_factory=dict)

    def radii(self, k: int) -> torch.Tensor:
        """Each real sample's distance to its k-th nearest other real sample (made once per k)."""
        if k not in self._radii:
            self._radii[k] = knn_radii(self.features, k)
        return self._radii[k]


def reference_side(stats: ReferenceStats, device) -> ReferenceSide:
    device = torch.device(device if device is not None else "cpu")
    key = (json.dumps(stats.protocol, sort_keys=True), str(device))
    if key not in _SIDES:
        features = torch.as_tensor(stats.features).to(device, torch.float64)
        mu, sigma = statistics_torch(features)
        _SIDES[key] = ReferenceSide(features, mu, sigma, sqrt_psd_torch(sigma), torch.trace(sigma))
    return _SIDES[key]
