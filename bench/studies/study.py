"""One Optuna study per (dataset, model, protocol): its slots, its metadata, its progress.

A study's trials are created up front as WAITING trials, one per slot of the budget, with the
slot's configuration as fixed parameters (bench/studies/search.py). Workers only ever claim
WAITING trials, so a study never holds more than its budget of configurations, whatever the
number of workers; a trial lost with its worker is re-queued with the same slot and resumes
from that slot's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import optuna
from optuna.trial import TrialState

from bench.errors import BenchError
from bench.models import get_model_class
from bench.scores import FID, Score, score_for
from bench.studies.protocol import RunProtocol
from bench.studies.search import SEED_RERUN_BASE, configuration, distributions

STUDY_FORMAT = "bench-study/1"
SEARCH, SEEDS = "search", "seeds"


def study_name(protocol: RunProtocol, model: str, role: str = SEARCH) -> str:
    name = f"{protocol.dataset}/{model}/{protocol.digest}"
    return name if role == SEARCH else f"{name}/{SEEDS}"


def open_study(storage, protocol: RunProtocol, model: str, role: str = SEARCH) -> optuna.Study:
    """Create the study or load it; its metadata (model, role, protocol) lives in the storage so
    that a `bench worker` on another machine needs nothing but the storage URL."""
    name = study_name(protocol, model, role)
    # The direction is the dataset's score's (maximize triangle F1). A study made before scores
    # had directions keeps its own: bench ranks by `score_for`, never by Optuna's direction.
    score = score_for(protocol.dataset)
    study = optuna.create_study(study_name=name, storage=storage, direction=score.direction, load_if_exists=True)
    meta = study.user_attrs.get("bench")
    if meta is None:
        cls = get_model_class(model)
        # `source` lets a worker elsewhere load a plug-in given as FILE.py:Class.
        study.set_user_attr("bench", {"format": STUDY_FORMAT, "model": model, "role": role,
                                      "protocol": protocol.to_dict(), "family": cls.family,
                                      "explicit": bool(cls.explicit), "source": cls.__dict__.get("source"),
                                      "score": score.metric})
    elif meta.get("format") != STUDY_FORMAT:
        raise BenchError(f"study {name} in this storage was not made by bench ({meta.get('format')!r})")
    return study


def study_meta(study: optuna.Study) -> dict:
    meta = study.user_attrs.get("bench")
    if not meta or meta.get("format") != STUDY_FORMAT:
        raise BenchError(f"study {study.study_name} was not made by bench; choose a bench study")
    return meta


def enqueue_search(study: optuna.Study, protocol: RunProtocol, model: str, budget: int) -> int:
    """Add the WAITING trials of slots not yet in the study, up to `budget`; returns how many."""
    space = get_model_class(model).search_space
    dists = distributions(space, protocol.search)
    present = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
    added = 0
    for slot in range(budget):
        if slot not in present:
            params = configuration(space, protocol.search, model, slot)
            _add_waiting(study, params, dists, {"slot": slot, "seed": slot, "role": SEARCH})
            added += 1
    return added


def enqueue_seeds(study: optuna.Study, source: optuna.trial.FrozenTrial, seeds: int) -> int:
    """`seeds` reruns of the `source` trial's configuration with seeds it was not trained with.

    Re-runs are counted per source: when the best trial has changed since re-runs were made (a
    larger budget, or a run stored under older scoring rules), the new best gets its own, in slots
    after the old ones, which stay as they are (bench/reports/tables.py's seed table counts only
    the current best's)."""
    trials = study.get_trials(deepcopy=False)
    source_slot = source.user_attrs["slot"]
    present = {(t.user_attrs.get("source_slot"), t.user_attrs.get("rerun", t.user_attrs.get("slot"))) for t in trials}
    used = {t.user_attrs.get("slot") for t in trials}
    added = 0
    for k in range(1, seeds + 1):
        if (source_slot, k) in present:
            continue
        slot = k if k not in used else max(s for s in used if s is not None) + 1
        used.add(slot)
        _add_waiting(study, source.params, source.distributions,
                     {"slot": slot, "seed": SEED_RERUN_BASE + k, "role": SEEDS, "source_slot": source_slot, "rerun": k})
        added += 1
    return added


STALE = "stale"  # the status of a re-run queued for a trial that is no longer the best


def retire_stale_reruns(study: optuna.Study, source_slot: int) -> int:
    """Take the WAITING re-runs of any other source out of the queue (failed, status "stale"), so
    that a best trial which changed since they were queued does not cost their training; returns
    how many. Finished ones stay: they are stored results, only not counted as the best's."""
    retired = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get("source_slot") != source_slot:
            study._storage.set_trial_user_attr(t._trial_id, "status", STALE)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            retired += 1
    return retired


def _add_waiting(study, params, dists, user_attrs, system_attrs=None) -> None:
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=params, distributions=dists,
                                              user_attrs=user_attrs, system_attrs=system_attrs or {}))


def trial_score(score: Score, trial: optuna.trial.FrozenTrial) -> Optional[float]:
    """A finished trial's score, recomputed from its stored evaluation records rather than read
    from its Optuna value (which runs stored before diverged trials kept their best point, or
    before triangles were scored by F1, hold in another sense)."""
    return score.of_records(trial.user_attrs.get("evaluations") or [])


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
    best: Optional[optuna.trial.FrozenTrial] = None
    best_score: Optional[float] = None
    score: Score = FID
    errors: list = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.complete + self.diverged


def summarize(study: optuna.Study) -> SlotSummary:
    by_slot: dict = {}
    for t in study.get_trials(deepcopy=False):
        by_slot.setdefault(t.user_attrs.get("slot"), []).append(t)
    score = score_for(study_meta(study)["protocol"]["dataset"])
    by_slot.pop(None, None)
    for slot in [s for s, trials in by_slot.items() if all(t.user_attrs.get("status") == STALE for t in trials)]:
        del by_slot[slot]  # a re-run retired before it ran: not part of any budget
    out, best_key = SlotSummary(budget=len(by_slot), score=score), None
    for slot in sorted(by_slot):
        trials = by_slot[slot]
        states = {t.state for t in trials}
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        if finished:
            t = finished[0]
            if t.user_attrs.get("status") == "diverged":
                out.diverged += 1
            else:
                out.complete += 1
            record = score.best_record(t.user_attrs.get("evaluations") or [])
            if record is not None and (out.best is None or score.record_key(record) < best_key):
                out.best, out.best_score, best_key = t, float(record["metrics"][score.metric]), score.record_key(record)
        elif TrialState.RUNNING in states:
            out.running += 1
        elif TrialState.WAITING in states:
            out.waiting += 1
        else:
            out.failed += 1
            out.errors += [t.user_attrs["error"] for t in trials if "error" in t.user_attrs][-1:]
    return out
