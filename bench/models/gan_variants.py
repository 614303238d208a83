"""The study's loss-based GANs. Each is its loss, its penalty and its author defaults (PROTOCOL §1, §4)."""

from __future__ import annotations

import torch

from bench.models import losses, penalties
from bench.models.gan_base import GAN, gan_search_space
from bench.models.registry import register_model
from bench.models.search_space import Fixed, LogUniform


@register_model("mm_gan")
class MinimaxGAN(GAN):
    """Original minimax GAN with the saturating generator loss (Goodfellow et al. 2014)."""

    loss = losses.MINIMAX
    search_space = gan_search_space(dict(lr=5e-5, beta1=0.0, disc_iters=1, d_batch_norm=True))


@register_model("ns_gan")
class NonSaturatingGAN(GAN):
    """GAN with the non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014)."""

    loss = losses.NON_SATURATING
    search_space = gan_search_space(dict(lr=5e-5, beta1=0.0, disc_iters=1, d_batch_norm=True))


@register_model("lsgan")
class LeastSquaresGAN(GAN):
    """Least-squares GAN on the sigmoid output (Mao et al. 2017)."""

    loss = losses.LEAST_SQUARES
    search_space = gan_search_space(dict(lr=2e-4, beta1=0.5, disc_iters=1, d_batch_norm=True))


@register_model("wgan")
class WassersteinGAN(GAN):
    """Wasserstein GAN; every D parameter, batch-norm ones included, clipped after each D step (Arjovsky et al. 2017)."""

    loss = losses.WASSERSTEIN
    search_space = gan_search_space(
        dict(lr=5e-5, beta1=0.5, disc_iters=5, d_batch_norm=True, clip=0.01),
        wide={"clip": LogUniform(-3, 0)},
        narrow={"clip": LogUniform(-2, 0)},
    )

    @torch.no_grad()
    def after_discriminator_step(self) -> None:
        c = self.hparams["clip"]
        for p in self.D.parameters():
            p.clamp_(-c, c)


@register_model("wgan_gp")
class WassersteinGANGP(GAN):
    """WGAN with a gradient penalty on real-fake interpolates; fresh z for the G step (Gulrajani et al. 2017)."""

    loss = losses.WASSERSTEIN
    penalty = penalties.wgan_gp_penalty
    fresh_z_for_generator = True
    search_space = gan_search_space(
        dict(lr=1e-4, beta1=0.5, disc_iters=5, d_batch_norm=False, **{"lambda": 10.0}),
        wide={"lambda": LogUniform(-1, 2)},
        narrow={"lambda": LogUniform(-1, 1), "d_batch_norm": Fixed(False)},
    )


@register_model("dragan")
class DRAGAN(GAN):
    """Non-saturating GAN with a gradient penalty around perturbed real data (Kodali et al. 2017)."""

    loss = losses.NON_SATURATING
    penalty = penalties.dragan_penalty
    search_space = gan_search_space(
        dict(lr=1e-4, beta1=0.5, disc_iters=1, d_batch_norm=True, **{"lambda": 10.0}),
        wide={"lambda": LogUniform(-1, 2)},
        narrow={"lambda": LogUniform(-1, 1), "d_batch_norm": Fixed(False)},
    )
