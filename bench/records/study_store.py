"""The one adapter between bench and Optuna: every call into Optuna's storage API is made here.

Studies hold bench's trials as Optuna trials: one WAITING trial per slot of the budget, claimed by
a worker (WAITING -> RUNNING, which the storage lets exactly one claimant do), finished COMPLETE
(with its status, score and a compact copy of its evaluation records as attributes) or FAIL. A
slot may hold several trials (a lost one re-queued, a failed one retried); `Slot` is the one rule
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
        """A new WAITING trial of the same slot and configuration."""
        self.add_waiting(trial.params, trial.distributions, trial.user_attrs, retry_of=trial.number)

    # --- claims ---------------------------------------------------------------------------

    def claim_waiting(self, owner: dict) -> Optional[FrozenTrial]:
        """Take one WAITING trial for `owner` (RUNNING, with the owner and a first heartbeat);
        None when none is left. The storage lets one claimant win each trial."""
        storage, study_id = self._study._storage, self._study._study_id
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                storage.set_trial_system_attr(trial._trial_id, OWNER, owner)
                storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
                return storage.get_trial(trial._trial_id)
        return None

    def heartbeat(self, trial: FrozenTrial) -> None:
        self._study._storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())

    @staticmethod
    def owner(trial: FrozenTrial) -> Optional[dict]:
        return trial.system_attrs.get(OWNER)

    @staticmethod
    def last_heartbeat(trial: FrozenTrial) -> float:
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return trial.system_attrs.get(BEAT) or started

    # --- endings --------------------------------------------------------------------------

    def finish(self, trial: FrozenTrial, complete: bool, value: Optional[float], attrs: dict) -> bool:
        """Store the attributes, then COMPLETE (with `value`) or FAIL; False if the trial was
        already reclaimed as lost (the re-queued copy owns the slot)."""
        storage = self._study._storage
        try:
            for key, val in attrs.items():
                storage.set_trial_user_attr(trial._trial_id, key, val)
            state = TrialState.COMPLETE if complete else TrialState.FAIL
            storage.set_trial_state_values(trial._trial_id, state, values=None if value is None else [value])
        except UpdateFinishedTrialError:
            return False
        return True

    def requeue(self, trial: FrozenTrial) -> bool:
        """Fail a RUNNING trial and queue its slot again; False if someone else did first."""
        try:
            self._study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        self.retry(trial)
        return True

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

    def of_dataset(self, dataset: str) -> Iterator[StoredStudy]:
        """The bench studies of `dataset` (a shared database may hold other datasets' and other tools')."""
        for name in self.names():
            study = optuna.load_study(study_name=name, storage=self._storage)
            meta = study.user_attrs.get(META_KEY)
            if meta and meta.get("format") == STUDY_FORMAT and meta.get("protocol", {}).get("dataset") == dataset:
                yield StoredStudy(study)
