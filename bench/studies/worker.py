"""A worker: claims WAITING trials of its studies, trains them, reports, until none is left.

Liveness: a worker writes its host and process into the trial it claims and refreshes a
heartbeat while it trains. A RUNNING trial whose process is gone (same host) or whose heartbeat
is older than the grace period (another host) is failed and re-queued with the same slot; the
new claim resumes from the slot's checkpoint. Exactly one trial of a slot can complete: the
storage refuses a state change on a trial that is no longer RUNNING, so the late one is dropped.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from bench.config import RunOptions
from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.scores import score_for
from bench.studies.protocol import RunProtocol
from bench.studies.storage import open_storage
from bench.studies.study import _add_waiting, study_meta

HEARTBEAT_SECONDS = 15.0
GRACE_SECONDS = 300.0  # a trial on another host is presumed lost after this long without a heartbeat
HOST = platform.node()
OWNER, BEAT = "bench:owner", "bench:heartbeat"
EVALUATION_FIELDS = ("step", "g_steps", "images_seen", "train_seconds", "eval_seconds", "metrics", "losses",
                     "protocol", "numerics", "device")


@dataclass
class Finished:
    """What a worker reports after each trial (the coordinator prints it)."""

    study: str
    model: str
    role: str
    slot: int
    status: str  # complete | diverged | failed
    value: Optional[float]  # the trial's score; None where it has none
    seconds: float
    error: Optional[str] = None
    score_name: str = "fid"


def select_studies(storage, pattern: str) -> list[str]:
    """Study names equal to `pattern` or below it (`cifar10` selects every cifar10 study)."""
    names = sorted(optuna.get_all_study_names(storage))
    chosen = [n for n in names if n == pattern or n.startswith(pattern.rstrip("/") + "/")]
    if not chosen:
        raise BenchError(f"no study matches {pattern!r} in this storage; it holds: {', '.join(names) or 'none'}")
    return chosen


def run_worker(storage_url: str, study_names: list[str], out_dir: Path, *, device: str = DEFAULTS["device"],
               data_root: Optional[Path] = None, inception_weights: Optional[Path] = None, progress: bool = True,
               on_finished: Optional[Callable[[Finished], None]] = None) -> int:
    """Train WAITING trials of `study_names` (in that order) until none is left; returns how many."""
    _die_with_parent()
    if os.environ.get("BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    storage = open_storage(storage_url)
    count = 0
    while True:
        claim = None
        for name in study_names:
            study = optuna.load_study(study_name=name, storage=storage)
            reclaim_lost_trials(study)
            trial = _claim_waiting(study)
            if trial is not None:
                claim = (study, trial)
                break
        if claim is None:
            return count
        result = _train(*claim, out_dir, RunOptions(out=out_dir, device=device, data_root=data_root,
                                                    inception_weights=inception_weights, progress=progress))
        count += 1
        if on_finished is not None:
            on_finished(result)


def trial_dir(out_dir: Path, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Path:
    meta = study_meta(study)
    protocol = RunProtocol.from_dict(meta["protocol"])
    prefix = "slot" if meta["role"] == "search" else "seed"
    return Path(out_dir) / meta["model"] / protocol.digest / f"{prefix}-{trial.user_attrs['slot']:04d}"


def _claim_waiting(study: optuna.Study) -> Optional[optuna.trial.FrozenTrial]:
    storage, study_id = study._storage, study._study_id
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
            storage.set_trial_system_attr(trial._trial_id, OWNER, _owner())
            storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
            return storage.get_trial(trial._trial_id)
    return None


def _train(study: optuna.Study, trial: optuna.trial.FrozenTrial, out_dir: Path, options: RunOptions) -> Finished:
    from bench.train import run_trial

    storage, meta = study._storage, study_meta(study)
    protocol = RunProtocol.from_dict(meta["protocol"])
    folder = trial_dir(out_dir, study, trial)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(storage, trial._trial_id, stop), daemon=True)
    beat.start()
    t0 = time.perf_counter()
    slot = trial.user_attrs["slot"]
    try:
        if meta.get("source"):
            from bench.models import get_model_class

            get_model_class(meta["source"])  # a plug-in given as FILE.py:Class registers itself
        config = protocol.trial_config(meta["model"], trial.params, int(trial.user_attrs["seed"]))
        result = run_trial(config, dataclasses.replace(options, out=folder))
    except KeyboardInterrupt:
        stop.set()
        _requeue(study, trial)  # not this trial's fault: the next run resumes it
        raise
    except Exception as exc:
        stop.set()
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchError) else str(exc)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.log").write_text(traceback.format_exc())
        _finish(storage, trial, TrialState.FAIL, None, {"status": "failed", "error": error.splitlines()[0]})
        return Finished(study.study_name, meta["model"], meta["role"], slot, "failed", None, time.perf_counter() - t0,
                        error, score_for(protocol.dataset).metric)
    stop.set()
    # A diverged trial keeps the best point it reached (compare_gan v1 scores every checkpoint and
    # keeps the best); with none, it has no score and the worst value stands in for it.
    score = score_for(protocol.dataset)
    value = score.stored_value(result.evaluations)
    state = _read_state(folder)
    attrs = {
        "status": result.status,
        "score_name": score.metric,
        "score": result.score,
        "best_fid": result.best_fid,
        # A copy of the evaluation records, so that reports work where the trial folder is not.
        "evaluations": [{k: r[k] for k in EVALUATION_FIELDS if k in r} for r in result.evaluations],
        "diverged_at_step": result.diverged_at_step,
        "compute": state.get("compute", {}),
        "folder": str(folder),
        "steps": config.steps,
    }
    _finish(storage, trial, TrialState.COMPLETE, value, attrs)
    return Finished(study.study_name, meta["model"], meta["role"], slot, result.status, result.score,
                    time.perf_counter() - t0, score_name=score.metric)


def _finish(storage, trial, state, value, attrs) -> None:
    try:
        for key, val in attrs.items():
            storage.set_trial_user_attr(trial._trial_id, key, val)
        storage.set_trial_state_values(trial._trial_id, state, values=None if value is None else [value])
    except UpdateFinishedTrialError:
        pass  # reclaimed as lost while we were still at it: the re-queued copy owns the slot


def reclaim_lost_trials(study: optuna.Study, grace: float = GRACE_SECONDS) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone; returns how many."""
    storage, count = study._storage, 0
    for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if _alive(trial, grace):
            continue
        if _requeue(study, trial):
            count += 1
    return count


def _requeue(study, trial) -> bool:
    try:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False  # someone else reclaimed it first
    _add_waiting(study, trial.params, trial.distributions, trial.user_attrs, {"bench:retry_of": trial.number})
    return True


def _alive(trial, grace: float) -> bool:
    owner = trial.system_attrs.get(OWNER)
    if owner and owner.get("host") == HOST:
        return _process_alive(owner.get("pid"), owner.get("start"))
    last = trial.system_attrs.get(BEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else 0)
    return time.time() - last < grace


def _owner() -> dict:
    return {"host": HOST, "pid": os.getpid(), "start": _process_start(os.getpid())}


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: Optional[int], start: Optional[str]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return start is None or _process_start(pid) in (None, start)


def _heartbeat(storage, trial_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            storage.set_trial_system_attr(trial_id, BEAT, time.time())
        except Exception:
            return  # the trial finished or the storage went away: nothing left to keep alive


def _read_state(folder: Path) -> dict:
    from bench.trial_folder import TrialFolder

    try:
        return TrialFolder(folder).read_state() or {}
    except BenchError:
        return {}


def _die_with_parent() -> None:
    """A worker started by `bench run` must not outlive it (kill -9 of the run included)."""
    parent = os.environ.get("BENCH_PARENT_PID")
    if not parent:
        return
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def watch():
        while True:
            if os.getppid() != int(parent):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(2)

    threading.Thread(target=watch, daemon=True).start()
