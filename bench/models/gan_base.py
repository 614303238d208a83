"""The GAN family: one training step shared by every GAN; models differ only in data
(their `AdversarialLoss`, an optional gradient penalty, the z policy of the generator step)
and in small hooks (WGAN's clipping, BEGAN's autoencoder and k).

Step semantics follow compare_gan v1 (PROTOCOL §1): a step is one D update on one real batch
with a fresh z batch; G is updated on step 0 and after every `disc_iters`-th step thereafter
(compare_gan's `(step - 1) % disc_iters == 0`); D sees the real and the fake batch in separate
calls, so batch-norm statistics are per batch.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Dict, Optional

import torch

from bench.models.architecture import count_parameters
from bench.models.architectures import DEFAULT_ARCH
from bench.models.base import GenerativeModel, frozen
from bench.models.losses import AdversarialLoss
from bench.models.search_space import Choice, Fixed, LogUniform, SearchSpace, Uniform

Tensor = torch.Tensor
Penalty = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor, torch.Generator], Tensor]


def gan_search_space(defaults: dict, wide: Optional[dict] = None, narrow: Optional[dict] = None,
                     domains: Optional[dict] = None) -> SearchSpace:
    """The ranges every GAN shares (PROTOCOL §4) plus a model's own entries.

    Narrow ranges keep the D batch-norm switch searched unless a model fixes it (WGAN-GP and
    DRAGAN turn it off there).
    """
    shared_wide = {
        "lr": LogUniform(-5, -2),
        "beta1": Uniform(0.0, 1.0),
        "disc_iters": Choice((1, 5)),
        "d_batch_norm": Choice((True, False)),
    }
    shared_narrow = {
        "lr": LogUniform(-4, -3),
        "beta1": Fixed(0.5),
        "disc_iters": Fixed(1),
        "d_batch_norm": Choice((True, False)),
    }
    return SearchSpace(defaults=defaults, wide={**shared_wide, **(wide or {})}, narrow={**shared_narrow, **(narrow or {})},
                       domains=domains or {})


class GAN(GenerativeModel):
    """A GAN on one of the shared architectures, trained with the loss (and penalty) its subclass names."""

    family = "gan"
    noise = "uniform"
    kept_networks = ("G",)  # sampling and AIS need only the generator
    loss: ClassVar[AdversarialLoss]
    penalty: ClassVar[Optional[Penalty]] = None  # weighted by hparams["lambda"]
    fresh_z_for_generator: ClassVar[bool] = False  # WGAN-GP draws a new z for its G step
    architectures = ("infogan", "dcgan", "sndcgan")

    def __init__(self, image_shape, hparams=None, arch: str = DEFAULT_ARCH):
        super().__init__(image_shape, hparams, arch)
        self.G = self.architecture.generator(self.image_shape, self.z_dim)
        self.D = self.build_discriminator()

    def build_discriminator(self) -> torch.nn.Module:
        return self.architecture.discriminator(self.image_shape, batch_norm=self.hparams["d_batch_norm"])

    # Optimisers are created lazily, after the model has been moved to its device, so that
    # fused CUDA Adam can be chosen and their state lives next to the parameters.
    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        if not self._opts:
            self._opts = {"G": self.make_adam(self.G.parameters()), "D": self.make_adam(self.D.parameters())}
        return self._opts

    def parameter_counts(self) -> Dict[str, int]:
        return {"G": count_parameters(self.G), "D": count_parameters(self.D)}

    def decode(self, z: Tensor) -> Tensor:
        return self.G(z)

    # --- the pieces subclasses may change --------------------------------------------------

    def logit(self, x: Tensor) -> Tensor:
        return self.D(x).squeeze(1)

    def discriminator_loss(self, real: Tensor, fake: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        loss = self.loss.discriminator(self.logit(real), self.logit(fake))
        if self.penalty is None:
            return {"d_loss": loss}
        penalty = self.penalty(self.logit, real, fake, rng)
        return {"d_loss": loss + self.hparams["lambda"] * penalty, "penalty": penalty}

    def generator_loss(self, fake: Tensor) -> Tensor:
        return self.loss.generator(self.logit(fake))

    def after_discriminator_step(self) -> None:
        """Called after every D update (WGAN clips here)."""

    def after_step(self, real: Tensor, z: Tensor) -> Dict[str, Tensor]:
        """Called at the end of every step with its batch and z (BEGAN updates k here)."""
        return {}

    # --- the step --------------------------------------------------------------------------

    def generator_step_due(self, step: Optional[int] = None) -> bool:
        step = self.steps if step is None else step  # index of the step, from 0
        return step == 0 or (step - 1) % self.hparams["disc_iters"] == 0

    def train_step(self, real: Tensor, rng: torch.Generator) -> Dict[str, Tensor]:
        opts = self.optimizers()
        z = self.sample_noise(real.shape[0], rng)
        with torch.no_grad():
            fake = self.G(z)
        d_terms = self.discriminator_loss(real, fake, rng)
        opts["D"].zero_grad(set_to_none=True)
        d_terms["d_loss"].backward()
        opts["D"].step()
        self.after_discriminator_step()
        logs = {k: v.detach() for k, v in d_terms.items()}

        if self.generator_step_due():
            if self.fresh_z_for_generator:
                z = self.sample_noise(real.shape[0], rng)
            with frozen(self.D):
                g_loss = self.generator_loss(self.G(z))
            opts["G"].zero_grad(set_to_none=True)
            g_loss.backward()
            opts["G"].step()
            self.g_steps += 1
            logs["g_loss"] = g_loss.detach()

        logs.update(self.after_step(real, z))
        self.steps += 1
        return logs
