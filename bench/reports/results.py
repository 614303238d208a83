"""`load_results(DIR)`: every stored evaluation point of a run as one tidy pandas table.

One row per evaluation point (compare_gan's habit), carrying the trial's identity and status,
every metric, every hyperparameter (`hp.NAME`), the run protocol (`protocol.FIELD`), the
evaluation protocol (`metric_protocol.A.B`, flattened) and the compute spent (`compute.FIELD`).
A trial that has no evaluation point yet (waiting, failed early, diverged before the first)
still gets one row with an empty step and empty metrics, so that trial counts and divergence
rates can be computed from this table alone. Missing values are NaN, never placeholder strings.

The Optuna storage says which trials count (status, slot); the trial folder holds its records
(reports need the run folder, shared or copied, where trials trained elsewhere: the storage keeps
only each trial's best point, and, for runs stored before, a compact copy of every point). A trial's `objective` is its score (bench/scores.py; `score_name` says which:
max triangle F1 on triangles, min FID elsewhere), recomputed from those records: the value in the
storage is not trusted, since runs stored before diverged trials kept their best point, or before
triangles were scored by F1, hold another number there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.records.evaluation import EvalRecord, flatten
from bench.records.run_folder import RunRecord, find_runs, trial_path
from bench.records.study_store import StoredStudy, StudyStore, stored_records, trial_status
from bench.records.trial_folder import FINISHED, TrialFolder
from bench.scores import score_for

# Columns every table starts from, in this order; metrics and prefixed fields follow.
ID_COLUMNS = ["run", "dataset", "protocol_id", "model", "family", "explicit", "role", "study", "trial",
              "trial_number", "seed", "source_slot", "status", "objective", "score_name", "step", "g_steps",
              "images_seen", "train_seconds", "eval_seconds", "sample_seconds", "device", "standard"]
__all__ = ["ID_COLUMNS", "find_runs", "first_value", "finished", "is_finite", "load_results", "open_run",
           "score_keys", "trial_table"]


def load_results(path) -> pd.DataFrame:
    """All evaluation points of the run(s) in `path`; see the module docstring for the columns."""
    rows = []
    for run_dir in find_runs(Path(path)):
        rows.extend(_run_rows(run_dir, label=run_dir.name))
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    metric_cols = sorted(c for c in frame.columns if c not in ID_COLUMNS and "." not in c)
    prefixed = sorted(c for c in frame.columns if "." in c)
    frame = frame[[c for c in ID_COLUMNS if c in frame.columns] + metric_cols + prefixed]
    for col in ("trial", "trial_number", "seed", "source_slot", "step", "g_steps", "images_seen"):
        if col not in frame:  # no trial has reached an evaluation point (every one failed early)
            frame[col] = np.nan
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame = frame.sort_values(["dataset", "protocol_id", "model", "role", "trial", "step"], kind="stable",
                              na_position="first")
    return frame.reset_index(drop=True)


def open_run(run_dir: Path) -> tuple[RunRecord, StudyStore]:
    """The run record and its studies."""
    record = RunRecord.require(run_dir)
    return record, StudyStore(record.storage_url(run_dir))


def _run_rows(run_dir: Path, label: str) -> list[dict]:
    record, store = open_run(run_dir)
    rows = []
    for study in store.of_dataset(record.dataset):
        meta = study.meta
        protocol = _protocol_fields(meta.protocol)
        base = {
            "run": label, "dataset": meta.dataset, "protocol_id": meta.digest, "model": meta.model,
            **_model_kind(meta), "role": meta.role, "study": study.name,
            **{f"protocol.{k}": v for k, v in protocol.items()},
        }
        for slot in study.slots():
            rows.extend(_trial_rows(run_dir, study, slot.trial, base))
    return rows


def _protocol_fields(stored: dict) -> dict:
    """Every protocol field, those added after the run was stored at their defaults."""
    from bench.records.protocol import RunProtocol

    return RunProtocol.from_dict(stored).to_dict()


def _model_kind(meta) -> dict:
    if meta.family is not None:
        return {"family": meta.family, "explicit": bool(meta.explicit)}
    try:  # studies written before the family was stored with them
        from bench.models import get_model_class

        cls = get_model_class(meta.model)
        return {"family": cls.family, "explicit": bool(cls.explicit)}
    except BenchError:
        return {"family": np.nan, "explicit": np.nan}


def _trial_rows(run_dir: Path, study: StoredStudy, trial, base: dict) -> list[dict]:
    status = trial_status(trial)
    meta = study.meta
    # The run's own folder first: a copied run must read its copy, not the original it names.
    folder = trial_path(run_dir, meta.model, meta.digest, meta.role, trial.user_attrs["slot"])
    if not folder.is_dir() and trial.user_attrs.get("folder"):  # trained into another --out
        folder = Path(trial.user_attrs["folder"])
    local = TrialFolder(folder)
    records = local.evaluations() or stored_records(trial)
    state = _local_state(local)
    compute = trial.user_attrs.get("compute") or (state.compute if state else {}) or {}
    score = score_for(base["dataset"])
    objective = score.stored_value(records) if status in FINISHED else np.nan
    common = {
        **base, "trial": trial.user_attrs.get("slot"), "trial_number": trial.number,
        "seed": trial.user_attrs.get("seed"), "status": status, "objective": objective,
        "score_name": score.metric, "source_slot": trial.user_attrs.get("source_slot", np.nan),
        "device": (state.device if state else None) or np.nan,
        **{f"hp.{k}": v for k, v in trial.params.items()},
        **flatten("compute", compute),
        "compute.resumes": len(state.resumes) if state else 0,
        "folder": str(folder) if folder.is_dir() else np.nan,
    }
    if trial.user_attrs.get("error"):
        common["error"] = trial.user_attrs["error"]
    if not records:
        return [{**common, "step": np.nan}]
    return [{**common, **EvalRecord.from_dict(r).row()} for r in records]


def _local_state(folder: TrialFolder):
    try:
        return folder.read_state()
    except BenchError:
        return None


def score_keys(frame: pd.DataFrame, tiebreak: bool = False) -> pd.Series:
    """Each row's score as a key (lower is better, +inf where the row has none), by its dataset's
    score; with `tiebreak`, the key of the score's tiebreak metric instead (+inf where the row or
    the score has none)."""
    keys = pd.Series(np.inf, index=frame.index)
    for dataset in frame["dataset"].dropna().unique():
        score = score_for(dataset)
        rows = frame["dataset"] == dataset
        column = score.tiebreak if tiebreak else score.metric
        if column is None:
            continue
        values = frame.loc[rows, column].astype(float).to_numpy() if column in frame else np.full(rows.sum(), np.nan)
        keys[rows] = np.where(np.isnan(values), np.inf, values) if tiebreak else score.key(values)
    return keys


def trial_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its objective, status and its best evaluation point by its dataset's
    score (by the score's tiebreak among equals, then the first; a trial with no score keeps its
    best tiebreak's row, or its first)."""
    if results.empty:
        return results
    keys = ["run", "dataset", "protocol_id", "model", "role", "trial"]
    ordered = results.assign(_key=score_keys(results), _tie=score_keys(results, tiebreak=True))
    ordered = ordered.sort_values(["_key", "_tie"], kind="stable")
    best = ordered.groupby(keys, sort=False, dropna=False).head(1).drop(columns=["_key", "_tie"])
    return best.sort_values(keys, kind="stable").reset_index(drop=True)


def finished(status: pd.Series) -> pd.Series:
    return status.isin(FINISHED)


def is_finite(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))


def first_value(frame: pd.DataFrame, column: str) -> Optional[object]:
    values = frame[column].dropna() if column in frame else []
    return values.iloc[0] if len(values) else None
