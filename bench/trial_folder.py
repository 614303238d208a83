"""The files of one trial, and the rules that keep them consistent when a run is killed.

    trial.json      configuration, status, progress and compute (rewritten atomically)
    evals.jsonl     one record per evaluation point, appended as it happens, never rewritten
    checkpoint.pt   the latest checkpoint: model + optimisers + RNG + clock (atomic)
    samples/        a sample grid per evaluation point

Order at an evaluation point: evaluate, write the checkpoint, append the record, update
trial.json. A kill between any two leaves a state `bench train` repairs on the next run:
a checkpoint whose evaluation record is missing is evaluated again (same weights, same z).
"""

from __future__ import annotations

import datetime as _dt
import io
from pathlib import Path
from typing import Optional

import torch

from bench.config import TrialConfig
from bench.errors import BenchError
from bench.files import append_jsonl, atomic_write, atomic_write_json, read_json, read_jsonl

STATE_FORMAT = "bench-trial/1"
CHECKPOINT_FORMAT = "bench-trial-checkpoint/1"
FINISHED = ("complete", "diverged")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class TrialFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.state_path = self.path / "trial.json"
        self.evals_path = self.path / "evals.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.samples_dir = self.path / "samples"

    # --- trial.json ------------------------------------------------------------------------

    def read_state(self) -> Optional[dict]:
        if not self.state_path.exists():
            return None
        try:
            state = read_json(self.state_path)
        except (OSError, ValueError) as exc:
            raise BenchError(f"{self.state_path} is unreadable ({exc}); it was not written by bench or is damaged") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise BenchError(f"{self.state_path} is not a bench trial record; choose another --out")
        return state

    def claim(self, config: TrialConfig) -> Optional[dict]:
        """The folder's existing state if it holds this very trial; refuse a different one."""
        state = self.read_state()
        if state is not None:
            stored = TrialConfig.from_dict(state["config"], self.state_path)
            self.check_same_trial(stored, config, self.state_path)
        return state

    @staticmethod
    def check_same_trial(stored: TrialConfig, config: TrialConfig, where: Path) -> None:
        diffs = stored.differences(config)
        if diffs:
            raise BenchError(
                f"{where} belongs to a different trial ({'; '.join(diffs[:3])}, stored vs requested); "
                "choose another --out or repeat the original settings"
            )

    def write_state(self, config: TrialConfig, status: str, **fields) -> dict:
        state = {"format": STATE_FORMAT, "config": config.to_dict(), "status": status, "updated": now(), **fields}
        atomic_write_json(self.state_path, state)
        return state

    # --- evals.jsonl -----------------------------------------------------------------------

    def evaluations(self) -> list[dict]:
        """Recorded evaluation points in step order; a step recorded twice keeps its first record."""
        seen: dict[int, dict] = {}
        for record in read_jsonl(self.evals_path):
            seen.setdefault(int(record["step"]), record)
        return [seen[s] for s in sorted(seen)]

    def append_evaluation(self, record: dict) -> None:
        append_jsonl(self.evals_path, record)

    # --- checkpoint.pt ---------------------------------------------------------------------

    def save_checkpoint(self, config: TrialConfig, payload: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "config": config.to_dict(), **payload}, buffer)
        atomic_write(self.checkpoint_path, lambda f: f.write(buffer.getbuffer()))

    def load_checkpoint(self, config: TrialConfig, device) -> Optional[dict]:
        if not self.checkpoint_path.exists():
            return None
        try:
            payload = torch.load(self.checkpoint_path, map_location=device, weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged zip or pickle
            raise BenchError(
                f"checkpoint {self.checkpoint_path} is unreadable ({type(exc).__name__}); it is damaged or not "
                "bench's: move it away to restart the trial from scratch"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise BenchError(f"{self.checkpoint_path} is not a bench trial checkpoint; choose another --out")
        stored = TrialConfig.from_dict(payload["config"], self.checkpoint_path)
        self.check_same_trial(stored, config, self.checkpoint_path)
        return payload

    def sample_grid_path(self, step: int) -> Path:
        return self.samples_dir / f"step-{step:07d}.png"
