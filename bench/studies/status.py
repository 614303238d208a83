"""`bench status DIR`: how far each model's study has come."""

from __future__ import annotations

from pathlib import Path

import optuna

from bench.errors import BenchError
from bench.studies.protocol import RunProtocol
from bench.studies.run import _read_run_file
from bench.studies.storage import open_storage
from bench.studies.study import SEARCH, SEEDS, study_name, summarize


def status_rows(run_dir: Path) -> tuple[dict, list[dict]]:
    """(run record, one row per model and role) for the run in `run_dir`."""
    path = Path(run_dir) / "run.json"
    record = _read_run_file(path)
    if record is None:
        raise BenchError(f"{run_dir} holds no bench run (no run.json); start one with `bench run`")
    storage = open_storage(record["storage"])
    protocol = RunProtocol.from_dict(record["protocol"], f"the protocol in {path}")
    existing = set(optuna.get_all_study_names(storage))
    rows = []
    for model in record["models"]:
        for role in (SEARCH, SEEDS):
            name = study_name(protocol, model, role)
            if name not in existing:
                continue
            summary = summarize(optuna.load_study(study_name=name, storage=storage))
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
            })
    return record, rows
