"""A trial's score: the one number a study ranks it by (PROTOCOL §3-4).

FID (lower is better) on every dataset but triangles, where the study judged its convex-polygon
experiment by triangle F1 (higher is better). The dataset names its score (`DatasetInfo.score`);
everything that picks or ranks trials asks `score_for(dataset)` and never assumes a direction.

A trial's score is its best value over its evaluation points, also when it diverged later
(compare_gan v1 scores every checkpoint and keeps the best; PROTOCOL §3). A finished trial with no
finite point has *no score*: the worst value (infinite FID, zero F1) where one number must be
stored, and an infinite *key* where trials are compared, so that it never beats a scored trial,
not even one at F1 = 0.

Comparisons go through `key`: the score turned into "lower is better" (F1 negated), so one
bootstrap and one sort serve both directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

FINISHED = ("complete", "diverged")


@dataclass(frozen=True)
class Score:
    metric: str  # the evaluation records' metric, and the results table's column
    label: str  # how a person reads it: "FID", "triangle F1"
    maximize: bool
    companions: tuple = ()  # metrics of the same point shown beside it (F1's precision and recall)

    @property
    def direction(self) -> str:
        """Optuna's word for it."""
        return "maximize" if self.maximize else "minimize"

    @property
    def worst(self) -> float:
        """The stored value of a trial with no score."""
        return 0.0 if self.maximize else math.inf

    def key(self, values):
        """Lower is better; NaN (no score) becomes +inf. Works on floats and numpy arrays."""
        values = np.asarray(values, dtype=float)
        keys = np.where(np.isnan(values), np.inf, -values if self.maximize else values)
        return keys if keys.ndim else float(keys)

    def unkey(self, keys):
        """Back from keys to scores; +inf (no score) becomes NaN."""
        keys = np.asarray(keys, dtype=float)
        values = np.where(np.isinf(keys) & (keys > 0), np.nan, -keys if self.maximize else keys)
        return values if values.ndim else float(values)

    def best(self, values: Iterable) -> Optional[float]:
        """The best finite value, or None."""
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not finite:
            return None
        return max(finite) if self.maximize else min(finite)

    def best_record(self, records: Iterable[dict]) -> Optional[dict]:
        """The evaluation record holding the best value (the first such, in step order)."""
        best, chosen = None, None
        for record in records:
            value = (record.get("metrics") or {}).get(self.metric)
            if value is None or not math.isfinite(float(value)):
                continue
            if best is None or (value > best if self.maximize else value < best):
                best, chosen = value, record
        return chosen

    def of_records(self, records: Iterable[dict]) -> Optional[float]:
        """A trial's score from its evaluation records; None where no point has one."""
        record = self.best_record(records)
        return None if record is None else float(record["metrics"][self.metric])

    def stored_value(self, records: Iterable[dict]) -> float:
        """The value kept in the study storage: the score, or the worst value for none."""
        value = self.of_records(records)
        return self.worst if value is None else value


FID = Score("fid", "FID", maximize=False)
TRIANGLE_F1 = Score("tri_f1", "triangle F1", maximize=True, companions=("tri_precision", "tri_recall"))
SCORES = {s.metric: s for s in (FID, TRIANGLE_F1)}


def score_for(dataset: str) -> Score:
    """The score of trials on `dataset`. A folder of images is scored by FID; a dataset that is
    no longer registered (an old run read elsewhere) too."""
    if dataset.startswith("folder:"):
        return FID
    from bench.data import get_dataset
    from bench.errors import BenchError

    try:
        return SCORES[get_dataset(dataset).info.score]
    except BenchError:
        return FID
