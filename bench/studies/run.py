"""`bench run`: every model's study on one dataset under one protocol and one budget.

The run folder holds `run.json` (protocol, models, budget, storage), the default storage
(`optuna.journal`) and the trial folders (`MODEL/PROTOCOL/slot-NNNN`). Rerunning the same
command resumes: lost trials are re-queued, finished slots are never trained again, and a larger
budget only adds slots. `--jobs N` starts N `bench worker` processes that share the storage,
placed round-robin over the GPUs of `--device` (bench/studies/placement.py).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from bench.defaults import DEFAULTS
from bench.errors import BenchError
from bench.records.run_folder import RUN_FILE, SEARCH, SEEDS, RunRecord
from bench.records.storage import RUN_RELATIVE, check_storage_url, resolved, stored_form
from bench.records.study_store import StudyStore
from bench.records.trial_folder import TrialFolder
from bench.scores import score_for
from bench.records.protocol import RunProtocol
from bench.studies.study import (enqueue_search, enqueue_seeds, open_study, requeue_failed, retire_stale_reruns,
                                 summarize, trial_score)
from bench.studies.placement import start_workers
from bench.studies.ownership import reclaim_lost_trials
from bench.studies.worker import Finished, train_waiting_trials, trial_dir


@dataclass
class RunRequest:
    models: list
    protocol: RunProtocol
    budget: int
    out: Path
    seeds: int = 0
    jobs: int = DEFAULTS["jobs"]
    pack: object = DEFAULTS["pack"]  # a positive int or "auto" (bench/devices.py pack_size)
    max_retries: int = DEFAULTS["max_retries"]
    checkpoint_every: str = DEFAULTS["checkpoint_every"]
    keep: str = DEFAULTS["keep"]
    log: str = DEFAULTS["log"]
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


def parse_models(text: str, image_shape=None, arch: str = DEFAULTS["arch"]) -> list[str]:
    """Registered names for `all`, NAME[,NAME...] or FILE.py:Class; with `image_shape`, every
    model is also built once and its output shape checked, so a broken plug-in fails here.

    A model named that cannot be built on `arch` is refused; `all` means every model that can, and
    says in one line which it leaves out. Models with networks of their own train under any arch,
    which a line says when the arch is not the study's."""
    from bench.models import check_model_output, get_model_class, model_names
    from bench.models.architectures import check_model_architecture, own_networks, supported_architectures

    everything = text.strip() == "all"
    specs = model_names() if everything else [t.strip() for t in text.split(",") if t.strip()]
    if not specs:
        raise BenchError("no model given; use --model all or a comma-separated list of names")
    names, left_out = [], []
    for spec in specs:
        cls = get_model_class(spec)  # one-line error for an unknown name or a broken plug-in
        if everything and arch not in (supported_architectures(cls) or (arch,)):
            left_out.append(cls.name)
            continue
        check_model_architecture(cls, arch)
        if image_shape is not None and cls.__dict__.get("source"):
            check_model_output(cls, image_shape)
        names.append(cls.name)
    if left_out:
        print(f"bench: --model all on the {arch} architecture leaves out {', '.join(left_out)} (built on "
              "other architectures only; bench list models)", file=sys.stderr)
    own = [n for n in names if own_networks(get_model_class(n))]
    if own and arch != DEFAULTS["arch"]:
        print(f"bench: {', '.join(own)}: networks of their own, the same under every --arch", file=sys.stderr)
    return list(dict.fromkeys(names))


def run_study(request: RunRequest) -> RunResult:
    stored = RunRecord.read(request.out)
    # run.json keeps the default journal run-relative, so that a copied or moved run folder is
    # self-contained; the URL opened is always the resolved one.
    kept = stored_form(check_storage_url(request.storage)) if request.storage else (
        stored.run_relative_storage(request.out) if stored else RUN_RELATIVE)
    url = resolved(kept, request.out)
    if stored and not request.force:
        _refuse_changes(stored, request, url)
    # The stored digest names this protocol's studies, whatever a later version would compute.
    same = stored is not None and not request.protocol.differences(_stored_protocol(stored, request.out))
    digest = stored.digest if same else request.protocol.digest
    store = StudyStore(url)

    studies = {}
    for model in request.models:
        study = open_study(store, request.protocol, model, SEARCH, digest)
        enqueue_search(study, request.protocol, model, request.budget)
        study.announce_seeds(request.seeds)  # workers that follow the run wait for these (bench worker --run)
        reclaim_lost_trials(study)
        requeue_failed(study, request.max_retries)
        studies[model] = study
    # Models and budgets accumulate: a later, narrower command must not hide earlier studies.
    budgets = {**(stored.budgets if stored else {}), **{m: request.budget for m in request.models}}
    RunRecord(protocol=request.protocol.to_dict(), digest=digest, storage=kept, budgets=budgets,
              seeds=request.seeds).write(request.out)
    _warn_damaged_slots(studies.values(), request.out)
    _train_queued(request, store, [s.name for s in studies.values()])

    result = RunResult(url, {(m, SEARCH): summarize(store.load(s.name)) for m, s in studies.items()})
    if request.seeds:
        if request.progress:
            tqdm.write(f"re-running each model's best configuration with {request.seeds} further seeds "
                       "(--seeds; the paper preset's default is 50, --seeds 0 turns it off)")
        seed_studies = {}
        for model in studies:
            best = result.summaries[(model, SEARCH)].best  # by the dataset's score: max F1 on triangles
            if best is None:
                continue  # nothing to rerun: no slot has a score
            seed_studies[model] = open_study(store, request.protocol, model, SEEDS, digest)
            retire_stale_reruns(seed_studies[model], best.user_attrs["slot"])
            enqueue_seeds(seed_studies[model], best, request.seeds)
            reclaim_lost_trials(seed_studies[model])
            requeue_failed(seed_studies[model], request.max_retries)
        _train_queued(request, store, [s.name for s in seed_studies.values()])
        result.summaries.update({(m, SEEDS): summarize(store.load(s.name)) for m, s in seed_studies.items()})
    return result


def _warn_damaged_slots(studies, out: Path) -> None:
    """One line per finished slot whose files were damaged since (a disk error, a hand edit): the
    slot stays finished, as the storage holds its result; what later commands read may fail."""
    for study in studies:
        for slot in study.slots():
            if slot.finished is None:
                continue
            folder = trial_dir(out, study, slot.finished)
            damage = TrialFolder(folder).damage() if folder.is_dir() else None
            if damage:
                print(f"bench: warning: {study.meta.model} slot {slot.slot} ({folder}): {damage}; the slot stays "
                      "finished with the result the storage holds", file=sys.stderr)


def _stored_protocol(stored: RunRecord, run_dir: Path) -> RunProtocol:
    return RunProtocol.from_dict(stored.protocol, f"the protocol in {Path(run_dir) / RUN_FILE}")


def _refuse_changes(stored: RunRecord, request: RunRequest, url: str) -> None:
    diffs = request.protocol.differences(_stored_protocol(stored, request.out))
    if stored.storage_url(request.out) != url:
        diffs.append(f"storage: {stored.storage_url(request.out)!r} stored, {url!r} asked")
    if diffs:
        raise BenchError(f"{request.out} holds a run with another protocol ({'; '.join(diffs[:3])}); "
                         "use another --out, repeat the stored settings, or add --force to start studies "
                         "of the new protocol beside the old ones")


def _train_queued(request: RunRequest, store: StudyStore, names: list[str]) -> None:
    """Train the studies' queues to the end, in this process or in `--jobs` worker processes."""
    if not names:
        return
    summaries = [summarize(store.load(n)) for n in names]
    pending = sum(s.waiting + s.running for s in summaries)
    if pending == 0:
        return
    report = _Reporter(store, names, pending, request.progress)
    try:
        if request.jobs == 1:
            train_waiting_trials(store.url, names, request.out, device=request.device, data_root=request.data_root,
                                 inception_weights=request.inception_weights, progress=request.progress,
                                 pack=request.pack, max_retries=request.max_retries,
                                 checkpoint_every=request.checkpoint_every, keep=request.keep, log=request.log,
                                 on_finished=report.finished)
        else:
            start_workers(store.url, names, request.out, request.jobs, request.device, data_root=request.data_root,
                          inception_weights=request.inception_weights, poll=report.poll, pack=request.pack,
                          max_retries=request.max_retries, checkpoint_every=request.checkpoint_every,
                          keep=request.keep, log=request.log)
    finally:
        report.close()


class _Reporter:
    """One line per finished trial plus an overall bar with the time left."""

    def __init__(self, store: StudyStore, names: list[str], pending: int, progress: bool):
        self.store, self.names = store, names
        self.counts = {name: store.ended_count(name) for name in names}
        self.bar = tqdm(total=pending, desc="trials", unit="trial", disable=not progress, file=sys.stderr,
                        dynamic_ncols=True, position=0)
        self.seen = {(study.name, t.number) for study, t in self._ended()}
        self.started = time.time()

    def _ended(self, names=None):
        """(study, trial) of every trial a worker has finished or failed."""
        for name in names or self.names:
            study = self.store.load(name)
            for t in study.trials("complete", "diverged", "failed"):
                if t.user_attrs.get("status"):
                    yield study, t

    def finished(self, item: Finished, study=None) -> None:
        best = summarize(study or self.store.load(item.study)).best_score
        best_text = f"{best:.4g}" if best is not None else "-"
        value = f"{item.value:.4g}" if item.value is not None else "-"
        what = f"seed rerun {item.slot}" if item.role == SEEDS else f"trial {item.slot}"
        line = (f"{item.model:10s} {what:14s} {item.status:9s} {item.score_name} {value:>8s}   best {best_text:>8s}   "
                f"{_duration(item.seconds)}" + (f"   {item.error}" if item.error else "")
                + ("   (queued again)" if item.retried else ""))
        tqdm.write(line)
        self.bar.update(1)

    def poll(self) -> None:
        """Report trials other processes finished since the last look: one COUNT per study, and
        its trials read only where the count moved (the storage is polled every few seconds)."""
        try:
            counts = {name: self.store.ended_count(name) for name in self.names}
        except Exception:  # the database is restarting: the workers wait for it, and so does this
            return
        changed = [name for name in self.names if counts[name] != self.counts.get(name)]
        self.counts.update(counts)
        for study, t in list(self._ended(changed)) if changed else []:
            if (study.name, t.number) in self.seen:
                continue
            self.seen.add((study.name, t.number))
            score = score_for(study.meta.dataset)
            self.finished(Finished(study.name, study.meta.model, study.meta.role, t.user_attrs.get("slot"),
                                   t.user_attrs["status"], trial_score(score, t), study.seconds(t),
                                   t.user_attrs.get("error"), score.metric), study)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
