"""Reference-set features and statistics, computed once per protocol and cached on disk.

The cache key holds every variable that changes the numbers: dataset, split description (which
says e.g. "first 10000"), n, and the extractor's full protocol (weights sha1, resize, input
convention). The file name is a hash of that key, and the key is stored inside the file and
compared on load, so a changed protocol can never pick up stale statistics.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from bench.config import default_cache_dir
from bench.data.base import ImageSplit
from bench.files import atomic_write
from bench.metrics.feature_extractor_base import FeatureExtractor, extract_features
from bench.metrics.metric_fid import feature_statistics

FORMAT = 1  # bump when the file's content changes meaning


@dataclass(frozen=True)
class ReferenceStats:
    mu: np.ndarray  # float64 [d]
    sigma: np.ndarray  # float64 [d, d]
    features: np.ndarray  # float32 [n, d]: the network's own precision, kept for KID and precision/recall
    n: int
    protocol: dict  # the cache key


def reference_key(dataset_name: str, split_description: str, n: int, extractor_protocol: dict) -> dict:
    return {"format": FORMAT, "dataset": dataset_name, "split": split_description, "n": int(n),
            "extractor": extractor_protocol}


def cache_path(key: dict, cache_dir: Optional[Path] = None) -> Path:
    """`<cache_dir or $BENCH_CACHE or ~/.cache/bench>/reference_stats/<dataset>-<n>-<hash>.npz`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key["dataset"])
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "reference_stats" / f"{stem}-{key['n']}-{digest}.npz"


def reference_statistics(
    split: ImageSplit,
    dataset_name: str,
    extractor: FeatureExtractor,
    device=None,
    cache_dir: Optional[Path] = None,
    progress: bool = True,
    batch_size: int = 64,
) -> ReferenceStats:
    """Statistics of all of `split` (the caller slices it), from the cache or computed and cached."""
    key = reference_key(dataset_name, split.description, len(split), extractor.protocol())
    path = cache_path(key, cache_dir)
    cached = _load(path, key)
    if cached is not None:
        return cached
    features = extract_features(extractor, split.images, batch_size=batch_size, device=device, progress=progress)["features"]
    mu, sigma = feature_statistics(features)
    stats = ReferenceStats(mu, sigma, features.astype(np.float32), len(split), key)
    atomic_write(path, lambda f: np.savez(f, mu=mu, sigma=sigma, features=stats.features, key=np.array(json.dumps(key))))
    return stats


def _load(path: Path, key: dict) -> Optional[ReferenceStats]:
    """The cached statistics, or None when absent, unreadable, or made under another key."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"][()])) != json.loads(json.dumps(key)):
                return None
            return ReferenceStats(z["mu"], z["sigma"], z["features"], key["n"], key)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
