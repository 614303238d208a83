"""Packed trials: K configurations of one model trained in lockstep as one batched computation.

The study's networks are far too small for a GPU: one trial keeps it a few percent busy, bound
by kernel launches. A pack stacks K trials' networks (`stack.Stack`: their parameters as
[K, ...] tensors, run through `torch.func.vmap`), steps them with one vectorised Adam
(`stack.PackedAdam`, per-configuration lr and β1) and keeps everything else per configuration:
random streams, batch order, batch-norm statistics, G-step schedule and divergence. A model
family packs when `packers.py` has a `Packer` for it; the trial loop is `packed_trials.py`.
Members are unpacked into their own models at every evaluation point, so each writes the
trial folder it would write alone, and resumes from it, packed or not.
"""

from bench.packing.packers import packer_for, packs

__all__ = ["packer_for", "packs"]
