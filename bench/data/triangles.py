"""The study's convex-polygon ("triangles") dataset, generated exactly per PROTOCOL §3.

80,000 gray images of 28×28: [0, 60k) = "train", [60k, 70k) = "reference" (the study's test set),
[70k, 80k) = "holdout". Follows GenerateConvexPolygon/GenerateDataset of compare_gan v1 with
these deliberate choices, all documented here because they change pixels:

- Every random number of the 80k images is drawn up front from one `numpy.random.Generator`
  (one row per image: n vertex offsets, then the rotation draw, the original's per-image order),
  so any index range rasterised alone equals the same slice of the full set.
- Rotation: the original computes `np.radians(u * 2π)`, i.e. at most ≈ 6.3°. `rotation="study"`
  (the default) keeps that quirk; `rotation="full"` uses a uniform angle in [0°, 360°) from the
  same draw. The rotation is about (0.5, 0.5), in the original's direction (`x @ R`, i.e.
  clockwise for a positive angle); its centre is irrelevant because the polygon is recentred.
- The centre of mass is the area centroid (the original moves the vertex mean; the two agree
  for triangles) and is put at (14, 14), the exact centre of the 28×28 image.
- Axes follow the original's `np.mgrid`: the first image axis (rows) is x, the second is y.
- Rasterisation samples a 224×224 grid at sub-pixel centres ((j + ½)/8 px) and averages each 8×8
  block (the original convolves a grid sampled at integer sub-pixel corners, which shifts the
  image by about half a pixel). The inside test is the half-plane test of the convex polygon,
  solved analytically per sub-pixel row (a row meets a convex polygon in one interval), which is
  exact and ~20× cheaper than testing every sample against every edge.
- Values: polygon 0 (dark), background 1; stored as uint8 round-half-up(255 · value).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.data.base import DatasetInfo, ImageSplit
from bench.data.registry import register_dataset
from bench.errors import BenchError
from bench.files import atomic_write, is_writable_dir

# Bump whenever a change to this file changes a single pixel: the cache file name carries it.
VERSION = 1
TOTAL = 80_000
SPLIT_RANGES = {"train": (0, 60_000), "reference": (60_000, 70_000), "holdout": (70_000, 80_000)}
ROTATIONS = ("study", "full")

N_VERTICES = 3
MIN_SEGMENT_ANGLE = 20.0  # degrees
RASTER = 28
SCALE = 0.75  # polygon spans 28 · 0.75 = 21 px before recentring
SUBPIXELS = 8
CHUNK = 500  # images rasterised at once per worker: ~10 MB of temporaries

INFO = DatasetInfo(
    name="triangles",
    image_shape=(1, RASTER, RASTER),
    steps=15_625,
    eval_every=3_906,
    splits=("train", "reference", "holdout"),
    reference_size=10_000,
    score="tri_f1",  # the study judged its convex-polygon experiment by precision, recall and F1
    note="80k generated convex polygons (n=3, min segment angle 20°, study rotation quirk ≤6.3°), "
    f"seed 0, generator v{VERSION}; train 60k / reference 10k / holdout 10k",
)


def polygon_vertices(seed: int = 0, rotation: str = "study") -> np.ndarray:
    """Vertices of all 80k polygons in pixel units, float64 [80000, n, 2] as (x, y), centroid at (14, 14).

    Always computed for the whole set (it is cheap) so that no result depends on which range
    is asked for: even the last ulp of cos/sin can differ between vectorised and scalar code paths.
    """
    if rotation not in ROTATIONS:
        raise BenchError(f"unknown triangles rotation {rotation!r}; choose one of: {', '.join(ROTATIONS)}")
    n, m = N_VERTICES, MIN_SEGMENT_ANGLE
    s = 360.0 / n
    draws = np.random.default_rng(seed).random((TOTAL, n + 1))
    angles = np.radians(np.arange(n) * s + m / 2.0 + draws[:, :n] * (s - m / 2.0))
    xy = (np.stack([np.cos(angles), np.sin(angles)], axis=-1) + 1.0) / 2.0  # unit circle -> [0,1]^2

    theta = draws[:, n] * 2.0 * np.pi  # "full": uniform in [0, 2π)
    if rotation == "study":
        theta = np.radians(theta)  # the original's double conversion: at most 2π degrees
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    px, py = xy[..., 0] - 0.5, xy[..., 1] - 0.5
    # Row vector times [[cos, -sin], [sin, cos]], as the original's np.dot(x, rot).
    xy = np.stack([px * cos + py * sin + 0.5, -px * sin + py * cos + 0.5], axis=-1)

    v = xy * (RASTER * SCALE)
    return v + (RASTER / 2.0 - _area_centroid(v))[:, None, :]


def _area_centroid(v: np.ndarray) -> np.ndarray:
    """Area centroid [N, 2] of simple polygons [N, n, 2], either orientation (shoelace formulas)."""
    x, y = v[..., 0], v[..., 1]
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cross = x * y1 - x1 * y
    area6 = 3.0 * cross.sum(axis=1)  # 6 · signed area
    cx = ((x + x1) * cross).sum(axis=1) / area6
    cy = ((y + y1) * cross).sum(axis=1) / area6
    return np.stack([cx, cy], axis=-1)


def rasterise(vertices: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] images of convex polygons given as float64 [N, n, 2] pixel coordinates."""
    r, size = SUBPIXELS, RASTER * SUBPIXELS
    s = vertices * r  # sub-pixel units: sample (i, j) sits at (i + ½, j + ½)
    a, b = s, torch.roll(s, -1, dims=1)
    d = b - a  # edge vectors [N, n, 2]
    # Orientation sign from the signed area: inside is where every edge's cross product has it.
    orient = torch.sign((a[..., 0] * b[..., 1] - b[..., 0] * a[..., 1]).sum(1))[:, None, None]
    xs = torch.arange(size, dtype=s.dtype) + 0.5  # sub-row centres (x)
    # Inside edge k:  orient·(dx·(y − ay) − dy·(x − ax)) ≥ 0  ⇔  coef·y ≥ rhs  on the row x.
    coef = (orient * d[..., 0:1]).expand(-1, -1, size)  # [N, n, size]
    rhs = orient * (d[..., 0:1] * a[..., 1:2] + d[..., 1:2] * (xs - a[..., 0:1]))
    bound = rhs / torch.where(coef == 0, torch.ones_like(coef), coef)
    lo = torch.where(coef > 0, bound, -math.inf).amax(1)  # [N, size] lowest y inside the row
    hi = torch.where(coef < 0, bound, math.inf).amin(1)  # highest y inside the row
    blocked = ((coef == 0) & (rhs > 0)).any(1)  # an edge parallel to the row that excludes it
    lo = lo.masked_fill(blocked, math.inf)
    # The row's inside samples are the columns j in [j_lo, j_end): lo ≤ j + ½ ≤ hi, clipped to the grid.
    j_lo = torch.ceil((lo - 0.5).clamp(-1, size)).short()
    j_end = torch.maximum(torch.floor((hi - 0.5).clamp(-1, size)).short() + 1, j_lo)
    # Inside samples of pixel c = #{j < j_end} − #{j < j_lo} among its 8 columns, summed over 8 sub-rows.
    starts = torch.arange(0, size, r, dtype=torch.int16)
    below_end = (j_end.view(-1, RASTER, r, 1) - starts).clamp_(0, r).sum(2, dtype=torch.int32)
    below_lo = (j_lo.view(-1, RASTER, r, 1) - starts).clamp_(0, r).sum(2, dtype=torch.int32)
    white = r * r - (below_end - below_lo)  # [N, 28, 28] background samples, 0..64
    return ((255 * white + r * r // 2) // (r * r)).to(torch.uint8)  # round half up of 255·white/64


def generate_triangles(start: int = 0, stop: int = TOTAL, seed: int = 0, rotation: str = "study") -> np.ndarray:
    """Images [start, stop) of the dataset as uint8 [N, 28, 28]; any range equals that slice of the whole."""
    if not 0 <= start <= stop <= TOTAL:
        raise BenchError(f"triangles index range [{start}, {stop}) is outside [0, {TOTAL})")
    from bench.progress import bar as progress_bar

    vertices = torch.from_numpy(polygon_vertices(seed, rotation)[start:stop])
    out = np.empty((stop - start, RASTER, RASTER), dtype=np.uint8)

    def work(i: int) -> int:
        out[i : i + CHUNK] = rasterise(vertices[i : i + CHUNK]).numpy()
        return min(CHUNK, stop - start - i)

    # One chunk per worker thread, each op single-threaded: torch's intra-op threads on these
    # mid-sized tensors spin against each other and ran 3-10x slower on a busy 2-core machine.
    # Results do not depend on the split into chunks: every op is elementwise per image.
    workers = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool, progress_bar(
            total=stop - start, desc="generating triangles", unit="img", min_total=10_000) as bar:
            for done in pool.map(work, range(0, stop - start, CHUNK)):
                bar.update(done)
    finally:
        torch.set_num_threads(threads)
    return out


def cache_path(root: Path, seed: int = 0, rotation: str = "study") -> Path:
    return Path(root) / "triangles" / f"triangles-v{VERSION}-seed{seed}-{rotation}-{TOTAL}x{RASTER}x{RASTER}.npy"


def triangles_array(root: Path, seed: int = 0, rotation: str = "study") -> np.ndarray:
    """The full uint8 [80000, 28, 28] set, read from the cache under `root` or generated and cached there."""
    path = cache_path(root, seed, rotation)
    if path.exists():
        try:
            arr = np.load(path)
            if arr.shape == (TOTAL, RASTER, RASTER) and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass  # unreadable: regenerate and replace it below
    if not is_writable_dir(path.parent):
        raise BenchError(
            f"cannot cache the triangles dataset: {path.parent} is not writable; "
            "choose another data root with --data-root DIR or $BENCH_DATA"
        )
    arr = generate_triangles(0, TOTAL, seed, rotation)
    try:
        atomic_write(path, lambda f: np.save(f, arr))
    except OSError as e:
        raise BenchError(f"cannot write the triangles cache {path}: {e.strerror or e}; "
                         "choose another data root with --data-root DIR or $BENCH_DATA") from None
    return arr


@register_dataset(INFO)
def load_triangles(split: str, root: Path) -> ImageSplit:
    start, stop = SPLIT_RANGES[split]
    images = torch.from_numpy(triangles_array(root)[start:stop].copy()).unsqueeze(1)
    return ImageSplit(images, None, f"triangles v{VERSION} seed 0 rotation study, {split} [{start}:{stop}]")
