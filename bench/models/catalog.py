"""What `bench list models` shows: each model's identity and its size on the study's image shapes."""

from __future__ import annotations

import torch

from bench.models.registry import get_model_class, model_names
from bench.packing.packers import packs

SHAPES = {"28x28x1": (1, 28, 28), "32x32x3": (3, 32, 32), "64x64x3": (3, 64, 64)}


def model_rows() -> list[dict]:
    rows = []
    for name in model_names():
        cls = get_model_class(name)
        row = {"model": name, "family": cls.family, "kind": "explicit" if cls.explicit else "implicit",
               # whether `--pack K` trains several of its trials as one (bench/packing/packers.py)
               "packs": "yes" if packs(cls) else "no"}
        for label, shape in SHAPES.items():
            with torch.device("meta"):  # sizes without allocating weights
                counts = cls(shape).parameter_counts()
            row["networks"] = " / ".join(counts)
            row[f"params {label}"] = " / ".join(f"{v / 1e6:.2f}M" for v in counts.values())
        row["GFLOP/step 28x28x1"] = _gflops(name, cls)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        row["summary"] = summary if len(summary) <= 60 else summary[:57] + "..."
        rows.append(row)
    return rows


def _gflops(name: str, cls) -> str:
    """FLOPs of one training step of the author defaults at batch 64 (bench/flops.py), so that
    families of different cost can be compared before a run."""
    from bench.flops import flops_per_step

    try:
        return f"{flops_per_step(name, SHAPES['28x28x1'], dict(cls.search_space.defaults)) / 1e9:.1f}"
    except Exception:  # a plug-in the meta device cannot run: no number rather than a wrong one
        return ""
