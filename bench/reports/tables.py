"""Summary tables, each a function of the tidy results table (`load_results`) alone.

Tables are grouped by (dataset, protocol_id, model): numbers made under different protocols never
share a row. Trials are ranked by their dataset's score (bench/scores.py: FID, or triangle F1 on
triangles; a `score` column names it), at each trial's best evaluation point; a diverged trial
keeps its best point before it diverged, as in compare_gan v1. Numeric columns stay numeric (NaN
where a value does not exist); the "mean ± std" text of the study's Table 2 is made only when a
table is rendered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.metrics.registry import table_columns
from bench.model_metrics.metric_nll import NLL_UNITS
from bench.reports.bootstrap import BUDGET_POINTS, DRAWS, budget_curve, min_draws
from bench.reports.results import finished, score_keys, trial_table
from bench.scores import FID, Score, score_for

GROUP = ["dataset", "protocol_id", "model"]
QUANTILES = (0.1, 0.25, 0.75, 0.9)


def search_trials(results: pd.DataFrame) -> pd.DataFrame:
    trials = trial_table(results)
    return trials[trials["role"] == "search"] if not trials.empty else trials


def group_score(key) -> Score:
    """The score of a (dataset, ...) group key."""
    return score_for(key[0] if isinstance(key, tuple) else key)


def trial_scores(group: pd.DataFrame, score: Score, strict: bool = False) -> np.ndarray:
    """Each trial's score (its value at its best point; NaN for none). `strict`: a diverged trial
    counts as a failure (no score), whatever it reached before, which is how bench scored them
    before it followed compare_gan v1."""
    values = group[score.metric].astype(float).to_numpy() if score.metric in group else np.full(len(group), np.nan)
    if strict:
        values = np.where(group["status"].to_numpy() == "diverged", np.nan, values)
    return values


def best_trials(results: pd.DataFrame) -> pd.DataFrame:
    """Each model's finished search trial with the best score (at its best evaluation point), by the
    score's tiebreak among equals; a model none of whose trials has the score (PixelCNN's triangle
    F1: it cannot be inverted) is shown by its best tiebreak (FID) instead of vanishing."""
    trials = search_trials(results)
    if trials.empty:
        return trials
    trials = trials[finished(trials["status"])]
    trials = trials.assign(_key=score_keys(trials), _tie=score_keys(trials, tiebreak=True))
    trials = trials[np.isfinite(trials["_key"]) | np.isfinite(trials["_tie"])]
    trials = trials.sort_values(["_key", "_tie"], kind="stable").groupby(GROUP, sort=False).head(1)
    return trials.drop(columns=["_key", "_tie"]).sort_values(GROUP, kind="stable")


SUMMARY_COLUMNS = (GROUP + ["score", "trials", "done", "diverged", "diverged_share", "failed", "pending", "best_score",
                            "median_score"] + [f"score_q{int(q * 100):02d}" for q in QUANTILES] + ["best_trial"])


def model_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per model: trials done, diverged share, best and median score, score quantiles (over the
    finished trials that have a score; a diverged trial has its best point before it diverged)."""
    rows = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        score = group_score(key)
        done = group[finished(group["status"])]
        values = trial_scores(done, score)
        has = np.isfinite(values)
        scored = values[has]
        row = dict(zip(GROUP, key))
        row.update({
            "score": score.metric, "trials": len(group), "done": len(done),
            "diverged": int((done["status"] == "diverged").sum()),
            "diverged_share": (done["status"] == "diverged").mean() if len(done) else np.nan,
            "failed": int((group["status"] == "failed").sum()),
            "pending": int(group["status"].isin(["running", "waiting"]).sum()),
            "best_score": score.best(scored) if len(scored) else np.nan,
            "median_score": np.median(scored) if len(scored) else np.nan,
        })
        for q in QUANTILES:
            row[f"score_q{int(q * 100):02d}"] = np.quantile(scored, q) if len(scored) else np.nan
        ties = score_keys(done, tiebreak=True).to_numpy()
        row["best_trial"] = int(done["trial"].iloc[np.lexsort((ties, score.key(values)))[0]]) if len(scored) else pd.NA
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


SEED_COLUMNS = GROUP + ["score", "seeds", "mean", "std", "diverged"]


def seed_table(results: pd.DataFrame) -> pd.DataFrame:
    """The best configuration re-run over seeds: mean ± std of each rerun's score. Only re-runs of
    the search's current best trial count: a re-run made when another trial was best (a larger
    budget since, or a run stored under older scoring rules) is of another configuration."""
    trials = trial_table(results)
    if trials.empty:
        return pd.DataFrame(columns=SEED_COLUMNS)
    reruns = trials[(trials["role"] == "seeds") & finished(trials["status"])]
    best = best_trials(results).set_index(GROUP)["trial"] if len(reruns) else pd.Series(dtype=float)
    rows = []
    for key, group in reruns.groupby(GROUP, sort=False):
        if key in best.index and "source_slot" in group and group["source_slot"].notna().any():
            group = group[group["source_slot"] == best.loc[key]]
        if group.empty:
            continue
        score = group_score(key)
        values = trial_scores(group, score)
        scored = values[np.isfinite(values)]
        rows.append({**dict(zip(GROUP, key)), "score": score.metric, "seeds": len(group),
                     "mean": scored.mean() if len(scored) else np.nan,
                     "std": scored.std(ddof=1) if len(scored) > 1 else np.nan,
                     "diverged": int((group["status"] == "diverged").sum())})
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def _curve(group: pd.DataFrame, key, max_k: int, draws: int, seed: int) -> pd.DataFrame:
    """Both views of a model's budget curve: diverged trials at their best point before diverging
    (the study's), and `strict_*`, diverged trials counted as failures."""
    score = group_score(key)
    done = group[finished(group["status"])]
    companions = {c: done[c].astype(float).to_numpy() for c in score.companions if c in done}
    curve = budget_curve(trial_scores(done, score), max_k, draws=draws, seed=seed, model=key[-1], score=score,
                         companions=companions, tiebreak=score_keys(done, tiebreak=True).to_numpy())
    strict = budget_curve(trial_scores(done, score, strict=True), max_k, draws=draws, seed=seed, model=key[-1],
                          score=score)
    for column in ("mean", "std", "lo", "hi", "no_score"):
        curve[f"strict_{column}"] = strict[column]
    return curve.assign(score=score.metric, **dict(zip(GROUP, key)))


def budget_table(results: pd.DataFrame, ks=BUDGET_POINTS, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """The best score at budget k (PROTOCOL §4) for k in `ks` up to each model's finished trials."""
    frames = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        n = int(finished(group["status"]).sum())
        chosen = [k for k in ks if 1 <= k <= n]
        if chosen:
            curve = _curve(group, key, max(chosen), draws, seed)
            frames.append(curve[curve["k"].isin(chosen)])
    columns = GROUP + ["score", "k", "mean", "std", "lo", "hi", "no_score"]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)
    rest = [c for c in table.columns if c not in columns and c != "trials"]
    return table[columns + rest + ["trials"]]


def budget_curves(results: pd.DataFrame, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """The whole curve, k = 1 … trials done, for the budget plot."""
    frames = []
    for key, group in search_trials(results).groupby(GROUP, sort=False):
        n = int(finished(group["status"]).sum())
        if n:
            frames.append(_curve(group, key, n, draws, seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pairwise_table(results: pd.DataFrame, k: int, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """P(row model's budget-k best beats the column model's), ties counted half; one protocol each."""
    frames = []
    for (dataset, protocol_id), block in search_trials(results).groupby(["dataset", "protocol_id"], sort=False):
        score = score_for(dataset)
        bests = {}
        for model, group in block.groupby("model", sort=False):
            done = group[finished(group["status"])]
            if len(done):
                bests[model] = min_draws(score.key(trial_scores(done, score)), k, draws=draws, seed=seed,
                                         model=model)[:, k - 1]
        names = list(bests)
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for a in names:
            for b in names:
                if a != b:
                    matrix.loc[a, b] = beat_probability(bests[a], bests[b])
        matrix.index.name = "model"
        frames.append(matrix.reset_index().assign(dataset=dataset, protocol_id=protocol_id, k=k))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def beat_probability(a: np.ndarray, b: np.ndarray) -> float:
    """P(a < b) over paired bootstrap draws of keys (lower is better), ties (two draws without a
    score included) counted half."""
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


def quality_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every metric at the best evaluation point of each model's best trial, by the dataset's score."""
    best = best_trials(results)
    if best.empty:
        return pd.DataFrame(columns=GROUP + ["trial", "step"])
    columns = [c for c in table_columns() if c in best.columns and best[c].notna().any()]
    return best[GROUP + ["score_name", "trial", "step"] + columns].rename(columns={"score_name": "score"}) \
        .reset_index(drop=True)


def compute_table(results: pd.DataFrame) -> pd.DataFrame:
    """What each model spent, so that equal budgets can be seen to be equal."""
    trials = trial_table(results)
    columns = GROUP + ["trials", "steps", "g_steps", "images_seen", "flops_per_trial", "train_hours",
                       "eval_hours", "sample_hours", "seconds_per_trial", "device"]
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
                     "eval_hours": evaluate.sum() / 3600,
                     # drawing the evaluation samples, within eval_hours: an iterative sampler's cost
                     "sample_hours": get("compute.sample_seconds").sum(min_count=1) / 3600,
                     "seconds_per_trial": (train + evaluate).mean(),
                     "device": "; ".join(devices) if devices else np.nan})
    return pd.DataFrame(rows, columns=columns)


NLL_COLUMNS = tuple(NLL_UNITS.items())  # (column, unit) of each NLL quantity (bench/model_metrics/metric_nll.py)


def at_protocol_k(results: pd.DataFrame) -> pd.DataFrame:
    """The rows whose NLL used the protocol's k (or is exact): trials take the bound with a smaller
    k at points no study reports (bench/train.py NLL_K_BETWEEN), and those must not be quoted as
    the protocol's bound. Records from before that rule all used the protocol's k."""
    k, wanted = "metric_protocol.nll.k", "protocol.nll_k"
    if k not in results or wanted not in results:
        return results
    exact = results.get("metric_protocol.nll.estimator", pd.Series(index=results.index, dtype=object)) == "exact"
    keep = results[k].isna() | results[wanted].isna() | (results[k] >= results[wanted]) | exact
    return results[keep]


def ranking(results: pd.DataFrame) -> pd.DataFrame:
    """Every model ranked by its best score (FID; F1 on triangles), and explicit models also by
    their best NLL (lowest over all evaluation points of all search trials; bits/dim and binarised
    nats are ranked apart, as they are not the same quantity)."""
    summary = model_summary(results)
    if summary.empty:
        return pd.DataFrame(columns=GROUP + ["score", "score_rank", "best_score"])
    summary = summary[GROUP + ["score", "best_score"]].copy()
    summary["_key"] = [score_for(d).key(v) for d, v in zip(summary["dataset"], summary["best_score"])]
    summary["score_rank"] = summary.groupby(["dataset", "protocol_id"])["_key"].rank(method="min")
    summary.loc[~np.isfinite(summary["_key"]), "score_rank"] = np.nan
    summary = summary.drop(columns="_key")
    if "family" in results:  # the families sit in one ranking; the column says which is which
        families = results.groupby(GROUP, sort=False)["family"].first().rename("family").reset_index()
        summary = summary.merge(families, on=GROUP, how="left")
        summary.insert(len(GROUP), "family", summary.pop("family"))
    search = results[(results["role"] == "search") & finished(results["status"])]
    if (summary["score"] != FID.metric).any() and "fid" in search:
        # Where the score is not FID (triangles), FID still ranks every model, those that have no
        # score of the dataset's kind included (PixelCNN cannot be inverted for triangle recall).
        fid = search.groupby(GROUP, sort=False)["fid"].min().rename("best_fid").reset_index()
        summary = summary.merge(fid, on=GROUP, how="left")
        summary["fid_rank"] = summary.groupby(["dataset", "protocol_id"])["best_fid"].rank(method="min")
    for column, _ in NLL_COLUMNS:
        if column not in search or search[column].isna().all():
            continue
        best = at_protocol_k(search.dropna(subset=[column])).sort_values(column).groupby(GROUP, sort=False).head(1)
        best = best[GROUP + [column, f"{column}_se"] + (["metric_protocol.nll.k"] if "metric_protocol.nll.k" in best else [])]
        best = best.rename(columns={"metric_protocol.nll.k": f"{column}_k"})
        summary = summary.merge(best, on=GROUP, how="left")
        summary[f"{column}_rank"] = summary.groupby(["dataset", "protocol_id"])[column].rank(method="min")
    summary = summary.sort_values(["dataset", "protocol_id", "score_rank"], kind="stable").reset_index(drop=True)
    for col in [c for c in summary.columns if c.endswith("_rank")]:
        summary[col] = summary[col].astype("Int64")
    return summary
