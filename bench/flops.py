"""Compute a training step costs, counted in floating-point operations, so budgets can be matched
and shown (DESIGN.md, "Compute is matched and shown").

The count runs the model's real `train_step` on the meta device: every aten operation is seen
(forward, backward, the double backward of gradient penalties, BEGAN's extra passes) and nothing
is computed or allocated. Optimiser updates are elementwise and not counted.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.models.architectures import DEFAULT_ARCH


class _FlopCount(TorchDispatchMode):
    """torch's own per-operator FLOP formulas (those of FlopCounterMode), without its module
    tracking, which cannot follow `torch.autograd.grad` (WGAN-GP's and DRAGAN's penalties)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


SCHEDULE_WINDOW = 840  # steps over which a G/D schedule is averaged: a multiple of every period up to 8


@lru_cache(maxsize=256)
def _step_flops(model: str, image_shape: tuple, hparams: tuple, batch_size: int, arch: str, step: int) -> int:
    instance = _meta_model(model, image_shape, hparams, arch)
    instance.steps = step  # what this step updates follows the model's own schedule
    real = torch.empty(batch_size, *image_shape, device="meta")
    with _FlopCount() as counter:
        instance.train_step(real, None)
    return counter.total


def _meta_model(model: str, image_shape: tuple, hparams: tuple, arch: str):
    from bench.models import build_model

    with torch.device("meta"):
        return build_model(model, image_shape, dict(hparams), "meta", arch)


def flops_per_step(model: str, image_shape, hparams: dict, batch_size: int = 64, arch: str = DEFAULT_ARCH) -> float:
    """Average FLOPs of one training step over the model's own G/D schedule
    (`generator_step_due`: G every `disc_iters` steps for GANs, every step for the others)."""
    key = (model, tuple(image_shape), tuple(sorted(hparams.items())), batch_size, arch)
    schedule = _meta_model(model, key[1], key[2], arch)
    due = [schedule.generator_step_due(s) for s in range(1, SCHEDULE_WINDOW + 1)]
    with_g = _step_flops(*key, step=0)  # step 0 always updates G
    if all(due):
        return float(with_g)
    d_only = _step_flops(*key, step=1 + due.index(False))
    # Exact integers until the one division: the same number the ratio 1/disc_iters gives.
    return d_only + (with_g - d_only) * sum(due) / SCHEDULE_WINDOW
