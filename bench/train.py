"""One trial: build the model, train it for its budget, evaluate on schedule, checkpoint, resume.

`bench train` calls `run_trial`; so does every trial of a study. The loop knows nothing about
model families: a model's `train_step` does the updates (bench/models/gan_base.py holds the GANs'
step, bench/models/losses.py their losses); the loop feeds batches, watches for divergence,
evaluates, and writes the trial folder (bench/records/trial_folder.py) as it goes, all under the trial's
numerics (bench/numerics.py). A trial stops at its first non-finite loss or sample; its score
(bench/scores.py) is still its best point before that.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

import bench
from bench.config import EVAL_NOISE_SEED, RunOptions, TrialConfig, checkpoint_interval, resolve_device
from bench.data import get_dataset
from bench.data.device_batches import DeviceBatches
from bench.devices import device_name
from bench.errors import BenchError
from bench.files import now
from bench.loss_monitor import LossMonitor
from bench.preflight import check_splits
from bench.progress import shown
from bench.model_metrics.metric_nll import model_is_exact
from bench.models import build_model
from bench.numerics import Numerics, numerics_named
from bench.scores import FID, score_for
from bench.records.evaluation import EvalRecord
from bench.records.sample_grid import grid_image, save_grid
from bench.records.trial_folder import FINISHED, TrialFolder, TrialState
from bench.trial_log import open_log

CHECK_EVERY = 50  # steps between bulk reads of the losses (divergence check, progress)
# The VAEs' importance-weighted bound with the protocol's k = 1000 costs several times a whole
# trial's training if taken at every point. It is taken at the points a study reports: the last,
# and every point that is the trial's best so far (so its best point, whichever it turns out to
# be). Elsewhere k is this; each record's protocol says which k its NLL used (`nll.k`), and
# reports quote only the protocol's k (bench/reports/tables.py).
NLL_K_BETWEEN = 100


@dataclass
class TrialResult:
    config: TrialConfig
    out: Path
    status: str  # complete | diverged
    evaluations: list = field(default_factory=list)
    diverged_at_step: Optional[int] = None
    already_finished: bool = False

    @property
    def score(self) -> Optional[float]:
        """The trial's score (bench/scores.py): its best point, also before a divergence; None
        where no point has one."""
        return score_for(self.config.dataset).of_records(self.evaluations)

    @property
    def best_fid(self) -> Optional[float]:
        return FID.of_records(self.evaluations)


def run_trial(config: TrialConfig, options: RunOptions, on_step: Optional[Callable[[int], None]] = None) -> TrialResult:
    """Train and evaluate one configuration, resuming whatever `options.out` already holds.

    A finished trial returns at once, before any data or network is loaded. `on_step(step)` is
    called after every step (tests use it to interrupt a run).
    """
    folder = TrialFolder(options.out, options.lease)
    state = folder.claim(config)
    ended = finished_result(config, folder, state)
    return ended if ended is not None else _Trial(config, options, folder, state).run(on_step)


def finished_result(config: TrialConfig, folder: TrialFolder, state: Optional[TrialState]) -> Optional[TrialResult]:
    """The result of a trial that has already ended by itself, read from its folder; else None."""
    if state is None or state.status not in FINISHED:
        return None
    return TrialResult(config, folder.path, state.status, folder.evaluations(), state.diverged_at_step,
                       already_finished=True)


def train_until(model, batches: DeviceBatches, rng: torch.Generator, monitor: LossMonitor, start: int, stop: int,
                on_step: Optional[Callable[[int], None]] = None,
                progress: Optional[Callable[[int], None]] = None) -> Optional[int]:
    """Take steps start..stop-1; return the first step with a non-finite loss, or None.

    The hot loop of every trial: one batch gather, one `train_step`, and a bulk read of the
    losses every CHECK_EVERY steps (benchmarks/train_loop_speed.py times exactly this).
    """
    for step in range(start, stop):
        monitor.add(step + 1, model.train_step(batches.batch(step), rng))
        done = step + 1
        if on_step is not None:
            on_step(done)
        if done % CHECK_EVERY == 0 or done == stop:
            bad_step = monitor.flush()
            if progress is not None:
                progress(done)
            if bad_step is not None:
                return bad_step
    return None


class _Trial:
    """A trial being trained: its model, random stream, clock, evaluator and folder."""

    def __init__(self, config: TrialConfig, options: RunOptions, folder: TrialFolder, state: Optional[TrialState],
                 pack: int = 1):
        self.config, self.options, self.folder = config, options, folder
        self.device = torch.device(resolve_device(options.device))
        dataset = get_dataset(config.dataset)
        train_split = dataset.load("train", options.data_root)
        reference = dataset.load("reference", options.data_root)
        check_splits(config.dataset, dataset.info.image_shape, train_split, reference, batch_size=config.batch_size,
                     eval_samples=config.eval_samples, nll_n=config.nll_n)

        torch.manual_seed(config.seed)  # initialisation runs on the CPU: the same weights on every device
        self.model = build_model(config.model, dataset.info.image_shape, config.hparams, self.device, config.arch,
                                 config.sample_steps)
        self.model.to(numerics_named(config.numerics).torch_dtype)  # float32 weights, cast for a float64 reference
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(config.seed)
        self.train_seconds = self.eval_seconds = self.sample_seconds = 0.0
        self.checkpoint_every = checkpoint_interval(options.checkpoint_every)
        self.losses_at_checkpoint, self.last_losses = None, {}  # last_losses: {step: loss means} of the last record
        self.step = self._restore(folder.load_checkpoint(config, self.device))
        self.checkpoint_step, self.checkpoint_time, self.points_since_checkpoint = self.step, time.monotonic(), 0
        self.weights = dict(state.weights or {}) if state else {}
        # Steps this trial was resumed from, so that a report can show it survived a kill.
        self.resumes = list(state.resumes if state else []) + ([self.step] if self.step else [])

        self.flops_per_step = _flops_per_step(config, dataset.info.image_shape)
        self.batches = DeviceBatches(train_split.images.to(self.device), config.batch_size, config.seed)
        self.evaluator = _make_evaluator(config, dataset.name, reference, self.model, self.device, options)
        noise_rng = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        self.eval_z = self.model.sample_noise(config.eval_samples, noise_rng, "cpu").to(self.device, self.model_dtype)
        self.log = open_log(options.log, folder.tensorboard_dir, self.step, config.to_dict())
        self.monitor = LossMonitor(sink=self.log.loss)
        self.run_info = {"device": device_name(self.device), "pack": pack, "host": platform.node(),
                         "owner": folder.lease.token if folder.lease else None, "bench_version": bench.__version__}
        records = folder.evaluations()
        self.recorded = {r["step"] for r in records}
        self.last_fid = records[-1]["metrics"].get("fid") if records else None

    def _restore(self, checkpoint: Optional[dict]) -> int:
        if checkpoint is None:
            return 0
        path = self.folder.checkpoint_path
        try:
            self.model.load_state_dict(checkpoint["model"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise BenchError(f"{path} does not fit {self.config.model}: {str(exc).splitlines()[0]}") from None
        saved_on = checkpoint.get("rng_device", "cpu")
        if saved_on != self.device.type:
            raise BenchError(f"{path} was written by a {saved_on} run; resume it with --device {saved_on} "
                             "(its random stream cannot move between device types)")
        self.rng.set_state(checkpoint["rng"].cpu())
        # The loss means of the record at the checkpoint's step: if that record was lost (a torn
        # last line), the point evaluated again records them as it did, not an empty interval.
        self.losses_at_checkpoint = checkpoint.get("losses")
        self.train_seconds = float(checkpoint["clock"]["train_seconds"])
        self.eval_seconds = float(checkpoint["clock"]["eval_seconds"])
        self.sample_seconds = float(checkpoint["clock"].get("sample_seconds", 0.0))  # older checkpoints: untimed
        return int(checkpoint["step"])

    def run(self, on_step) -> TrialResult:
        """Train and evaluate under the trial's numerics; the caller's flags are back afterwards."""
        with numerics_named(self.config.numerics).applied():
            return self._run(on_step)

    def _run(self, on_step) -> TrialResult:
        if not self.begin():
            return self.diverge(self.step)
        bar = self.progress_bar(self.config.model)

        def progress(done: int) -> None:
            bar.update(done - bar.n)
            bar.set_postfix(_postfix(self.monitor.latest, self.last_fid), refresh=False)

        on_step = self.watching_lease(on_step)
        try:
            for point in self.points_ahead():
                t0 = time.perf_counter()
                bad_step = train_until(self.model, self.batches, self.rng, self.monitor, self.step, point, on_step, progress)
                self.train_seconds += time.perf_counter() - t0
                if bad_step is not None:
                    return self.diverge(bad_step)
                ended = self.reach(point)
                if ended is not None:
                    return ended
                progress(point)
        finally:
            bar.close()
        return self.finish("complete")

    # --- the steps of a trial, shared with packed trials (bench/packing/packed_trials.py) ------

    def begin(self) -> bool:
        """Mark the trial running; False if the point it resumes at has non-finite samples.

        A kill between writing a checkpoint and appending its record leaves the record missing:
        that point is evaluated again here (same weights, same z)."""
        self._write_state("running")
        if self.step in self.config.evaluation_steps() and self.step not in self.recorded:
            return self._evaluate_and_record()
        return True

    def watching_lease(self, on_step):
        """`on_step`, stopping the trial (LeaseLost) at the first step after its worker's
        heartbeat found that another worker owns it now: not one more step is spent on it."""
        lease = self.folder.lease
        if lease is None:
            return on_step

        def step(done: int) -> None:
            if lease.is_lost():
                self.folder.check_lease()
            if on_step is not None:
                on_step(done)
        return step

    def points_ahead(self) -> list:
        return [p for p in self.config.evaluation_steps() if p > self.step]

    def reach(self, point: int) -> Optional[TrialResult]:
        """The trial has trained to evaluation point `point`: evaluate and record it; the result
        if that ends the trial (non-finite samples), else None. A point recorded before (the trial
        resumed from a checkpoint older than its last record) is not evaluated again: training is
        deterministic, so the model is the one that was."""
        self.step = point
        self.points_since_checkpoint += 1
        if point in self.recorded:
            self.monitor.interval_means()  # the next record's loss means start here, as they did
        elif not self._evaluate_and_record():
            return self.diverge(point)
        if point != self.config.steps and self._checkpoint_due():
            self._save_checkpoint()
        self._write_state("running")
        return None

    def _checkpoint_due(self) -> bool:
        kind, every = self.checkpoint_every
        if kind == "points":
            return self.points_since_checkpoint >= every
        return time.monotonic() - self.checkpoint_time >= every

    def _save_checkpoint(self) -> None:
        self.folder.save_checkpoint(self.config, {"model": self.model.state_dict(), "rng": self.rng.get_state(),
                                                  "rng_device": self.device.type, "clock": self._clock(),
                                                  "step": self.step, "losses": self.last_losses.get(self.step)})
        self.checkpoint_step, self.checkpoint_time, self.points_since_checkpoint = self.step, time.monotonic(), 0

    def _keep_weights(self, which: str) -> None:
        self.folder.save_weights(which, self.config, self.step, self.model.kept_weights(self.options.keep != "best"))
        self.weights[which] = self.step

    def diverge(self, step: int) -> TrialResult:
        self.step = step
        return self.finish("diverged", diverged_at_step=step)

    def progress_bar(self, label: str, initial: Optional[int] = None):
        return tqdm(total=self.config.steps, initial=self.step if initial is None else initial,
                    desc=f"{label} on {self.config.dataset}", unit="step", disable=not self.options.progress,
                    file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def _evaluate_and_record(self) -> bool:
        """Score the model at the current step and store it; False if its samples are not finite."""
        self.folder.check_lease()
        t0 = time.perf_counter()
        with shown(self.options.progress):  # PixelCNN's sampling is a long loop of its own
            samples = torch.cat([self.model.generate(z) for z in self.eval_z.split(self.model.generate_batch)])
        finite = bool(torch.isfinite(samples).all())  # waits for the device, so the clock below is the sampling's
        self.sample_seconds += time.perf_counter() - t0  # part of eval_seconds: a diffusion model's is most of it
        if not finite:
            return False
        full_k, last = self.config.nll_k, self.step == self.config.steps
        evaluation = self.evaluator.evaluate(samples, nll_k=min(full_k, NLL_K_BETWEEN))
        best = evaluation.finite and self._best_so_far(evaluation.metrics)  # by the score, which the NLL's k leaves alone
        if evaluation.finite and full_k > NLL_K_BETWEEN and not model_is_exact(self.model) and (last or best):
            evaluation = self.evaluator.recompute(evaluation, "nll", nll_k=full_k)
        if not evaluation.finite:
            return False
        metrics, protocol = evaluation.metrics, self.evaluator.protocol()
        losses = self.monitor.interval_means()
        if not losses and self.losses_at_checkpoint and self.step == self.checkpoint_step:
            losses = self.losses_at_checkpoint  # re-evaluated at the checkpoint's step: no steps were taken
        self.last_losses = {self.step: losses}
        grid = grid_image(samples[:64])
        save_grid(self.folder.sample_grid_path(self.step), grid)
        self.eval_seconds += time.perf_counter() - t0
        self.last_fid = metrics.get("fid")

        config, model = self.config, self.model
        clock = self._clock()
        # The weights later commands use, before the record that points to them: at the best point
        # so far, and at the last point where it is not the best.
        if best:
            self._keep_weights("best")
        elif last:
            self._keep_weights("last")
        if best and last:
            self.weights["last"] = self.step
            self.folder.weights_path("last").unlink(missing_ok=True)  # an older last point's, from before a resume
        self.folder.append_evaluation(EvalRecord(
            step=self.step, g_steps=model.g_steps, images_seen=self.step * config.batch_size, metrics=metrics,
            unavailable=evaluation.unavailable, losses=losses, **clock, model=config.model,
            dataset=config.dataset, seed=config.seed, hparams=config.hparams, config=config.to_dict(),
            protocol=protocol, numerics=self._numerics(), time=now(), **self.run_info))
        self.recorded.add(self.step)
        self.log.evaluation(self.step, metrics, grid)
        return True

    def _best_so_far(self, metrics: dict) -> bool:
        """At least as good as every earlier point of the trial by its score."""
        score = score_for(self.config.dataset)
        earlier = [score.record_key(r) for r in self.folder.evaluations() if r["step"] < self.step]
        return not earlier or score.record_key({"metrics": metrics}) <= min(earlier)

    @property
    def model_dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.model.parameters()), torch.float32)

    def _numerics(self) -> dict:
        """The flags in force while this trial trains (read back, not what was asked for)."""
        return Numerics.current(str(self.model_dtype).replace("torch.", "")).to_dict()

    def _clock(self) -> dict:
        return {"train_seconds": round(self.train_seconds, 3), "eval_seconds": round(self.eval_seconds, 3),
                "sample_seconds": round(self.sample_seconds, 3)}

    def _compute(self) -> dict:
        """What the trial has spent, so that equal budgets can be seen to be equal."""
        return {
            "steps": self.model.steps,
            "g_steps": self.model.g_steps,
            "images_seen": self.model.steps * self.config.batch_size,
            "parameters": self.model.parameter_counts(),
            "flops_per_step": self.flops_per_step,
            "flops": None if self.flops_per_step is None else self.flops_per_step * self.model.steps,
            **self._clock(),
        }

    def _write_state(self, status: str, diverged_at_step: Optional[int] = None) -> TrialState:
        return self.folder.write_state(TrialState(self.config, status, steps_done=self.step, compute=self._compute(),
                                                  resumes=self.resumes, numerics=self._numerics(),
                                                  diverged_at_step=diverged_at_step,
                                                  checkpoint_step=self.checkpoint_step,
                                                  checkpoint_every=self.options.checkpoint_every,
                                                  weights=self.weights or None, **self.run_info))

    def finish(self, status: str, diverged_at_step: Optional[int] = None) -> TrialResult:
        """End the trial. Its optimiser checkpoint goes (unless --keep checkpoints): what later
        commands need is in weights-*.pt, and at 1,300 trials checkpoints would fill a disk."""
        if self.options.keep_checkpoints and self.step != self.checkpoint_step and status == "complete":
            self._save_checkpoint()  # to train on from the end
        self._write_state(status, diverged_at_step)
        self.log.close()
        if not self.options.keep_checkpoints:
            self.folder.drop_checkpoint()
        return TrialResult(self.config, self.folder.path, status, self.folder.evaluations(), diverged_at_step)


def _make_evaluator(config: TrialConfig, dataset_name: str, reference, model, device, options: RunOptions):
    """Every registered metric that applies to this dataset and model (bench/metrics/registry.py);
    explicit models' NLL is on the first nll_n images of the evaluation split (PROTOCOL §5)."""
    from bench.metrics import SampleEvaluator, get_extractor

    extractor = get_extractor(config.extractor, weights=options.inception_weights, device=device)
    return SampleEvaluator(dataset_name, reference.head(config.eval_samples), config.eval_samples, extractor,
                           device=device, cache_dir=options.cache_dir, progress=options.progress, model=model,
                           test_images=reference.head(config.nll_n).images if config.nll_n else None,
                           nll_k=config.nll_k, data_root=options.data_root)


def _flops_per_step(config: TrialConfig, image_shape) -> Optional[float]:
    """Estimated FLOPs of one step (bench/flops.py); None for a model the meta device cannot run."""
    from bench.flops import flops_per_step

    try:
        return flops_per_step(config.model, tuple(image_shape), config.hparams, config.batch_size, config.arch)
    except Exception:
        return None


def _postfix(latest: dict, fid: Optional[float]) -> dict:
    out = {k: f"{v:.3g}" for k, v in latest.items() if k in ("d_loss", "g_loss", "loss")}
    if fid is not None:
        out["fid"] = f"{fid:.2f}"
    return out
