"""`folder:PATH`: any directory of images as a dataset.

Layouts:
- `PATH/train/...` and `PATH/test/...` both present: "train" = train/, "reference" = test/
  (the layout of the CIFAR-10 JPEG tarball in ../shared/data once unpacked);
- anything else: both splits are the whole folder, and their description says so.
Within a split folder, images may sit in first-level class sub-folders (label = index of the
sub-folder in the sorted union of class names over both splits) or anywhere else (labels None as
soon as one image is not inside a class sub-folder). Search is recursive; hidden files are skipped.

Images are returned in sorted-path order shuffled by a fixed permutation (seed 0): sorted paths
group the classes together, so "the first 10k" (PROTOCOL §3's reference convention, applied
here too) would otherwise be a class-biased subset. The reference split is the first 10k of that.

Schedule: the MNIST/triangles one (15,625 D steps, evaluate every 3,906), the shortest of the
study; override it on the command line for bigger folders.

Decoded arrays are cached under the data root (never inside the user's folder), keyed by the
folder's absolute path and its file list with sizes and mtimes, so a changed folder is re-read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bench.data.base import Dataset, DatasetInfo, ImageSplit
from bench.data.decode import decode_all
from bench.errors import BenchError
from bench.files import atomic_write, is_writable_dir

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
STEPS, EVAL_EVERY, REFERENCE_SIZE = 15_625, 3_906, 10_000
CACHE_VERSION = 1
SHUFFLE_SEED = 0
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def list_images(folder: Path) -> list[str]:
    """Relative posix paths of the image files under `folder`, recursively, sorted, hidden ones skipped.

    Symlinked sub-folders are followed (symlink farms are a common way to assemble a dataset),
    each real directory once, so a link cycle cannot recurse forever.
    """
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(folder)
        found += [(rel / f).as_posix() for f in filenames if not f.startswith(".") and f.lower().endswith(EXTENSIONS)]
    return sorted(found)


def folder_dataset(path: str) -> Dataset:
    """The images under `path` as a Dataset named `folder:<absolute path>`; shape read from the first image."""
    if not path:
        raise BenchError("folder: needs a path, e.g. folder:/data/my_images")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BenchError(f"folder:{path}: {'not a directory' if root.exists() else 'no such directory'}")
    root = root.resolve()
    split_dirs = {"train": root / "train", "reference": root / "test"}
    paired = all(d.is_dir() for d in split_dirs.values())
    if not paired:
        split_dirs = {"train": root, "reference": root}
    listed = {d: list_images(d) for d in set(split_dirs.values())}
    files = {split: listed[d] for split, d in split_dirs.items()}
    for split, names in files.items():
        if not names:
            raise BenchError(f"folder:{split_dirs[split]}: no images ({', '.join(EXTENSIONS)}) found")
    classes = _classes(files.values())
    first = split_dirs["train"] / files["train"][0]
    mode, size = _peek(first)
    channels = 1 if mode in _GRAY_MODES else 3
    shape = (channels, size[1], size[0])
    layout = "train/ and test/" if paired else "flat: train and reference are the same images"
    info = DatasetInfo(
        name=f"folder:{root}",
        image_shape=shape,
        steps=STEPS,
        eval_every=EVAL_EVERY,
        splits=("train", "reference"),
        reference_size=min(REFERENCE_SIZE, len(files["reference"])),
        note=f"image folder ({layout}), {len(files['train'])} train images"
        + (f", {len(classes)} classes" if classes else ", unlabelled"),
    )

    def load(split: str, data_root: Path) -> ImageSplit:
        folder, names = split_dirs[split], files[split]
        images, labels, digest = _cached_decode(root, folder, names, shape, first, classes, data_root)
        order = np.random.default_rng(SHUFFLE_SEED).permutation(len(names))
        images = torch.from_numpy(images[order])
        labels = None if labels is None else torch.from_numpy(labels[order])
        where = ("test/" if split == "reference" else "train/") if paired else "whole folder"
        # The content digest makes caches keyed by this description (reference statistics) notice
        # a folder whose files changed while their number did not.
        desc = f"folder:{root} {where}, {len(names)} images (listing {digest}) in fixed shuffled order (seed {SHUFFLE_SEED})"
        if not paired:
            desc += "; train and reference are the same images"
        out = ImageSplit(images, labels, desc)
        return out.head(REFERENCE_SIZE) if split == "reference" else out

    return Dataset(info, load)


def _classes(split_files) -> Optional[list[str]]:
    """Sorted union of first-level sub-folder names, or None when some image is not inside one."""
    names = set()
    for files in split_files:
        for f in files:
            if "/" not in f:
                return None
            names.add(f.split("/", 1)[0])
    return sorted(names)


def _peek(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (width, height) from the header only: PIL decodes pixels lazily."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BenchError(f"cannot read image {path}: {e}") from None


def _to_array(im, channels: int) -> np.ndarray:
    """HWC uint8 with `channels` channels; transparency is composited over white."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit gray (Pillow's convert("L") would clip, not scale): 0..65535 -> 0..255
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), "L")
    has_alpha = im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return arr[..., None] if arr.ndim == 2 else arr


def _decode(folder: Path, names: list[str], shape: tuple[int, int, int], first: Path) -> np.ndarray:
    """uint8 [N, C, H, W]; every image must match `first` (where the dataset's shape came from)."""
    from PIL import Image

    channels, height, width = shape

    def read(name: str) -> np.ndarray:
        path = folder / name
        try:
            with Image.open(path) as im:
                if im.size != (width, height):
                    raise BenchError(
                        f"images differ in size: {first} is {width}x{height}, {path} is "
                        f"{im.size[0]}x{im.size[1]}; all images of a folder dataset must share one size"
                    )
                if channels == 1 and im.mode not in _GRAY_MODES:
                    raise BenchError(
                        f"images differ in mode: {first} is grayscale, {path} is colour ({im.mode}); "
                        "all images of a folder dataset must share one mode"
                    )
                return _to_array(im, channels).transpose(2, 0, 1)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise BenchError(f"cannot read image {path}: {e}") from None

    return decode_all(names, read, shape, desc=f"decoding {folder.name or folder}")


def _cached_decode(root, folder, names, shape, first, classes, data_root):
    """(images uint8 [N, C, H, W], labels int64 [N] or None, content digest) in sorted-name order, via the cache."""
    labels = None
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[n.split("/", 1)[0]] for n in names], dtype=np.int64)
    listing = []
    for n in names:
        st = (folder / n).stat()
        listing.append([n, st.st_size, st.st_mtime_ns])
    key = json.dumps([CACHE_VERSION, str(folder), list(shape), listing], separators=(",", ":"))
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", root.name)[:40] or "root"
    prefix = f"{slug}-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}-"
    cache_dir = Path(data_root) / "folders"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir / f"{prefix}{digest}.npy"
    if path.exists():
        try:
            images = np.load(path)
            if images.shape == (len(names), *shape) and images.dtype == np.uint8:
                return images, labels, digest
        except (OSError, ValueError):
            pass
    images = _decode(folder, names, shape, first)
    if _inside(cache_dir, root) or not is_writable_dir(cache_dir):
        return images, labels, digest  # caching is an optimisation: never write into the user's folder
    try:
        atomic_write(path, lambda f: np.save(f, images))
        for stale in cache_dir.glob(f"{prefix}*.npy"):  # older versions of the same folder
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        pass
    return images, labels, digest


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False
