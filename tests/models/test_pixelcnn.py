"""PixelCNN: the autoregressive order (by gradients), the exact likelihood, training, sampling;
the likelihood and training tests also hold PixelRNN to them (tests/models/test_pixelrnn.py)."""

import math

import pytest
import torch

from bench.models import build_model, get_model_class
from bench.models.pixelcnn import PixelCNN
from bench.models.pixelrnn import PixelRNN


def make(shape, seed=0, cls=PixelCNN, **hparams):
    torch.manual_seed(seed)
    return cls(shape, hparams).eval()


def images(n, shape, seed=0):
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed)) / 255


def test_registered_with_its_contract():
    model = build_model("pixelcnn", (3, 8, 8))
    assert get_model_class("pixelcnn") is PixelCNN and model.z_dim == 3 * 8 * 8
    attributes = (model.family, model.explicit, model.likelihood, model.noise)
    assert attributes == ("autoregressive", True, "discrete", "uniform")
    assert not model.invertible_by_gradient and list(model.parameter_counts()) == ["pixelcnn"]
    counts = build_model("pixelcnn", (1, 28, 28)).parameter_counts()
    with torch.device("meta"):  # `bench list models` sizes models without weights
        assert PixelCNN((1, 28, 28)).parameter_counts() == counts


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
def test_each_sub_pixel_sees_exactly_the_earlier_ones(shape):
    """The gradient of sub-pixel (c, i, j)'s logits is non-zero at every earlier sub-pixel (8x8 is
    inside the receptive field: no blind spot) and exactly zero at it and at every later one."""
    c_n, h, w = shape
    d = c_n * h * w
    model = make(shape)
    x = torch.rand(1, *shape).repeat(d, 1, 1, 1).requires_grad_()  # copy t asks about sub-pixel t
    proj = torch.randn(256)  # a random mix of the 256 logits, so no sum cancels by accident
    mixed = torch.einsum("nkchw,k->nhwc", model.logits(x), proj).reshape(d, d)  # raster, then R→G→B
    mixed.diagonal().sum().backward()  # examples are independent, so one backward pass does all
    order = torch.arange(d).view(h, w, c_n).permute(2, 0, 1)
    for t in range(d):
        assert torch.equal(x.grad[t] != 0, order < t), f"sub-pixel {t} (raster index {t // c_n}, channel {t % c_n})"


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 4, 4)])
def test_log_p_is_the_sum_of_the_conditionals(shape):
    """log_weights against an independent sum: one forward pass per sub-pixel, with every later
    sub-pixel replaced by noise, which must not matter."""
    model = make(shape)
    x = images(3, shape)
    with torch.no_grad():
        logp = model.log_weights(x, k=7, rng=torch.Generator())
        assert logp.shape == (1, 3) and torch.isfinite(logp).all() and (logp < 0).all()
        c_n, h, w = shape
        total = torch.zeros(3)
        flat = x.permute(0, 2, 3, 1).reshape(3, -1)  # raster order, channels inside a pixel
        for t in range(flat.shape[1]):
            mixed = torch.cat([flat[:, :t], torch.rand(3, flat.shape[1] - t)], 1)
            mixed = mixed.view(3, h, w, c_n).permute(0, 3, 1, 2)
            i, j, c = t // (w * c_n), t // c_n % w, t % c_n
            log_probs = model.logits(mixed)[:, :, c, i, j].log_softmax(1)
            assert torch.allclose(log_probs.exp().sum(1), torch.ones(3), atol=1e-5)
            total += log_probs.gather(1, (flat[:, t:t + 1] * 255).round().long()).squeeze(1)
    assert torch.allclose(logp[0], total, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("cls", [PixelCNN, PixelRNN])
@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 1, 1)])
def test_probabilities_of_all_images_sum_to_one(shape, cls):
    """Exhaustive over 256² images of two sub-pixels, across two pixels and across two channels."""
    model = make(shape, cls=cls)
    values = torch.cartesian_prod(torch.arange(256), torch.arange(256)).float() / 255
    with torch.no_grad():
        logp = model.log_weights(values.view(-1, *shape), k=1, rng=torch.Generator())
    assert logp.logsumexp(1).item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("cls", [PixelCNN, PixelRNN])
def test_training_on_a_tiny_dataset_lowers_the_loss(cls):
    g = torch.Generator().manual_seed(0)
    palette = torch.tensor([0.0, 64.0, 200.0, 255.0]) / 255
    data = palette[torch.randint(0, 4, (32, 1, 8, 8), generator=g)]  # 2 bits per dimension at most
    model = make((1, 8, 8), cls=cls, lr=3e-3).train()
    logs = [model.train_step(data, g) for _ in range(25)]  # about 2 bits/dim by then
    assert logs[0]["bpd"].item() > 7.5 and logs[-1]["bpd"].item() < 3.0
    assert logs[-1]["bpd"].item() == pytest.approx(logs[-1]["loss"].item() / math.log(2))
    assert model.steps == model.g_steps == 25
    with torch.no_grad():  # the likelihood reports what training optimised: nats per example
        nll = -model.eval().log_weights(data, 1, g).mean().item()
    assert nll / (64 * math.log(2)) < 3.0


def test_decode_is_deterministic_and_8_bit():
    model = make((3, 4, 4))
    z = model.sample_noise(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model.decode(z), model.decode(z.clone())
        other = model.decode(model.sample_noise(6, torch.Generator().manual_seed(2)))
    assert a.shape == (6, 3, 4, 4) and torch.equal(a, b) and not torch.equal(a, other)
    assert torch.equal(a * 255, (a * 255).round()) and a.min() >= 0 and a.max() <= 1


def test_decode_inverts_the_cdf():
    """z spread evenly over [-1, 1] gives each value in proportion to its model probability."""
    model = make((1, 1, 1))
    z = torch.linspace(-1, 1, 20001).unsqueeze(1)
    with torch.no_grad():
        counts = torch.bincount((model.decode(z) * 255).round().long().flatten(), minlength=256)
        probs = model.logits(torch.zeros(1, 1, 1, 1))[0, :, 0, 0, 0].softmax(0)
    assert torch.allclose(counts / 20001, probs, atol=2e-4)


@pytest.mark.parametrize("shape", [(1, 12, 5), (3, 6, 4)])
def test_the_row_cache_gives_the_full_networks_logits(shape):
    """Sampling's cache (vertical stack once per row, horizontal stack on the row alone) against
    a pass of the whole network, on every row, including rows deeper than the receptive field."""
    model = make(shape, lr=1e-3)
    x = images(4, shape, seed=3)
    with torch.no_grad():
        full = model.logits(x)
        for i in range(shape[1]):
            cached = model.row_logits(x[:, :, i: i + 1], model.rows_above(x, i))
            assert torch.allclose(cached[:, :, :, 0], full[:, :, :, i], atol=1e-4), f"row {i}"


def reference_decode(model, z):
    """Sampling without any cache: the whole network over the whole image for each sub-pixel."""
    c, h, w = model.image_shape
    u = ((z + 1) / 2).reshape(-1, c, h, w)
    x = torch.zeros(u.shape)
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                probs = model.logits(x)[:, :, ch, i, j].softmax(1)
                value = torch.searchsorted(probs.cumsum(1), u[:, ch, i, j, None].contiguous(), right=True)
                x[:, ch, i, j] = value.clamp(max=255).squeeze(1) / 255
    return x


@pytest.mark.parametrize("shape", [(1, 5, 4), (3, 3, 3)])
def test_cached_sampling_draws_the_same_images_as_uncached(shape):
    model = make(shape)
    z = model.sample_noise(5, torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model.decode(z), reference_decode(model, z))
