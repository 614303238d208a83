"""The DCGAN and SNDCGAN networks (`--arch dcgan`, `--arch sndcgan`) for 28x28, 32x32 and 64x64.

Both are all-convolutional pyramids whose depth follows the image: `levels` stride-2 stages, as
many halvings of H and W as leave an integer side of at least 4, at most 4 (28 -> 14 -> 7: two;
32 -> 4: three; 64 -> 4: four, the published 64x64 DCGAN). Images stay in [0, 1] (a sigmoid where
the papers use tanh on [-1, 1]), and weights start as the study's (N(0, 0.02), zero biases), so
that changing the architecture changes nothing else of a trial.

- dcgan (Radford et al. 2016; the layer widths of PyTorch's reference DCGAN, 64 filters doubling
  per stage): G is FC -> (512 ... 64) transposed 4x4 stride-2 convolutions with batch norm and ReLU
  -> C channels; D is 4x4 stride-2 convolutions of 64, 128, ... filters with LeakyReLU(0.2) and
  batch norm on every stage but the first, then one linear output.
- sndcgan (Miyato et al. 2018, Table 3's "standard CNN", the SNDCGAN of Kurach et al. 2019): G is
  FC -> 64·2^levels filters at the lowest resolution (512 at 4x4 for 32x32, as the paper's),
  transposed 4x4 stride-2 convolutions halving them to 64 with batch norm and ReLU, a 3x3
  convolution to C channels; D is, per stage, a 3x3 stride-1 and a
  4x4 stride-2 convolution of 64, 128, ... filters, then a 3x3 convolution of twice the last width
  and one linear output, LeakyReLU(0.1), every weight spectrally normalised (one power iteration
  per forward pass, as the paper's).

The study's "D batch norm" switch keeps its meaning on both: batch norm after each D convolution
but the first when on, none when off (SNDCGAN's spectral norm applies either way).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.models.architecture import SigmoidOnFirst, Z_DIM, bn1d, bn2d, check_image_shape, init_weights, optional_bn
from bench.models.architectures import Architecture, register_architecture

MAX_LEVELS = 4


def levels(h: int, w: int) -> int:
    """Stride-2 stages: halvings of both sides that leave integers of at least 4, at most MAX_LEVELS."""
    n = 0
    while n < MAX_LEVELS and h % 2 == 0 and w % 2 == 0 and h // 2 >= 4 and w // 2 >= 4:
        h, w, n = h // 2, w // 2, n + 1
    return n


def _lowest(image_shape) -> tuple[int, int, int, int]:
    c, h, w = check_image_shape(image_shape)
    n = levels(h, w)
    return c, n, h >> n, w >> n


def _output(c: int, out_channels) -> nn.Module:
    return nn.Sigmoid() if out_channels in (None, c) else SigmoidOnFirst(c)


class _Body(nn.Module):
    """A network as one Sequential, its weights initialised as the study's."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.net = net
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _upsampling(z_dim: int, width: int, sh: int, sw: int, stages: int) -> list:
    """FC z -> width x sh x sw, then `stages` transposed 4x4 stride-2 convolutions halving the
    width, each with batch norm and ReLU: the body both generators share."""
    layers = [nn.Linear(z_dim, width * sh * sw), bn1d(width * sh * sw), nn.ReLU(), nn.Unflatten(1, (width, sh, sw))]
    for _ in range(stages):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1), bn2d(width // 2), nn.ReLU()]
        width //= 2
    return layers


class DCGANGenerator(_Body):
    def __init__(self, image_shape, z_dim: int = Z_DIM, decoder: bool = False, out_channels=None):
        c, n, sh, sw = _lowest(image_shape)
        width = 64 << (n - 1)
        layers = _upsampling(z_dim, width, sh, sw, n - 1)  # the last stage makes the image itself
        layers += [nn.ConvTranspose2d(64, out_channels or c, 4, stride=2, padding=1), _output(c, out_channels)]
        super().__init__(nn.Sequential(*layers))


class DCGANDiscriminator(_Body):
    def __init__(self, image_shape, batch_norm: bool, out_dim: int = 1):
        c, n, sh, sw = _lowest(image_shape)
        layers, width, previous = [], 64, c
        for stage in range(n):
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1),
                       optional_bn(batch_norm and stage > 0, bn2d, width), nn.LeakyReLU(0.2)]
            previous, width = width, width * 2
        layers += [nn.Flatten(), nn.Linear(previous * sh * sw, out_dim)]
        super().__init__(nn.Sequential(*layers))


class SNDCGANGenerator(_Body):
    def __init__(self, image_shape, z_dim: int = Z_DIM, decoder: bool = False, out_channels=None):
        c, n, sh, sw = _lowest(image_shape)
        # 512 at 4x4 for 32x32 as the paper's, halved per stage to 64 at full size
        layers = _upsampling(z_dim, 64 << n, sh, sw, n)
        layers += [nn.Conv2d(64, out_channels or c, 3, padding=1), _output(c, out_channels)]
        super().__init__(nn.Sequential(*layers))


class SNDCGANDiscriminator(_Body):
    def __init__(self, image_shape, batch_norm: bool, out_dim: int = 1):
        c, n, sh, sw = _lowest(image_shape)
        convs, width, previous = [], 64, c
        for _ in range(n):
            convs += [nn.Conv2d(previous, width, 3, padding=1), nn.Conv2d(width, width, 4, stride=2, padding=1)]
            previous, width = width, width * 2
        convs.append(nn.Conv2d(previous, width, 3, padding=1))
        layers = []
        for i, conv in enumerate(convs):
            layers += [conv, optional_bn(batch_norm and i > 0, bn2d, conv.out_channels), nn.LeakyReLU(0.1)]
        layers += [nn.Flatten(), nn.Linear(width * sh * sw, out_dim)]
        super().__init__(nn.Sequential(*layers))  # initialised before the parametrisation, which wraps them
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                spectral_norm(m)


register_architecture(Architecture(
    name="dcgan", generator=DCGANGenerator, discriminator=DCGANDiscriminator,
    reference="Radford et al. 2016, with PyTorch's reference widths"))
register_architecture(Architecture(
    name="sndcgan", generator=SNDCGANGenerator, discriminator=SNDCGANDiscriminator, packs=False,
    reference="Miyato et al. 2018 (standard CNN), as in Kurach et al. 2019"))
