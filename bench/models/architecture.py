"""The study's one fixed architecture ("InfoGAN-style", PROTOCOL §2): `--arch infogan`, the default.

Layer sizes depend only on the image shape (C, H, W) with H and W divisible by 4, so every
model on a dataset has the same generator and a discriminator of the same size.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import BenchError

Z_DIM = 64
# TF's batch_norm(decay=0.999, epsilon=1e-3) in PyTorch terms.
BN_MOMENTUM = 1e-3
BN_EPS = 1e-3
INIT_STD = 0.02


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    c, h, w = image_shape
    if h % 4 or w % 4 or c not in (1, 3):
        raise BenchError(
            f"the fixed architecture needs 1 or 3 channels and H, W divisible by 4; got {c}x{h}x{w}"
        )
    return c, h, w


def bn1d(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=BN_EPS, momentum=BN_MOMENTUM)


def bn2d(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=BN_EPS, momentum=BN_MOMENTUM)


def optional_bn(enabled: bool, factory, n: int) -> nn.Module:
    """The study's "D batch norm" switch: a batch-norm layer, or nothing."""
    return factory(n) if enabled else nn.Identity()


def init_weights(module: nn.Module) -> None:
    """compare_gan's initialisers: truncated N(0, 0.02) for convolutions (cut at 2 std, as TF's
    truncated_normal), N(0, 0.02) for linear and transposed-convolution weights, zero biases.
    Batch-norm layers keep scale 1 and offset 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
        elif isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=INIT_STD)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if kind == "lrelu" else nn.ReLU()


class Generator(nn.Module):
    """z (64) -> FC 1024 -> FC 128·H/4·W/4 -> deconv 64 -> deconv C -> sigmoid, BN after each hidden layer.

    `activation="relu"` gives the VAE's decoder (PROTOCOL §2). `out_channels` widens the last
    deconv (e.g. 2C for a mean and a scale per pixel); the sigmoid then applies to the first C.
    """

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int = Z_DIM, activation: str = "lrelu",
                 out_channels: int | None = None):
        super().__init__()
        c, h, w = check_image_shape(image_shape)
        self.low_res = (128, h // 4, w // 4)
        self.net = nn.Sequential(
            nn.Linear(z_dim, 1024),
            bn1d(1024),
            _act(activation),
            nn.Linear(1024, 128 * (h // 4) * (w // 4)),
            bn1d(128 * (h // 4) * (w // 4)),
            _act(activation),
            nn.Unflatten(1, self.low_res),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            bn2d(64),
            _act(activation),
            nn.ConvTranspose2d(64, out_channels or c, 4, stride=2, padding=1),
            nn.Sigmoid() if out_channels in (None, c) else SigmoidOnFirst(c),
        )
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SigmoidOnFirst(nn.Module):
    """Sigmoid on the first `c` channels (the image's means); the rest (e.g. log-scales) pass as they are."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sigmoid(x[:, : self.c]), x[:, self.c:]], dim=1)


class Discriminator(nn.Module):
    """x -> conv 64 -> conv 128 [BN] -> FC 1024 [BN] -> FC out_dim; LeakyReLU(0.2) between.

    Returns [B, out_dim] (the logit when out_dim = 1). `batch_norm` is the study's searched
    "D batch norm" switch; the VAE's encoder is this network with out_dim = 2·z_dim.
    """

    def __init__(self, image_shape: tuple[int, int, int], batch_norm: bool, out_dim: int = 1):
        super().__init__()
        c, h, w = check_image_shape(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(c, 64, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, stride=2, padding=1),
            optional_bn(batch_norm, bn2d, 128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * (h // 4) * (w // 4), 1024),
            optional_bn(batch_norm, bn1d, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, out_dim),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AutoencoderDiscriminator(nn.Module):
    """BEGAN's discriminator: conv 64 -> conv 128 -> FC 64 [BN] -> FC 128·H/4·W/4 [BN] -> deconv 64 [BN] -> deconv C -> sigmoid.

    Follows compare_gan: no activation between the second convolution and the code layer.
    """

    def __init__(self, image_shape: tuple[int, int, int], batch_norm: bool, code_dim: int = 64):
        super().__init__()
        c, h, w = check_image_shape(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(c, 64, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(128 * (h // 4) * (w // 4), code_dim),
            optional_bn(batch_norm, bn1d, code_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(code_dim, 128 * (h // 4) * (w // 4)),
            optional_bn(batch_norm, bn1d, 128 * (h // 4) * (w // 4)),
            nn.LeakyReLU(0.2),
            nn.Unflatten(1, (128, h // 4, w // 4)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            optional_bn(batch_norm, bn2d, 64),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(64, c, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _infogan_generator(image_shape, z_dim: int = Z_DIM, decoder: bool = False, out_channels=None) -> Generator:
    return Generator(image_shape, z_dim, activation="relu" if decoder else "lrelu", out_channels=out_channels)


def _register() -> None:
    from bench.models.architectures import Architecture, register_architecture

    register_architecture(Architecture(
        name="infogan", generator=_infogan_generator, discriminator=Discriminator,
        reference="the study's InfoGAN-style networks (Lucic et al. 2018, PROTOCOL §2)"))


_register()
