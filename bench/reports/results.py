"""`load_results(DIR)`: every stored evaluation point of a run as one tidy pandas table.

One row per evaluation point (compare_gan's habit), carrying the trial's identity and status,
every metric, every hyperparameter (`hp.NAME`), the run protocol (`protocol.FIELD`), the
evaluation protocol (`metric_protocol.A.B`, flattened) and the compute spent (`compute.FIELD`).
A trial that has no evaluation point yet (waiting, failed early, diverged before the first)
still gets one row with an empty step and empty metrics, so that trial counts and divergence
rates can be computed from this table alone. Missing values are NaN, never placeholder strings.

The Optuna storage says which trials count (status, slot); a trial folder on this machine adds
its full records, and a trial trained on another machine is read from the copy of its evaluations
kept in the storage. A trial's `objective` is its score (bench/scores.py; `score_name` says which:
max triangle F1 on triangles, min FID elsewhere), recomputed from those records: the value in the
storage is not trusted, since runs stored before diverged trials kept their best point, or before
triangles were scored by F1, hold another number there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.files import read_json, read_jsonl
from bench.scores import FINISHED, score_for

RUN_FILE = "run.json"
# Columns every table starts from, in this order; metrics and prefixed fields follow.
ID_COLUMNS = ["run", "dataset", "protocol_id", "model", "family", "explicit", "role", "study", "trial",
              "trial_number", "seed", "source_slot", "status", "objective", "score_name", "step", "g_steps",
              "images_seen", "train_seconds", "eval_seconds", "device", "standard"]


def find_runs(path: Path) -> list[Path]:
    """The run folders in `path`: itself, or its sub-folders (a folder of several datasets)."""
    path = Path(path)
    if (path / RUN_FILE).is_file():
        return [path]
    runs = sorted(p.parent for p in path.glob(f"*/{RUN_FILE}")) if path.is_dir() else []
    if not runs:
        raise BenchError(f"{path} holds no bench run (no {RUN_FILE} in it or its sub-folders); "
                         "start one with `bench run ... --out DIR`")
    return runs


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
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame = frame.sort_values(["dataset", "protocol_id", "model", "role", "trial", "step"], kind="stable",
                              na_position="first")
    return frame.reset_index(drop=True)


def open_run(run_dir: Path) -> tuple[dict, object]:
    """The run record and its storage; a journal next to the record wins over a stale absolute
    path, so that a run folder can be copied or moved and still be read."""
    from bench.studies.storage import JOURNAL_NAME, open_storage

    try:
        record = read_json(run_dir / RUN_FILE)
    except (OSError, ValueError) as exc:
        raise BenchError(f"{run_dir / RUN_FILE} is unreadable ({exc})") from None
    url = record.get("storage", "")
    if url.startswith("journal:") and not Path(url[len("journal:"):]).exists() and (run_dir / JOURNAL_NAME).exists():
        url = f"journal:{(run_dir / JOURNAL_NAME).resolve()}"
    return record, open_storage(url)


def bench_studies(storage, dataset: str) -> Iterable:
    """The bench studies of `dataset` in `storage` (a shared database may hold other datasets')."""
    import optuna

    for name in sorted(optuna.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        meta = study.user_attrs.get("bench")
        if meta and meta.get("protocol", {}).get("dataset") == dataset:
            yield study, meta


def _run_rows(run_dir: Path, label: str) -> list[dict]:
    from bench.studies.protocol import RunProtocol

    record, storage = open_run(run_dir)
    rows = []
    for study, meta in bench_studies(storage, record["protocol"]["dataset"]):
        protocol = RunProtocol.from_dict(meta["protocol"])
        base = {
            "run": label, "dataset": protocol.dataset, "protocol_id": protocol.digest, "model": meta["model"],
            **_model_kind(meta), "role": meta["role"], "study": study.study_name,
            **{f"protocol.{k}": v for k, v in protocol.to_dict().items()},
        }
        for trial in _slot_trials(study):
            rows.extend(_trial_rows(run_dir, study, trial, base))
    return rows


def _model_kind(meta: dict) -> dict:
    if "family" in meta:
        return {"family": meta["family"], "explicit": bool(meta.get("explicit", False))}
    try:  # studies written before the family was stored with them
        from bench.models import get_model_class

        cls = get_model_class(meta["model"])
        return {"family": cls.family, "explicit": bool(cls.explicit)}
    except BenchError:
        return {"family": np.nan, "explicit": np.nan}


def _slot_trials(study) -> list:
    """One trial per slot: the completed one if any, else the latest attempt."""
    from optuna.trial import TrialState

    by_slot: dict = {}
    for t in study.get_trials(deepcopy=False):
        by_slot.setdefault(t.user_attrs.get("slot"), []).append(t)
    chosen = []
    for slot in sorted(s for s in by_slot if s is not None):
        trials = by_slot[slot]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        chosen.append(complete[0] if complete else trials[-1])
    return chosen


def _status(trial) -> str:
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return trial.user_attrs.get("status", "complete")
    if trial.state == TrialState.FAIL and trial.user_attrs.get("status") == "stale":
        return "stale"  # a seed re-run retired before it ran, when another trial became the best
    return {TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(trial.state, "failed")


def _trial_rows(run_dir: Path, study, trial, base: dict) -> list[dict]:
    from bench.studies.worker import trial_dir

    status = _status(trial)
    folder = Path(trial.user_attrs.get("folder") or trial_dir(run_dir, study, trial))
    if not folder.is_dir():  # the run folder was moved: look below it
        folder = trial_dir(run_dir, study, trial)
    records = _local_records(folder) or trial.user_attrs.get("evaluations", [])
    state = _local_state(folder)
    compute = trial.user_attrs.get("compute") or state.get("compute") or {}
    score = score_for(base["dataset"])
    objective = score.stored_value(records) if status in FINISHED else np.nan
    common = {
        **base, "trial": trial.user_attrs.get("slot"), "trial_number": trial.number,
        "seed": trial.user_attrs.get("seed"), "status": status, "objective": objective,
        "score_name": score.metric, "source_slot": trial.user_attrs.get("source_slot", np.nan),
        "device": state.get("device", np.nan),
        **{f"hp.{k}": v for k, v in trial.params.items()},
        **_flatten("compute", compute),
        "compute.resumes": len(state.get("resumes", [])),
        "folder": str(folder) if folder.is_dir() else np.nan,
    }
    if trial.user_attrs.get("error"):
        common["error"] = trial.user_attrs["error"]
    if not records:
        return [{**common, "step": np.nan}]
    return [{**common, **_record_fields(r)} for r in records]


def _record_fields(record: dict) -> dict:
    out = {"step": record["step"]}
    for key in ("g_steps", "images_seen", "train_seconds", "eval_seconds"):
        if key in record:
            out[key] = record[key]
    for name, value in record.get("metrics", {}).items():
        out[name] = np.nan if value is None else value
    for name, value in (record.get("losses") or {}).items():
        out[f"loss.{name}"] = value
    protocol = record.get("protocol")
    if protocol:
        out["standard"] = bool(protocol.get("standard", True))
        out.update(_flatten("metric_protocol", protocol))
    if record.get("device"):
        out["device"] = record["device"]
    return out


def _flatten(prefix: str, value) -> dict:
    """Nested dicts become dotted columns; lists become JSON text (a cell holds one value)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}", inner))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value)}
    return {prefix: np.nan if value is None else value}


def _local_records(folder: Path) -> list[dict]:
    path = folder / "evals.jsonl"
    return list(read_jsonl(path)) if path.is_file() else []


def _local_state(folder: Path) -> dict:
    path = folder / "trial.json"
    try:
        return read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


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
