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

from bench.config import RunOptions, resolve_device
from bench.devices import pack_size
from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.records.evaluation import EvalRecord
from bench.records.run_folder import trial_path
from bench.records.study_store import StoredStudy, StudyStore
from bench.records.trial_folder import TrialFolder
from bench.scores import score_for
from bench.records.protocol import RunProtocol

HEARTBEAT_SECONDS = 15.0
GRACE_SECONDS = 300.0  # a trial on another host is presumed lost after this long without a heartbeat
HOST = platform.node()


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


def train_waiting_trials(storage_url: str, study_names: list[str], out_dir: Path, *, device: str = DEFAULTS["device"],
                         data_root: Optional[Path] = None, inception_weights: Optional[Path] = None,
                         progress: bool = True, pack: int = DEFAULTS["pack"],
                         on_finished: Optional[Callable[[Finished], None]] = None) -> int:
    """Claim and train WAITING trials of `study_names` (in that order) until none is left; returns
    how many. With `pack` > 1 a claim takes up to that many trials of one study, which train as
    packs where their model packs (bench/packing). `bench worker` is this in a process of its own;
    `bench run --jobs 1` calls it in-process."""
    _die_with_parent()
    if os.environ.get("BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    store = StudyStore(storage_url)
    pack = pack_size(pack, resolve_device(device))
    options = RunOptions(out=out_dir, device=device, data_root=data_root, inception_weights=inception_weights,
                         progress=progress)
    count = 0
    while True:
        claim = _claim(store, study_names, pack)
        if claim is None:
            return count
        for result in _train(*claim, out_dir, options, pack):
            count += 1
            if on_finished is not None:
                on_finished(result)


def _claim(store: StudyStore, study_names: list[str], pack: int):
    """(study, its claimed trials): the first study with a waiting trial, and up to `pack` of its
    trials where its model packs; None when no study has one."""
    for name in study_names:
        study = store.load(name)
        reclaim_lost_trials(study)
        trial = study.claim_waiting(_owner())
        if trial is None:
            continue
        trials = [trial]
        if pack > 1 and _model_packs(study):
            while len(trials) < pack:
                more = study.claim_waiting(_owner())
                if more is None:
                    break
                trials.append(more)
        return study, trials
    return None


def _model_packs(study: StoredStudy) -> bool:
    from bench.models import get_model_class
    from bench.packing import packs

    try:
        return packs(get_model_class(study.meta.source or study.meta.model))
    except BenchError:
        return False  # a plug-in that cannot be loaded fails in training, where the error is recorded


def trial_dir(out_dir: Path, study: StoredStudy, trial) -> Path:
    meta = study.meta
    return trial_path(out_dir, meta.model, meta.digest, meta.role, trial.user_attrs["slot"])


def _train(study: StoredStudy, trials: list, out_dir: Path, options: RunOptions, pack: int) -> list[Finished]:
    """Train the claimed trials of one study (as packs where they can) and report each."""
    from bench.packing.packed_trials import run_trials

    meta = study.meta
    protocol = RunProtocol.from_dict(meta.protocol)
    score = score_for(protocol.dataset)
    folders = [trial_dir(out_dir, study, trial) for trial in trials]
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(study, trials, stop), daemon=True)
    beat.start()
    t0 = time.perf_counter()
    try:
        if meta.source:
            from bench.models import get_model_class

            get_model_class(meta.source)  # a plug-in given as FILE.py:Class registers itself
        configs = [protocol.trial_config(meta.model, t.params, int(t.user_attrs["seed"])) for t in trials]
        results = run_trials(configs, [dataclasses.replace(options, out=f) for f in folders], pack=pack)
    except KeyboardInterrupt:
        stop.set()
        for trial in trials:
            study.requeue(trial)  # not these trials' fault: the next run resumes them
        raise
    except Exception as exc:
        stop.set()
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchError) else str(exc)
        finished = []
        for trial, folder in zip(trials, folders):
            TrialFolder(folder).write_error(traceback.format_exc())
            study.finish(trial, False, None, {"status": "failed", "error": error.splitlines()[0]})
            finished.append(Finished(study.name, meta.model, meta.role, trial.user_attrs["slot"], "failed", None,
                                     time.perf_counter() - t0, error, score.metric))
        return finished
    stop.set()
    seconds = (time.perf_counter() - t0) / len(trials)
    return [_report(study, trial, config, folder, result, score, seconds)
            for trial, config, folder, result in zip(trials, configs, folders, results)]


def _report(study: StoredStudy, trial, config, folder: Path, result, score, seconds: float) -> Finished:
    # A diverged trial keeps the best point it reached (compare_gan v1 scores every checkpoint and
    # keeps the best); with none, it has no score and the worst value stands in for it.
    meta = study.meta
    state = _read_state(folder)
    attrs = {
        "status": result.status,
        "score_name": score.metric,
        "score": result.score,
        "best_fid": result.best_fid,
        # A copy of the evaluation records, so that reports work where the trial folder is not.
        "evaluations": [EvalRecord.from_dict(r).compact() for r in result.evaluations],
        "diverged_at_step": result.diverged_at_step,
        "compute": state.compute if state is not None else {},
        "folder": str(folder),
        "steps": config.steps,
    }
    study.finish(trial, True, score.stored_value(result.evaluations), attrs)
    return Finished(study.name, meta.model, meta.role, trial.user_attrs["slot"], result.status, result.score,
                    seconds, score_name=score.metric)


def reclaim_lost_trials(study: StoredStudy, grace: float = GRACE_SECONDS) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone; returns how many."""
    return sum(study.requeue(t) for t in study.trials("running") if not _alive(study, t, grace))


def _alive(study: StoredStudy, trial, grace: float) -> bool:
    owner = study.owner(trial)
    if owner and owner.get("host") == HOST:
        return _process_alive(owner.get("pid"), owner.get("start"))
    return time.time() - study.last_heartbeat(trial) < grace


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


def _heartbeat(study: StoredStudy, trials: list, stop: threading.Event) -> None:
    alive = list(trials)
    while alive and not stop.wait(HEARTBEAT_SECONDS):
        for trial in list(alive):
            try:
                study.heartbeat(trial)
            except Exception:
                alive.remove(trial)  # it finished or the storage went away: nothing left to keep alive


def _read_state(folder: Path):
    try:
        return TrialFolder(folder).read_state()
    except BenchError:
        return None


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
