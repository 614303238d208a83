"""Autoencoder-family models beside the study's VAE, on the same encoder (D body) and decoder (G body).

- `beta_vae`: the VAE with the KL term weighted by a searched β (Higgins et al. 2017);
- `vae_dl`: a VAE whose decoder is a discretised logistic per pixel (PixelCNN++'s likelihood,
  Salimans et al. 2017), a proper likelihood of 8-bit images, so it reports bits/dim;
- `aae`: an adversarial autoencoder (Makhzani et al. 2016): a code critic pulls the aggregate
  posterior towards the prior instead of the KL; no likelihood of its own (AIS can estimate one).
"""

from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.architecture import count_parameters
from bench.models.architectures import DEFAULT_ARCH
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import LogUniform
from bench.models.vae import VAE, bernoulli_nll, vae_search_space

Tensor = torch.Tensor
HALF_BIN = 1.0 / 255.0  # half of one 8-bit bin on the [-1, 1] scale


@register_model("beta_vae")
class BetaVAE(VAE):
    """VAE with a β-weighted KL term; its IWAE bound is still a bound on the same likelihood.

    β weighs the KL against the study's VAE loss, whose reconstruction term is averaged over
    channels: on RGB data β = 1 is the study's VAE, a KL three times as strong as in the ELBO."""

    search_space = vae_search_space(beta=(1.0, LogUniform(-1, 1), LogUniform(-0.5, 0.5)))

    def kl_weight(self) -> float:
        return float(self.hparams["beta"])


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) per example (summed over pixels) of 8-bit x in [0,1] under a logistic of `mean`
    in [0,1] and `log_scale` (on the [-1,1] scale), discretised to 256 bins, the end bins
    taking the tails (PixelCNN++)."""
    x, mean = 2 * x - 1, 2 * mean - 1
    centered, inv_s = x - mean, torch.exp(-log_scale)
    plus, minus = inv_s * (centered + HALF_BIN), inv_s * (centered - HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)  # log σ(plus): the lowest bin
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 − σ(minus)): the highest bin
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered
    log_pdf_mid = mid - log_scale - 2 * F.softplus(mid) - math.log(127.5)  # for bins too thin to subtract
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid)
    log_p = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, inner))
    return log_p.flatten(1).sum(1)


@register_model("vae_dl")
class DiscretizedLogisticVAE(VAE):
    """VAE with a discretised-logistic decoder on 8-bit data; samples are the decoder's means.

    The G body's last deconv gives 2C channels: C means (sigmoid) and C log-scales, so each pixel's
    scale depends on z (a free per-pixel parameter moves only about lr per Adam step: at the VAE's
    lr of 5e-5 it would hardly leave its initial value). The log-scale starts near 0 (scale ≈ the
    [-1, 1] range), as PixelCNN++'s does: starting it at −2 left 10.3 bits/dim after 100 steps on
    triangles at lr 5e-5, starting it at 0 left 2.4.
    """

    likelihood = "discrete"
    # Not the study's model: it trains on the ELBO whose bound in bits/dim it reports.
    channel_mean_reconstruction = False

    def __init__(self, image_shape, hparams=None, arch: str = DEFAULT_ARCH):
        super().__init__(image_shape, hparams, arch)
        self.decoder = self.architecture.generator(self.image_shape, self.z_dim, decoder=True,
                                                   out_channels=2 * self.image_shape[0])

    def split(self, decoded: Tensor) -> tuple[Tensor, Tensor]:
        """(means in [0,1], log-scales clamped to [-7, 2]) of the decoder's 2C output channels."""
        mean, raw = decoded.chunk(2, dim=1)
        return mean, raw.clamp(-7.0, 2.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.split(self.decoder(z))[0]

    def reconstruction_nll(self, x: Tensor, decoded: Tensor) -> Tensor:
        return -discretized_logistic_log_prob(x, *self.split(decoded))


@register_model("aae")
class AdversarialAutoencoder(GenerativeModel):
    """Deterministic encoder, Bernoulli decoder, and a code critic that tells prior draws from
    codes; each step: reconstruction update, critic update, encoder update against the critic."""

    family = "autoencoder"
    noise = "normal"
    kept_networks = ("decoder",)  # it has no likelihood of its own: samples and AIS need only the decoder
    search_space = vae_search_space(**{"lambda": (1.0, LogUniform(-1, 1), LogUniform(-0.5, 0.5))})

    architectures = ("infogan", "dcgan")  # as the VAEs': the architecture's D and G bodies

    def __init__(self, image_shape, hparams=None, arch: str = DEFAULT_ARCH):
        super().__init__(image_shape, hparams, arch)
        self.encoder = self.architecture.discriminator(
            self.image_shape, batch_norm=self.hparams.get("encoder_batch_norm", True), out_dim=self.z_dim)
        self.decoder = self.architecture.generator(self.image_shape, self.z_dim, decoder=True)
        # The critic works on 64-d codes: a small MLP, as in Makhzani et al. (two hidden layers).
        self.critic = nn.Sequential(nn.Linear(self.z_dim, 512), nn.LeakyReLU(0.2), nn.Linear(512, 512),
                                    nn.LeakyReLU(0.2), nn.Linear(512, 1))

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        if not self._opts:
            self._opts = {"autoencoder": self.make_adam(list(self.encoder.parameters()) + list(self.decoder.parameters())),
                          "critic": self.make_adam(self.critic.parameters()),
                          "encoder": self.make_adam(self.encoder.parameters())}
        return self._opts

    def parameter_counts(self) -> Dict[str, int]:
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder),
                "critic": count_parameters(self.critic)}

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        opts = self.optimizers()
        recon = bernoulli_nll(real, self.decoder(self.encoder(real))).mean()
        opts["autoencoder"].zero_grad(set_to_none=True)
        recon.backward()
        opts["autoencoder"].step()

        prior = self.sample_noise(real.shape[0], rng)
        with torch.no_grad():
            codes = self.encoder(real)
        d_loss = F.softplus(-self.critic(prior)).mean() + F.softplus(self.critic(codes)).mean()
        opts["critic"].zero_grad(set_to_none=True)
        d_loss.backward()
        opts["critic"].step()

        self.critic.requires_grad_(False)
        g_loss = self.hparams["lambda"] * F.softplus(-self.critic(self.encoder(real))).mean()
        opts["encoder"].zero_grad(set_to_none=True)
        g_loss.backward()
        opts["encoder"].step()
        self.critic.requires_grad_(True)

        self.steps += 1
        self.g_steps += 1
        return {"loss": recon.detach(), "d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
