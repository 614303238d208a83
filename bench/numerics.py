"""The floating-point settings a trial trains under, set for its duration and recorded with it.

On CUDA, PyTorch lets cuDNN run float32 convolutions in TF32 by default (10-bit mantissa); matrix
products may be switched to TF32 too (off by default since PyTorch 1.12, but one call away); the
study trained in float32. So a trial states its numerics in its protocol (`float32`, the presets' choice: TF32
off everywhere; or `tf32`, faster on Ampere and later), applies them while it trains, and writes
the flags that were in force into every evaluation record. Feature extraction always runs in
true float32 (`FEATURES`), and so do the triangle metric and the NLL (`METRICS`): a reference FID, or a
trial's score, must not depend on the flags of whoever called it.

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
    dtype: str = "float32"  # parameters and activations; the study's models train in float32 (float64: a reference)
    tf32_matmul: bool = False
    tf32_conv: bool = False
    cudnn_benchmark: bool = False  # autotuned kernels may differ run to run
    cudnn_deterministic: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def current(cls, dtype: str = "float32") -> "Numerics":
        """The flags in force now, in this process."""
        if _legacy_readable():
            tf32_matmul, tf32_conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        else:
            tf32_matmul = _tf32(_MATMUL.fp32_precision, torch.backends.fp32_precision)
            tf32_conv = _tf32(_CONV.fp32_precision, torch.backends.cudnn.fp32_precision, torch.backends.fp32_precision)
        return cls(dtype=dtype, tf32_matmul=bool(tf32_matmul), tf32_conv=bool(tf32_conv),
                   cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
                   cudnn_deterministic=bool(torch.backends.cudnn.deterministic))

    @contextlib.contextmanager
    def applied(self) -> Iterator["Numerics"]:
        """These flags inside the block, the caller's after it (an exception included), restored as
        the caller set them (PyTorch refuses to read flags set through a mix of its two APIs)."""
        before, default_dtype = _raw(), torch.get_default_dtype()
        _set(self)
        # New tensors (z, noise, batches) take the trial's dtype; the model is cast to it (bench/train.py).
        torch.set_default_dtype(self.torch_dtype)
        try:
            yield self
        finally:
            torch.set_default_dtype(default_dtype)
            _restore(before)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


# PyTorch 2.9 added per-backend `fp32_precision` settings beside the older flags (`allow_tf32`,
# `set_float32_matmul_precision`); once the new ones are set apart from the old, reading the old
# ones raises. bench uses the old setters while the caller's state reads through them (they keep
# both APIs consistent, so code that reads either still works inside a trial), and the new ones,
# at the operator level, for a caller that uses the new API.
_MATMUL = torch.backends.cuda.matmul
_CONV = getattr(torch.backends.cudnn, "conv", None)
_NEW_API = hasattr(_MATMUL, "fp32_precision") and hasattr(_CONV, "fp32_precision")


def _legacy_readable() -> bool:
    if not _NEW_API:
        return True
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # noqa: B018 (a read that may raise)
        return True
    except RuntimeError:
        return False


def _tf32(*levels: str) -> bool:
    """The first level that is set ("none" inherits from the next); unset everywhere is IEEE float32."""
    for level in levels:
        if level != "none":
            return level == "tf32"
    return False


def _raw() -> tuple:
    if _legacy_readable():
        tf32 = ("legacy", torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    else:
        tf32 = ("new", _MATMUL.fp32_precision, _CONV.fp32_precision)
    return (*tf32, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)


def _restore(raw: tuple) -> None:
    api, matmul, conv, benchmark, deterministic = raw
    if api == "legacy":
        torch.set_float32_matmul_precision(matmul)  # "medium" comes back as "medium", not as "high"
        torch.backends.cudnn.allow_tf32 = conv
    else:
        _MATMUL.fp32_precision, _CONV.fp32_precision = matmul, conv
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic


def _set(numerics: Numerics) -> None:
    if _legacy_readable():
        tf32 = ("legacy", "high" if numerics.tf32_matmul else "highest", numerics.tf32_conv)
    else:
        precision = {True: "tf32", False: "ieee"}
        tf32 = ("new", precision[numerics.tf32_matmul], precision[numerics.tf32_conv])
    _restore((*tf32, numerics.cudnn_benchmark, numerics.cudnn_deterministic))


# A protocol names its numerics; these are the names it may use.
NUMERICS = {
    "float32": Numerics(),
    "tf32": Numerics(tf32_matmul=True, tf32_conv=True),
    # A reference, not a protocol: float32 training is chaotic, so two computations of one trial
    # that differ only in summation order (a pack and a trial alone, two thread counts) part after
    # a few dozen steps. In float64 they agree to many digits, which tests that they are the same
    # computation. Initial weights are the float32 ones, cast.
    "float64": Numerics(dtype="float64"),
}
# Inception and every other feature extractor; the triangle metric and the NLL (bench/train.py):
# a trial's numbers never depend on the flags it trained under.
FEATURES = METRICS = NUMERICS["float32"]


def numerics_named(name: str) -> Numerics:
    if name not in NUMERICS:
        raise BenchError(f"unknown numerics {name!r}; accepted: {', '.join(NUMERICS)}")
    return NUMERICS[name]
