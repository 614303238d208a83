"""δ, the squared-L2 distance under which a sample counts as a triangle (PROTOCOL §5).

δ (`calibrate_delta`). The protocol asks for a δ under which held-out real triangles score
precision ≥ 0.99. Any δ ≥ 0.0016 does, because the search matches real triangles almost exactly;
the smallest such δ admits only pixel-exact triangles (below a 1/255 grey-level offset, 0.011),
which no GAN produces. The default ("nearest-train") therefore sets δ to the spacing of real
data: the 0.99 quantile of the squared distance from each of the 10,000 held-out triangles to
its nearest of the 60,000 training triangles, δ = 0.6995 (a 0.1 px shift, 0.17, or σ = 0.01 noise,
0.04, is inside; a 0.25 px shift, 0.94, a 3×3 blur, 4.8, are outside). Held-out triangles lie on
the manifold, so their precision is 1; the check on the first 1,000 is stored with δ. The strict
variant ("manifold": 1.1 × the 0.99 quantile of held-out manifold distances, 0.0016) stays
available. Cached on disk per images' hash and settings; results keep every distance, so
`TrianglePR.with_delta` rescores a run at any other δ.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from bench.config import default_cache_dir
from bench.data import triangles as tri
from bench.files import atomic_write_json, read_json
from bench.model_metrics.triangle_manifold import ManifoldSearch, digest, manifold_distance
from bench.model_metrics.triangle_raster import as_pixels

CACHE_FORMAT = 1  # bump when a cached δ would change meaning
DEFAULT_MARGIN = 0.1
CALIBRATIONS = ("nearest-train", "manifold")
CHECK_HOLDOUT = 1000  # held-out triangles whose manifold distance checks a nearest-train δ


def calibrate_delta(holdout_images: Optional[torch.Tensor] = None, quantile: float = 0.99,
                    margin: float = DEFAULT_MARGIN, search: ManifoldSearch = ManifoldSearch(), cache: bool = True,
                    cache_dir: Optional[Path] = None, method: str = "nearest-train",
                    train_images: Optional[torch.Tensor] = None, data_root: Optional[Path] = None) -> float:
    """δ such that held-out real triangles score precision ≥ `quantile` (PROTOCOL §5).

    method "nearest-train" (default): the `quantile` ("higher") of the squared distance from each
    held-out triangle to its nearest training triangle, i.e. δ is the spacing of real data: a
    sample is on the manifold when it is as close to some triangle as a fresh real triangle is to
    the 60k it could have been drawn beside. Held-out triangles themselves lie on the manifold
    (distance ≈ 0 ≤ δ), which is checked on the first CHECK_HOLDOUT of them and recorded.
    method "manifold": (1 + margin) × the `quantile` of the held-out triangles' own manifold
    distances; since the search recovers real triangles almost exactly, this δ ≈ 0.0016 only
    admits pixel-exact triangles (below a 1/255 grey-level offset), too strict to rank GANs.

    Images default to the whole "holdout" split (10,000) and, for "nearest-train", the whole
    "train" split (60,000), regenerated exactly. Cached on disk, keyed by the images and settings.
    """
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown δ calibration {method!r}; accepted: {', '.join(CALIBRATIONS)}")
    # The registered splits are named by their generator version instead of hashed (188 MB for train).
    holdout_id = _split_id("holdout") if holdout_images is None else None
    x = as_pixels(_split_images("holdout", data_root) if holdout_images is None else holdout_images)
    if not len(x):
        raise ValueError("calibrate_delta needs at least one held-out image")
    key = {"format": CACHE_FORMAT, "triangles_version": tri.VERSION, "method": method,
           "images": holdout_id or digest(x), "n": len(x), "quantile": quantile, "search": asdict(search)}
    train = None
    if method == "manifold":
        key["margin"] = margin
    else:
        train = as_pixels(_split_images("train", data_root) if train_images is None else train_images)
        key.update(train=_split_id("train") if train_images is None else digest(train), n_train=len(train))
    key = json.loads(json.dumps(key))  # as it reads back (tuples become lists)
    path = Path(cache_dir or default_cache_dir()) / "triangles" / f"delta-{digest(key)[:16]}.json"
    if cache and path.exists():
        try:
            stored = read_json(path)
            if stored.get("key") == key:
                return float(stored["delta"])
        except (OSError, ValueError):
            pass  # unreadable: compute and replace it
    # The "higher" quantile is an observed distance, so at least `quantile` of the images are ≤ it.
    if method == "manifold":
        dist = manifold_distance(x, search).cpu()
        delta = float(torch.quantile(dist, quantile, interpolation="higher")) * (1 + margin)
        record = {"quantiles": _quantiles(dist), "share_at_zero": float((dist == 0).double().mean())}
    else:
        dist = _nearest_distances(x, train)
        delta = float(torch.quantile(dist, quantile, interpolation="higher"))
        own = manifold_distance(x[:CHECK_HOLDOUT], search).cpu()
        record = {"nearest_train_quantiles": _quantiles(dist),
                  f"holdout_precision_first_{len(own)}": float((own <= delta).double().mean())}
    if cache:
        atomic_write_json(path, {"key": key, "delta": delta, **record})
    return delta


def _split_images(split: str, data_root: Optional[Path] = None) -> torch.Tensor:
    """A registered triangles split, from the dataset's on-disk cache (generated once)."""
    from bench.data import get_dataset

    return get_dataset("triangles").load(split, data_root).images


def _split_id(split: str) -> str:
    lo, hi = tri.SPLIT_RANGES[split]
    return f"triangles v{tri.VERSION} seed 0 rotation study [{lo}:{hi}]"


def _nearest_distances(x: torch.Tensor, pool: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """Squared L2 from each row of x to its nearest row of pool, in float64 for the winners."""
    pool_sq = (pool * pool).sum(1)
    out = []
    for block in x.split(chunk):
        nearest = (pool_sq - 2 * block @ pool.T).argmin(1)  # float32 ranking, exact distance below
        out.append((block.double() - pool[nearest].double()).square().sum(1))
    return torch.cat(out)


def _quantiles(dist: torch.Tensor) -> dict:
    return {str(q): float(torch.quantile(dist, q)) for q in (0.5, 0.9, 0.99, 0.999, 1.0)}
