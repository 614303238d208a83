"""Row LSTM PixelRNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", §3.1).

The same exact discrete likelihood as PixelCNN (bench/models/pixelcnn.py: a 256-way softmax per
sub-pixel, raster order, R→G→B inside a pixel), computed by LSTM layers that run over the image
row by row. In each layer the gates of row i come from two convolutions one row high: an
input-to-state convolution of the layer's input on row i, masked so that pixel j sees columns ≤ j
(mask B: sub-pixel group g reads groups ≤ g of the current pixel), and a state-to-state
convolution of the hidden state of row i − 1 over columns j − 1 .. j + 1. Row i's state thus
depends on the rows above through a triangular receptive field and on row i only up to the
current pixel. The first layer is the paper's 7x7 mask-A convolution (the rows above over 7
columns, and the current row up to the pixel before), every LSTM layer is residual, and the head
is PixelCNN's 1x1 masked head.

Sampling carries the recurrent state: each layer's (h, c) of the finished row above is kept, so
a sub-pixel costs one pass of every layer over its own row up to itself, as PixelCNN's
horizontal stack does, and the rows above are never recomputed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.pixelcnn import CausalConv, DiscreteAutoregressive, channel_groups, inverse_cdf
from bench.models.registry import register_model
from bench.models.search_space import adam_search_space
from bench.progress import bar

Tensor = torch.Tensor

HIDDEN_PER_CHANNEL = 32  # LSTM units per sub-pixel group: 32 grey, 96 RGB (PixelCNN's width)
LSTM_LAYERS = 2
FIRST_KERNEL = 7  # the mask-A input convolution


class MaskA(nn.Module):
    """The 7x7 mask-A convolution as two parts: the rows above (3 rows x 7 columns, shifted down
    one row so that row i sees rows ≤ i − 1 only) and the current row's columns j − 3 .. j, the
    current pixel's own group and later ones masked out."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        k = FIRST_KERNEL
        self.above = CausalConv(c, hidden, k // 2, k)
        self.row = CausalConv(c, hidden, 1, k // 2 + 1, torch.arange(c), channel_groups(hidden, c), strict=True)

    def from_above(self, x: Tensor) -> Tensor:
        return F.pad(self.above(x), (0, 0, 1, 0))[:, :, :-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.from_above(x) + self.row(x)


class RowLSTM(nn.Module):
    """One residual Row LSTM layer over [N, F, H, W] features."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        groups = channel_groups(hidden, c)
        self.hidden = hidden
        # Gates i, f, o, g, each `hidden` wide, every unit in its input unit's sub-pixel group.
        self.input_to_state = CausalConv(hidden, 4 * hidden, 1, 2, groups, groups.repeat(4))
        self.state_to_state = nn.Conv2d(hidden, 4 * hidden, (1, 3), padding=(0, 1))

    def from_above(self, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """What a row takes from the finished row above, (h, c): its state-to-state gates and its
        cells; once per row while sampling, whatever the number of the row's sub-pixels."""
        h, c = state
        return self.state_to_state(h), c

    def step(self, gates_in: Tensor, above: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(h, c) of one row from its input gates [N, 4F, 1, W'] and `from_above`; a row cut after
        the current pixel (W' < W) takes the first W' columns of what the full row above gives."""
        gates_above, c_above = above
        w = gates_in.shape[-1]
        i, f, o, g = (gates_in + gates_above[..., :w]).chunk(4, dim=1)
        c = torch.sigmoid(f) * c_above[..., :w] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def initial_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zeros = x.new_zeros(x.shape[0], self.hidden, 1, x.shape[-1])
        return zeros, zeros

    def forward(self, x: Tensor) -> Tensor:
        gates_in = self.input_to_state(x)
        state, rows = self.initial_state(x), []
        for i in range(x.shape[2]):
            state = self.step(gates_in[:, :, i: i + 1], self.from_above(state))
            rows.append(state[0])
        return x + torch.cat(rows, dim=2)


@register_model("pixelrnn")
class PixelRNN(DiscreteAutoregressive):
    """Row LSTM PixelRNN, 256-way softmax per sub-pixel (van den Oord et al. 2016).

    Size: a 7x7 mask-A convolution to 32 units per colour channel (32 grey, 96 RGB), 2 residual
    Row LSTM layers of that width (the paper's CIFAR-10 model has 12 of 128), PixelCNN's 1x1 head.
    Defaults: Adam lr 3e-4, β1 0.9, as bench's PixelCNN (the paper trains with RMSProp and states
    no learning rate), searched over the same ranges.
    """

    search_space = adam_search_space(lr=3e-4, beta1=0.9, narrow_beta1=0.9)

    def __init__(self, image_shape, hparams=None):
        super().__init__(image_shape, hparams)
        c = self.image_shape[0]
        hidden = HIDDEN_PER_CHANNEL * c
        self.first = MaskA(c, hidden)
        self.layers = nn.ModuleList(RowLSTM(c, hidden) for _ in range(LSTM_LAYERS))
        self.build_head(hidden)

    def logits(self, x: Tensor) -> Tensor:
        h = self.first(2 * x - 1)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)

    def row_logits(self, x: Tensor, i: int, j: int, first_above: Tensor, aboves: list) -> tuple[Tensor, list]:
        """[N, 256, C, 1, j + 1] logits of row i up to column j, and every layer's (h, c) of
        that part of the row, from x's row i, the mask-A part from the rows above, and what each
        layer takes from its state of row i − 1 (`RowLSTM.from_above`)."""
        row = 2 * x[:, :, i: i + 1, : j + 1] - 1
        h = first_above[..., : j + 1] + self.first.row(row)
        states = []
        for layer, above in zip(self.layers, aboves):
            out, cell = layer.step(layer.input_to_state(h), above)
            states.append((out, cell))
            h = h + out
        return self.head(h), states

    def decode(self, z: Tensor) -> Tensor:
        """Inverse-CDF sampling in raster order, z read as [N, C, H, W], the LSTM state carried
        from row to row (see the module docstring)."""
        c, h, w = self.image_shape
        u = ((z + 1) / 2).reshape(-1, c, h, w)
        x = torch.zeros(u.shape, device=z.device)
        states = [layer.initial_state(x) for layer in self.layers]
        for i in bar(range(h), desc=f"PixelRNN sampling {len(x)} images", unit="row"):
            strip = x[:, :, max(0, i - FIRST_KERNEL // 2): i + 1]  # the 3 rows above reach row i
            first_above = self.first.from_above(2 * strip - 1)[:, :, -1:]
            aboves = [layer.from_above(state) for layer, state in zip(self.layers, states)]
            for j in range(w):
                for ch in range(c):
                    logits, _ = self.row_logits(x, i, j, first_above, aboves)
                    x[:, ch, i, j] = inverse_cdf(logits[:, :, ch, 0, j], u[:, ch, i, j])
            _, states = self.row_logits(x, i, w - 1, first_above, aboves)  # the finished row's state, carried
        return x
