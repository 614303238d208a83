"""Metrics: feature extractors, FID, cached reference statistics, and the per-trial evaluator.

Samples go through a feature extractor once (`extract_features`); every metric is computed from
those features. KID, IS and precision/recall will join as `metric_*.py` modules fed by the same
dict (IS needs an extractor with `has_logits`).
"""

from __future__ import annotations

from bench.errors import BenchError
from bench.metrics.evaluator import SampleEvaluator
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_fid import feature_statistics, fid_from_features, frechet_distance
from bench.metrics.reference_stats import ReferenceStats, reference_statistics

EXTRACTORS = ("inception", "tiny")


def get_extractor(name: str, weights=None, device="cpu") -> FeatureExtractor:
    """"inception" (the standard, loaded once per process) or "tiny" (tests only), on `device`.

    `weights` (a path) applies to "inception" only; see feature_extractor_inceptionv3 for where
    weights are looked for when it is None.
    """
    if name == "inception":
        from bench.metrics.feature_extractor_inceptionv3 import load_inception

        return load_inception(weights, device)
    if name == "tiny":
        from bench.metrics.feature_extractor_tiny import TinyExtractor

        return TinyExtractor().to(device)
    raise BenchError(f"unknown feature extractor {name!r}; accepted: {', '.join(EXTRACTORS)}")


__all__ = ["EXTRACTORS", "FeatureExtractor", "ReferenceStats", "SampleEvaluator", "extract_features",
           "feature_statistics", "fid_from_features", "frechet_distance", "get_extractor", "reference_statistics"]
