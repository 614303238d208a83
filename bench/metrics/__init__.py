"""Metrics: feature extractors, FID, IS, KID, precision/recall, density/coverage, PRD, cached
reference statistics, the metric registry, and the evaluator trials and `bench score` use.

Samples go through a feature extractor once (`extract_features`); every feature metric is
computed from those features (`metric_set.compute_metrics`). IS needs an extractor with
`has_logits`. Metrics that need the model itself (triangle P/R, NLL, AIS) are in
bench/model_metrics/; every metric is declared in the registry (bench/metrics/registry.py).
"""

from __future__ import annotations

from bench.config import EXTRACTORS
from bench.errors import BenchError
from bench.metrics.evaluator import Evaluation, SampleEvaluator
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_fid import feature_statistics, fid_from_features, frechet_distance
from bench.metrics.metric_isc import inception_score
from bench.metrics.metric_kid import kid
from bench.metrics.metric_prc import density_coverage, precision_recall
from bench.metrics.metric_prd import prd
from bench.metrics.metric_set import MetricSettings, compute_metrics
from bench.metrics.reference_stats import ReferenceStats, reference_statistics
from bench.metrics.registry import (MetricInputs, MetricOutput, default_score_metrics, get_metric, listing,
                                    parse_metrics, record_columns, register_metric, registered_metrics,
                                    score_choices, trial_metrics)


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


__all__ = [
    "EXTRACTORS", "Evaluation", "FeatureExtractor", "MetricInputs", "MetricOutput", "MetricSettings", "ReferenceStats",
    "SampleEvaluator", "compute_metrics", "default_score_metrics", "density_coverage", "extract_features",
    "feature_statistics", "fid_from_features", "frechet_distance", "get_extractor", "get_metric", "inception_score",
    "kid", "listing", "parse_metrics", "prd", "precision_recall", "record_columns", "reference_statistics",
    "register_metric", "registered_metrics", "score_choices", "trial_metrics",
]
