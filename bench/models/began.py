"""BEGAN: the discriminator is an autoencoder and the players balance through k (Berthelot et al. 2017).

L(v) = mean |v − AE(v)| over all pixels of the batch; D minimises L(x) − k·L(x̂), G minimises
L(x̂). After every step, k ← k + λ_k(γ·L(x) − L(x̂)) with both errors recomputed by the updated
networks on the step's batch and z, as compare_gan does; k is not clipped to [0, 1] (PROTOCOL §1).
"""

from __future__ import annotations

from typing import Dict

import torch

from bench.models.architecture import AutoencoderDiscriminator
from bench.models.gan_base import GAN, gan_search_space
from bench.models.registry import register_model
from bench.models.search_space import Fixed, LogUniform, Uniform

Tensor = torch.Tensor


def reconstruction_error(autoencoder: torch.nn.Module, x: Tensor) -> Tensor:
    return (autoencoder(x) - x).abs().mean()


@register_model("began")
class BEGAN(GAN):
    """Boundary-equilibrium GAN with an autoencoder discriminator and an unclipped k."""

    search_space = gan_search_space(
        dict(lr=1e-4, beta1=0.5, disc_iters=5, d_batch_norm=False, gamma=0.75, lambda_k=1e-3),
        wide={"gamma": Uniform(0.0, 1.0), "lambda_k": LogUniform(-4, -2)},
        narrow={"gamma": Uniform(0.6, 0.9), "lambda_k": Fixed(1e-3)},
    )

    # Its autoencoder discriminator exists in the study's form only.
    architectures = ("infogan",)

    def __init__(self, image_shape, hparams=None, arch: str = "infogan"):
        super().__init__(image_shape, hparams, arch)
        # A buffer: it lives on the device (no host round trip per step) and in state_dict().
        self.register_buffer("k", torch.zeros(()))

    def build_discriminator(self) -> torch.nn.Module:
        return AutoencoderDiscriminator(self.image_shape, batch_norm=self.hparams["d_batch_norm"])

    def discriminator_loss(self, real: Tensor, fake: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        return {"d_loss": reconstruction_error(self.D, real) - self.k * reconstruction_error(self.D, fake)}

    def generator_loss(self, fake: Tensor) -> Tensor:
        return reconstruction_error(self.D, fake)

    @torch.no_grad()
    def after_step(self, real: Tensor, z: Tensor) -> Dict[str, Tensor]:
        real_error = reconstruction_error(self.D, real)
        fake_error = reconstruction_error(self.D, self.G(z))
        self.k.add_(self.hparams["lambda_k"] * (self.hparams["gamma"] * real_error - fake_error))
        return {"k": self.k.clone()}
