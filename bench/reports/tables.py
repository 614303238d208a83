"""Summary tables, each a function of the tidy results table (`load_results`) alone.

Tables are grouped by (dataset, protocol_id, model): numbers made under different protocols never
share a row. Numeric columns stay numeric (NaN where a value does not exist); the "mean ± std"
text of the study's Table 2 is made only when a table is rendered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.reports.bootstrap import BUDGET_POINTS, budget_curve, min_draws
from bench.reports.results import finished, trial_table

GROUP = ["dataset", "protocol_id", "model"]
QUANTILES = (0.1, 0.25, 0.75, 0.9)


def search_trials(results: pd.DataFrame) -> pd.DataFrame:
    trials = trial_table(results)
    return trials[trials["role"] == "search"] if not trials.empty else trials


def best_trials(results: pd.DataFrame) -> pd.DataFrame:
    """Each model's search trial with the lowest finite score (at its best evaluation point)."""
    trials = search_trials(results)
    if trials.empty:
        return trials
    trials = trials[np.isfinite(trials["objective"].astype(float))]
    return trials.loc[trials.groupby(GROUP, sort=False)["objective"].idxmin()] if not trials.empty else trials


def model_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per model: trials done, diverged share, best and median FID, FID quantiles (finite trials)."""
    rows = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        done = group[finished(group["status"])]
        scores = done["objective"].astype(float)
        finite = scores[np.isfinite(scores)]
        row = dict(zip(GROUP, key))
        row.update({
            "trials": len(group), "done": len(done), "diverged": int((done["status"] == "diverged").sum()),
            "diverged_share": (done["status"] == "diverged").mean() if len(done) else np.nan,
            "failed": int((group["status"] == "failed").sum()),
            "pending": int(group["status"].isin(["running", "waiting"]).sum()),
            "best_fid": finite.min() if len(finite) else np.nan,
            "median_fid": finite.median() if len(finite) else np.nan,
        })
        for q in QUANTILES:
            row[f"fid_q{int(q * 100):02d}"] = finite.quantile(q) if len(finite) else np.nan
        best = done.loc[scores.idxmin()] if len(finite) else None
        row["best_trial"] = int(best["trial"]) if best is not None else pd.NA
        rows.append(row)
    return pd.DataFrame(rows, columns=GROUP + ["trials", "done", "diverged", "diverged_share", "failed", "pending",
                                              "best_fid", "median_fid"]
                        + [f"fid_q{int(q * 100):02d}" for q in QUANTILES] + ["best_trial"])


def seed_table(results: pd.DataFrame) -> pd.DataFrame:
    """The best configuration re-run over seeds: mean ± std of each rerun's minimum FID."""
    trials = trial_table(results)
    if trials.empty:
        return pd.DataFrame(columns=GROUP + ["seeds", "fid_mean", "fid_std", "diverged"])
    reruns = trials[(trials["role"] == "seeds") & finished(trials["status"])]
    rows = []
    for key, group in reruns.groupby(GROUP, sort=False):
        scores = group["objective"].astype(float)
        finite = scores[np.isfinite(scores)]
        rows.append({**dict(zip(GROUP, key)), "seeds": len(group),
                     "fid_mean": finite.mean() if len(finite) else np.nan,
                     "fid_std": finite.std(ddof=1) if len(finite) > 1 else np.nan,
                     "diverged": int((group["status"] == "diverged").sum())})
    return pd.DataFrame(rows, columns=GROUP + ["seeds", "fid_mean", "fid_std", "diverged"])


def budget_table(results: pd.DataFrame, ks=BUDGET_POINTS, draws: int = 5000, seed: int = 0) -> pd.DataFrame:
    """FID at budget k (PROTOCOL §4) for k in `ks` up to each model's finished trials."""
    frames = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        scores = group.loc[finished(group["status"]), "objective"].astype(float).to_numpy()
        chosen = [k for k in ks if 1 <= k <= len(scores)]
        if not chosen:
            continue
        curve = budget_curve(scores, max(chosen), draws=draws, seed=seed, model=key[-1])
        frames.append(curve[curve["k"].isin(chosen)].assign(**dict(zip(GROUP, key))))
    columns = GROUP + ["k", "mean", "std", "lo", "hi", "all_diverged", "trials"]
    return pd.concat(frames)[columns].reset_index(drop=True) if frames else pd.DataFrame(columns=columns)


def budget_curves(results: pd.DataFrame, draws: int = 5000, seed: int = 0) -> pd.DataFrame:
    """The whole curve, k = 1 … trials done, for the budget plot."""
    frames = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        scores = group.loc[finished(group["status"]), "objective"].astype(float).to_numpy()
        if len(scores):
            frames.append(budget_curve(scores, len(scores), draws=draws, seed=seed, model=key[-1])
                          .assign(**dict(zip(GROUP, key))))
    return pd.concat(frames).reset_index(drop=True) if frames else pd.DataFrame()


def pairwise_table(results: pd.DataFrame, k: int, draws: int = 5000, seed: int = 0) -> pd.DataFrame:
    """P(row model's budget-k minimum FID < column model's), ties counted half; one protocol each."""
    frames = []
    for (dataset, protocol_id), block in search_trials(results).groupby(["dataset", "protocol_id"], sort=False):
        mins = {}
        for model, group in block.groupby("model", sort=False):
            scores = group.loc[finished(group["status"]), "objective"].astype(float).to_numpy()
            if len(scores):
                mins[model] = min_draws(scores, k, draws=draws, seed=seed, model=model)[:, k - 1]
        names = list(mins)
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for a in names:
            for b in names:
                if a != b:
                    matrix.loc[a, b] = beat_probability(mins[a], mins[b])
        matrix.index.name = "model"
        frames.append(matrix.reset_index().assign(dataset=dataset, protocol_id=protocol_id, k=k))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def beat_probability(a: np.ndarray, b: np.ndarray) -> float:
    """P(a < b) over paired bootstrap draws, ties (both infinite included) counted half."""
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


QUALITY = ["fid", "kid_mean", "precision", "recall", "density", "coverage", "is_mean", "tri_precision",
           "tri_recall", "tri_f1"]


def quality_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every metric at the best evaluation point of each model's best trial (lowest FID)."""
    trials = search_trials(results)
    if trials.empty or "fid" not in trials:
        return pd.DataFrame(columns=GROUP + ["trial", "step"])
    extra = sorted(c for c in trials.columns if c.startswith("nll") or c.startswith("bpd"))
    columns = [c for c in QUALITY + extra if c in trials.columns and trials[c].notna().any()]
    rows = []
    for key, group in trials.groupby(GROUP, sort=False):
        fid = group["fid"].astype(float)
        if not np.isfinite(fid).any():
            continue
        best = group.loc[fid.idxmin()]
        rows.append({**dict(zip(GROUP, key)), "trial": best["trial"], "step": best["step"],
                     **{c: best[c] for c in columns}})
    return pd.DataFrame(rows, columns=GROUP + ["trial", "step"] + columns)


def compute_table(results: pd.DataFrame) -> pd.DataFrame:
    """What each model spent, so that equal budgets can be seen to be equal."""
    trials = trial_table(results)
    columns = GROUP + ["trials", "steps", "g_steps", "images_seen", "flops_per_trial", "train_hours",
                       "eval_hours", "seconds_per_trial", "device"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    trials = trials[trials["role"] == "search"]
    done = trials[finished(trials["status"])]
    rows = []
    for key, group in done.groupby(GROUP, sort=False):
        get = lambda c: pd.to_numeric(group[c], errors="coerce") if c in group else pd.Series(np.nan, index=group.index)
        train, evaluate = get("compute.train_seconds"), get("compute.eval_seconds")
        devices = sorted({str(d) for d in group["device"].dropna()})
        rows.append({**dict(zip(GROUP, key)), "trials": len(group), "steps": get("compute.steps").mean(),
                     "g_steps": get("compute.g_steps").mean(), "images_seen": get("compute.images_seen").mean(),
                     "flops_per_trial": get("compute.flops").mean(), "train_hours": train.sum() / 3600,
                     "eval_hours": evaluate.sum() / 3600, "seconds_per_trial": (train + evaluate).mean(),
                     "device": "; ".join(devices) if devices else np.nan})
    return pd.DataFrame(rows, columns=columns)


NLL_COLUMNS = (("nll_bpd", "bits/dim"), ("nll_nats_binarized", "nats, binarised images"))


def ranking(results: pd.DataFrame) -> pd.DataFrame:
    """Every model ranked by its best FID, and explicit models also by their best NLL (lowest over
    all evaluation points of all search trials; bits/dim and binarised nats are ranked apart,
    as they are not the same quantity)."""
    summary = model_summary(results)
    if summary.empty:
        return pd.DataFrame(columns=GROUP + ["fid_rank", "best_fid"])
    summary = summary[GROUP + ["best_fid"]].copy()
    summary["fid_rank"] = summary.groupby(["dataset", "protocol_id"])["best_fid"].rank(method="min")
    search = results[results["role"] == "search"]
    for column, _ in NLL_COLUMNS:
        if column not in search or search[column].isna().all():
            continue
        best = search.dropna(subset=[column]).sort_values(column).groupby(GROUP, sort=False).head(1)
        best = best[GROUP + [column, f"{column}_se"] + (["metric_protocol.nll.k"] if "metric_protocol.nll.k" in best else [])]
        best = best.rename(columns={"metric_protocol.nll.k": f"{column}_k"})
        summary = summary.merge(best, on=GROUP, how="left")
        summary[f"{column}_rank"] = summary.groupby(["dataset", "protocol_id"])[column].rank(method="min")
    summary = summary.sort_values(["dataset", "protocol_id", "fid_rank"], kind="stable").reset_index(drop=True)
    for col in [c for c in summary.columns if c.endswith("_rank")]:
        summary[col] = summary[col].astype("Int64")
    return summary
