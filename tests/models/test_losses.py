"""Each adversarial loss against values computed by hand from its textbook definition."""

import math

import pytest
import torch

from bench.models import losses

REAL = [0.0, 2.0, -0.5]
FAKE = [-1.0, 1.0, 3.0]


def sig(x):
    return 1 / (1 + math.exp(-x))


def mean(values):
    return sum(values) / len(values)


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_bce_discriminator_is_cross_entropy_of_real_one_fake_zero():
    expected = -mean([math.log(sig(r)) for r in REAL]) - mean([math.log(1 - sig(f)) for f in FAKE])
    for loss in (losses.MINIMAX, losses.NON_SATURATING):
        assert loss.discriminator(t(REAL), t(FAKE)).item() == pytest.approx(expected, rel=1e-12)


def test_minimax_generator_is_saturating_log_one_minus_d():
    expected = mean([math.log(1 - sig(f)) for f in FAKE])
    assert losses.MINIMAX.generator(t(FAKE)).item() == pytest.approx(expected, rel=1e-12)


def test_non_saturating_generator_is_minus_log_d():
    expected = -mean([math.log(sig(f)) for f in FAKE])
    assert losses.NON_SATURATING.generator(t(FAKE)).item() == pytest.approx(expected, rel=1e-12)


def test_least_squares_acts_on_sigmoid_output_not_logit():
    d = 0.5 * (mean([(sig(r) - 1) ** 2 for r in REAL]) + mean([sig(f) ** 2 for f in FAKE]))
    g = 0.5 * mean([(sig(f) - 1) ** 2 for f in FAKE])
    assert losses.LEAST_SQUARES.discriminator(t(REAL), t(FAKE)).item() == pytest.approx(d, rel=1e-12)
    assert losses.LEAST_SQUARES.generator(t(FAKE)).item() == pytest.approx(g, rel=1e-12)


def test_wasserstein_losses():
    assert losses.WASSERSTEIN.discriminator(t(REAL), t(FAKE)).item() == pytest.approx(-mean(REAL) + mean(FAKE))
    assert losses.WASSERSTEIN.generator(t(FAKE)).item() == pytest.approx(-mean(FAKE))


def test_softplus_forms_stay_finite_for_extreme_logits():
    big = t([80.0, -80.0])
    for loss in (losses.MINIMAX, losses.NON_SATURATING, losses.LEAST_SQUARES):
        assert torch.isfinite(loss.discriminator(big, big)) and torch.isfinite(loss.generator(big))
