"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

An exact discrete likelihood: p(x) = Π over sub-pixels, in raster order and R→G→B inside a pixel,
of a 256-way softmax. Two stacks remove the blind spot of a masked 3x3 stack: the vertical stack
sees the rows above (its kernel ends at the current row and is shifted down one row before it
feeds the horizontal stack), the horizontal stack sees the current row up to the current pixel,
where channel-group masks order the sub-pixels (group g sees groups < g in the first layer,
mask A, and ≤ g after it, mask B). Hidden channel k belongs to group k·C // filters.
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
from bench.progress import bar

Tensor = torch.Tensor

FILTERS_PER_CHANNEL = 32  # hidden channels of both stacks per sub-pixel group: 32 grey, 96 RGB
LAYERS = 8  # gated layers: one 7x7 (mask A), then seven 3x3 (mask B), all residual but the first
FIRST_KERNEL, KERNEL = 7, 3


def channel_groups(n: int, c: int) -> Tensor:
    """The sub-pixel (0 = R, 1 = G, 2 = B) that each of n channels belongs to."""
    return torch.arange(n) * c // n


class CausalConv(nn.Conv2d):
    """A conv padded so that its kernel ends at the current row and column; with groups given,
    the kernel's last column (the current pixel) is masked by channel group, strictly (mask A) or not."""

    def __init__(self, cin, cout, kh, kw, g_in=None, g_out=None, strict=False):
        super().__init__(cin, cout, (kh, kw))
        self.pad = (kw - 1 if kh == 1 else kw // 2, 0 if kh == 1 else kw // 2, kh - 1, 0)
        mask = None
        if g_in is not None:
            mask = torch.ones(cout, cin, kh, kw)
            centre = g_out[:, None] > g_in[None, :] if strict else g_out[:, None] >= g_in[None, :]
            mask[:, :, :, -1] = centre[:, :, None].to(mask.dtype)
        self.register_buffer("mask", mask, persistent=False)  # derived, so not checkpointed

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.mask is None else self.weight * self.mask
        return F.conv2d(F.pad(x, self.pad), w, self.bias)


def gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """v ← gate(v conv); h ← h + 1x1(gate(h conv + 1x1(v pre-activation, one row down)))."""

    def __init__(self, c: int, filters: int, k: int, first: bool):
        super().__init__()
        cin, g_in = (c, torch.arange(c)) if first else (filters, channel_groups(filters, c))
        g_hid = channel_groups(filters, c)
        self.first = first
        self.v = CausalConv(cin, 2 * filters, k // 2 + 1, k)  # rows ≤ i: no channel mask needed
        self.h = CausalConv(cin, 2 * filters, 1, k // 2 + 1, g_in, g_hid.repeat(2), strict=first)
        self.v2h = nn.Conv2d(2 * filters, 2 * filters, 1)
        self.h_out = CausalConv(filters, filters, 1, 1, g_hid, g_hid)

    def vertical(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(the next vertical stack, what it feeds the horizontal stack): row i of the second
        depends on rows ≤ i−1 of the image only, which is what lets sampling cache it per row."""
        v_pre = self.v(v)
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row i gets rows ≤ i−1 only
        return gate(v_pre), self.v2h(shifted)

    def horizontal(self, h: Tensor, from_v: Tensor) -> Tensor:
        """The next horizontal stack: kernels one row high, so each row is computed on its own."""
        h_new = self.h_out(gate(self.h(h) + from_v))
        return h_new if self.first else h + h_new

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v, from_v = self.vertical(v)
        return v, self.horizontal(h, from_v)


class DiscreteAutoregressive(GenerativeModel):
    """What PixelCNN and PixelRNN share: a 256-way softmax per sub-pixel in raster order, R→G→B
    inside a pixel, its cross-entropy as the training loss and exact NLL, and inverse-CDF
    sampling from z = 2u − 1 with one variate per dimension (z_dim = C·H·W), so that decode is
    deterministic in z but not differentiable. A subclass gives `logits` and `decode`, and builds
    its 1x1 head with `build_head`."""

    family = "autoregressive"
    explicit = True
    likelihood = "discrete"
    exact_likelihood = True
    noise = "uniform"
    invertible_by_gradient = False
    # One raster pass for all evaluation samples: about 318,000 kernel launches per call for
    # PixelCNN (counted for issue 13) whatever the batch, so 20 calls of 500 cost 20 times one of
    # 10,000 on a GPU (whose row activations for 10,000 samples of 32x32x3 are a few GB).
    generate_batch = 10_000
    architectures = None  # its own networks: the same under every --arch

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        c, h, w = self.image_shape
        self.z_dim = c * h * w

    def build_head(self, f: int) -> None:
        """ReLU, 1x1 F → F, ReLU, 1x1 F → 256·C, masked so that sub-pixel group g reads groups ≤ g."""
        c = self.image_shape[0]
        g_hid = channel_groups(f, c)
        self.head1 = CausalConv(f, f, 1, 1, g_hid, g_hid)
        self.head2 = CausalConv(f, 256 * c, 1, 1, g_hid, torch.arange(256 * c) // 256)

    def head(self, h: Tensor) -> Tensor:
        """[N, 256, C, H, W] logits from the last hidden features [N, F, H, W]."""
        out = self.head2(F.relu(self.head1(F.relu(h))))
        n, _, hh, ww = out.shape
        return out.view(n, -1, 256, hh, ww).transpose(1, 2)

    def logits(self, x: Tensor) -> Tensor:
        """[N, 256, C, H, W] logits of each sub-pixel's value given the earlier ones; x in [0,1]."""
        raise NotImplementedError

    @staticmethod
    def values(x: Tensor) -> Tensor:
        return (x * 255).round().clamp(0, 255).long()

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        loss = F.cross_entropy(self.logits(real), self.values(real))  # nats per dimension
        self.minimize(loss)
        loss = loss.detach()
        return {"loss": loss, "bpd": loss / math.log(2.0)}

    def log_weights(self, x: Tensor, k: int, rng: torch.Generator) -> Tensor:
        """Exact log p(x) in nats, [1, N] (k is ignored: there is no latent to sample)."""
        nll = F.cross_entropy(self.logits(x), self.values(x), reduction="none")
        return -nll.flatten(1).sum(1).unsqueeze(0)

    def parameter_counts(self) -> Dict[str, int]:
        return {self.name: count_parameters(self)}


def inverse_cdf(logits: Tensor, u: Tensor) -> Tensor:
    """The value in 0..255 whose softmax CDF first exceeds u: logits [N, 256], u [N] -> [N] in [0, 1]."""
    probs = logits.float().softmax(1)
    value = torch.searchsorted(probs.cumsum(1), u[:, None].contiguous(), right=True)
    return value.clamp(max=255).squeeze(1) / 255


@register_model("pixelcnn")
class PixelCNN(DiscreteAutoregressive):
    """Gated PixelCNN, two stacks, 256-way softmax per sub-pixel (van den Oord et al. 2016).

    Size: 32 filters per colour channel (32 grey, 96 RGB), 8 gated layers (7x7 then 3x3), a 1x1
    head F → F → 256·C; 0.17M parameters on 28x28x1, small so that a 28x28 step at batch 64
    stays near a second on two CPU cores (64 filters take about twice as long).
    Sampling is inverse-CDF, one horizontal-stack pass per sub-pixel (see decode).
    """

    search_space = adam_search_space(lr=3e-4, beta1=0.9, narrow_beta1=0.9)

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        c = self.image_shape[0]
        f = FILTERS_PER_CHANNEL * c
        self.layers = nn.ModuleList(
            GatedLayer(c, f, FIRST_KERNEL if i == 0 else KERNEL, first=i == 0) for i in range(LAYERS)
        )
        self.build_head(f)

    def logits(self, x: Tensor) -> Tensor:
        v = h = 2 * x - 1
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def rows_above(self, x: Tensor, i: int) -> list[Tensor]:
        """What each layer's vertical stack feeds row i of its horizontal stack, from rows < i of x:
        computed once per row while sampling, then reused for all of the row's W·C sub-pixels."""
        v, fed = 2 * x[:, :, : i + 1] - 1, []  # row i itself is masked out by the shift
        for layer in self.layers:
            v, from_v = layer.vertical(v)
            fed.append(from_v[:, :, i: i + 1])
        return fed

    def row_logits(self, row: Tensor, fed: list[Tensor]) -> Tensor:
        """[N, 256, C, 1, W] logits of one row (x in [0,1], [N, C, 1, W]) given `rows_above`;
        any leading W columns of the row will do, as the horizontal stack never looks right."""
        h = 2 * row - 1
        for layer, from_v in zip(self.layers, fed):
            h = layer.horizontal(h, from_v)
        return self.head(h)

    def decode(self, z: Tensor) -> Tensor:
        """Inverse-CDF sampling in raster order, z read as [N, C, H, W].

        Cached as far as the network allows: the vertical stack runs once per row (on the rows
        above), and each sub-pixel then costs one pass of the horizontal stack over its own row
        up to itself, instead of a pass of the whole network over the image (see `rows_above`);
        13.5x faster on 28x28 on two CPU cores (benchmarks/pixelcnn_sampling.py)."""
        c, h, w = self.image_shape
        u = ((z + 1) / 2).reshape(-1, c, h, w)
        x = torch.zeros(u.shape, device=z.device)
        for i in bar(range(h), desc=f"PixelCNN sampling {len(x)} images", unit="row"):
            fed = self.rows_above(x, i)
            for j in range(w):
                left = [f[..., : j + 1] for f in fed]  # the horizontal stack never looks right
                for ch in range(c):
                    logits = self.row_logits(x[:, :, i: i + 1, : j + 1], left)[:, :, ch, 0, j]
                    x[:, ch, i, j] = inverse_cdf(logits, u[:, ch, i, j])
        return x
