"""mnist, fashion_mnist, cifar10 and celeba, in torchvision's directory layouts under the data root.

The files are read here, not through torchvision's dataset classes: those insist on every file of
the dataset (MNIST wants all four, CIFAR-10 md5-checks all six batches) while the suite must serve
one split from a root that holds only that split's files, e.g. ../shared/data with the MNIST test
files alone. torchvision is imported only to download, which puts the files where they are read.
Importing it also costs seconds, which `bench --help` should not pay.

Set $BENCH_OFFLINE=1 to never try a download (clusters without network, tests).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from bench.data.base import DatasetInfo, ImageSplit
from bench.data.registry import register_dataset
from bench.errors import BenchError
from bench.files import atomic_write, is_writable_dir

REFERENCE_SIZE = 10_000


def _info(name, shape, steps, eval_every, note) -> DatasetInfo:
    return DatasetInfo(name, shape, steps, eval_every, ("train", "reference"), REFERENCE_SIZE, note)


# ---------------------------------------------------------------------------------------------
# Missing files: one download attempt, then one line that says where to put what.


def _download(fetch: Callable[[], object], created_under: Path) -> str:
    """Run a torchvision download with its chatter swallowed; "" on success, else a one-line reason.

    If the attempt created `created_under` and left no file in it, the empty folders go again.
    """
    if os.environ.get("BENCH_OFFLINE", "") not in ("", "0"):
        return "downloads are disabled by $BENCH_OFFLINE"
    existed = created_under.exists()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            fetch()
        return ""
    except Exception as e:  # network, permissions, quota, corrupt archive: all end the same way
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if not existed and created_under.is_dir():
            for d in sorted((p for p in created_under.rglob("*") if p.is_dir()), reverse=True) + [created_under]:
                with contextlib.suppress(OSError):
                    d.rmdir()  # fails, as wanted, on anything not empty
        return f"download failed: {lines[-1] if lines else type(e).__name__}"


def _missing(name: str, split: str, searched: Sequence[Path], expected: Sequence[str], reason: str) -> BenchError:
    where = str(searched[0]) + (f" (also searched {', '.join(map(str, searched[1:]))})" if len(searched) > 1 else "")
    return BenchError(f"{name} {split} split not found: expected {', '.join(expected)} in {where}"
                      + (f"; {reason}" if reason else ""))


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files, gzipped or not.

_IDX = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "reference": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format) as a numpy array; gzip is recognised by its magic bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise BenchError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise BenchError(f"{path} is truncated: {body.size} bytes for shape {tuple(dims)}")
    return body.reshape(tuple(int(d) for d in dims))


def _find(dirs: Sequence[Path], stem: str) -> Optional[Path]:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def _idx_loader(name: str, torchvision_class: str, dirs: Callable[[Path], list[Path]]):
    def load(split: str, root: Path) -> ImageSplit:
        images_stem, labels_stem = _IDX[split]
        searched = dirs(root)
        found = [_find(searched, images_stem), _find(searched, labels_stem)]
        if None in found:
            def fetch():
                import torchvision.datasets as tvd

                getattr(tvd, torchvision_class)(str(root), train=split == "train", download=True)

            reason = _download(fetch, root / torchvision_class)
            found = [_find(searched, images_stem), _find(searched, labels_stem)]
            if None in found:
                raise _missing(name, split, searched, [f"{images_stem}[.gz]", f"{labels_stem}[.gz]"], reason)
        images, labels = (read_idx(p) for p in found)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
            raise BenchError(f"{found[0]}: unexpected shape {images.shape} (labels {labels.shape})")
        if split == "reference":
            images, labels = images[:REFERENCE_SIZE], labels[:REFERENCE_SIZE]
        desc = f"{name} {'train' if split == 'train' else f'test, first {REFERENCE_SIZE}'}"
        return ImageSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), desc)

    return load


register_dataset(_info("mnist", (1, 28, 28), 15_625, 3_906, "MNIST; reference = first 10k of test"))(
    # The files directly in the root or in root/mnist are accepted too, so that a folder holding
    # just the IDX files (../shared/data/mnist, or its parent) works as a data root.
    _idx_loader("mnist", "MNIST", lambda r: [r / "MNIST" / "raw", r / "mnist", r])
)
register_dataset(_info("fashion_mnist", (1, 28, 28), 15_625, 3_906, "Fashion-MNIST; reference = first 10k of test"))(
    # Never the bare root: Fashion-MNIST's files have MNIST's names.
    _idx_loader("fashion_mnist", "FashionMNIST", lambda r: [r / "FashionMNIST" / "raw", r / "fashion_mnist", r / "fashion-mnist"])
)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: the python pickle batches.

_CIFAR = {"train": [f"data_batch_{i}" for i in range(1, 6)], "reference": ["test_batch"]}


@register_dataset(_info("cifar10", (3, 32, 32), 78_125, 3_906, "CIFAR-10; reference = the 10k test set"))
def load_cifar10(split: str, root: Path) -> ImageSplit:
    searched = [root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"]
    names = _CIFAR[split]

    def locate() -> Optional[Path]:
        return next((d for d in searched if all((d / n).is_file() for n in names)), None)

    folder = locate()
    if folder is None:
        def fetch():
            import torchvision.datasets as tvd

            tvd.CIFAR10(str(root), train=split == "train", download=True)

        reason = _download(fetch, root / "cifar-10-batches-py")
        folder = locate()
        if folder is None:
            raise _missing("cifar10", split, searched, names,
                           f"{reason} (a folder of images, such as a JPEG copy of CIFAR-10, loads as folder:PATH)")
    images, labels = [], []
    for n in names:
        with open(folder / n, "rb") as f:
            batch = pickle.load(f, encoding="latin1")  # the official files; torchvision reads them the same way
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels += batch["labels"]
    desc = "cifar10 train" if split == "train" else "cifar10 test"
    return ImageSplit(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), desc)


# ---------------------------------------------------------------------------------------------
# CelebA: aligned JPEGs, centre crop 160, resize to 64.

CELEBA_CROP, CELEBA_SIZE, CELEBA_VERSION = 160, 64, 1
_CELEBA_PARTITION = {"train": 0, "reference": 1}  # list_eval_partition.txt: 0 train, 1 valid, 2 test


def tf1_resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """TF1 `tf.image.resize_images(..., BILINEAR)` with its defaults (align_corners=False and no
    half-pixel centres: source coordinate = destination · in/out), no antialiasing; float32 HWC.

    Chosen because compare_gan v1 ran TF1; torch's `interpolate(bilinear, align_corners=False)`
    uses half-pixel centres, which samples 0.75 px elsewhere at 160 -> 64.
    """
    def axis(n_in: int):
        src = np.arange(size, dtype=np.float32) * np.float32(n_in / size)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    x = image.astype(np.float32)
    y0, y1, wy = axis(x.shape[0])
    x0, x1, wx = axis(x.shape[1])
    top = x[y0][:, x0] + (x[y0][:, x1] - x[y0][:, x0]) * wx[None, :, None]
    bottom = x[y1][:, x0] + (x[y1][:, x1] - x[y1][:, x0]) * wx[None, :, None]
    return top + (bottom - top) * wy[:, None, None]


def celeba_preprocess(image: np.ndarray) -> np.ndarray:
    """HWC uint8 aligned CelebA image -> CHW uint8 64×64 (as tf.image.resize_image_with_crop_or_pad
    then resize_images; rounded to the nearest integer, where the study kept floats)."""
    h, w = image.shape[:2]
    if min(h, w) < CELEBA_CROP:
        raise BenchError(f"a CelebA image is {w}x{h}, smaller than the {CELEBA_CROP}px centre crop")
    top, left = (h - CELEBA_CROP) // 2, (w - CELEBA_CROP) // 2
    crop = image[top : top + CELEBA_CROP, left : left + CELEBA_CROP]
    out = np.rint(tf1_resize_bilinear(crop, CELEBA_SIZE)).clip(0, 255).astype(np.uint8)
    return out.transpose(2, 0, 1)


@register_dataset(_info("celeba", (3, 64, 64), 101_250, 12_656,
                        "CelebA aligned, centre crop 160, TF1 bilinear resize to 64; reference = first 10k of validation"))
def load_celeba(split: str, root: Path) -> ImageSplit:
    folder = root / "celeba"
    cache = folder / f"bench-v{CELEBA_VERSION}-crop{CELEBA_CROP}-{CELEBA_SIZE}px-{split}.npy"
    desc = ("celeba train" if split == "train" else f"celeba validation, first {REFERENCE_SIZE}") + (
        f", centre crop {CELEBA_CROP}, TF1 bilinear resize to {CELEBA_SIZE}")
    if cache.is_file():
        try:
            return ImageSplit(torch.from_numpy(np.load(cache)), None, desc)
        except (OSError, ValueError):
            pass  # rebuilt below
    names = _celeba_names(root, split)
    from PIL import Image

    from bench.data.decode import decode_all

    def read(name: str) -> np.ndarray:
        try:
            with Image.open(folder / "img_align_celeba" / name) as im:
                return celeba_preprocess(np.asarray(im.convert("RGB")))
        except OSError as e:
            raise BenchError(f"cannot read CelebA image {folder / 'img_align_celeba' / name}: {e}") from None

    images = decode_all(names, read, (3, CELEBA_SIZE, CELEBA_SIZE), desc=f"preparing celeba {split}")
    if is_writable_dir(folder):  # slow to rebuild: keep it, atomically
        try:
            atomic_write(cache, lambda f: np.save(f, images))
        except OSError:
            pass
    return ImageSplit(torch.from_numpy(images), None, desc)


def _celeba_names(root: Path, split: str) -> list[str]:
    folder = root / "celeba"
    partition, images = folder / "list_eval_partition.txt", folder / "img_align_celeba"
    if not (partition.is_file() and images.is_dir()):
        def fetch():
            import torchvision.datasets as tvd

            tvd.CelebA(str(root), split="all", target_type=[], download=True)

        reason = _download(fetch, folder)
        if not (partition.is_file() and images.is_dir()):
            raise _missing("celeba", split, [folder], ["list_eval_partition.txt", "img_align_celeba/*.jpg"], reason)
    wanted = _CELEBA_PARTITION[split]
    names = []
    for line in partition.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 2 and int(parts[1]) == wanted:
            names.append(parts[0])
    if split == "reference":
        names = names[:REFERENCE_SIZE]
    if not names:
        raise BenchError(f"{partition} lists no images for the celeba {split} split")
    return names
