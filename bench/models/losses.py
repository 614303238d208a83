"""The study's adversarial objectives as data (PROTOCOL §1).

Each `AdversarialLoss` maps the discriminator's raw outputs (logits l, D = sigmoid(l)) on the
real and the fake batch to the two players' losses; a GAN model only names its loss. All
expectations are batch means. Cross-entropies use softplus forms, which are exact and stable:
BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l), log(1 - D) = -softplus(l).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdversarialLoss:
    name: str
    discriminator: Callable[[Tensor, Tensor], Tensor]  # (real logits, fake logits) -> loss
    generator: Callable[[Tensor], Tensor]  # fake logits -> loss


def _bce_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    # BCE(l(x), 1) + BCE(l(x̂), 0)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _minimax_generator(fake: Tensor) -> Tensor:
    # E log(1 - D(x̂)), minimised: the saturating loss of the original GAN.
    return -F.softplus(fake).mean()


def _non_saturating_generator(fake: Tensor) -> Tensor:
    # BCE(l(x̂), 1) = -E log D(x̂)
    return F.softplus(-fake).mean()


def _least_squares_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    # On the sigmoid output, as compare_gan does, not on the logit.
    return 0.5 * ((torch.sigmoid(real) - 1).square().mean() + torch.sigmoid(fake).square().mean())


def _least_squares_generator(fake: Tensor) -> Tensor:
    return 0.5 * (torch.sigmoid(fake) - 1).square().mean()


def _wasserstein_discriminator(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _wasserstein_generator(fake: Tensor) -> Tensor:
    return -fake.mean()


MINIMAX = AdversarialLoss("minimax", _bce_discriminator, _minimax_generator)
NON_SATURATING = AdversarialLoss("non-saturating", _bce_discriminator, _non_saturating_generator)
LEAST_SQUARES = AdversarialLoss("least-squares", _least_squares_discriminator, _least_squares_generator)
WASSERSTEIN = AdversarialLoss("wasserstein", _wasserstein_discriminator, _wasserstein_generator)
