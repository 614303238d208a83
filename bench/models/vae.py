"""The study's VAE: Gaussian encoder on the D body, Bernoulli decoder on the G body with ReLU (PROTOCOL §1-2).

Training loss as compare_gan v1 (`gans/VAE.py`): the Bernoulli reconstruction term summed over
height and width and averaged over batch *and channels*, plus KL(q(z|x) ‖ N(0, I)) summed over z
and averaged over the batch; one Adam over all weights. On RGB data the reconstruction term is
thus a third of the true −log p(x|z), and the KL term three times stronger than in the ELBO; the
likelihood the VAE reports (`log_weights`) is the true sum over every dimension all the same.
The decoder's output is clipped to [1e-8, 1 − 1e-8] and σ = 1e-6 + softplus(·), as compare_gan.
The encoder's batch norm follows the searched switch `encoder_batch_norm` (v1's
`discriminator_batchnorm`: on by default, searched in both ranges, off in the narrow range's
defaults). Samples are the decoder's Bernoulli means, as in the study.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F

from bench.models.architecture import count_parameters
from bench.models.architectures import DEFAULT_ARCH
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import Choice, SearchSpace, adam_search_space

Tensor = torch.Tensor
LOG_2PI = math.log(2 * math.pi)


def bernoulli_nll(x: Tensor, probs: Tensor) -> Tensor:
    """−log p(x|z) per example, summed over pixels, for probabilities clipped as compare_gan does."""
    p = probs.clamp(1e-8, 1 - 1e-8)
    return -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)


def gaussian_kl(mu: Tensor, sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma²) ‖ N(0, I)) per example (compare_gan adds 1e-8 inside the log)."""
    return 0.5 * (mu.square() + sigma.square() - torch.log(1e-8 + sigma.square()) - 1).sum(1)


def vae_search_space(**extra) -> SearchSpace:
    """v1's VAE ranges (`params.py`, VAEHyperParams): lr 5e-5 and β1 0.5 by default on the shared
    Adam ranges, the encoder's batch norm searched in both ranges, its default on in the wide range
    and off in the narrow one; plus a model's own entries as (default, wide, narrow)."""
    space = adam_search_space(lr=5e-5, beta1=0.5, narrow_beta1=0.5,
                              encoder_batch_norm=(True, Choice((True, False)), Choice((True, False))), **extra)
    return SearchSpace(space.defaults, space.wide, space.narrow, narrow_defaults={"encoder_batch_norm": False})


@register_model("vae")
class VAE(GenerativeModel):
    """Variational autoencoder with a Bernoulli decoder (Kingma & Welling 2014)."""

    family = "vae"
    kept_networks = ("decoder",)  # samples and AIS
    bound_networks = ("encoder",)  # the importance-weighted bound: kept with --keep weights
    explicit = True
    # Its Bernoulli likelihood is a likelihood of binary images: NLL in nats on binarised test
    # images (PROTOCOL §5), though it trains on gray values as the study did.
    likelihood = "binarized"
    noise = "normal"
    search_space = vae_search_space()
    # v1 averages the reconstruction term over channels (see the module docstring); a model whose
    # training objective is the bound it reports (vae_dl) sets this False.
    channel_mean_reconstruction: bool = True

    # Encoder and decoder are the architecture's D and G bodies; not SNDCGAN's, whose spectral norm
    # is a constraint on a GAN's critic, not part of an encoder.
    architectures = ("infogan", "dcgan")

    def __init__(self, image_shape, hparams=None, arch: str = DEFAULT_ARCH):
        super().__init__(image_shape, hparams, arch)
        # .get: a subclass whose own search space predates the switch keeps the encoder's batch norm on.
        self.encoder = self.architecture.discriminator(
            self.image_shape, batch_norm=self.hparams.get("encoder_batch_norm", True), out_dim=2 * self.z_dim)
        self.decoder = self.architecture.generator(self.image_shape, self.z_dim, decoder=True)

    def parameter_counts(self) -> Dict[str, int]:
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder)}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.posterior(self.encoder(x))

    @staticmethod
    def posterior(h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sigma) of q(z|x) from the encoder's output h; the last axis is z (a pack's too)."""
        mu, raw = h.chunk(2, dim=-1)
        return mu, 1e-6 + F.softplus(raw)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def negative_elbo(self, x: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        """The training loss and its terms, batch means; `recon` is per channel where
        `channel_mean_reconstruction` (v1's form), the whole −log p(x|z) otherwise."""
        mu, sigma = self.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=rng, device=mu.device)
        return self.elbo_terms(x, mu, sigma, self.decoder(z), self.kl_weight())

    def elbo_terms(self, x: Tensor, mu: Tensor, sigma: Tensor, decoded: Tensor, kl_weight) -> Dict[str, Tensor]:
        """The loss from one batch's posterior and decoding; a pure function of its arguments,
        so that a pack (bench/packing) computes it per member under vmap."""
        recon = self.reconstruction_nll(x, decoded).mean()
        if self.channel_mean_reconstruction:
            recon = recon / x.shape[1]  # Σ over (C, H, W) / C = the mean over channels of Σ over (H, W)
        kl = gaussian_kl(mu, sigma).mean()
        return {"loss": recon + kl_weight * kl, "recon": recon, "kl": kl}

    def log_weights(self, x: Tensor, k: int, rng: torch.Generator) -> Tensor:
        """log p(x|z) + log p(z) − log q(z|x) for k draws z ~ q(z|x): [k, N] (Burda et al. 2016)."""
        mu, sigma = self.encode(x)
        eps = torch.randn((k, *mu.shape), generator=rng, device=mu.device)
        z = mu + sigma * eps
        log_px = -self.reconstruction_nll(x.repeat(k, *([1] * (x.dim() - 1))), self.decoder(z.flatten(0, 1)))
        log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.square() + LOG_2PI).sum(-1) - sigma.log().sum(-1)
        return log_px.view(k, -1) + log_pz - log_qz

    def reconstruction_nll(self, x: Tensor, decoded: Tensor) -> Tensor:
        """−log p(x|z) per example in nats, `decoded` being the decoder's whole output (for
        vae_dl, means and log-scales); the study's VAE: Bernoulli pixels."""
        return bernoulli_nll(x, decoded)

    def kl_weight(self) -> float:
        return 1.0

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        terms = self.negative_elbo(real, rng)
        self.minimize(terms["loss"])
        return {k: v.detach() for k, v in terms.items()}
