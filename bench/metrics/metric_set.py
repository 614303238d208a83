"""Which metrics a run asks for, and all of them computed from one pass of features.

Trials and `bench score` both come here: features of the samples are extracted once, the
reference features come from the cache, and every requested metric is computed from those two
sets. A metric that cannot be computed (IS without the classifier layer) is reported in
`unavailable` with its reason, never as a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

import numpy as np

from bench.errors import BenchError

# name: what it adds to a record's metrics
METRICS = {
    "fid": "fid",
    "kid": "kid_mean, kid_std",
    "pr": "precision, recall (k-NN balls, Kynkäänniemi 2019)",
    "dc": "density, coverage (Naeem 2020)",
    "prd": "prd_f8, prd_f1_8 (Sajjadi 2018)",
    "is": "is_mean, is_std (needs the Inception classifier)",
}
TRIAL_METRICS = ("fid", "kid", "pr", "dc", "is")  # PRD's repeated k-means is left to `bench score`


def parse_metrics(text: str | Iterable[str]) -> tuple[str, ...]:
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        what = f"unknown metric {unknown[0]!r}" if unknown else "no metrics asked for"
        raise BenchError(f"{what}; accepted: {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


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
    from bench.metrics import metric_fid, metric_isc, metric_kid, metric_prc, metric_prd

    out = MetricValues()
    if "fid" in metrics:
        mu_r, sigma_r = real_stats if real_stats is not None else metric_fid.feature_statistics(real_features)
        mu_f, sigma_f = metric_fid.feature_statistics(fake_features)
        out.values["fid"] = metric_fid.frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
        out.protocol["fid"] = {"form": "float64, eigvalsh of sigma_real^1/2 sigma_fake sigma_real^1/2"}
    if "kid" in metrics:
        result = metric_kid.kid(real_features, fake_features, subsets=settings.kid_subsets,
                                subset_size=settings.kid_subset_size, seed=settings.kid_seed, device=device)
        out.values.update(kid_mean=result.mean, kid_std=result.std)
        out.protocol["kid"] = result.protocol()
    if "pr" in metrics:
        out.values.update(metric_prc.precision_recall(real_features, fake_features, k=settings.pr_k, device=device))
        out.protocol["pr"] = {"k": settings.pr_k, "inside": "<=", "radius": "k-th neighbour excluding self"}
    if "dc" in metrics:
        out.values.update(metric_prc.density_coverage(real_features, fake_features, k=settings.dc_k, device=device))
        out.protocol["dc"] = {"k": settings.dc_k, "inside": "<", "radius": "k-th real neighbour excluding self"}
    if "prd" in metrics:
        result = metric_prd.prd(fake_features, real_features, num_clusters=settings.prd_clusters,
                                num_angles=settings.prd_angles, num_runs=settings.prd_runs,
                                enforce_balance=False, seed=settings.prd_seed)
        out.values.update(prd_f8=result.f_beta, prd_f1_8=result.f_beta_inv)
        out.protocol["prd"] = {"clusters": settings.prd_clusters, "angles": settings.prd_angles,
                               "runs": settings.prd_runs, "seed": settings.prd_seed, "order": "(eval=fake, ref=real)"}
    if "is" in metrics:
        if fake_logits is None:
            out.unavailable["is"] = no_logits_reason
        else:
            mean, std = metric_isc.inception_score(fake_logits, splits=min(settings.is_splits, len(fake_logits)))
            out.values.update(is_mean=mean, is_std=std)
            out.protocol["is"] = {"splits": min(settings.is_splits, len(fake_logits)), "logits": "1008, without bias",
                                  "shuffle": False}
    return out


def settings_dict(settings: MetricSettings) -> dict:
    return asdict(settings)
