"""Training batches drawn from a dataset that lives on the training device.

The images stay uint8 on the device for the whole trial; a step gathers its batch with one
indexing kernel and converts it to floats in [0,1]. No host round trip, no DataLoader workers.
"""

from __future__ import annotations

import torch

from bench.errors import BenchError


class DeviceBatches:
    """Shuffled epochs without replacement, the last partial batch of an epoch dropped.

    Epoch e's permutation comes from a generator seeded with (seed, e), so the batch of any step
    is a pure function of (seed, step): a resumed trial sees exactly the batches it would have.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int):
        if len(images) < batch_size:
            raise BenchError(f"the training split has {len(images)} images, fewer than one batch of {batch_size}")
        self.images = images
        self.batch_size = batch_size
        self.seed = int(seed)
        self.batches_per_epoch = len(images) // batch_size
        self._epoch = -1
        self._perm = None
        self._generator = torch.Generator(device=images.device)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._generator.manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.images), generator=self._generator, device=self.images.device)
            self._epoch = epoch
        return self._perm

    def batch(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.batches_per_epoch)
        index = self._permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
        return self.images[index].to(torch.get_default_dtype()).div_(255.0)  # float64 under that reference numerics
