"""`bench rank`: train a new model under the exact protocol of an existing run, then rank it.

The new model joins the run folder as one more study (same protocol, same storage, same budget
rules), so it also appears in `bench report DIR`. The ranking is the study's budget-k view, by the
dataset's score (bench/scores.py: minimum FID; maximum triangle F1 on triangles): each model's
bootstrap mean of the best score among k = BUDGET trials, its 95% interval, and the probability
that the new model's budget-k best beats each other model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.files import atomic_write_bytes
from bench.reports import render
from bench.reports.bootstrap import DRAWS, min_draws
from bench.reports.results import find_runs, finished, load_results, open_run
from bench.reports.tables import beat_probability, search_trials, trial_scores
from bench.scores import score_for


@dataclass
class Ranking:
    model: str
    budget: int
    table: pd.DataFrame
    notes: list
    written: list


def rank_model(model_spec: str, dataset: str, budget: int, against: Path, *, jobs: int = DEFAULTS["jobs"], device: str = DEFAULTS["device"],
               data_root: Optional[Path] = None, inception_weights: Optional[Path] = None, progress: bool = True,
               draws: int = DRAWS, seed: int = 0) -> Ranking:
    from bench.data import get_dataset
    from bench.studies.protocol import RunProtocol
    from bench.studies.run import RunRequest, parse_models, run_study

    if budget < 1:
        raise BenchError(f"--budget must be a positive integer, got {budget}")
    info = get_dataset(dataset).info
    run_dir = _run_for(Path(against), info.name)
    record, _ = open_run(run_dir)
    protocol = RunProtocol.from_dict(record["protocol"])
    get_dataset(info.name).load("train", data_root)  # refuse now, not in every trial, when the data is absent
    name = parse_models(model_spec, info.image_shape)[0]
    _check_search_space(name, protocol.search)
    others = _finished_models(run_dir, protocol.digest, exclude=name)
    if not others:
        raise BenchError(f"{run_dir} has no finished trials of any other model under protocol {protocol.digest}; "
                         "there is nothing to rank against yet")

    run_study(RunRequest(models=[name], protocol=protocol, budget=budget, out=run_dir, jobs=jobs,
                         storage=record["storage"], device=device, data_root=data_root,
                         inception_weights=inception_weights, progress=progress))
    table, notes = ranking_table(load_results(run_dir), name, budget, protocol.digest, draws=draws, seed=seed)
    written = _write(run_dir / "rank", name, budget, table, notes)
    return Ranking(name, budget, table, notes, written)


def ranking_table(results: pd.DataFrame, model: str, budget: int, protocol_id: str, draws: int = DRAWS,
                  seed: int = 0) -> tuple[pd.DataFrame, list]:
    """Every model of the protocol at budget k: mean, 95% interval, P(model beats it)."""
    trials = search_trials(results)
    trials = trials[(trials["protocol_id"] == protocol_id) & finished(trials["status"])]
    if trials.empty or model not in set(trials["model"]):
        raise BenchError(f"{model} has no finished trial under protocol {protocol_id}; see `bench status`")
    score = score_for(trials["dataset"].iloc[0])
    best, notes, rows = {}, [], []
    for name, group in trials.groupby("model", sort=False):
        keys = score.key(trial_scores(group, score))
        best[name] = min_draws(keys, budget, draws=draws, seed=seed, model=name)[:, budget - 1]
        if len(keys) < budget:
            notes.append(f"{name} has {len(keys)} finished trials; its budget-{budget} best draws with "
                         "replacement from those")
    for name, keys in best.items():
        values = score.unkey(keys[np.isfinite(keys)])
        lo, hi = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
        rows.append({"model": name, "new": name == model, "trials": int((trials["model"] == name).sum()),
                     "score": score.metric, "mean": values.mean() if len(values) else np.nan, "lo": lo, "hi": hi,
                     "no_score": 1 - len(values) / len(keys),
                     f"p_{model}_beats": np.nan if name == model else beat_probability(best[model], keys)})
    table = pd.DataFrame(rows)
    table = table.iloc[np.argsort(score.key(table["mean"].to_numpy()), kind="stable")].reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table, notes


def _run_for(path: Path, dataset: str) -> Path:
    runs = find_runs(path)
    datasets = {}
    for run in runs:
        record, _ = open_run(run)
        datasets[run] = record["protocol"]["dataset"]
    matching = [run for run, name in datasets.items() if name == dataset]
    if not matching:
        raise BenchError(f"{path} holds no run on {dataset} (it holds: {', '.join(sorted(set(datasets.values())))}); "
                         "a model is ranked only against a run on the same dataset")
    return matching[0]


def _check_search_space(name: str, search: str) -> None:
    from bench.models import get_model_class
    from bench.studies.search import distributions

    try:
        distributions(get_model_class(name).search_space, search)
    except (ValueError, TypeError, KeyError) as exc:
        raise BenchError(f"{name}'s search space cannot follow the run's {search!r} search: {exc}") from None


def _finished_models(run_dir: Path, protocol_id: str, exclude: str) -> list[str]:
    results = load_results(run_dir)
    if results.empty:
        return []
    trials = results[(results["protocol_id"] == protocol_id) & (results["role"] == "search")
                     & finished(results["status"]) & (results["model"] != exclude)]
    return sorted(set(trials["model"]))


def _write(folder: Path, model: str, budget: int, table: pd.DataFrame, notes: list) -> list[Path]:
    stem = folder / f"{model}-budget{budget}"
    text = f"# Ranking of {model} at budget {budget}\n\n{render.markdown(table)}\n" + "".join(f"\n- {n}" for n in notes)
    return [atomic_write_bytes(stem.with_suffix(".csv"), table.to_csv(index=False).encode()),
            atomic_write_bytes(stem.with_suffix(".md"), (text + "\n").encode())]
