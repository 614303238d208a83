"""`bench rank`: train a new model under the exact protocol of an existing run, then rank it.

The new model joins the run folder as one more study (same protocol, same storage, same budget
rules, the run's stored protocol digest), so it also appears in `bench report DIR`. The ranking
itself (bench/reports/rank.py) is the study's budget-k view by the dataset's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.preflight import check_trial_inputs
from bench.records.run_folder import RunRecord, find_runs
from bench.reports.bootstrap import DRAWS
from bench.reports.rank import ranking_table, write_ranking
from bench.reports.results import finished, load_results


@dataclass
class Ranking:
    model: str
    budget: int
    table: pd.DataFrame
    notes: list
    written: list


def rank_model(model_spec: str, dataset: str, budget: int, against: Path, *, jobs: int = DEFAULTS["jobs"],
               pack=DEFAULTS["pack"], max_retries: int = DEFAULTS["max_retries"],
               checkpoint_every: str = DEFAULTS["checkpoint_every"], keep: str = DEFAULTS["keep"],
               log: str = DEFAULTS["log"], arch: str = DEFAULTS["arch"],
               device: str = DEFAULTS["device"],
               data_root: Optional[Path] = None, inception_weights: Optional[Path] = None, progress: bool = True,
               draws: int = DRAWS, seed: int = 0) -> Ranking:
    from bench.data import get_dataset
    from bench.records.protocol import RunProtocol
    from bench.models import get_model_class
    from bench.studies.run import RunRequest, parse_models, run_study

    if budget < 1:
        raise BenchError(f"--budget must be a positive integer, got {budget}")
    info = get_dataset(dataset).info
    run_dir = _run_for(Path(against), info.name, arch)
    record = RunRecord.require(run_dir)
    protocol = RunProtocol.from_dict(record.protocol, f"the protocol in {run_dir}/run.json")
    name = parse_models(model_spec, info.image_shape, protocol.arch)[0]
    # Refused now, not in every trial: absent data, no such device, no Inception weights.
    check_trial_inputs(info.name, batch_size=protocol.batch_size, eval_samples=protocol.eval_samples,
                       nll_n=protocol.nll_n if get_model_class(name).explicit else None,
                       extractor=protocol.extractor, out=run_dir, device=device, data_root=data_root,
                       inception_weights=inception_weights)
    _check_search_space(name, protocol.search)
    others = _finished_models(run_dir, record.digest, exclude=name)
    if not others:
        raise BenchError(f"{run_dir} has no finished trials of any other model under protocol {record.digest}; "
                         "there is nothing to rank against yet")

    run_study(RunRequest(models=[name], protocol=protocol, budget=budget, out=run_dir, jobs=jobs, pack=pack,
                         max_retries=max_retries, checkpoint_every=checkpoint_every,
                         keep=keep, log=log, storage=None, device=device, data_root=data_root,
                         inception_weights=inception_weights, progress=progress))
    table, notes = ranking_table(load_results(run_dir), name, budget, record.digest, draws=draws, seed=seed)
    written = write_ranking(run_dir / "rank", name, budget, table, notes)
    return Ranking(name, budget, table, notes, written)




def _run_for(path: Path, dataset: str, arch: str) -> Path:
    """The run on `dataset` and `arch` among the run folders under `path`: a model is compared
    with models on the same networks."""
    from bench.records.protocol import RunProtocol

    runs = find_runs(path)
    datasets = {}
    for run in runs:
        datasets[run] = RunRecord.require(run).dataset
    matching = [run for run, name in datasets.items() if name == dataset]
    if not matching:
        raise BenchError(f"{path} holds no run on {dataset} (it holds: {', '.join(sorted(set(datasets.values())))}); "
                         "a model is ranked only against a run on the same dataset")
    archs = {run: RunProtocol.from_dict(RunRecord.require(run).protocol).arch for run in matching}
    on_arch = [run for run in matching if archs[run] == arch]
    if not on_arch:
        held = sorted(set(archs.values()))
        raise BenchError(f"{path} holds no run on {dataset} with the {arch} architecture (its runs on {dataset} are "
                         f"on: {', '.join(held)}); a model is ranked against models on the same networks: add "
                         f"--arch {held[0]}")
    return on_arch[0]


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
