"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): a flow of affine couplings with an exact likelihood.

x (8-bit values k/255) → y = (255·x + u)/256, u ~ U[0,1) → s = logit(α + (1 − 2α)·y), α = 0.05
→ affine couplings → u ~ N(0, I), and log p(y) = log N(u) + log|det ∂u/∂s| + log|det ∂s/∂y|.
The logit keeps the flow away from the infinite slopes at 0 and 1; its domain is slightly wider than
[0,1), so a little mass falls outside [0,1)^D and the reported bits/dim (metric_nll: −log p(y)/(D ln 2)
+ 8) stay a valid bound on the discrete likelihood.

Architecture, fixed for every dataset shape (only the image channels C change the counts):
- H, W even (two scales, as Dinh et al.): 3 checkerboard couplings at C×H×W (s,t nets of 32 filters),
  squeeze 2×2 → 4C×H/2×W/2, 3 channel-wise couplings then 3 checkerboard couplings (64 filters);
  9 couplings: 547,569 parameters at (1,28,28), 635,859 at (3,32,32).
- H or W odd (no squeeze possible): 6 alternating checkerboard couplings at C×H×W, 32 filters
  (118,098 parameters at (1,H,W)), a documented fallback; the study's shapes are all even.
An s,t net is conv3×3 → one residual block (two conv3×3) → conv3×3, the last zero-initialised so the
flow starts as the identity; s = scale·tanh(raw) with a learned per-channel scale keeps steps stable.
No batch norm: training and evaluation compute the same function, and sampling is exact inversion.
The latent is all D variables (no factoring out), so z_dim = C·H·W and decode(z) inverts the flow.
"""

from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.architecture import count_parameters
from bench.models.base import GenerativeModel
from bench.models.registry import register_model
from bench.models.search_space import adam_search_space

Tensor = torch.Tensor
ALPHA = 0.05
LOG_2PI = math.log(2 * math.pi)


class ResNet(nn.Module):
    """The s,t network of a coupling: small conv resnet, zero-initialised output."""

    def __init__(self, c_in: int, c_out: int, hidden: int, blocks: int):
        super().__init__()
        conv = lambda a, b: nn.Conv2d(a, b, 3, padding=1)  # noqa: E731
        self.inp = conv(c_in, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), conv(hidden, hidden), nn.ReLU(), conv(hidden, hidden)) for _ in range(blocks)
        )
        self.out = conv(hidden, c_out)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        h = self.inp(h)
        for block in self.blocks:
            h = h + block(h)
        return self.out(F.relu(h))


class AffineCoupling(nn.Module):
    """v = b⊙x + (1−b)⊙(x·e^s + t) with s, t = net(b⊙x): a triangular Jacobian, log-det Σ (1−b)⊙s.

    `mask` is "checkerboard" (spatial parity) or "channel" (first/second half of the channels);
    `parity` swaps which half is kept. The mask is also fed to the net as one extra input channel."""

    def __init__(self, channels: int, mask: str, parity: int, hidden: int, blocks: int = 1):
        super().__init__()
        self.mask_kind, self.parity = mask, int(parity)
        self.net = ResNet(channels + 1, 2 * channels, hidden, blocks)
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def mask(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        if self.mask_kind == "checkerboard":
            ij = torch.arange(h, device=x.device)[:, None] + torch.arange(w, device=x.device)
            b = ((ij + self.parity) % 2 == 0).expand(c, h, w)
        else:
            b = ((torch.arange(c, device=x.device) < c // 2) != bool(self.parity)).view(c, 1, 1).expand(c, h, w)
        return b.to(x.dtype)[None]

    def _st(self, x: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        raw, t = self.net(torch.cat([x * b, b[:, :1].expand(len(x), 1, -1, -1)], 1)).chunk(2, 1)
        return (1 - b) * self.scale * torch.tanh(raw), (1 - b) * t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = self.mask(x)
        s, t = self._st(x, b)
        return x * s.exp() + t, s.flatten(1).sum(1)

    def inverse(self, v: Tensor) -> Tensor:
        b = self.mask(v)
        s, t = self._st(v, b)  # b⊙v = b⊙x, so the net sees what it saw going forward
        return (v - t) * (-s).exp()


class Squeeze(nn.Module):
    """Space-to-depth 2×2: C×H×W → 4C×H/2×W/2, volume preserving (log-det 0)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
        return x, x.new_zeros(n)

    def inverse(self, v: Tensor) -> Tensor:
        n, c, h, w = v.shape
        return v.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


def build_layers(image_shape: tuple[int, int, int]) -> nn.ModuleList:
    """The coupling stack of the module docstring for one image shape."""
    c, h, w = image_shape
    if h % 2 or w % 2:
        return nn.ModuleList(AffineCoupling(c, "checkerboard", i % 2, 32) for i in range(6))
    return nn.ModuleList(
        [AffineCoupling(c, "checkerboard", i % 2, 32) for i in range(3)]
        + [Squeeze()]
        + [AffineCoupling(4 * c, "channel", i % 2, 64) for i in range(3)]
        + [AffineCoupling(4 * c, "checkerboard", i % 2, 64) for i in range(3)]
    )


@register_model("realnvp")
class RealNVP(GenerativeModel):
    """Affine-coupling flow on logit-transformed, uniformly dequantised pixels (Dinh et al. 2017)."""

    family = "flow"
    explicit = True
    likelihood = "dequantized"
    exact_likelihood = True
    noise = "normal"
    search_space = adam_search_space(lr=1e-3, beta1=0.9, narrow_beta1=0.9)
    architectures = None  # its own networks: the same under every --arch

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        self.z_dim = math.prod(self.image_shape)  # every variable is latent: sampling inverts the flow
        self.layers = build_layers(self.image_shape)

    def parameter_counts(self) -> Dict[str, int]:
        return {"flow": count_parameters(self.layers)}

    def forward_flow(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y in [0,1)^D, [N, C, H, W] → (u [N, D], log|det ∂u/∂y| [N]), logit transform included."""
        p = ALPHA + (1 - 2 * ALPHA) * y
        h = p.log() - (-p).log1p()
        logdet = (math.log(1 - 2 * ALPHA) - p.log() - (-p).log1p()).flatten(1).sum(1)
        for layer in self.layers:
            h, ld = layer(h)
            logdet = logdet + ld
        return h.flatten(1), logdet

    def inverse_flow(self, u: Tensor) -> Tensor:
        """u [N, D] → y [N, C, H, W], the exact inverse of forward_flow (not clamped)."""
        c, h, w = self.image_shape
        for layer in self.layers:  # the latent layout is the one after the last squeeze
            if isinstance(layer, Squeeze):
                c, h, w = 4 * c, h // 2, w // 2
        v = u.view(len(u), c, h, w)
        for layer in reversed(self.layers):
            v = layer.inverse(v)
        return (torch.sigmoid(v) - ALPHA) / (1 - 2 * ALPHA)

    def log_prob(self, y: Tensor) -> Tensor:
        """log p(y) in nats per example under the N(0, I) prior on u."""
        u, logdet = self.forward_flow(y)
        return -0.5 * (u.square() + LOG_2PI).sum(1) + logdet

    def dequantize(self, x: Tensor, rng: torch.Generator) -> Tensor:
        return (255 * x + torch.rand(x.shape, generator=rng, device=x.device)) / 256

    def decode(self, z: Tensor) -> Tensor:
        return self.inverse_flow(z).clamp(0, 1)

    @torch.no_grad()
    def log_weights(self, x: Tensor, k: int, rng: torch.Generator) -> Tensor:
        return self.log_prob(self.dequantize(x, rng))[None]  # exact: one row whatever k

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        loss = -self.log_prob(self.dequantize(real, rng)).mean() / self.z_dim  # nats per dimension
        self.minimize(loss)
        loss = loss.detach()
        return {"loss": loss, "bpd": loss / math.log(2) + 8}
