"""What every dataset hands the rest of the suite: uint8 image tensors and the study's schedule."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

# Splits a dataset can be asked for. `reference` is the FID reference set of PROTOCOL §3
# (e.g. the first 10k test images); `holdout` exists only where the protocol defines one.
SPLITS = ("train", "reference", "holdout")


@dataclass(frozen=True)
class ImageSplit:
    """Images as uint8 [N, C, H, W] in 0..255 (dark = 0) and integer labels [N] or None."""

    images: torch.Tensor
    labels: Optional[torch.Tensor]
    description: str  # e.g. "mnist test, first 10000": goes into every metric's protocol

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSplit wants uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError("labels and images differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int) -> "ImageSplit":
        """The first n images (PROTOCOL §3 takes the first 10k of a split, not a random subset)."""
        labels = None if self.labels is None else self.labels[:n]
        desc = self.description if n >= len(self) else f"{self.description}, first {n}"
        return ImageSplit(self.images[:n], labels, desc)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's shape and the study's training schedule on it (PROTOCOL §3)."""

    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    steps: int  # training length in D steps
    eval_every: int  # D steps between evaluation points
    splits: tuple[str, ...] = ("train", "reference")
    reference_size: int = 10_000
    note: str = ""
    score: str = "fid"  # the metric trials are ranked by (bench/scores.py): FID, or triangle F1


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its info plus a loader `load(split, root) -> ImageSplit`."""

    info: DatasetInfo
    loader: Callable[[str, Path], ImageSplit] = field(repr=False)

    @property
    def name(self) -> str:
        return self.info.name

    def load(self, split: str, root: Optional[Path] = None) -> ImageSplit:
        from bench.errors import BenchError

        if split not in self.info.splits:
            raise BenchError(f"dataset {self.name} has no split {split!r}; it has: {', '.join(self.info.splits)}")
        return self.loader(split, Path(root) if root is not None else default_data_root())


def default_data_root() -> Path:
    """`$BENCH_DATA`, else `~/.cache/bench/data`."""
    env = os.environ.get("BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench" / "data"
