"""One study per (dataset, model, protocol): its slots, its metadata, its progress.

A study's trials are created up front as WAITING trials, one per slot of the budget, with the
slot's configuration as fixed parameters (bench/studies/search.py). Workers only ever claim
WAITING trials, so a study never holds more than its budget of configurations, whatever the
number of workers; a trial lost with its worker is re-queued with the same slot and resumes
from that slot's checkpoint. The storage itself is reached through bench/records/study_store.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from bench.defaults import DEFAULTS
from bench.models import get_model_class
from bench.records.run_folder import SEARCH, SEEDS
from bench.records.study_store import STALE, StoredStudy, StudyMeta, StudyStore, stored_records, study_name as _name
from bench.scores import FID, Score, score_for
from bench.records.protocol import RunProtocol
from bench.studies.search import SEED_RERUN_BASE, configuration, distributions

__all__ = ["SEARCH", "SEEDS", "STALE", "SlotSummary", "enqueue_search", "enqueue_seeds", "open_study",
           "requeue_failed", "retire_stale_reruns", "study_name", "summarize", "trial_score"]


def study_name(protocol: RunProtocol, model: str, role: str = SEARCH, digest: Optional[str] = None) -> str:
    """The study's name; `digest`: the run's stored one (a protocol's own digest by default)."""
    return _name(protocol.dataset, model, digest or protocol.digest, role)


def open_study(store: StudyStore, protocol: RunProtocol, model: str, role: str = SEARCH,
               digest: Optional[str] = None) -> StoredStudy:
    """Create the study or load it; its metadata (model, role, protocol, digest) lives in the
    storage so that a `bench worker` on another machine needs nothing but the storage URL."""
    digest = digest or protocol.digest
    cls = get_model_class(model)
    # The direction is the dataset's score's (maximize triangle F1). A study made before scores
    # had directions keeps its own: bench ranks by `score_for`, never by Optuna's direction.
    score = score_for(protocol.dataset)
    meta = StudyMeta(model=model, role=role, protocol=protocol.to_dict(), digest=digest, family=cls.family,
                     explicit=bool(cls.explicit), source=cls.__dict__.get("source"), score=score.metric)
    return store.open(study_name(protocol, model, role, digest), score.direction, meta)


def enqueue_search(study: StoredStudy, protocol: RunProtocol, model: str, budget: int) -> int:
    """Add the WAITING trials of slots not yet in the study, up to `budget`; returns how many."""
    space = get_model_class(model).search_space
    dists = distributions(space, protocol.search)
    present = {s.slot for s in study.slots()}
    added = 0
    for slot in range(budget):
        if slot not in present:
            study.add_waiting(configuration(space, protocol.search, model, slot), dists,
                              {"slot": slot, "seed": slot, "role": SEARCH})
            added += 1
    return added


def enqueue_seeds(study: StoredStudy, source, seeds: int) -> int:
    """`seeds` reruns of the `source` trial's configuration with seeds it was not trained with.

    Re-runs are counted per source: when the best trial has changed since re-runs were made (a
    larger budget, or a run stored under older scoring rules), the new best gets its own, in slots
    after the old ones, which stay as they are (bench/reports/tables.py's seed table counts only
    the current best's)."""
    trials = study.trials()
    source_slot = source.user_attrs["slot"]
    present = {(t.user_attrs.get("source_slot"), t.user_attrs.get("rerun", t.user_attrs.get("slot"))) for t in trials}
    used = {t.user_attrs.get("slot") for t in trials}
    added = 0
    for k in range(1, seeds + 1):
        if (source_slot, k) in present:
            continue
        slot = k if k not in used else max(s for s in used if s is not None) + 1
        used.add(slot)
        study.add_waiting(source.params, source.distributions,
                          {"slot": slot, "seed": SEED_RERUN_BASE + k, "role": SEEDS, "source_slot": source_slot,
                           "rerun": k})
        added += 1
    return added


def retire_stale_reruns(study: StoredStudy, source_slot: int) -> int:
    """Take the WAITING re-runs of any other source out of the queue (failed, status "stale"), so
    that a best trial which changed since they were queued does not cost their training; returns
    how many. Finished ones stay: they are stored results, only not counted as the best's."""
    stale = [t for t in study.trials("waiting") if t.user_attrs.get("source_slot") != source_slot]
    for t in stale:
        study.retire(t, STALE)
    return len(stale)


def requeue_failed(study: StoredStudy, max_retries: int = DEFAULTS["max_retries"]) -> int:
    """Failed slots get one more try when the run is started again, unless their trials have
    failed for their own reason more than `max_retries` times (then they stay failed, with their
    error, until a larger --max-retries is given); returns how many were queued."""
    failed = [s for s in study.slots() if s.status == "failed" and s.failures <= max_retries]
    for slot in failed:
        study.retry(slot.trials[-1])
    return len(failed)


def trial_score(score: Score, trial) -> Optional[float]:
    """A finished trial's score, recomputed from its stored evaluation records rather than read
    from its Optuna value (which runs stored before diverged trials kept their best point, or
    before triangles were scored by F1, hold in another sense)."""
    return score.of_records(stored_records(trial))


@dataclass
class SlotSummary:
    """A study's slots by state: a slot is done once one of its trials completed; `best` is the
    done trial with the best score (`best_score`)."""

    budget: int = 0
    complete: int = 0
    diverged: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0
    best: Optional[object] = None  # the best slot's finished trial
    best_score: Optional[float] = None
    score: Score = FID
    errors: list = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.complete + self.diverged


def summarize(study: StoredStudy) -> SlotSummary:
    score = score_for(study.meta.dataset)
    slots = [s for s in study.slots() if s.status != STALE]  # a re-run retired unrun is in no budget
    out, best_key = SlotSummary(budget=len(slots), score=score), None
    for slot in slots:
        status = slot.status  # complete | diverged | running | waiting | failed: a counter each
        setattr(out, status, getattr(out, status) + 1)
        if slot.finished is not None:
            record = score.best_record(stored_records(slot.finished))
            if record is not None and (out.best is None or score.record_key(record) < best_key):
                out.best, best_key = slot.finished, score.record_key(record)
                out.best_score = float(record["metrics"][score.metric])
        elif status == "failed":
            out.errors += [t.user_attrs["error"] for t in slot.trials if "error" in t.user_attrs][-1:]
    return out
