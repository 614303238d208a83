"""PixelRNN (Row LSTM): the autoregressive order (by gradients) and sampling with the recurrent
state carried from row to row; its likelihood and training are tested with PixelCNN's
(tests/models/test_pixelcnn.py)."""

import pytest
import torch

from bench.models import build_model, get_model_class
from bench.models.pixelrnn import PixelRNN
from tests.models import test_pixelcnn
from tests.models.test_pixelcnn import images, reference_decode


def make(shape, seed=0, **hparams):
    return test_pixelcnn.make(shape, seed, cls=PixelRNN, **hparams)


def test_registered_with_its_contract():
    model = build_model("pixelrnn", (3, 8, 8))
    assert get_model_class("pixelrnn") is PixelRNN and model.z_dim == 3 * 8 * 8
    assert (model.family, model.explicit, model.likelihood, model.exact_likelihood) == (
        "autoregressive", True, "discrete", True)
    assert not model.invertible_by_gradient and list(model.parameter_counts()) == ["pixelrnn"]
    counts = build_model("pixelrnn", (1, 28, 28)).parameter_counts()
    with torch.device("meta"):  # `bench list models` sizes models without weights
        assert PixelRNN((1, 28, 28)).parameter_counts() == counts


@pytest.mark.parametrize("shape", [(1, 6, 6), (3, 4, 4)])
def test_no_sub_pixel_sees_itself_or_a_later_one(shape):
    """The gradient of sub-pixel t's logits is exactly zero at t and at every later sub-pixel, and
    non-zero at the pixel above and the pixel to the left (the Row LSTM's receptive field is a
    triangle above the pixel plus the row's few columns to its left, not all of the past)."""
    c_n, h, w = shape
    d = c_n * h * w
    model = make(shape)
    x = torch.rand(1, *shape).repeat(d, 1, 1, 1).requires_grad_()
    proj = torch.randn(256)
    mixed = torch.einsum("nkchw,k->nhwc", model.logits(x), proj).reshape(d, d)
    mixed.diagonal().sum().backward()
    order = torch.arange(d).view(h, w, c_n).permute(2, 0, 1)
    for t in range(d):
        assert not (x.grad[t] != 0)[order >= t].any(), f"sub-pixel {t} sees itself or a later one"
        i, j, c = t // (w * c_n), t // c_n % w, t % c_n
        if i > 0:
            assert (x.grad[t][:, i - 1, j] != 0).all(), f"sub-pixel {t} does not see the pixel above"
        if j > 0:
            assert (x.grad[t][:, i, j - 1] != 0).all(), f"sub-pixel {t} does not see the pixel to its left"
        if c > 0:
            assert (x.grad[t][:c, i, j] != 0).all(), f"sub-pixel {t} does not see the pixel's earlier channels"
    # Rows far above still reach the pixel through the recurrence (the first layer alone sees 3 rows).
    assert (x.grad[d - 1][:, 0, w - 1] != 0).all()


@pytest.mark.parametrize("shape", [(1, 5, 4), (3, 3, 3)])
def test_sampling_with_the_carried_state_draws_what_the_whole_network_would(shape):
    """decode keeps each layer's state of the row above; the reference recomputes the whole
    network over the whole image for every sub-pixel."""
    model = make(shape, lr=1e-2).train()
    for _ in range(3):  # trained a little, so the conditionals are not near uniform
        model.train_step(images(8, shape, seed=5), torch.Generator().manual_seed(0))
    model.eval()
    z = model.sample_noise(5, torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model.decode(z), reference_decode(model, z))
