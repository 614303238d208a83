"""One evaluation point of a trial: the line appended to evals.jsonl, the compact copy kept in
the study storage (so that reports work where the trial folder is not), and the tidy-table row
of `bench.load_results`. Adding a field is one edit here.

Records of older versions lack later fields and read with their defaults; a key this version does
not know is refused, naming it, rather than silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

import numpy as np

from bench.config import known_keys
from bench.errors import BenchError

_COPY = {"compact": True}  # metadata of the fields the storage's copy keeps


@dataclass
class EvalRecord:
    step: int
    g_steps: Optional[int] = field(default=None, metadata=_COPY)
    images_seen: Optional[int] = field(default=None, metadata=_COPY)
    metrics: dict = field(default_factory=dict, metadata=_COPY)  # name -> value (None: not a number)
    unavailable: dict = field(default_factory=dict)  # metric -> why it has no number
    losses: dict = field(default_factory=dict, metadata=_COPY)  # mean of each loss since the last point
    train_seconds: Optional[float] = field(default=None, metadata=_COPY)
    eval_seconds: Optional[float] = field(default=None, metadata=_COPY)
    sample_seconds: Optional[float] = field(default=None, metadata=_COPY)  # the part of eval_seconds spent sampling
    model: Optional[str] = None
    dataset: Optional[str] = None
    seed: Optional[int] = None
    hparams: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the TrialConfig
    protocol: dict = field(default_factory=dict, metadata=_COPY)  # every variable behind the metrics
    numerics: Optional[dict] = field(default=None, metadata=_COPY)  # the flags in force (bench/numerics.py)
    time: Optional[str] = None
    device: Optional[str] = field(default=None, metadata=_COPY)
    pack: Optional[int] = field(default=None, metadata=_COPY)  # trials trained together with it (bench/packing); 1: alone
    host: Optional[str] = None
    owner: Optional[str] = None  # the lease token of the worker that wrote it (bench/records/trial_folder.py)
    bench_version: Optional[str] = None

    @classmethod
    def from_dict(cls, data: dict, where: str = "evaluation record") -> "EvalRecord":
        if "step" not in data:
            raise BenchError(f"{where} has no step; it is damaged")
        return cls(**known_keys(cls, data, where))

    def to_dict(self) -> dict:
        """The evals.jsonl line."""
        return asdict(self)

    def compact(self) -> dict:
        """The copy kept in the study storage: what reports need, without the configuration
        (stored with the trial already) or host details."""
        full = self.to_dict()
        return {f.name: full[f.name] for f in fields(self) if f.name == "step" or f.metadata.get("compact")}

    def row(self) -> dict:
        """Its columns of the tidy results table: metrics by name, `loss.NAME`, `metric_protocol.*`."""
        out: dict = {"step": self.step}
        for key in ("g_steps", "images_seen", "train_seconds", "eval_seconds", "sample_seconds", "device", "pack"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for name, value in self.metrics.items():
            out[name] = np.nan if value is None else value
        for name, value in (self.losses or {}).items():
            out[f"loss.{name}"] = value
        if self.protocol:
            out["standard"] = bool(self.protocol.get("standard", True))
            out.update(flatten("metric_protocol", self.protocol))
        return out


def read_records(items, where: str = "evaluation records") -> list[dict]:
    """Records (dicts, as stored) checked against `EvalRecord` and returned in their stored form,
    in step order; a step recorded twice keeps its first record (a kill between the append and
    the state update repeats a point)."""
    seen: dict[int, dict] = {}
    for item in items:
        record = EvalRecord.from_dict(item, where)
        seen.setdefault(int(record.step), item)
    return [seen[s] for s in sorted(seen)]


def flatten(prefix: str, value: Any) -> dict:
    """Nested dicts become dotted columns; lists become JSON text (a cell holds one value)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}", inner))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value)}
    return {prefix: np.nan if value is None else value}
