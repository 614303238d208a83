"""The one adapter between bench and Optuna: every call into Optuna's storage API is made here.

Studies hold bench's trials as Optuna trials: one WAITING trial per slot of the budget, claimed by
a worker (WAITING -> RUNNING, which the storage lets exactly one claimant do), finished COMPLETE
(with its status, score and best point as a few compact attributes: the evaluation records
themselves stay in the trial folder, so that polling a study of 1,300 trials reads kilobytes, not
the tens of megabytes a copy of every record made) or FAIL. A
trial whose worker was lost, or that failed with retries left, goes back to WAITING in one state
change (`release`), so that no kill between two writes can leave its slot without a live trial.
A slot may still hold several trials (a failed one tried again by a later `bench run` with a
larger --max-retries, or runs stored before trials were released in place); `Slot` is the one rule
for what a slot's trials amount to.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from bench.config import known_keys
from bench.errors import BenchError
from bench.records.run_folder import SEARCH, SEEDS, legacy_digest
from bench.records.storage import open_storage

STUDY_FORMAT = "bench-study/1"
META_KEY = "bench"
OWNER, BEAT, RETRY_OF = "bench:owner", "bench:heartbeat", "bench:retry_of"
CLAIMING = "bench:claiming"  # {"id", "time"} written just before a claim: a claim in progress is not a lost trial
THEN_SEEDS = "bench:then_seeds"
FAILURES = "failures"  # a trial's attempts that failed with an error
_ATTEMPT_ATTRS = ("status", "error", FAILURES)  # what a new trial of the slot does not inherit  # a search study's announcement: `bench run` queues N seed re-runs after it
STALE = "stale"  # the status of a seed re-run retired before it ran: another trial became the best


def study_name(dataset: str, model: str, digest: str, role: str = SEARCH) -> str:
    name = f"{dataset}/{model}/{digest}"
    return name if role == SEARCH else f"{name}/{SEEDS}"


@dataclass
class StudyMeta:
    """What a study says about itself, so that a worker elsewhere needs nothing but the storage."""

    model: str
    role: str  # search | seeds
    protocol: dict  # RunProtocol.to_dict()
    digest: str = ""
    family: Optional[str] = None
    explicit: Optional[bool] = None
    source: Optional[str] = None  # FILE.py:Class of a plug-in, for workers on other machines
    score: Optional[str] = None  # the metric the study's values are (bench/scores.py)

    def to_dict(self) -> dict:
        return {"format": STUDY_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, name: str) -> "StudyMeta":
        if not data or data.get("format") != STUDY_FORMAT:
            raise BenchError(f"study {name} was not made by bench ({(data or {}).get('format')!r}); choose a bench study")
        values = known_keys(cls, {k: v for k, v in data.items() if k != "format"}, f"the metadata of study {name}")
        if not values.get("digest"):  # stored before the digest was: the one its name was made with
            prefix = f"{values['protocol']['dataset']}/{values['model']}/"
            values["digest"] = (name[len(prefix):].split("/")[0] if name.startswith(prefix)
                                else legacy_digest(values["protocol"]))
        return cls(**values)

    @property
    def dataset(self) -> str:
        return self.protocol["dataset"]


def stored_records(trial: FrozenTrial) -> list[dict]:
    """What the storage holds of a trial's evaluation records: its best point (`best`), or, for
    trials stored before records stayed in the trial folder, the compact copy of every point."""
    if "evaluations" in trial.user_attrs:
        return trial.user_attrs["evaluations"] or []
    best = trial.user_attrs.get("best")
    return [best] if best else []


def trial_status(trial: FrozenTrial) -> str:
    """complete | diverged (finished), running | waiting, failed, or stale."""
    if trial.state == TrialState.COMPLETE:
        return trial.user_attrs.get("status", "complete")
    if trial.state == TrialState.FAIL and trial.user_attrs.get("status") == STALE:
        return STALE
    return {TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(trial.state, "failed")


@dataclass
class Slot:
    """A slot's trials in the order they were made. A slot is done once one of them completed
    (the first to complete is the slot's result; a later copy is never stored over it)."""

    slot: int
    trials: list = field(default_factory=list)

    @property
    def finished(self) -> Optional[FrozenTrial]:
        return next((t for t in self.trials if t.state == TrialState.COMPLETE), None)

    @property
    def trial(self) -> FrozenTrial:
        """The trial that stands for the slot: its result, else its latest attempt."""
        return self.finished or self.trials[-1]

    @property
    def failures(self) -> int:
        """Attempts that failed for their own reason (an error in training), not lost with a worker:
        counted on the trial (`failures`), or one per failed trial where it was stored before."""
        return sum(t.user_attrs.get(FAILURES, 1 if trial_status(t) == "failed" and t.user_attrs.get("status") == "failed"
                                    else 0) for t in self.trials)

    @property
    def status(self) -> str:
        """The slot's state: its result's status, else running/waiting if an attempt is, else
        stale (its latest attempt was retired unrun) or failed."""
        if self.finished is not None:
            return trial_status(self.finished)
        states = {trial_status(t) for t in self.trials}
        for status in ("running", "waiting"):
            if status in states:
                return status
        return STALE if trial_status(self.trials[-1]) == STALE else "failed"


class StoredStudy:
    def __init__(self, study: optuna.Study):
        self._study = study
        self.name = study.study_name
        self.meta = StudyMeta.from_dict(study.user_attrs.get(META_KEY), self.name)

    @property
    def direction(self) -> str:
        return self._study.direction.name.lower()

    def trials(self, *statuses: str) -> list[FrozenTrial]:
        """Its trials, of the given `trial_status`es (all by default)."""
        trials = self._study.get_trials(deepcopy=False)
        return [t for t in trials if not statuses or trial_status(t) in statuses]

    def slots(self) -> list[Slot]:
        """Its slots in slot order (trials without a slot, which bench never makes, are left out)."""
        by_slot: dict = {}
        for t in self._study.get_trials(deepcopy=False):
            if t.user_attrs.get("slot") is not None:
                by_slot.setdefault(t.user_attrs["slot"], Slot(t.user_attrs["slot"])).trials.append(t)
        return [by_slot[s] for s in sorted(by_slot)]

    def add_waiting(self, params: dict, distributions: dict, attrs: dict, retry_of: Optional[int] = None) -> None:
        self._study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=params, distributions=distributions, user_attrs=attrs,
            system_attrs={} if retry_of is None else {RETRY_OF: retry_of}))

    def retry(self, trial: FrozenTrial) -> None:
        """A new WAITING trial of the same slot and configuration (for a finished trial, which
        cannot go back to WAITING)."""
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in _ATTEMPT_ATTRS}
        self.add_waiting(trial.params, trial.distributions, attrs, retry_of=trial.number)

    # --- claims ---------------------------------------------------------------------------

    def claim_waiting(self, owner: dict) -> Optional[FrozenTrial]:
        """Take one WAITING trial for `owner` (RUNNING, with the owner and a first heartbeat);
        None when none is left. The storage lets one claimant win each trial.

        The owner can only be written after the state change: `CLAIMING` is written before it,
        so that a reaper looking between the two sees a claim in progress, not the previous
        (dead) owner of a released trial (`claim_in_progress`)."""
        storage, study_id = self._study._storage, self._study._study_id
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            try:
                storage.set_trial_system_attr(trial._trial_id, CLAIMING, {"id": owner["id"], "time": time.time()})
            except UpdateFinishedTrialError:
                continue
            self._forget_last_claim()
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                storage.set_trial_system_attr(trial._trial_id, OWNER, owner)
                storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
                return storage.get_trial(trial._trial_id)
        return None

    def _forget_last_claim(self) -> None:
        """Optuna's journal storage answers a claim with "is this the trial this thread owns?",
        remembering the last trial it claimed; a trial released and claimed again by another
        worker would read as ours. Forget it before each claim, so that only a claim that wins
        on replay reads as won (tests/records/test_storage.py pins this)."""
        replay = getattr(self._study._storage, "_replay_result", None)
        owned = getattr(replay, "_worker_id_to_owned_trial_id", None)
        if isinstance(owned, dict):
            with self._study._storage._thread_lock:
                owned.pop(replay.worker_id, None)

    @staticmethod
    def claim_in_progress(trial: FrozenTrial, within: float) -> bool:
        """Whether a worker other than the recorded owner began claiming `trial` less than
        `within` seconds ago (its owner record is the previous claim's)."""
        claiming = trial.system_attrs.get(CLAIMING) or {}
        owner = trial.system_attrs.get(OWNER) or {}
        return bool(claiming) and claiming.get("id") != owner.get("id") and time.time() - claiming.get("time", 0) < within

    def renew(self, trial: FrozenTrial, owner_id: str) -> bool:
        """Refresh the heartbeat of a trial this owner still holds; False where it holds it no
        longer (the trial was re-queued as lost, or finished): the owner must stop writing."""
        storage = self._study._storage
        current = storage.get_trial(trial._trial_id)
        if current.state != TrialState.RUNNING or (current.system_attrs.get(OWNER) or {}).get("id") != owner_id:
            return False
        try:
            storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
        except UpdateFinishedTrialError:
            return False
        return True

    def slot_of(self, trial: FrozenTrial) -> Slot:
        return next(s for s in self.slots() if s.slot == trial.user_attrs.get("slot"))

    def announce_seeds(self, seeds: int) -> None:
        if self._study.user_attrs.get(THEN_SEEDS) != seeds:
            self._study.set_user_attr(THEN_SEEDS, seeds)

    @property
    def announced_seeds(self) -> int:
        """Seed re-runs `bench run` said it queues once this search is done (0 for a seed study)."""
        return int(self._study.user_attrs.get(THEN_SEEDS) or 0)

    @staticmethod
    def owner(trial: FrozenTrial) -> Optional[dict]:
        return trial.system_attrs.get(OWNER)

    @staticmethod
    def last_heartbeat(trial: FrozenTrial) -> float:
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return trial.system_attrs.get(BEAT) or started

    # --- endings --------------------------------------------------------------------------

    def finish(self, trial: FrozenTrial, complete: bool, value: Optional[float], attrs: dict,
               owner_id: Optional[str] = None) -> bool:
        """Store the attributes, then COMPLETE (with `value`) or FAIL; with `owner_id`, only while
        that owner holds the trial. False if it no longer does (it was released as lost, and the
        slot belongs to whoever claimed it since)."""
        storage = self._study._storage
        if owner_id is not None and not self._held_by(trial, owner_id):
            return False
        try:
            for key, val in attrs.items():
                storage.set_trial_user_attr(trial._trial_id, key, val)
            state = TrialState.COMPLETE if complete else TrialState.FAIL
            storage.set_trial_state_values(trial._trial_id, state, values=None if value is None else [value])
        except UpdateFinishedTrialError:
            return False
        return True

    def release(self, trial: FrozenTrial, owner_id: Optional[str] = None) -> bool:
        """Put a RUNNING trial back in the queue (WAITING), in one state change; with `owner_id`,
        only while that owner still holds it. False if it is no longer running (or no longer
        that owner's): someone else released, re-claimed or finished it first."""
        storage = self._study._storage
        if not self._held_by(trial, owner_id):
            return False
        try:
            storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
        except UpdateFinishedTrialError:
            return False
        return True

    def failures_of(self, trial: FrozenTrial) -> int:
        """Failed attempts counted on this trial so far."""
        return int(self._study._storage.get_trial(trial._trial_id).user_attrs.get(FAILURES, 0))

    def fail_attempt(self, trial: FrozenTrial, error: str, max_retries: int, owner_id: Optional[str],
                     failures: int) -> bool:
        """Record that the trial's attempt number `failures` failed (idempotent: a retried call
        counts it once); back to WAITING while its slot has failed at most `max_retries` times in
        all, else FAIL with status "failed" and the error. True if queued again."""
        storage = self._study._storage
        if not self._held_by(trial, owner_id):
            return False
        try:
            storage.set_trial_user_attr(trial._trial_id, FAILURES, failures)
            storage.set_trial_user_attr(trial._trial_id, "error", error)
        except UpdateFinishedTrialError:
            return False
        if self.slot_of(storage.get_trial(trial._trial_id)).failures <= max_retries:
            return self.release(trial, owner_id)
        self.finish(trial, False, None, {"status": "failed"}, owner_id)
        return False

    def _held_by(self, trial: FrozenTrial, owner_id: Optional[str]) -> bool:
        """RUNNING, and (with `owner_id`) by that owner."""
        current = self._study._storage.get_trial(trial._trial_id)
        if current.state != TrialState.RUNNING:
            return False
        return owner_id is None or (current.system_attrs.get(OWNER) or {}).get("id") == owner_id

    def retire(self, trial: FrozenTrial, status: str = STALE) -> None:
        """Take a WAITING trial out of the queue for good (it is failed with `status`)."""
        self._study._storage.set_trial_user_attr(trial._trial_id, "status", status)
        self._study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)

    def seconds(self, trial: FrozenTrial) -> float:
        if trial.datetime_complete and trial.datetime_start:
            return (trial.datetime_complete - trial.datetime_start).total_seconds()
        return 0.0


class StudyStore:
    """The studies of one storage (a journal file, SQLite or PostgreSQL URL)."""

    def __init__(self, url: str):
        self.url = url
        self._storage = open_storage(url)
        self._ids: dict = {}  # study name -> id: fixed once made, and asked at every poll

    def _study_id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = self._storage.get_study_id_from_name(name)
        return self._ids[name]

    def names(self) -> list[str]:
        return sorted(optuna.get_all_study_names(self._storage))

    def select(self, pattern: str) -> list[str]:
        """Study names equal to `pattern` or below it (`cifar10` selects every cifar10 study)."""
        names = self.names()
        chosen = [n for n in names if n == pattern or n.startswith(pattern.rstrip("/") + "/")]
        if not chosen:
            raise BenchError(f"no study matches {pattern!r} in this storage; it holds: {', '.join(names) or 'none'}")
        return chosen

    def load(self, name: str) -> StoredStudy:
        return StoredStudy(optuna.load_study(study_name=name, storage=self._storage))

    def open(self, name: str, direction: str, meta: StudyMeta) -> StoredStudy:
        """Create the study with `meta`, or load it; a study of that name not made by bench is refused."""
        study = optuna.create_study(study_name=name, storage=self._storage, direction=direction, load_if_exists=True)
        if study.user_attrs.get(META_KEY) is None:
            study.set_user_attr(META_KEY, meta.to_dict())
        return StoredStudy(study)

    def meta_of(self, name: str) -> Optional[StudyMeta]:
        """A study's bench metadata; None for a study bench did not make (a shared database)."""
        study = optuna.load_study(study_name=name, storage=self._storage)
        meta = study.user_attrs.get(META_KEY)
        if not meta or meta.get("format") != STUDY_FORMAT:
            return None
        return StudyMeta.from_dict(meta, name)

    def of_dataset(self, dataset: str) -> Iterator[StoredStudy]:
        """The bench studies of `dataset` (a shared database may hold other datasets' and other tools')."""
        for name in self.names():
            study = optuna.load_study(study_name=name, storage=self._storage)
            meta = study.user_attrs.get(META_KEY)
            if meta and meta.get("format") == STUDY_FORMAT and meta.get("protocol", {}).get("dataset") == dataset:
                yield StoredStudy(study)

    def ended_count(self, name: str) -> int:
        """How many of a study's trials have ended (one COUNT query: a poll that finds no change reads nothing more)."""
        study_id, storage = self._study_id(name), self._storage
        if isinstance(storage, optuna.storages.RDBStorage):  # its get_n_trials reads every trial and row
            from sqlalchemy import text

            with storage.engine.connect() as conn:
                return int(conn.execute(text("SELECT COUNT(*) FROM trials WHERE study_id = :id AND state IN "
                                             "('COMPLETE', 'FAIL')"), {"id": study_id}).scalar())
        return storage.get_n_trials(study_id, state=(TrialState.COMPLETE, TrialState.FAIL))

    def has_trials(self, name: str) -> bool:
        return self._storage.get_n_trials(self._study_id(name)) > 0
