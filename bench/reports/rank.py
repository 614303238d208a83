"""The ranking half of `bench rank` (bench/studies/rank_study.py trains the new model): the
study's budget-k view, by the dataset's score (bench/scores.py: minimum FID; maximum triangle F1 on triangles): each model's
bootstrap mean of the best score among k = BUDGET trials, its 95% interval, and the probability
that the new model's budget-k best beats each other model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.files import atomic_write_bytes
from bench.reports import render
from bench.reports.bootstrap import DRAWS, min_draws
from bench.reports.results import finished
from bench.reports.tables import beat_probability, search_trials, trial_scores
from bench.scores import score_for


def ranking_table(results: pd.DataFrame, model: str, budget: int, protocol_id: str, draws: int = DRAWS,
                  seed: int = 0) -> tuple[pd.DataFrame, list]:
    """Every model of the protocol at budget k: mean, 95% interval, P(model beats it)."""
    trials = search_trials(results)
    trials = trials[(trials["protocol_id"] == protocol_id) & finished(trials["status"])]
    if trials.empty or model not in set(trials["model"]):
        raise BenchError(f"{model} has no finished trial under protocol {protocol_id}; see `bench status`")
    score = score_for(trials["dataset"].iloc[0])
    best, notes, rows = {}, [], []
    for name, group in trials.groupby("model", sort=False):
        keys = score.key(trial_scores(group, score))
        best[name] = min_draws(keys, budget, draws=draws, seed=seed, model=name)[:, budget - 1]
        if len(keys) < budget:
            notes.append(f"{name} has {len(keys)} finished trials; its budget-{budget} best draws with "
                         "replacement from those")
    for name, keys in best.items():
        values = score.unkey(keys[np.isfinite(keys)])
        lo, hi = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
        rows.append({"model": name, "new": name == model, "trials": int((trials["model"] == name).sum()),
                     "score": score.metric, "mean": values.mean() if len(values) else np.nan, "lo": lo, "hi": hi,
                     "no_score": 1 - len(values) / len(keys),
                     f"p_{model}_beats": np.nan if name == model else beat_probability(best[model], keys)})
    table = pd.DataFrame(rows)
    table = table.iloc[np.argsort(score.key(table["mean"].to_numpy()), kind="stable")].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table, notes


def write_ranking(folder: Path, model: str, budget: int, table: pd.DataFrame, notes: list) -> list[Path]:
    stem = folder / f"{model}-budget{budget}"
    text = f"# Ranking of {model} at budget {budget}\n\n{render.markdown(table)}\n" + "".join(f"\n- {n}" for n in notes)
    return [atomic_write_bytes(stem.with_suffix(".csv"), table.to_csv(index=False).encode()),
            atomic_write_bytes(stem.with_suffix(".md"), (text + "\n").encode())]
