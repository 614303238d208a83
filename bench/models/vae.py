"""The study's VAE: Gaussian encoder on the D body, Bernoulli decoder on the G body with ReLU (PROTOCOL §1-2).

−ELBO = Σ_pixels BCE(x, decoder(z)) + KL(q(z|x) ‖ N(0, I)), batch mean, one Adam over all weights.
The decoder's output is clipped to [1e-8, 1 − 1e-8] and σ = 1e-6 + softplus(·), as compare_gan.
Samples are the decoder's Bernoulli means, as in the study.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from bench.models.architecture import Discriminator, Generator, count_parameters
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import Fixed, LogUniform, SearchSpace, Uniform

Tensor = torch.Tensor


def bernoulli_nll(x: Tensor, probs: Tensor) -> Tensor:
    """−log p(x|z) per example, summed over pixels, for probabilities clipped as compare_gan does."""
    p = probs.clamp(1e-8, 1 - 1e-8)
    return -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)


def gaussian_kl(mu: Tensor, sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma²) ‖ N(0, I)) per example (compare_gan adds 1e-8 inside the log)."""
    return 0.5 * (mu.square() + sigma.square() - torch.log(1e-8 + sigma.square()) - 1).sum(1)


@register_model("vae")
class VAE(GenerativeModel):
    """Variational autoencoder with a Bernoulli decoder (Kingma & Welling 2014)."""

    family = "vae"
    explicit = True
    noise = "normal"
    # The study searched only lr and β1 for the VAE; the encoder keeps the D body's batch norm
    # on (compare_gan's VAE follows its discriminator_batchnorm flag; its default is on).
    search_space = SearchSpace(
        defaults=dict(lr=5e-5, beta1=0.5),
        wide={"lr": LogUniform(-5, -2), "beta1": Uniform(0.0, 1.0)},
        narrow={"lr": LogUniform(-4, -3), "beta1": Fixed(0.5)},
    )

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        self.encoder = Discriminator(self.image_shape, batch_norm=True, out_dim=2 * self.z_dim)
        self.decoder = Generator(self.image_shape, self.z_dim, activation="relu")
        self._opts: Dict[str, torch.optim.Optimizer] = {}

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        if not self._opts:
            self._opts = {"model": self.make_adam(self.parameters())}
        return self._opts

    def parameter_counts(self) -> Dict[str, int]:
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder)}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.encoder(x).chunk(2, dim=1)
        return mu, 1e-6 + F.softplus(raw)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def negative_elbo(self, x: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        mu, sigma = self.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=rng, device=mu.device)
        recon = bernoulli_nll(x, self.decoder(z)).mean()
        kl = gaussian_kl(mu, sigma).mean()
        return {"loss": recon + kl, "recon": recon, "kl": kl}

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        opt = self.optimizers()["model"]
        terms = self.negative_elbo(real, rng)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        self.steps += 1
        self.g_steps += 1
        return {k: v.detach() for k, v in terms.items()}
