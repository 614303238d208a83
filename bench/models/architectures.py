"""The networks a model is built on, as a protocol choice (`--arch`, issue 16).

`infogan` is the study's fixed architecture (bench/models/architecture.py, PROTOCOL §2) and the
default; `dcgan` and `sndcgan` (bench/models/arch_dcgan.py) are the two that later large studies
use. An architecture gives every model the same two bodies: a generator z -> image (a VAE's
decoder) and a discriminator image -> out_dim (a VAE's encoder), so that models on one
architecture differ only in their objective, as in the study.

A model class says which architectures it can be built on (`GenerativeModel.architectures`); a
model with networks of its own (PixelCNN, RealNVP) says None and trains the same under any.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from torch import nn

from bench.errors import BenchError

DEFAULT_ARCH = "infogan"


@dataclass(frozen=True)
class Architecture:
    name: str
    # (image_shape, z_dim, decoder=False, out_channels=None) -> nn.Module producing images in [0, 1];
    # decoder=True is a VAE's decoder (the InfoGAN body then uses ReLU instead of LeakyReLU).
    generator: Callable[..., nn.Module]
    # (image_shape, batch_norm, out_dim=1) -> nn.Module producing [B, out_dim]; `batch_norm` is the
    # study's searched "D batch norm" switch.
    discriminator: Callable[..., nn.Module]
    reference: str  # where the networks come from, for `bench list architectures` and reports
    # Whether its networks train packed (bench/packing: torch.func.vmap over stacked weights).
    # Spectral norm's power iteration writes its vectors in place at every forward pass, which
    # vmap cannot batch, so an SN-GAN trains one trial at a time.
    packs: bool = True


_ARCHITECTURES: Dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    if arch.name in _ARCHITECTURES and _ARCHITECTURES[arch.name] is not arch:
        raise ValueError(f"architecture name {arch.name!r} is already taken")
    _ARCHITECTURES[arch.name] = arch
    return arch


def _load_builtins() -> None:
    import bench.models.arch_dcgan  # noqa: F401  (registers dcgan, sndcgan)
    import bench.models.architecture  # noqa: F401  (registers infogan)


def architecture_names() -> list[str]:
    _load_builtins()
    return list(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    _load_builtins()
    if name not in _ARCHITECTURES:
        raise BenchError(f"unknown architecture {name!r}; accepted: {', '.join(_ARCHITECTURES)}")
    return _ARCHITECTURES[name]


def supported_architectures(model_cls) -> Optional[tuple]:
    """The architectures `model_cls` can be built on; None for a model with networks of its own.

    A plug-in whose constructor takes no `arch` argument builds the study's networks whatever its
    parent class could do, so it is held to infogan rather than passed an argument it would refuse."""
    archs = model_cls.architectures
    if archs is None or takes_arch(model_cls):
        return archs
    return (DEFAULT_ARCH,)


def takes_arch(model_cls) -> bool:
    params = inspect.signature(model_cls.__init__).parameters.values()
    return any(p.name == "arch" or p.kind is p.VAR_KEYWORD for p in params)


def check_model_architecture(model_cls, arch: str) -> None:
    """One line for a model that cannot be built on `arch` (a model with its own networks can)."""
    get_architecture(arch)
    archs = supported_architectures(model_cls)
    if archs is not None and arch not in archs:
        name = model_cls.__dict__.get("source") or model_cls.name
        raise BenchError(f"{name} cannot be built on the {arch} architecture; it can on: {', '.join(archs)}")


def own_networks(model_cls) -> bool:
    return model_cls.architectures is None
