"""Several trials trained as packs: the trial loop of `bench run/worker --pack K`.

Each member is a `train._Trial`, with its own folder, model, random stream, batches, monitor and
evaluator, exactly as when it trains alone; only the steps between evaluation points are taken
together, by the model family's `Packer`. At every evaluation point the pack is unpacked into the
members' models and each evaluates, checkpoints and records itself as alone; a member that
diverges leaves the pack at the bulk read that finds it (as alone it stops there), and the
others go on as a smaller pack. Members resume from their own checkpoints, packed or not.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from bench.config import RunOptions, TrialConfig
from bench.numerics import numerics_named
from bench.packing.packers import Packer, packer_for, packs
from bench.records.trial_folder import TrialFolder
from bench.train import CHECK_EVERY, TrialResult, _Trial, finished_result, run_trial


def pack_key(config: TrialConfig, image_shape) -> Optional[tuple]:
    """Trials with equal keys can share a pack; None for a model that trains one at a time."""
    from bench.models import build_model, get_model_class

    cls = get_model_class(config.model)
    if not packs(cls, config.arch):
        return None
    packer = packer_for(cls)
    with torch.device("meta"):
        structure = packer.structure(build_model(config.model, tuple(image_shape), config.hparams, "meta", config.arch))
    return (config.model, config.dataset, config.batch_size, config.numerics, config.arch,
            tuple(config.evaluation_steps()), structure)


def run_trials(configs: Sequence[TrialConfig], options: Sequence[RunOptions], pack: int = 1,
               on_step: Optional[Callable[[int], None]] = None) -> List[TrialResult]:
    """Train `configs` (each into its own `options[i].out`), in packs of up to `pack` where their
    model packs and their structure agrees, one at a time otherwise; results in input order."""
    from bench.data import get_dataset

    results: Dict[int, TrialResult] = {}
    groups: Dict[tuple, List[int]] = {}
    for i, config in enumerate(configs):
        key = pack_key(config, get_dataset(config.dataset).info.image_shape) if pack > 1 else None
        if key is None:
            results[i] = run_trial(config, options[i], on_step)
        else:
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        for start in range(0, len(members), pack):
            chunk = members[start:start + pack]
            for i, result in zip(chunk, _run_pack([configs[i] for i in chunk], [options[i] for i in chunk], on_step)):
                results[i] = result
    return [results[i] for i in range(len(configs))]


def _run_pack(configs, options, on_step) -> List[TrialResult]:
    results: Dict[int, TrialResult] = {}
    trials: Dict[int, _Trial] = {}
    for i, (config, opts) in enumerate(zip(configs, options)):
        folder = TrialFolder(opts.out, opts.lease)
        state = folder.claim(config)
        ended = finished_result(config, folder, state)
        if ended is not None:
            results[i] = ended
        else:
            trials[i] = _Trial(config, opts, folder, state, pack=len(configs))
    with numerics_named(configs[0].numerics).applied():
        for i, trial in list(trials.items()):
            if not trial.begin():
                results[i] = trials.pop(i).diverge(trial.step)
        # Lockstep needs one step: members killed between their checkpoints may stand apart.
        by_step: Dict[int, Dict[int, _Trial]] = {}
        for i, trial in trials.items():
            by_step.setdefault(trial.step, {})[i] = trial
        for group in by_step.values():
            results.update(_train_in_lockstep(group, on_step))
    return [results[i] for i in range(len(configs))]


def _train_in_lockstep(members: Dict[int, _Trial], on_step) -> Dict[int, TrialResult]:
    results: Dict[int, TrialResult] = {}
    first = next(iter(members.values()))
    for trial in members.values():  # a member whose lease is lost stops the pack: its worker re-queues the rest
        on_step = trial.watching_lease(on_step)
    bar = first.progress_bar(f"{first.config.model} ×{len(members)}")
    try:
        for point in first.points_ahead():
            step = first.step
            while members and step < point:
                packer = packer_for(type(first.model))(m.model for m in members.values())
                t0 = time.perf_counter()
                step, bad = train_pack_until(packer, list(members.values()), step, point, on_step,
                                             lambda done: bar.update(done - bar.n))
                packer.unpack()
                share = (time.perf_counter() - t0) / len(members)  # each member's part of the pack's time
                for trial in members.values():
                    trial.train_seconds += share
                for k in bad:
                    i = list(members)[k]
                    results[i] = members[i].diverge(bad[k])
                members = {i: t for k, (i, t) in enumerate(members.items()) if k not in bad}
                if members:
                    first = next(iter(members.values()))
            for i, trial in list(members.items()):
                ended = trial.reach(point)
                if ended is not None:
                    results[i] = ended
                    del members[i]
            if not members:
                break
            first = next(iter(members.values()))
    finally:
        bar.close()
    for i, trial in members.items():
        results[i] = trial.finish("complete")
    return results


def train_pack_until(packer: Packer, members: Sequence[_Trial], start: int, stop: int,
                     on_step: Optional[Callable[[int], None]] = None,
                     progress: Optional[Callable[[int], None]] = None) -> tuple[int, Dict[int, int]]:
    """Take steps start..stop-1 for every member; stop early at a bulk read that finds a member's
    first non-finite loss. Returns (the step reached, {member index: its divergence step})."""
    done = start
    for step in range(start, stop):
        real = torch.stack([m.batches.batch(step) for m in members])
        for member, losses in zip(members, packer.train_step(real, [m.rng for m in members])):
            member.monitor.add(step + 1, losses)
        done = step + 1
        if on_step is not None:
            on_step(done)
        if done % CHECK_EVERY == 0 or done == stop:
            if progress is not None:
                progress(done)
            bad = {k: s for k, s in ((k, m.monitor.flush()) for k, m in enumerate(members)) if s is not None}
            if bad:
                return done, bad
    return done, {}
