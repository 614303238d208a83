"""Unrolled GAN (Metz et al. 2017, "Unrolled Generative Adversarial Networks").

The generator's loss is the non-saturating loss of the discriminator it would face after k more of
D's own Adam updates on the step's batch: f_K(θ_G, θ_D) = f(θ_G, θ_D^K(θ_G, θ_D)). The gradient
flows through those k updates (second order: `create_graph`), which is what lets G anticipate
D's answer and spread over the modes D would otherwise chase it out of. D itself takes the
ordinary one step per batch; the unrolled parameters only ever exist inside G's loss, and D's
weights, batch-norm statistics and Adam state leave the G step untouched. k = 0 is the
non-saturating GAN step for step.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import torch
from torch.func import functional_call

from bench.models import losses
from bench.models.gan_base import GAN, gan_search_space
from bench.models.registry import register_model
from bench.models.search_space import NON_NEGATIVE, Choice

Tensor = torch.Tensor


def adam_moments(optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> Dict[str, tuple]:
    """name -> (step, exp_avg, exp_avg_sq) of `optimizer`'s state for each parameter; zeros before
    its first step. Detached copies: the unrolled steps must not write into the real optimiser."""
    moments = {}
    for name, p in params.items():
        state = optimizer.state.get(p, {})
        if "step" in state:
            moments[name] = (float(state["step"]), state["exp_avg"].detach(), state["exp_avg_sq"].detach())
        else:
            moments[name] = (0.0, torch.zeros_like(p), torch.zeros_like(p))
    return moments


def unrolled_parameters(loss_of: Callable[[Dict[str, Tensor]], Tensor], params: Dict[str, Tensor],
                        moments: Dict[str, tuple], k: int, lr: float, betas: tuple, eps: float) -> Dict[str, Tensor]:
    """`params` after k Adam steps (torch.optim.Adam's update, no weight decay) on `loss_of`,
    differentiable with respect to whatever `loss_of` depends on besides the parameters."""
    beta1, beta2 = betas
    moments = dict(moments)
    for _ in range(k):
        grads = torch.autograd.grad(loss_of(params), list(params.values()), create_graph=True, allow_unused=True,
                                    materialize_grads=True)
        stepped = {}
        for (name, p), g in zip(params.items(), grads):
            t, m, v = moments[name]
            t, m, v = t + 1, beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
            moments[name] = (t, m, v)
            step_size = lr / (1 - beta1 ** t)
            denominator = _sqrt(v / (1 - beta2 ** t)) + eps
            stepped[name] = p - step_size * m / denominator
        params = stepped
    return params


def _sqrt(v: Tensor) -> Tensor:
    """√v with a zero gradient where v = 0 (a parameter D's loss has never moved): the plain
    sqrt's infinite slope there would make G's gradient NaN; the value is Adam's either way."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, 1.0).sqrt(), 0.0)


@register_model("unrolled_gan")
class UnrolledGAN(GAN):
    """Non-saturating GAN whose G looks k of D's Adam steps ahead (Metz et al. 2017). Defaults:
    k = 5 (the paper's experiments), Adam lr 1e-4 and β1 = 0.5 (the authors' released
    mixture-of-Gaussians code: D and G learning rate 1e-4, β1 0.5, ε 1e-8); k searched over
    {1, 5, 10}, the values the paper compares."""

    loss = losses.NON_SATURATING
    search_space = gan_search_space(
        dict(lr=1e-4, beta1=0.5, disc_iters=1, d_batch_norm=True, unroll_steps=5),
        wide={"unroll_steps": Choice((1, 5, 10))},
        narrow={"unroll_steps": Choice((1, 5, 10))},
        domains={"unroll_steps": NON_NEGATIVE},
    )

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        self._real = real  # the batch D's unrolled steps see: the step's own (as the authors' code)
        try:
            return super().train_step(real, rng)
        finally:
            self._real = None

    def generator_loss(self, fake: Tensor) -> Tensor:
        k = int(self.hparams["unroll_steps"])
        if k == 0:
            return super().generator_loss(fake)
        params = {name: p.detach().requires_grad_(True) for name, p in self.D.named_parameters()}
        # Unrolled forward passes update batch-norm statistics of copies, not of D.
        buffers = {name: b.clone() for name, b in self.D.named_buffers()}
        optimizer = self.optimizers()["D"]
        group = optimizer.param_groups[0]
        real = self._real

        def logit(p: Dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.D, {**p, **buffers}, (x,)).squeeze(1)

        def d_loss(p: Dict[str, Tensor]) -> Tensor:
            return self.loss.discriminator(logit(p, real), logit(p, fake))

        ahead = unrolled_parameters(d_loss, params, adam_moments(optimizer, dict(self.D.named_parameters())), k,
                                    group["lr"], group["betas"], group["eps"])
        return self.loss.generator(logit(ahead, fake))
