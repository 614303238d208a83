"""The fixed architecture of PROTOCOL §2: sizes, layers, initialisation, batch-norm settings."""

import pytest
import torch
from torch import nn

from bench.errors import BenchError
from bench.models.architecture import AutoencoderDiscriminator, Discriminator, Generator, count_parameters


def d_params(c, h, w, bn=True):
    conv1 = c * 64 * 16 + 64
    conv2 = 64 * 128 * 16 + 128
    fc3 = 128 * (h // 4) * (w // 4) * 1024 + 1024
    fc4 = 1024 + 1
    return conv1 + conv2 + fc3 + fc4 + (2 * 128 + 2 * 1024 if bn else 0)


@pytest.mark.parametrize("shape, study", [((1, 28, 28), 6.6e6), ((3, 32, 32), 8.5e6)])
def test_discriminator_size_matches_the_study(shape, study):
    n = count_parameters(Discriminator(shape, batch_norm=True))
    assert n == d_params(*shape)
    assert round(n / 1e6, 1) == study / 1e6


def test_batch_norm_switch_changes_only_the_norm_layers():
    with_bn = Discriminator((1, 28, 28), batch_norm=True)
    without = Discriminator((1, 28, 28), batch_norm=False)
    assert count_parameters(with_bn) - count_parameters(without) == 2 * (128 + 1024)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in without.modules())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_shapes_round_trip(shape):
    g, d = Generator(shape), Discriminator(shape, batch_norm=True)
    x = g(torch.rand(4, 64) * 2 - 1)
    assert x.shape == (4, *shape)
    assert 0 <= x.min() and x.max() <= 1
    assert d(x).shape == (4, 1)
    assert AutoencoderDiscriminator(shape, batch_norm=True)(x).shape == x.shape


def test_generator_layers_follow_the_protocol():
    g = Generator((1, 28, 28))
    kinds = [type(m).__name__ for m in g.net]
    assert kinds == ["Linear", "BatchNorm1d", "LeakyReLU", "Linear", "BatchNorm1d", "LeakyReLU", "Unflatten",
                     "ConvTranspose2d", "BatchNorm2d", "LeakyReLU", "ConvTranspose2d", "Sigmoid"]
    assert g.net[3].out_features == 128 * 7 * 7
    relu_decoder = Generator((1, 28, 28), activation="relu")
    assert not any(isinstance(m, nn.LeakyReLU) for m in relu_decoder.modules())


def test_batch_norm_uses_tf_decay_and_epsilon():
    norms = [m for m in Generator((3, 32, 32)).modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == pytest.approx(1e-3) and m.eps == pytest.approx(1e-3) for m in norms)


def test_initialisation():
    torch.manual_seed(0)
    d = Discriminator((3, 32, 32), batch_norm=True)
    g = Generator((3, 32, 32))
    conv = d.net[2].weight
    assert conv.abs().max() <= 0.04  # truncated at two standard deviations
    assert conv.std().item() == pytest.approx(0.02 * 0.88, rel=0.05)  # std of N(0,1) cut at ±2 is 0.88
    fc = d.net[6].weight
    assert fc.std().item() == pytest.approx(0.02, rel=0.02) and fc.abs().max() > 0.04  # untruncated
    deconv = g.net[7].weight
    assert deconv.std().item() == pytest.approx(0.02, rel=0.05)
    biases = [m.bias for m in list(d.modules()) + list(g.modules()) if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d))]
    assert all((b == 0).all() for b in biases)


def test_rejects_shapes_the_architecture_cannot_take():
    with pytest.raises(BenchError, match="divisible by 4"):
        Generator((1, 30, 30))
