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


@dataclass(frozen=True)
class Score:
    metric: str  # the evaluation records' metric, and the results table's column
    label: str  # how a person reads it: "FID", "triangle F1"
    maximize: bool
    companions: tuple = ()  # metrics of the same point shown beside it (F1's precision and recall)
    # Between equal scores, the lower of this metric wins: short runs on triangles often have F1 = 0
    # at every point, and slot order must not decide which trial or point is "the best".
    tiebreak: Optional[str] = None

    @property
    def direction(self) -> str:
        """Optuna's word for it."""
        return "maximize" if self.maximize else "minimize"

    @property
    def best_word(self) -> str:
        """How a person says which value wins: "maximum" F1, "minimum" FID."""
        return "maximum" if self.maximize else "minimum"

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

    def tie(self, value) -> float:
        """The tiebreak's key of a value of the tiebreak metric (NaN, None: +inf)."""
        return math.inf if value is None or not math.isfinite(float(value)) else float(value)

    def record_key(self, record: dict) -> tuple:
        """(key, tiebreak key) of one evaluation record; lower is better."""
        metrics = record.get("metrics") or {}
        value = metrics.get(self.metric)
        key = self.key(math.nan if value is None else float(value))
        return key, self.tie(metrics.get(self.tiebreak)) if self.tiebreak else 0.0

    def best_record(self, records: Iterable[dict]) -> Optional[dict]:
        """The evaluation record holding the best value (by the tiebreak among equals, then the
        first in step order); None where no record has a finite value."""
        scored = [r for r in records if math.isfinite(self.record_key(r)[0])]
        return min(scored, key=self.record_key) if scored else None

    def of_records(self, records: Iterable[dict]) -> Optional[float]:
        """A trial's score from its evaluation records; None where no point has one."""
        record = self.best_record(records)
        return None if record is None else float(record["metrics"][self.metric])

    def stored_value(self, records: Iterable[dict]) -> float:
        """The value kept in the study storage: the score, or the worst value for none."""
        value = self.of_records(records)
        return self.worst if value is None else value


FID = Score("fid", "FID", maximize=False)
TRIANGLE_F1 = Score("tri_f1", "triangle F1", maximize=True, companions=("tri_precision", "tri_recall"), tiebreak="fid")
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
