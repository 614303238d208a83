"""Samples someone else generated, for `bench score`: a folder of images, or an .npz/.npy array."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bench.errors import BenchError

MIN_SAMPLES = 2  # FID's covariance needs two; each metric then asks for its own --n
NPZ_KEYS = ("samples", "images", "x", "arr_0")  # tried in this order when an .npz holds several arrays
ACCEPTED = "uint8 in 0..255 or floats in [0, 1], shaped [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 or 3"


def load_samples(path: str | Path, data_root: Optional[Path] = None) -> torch.Tensor:
    """uint8 [N, C, H, W] (images, arrays of uint8) or float32 [N, C, H, W] in [0, 1] (float arrays)."""
    path = Path(path).expanduser()
    if path.is_dir():
        from bench.data.folder import folder_dataset

        return folder_dataset(str(path)).load("train", data_root).images
    if not path.is_file():
        raise BenchError(f"samples {path} not found: give a folder of images or an .npz/.npy file")
    if path.suffix not in (".npz", ".npy"):
        raise BenchError(f"samples {path}: unsupported file type {path.suffix!r}; accepted: a folder of images, .npz, .npy")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                array = _pick(npz, path)
    except zipfile.BadZipFile:
        raise BenchError(f"samples {path} is a truncated or damaged .npz (not a zip archive numpy can read); "
                         "save it again with numpy.savez") from None
    except (OSError, ValueError, EOFError) as exc:
        if "pickle" in str(exc):  # numpy's reading of bytes that are no array: its advice would mislead
            raise BenchError(f"samples {path} is not an image array: no numpy {path.suffix} header; save the "
                             f"images with numpy.save / numpy.savez ({ACCEPTED})") from None
        raise BenchError(f"samples {path} is not a readable numpy file: {exc}") from None
    return _as_images(np.asarray(array), path)


def _pick(npz, path: Path) -> np.ndarray:
    names = list(npz.files)
    if len(names) == 1:
        return npz[names[0]]
    for key in NPZ_KEYS:
        if key in names:
            return npz[key]
    raise BenchError(f"samples {path} holds arrays {names}; name the images one of: {', '.join(NPZ_KEYS)}")


def _as_images(array: np.ndarray, path: Path) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise BenchError(f"samples {path} have shape {array.shape}; accepted: {ACCEPTED}")
    if array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # NHWC, as most generators save them
    if array.shape[1] not in (1, 3):
        raise BenchError(f"samples {path} have shape {array.shape}; accepted: {ACCEPTED}")
    if len(array) < MIN_SAMPLES:
        raise BenchError(f"samples {path} hold {len(array)} image(s); scoring needs at least {MIN_SAMPLES} "
                         "(a covariance), and as many as the metrics' --n")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if np.issubdtype(array.dtype, np.floating):
        nan = int(np.isnan(array).sum())
        if nan:
            raise BenchError(f"samples {path} contain {nan} NaN value(s) (of {array.size}); accepted: {ACCEPTED}")
        lo, hi = float(array.min()), float(array.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
            raise BenchError(f"samples {path} are floats in [{lo:g}, {hi:g}]; accepted: {ACCEPTED}")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).clamp_(0, 1)
    raise BenchError(f"samples {path} have dtype {array.dtype}; accepted: {ACCEPTED}")
