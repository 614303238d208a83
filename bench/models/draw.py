"""DRAW (Gregor et al. 2015, "DRAW: A Recurrent Neural Network For Image Generation").

A VAE whose latent code is a sequence: for each of T glimpses an encoder LSTM reads the image and
the error image x − σ(c) through a Gaussian-filterbank attention window placed by the previous
decoder state, draws z_t ~ q(z_t | h_enc_t), and a decoder LSTM writes a patch onto the canvas c
through a second attention window. p(x | z_1..T) is Bernoulli with probabilities σ(c_T); the loss
is the ELBO summed over pixels (the paper's L^x + L^z, no channel mean as in the study's VAE), and
the reported likelihood is the importance-weighted bound of the other VAEs over whole sequences.

Attention (§3.2): from h_dec a linear layer gives (g̃_X, g̃_Y, log σ², log δ̃, log γ); the N×N grid
is centred on g_X = (A + 1)/2 (g̃_X + 1), g_Y = (B + 1)/2 (g̃_Y + 1), with stride
δ = (max(A, B) − 1)/(N − 1) δ̃, and each filter is a Gaussian of variance σ² normalised over the
image axis. Colour images share one window across channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.architecture import count_parameters
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import adam_search_space
from bench.models.vae import LOG_2PI, gaussian_kl

Tensor = torch.Tensor


@dataclass(frozen=True)
class DrawSize:
    glimpses: int
    hidden: int  # LSTM units of the encoder and of the decoder
    z: int  # latent units per glimpse
    read: int  # N of the read window
    write: int  # N of the write window


# The paper's Table 3: MNIST (grey images) and CIFAR-10 (colour).
SIZES = {1: DrawSize(glimpses=64, hidden=256, z=100, read=2, write=5),
         3: DrawSize(glimpses=64, hidden=400, z=200, read=5, write=5)}


def filterbanks(params: Tensor, n: int, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """(F_Y [B, N, H], F_X [B, N, W], γ [B]) of an N×N attention window from its 5 raw parameters."""
    gx, gy, log_var, log_delta, log_gamma = params.unbind(-1)
    gx = (width + 1) / 2 * (gx + 1)
    gy = (height + 1) / 2 * (gy + 1)
    delta = (max(height, width) - 1) / (n - 1) * log_delta.exp()
    var = log_var.exp()
    offsets = torch.arange(n, device=params.device, dtype=params.dtype) - n / 2 + 0.5  # i − N/2 − 0.5, i = 1..N

    def bank(centre: Tensor, size: int) -> Tensor:
        mu = centre[:, None] + offsets * delta[:, None]  # [B, N]
        # Image coordinates 1..size, as the centres above (g = (A + 1)/2 is the image's middle).
        a = torch.arange(1, size + 1, device=params.device, dtype=params.dtype)
        f = torch.exp(-(a - mu[..., None]).square() / (2 * var[:, None, None]))
        return f / (f.sum(-1, keepdim=True) + 1e-8)

    return bank(gy, height), bank(gx, width), log_gamma.exp()


@register_model("draw")
class DRAW(GenerativeModel):
    """DRAW, a recurrent VAE with read/write attention over 64 glimpses (Gregor et al. 2015).

    Sizes are the paper's Table 3: on grey images (its MNIST model) 64 glimpses, 256 LSTM units,
    100 latent units per glimpse, a 2×2 read and a 5×5 write window; on colour images (its
    CIFAR-10 model) 400 units, 200 latents, 5×5 read and write. The paper trains with Adam and
    states no learning rate: the default lr 3e-4 (β1 0.9) is the one of the reimplementation by
    Bornschein (github.com/jbornschein/draw) that reproduces its MNIST samples; searched over the
    study's shared Adam ranges like the other non-GAN models.
    """

    family = "vae"
    explicit = True
    likelihood = "binarized"  # Bernoulli pixels, as the paper's binarised-MNIST NLL (≤ 80.97 nats)
    noise = "normal"
    architectures = None  # recurrent networks of its own
    kept_networks = ("decoder",)  # samples
    bound_networks = ("encoder",)  # the importance-weighted bound: kept with --keep weights
    search_space = adam_search_space(lr=3e-4, beta1=0.9, narrow_beta1=0.9)

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        c = self.image_shape[0]
        self.size = size = SIZES[3 if c == 3 else 1]
        self.z_dim = size.glimpses * size.z
        self.encoder = nn.ModuleDict({
            "lstm": nn.LSTMCell(2 * c * size.read ** 2 + size.hidden, size.hidden),
            "posterior": nn.Linear(size.hidden, 2 * size.z),
            "read_window": nn.Linear(size.hidden, 5),  # placed by h_dec, used only to read
        })
        self.decoder = nn.ModuleDict({
            "lstm": nn.LSTMCell(size.z, size.hidden),
            "write_patch": nn.Linear(size.hidden, c * size.write ** 2),
            "write_window": nn.Linear(size.hidden, 5),
        })

    def parameter_counts(self) -> Dict[str, int]:
        return {"encoder": count_parameters(self.encoder), "decoder": count_parameters(self.decoder)}

    # --- the recurrence --------------------------------------------------------------------

    def read(self, x: Tensor, x_err: Tensor, h_dec: Tensor) -> Tensor:
        fy, fx, gamma = filterbanks(self.encoder["read_window"](h_dec), self.size.read, *self.image_shape[1:])
        glimpse = torch.einsum("bnh,bchw,bmw->bcnm", fy, torch.cat([x, x_err], 1), fx)
        return gamma[:, None] * glimpse.flatten(1)

    def write(self, h_dec: Tensor) -> Tensor:
        c, n = self.image_shape[0], self.size.write
        patch = self.decoder["write_patch"](h_dec).view(-1, c, n, n)
        fy, fx, gamma = filterbanks(self.decoder["write_window"](h_dec), n, *self.image_shape[1:])
        return torch.einsum("bnh,bcnm,bmw->bchw", fy, patch, fx) / gamma[:, None, None, None]

    def initial(self, batch: int, like: Tensor):
        zeros = like.new_zeros(batch, self.size.hidden)
        return (zeros, zeros), (zeros, zeros), like.new_zeros(batch, *self.image_shape)

    def infer(self, x: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One pass over the glimpses with z_t drawn from q: (canvas c_T, z, μ, σ), the last three [T, B, z]."""
        enc, dec, canvas = self.initial(len(x), x)
        zs, mus, sigmas = [], [], []
        for _ in range(self.size.glimpses):
            x_err = x - torch.sigmoid(canvas)
            enc = self.encoder["lstm"](torch.cat([self.read(x, x_err, dec[0]), dec[0]], 1), enc)
            mu, raw = self.encoder["posterior"](enc[0]).chunk(2, -1)
            sigma = 1e-6 + F.softplus(raw)
            z = mu + sigma * torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
            dec = self.decoder["lstm"](z, dec)
            canvas = canvas + self.write(dec[0])
            zs.append(z), mus.append(mu), sigmas.append(sigma)
        return canvas, torch.stack(zs), torch.stack(mus), torch.stack(sigmas)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli means σ(c_T) for codes z [B, T·z], glimpse-major."""
        _, dec, canvas = self.initial(len(z), z)
        for z_t in z.view(len(z), self.size.glimpses, self.size.z).unbind(1):
            dec = self.decoder["lstm"](z_t, dec)
            canvas = canvas + self.write(dec[0])
        return torch.sigmoid(canvas)

    # --- objectives ------------------------------------------------------------------------

    @staticmethod
    def reconstruction_nll(x: Tensor, canvas: Tensor) -> Tensor:
        """−log p(x | z) per example in nats, Bernoulli with logits c_T, summed over pixels."""
        return F.binary_cross_entropy_with_logits(canvas, x, reduction="none").flatten(1).sum(1)

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        canvas, _, mu, sigma = self.infer(real, rng)
        recon = self.reconstruction_nll(real, canvas).mean()
        kl = gaussian_kl(mu.transpose(0, 1).flatten(1), sigma.transpose(0, 1).flatten(1)).mean()  # L^z: over z and glimpses
        loss = recon + kl
        self.minimize(loss)
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}

    def log_weights(self, x: Tensor, k: int, rng: torch.Generator) -> Tensor:
        """log p(x | z_1..T) + Σ_t [log p(z_t) − log q(z_t | ·)] for k whole sequences drawn from q: [k, N]."""
        xs = x.repeat(k, *([1] * (x.dim() - 1)))
        canvas, z, mu, sigma = self.infer(xs, rng)
        eps = (z - mu) / sigma
        log_pz = -0.5 * (z.square() + LOG_2PI).sum((0, 2))
        log_qz = (-0.5 * (eps.square() + LOG_2PI) - sigma.log()).sum((0, 2))
        return (log_pz - log_qz - self.reconstruction_nll(xs, canvas)).view(k, -1)
