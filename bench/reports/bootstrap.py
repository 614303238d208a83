"""The study's budget curve (PROTOCOL §4): the minimum FID among k trials drawn with replacement.

For each model one matrix of draws is made, `rng.integers(0, n, size=(draws, max(K, n)))` with
`rng = np.random.default_rng([seed, crc32(model)])` for n finished trials, and the running minimum along each row
gives the budget-k minimum for every k at once. Sharing the draws across k makes every row, and so
the mean, non-increasing in k (independent draws per k would make the curve wobble upwards), and
seeding per model makes a model's curve independent of which other models are in the table.

Diverged trials have an infinite score. A draw in which every chosen trial diverged has an infinite
minimum; the statistics are taken over the draws with a finite minimum, and the share of all-diverged
draws is reported beside them (`all_diverged`), so that nothing infinite is averaged silently.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

BUDGET_POINTS = (1, 5, 10, 20, 50, 100)
DRAWS = 5000


def model_rng(seed: int, model: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(model.encode())])


def min_draws(scores, max_k: int, draws: int = DRAWS, seed: int = 0, model: str = "") -> np.ndarray:
    """[draws, max_k]: entry (b, k-1) is the minimum of the first k trials of draw b."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError("the budget curve needs at least one finished trial")
    if max_k < 1:
        raise ValueError(f"budget k must be at least 1, got {max_k}")
    # Always at least n columns, so that every table and curve of a model reads the same draws.
    index = model_rng(seed, model).integers(0, len(scores), size=(draws, max(max_k, len(scores))))
    return np.minimum.accumulate(scores[index], axis=1)[:, :max_k]


def budget_curve(scores, max_k: int, draws: int = DRAWS, seed: int = 0, model: str = "") -> pd.DataFrame:
    """k, mean, std, 2.5 and 97.5 percentiles (lo, hi) of the budget-k minimum, k = 1 … max_k."""
    mins = min_draws(scores, max_k, draws, seed, model)
    rows = []
    for k in range(1, max_k + 1):
        column = mins[:, k - 1]
        finite = column[np.isfinite(column)]
        stats = (finite.mean(), finite.std(), *np.percentile(finite, [2.5, 97.5])) if len(finite) else (np.nan,) * 4
        rows.append({"k": k, "mean": stats[0], "std": stats[1], "lo": stats[2], "hi": stats[3],
                     "all_diverged": 1.0 - len(finite) / draws, "trials": len(scores)})
    return pd.DataFrame(rows)
