"""A worker: claims WAITING trials of its studies, trains them, reports, until none is left.

Who owns a trial, how a lost one is found and how a worker rides out a database restart is
bench/studies/ownership.py. Here: a trial that fails for its own reason goes back to the queue at
most `max_retries` times, then stays failed with its error; an error of the device itself (a
broken CUDA context) puts the trial back and ends the worker, so that its supervisor can start a
fresh process. Exactly one trial of a slot can complete: the storage refuses a state change on a
trial that is no longer RUNNING, and `finish` checks the owner.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from bench.config import RunOptions, resolve_device
from bench.devices import pack_size
from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.records.run_folder import SEARCH, SEEDS, trial_path
from bench.records.study_store import StoredStudy, StudyStore
from bench.records.trial_folder import Lease, LeaseLost, TrialFolder
from bench.studies.kept_weights import drop_weights_of_other_trials
from bench.scores import score_for
from bench.records.protocol import RunProtocol
from bench.studies.ownership import (ABANDON_SECONDS, Heartbeat, first_line, patiently, reclaim_lost_trials,
                                     worker_identity)

POLL_SECONDS = 5.0  # how often an idle worker looks for new trials
FOLLOW_PATIENCE = 120.0  # how long a worker waits for announced seed re-runs that do not appear


class DeviceLost(BenchError):
    """The device failed, not the trial: the worker re-queues its trials and exits."""


@dataclass
class Finished:
    """What a worker reports after each trial (the coordinator prints it)."""

    study: str
    model: str
    role: str
    slot: int
    status: str  # complete | diverged | failed | abandoned
    value: Optional[float]  # the trial's score; None where it has none
    seconds: float
    error: Optional[str] = None
    score_name: str = "fid"
    retried: bool = False  # a failed attempt that was queued again


StudyNames = Union[Sequence[str], Callable[[], Sequence[str]]]


def train_waiting_trials(storage_url: str, study_names: StudyNames, out_dir: Path, *, device: str = DEFAULTS["device"],
                         data_root: Optional[Path] = None, inception_weights: Optional[Path] = None,
                         progress: bool = True, pack: int = DEFAULTS["pack"],
                         max_retries: int = DEFAULTS["max_retries"], wait: bool = False,
                         checkpoint_every: str = DEFAULTS["checkpoint_every"], keep: str = DEFAULTS["keep"],
                         log: str = DEFAULTS["log"], on_finished: Optional[Callable[[Finished], None]] = None) -> int:
    """Claim and train WAITING trials of `study_names` (in that order; a callable is asked again
    before every claim, so that studies made later are joined) until none is left; returns how
    many. None left means none waiting and none running elsewhere (a running trial's owner may
    die, and its trial is then re-queued here), nor seed re-runs announced but not yet queued;
    with `wait`, the worker keeps looking until it is stopped. With `pack` > 1 a claim takes up to
    that many trials of one study, which train as packs where their model packs (bench/packing).
    `bench worker` is this in a process of its own; `bench run --jobs 1` calls it in-process."""
    _die_with_parent()
    if os.environ.get("BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    store = patiently(StudyStore, storage_url)
    names_now = study_names if callable(study_names) else (lambda: list(study_names))
    pack = pack_size(pack, resolve_device(device))
    options = RunOptions(out=out_dir, device=device, data_root=data_root, inception_weights=inception_weights,
                         progress=progress, checkpoint_every=checkpoint_every, keep=keep, log=log)
    count, idle_since = 0, None
    while True:
        names = patiently(names_now)
        claim = patiently(_claim, store, names, pack)
        if claim is None:
            more = patiently(_more_may_come, store, names, idle_since, callable(study_names))
            if not wait and not more:
                return count
            # FOLLOW_PATIENCE counts from the end of the last trial, not from trials run elsewhere.
            idle_since = None if more == "running" else (idle_since or time.time())
            time.sleep(POLL_SECONDS)
            continue
        idle_since = None
        for result in _train(*claim, out_dir, options, pack, max_retries):
            count += result.status != "abandoned"
            if on_finished is not None:
                on_finished(result)


def _claim(store: StudyStore, study_names: Sequence[str], pack: int):
    """(study, its claimed trials): the first study with a waiting trial, and up to `pack` of its
    trials where its model packs; None when no study has one."""
    for name in study_names:
        study = store.load(name)
        reclaim_lost_trials(study)
        trial = study.claim_waiting(worker_identity())
        if trial is None:
            continue
        trials = [trial]
        if pack > 1 and _model_packs(study):
            while len(trials) < pack:
                more = study.claim_waiting(worker_identity())
                if more is None:
                    break
                trials.append(more)
        return study, trials
    return None


def _more_may_come(store: StudyStore, names: Sequence[str], idle_since: Optional[float], following: bool):
    """Whether a worker with nothing to claim should stay: trials are running elsewhere (their
    owner may yet be lost), or, for a worker that follows a run, a finished search announced seed
    re-runs not queued yet (for at most FOLLOW_PATIENCE seconds: the `bench run` that announced
    them may be gone). "running", "announced", or None for no."""
    studies = [store.load(name) for name in names]
    if any(study.trials("running", "waiting") for study in studies):
        return "running"
    if not following:
        return None
    seed_names = {s.name for s in studies if s.meta.role == SEEDS}
    announced = any(s.meta.role == SEARCH and s.announced_seeds and s.name + "/" + SEEDS not in seed_names
                    for s in studies)
    return "announced" if announced and (idle_since is None or time.time() - idle_since < FOLLOW_PATIENCE) else None


class RunStudies:
    """The bench studies of one run, asked again at every claim: `bench worker --run` joins the
    seed re-runs `bench run` queues after the search. Search studies come first, then seed
    re-runs; a seed study without trials yet is left out (it is being filled). Only names not
    seen before are read (one query per look otherwise)."""

    def __init__(self, store: StudyStore, dataset: Optional[str] = None, digest: Optional[str] = None):
        self.store, self.dataset, self.digest = store, dataset, digest
        self._meta: dict = {}
        self._filled: set = set()

    def __call__(self) -> list[str]:
        for name in self.store.names():
            if self._meta.get(name) is None:  # asked again: a study is made before its metadata is written
                self._meta[name] = self.store.meta_of(name)
        chosen = []
        for name, meta in self._meta.items():
            if meta is None or (self.dataset and meta.dataset != self.dataset) or (self.digest and meta.digest != self.digest):
                continue
            if meta.role == SEEDS and name not in self._filled:
                if not self.store.has_trials(name):
                    continue
                self._filled.add(name)
            chosen.append((meta.role != SEARCH, name))
        return [name for _, name in sorted(chosen)]


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


def _train(study: StoredStudy, trials: list, out_dir: Path, options: RunOptions, pack: int,
           max_retries: int = DEFAULTS["max_retries"]) -> list[Finished]:
    """Train the claimed trials of one study (as packs where they can) and report each."""
    from bench.packing.packed_trials import run_trials

    meta = study.meta
    protocol = RunProtocol.from_dict(meta.protocol)
    score = score_for(protocol.dataset)
    folders = [trial_dir(out_dir, study, trial) for trial in trials]
    me = worker_identity()["id"]
    # A token per claim: a trial released and claimed again, even by this worker, has a new one.
    leases = [Lease(f"{me}/{trial.number}/{uuid.uuid4().hex[:8]}", expires_after=ABANDON_SECONDS) for trial in trials]
    beat = Heartbeat(study, trials, leases)
    t0 = time.perf_counter()

    def ended(trial, status, error=None, retried=False) -> Finished:
        return Finished(study.name, meta.model, meta.role, trial.user_attrs["slot"], status, None,
                        time.perf_counter() - t0, error, score.metric, retried)

    try:
        if meta.source:
            from bench.models import get_model_class

            get_model_class(meta.source)  # a plug-in given as FILE.py:Class registers itself
        configs = [protocol.trial_config(meta.model, t.params, int(t.user_attrs["seed"])) for t in trials]
        results = run_trials(configs, [dataclasses.replace(options, out=f, lease=lease)
                                       for f, lease in zip(folders, leases)], pack=pack)
    except KeyboardInterrupt:
        beat.stop()
        for trial in trials:
            study.release(trial, me)  # not these trials' fault: the next run resumes them
        raise
    except LeaseLost:
        # Some of these trials are another worker's now, or their claims could not be renewed;
        # each one still this worker's goes back to the queue (`release` checks the owner), so
        # that none is left RUNNING under a live worker that no longer trains it.
        beat.stop()
        for trial in trials:
            patiently(study.release, trial, me)
        return [ended(t, "abandoned") for t, lease in zip(trials, leases) if lease.lost.is_set()]
    except Exception as exc:
        beat.stop()
        if is_device_error(exc):
            for trial in trials:
                patiently(study.release, trial, me)
            raise DeviceLost(f"the device failed ({first_line(exc)}); its trials were queued again and this "
                             "worker stops, so that a fresh process can take over") from None
        error = first_line(exc) if not isinstance(exc, BenchError) else str(exc)
        finished = []
        for trial, folder, lease in zip(trials, folders, leases):
            if lease.lost.is_set():
                continue
            try:
                TrialFolder(folder, lease).write_error(traceback.format_exc())
            except LeaseLost:
                continue
            failures = patiently(study.failures_of, trial) + 1  # counted once, however often the call is retried
            retried = patiently(study.fail_attempt, trial, error, max_retries, me, failures)
            finished.append(ended(trial, "failed", error, retried))
        return finished
    beat.stop()
    seconds = (time.perf_counter() - t0) / len(trials)
    finished = [patiently(_report, study, trial, config, folder, result, score, seconds)
                for trial, config, folder, result in zip(trials, configs, folders, results)]
    if options.keep == "best":
        patiently(drop_weights_of_other_trials, study, lambda t: trial_dir(out_dir, study, t))
    return finished


# Messages of errors that leave the accelerator unusable by this process (CUDA's sticky errors).
_DEVICE_ERRORS = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error", "device-side assert",
                  "NCCL error", "unspecified launch failure", "illegal memory access")


def is_device_error(exc: BaseException) -> bool:
    """An error of the device rather than of the trial; out of memory is the trial's (its size)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _DEVICE_ERRORS)


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
        # Its best point only (what the search, summaries and seed re-runs need); the records stay
        # in the trial folder, which reports read.
        "best": _best_point(score, result.evaluations),
        "points": len(result.evaluations),
        "diverged_at_step": result.diverged_at_step,
        "compute": state.compute if state is not None else {},
        "folder": str(folder),
        "steps": config.steps,
    }
    if not study.finish(trial, True, score.stored_value(result.evaluations), attrs, worker_identity()["id"]):
        # Released as lost while it trained (a long outage): its folder is complete, and whoever
        # holds the trial now finds it so and reports it without training.
        return Finished(study.name, meta.model, meta.role, trial.user_attrs["slot"], "abandoned", None, seconds,
                        score_name=score.metric)
    return Finished(study.name, meta.model, meta.role, trial.user_attrs["slot"], result.status, result.score,
                    seconds, score_name=score.metric)


def _best_point(score, records: list) -> Optional[dict]:
    best = score.best_record(records)
    return None if best is None else {"step": best["step"], "g_steps": best.get("g_steps"), "metrics": best["metrics"]}


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
