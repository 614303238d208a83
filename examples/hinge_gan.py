"""A new GAN variant for bench: the hinge loss (Lim & Ye 2017) with an R1 penalty on real data
(Mescheder et al. 2018), on the study's fixed architecture.

    bench rank --model examples/hinge_gan.py:HingeGAN --dataset triangles --budget 2 --against runs/triangles
"""

import torch
import torch.nn.functional as F

from bench.models import GAN, AdversarialLoss, LogUniform, gan_search_space

HINGE = AdversarialLoss(
    name="hinge",
    discriminator=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
    generator=lambda fake: -fake.mean(),
)


def r1_penalty(logit, real, fake, rng):
    """E ‖∇ₓ l(x)‖² on real images; weighted by the searched hyperparameter `lambda`."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(logit(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


class HingeGAN(GAN):
    """Hinge-loss GAN with an R1 penalty."""

    loss = HINGE
    penalty = staticmethod(r1_penalty)
    # Author defaults are sample #0; the shared GAN ranges (lr, β1, disc_iters, D batch norm)
    # come from gan_search_space, the penalty weight is this model's own.
    search_space = gan_search_space(
        dict(lr=2e-4, beta1=0.5, disc_iters=1, d_batch_norm=False, **{"lambda": 1.0}),
        wide={"lambda": LogUniform(-2, 1)},
        narrow={"lambda": LogUniform(-1, 0)},
    )
