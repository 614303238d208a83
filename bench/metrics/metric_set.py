"""The feature metrics, registered: each computed from one pass of features of the samples.

Trials and `bench score` both come here: features of the samples are extracted once, the
reference features come from the cache, and every requested metric is computed from those two
sets. A metric that cannot be computed (IS without the classifier layer) is reported in
`unavailable` with its reason, never as a number. The math lives in metric_fid/kid/prc/prd/isc;
this module only says what each needs and writes (bench/metrics/registry.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from bench.errors import BenchError
from bench.metrics import metric_fid, metric_isc, metric_kid, metric_prc, metric_prd
from bench.metrics.registry import MetricInputs, MetricOutput, get_metric, register_metric, registered_metrics

FEATURES = ("features",)


@dataclass(frozen=True)
class MetricSettings:
    """Every metric parameter that changes a number (PROTOCOL §5 defaults); stored in protocols."""

    kid_subsets: int = 100
    kid_subset_size: int = 1000
    kid_seed: int = 2020
    pr_k: int = 3
    dc_k: int = 5
    prd_clusters: int = 20
    prd_angles: int = 1001
    prd_runs: int = 10
    prd_seed: int = 2020
    is_splits: int = 10


@register_metric("fid", columns=("fid",), needs=FEATURES, description="Fréchet distance of Gaussian fits")
def _fid(x: MetricInputs) -> MetricOutput:
    if x.reference is not None:  # a trial's or `bench score`'s evaluator: on the device, Σ_r^½ made once
        value = metric_fid.fid_to_reference(x.reference, x.fake_features)
    else:
        mu_r, sigma_r = x.real_stats if x.real_stats is not None else metric_fid.feature_statistics(x.real_features)
        mu_f, sigma_f = metric_fid.feature_statistics(x.fake_features)
        value = metric_fid.frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    return MetricOutput({"fid": value}, protocol={"form": "float64, eigvalsh of sigma_real^1/2 sigma_fake sigma_real^1/2"})


@register_metric("kid", columns=("kid_mean", "kid_std"), needs=FEATURES, table_columns=("kid_mean",),
                 description="unbiased MMD^2, cubic kernel")
def _kid(x: MetricInputs) -> MetricOutput:
    s = x.settings
    result = metric_kid.kid(x.real_features, x.fake_features, subsets=s.kid_subsets, subset_size=s.kid_subset_size,
                            seed=s.kid_seed, device=x.device)
    return MetricOutput({"kid_mean": result.mean, "kid_std": result.std}, protocol=result.protocol())


@register_metric("pr", columns=("precision", "recall"), needs=FEATURES, description="k-NN balls, Kynkäänniemi 2019")
def _pr(x: MetricInputs) -> MetricOutput:
    k = x.settings.pr_k
    return MetricOutput(metric_prc.precision_recall(x.real_features, x.fake_features, k=k, device=x.device,
                                                    real_radii=_radii(x, k)),
                        protocol={"k": k, "inside": "<=", "radius": "k-th neighbour excluding self"})


@register_metric("dc", columns=("density", "coverage"), needs=FEATURES, description="Naeem 2020")
def _dc(x: MetricInputs) -> MetricOutput:
    k = x.settings.dc_k
    return MetricOutput(metric_prc.density_coverage(x.real_features, x.fake_features, k=k, device=x.device,
                                                    real_radii=_radii(x, k)),
                        protocol={"k": k, "inside": "<", "radius": "k-th real neighbour excluding self"})


@register_metric("prd", columns=("prd_f8", "prd_f1_8"), needs=FEATURES, in_trials=False,
                 description="Sajjadi 2018; repeated k-means, left to `bench score`")
def _prd(x: MetricInputs) -> MetricOutput:
    s = x.settings
    result = metric_prd.prd(_host(x.fake_features), _host(x.real_features), num_clusters=s.prd_clusters,
                            num_angles=s.prd_angles,
                            num_runs=s.prd_runs, enforce_balance=False, seed=s.prd_seed)
    return MetricOutput({"prd_f8": result.f_beta, "prd_f1_8": result.f_beta_inv},
                        protocol={"clusters": s.prd_clusters, "angles": s.prd_angles, "runs": s.prd_runs,
                                  "seed": s.prd_seed, "order": "(eval=fake, ref=real)"})


@register_metric("is", columns=("is_mean", "is_std"), needs=("logits",), table_columns=("is_mean",),
                 description="Inception Score (needs the Inception classifier)")
def _is(x: MetricInputs) -> MetricOutput:
    if x.fake_logits is None:
        return MetricOutput(unavailable={"is": x.no_logits_reason})
    splits = min(x.settings.is_splits, len(x.fake_logits))
    mean, std = metric_isc.inception_score(x.fake_logits, splits=splits)
    return MetricOutput({"is_mean": mean, "is_std": std},
                        protocol={"splits": splits, "logits": "1008, without bias", "shuffle": False})


def _radii(x: MetricInputs, k: int):
    return x.reference.radii(k) if x.reference is not None else None


def _host(features):
    """PRD's k-means runs in NumPy."""
    return features.cpu().numpy() if torch.is_tensor(features) else features


@dataclass
class MetricValues:
    values: dict = field(default_factory=dict)  # name -> float
    unavailable: dict = field(default_factory=dict)  # metric -> reason
    protocol: dict = field(default_factory=dict)  # metric -> the parameters actually used


def compute_metrics(metrics: tuple[str, ...], real_features: np.ndarray, fake_features: np.ndarray,
                    fake_logits: Optional[np.ndarray], settings: MetricSettings = MetricSettings(),
                    real_stats: Optional[tuple[np.ndarray, np.ndarray]] = None, device=None,
                    no_logits_reason: str = "the feature extractor has no classifier layer") -> MetricValues:
    """Every metric in `metrics` from the two feature sets (and the fake logits, for IS)."""
    needing_model = [m for m in metrics if get_metric(m).needs_model]
    if needing_model:
        raise BenchError(f"metric {needing_model[0]!r} needs the model, not only features; use SampleEvaluator")
    inputs = MetricInputs(real_features=real_features, fake_features=fake_features, fake_logits=fake_logits,
                          real_stats=real_stats, settings=settings, device=device, no_logits_reason=no_logits_reason,
                          n_fake=len(fake_features))
    out = MetricValues()
    for metric in (m for m in registered_metrics() if m.name in metrics):
        result = metric.compute(inputs)
        out.values.update(result.values)
        out.unavailable.update(result.unavailable)
        if result.protocol is not None:
            out.protocol[metric.protocol_key] = result.protocol
    return out


def settings_dict(settings: MetricSettings) -> dict:
    return asdict(settings)
