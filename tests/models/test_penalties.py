"""Gradient penalties of WGAN-GP and DRAGAN on inputs where the gradient is known in closed form."""

import math

import pytest
import torch

from bench.models import penalties


def linear_score(w):
    return lambda x: (x * w).flatten(1).sum(1)


def test_gradient_norm_penalty_of_a_linear_score():
    w = torch.tensor([[[[0.3, -0.4], [1.2, 0.0]]]], dtype=torch.float64)
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64)
    norm = math.sqrt(1e-4 + sum(v * v for v in w.flatten().tolist()))
    got = penalties.gradient_norm_penalty(linear_score(w), x)
    assert got.item() == pytest.approx((norm - 1) ** 2, rel=1e-12)


def test_gradient_norm_penalty_is_differentiable_for_the_d_update():
    w = torch.tensor([0.5, 2.0], requires_grad=True)
    x = torch.rand(3, 2)
    penalty = penalties.gradient_norm_penalty(lambda v: v @ w, x)
    (grad,) = torch.autograd.grad(penalty, w)
    norm = math.sqrt(1e-4 + 0.25 + 4.0)
    # d/dw (|w|_eps - 1)^2 = 2(|w|_eps - 1) w / |w|_eps
    expected = [2 * (norm - 1) * wi / norm for wi in (0.5, 2.0)]
    assert grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_interpolates_lie_on_segments_with_one_alpha_per_example():
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.zeros(6, 1, 3, 3), torch.ones(6, 1, 3, 3) * torch.arange(1, 7).view(6, 1, 1, 1)
    x = penalties.interpolate(real, fake, rng)
    alpha = x / fake
    per_example = alpha.flatten(1)
    assert torch.allclose(per_example, per_example[:, :1].expand_as(per_example))
    assert ((per_example >= 0) & (per_example < 1)).all()
    assert per_example[:, 0].unique().numel() == 6


def test_wgan_gp_penalty_uses_the_logit():
    w = torch.full((1, 2, 2), 0.25)
    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)
    got = penalties.wgan_gp_penalty(linear_score(w), real, fake, torch.Generator().manual_seed(1))
    norm = math.sqrt(1e-4 + 4 * 0.25**2)
    assert got.item() == pytest.approx((norm - 1) ** 2, rel=1e-6)


def test_dragan_perturbation_is_nonnegative_and_scaled_by_batch_std():
    real = torch.rand(64, 1, 8, 8)
    x_p = penalties.dragan_perturb(real, torch.Generator().manual_seed(0))
    delta = x_p - real
    std = real.std(unbiased=False).item()
    assert delta.min() >= 0
    assert delta.max() < 0.5 * std + 1e-6
    assert delta.max() > 0.45 * std  # uniform noise fills [0, 0.5 std)


def test_dragan_penalty_uses_the_sigmoid_output():
    w = torch.tensor([[[[0.5, -1.0]]]])
    real = torch.zeros(3, 1, 1, 2)  # std 0: no perturbation, x̃ = x = 0, logit 0, sigmoid' = 1/4
    got = penalties.dragan_penalty(linear_score(w), real, None, torch.Generator().manual_seed(0))
    norm = math.sqrt(1e-4 + (0.25 * 0.5) ** 2 + (0.25 * 1.0) ** 2)
    assert got.item() == pytest.approx((norm - 1) ** 2, rel=1e-6)
