"""An ns_gan whose discriminator output turns infinite after `explode_after` calls of D (0, the
default: never): until then it is ns_gan, and its trial diverges at the step of that call. It packs
like ns_gan (it overrides no step hook), so a pack can hold one member that diverges beside
others that do not (tests/packing)."""

import torch

from bench.models.architecture import Discriminator
from bench.models.gan_base import gan_search_space
from bench.models.gan_variants import NonSaturatingGAN
from bench.models.search_space import Fixed


class Fuse(torch.nn.Module):
    def __init__(self, explode_after: float):
        super().__init__()
        self.register_buffer("explode_after", torch.tensor(float(explode_after)))
        self.register_buffer("calls", torch.tensor(0.0))

    def forward(self, x):
        self.calls.add_(1)
        armed = (self.explode_after > 0) & (self.calls > self.explode_after)
        return x * torch.where(armed, float("inf"), 1.0)


class ExplodingGAN(NonSaturatingGAN):
    search_space = gan_search_space(dict(lr=2e-4, beta1=0.5, disc_iters=1, d_batch_norm=True,
                                         explode_after=0),
                                    wide={"explode_after": Fixed(0)},
                                    narrow={"explode_after": Fixed(0)})

    def build_discriminator(self):
        return torch.nn.Sequential(Discriminator(self.image_shape, batch_norm=self.hparams["d_batch_norm"]),
                                   Fuse(self.hparams["explode_after"]))
