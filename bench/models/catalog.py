"""What `bench list models` and `bench list architectures` show: identities and sizes on the study's image shapes."""

from __future__ import annotations

import torch

from bench.models.architectures import DEFAULT_ARCH, architecture_names, get_architecture, supported_architectures
from bench.models.registry import build_model, get_model_class, model_names
from bench.packing.packers import packs

SHAPES = {"28x28x1": (1, 28, 28), "32x32x3": (3, 32, 32), "64x64x3": (3, 64, 64)}
REFERENCE = "ns_gan"  # the model whose networks stand for an architecture's


def model_rows(arch: str = DEFAULT_ARCH) -> list[dict]:
    """One row per model; sizes on `arch` (a model that cannot be built on it shows none)."""
    rows = []
    for name in model_names():
        cls = get_model_class(name)
        archs = supported_architectures(cls)
        built = archs is None or arch in archs
        row = {"model": name, "family": cls.family, "kind": "explicit" if cls.explicit else "implicit",
               # whether `--pack K` trains several of its trials as one (bench/packing/packers.py)
               "packs": ("yes" if packs(cls, arch) else "no") if built else "",
               "architectures": "its own" if archs is None else ", ".join(archs)}
        for label, shape in SHAPES.items():
            if not built:
                row["networks"], row[f"params {label}"] = "", ""
                continue
            with torch.device("meta"):  # sizes without allocating weights
                counts = build_model(name, shape, None, "meta", arch).parameter_counts()
            row["networks"] = " / ".join(counts)
            row[f"params {label}"] = " / ".join(f"{v / 1e6:.2f}M" for v in counts.values())
        row["GFLOP/step 28x28x1"] = _gflops(name, cls, arch) if built else ""
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        row["summary"] = summary if len(summary) <= 60 else summary[:57] + "..."
        rows.append(row)
    return rows


def _gflops(name: str, cls, arch: str) -> str:
    """FLOPs of one training step of the author defaults at batch 64 (bench/flops.py), so that
    families of different cost can be compared before a run."""
    from bench.flops import flops_per_step

    try:
        return f"{flops_per_step(name, SHAPES['28x28x1'], dict(cls.search_space.defaults), arch=arch) / 1e9:.1f}"
    except Exception:  # a plug-in the meta device cannot run: no number rather than a wrong one
        return ""


def architecture_rows() -> list[dict]:
    """Each architecture's networks as ns_gan (author defaults) is built on them."""
    from bench.flops import flops_per_step

    rows = []
    for arch in architecture_names():
        network = get_architecture(arch)
        row = {"architecture": arch, "source": network.reference, "packs": "yes" if network.packs else "no"}
        hparams = dict(get_model_class(REFERENCE).search_space.defaults)
        for label, shape in SHAPES.items():
            with torch.device("meta"):
                counts = build_model(REFERENCE, shape, None, "meta", arch).parameter_counts()
            row[f"G / D params {label}"] = " / ".join(f"{v / 1e6:.2f}M" for v in counts.values())
            row[f"GFLOP/step {label}"] = f"{flops_per_step(REFERENCE, shape, hparams, arch=arch) / 1e9:.1f}"
        rows.append(row)
    return rows
