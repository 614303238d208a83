"""`bench status DIR`: how far each model's study has come."""

from __future__ import annotations

from pathlib import Path

from bench.records.run_folder import SEARCH, SEEDS, RunRecord
from bench.records.study_store import StudyStore, study_name
from bench.studies.study import summarize


def status_rows(run_dir: Path) -> tuple[RunRecord, list[dict]]:
    """(run record, one row per model and role) for the run in `run_dir`."""
    record = RunRecord.require(run_dir)
    store = StudyStore(record.storage_url(run_dir))
    existing = set(store.names())
    rows = []
    for model in record.models:
        for role in (SEARCH, SEEDS):
            name = study_name(record.dataset, model, record.digest, role)
            if name not in existing:
                continue
            summary = summarize(store.load(name))
            rows.append({
                "model": model,
                "study": "search" if role == SEARCH else "seed reruns",
                "slots": summary.budget,
                "done": summary.done,
                "diverged": summary.diverged,
                "running": summary.running,
                "waiting": summary.waiting,
                "failed": summary.failed,
                f"best {summary.score.metric}": summary.best_score,
                "best slot": summary.best.user_attrs.get("slot") if summary.best is not None else None,
                **({"last error": summary.errors[-1][:100]} if summary.errors else {}),
            })
    return record, rows
