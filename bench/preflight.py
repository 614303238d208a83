"""What every trial of a command shares, checked before anything is written.

A run of 1,300 trials that all fail on the same missing file used to fail 1,300 times and leave
their folders behind; these checks make it one line and exit 2, with nothing created. Each check
asks the same code the trials use (the dataset's loader, the device list, the Inception weights
resolver), so what passes here is what a trial finds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from bench.errors import BenchError


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """`out` is, or can be made, a folder we can write: probed in the nearest folder that exists
    (a file made and removed there), so that a read-only mount is refused even for root."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"{flag} {out} is a file; give a folder (it is created if absent)")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BenchError(f"{flag} {out} cannot be created: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bench-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchError(f"{flag} {out} cannot be written: {existing} refuses new files ({exc.strerror or exc}); "
                         "give a folder you can write") from None


def check_out_file(out: Path, flag: str = "--out") -> None:
    """A file to be written at the end of a long command (`bench score`): its folder is checked first."""
    out = Path(out)
    if out.is_dir():
        raise BenchError(f"{flag} {out} is a folder; give the file to write")
    check_out_folder(out.parent if str(out.parent) else Path("."), flag=f"{flag} {out}: its folder")


def check_dataset(dataset: str, data_root: Optional[Path], *, batch_size: int, eval_samples: int,
                  nll_n: Optional[int] = None) -> None:
    """Both splits load, with the dataset's image shape, and enough images: a batch to train on,
    `eval_samples` (and `nll_n`) to evaluate against."""
    from bench.data import get_dataset

    data = get_dataset(dataset)
    check_splits(dataset, data.info.image_shape, data.load("train", data_root), data.load("reference", data_root),
                 batch_size=batch_size, eval_samples=eval_samples, nll_n=nll_n)


def check_splits(dataset: str, image_shape, train, reference, *, batch_size: int, eval_samples: int,
                 nll_n: Optional[int] = None) -> None:
    """The loaded splits fit the trial: the dataset's image shape, a batch, enough reference images
    (also asked by every trial, which loads the splits itself)."""
    if len(reference) < eval_samples:
        raise BenchError(f"--eval-samples {eval_samples} exceeds the {len(reference)} reference images of {dataset}")
    for split, images, needed, why in (("train", train.images, batch_size, "one training batch"),
                                       ("reference", reference.images, nll_n or 0, "the NLL's test images")):
        shape = tuple(images.shape[1:])
        if shape != tuple(image_shape):
            raise BenchError(f"{dataset} {split} split holds images of shape {shape}, not the dataset's "
                             f"{tuple(image_shape)}; every image of a dataset must have one size")
        if len(images) < needed:
            raise BenchError(f"{dataset} {split} split has {len(images)} images; {why} need {needed}")


def check_trial_inputs(dataset: str, *, batch_size: int, eval_samples: int, nll_n: Optional[int], extractor: str,
                       out: Path, device: str, data_root: Optional[Path] = None,
                       inception_weights: Optional[Path] = None) -> None:
    """All of the above for a command that trains: device, writable `out`, dataset, Inception."""
    from bench.devices import device_list

    device_list(device)
    check_out_folder(out)
    check_dataset(dataset, data_root, batch_size=batch_size, eval_samples=eval_samples, nll_n=nll_n)
    if extractor == "inception":
        from bench.metrics.feature_extractor_inceptionv3 import check_inception_weights

        check_inception_weights(inception_weights)
