"""Gradient penalties of WGAN-GP and DRAGAN (PROTOCOL §1), as compare_gan computes them.

Both are λ·E(‖∇f(x̃)‖ − 1)² with the norm sqrt(1e-4 + Σg²) over all pixels of an example and
x̃ = x + α(x_p − x), α ~ U[0,1] per example; they differ in the partner point x_p and in f.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor
NORM_EPS = 1e-4


def gradient_norm_penalty(score: Callable[[Tensor], Tensor], x_tilde: Tensor, lead: int = 1) -> Tensor:
    """E(sqrt(1e-4 + Σ(∂score/∂x̃)²) − 1)², differentiable (create_graph) for the D update.

    The first `lead` axes of x̃ index examples: 1 for one batch; 2 for a pack of K batches
    (bench/packing), which gives one penalty per member, [K]."""
    x_tilde = x_tilde.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(x_tilde).sum(), x_tilde, create_graph=True)
    norm = torch.sqrt(NORM_EPS + grad.square().flatten(lead).sum(-1))
    return (norm - 1).square().flatten(lead - 1).mean(-1)


def interpolate(x: Tensor, x_p: Tensor, rng: torch.Generator) -> Tensor:
    alpha = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), generator=rng, device=x.device)
    return x + alpha * (x_p - x)


def dragan_perturb(real: Tensor, rng: torch.Generator) -> Tensor:
    """x + 0.5·std(batch)·U[0,1): one population std over the whole batch, non-negative noise."""
    noise = torch.rand(real.shape, generator=rng, device=real.device)
    return real + 0.5 * real.std(unbiased=False) * noise


@dataclass(frozen=True)
class GradientPenalty:
    """A penalty as data: where it is taken (`point`: x̃ from the real and fake batch and the
    trial's random stream) and of what (the logit, or D = sigmoid(logit) `through_sigmoid`)."""

    point: Callable[[Tensor, Tensor, torch.Generator], Tensor]
    through_sigmoid: bool = False

    def score(self, logit: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        return (lambda x: torch.sigmoid(logit(x))) if self.through_sigmoid else logit

    def __call__(self, logit: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, rng: torch.Generator) -> Tensor:
        return gradient_norm_penalty(self.score(logit), self.point(real, fake, rng))


# WGAN-GP: gradient of the critic's logit between real and fake examples.
wgan_gp_penalty = GradientPenalty(point=lambda real, fake, rng: interpolate(real, fake, rng))
# DRAGAN: gradient of the sigmoid output D(x̃) around perturbed real examples (`fake` unused).
dragan_penalty = GradientPenalty(point=lambda real, fake, rng: interpolate(real, dragan_perturb(real, rng), rng),
                                 through_sigmoid=True)
