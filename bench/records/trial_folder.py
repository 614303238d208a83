"""The files of one trial, and the rules that keep them consistent when a run is killed.

    trial.json        `TrialState`: configuration, status, progress and compute (rewritten atomically)
    evals.jsonl       one `EvalRecord` per evaluation point, appended as it happens, never rewritten
    checkpoint.pt     the latest checkpoint: model + optimisers + RNG + clock (atomic), written at most
                      every --checkpoint-every; removed when the trial ends (unless --keep checkpoints)
    weights-best.pt   the kept networks' weights (`GenerativeModel.kept_weights`) at the best point so far
    weights-last.pt   the same at the last point of a completed trial, where it is not the best; both
                      are removed once another trial of the study ends better (`--keep best`,
                      bench/studies/kept_weights.py), unless --keep weights or checkpoints
    samples/          a sample grid per evaluation point (bench/records/sample_grid.py)
    tensorboard/      with --log tensorboard: the losses, metrics and grids as TensorBoard events
                      (a view of the files above, for watching a run; bench/trial_log.py)
    error.log         the traceback of a trial that failed
    lease             the token of the worker that owns the trial now (`bench run`/`bench worker`)
    nll-METHOD.json   a likelihood scored later from the checkpoint (`bench score --nll`)

Only the current owner writes: a worker takes the lease when it starts the trial, and every write
first checks that the lease is still its own (a worker presumed lost, whose trial was re-queued
and taken by another, stops at its next write instead of racing the new owner).

Order at an evaluation point: evaluate, write the checkpoint, append the record, update
trial.json. A kill between any two leaves a state `bench train` repairs on the next run:
a checkpoint whose evaluation record is missing is evaluated again (same weights, same z).
"""

from __future__ import annotations

import io
import zipfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch

from bench.config import TrialConfig, known_keys
from bench.errors import BenchError
from bench.files import append_jsonl, atomic_write, atomic_write_bytes, atomic_write_json, now, read_json, read_jsonl
from bench.records.evaluation import EvalRecord, read_records

STATE_FORMAT = "bench-trial/1"
CHECKPOINT_FORMAT = "bench-trial-checkpoint/1"
WEIGHTS_FORMAT = "bench-trial-weights/1"
WEIGHTS = ("best", "last")  # weights-best.pt: at the best point; weights-last.pt: at the last, where it differs
FINISHED = ("complete", "diverged")  # the statuses of a trial that has ended by itself


class LeaseLost(BenchError):
    """This process no longer owns the trial: it was re-queued and another worker holds it."""


@dataclass
class Lease:
    """A worker's claim on one trial folder: `token` names the owner; `lost` is set by the
    worker's heartbeat when the storage says the trial is no longer its own. With
    `expires_after`, a lease not renewed for that many seconds counts as lost too (a heartbeat
    hung on a dead connection must not let training go on past the time others may take over)."""

    token: str
    expires_after: Optional[float] = None
    lost: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    last_renewed: float = field(default_factory=time.monotonic, compare=False, repr=False)

    def renewed(self) -> None:
        self.last_renewed = time.monotonic()

    def is_lost(self) -> bool:
        if self.expires_after is not None and time.monotonic() - self.last_renewed > self.expires_after:
            self.lost.set()
        return self.lost.is_set()


@dataclass
class TrialState:
    """trial.json: where the trial stands and what it has spent."""

    config: TrialConfig
    status: str  # running | complete | diverged
    steps_done: int = 0
    compute: dict = field(default_factory=dict)  # steps, g_steps, FLOPs, parameters, clock
    resumes: list = field(default_factory=list)  # steps it was resumed from (a report shows it survived kills)
    numerics: Optional[dict] = None  # the floating-point flags in force (bench/numerics.py)
    diverged_at_step: Optional[int] = None
    device: Optional[str] = None
    pack: Optional[int] = None  # trials it trained together with (bench/packing); 1: alone
    host: Optional[str] = None
    owner: Optional[str] = None  # the lease token of the worker that wrote it (None: `bench train`)
    checkpoint_step: Optional[int] = None  # the step a resume starts from: it loses the steps after it
    checkpoint_every: Optional[str] = None  # --checkpoint-every in force (a resume loses at most that much)
    weights: Optional[dict] = None  # {"best": step, "last": step}: the points whose weights are kept
    bench_version: Optional[str] = None
    updated: Optional[str] = None

    def to_dict(self) -> dict:
        out = {"format": STATE_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}
        out["config"] = self.config.to_dict()
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict, where) -> "TrialState":
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise BenchError(f"{where} is not a bench trial record; choose another --out")
        values = known_keys(cls, {k: v for k, v in data.items() if k != "format"}, where)
        return cls(**{**values, "config": TrialConfig.from_dict(data["config"], where)})


class TrialFolder:
    def __init__(self, path: Path, lease: Optional[Lease] = None):
        self.path = Path(path)
        self.lease = lease
        self.lease_path = self.path / "lease"
        self.state_path = self.path / "trial.json"
        self.evals_path = self.path / "evals.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.samples_dir = self.path / "samples"
        self.tensorboard_dir = self.path / "tensorboard"
        self.error_path = self.path / "error.log"

    # --- trial.json ------------------------------------------------------------------------

    def read_state(self) -> Optional[TrialState]:
        if not self.state_path.exists():
            return None
        try:
            data = read_json(self.state_path)
        except (OSError, ValueError) as exc:
            raise BenchError(f"{self.state_path} is unreadable ({exc}); it was not written by bench or is damaged") from None
        return TrialState.from_dict(data, self.state_path)

    def damage(self) -> Optional[str]:
        """What is wrong with an ended trial's files, cheaply (no tensor is read): trial.json that
        does not parse, a checkpoint or weights file whose zip directory is missing (cut short)."""
        try:
            self.read_state()
        except BenchError:
            return "trial.json is damaged"
        for path in (self.checkpoint_path, *(self.weights_path(w) for w in WEIGHTS)):
            if path.exists() and not zipfile.is_zipfile(path):
                return f"{path.name} is damaged (cut short or overwritten)"
        return None

    def claim(self, config: TrialConfig) -> Optional[TrialState]:
        """The folder's existing state if it holds this very trial; refuse a different one."""
        state = self.read_state()
        if state is not None:
            self.check_same_trial(state.config, config, self.state_path)
        if self.lease is not None:
            atomic_write_bytes(self.lease_path, self.lease.token.encode())
        return state

    def check_lease(self) -> None:
        """Refuse to write where this process is no longer the owner (LeaseLost)."""
        if self.lease is None:
            return
        try:
            holder = self.lease_path.read_text()
        except OSError:
            holder = None
        if self.lease.is_lost() or holder != self.lease.token:
            self.lease.lost.set()
            raise LeaseLost(f"{self.path} is owned by another worker now ({holder or 'no lease'}); "
                            "this one stops writing into it")

    @staticmethod
    def check_same_trial(stored: TrialConfig, config: TrialConfig, where: Path) -> None:
        diffs = stored.differences(config)
        if diffs:
            raise BenchError(
                f"{where} belongs to a different trial ({'; '.join(diffs[:3])}, stored vs requested); "
                "choose another --out or repeat the original settings"
            )

    def write_state(self, state: TrialState) -> TrialState:
        self.check_lease()
        state.updated = now()
        atomic_write_json(self.state_path, state.to_dict())
        return state

    # --- evals.jsonl -----------------------------------------------------------------------

    def evaluations(self) -> list[dict]:
        """Recorded evaluation points (`EvalRecord`s as stored) in step order."""
        return read_records(read_jsonl(self.evals_path), str(self.evals_path))

    def append_evaluation(self, record: EvalRecord) -> None:
        self.check_lease()
        append_jsonl(self.evals_path, record.to_dict())

    # --- checkpoint.pt ---------------------------------------------------------------------

    def save_checkpoint(self, config: TrialConfig, payload: dict) -> None:
        self.check_lease()
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
        self.check_same_trial(TrialConfig.from_dict(payload["config"], self.checkpoint_path), config, self.checkpoint_path)
        return payload

    def drop_checkpoint(self) -> None:
        """A trial that has ended needs no optimiser state: the kept weights are what later commands use."""
        self.check_lease()
        self.checkpoint_path.unlink(missing_ok=True)

    # --- weights-*.pt ----------------------------------------------------------------------

    def weights_path(self, which: str) -> Path:
        return self.path / f"weights-{which}.pt"

    def save_weights(self, which: str, config: TrialConfig, step: int, weights: dict) -> None:
        self.check_lease()
        buffer = io.BytesIO()
        torch.save({"format": WEIGHTS_FORMAT, "config": config.to_dict(), "step": step, "weights": weights}, buffer)
        atomic_write(self.weights_path(which), lambda f: f.write(buffer.getbuffer()))

    def drop_weights(self) -> bool:
        """Remove an ended trial's kept weights (`--keep best`: it is not its study's best).
        Called by a worker that does not own the folder, so no lease is checked; True if any went."""
        dropped = False
        for which in WEIGHTS:
            try:
                self.weights_path(which).unlink()
                dropped = True
            except FileNotFoundError:
                pass
        return dropped

    def load_weights(self, config: TrialConfig, device, which: str) -> Optional[dict]:
        path = self.weights_path(which)
        if not path.exists():
            return None
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise BenchError(f"{path} is unreadable ({type(exc).__name__}); it is damaged or not bench's") from None
        if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
            raise BenchError(f"{path} is not a bench weights file")
        self.check_same_trial(TrialConfig.from_dict(payload["config"], path), config, path)
        return payload

    # --- samples/, error.log, nll-*.json ---------------------------------------------------

    def sample_grid_path(self, step: int) -> Path:
        return self.samples_dir / f"step-{step:07d}.png"

    def write_error(self, text: str) -> None:
        self.check_lease()
        atomic_write_bytes(self.error_path, text.encode())

    def nll_path(self, method: str) -> Path:
        return self.path / f"nll-{method}.json"

    def nll_records(self) -> list[dict]:
        """What `bench score --nll` wrote here; an unreadable file is left out."""
        out = []
        for path in sorted(self.path.glob("nll-*.json")):
            try:
                out.append(read_json(path))
            except (OSError, ValueError):
                continue
        return out
