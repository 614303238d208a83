"""Training losses read in bulk: divergence detection without a host sync per step.

`train_step` returns 0-d device tensors; they are kept (no copy, no kernel) and moved to the host
together every few dozen steps, where the first non-finite value gives the divergence step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Dict, Optional

import torch


class LossMonitor:
    def __init__(self, sink: Optional[Callable[[int, str, float], None]] = None):
        """`sink(step, name, value)` is given every finite value as it is read (a trial's --log)."""
        self._sink = sink
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._sums: Dict[str, float] = defaultdict(float)
        self._counts: Dict[str, int] = defaultdict(int)
        self.latest: Dict[str, float] = {}

    def add(self, step: int, losses: Dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            self._pending.append((step, name, value))

    def flush(self) -> Optional[int]:
        """Read pending values; return the first step with a NaN/Inf loss, or None."""
        if not self._pending:
            return None
        values = torch.stack([v.float() for _, _, v in self._pending]).cpu().tolist()
        pending, self._pending = self._pending, []
        for (step, name, _), value in zip(pending, values):
            if not math.isfinite(value):
                return step
            self._sums[name] += value
            self._counts[name] += 1
            self.latest[name] = value
            if self._sink is not None:
                self._sink(step, name, value)
        return None

    def interval_means(self) -> Dict[str, float]:
        """Mean of each loss since the previous call (the records' `losses` field)."""
        means = {k: self._sums[k] / self._counts[k] for k in self._sums if self._counts[k]}
        self._sums.clear()
        self._counts.clear()
        return means
