"""`bench run`: every model's study on one dataset under one protocol and one budget.

The run folder holds `run.json` (protocol, models, budget, storage), the default storage
(`optuna.journal`) and the trial folders (`MODEL/PROTOCOL/slot-NNNN`). Rerunning the same
command resumes: lost trials are re-queued, finished slots are never trained again, and a larger
budget only adds slots. `--jobs N` starts N `bench worker` processes that share the storage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.files import atomic_write_json, read_json
from bench.studies.protocol import RunProtocol
from bench.studies.storage import check_storage_url, default_storage_url, open_storage
from bench.scores import score_for
from bench.studies.study import (SEARCH, SEEDS, STALE, enqueue_search, enqueue_seeds, open_study, retire_stale_reruns,
                                 summarize, trial_score)
from bench.studies.worker import Finished, reclaim_lost_trials, run_worker
from bench.trial_folder import now

RUN_FORMAT = "bench-run/1"
POLL_SECONDS = 2.0


@dataclass
class RunRequest:
    models: list
    protocol: RunProtocol
    budget: int
    out: Path
    seeds: int = 0
    jobs: int = DEFAULTS["jobs"]
    storage: Optional[str] = None
    device: str = DEFAULTS["device"]
    data_root: Optional[Path] = None
    inception_weights: Optional[Path] = None
    force: bool = False
    progress: bool = True


@dataclass
class RunResult:
    storage: str
    summaries: dict = field(default_factory=dict)  # (model, role) -> SlotSummary


def parse_models(text: str, image_shape=None) -> list[str]:
    """Registered names for `all`, NAME[,NAME...] or FILE.py:Class; with `image_shape`, every
    model is also built once and its output shape checked, so a broken plug-in fails here."""
    from bench.models import check_model_output, get_model_class, model_names

    specs = model_names() if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not specs:
        raise BenchError("no model given; use --model all or a comma-separated list of names")
    names = []
    for spec in specs:
        cls = get_model_class(spec)  # one-line error for an unknown name or a broken plug-in
        if image_shape is not None and cls.__dict__.get("source"):
            check_model_output(cls, image_shape)
        names.append(cls.name)
    return list(dict.fromkeys(names))


def run_study(request: RunRequest) -> RunResult:
    run_file = Path(request.out) / "run.json"
    stored = _read_run_file(run_file)
    url = check_storage_url(request.storage) if request.storage else (
        stored.get("storage") if stored else default_storage_url(request.out))
    if stored and not request.force:
        _refuse_changes(stored, request, url, run_file)
    storage = open_storage(url)

    studies = {}
    for model in request.models:
        study = open_study(storage, request.protocol, model, SEARCH)
        enqueue_search(study, request.protocol, model, request.budget)
        _requeue_failed(study)
        studies[model] = study
    # Models and budgets accumulate: a later, narrower command must not hide earlier studies.
    budgets = {**(stored or {}).get("budgets", {}), **{m: request.budget for m in request.models}}
    atomic_write_json(run_file, {"format": RUN_FORMAT, "protocol": request.protocol.to_dict(), "storage": url,
                                 "models": list(budgets), "budgets": budgets, "seeds": request.seeds,
                                 "updated": now()})
    _drive(request, url, [s.study_name for s in studies.values()])

    result = RunResult(url, {(m, SEARCH): summarize(s) for m, s in studies.items()})
    if request.seeds:
        if request.progress:
            tqdm.write(f"re-running each model's best configuration with {request.seeds} further seeds "
                       "(--seeds; the paper preset's default is 50, --seeds 0 turns it off)")
        seed_studies = {}
        for model, study in studies.items():
            best = result.summaries[(model, SEARCH)].best  # by the dataset's score: max F1 on triangles
            if best is None:
                continue  # nothing to rerun: no slot has a score
            seed_studies[model] = open_study(storage, request.protocol, model, SEEDS)
            retire_stale_reruns(seed_studies[model], best.user_attrs["slot"])
            enqueue_seeds(seed_studies[model], best, request.seeds)
            _requeue_failed(seed_studies[model])
        _drive(request, url, [s.study_name for s in seed_studies.values()])
        result.summaries.update({(m, SEEDS): summarize(s) for m, s in seed_studies.items()})
    return result


def _read_run_file(path: Path) -> Optional[dict]:
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path} is unreadable ({exc}); it was not written by bench or is damaged") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise BenchError(f"{path} is not a bench run record; choose another --out")
    return data


def _refuse_changes(stored: dict, request: RunRequest, url: str, path: Path) -> None:
    diffs = request.protocol.differences(RunProtocol.from_dict(stored["protocol"], f"the protocol in {path}"))
    if stored.get("storage") != url:
        diffs.append(f"storage: {stored.get('storage')!r} stored, {url!r} asked")
    if diffs:
        raise BenchError(f"{path.parent} holds a run with another protocol ({'; '.join(diffs[:3])}); "
                         "use another --out, repeat the stored settings, or add --force to start studies "
                         "of the new protocol beside the old ones")


def _requeue_failed(study) -> None:
    """Slots whose every trial failed get one more try when the run is started again."""
    from bench.studies.study import _add_waiting
    from optuna.trial import TrialState

    reclaim_lost_trials(study)
    by_slot: dict = {}
    for t in study.get_trials(deepcopy=False):
        by_slot.setdefault(t.user_attrs.get("slot"), []).append(t)
    for trials in by_slot.values():
        if all(t.state == TrialState.FAIL for t in trials) and trials[-1].user_attrs.get("status") != STALE:
            last = trials[-1]
            _add_waiting(study, last.params, last.distributions, last.user_attrs, {"bench:retry_of": last.number})


def _drive(request: RunRequest, url: str, names: list[str]) -> None:
    """Work the studies' queues to the end, in this process or in `--jobs` worker processes."""
    if not names:
        return
    storage = open_storage(url)
    pending = sum(summarize(_load(storage, n)).waiting + summarize(_load(storage, n)).running for n in names)
    if pending == 0:
        return
    report = _Reporter(storage, names, pending, request.progress)
    try:
        if request.jobs == 1:
            run_worker(url, names, request.out, device=request.device, data_root=request.data_root,
                       inception_weights=request.inception_weights, progress=request.progress,
                       on_finished=report.finished)
        else:
            _run_worker_processes(request, url, names, report)
    finally:
        report.close()


def _load(storage, name):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _run_worker_processes(request: RunRequest, url: str, names: list[str], report: "_Reporter") -> None:
    command = [sys.executable, "-m", "bench", "worker", "--storage", url, "--out", str(request.out),
               "--device", request.device, "--no-progress", "--quiet"]
    for name in names:
        command += ["--study", name]
    if request.data_root:
        command += ["--data-root", str(request.data_root)]
    if request.inception_weights:
        command += ["--inception-weights", str(request.inception_weights)]
    # Workers share the cores: N processes with all-core thread pools each would oversubscribe
    # them, and CPU training slows down several-fold (measured: 0.03 -> 0.3 s per 8x8 step).
    threads = max(1, (os.cpu_count() or 1) // request.jobs)
    env = {**os.environ, "BENCH_PARENT_PID": str(os.getpid()), "BENCH_THREADS": str(threads)}
    workers = [subprocess.Popen(command, env=env) for _ in range(request.jobs)]
    try:
        while any(w.poll() is None for w in workers):
            report.poll()
            time.sleep(POLL_SECONDS)
        report.poll()
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
    failed = [w.returncode for w in workers if w.returncode not in (0, None)]
    if failed:
        raise BenchError(f"{len(failed)} of {len(workers)} worker processes exited with an error "
                         f"(codes {failed}); rerun the same command to resume")


class _Reporter:
    """One line per finished trial plus an overall bar with the time left."""

    def __init__(self, storage, names: list[str], pending: int, progress: bool):
        self.storage, self.names = storage, names
        self.bar = tqdm(total=pending, desc="trials", unit="trial", disable=not progress, file=sys.stderr,
                        dynamic_ncols=True, position=0)
        self.seen = self._finished_numbers()
        self.started = time.time()

    def _finished_numbers(self) -> set:
        from optuna.trial import TrialState

        out = set()
        for name in self.names:
            for t in _load(self.storage, name).get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
                if t.user_attrs.get("status"):
                    out.add((name, t.number))
        return out

    def finished(self, item: Finished) -> None:
        best = summarize(_load(self.storage, item.study)).best_score
        best_text = f"{best:.4g}" if best is not None else "-"
        value = f"{item.value:.4g}" if item.value is not None else "-"
        what = f"seed rerun {item.slot}" if item.role == SEEDS else f"trial {item.slot}"
        line = (f"{item.model:10s} {what:14s} {item.status:9s} {item.score_name} {value:>8s}   best {best_text:>8s}   "
                f"{_duration(item.seconds)}" + (f"   {item.error}" if item.error else ""))
        tqdm.write(line)
        self.bar.update(1)

    def poll(self) -> None:
        """Report trials other processes finished since the last look."""
        from optuna.trial import TrialState

        for name in self.names:
            study = _load(self.storage, name)
            meta = study.user_attrs["bench"]
            score = score_for(meta["protocol"]["dataset"])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
                if (name, t.number) in self.seen or not t.user_attrs.get("status"):
                    continue
                self.seen.add((name, t.number))
                seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
                self.finished(Finished(name, meta["model"], meta["role"], t.user_attrs.get("slot"),
                                       t.user_attrs["status"], trial_score(score, t), seconds,
                                       t.user_attrs.get("error"), score.metric))

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
