"""The study's published numbers (PROTOCOL §6), shown beside ours only where a run follows the
study's protocol on one of its datasets, and always labelled as published."""

from __future__ import annotations

import numpy as np
import pandas as pd

SOURCE = "Lucic et al. 2018, Table 2 (best configuration, mean ± std over seeds)"
DATASETS = ("mnist", "fashion_mnist", "cifar10", "celeba")
# model -> dataset -> (mean, std); std is None where the study's value is itself unconfirmed.
TABLE_2 = {
    "mm_gan": {"mnist": (9.8, 0.9), "fashion_mnist": (29.6, 1.6), "cifar10": (72.7, 3.6), "celeba": (65.6, 4.2)},
    "ns_gan": {"mnist": (6.8, 0.5), "fashion_mnist": (26.5, 1.6), "cifar10": (58.5, 1.9), "celeba": (55.0, 3.3)},
    "lsgan": {"mnist": (7.8, 0.6), "fashion_mnist": (30.7, 2.2), "cifar10": (87.1, 47.5), "celeba": (53.9, 2.8)},
    "wgan": {"mnist": (6.7, 0.4), "fashion_mnist": (21.5, 1.6), "cifar10": (55.2, 2.3), "celeba": (41.3, 2.0)},
    "wgan_gp": {"mnist": (20.3, 5.0), "fashion_mnist": (24.5, 2.1), "cifar10": (55.8, 0.9), "celeba": (30.3, 1.0)},
    "dragan": {"mnist": (7.6, 0.4), "fashion_mnist": (27.7, 1.2), "cifar10": (69.8, 2.0), "celeba": (42.3, 3.0)},
    "began": {"mnist": (13.1, 1.0), "fashion_mnist": (22.9, 0.9), "cifar10": (71.4, 1.6), "celeba": (38.9, 0.9)},
    "vae": {"mnist": (23.8, None), "fashion_mnist": (58.7, None), "cifar10": (155.7, None), "celeba": (85.7, None)},
}


def follows_study(protocol: dict) -> bool:
    """True when a run's protocol is the paper preset's for a dataset of the study."""
    from bench.studies.protocol import resolve_protocol

    from bench.records.protocol import RunProtocol

    if protocol.get("dataset") not in DATASETS:
        return False
    paper = resolve_protocol(protocol["dataset"], "paper", search=protocol.get("search")).to_dict()
    stored = RunProtocol.from_dict(protocol).to_dict()  # fields added later take the value old runs had
    return all(stored.get(k) == v for k, v in paper.items())


def published_table(results: pd.DataFrame, seeds: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Our best-configuration FID (seed reruns where made, else the best trial) beside the study's."""
    columns = ["dataset", "model", "ours_mean", "ours_std", "ours_from", "published_mean", "published_std", "source"]
    rows = []
    protocols = results.drop_duplicates("protocol_id").set_index("protocol_id")
    for _, row in summary.iterrows():
        fields = {c[len("protocol."):]: v for c, v in protocols.loc[row["protocol_id"]].items()
                  if c.startswith("protocol.")}
        published = TABLE_2.get(row["model"], {}).get(row["dataset"])
        if published is None or not follows_study(fields):
            continue
        match = seeds[(seeds["protocol_id"] == row["protocol_id"]) & (seeds["model"] == row["model"])]
        if len(match) and np.isfinite(match["mean"].iloc[0]):
            ours = (match["mean"].iloc[0], match["std"].iloc[0], f"{int(match['seeds'].iloc[0])} seed reruns")
        else:
            ours = (row["best_score"], np.nan, "best single trial (no seed re-runs)")
        rows.append({"dataset": row["dataset"], "model": row["model"], "ours_mean": ours[0], "ours_std": ours[1],
                     "ours_from": ours[2], "published_mean": published[0],
                     "published_std": np.nan if published[1] is None else published[1], "source": SOURCE})
    return pd.DataFrame(rows, columns=columns)


# PROTOCOL §6's likelihood anchors: (dataset, metric, model, value, source). Larger networks
# trained for days, so they orient a reader; they are not a ranking against the fixed architecture.
LIKELIHOOD_ANCHORS = (
    ("cifar10", "nll_bpd", "Gated PixelCNN", 3.03, "van den Oord et al. 2016"),
    ("cifar10", "nll_bpd", "PixelCNN++", 2.92, "Salimans et al. 2017"),
    ("cifar10", "nll_bpd", "RealNVP", 3.49, "Dinh et al. 2017"),
    ("cifar10", "nll_bpd", "Glow", 3.35, "Kingma & Dhariwal 2018"),
    ("mnist", "nll_nats_binarized", "VAE, one stochastic layer", 86.76, "Burda et al. 2016, dynamically binarised"),
    ("mnist", "nll_nats_binarized", "IWAE, k = 50", 84.78, "Burda et al. 2016, dynamically binarised"),
)


def likelihood_anchors(results: pd.DataFrame) -> pd.DataFrame:
    """The published likelihoods of the datasets and units that this run has NLLs in."""
    columns = ["dataset", "metric", "model", "published", "source"]
    from bench.reports.tables import NLL_COLUMNS

    have = {(d, m) for d in results["dataset"].unique() for m, _ in NLL_COLUMNS
            if m in results and results.loc[results["dataset"] == d, m].notna().any()}
    rows = [dict(zip(columns, anchor)) for anchor in LIKELIHOOD_ANCHORS if anchor[:2] in have]
    return pd.DataFrame(rows, columns=columns)
