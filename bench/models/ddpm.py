"""DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models") on a small U-Net.

Forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) on images scaled to [−1, 1], linear
β_t from 1e-4 to 0.02 over T = 1000 steps (the paper's). Training minimises the paper's L_simple,
E ‖ε − ε_θ(x_t, t)‖² over t ~ U{1..T}. The reverse process has the fixed variances σ_t² = β̃_t
(the posterior's; at t = 1, where β̃_1 = 0, β̃_2, as the authors' code clips it), which is the model
both the reported bound and the sampler use:

- likelihood: the variational bound L_T + Σ_{t≥2} L_{t−1} + L_0 in bits/dim, L_0 the discretised
  Gaussian decoder over the 256 values of each dimension (§3.3). The sum over t is exact when
  k ≥ T timesteps are evaluated per image, and otherwise an unbiased stratified estimate from k
  timesteps (one drawn in each of k equal strata of 1..T, weighted by the stratum's size); the
  record states T and k (bench/model_metrics/metric_nll.py);
- samples: ancestral sampling from x_T = z, in `sample_steps` steps (T by default; fewer take
  the respaced chain of Nichol & Dhariwal 2021 over evenly spaced timesteps), the last step
  returning the mean. The predicted x_0 is not clipped inside the chain, so that the sampler is
  the model whose bound is reported; the images are clamped to [0, 1] at the end.

Not the paper's: no EMA of the weights (no other model in the table gets one, and at the study's
budgets a 0.9999 average still weighs the first steps heavily) and no dropout; batch 64 as every
model here (the paper: 128).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.architecture import count_parameters
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import Domain, Fixed, adam_search_space
from bench.progress import bar

Tensor = torch.Tensor

WIDTH = 88  # channels of the first level (levels: WIDTH × LEVEL_MULTS): about the study generator's parameters
LEVEL_MULTS = {28: (1, 2, 2), 32: (1, 2, 2), 64: (1, 2, 2, 2)}  # 28 → 14 → 7, 32 → 16 → 8, ...
GROUPS = 8  # group-norm groups
BETA_1, BETA_T = 1e-4, 0.02  # the paper's linear schedule
HALF_BIN = 1.0 / 255.0  # half of one 8-bit bin on the [−1, 1] scale


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """The Transformer's sinusoidal embedding of integer timesteps, as the paper's U-Net."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(GROUPS, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(GROUPS, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SelfAttention(nn.Module):
    """One head of self-attention over positions, residual (the paper's U-Net has it at 16×16)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.out = nn.GroupNorm(GROUPS, c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        return x + self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    """ε_θ(x_t, t): one residual block per level on the way down, one (on the skip's concatenation)
    per level on the way up, two around a self-attention block at the lowest resolution."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = WIDTH):
        super().__init__()
        c, h, _ = image_shape
        mults = LEVEL_MULTS.get(h, (1, 2, 2))
        emb = 4 * width
        self.width = width
        self.embed = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(c, width, 3, padding=1)
        chans = [width * m for m in mults]
        self.down = nn.ModuleList(ResBlock(cin, cout, emb) for cin, cout in zip([width] + chans[:-1], chans))
        self.downsample = nn.ModuleList(nn.Conv2d(ch, ch, 3, stride=2, padding=1) for ch in chans[:-1])
        self.mid = nn.ModuleList([ResBlock(chans[-1], chans[-1], emb), ResBlock(chans[-1], chans[-1], emb)])
        self.attention = SelfAttention(chans[-1])
        ups = list(reversed(chans))
        self.up = nn.ModuleList(ResBlock(cin + skip, skip, emb) for cin, skip in zip([ups[0]] + ups[:-1], ups))
        self.upsample = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for ch in ups[:-1])
        self.out_norm, self.out = nn.GroupNorm(GROUPS, width), nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)  # ε_θ starts at 0, as the paper's

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.embed(timestep_embedding(t, self.width).to(x.dtype))
        h, skips = self.inp(x), []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid[1](self.attention(self.mid[0](h, emb)), emb)
        for i, block in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = self.upsample[i - 1](F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = block(torch.cat([h, skip], 1), emb)
        return self.out(F.silu(self.out_norm(h)))


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """log P(x) per example of x on the 256-value grid of [−1, 1] under N(mean, std²) integrated
    over each value's bin, the end bins taking the tails (the paper's L_0)."""
    plus, minus = (x - mean + HALF_BIN) / std, (x - mean - HALF_BIN) / std
    # log(Φ(plus) − Φ(minus)) in log space, on the side of the mean where the tail is small: Φ
    # itself underflows past about 5σ in float32, and a clamp there would under-state the bound.
    below = x <= mean  # Φ(plus) − Φ(minus) = Φ(−minus) − Φ(−plus)
    hi = torch.special.log_ndtr(torch.where(below, plus, -minus))
    lo = torch.special.log_ndtr(torch.where(below, minus, -plus))
    inner = hi + torch.log1p(-torch.exp(lo - hi).clamp_max(1 - 1e-7))
    log_p = torch.where(x < -0.999, torch.special.log_ndtr(plus),
                        torch.where(x > 0.999, torch.special.log_ndtr(-minus), inner))
    return log_p.flatten(1).sum(1)


@register_model("ddpm")
class DDPM(GenerativeModel):
    """Denoising diffusion (Ho et al. 2020): ε-prediction U-Net, VLB in bits/dim, ancestral sampling.

    Defaults from the paper: T = 1000, linear β 1e-4 → 0.02, Adam lr 2e-4 (its CIFAR-10 rate) with
    β1 0.9 (Adam's default, which the paper keeps); lr and β1 searched over the study's shared
    Adam ranges like the other non-GAN models; T fixed (`--set timesteps=N` changes it). The sampling
    steps are the protocol's (`--sample-steps`, default 1000), recorded with each trial.
    The U-Net (WIDTH channels at the first level, levels ×1, ×2, ×2; a fourth on 64×64) has 5.98M
    parameters on 28×28 and 32×32, under the study's generator (6.64M, 8.62M; `bench list models`).
    """

    family = "diffusion"
    explicit = True
    likelihood = "discrete"
    noise = "normal"  # z is x_T
    architectures = None  # a U-Net of its own
    invertible_by_gradient = False  # a sample is not a differentiable function of z alone
    bound_in_one_call = True  # k = timesteps evaluated per image (`bound_protocol`)
    iterative_sampler = True
    search_space = dataclasses.replace(
        adam_search_space(lr=2e-4, beta1=0.9, narrow_beta1=0.9,
                          timesteps=(1000, Fixed(1000), Fixed(1000))),
        domains={"timesteps": Domain(2.0)})

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        self.z_dim = math.prod(self.image_shape)
        self.timesteps = int(self.hparams["timesteps"])
        self.sample_steps = self.timesteps  # a trial sets its protocol's (build_model)
        self.unet = UNet(self.image_shape)
        # ᾱ in float64 on the host (the sampler's coefficients, read without a device sync) and
        # as a buffer on the model's device (the training step's); derived, so not checkpointed.
        self.alpha_bar_host = torch.cumprod(1 - torch.linspace(BETA_1, BETA_T, self.timesteps, dtype=torch.float64), 0)
        self.register_buffer("alpha_bar", self.alpha_bar_host.float(), persistent=False)
        beta_2 = BETA_1 + (BETA_T - BETA_1) / (self.timesteps - 1)  # in Python: the model may be on meta
        self.decoder_std = math.sqrt(BETA_1 / (1 - (1 - BETA_1) * (1 - beta_2)) * beta_2)  # √β̃_2, the clipped σ_1

    @classmethod
    def sampling_steps(cls, hparams: dict, asked: int) -> int:
        return min(int(asked), int(cls.search_space.resolve(hparams)["timesteps"]))

    def parameter_counts(self) -> Dict[str, int]:
        return {"unet": count_parameters(self.unet)}

    def _alpha_bar(self, t: Tensor) -> Tensor:
        """ᾱ at 0-based timestep indices t (index i is the paper's t = i + 1), [N, 1, 1, 1]."""
        return self.alpha_bar[t].view(-1, 1, 1, 1)

    def noised(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        a = self._alpha_bar(t)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        x0 = 2 * real - 1
        t = torch.randint(0, self.timesteps, (len(x0),), generator=rng, device=x0.device)
        eps = torch.randn(x0.shape, generator=rng, device=x0.device, dtype=x0.dtype)
        loss = (self.unet(self.noised(x0, t, eps), t) - eps).square().mean()
        self.minimize(loss)
        return {"loss": loss.detach()}

    # --- the bound -----------------------------------------------------------------------

    def bound_protocol(self, k: int) -> dict:
        """What `log_weights(x, k)` computes, for the NLL record."""
        used = min(k, self.timesteps)
        exact = used == self.timesteps
        return {"estimator": f"variational bound over T = {self.timesteps} timesteps, "
                             + ("every timestep" if exact else f"stratified estimate from {used} per image"),
                "k": used, "timesteps": self.timesteps}

    def term(self, x0: Tensor, t: Tensor, rng: torch.Generator) -> Tensor:
        """The bound's term of 0-based timestep t per example, in nats: L_0 at t = 0, else L_t."""
        eps = torch.randn(x0.shape, generator=rng, device=x0.device, dtype=x0.dtype)
        xt = self.noised(x0, t, eps)
        eps_hat = self.unet(xt, t)
        a_bar = self._alpha_bar(t)
        a_bar_prev = self._alpha_bar((t - 1).clamp_min(0))
        alpha = a_bar / a_bar_prev.where(t.view(-1, 1, 1, 1) > 0, torch.ones_like(a_bar_prev))
        beta = 1 - alpha
        # t = 0: −log p(x_0 | x_1), the discretised Gaussian of mean μ_θ(x_1, 1) and σ_1² = β̃_2.
        mean = (xt - beta / (1 - a_bar).sqrt() * eps_hat) / alpha.sqrt()
        decoder = -discretized_gaussian_log_prob(x0, mean, self.decoder_std)
        # t ≥ 1: KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) with σ_t² = β̃_t: a weighted ‖ε − ε_θ‖².
        var = (1 - a_bar_prev) / (1 - a_bar) * beta
        weight = beta.square() / (2 * var.clamp_min(1e-20) * alpha * (1 - a_bar))
        kl = (weight * (eps - eps_hat).square()).flatten(1).sum(1)
        return torch.where(t == 0, decoder, kl)

    def log_weights(self, x: Tensor, k: int, rng: torch.Generator) -> Tensor:
        """−(L_T + Σ_t L_{t−1} + L_0) per example: [1, N]; the sum over t from min(k, T) timesteps
        per image, one uniformly drawn in each of that many equal strata (exact when k ≥ T)."""
        x0 = 2 * x - 1
        n, T = len(x0), self.timesteps
        strata = min(k, T)
        a_T = float(self.alpha_bar_host[-1])
        prior = 0.5 * (a_T * x0.square() + (1 - a_T) - math.log(1 - a_T) - 1).flatten(1).sum(1)  # L_T
        total = prior
        edges = [round(j * T / strata) for j in range(strata + 1)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            t = torch.randint(lo, hi, (n,), generator=rng, device=x0.device)
            total = total + (hi - lo) * self.term(x0, t, rng)
        return -total[None]

    # --- sampling ------------------------------------------------------------------------

    def decode(self, z: Tensor) -> Tensor:
        """Ancestral sampling from x_T = z [N, C·H·W] in `sample_steps` steps. The chain's noise
        comes from a generator seeded by z itself, so that the same codes give the same images."""
        x = z.view(-1, *self.image_shape)
        count = max(1, min(self.sample_steps, self.timesteps))
        steps = (torch.linspace(0, self.timesteps - 1, count, dtype=torch.float64).round().long().tolist()
                 if count > 1 else [self.timesteps - 1])  # one step: x_0 predicted from x_T at once
        seed = int((z.flatten()[:256].double() * 2 ** 20).round().abs().sum().item()) % (2 ** 62)
        rng = torch.Generator(device=z.device).manual_seed(seed)
        a_bar = self.alpha_bar_host.tolist()
        for i in bar(range(len(steps) - 1, -1, -1), desc=f"DDPM sampling {len(x)} images", unit="step"):
            t = steps[i]
            a_t, a_prev = a_bar[t], a_bar[steps[i - 1]] if i > 0 else 1.0
            beta = 1 - a_t / a_prev  # of the respaced chain: β_t itself when every timestep is taken
            eps_hat = self.unet(x, torch.full((len(x),), t, device=x.device))
            x = (x - beta / math.sqrt(1 - a_t) * eps_hat) / math.sqrt(1 - beta)
            if i > 0:
                std = math.sqrt((1 - a_prev) / (1 - a_t) * beta)
                x = x + std * torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        return ((x + 1) / 2).clamp(0, 1)
