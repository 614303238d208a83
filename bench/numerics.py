"""The floating-point settings a trial trains under, set for its duration and recorded with it.

On CUDA, PyTorch lets cuDNN run float32 convolutions in TF32 by default (10-bit mantissa), and
`torch.backends.cuda.matmul.allow_tf32` does the same for matrix products; the study trained in
float32. So a trial states its numerics in its protocol (`float32`, the presets' choice: TF32
off everywhere; or `tf32`, faster on Ampere and later), applies them while it trains, and writes
the flags that were in force into every evaluation record. Feature extraction always runs in
true float32 (`FEATURES`): a reference FID must not depend on the flags of whoever called it.

On a CPU the flags change nothing, but they are set and recorded all the same, so that a record
says the same thing on every machine.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from bench.errors import BenchError


@dataclass(frozen=True)
class Numerics:
    dtype: str = "float32"  # parameters and activations; the study's models train in float32 only
    tf32_matmul: bool = False
    tf32_conv: bool = False
    cudnn_benchmark: bool = False  # autotuned kernels may differ run to run
    cudnn_deterministic: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def current(cls, dtype: str = "float32") -> "Numerics":
        """The flags in force now, in this process."""
        return cls(dtype=dtype, tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
                   tf32_conv=bool(torch.backends.cudnn.allow_tf32),
                   cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
                   cudnn_deterministic=bool(torch.backends.cudnn.deterministic))

    @contextlib.contextmanager
    def applied(self) -> Iterator["Numerics"]:
        """These flags inside the block, the caller's after it (an exception included)."""
        before = Numerics.current()
        _set(self)
        try:
            yield self
        finally:
            _set(before)


def _set(numerics: Numerics) -> None:
    torch.backends.cuda.matmul.allow_tf32 = numerics.tf32_matmul
    torch.backends.cudnn.allow_tf32 = numerics.tf32_conv
    torch.backends.cudnn.benchmark = numerics.cudnn_benchmark
    torch.backends.cudnn.deterministic = numerics.cudnn_deterministic


# A protocol names its numerics; these are the names it may use.
NUMERICS = {
    "float32": Numerics(),
    "tf32": Numerics(tf32_matmul=True, tf32_conv=True),
}
FEATURES = NUMERICS["float32"]  # Inception and every other feature extractor


def numerics_named(name: str) -> Numerics:
    if name not in NUMERICS:
        raise BenchError(f"unknown numerics {name!r}; accepted: {', '.join(NUMERICS)}")
    return NUMERICS[name]
