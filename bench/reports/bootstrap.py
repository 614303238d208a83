"""The study's budget curve (PROTOCOL §4): the best score among k trials drawn with replacement.

For each model one matrix of draws is made, `rng.integers(0, n, size=(draws, max(K, n)))` with
`rng = np.random.default_rng([seed, crc32(model)])` for n finished trials, and the running best
along each row gives the budget-k best for every k at once. Sharing the draws across k makes every
row, and so the mean, monotone in k (independent draws per k would make the curve wobble), and
seeding per model makes a model's curve independent of which other models are in the table.

Scores go in as values (FID, or triangle F1) with NaN for a trial that has no score; the work is
done on keys (bench/scores.py: lower is better, no score = +inf), so one code path serves both
directions. A draw in which no drawn trial has a score has no best; the statistics are taken over
the draws that have one, and the share of the others is reported beside them (`no_score`), so that
nothing infinite is averaged silently.
"""

from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import pandas as pd

from bench.defaults import DEFAULTS
from bench.scores import FID, Score

BUDGET_POINTS = (1, 5, 10, 20, 50, 100)
DRAWS = DEFAULTS["draws"]


def model_rng(seed: int, model: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(model.encode())])


def best_draws(keys, max_k: int, draws: int = DRAWS, seed: int = 0, model: str = "",
               tiebreak=None) -> tuple[np.ndarray, np.ndarray]:
    """([draws, max_k] running minimum of the keys of the first k trials of draw b,
    [draws, max_k] index of the trial holding it: among equal keys the lowest `tiebreak` (a
    per-trial array, lower is better), then the lowest-numbered)."""
    keys = np.asarray(keys, dtype=float)
    if keys.ndim != 1 or len(keys) == 0:
        raise ValueError("the budget curve needs at least one finished trial")
    if max_k < 1:
        raise ValueError(f"budget k must be at least 1, got {max_k}")
    # Always at least n columns, so that every table and curve of a model reads the same draws.
    index = model_rng(seed, model).integers(0, len(keys), size=(draws, max(max_k, len(keys))))[:, :max_k]
    # Rank trials by key (stable), so the running minimum of ranks names the winning trial too.
    order = np.argsort(keys, kind="stable") if tiebreak is None else np.lexsort((np.asarray(tiebreak, float), keys))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    best_rank = np.minimum.accumulate(rank[index], axis=1)
    winner = order[best_rank]
    return keys[winner], winner


def min_draws(keys, max_k: int, draws: int = DRAWS, seed: int = 0, model: str = "") -> np.ndarray:
    """[draws, max_k]: entry (b, k-1) is the minimum key of the first k trials of draw b."""
    return best_draws(keys, max_k, draws, seed, model)[0]


def budget_curve(scores, max_k: int, draws: int = DRAWS, seed: int = 0, model: str = "", score: Score = FID,
                 companions: Optional[dict] = None, tiebreak=None) -> pd.DataFrame:
    """k, mean, std, 2.5 and 97.5 percentiles (lo, hi) of the budget-k best score, k = 1 … max_k,
    and `no_score`; for each of `companions` (name -> per-trial values, e.g. the precision at each
    trial's best-F1 point) the mean over draws of the winning trial's value (`tiebreak`, per trial,
    names the winner among equal scores)."""
    values = np.asarray(scores, dtype=float)
    keys, winner = best_draws(score.key(values), max_k, draws, seed, model, tiebreak)
    rows = []
    for k in range(1, max_k + 1):
        has = np.isfinite(keys[:, k - 1])
        best = score.unkey(keys[has, k - 1])
        stats = (best.mean(), best.std(), *np.percentile(best, [2.5, 97.5])) if has.any() else (np.nan,) * 4
        row = {"k": k, "mean": stats[0], "std": stats[1], "lo": stats[2], "hi": stats[3],
               "no_score": 1.0 - has.mean(), "trials": len(values)}
        for name, per_trial in (companions or {}).items():
            chosen = np.asarray(per_trial, dtype=float)[winner[has, k - 1]]
            row[name] = np.nanmean(chosen) if np.isfinite(chosen).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
