"""How each model family trains as a pack, and which models can.

A `Packer` holds K member models of one class and one network structure, stacks their networks
(bench/packing/stack.py) and takes their steps together, mirroring the family's own `train_step`
draw for draw: each member's z, noise and penalty points come from its own random stream in the
order it would use them alone, and each member's losses come from the model's own loss
functions under vmap. A GAN's hooks (its D loss, G loss, after-step work) each have a packed
form here; a class packs when every hook it uses has one, so a plug-in that overrides a hook
(or `train_step`) trains one at a time rather than wrongly.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Dict, List, Optional, Sequence

import torch
from torch.func import vmap

from bench.models.architectures import DEFAULT_ARCH, get_architecture, own_networks
from bench.models.base import GenerativeModel
from bench.models.began import BEGAN
from bench.models.gan_base import GAN
from bench.models.gan_variants import WassersteinGAN
from bench.models.penalties import GradientPenalty, gradient_norm_penalty
from bench.models.vae import VAE
from bench.packing.stack import PackedAdam, Stack, _along

Tensor = torch.Tensor


class Packer:
    """K members trained in lockstep. Subclasses stack the networks and take the step."""

    # The model methods the packed step stands in for: a class packs only where each is one the
    # packer knows (`forms`), i.e. not overridden by a subclass the packer has not seen.
    hooks: ClassVar[tuple] = ()
    forms: ClassVar[Dict[Callable, Callable]] = {}
    base: ClassVar[type] = GenerativeModel

    def __init__(self, models: Sequence[GenerativeModel], batched: Optional[bool] = None):
        """`batched`: networks run as one vmapped call (default on an accelerator) or per member
        (default on a CPU); bench/packing/stack.py says why."""
        self.batched = batched
        self.models = list(models)
        self.cls = type(self.models[0])
        self.device = self.models[0].device
        steps = {m.steps for m in self.models}
        if len(steps) != 1 or any(type(m) is not self.cls for m in self.models):
            raise ValueError("a pack's members are one model class at one step")
        self.steps = steps.pop()
        self.g_steps = [m.g_steps for m in self.models]
        self._masks: Dict[tuple, Tensor] = {}
        self._hparams: Dict[str, Tensor] = {}

    @classmethod
    def applies(cls, model_cls: type) -> bool:
        return issubclass(model_cls, cls.base) and all(getattr(model_cls, h) in cls.forms for h in cls.hooks)

    @staticmethod
    def structure(model: GenerativeModel) -> tuple:
        """What members must share: the shapes of every parameter and buffer (e.g. the D batch-norm
        switch changes them)."""
        return tuple((name, tuple(t.shape)) for name, t in (*model.named_parameters(), *model.named_buffers()))

    def form(self, hook: str) -> Callable:
        return self.forms[getattr(self.cls, hook)]

    def hparam(self, name: str) -> Tensor:
        """Members' values of one hyperparameter as a [K] tensor on the device, made once (a copy
        to the device per step would make the step wait for the host)."""
        if name not in self._hparams:
            self._hparams[name] = torch.tensor([float(m.hparams[name]) for m in self.models], device=self.device)
        return self._hparams[name]

    def mask(self, flags: Sequence[bool]) -> Optional[Tensor]:
        """None where every member is in; else a [K] bool tensor, made once per pattern (no copy per step)."""
        if all(flags):
            return None
        key = tuple(flags)
        if key not in self._masks:
            self._masks[key] = torch.tensor(key, device=self.device)
        return self._masks[key]

    def noise(self, rngs: Sequence[torch.Generator], batch: int) -> Tensor:
        return torch.stack([m.sample_noise(batch, rng) for m, rng in zip(self.models, rngs)])

    def train_step(self, real: Tensor, rngs: Sequence[torch.Generator]) -> List[Dict[str, Tensor]]:
        """One step of every member on its batch real[k] with its stream rngs[k]; each member's
        losses as its own `train_step` would return them (views, no host sync)."""
        raise NotImplementedError

    def unpack(self) -> None:
        """Write every member's state (weights, buffers, optimisers, counters) back into its model."""
        raise NotImplementedError


def _per_member(logs: Dict[str, Tensor], k: int, skip: Sequence[str] = ()) -> Dict[str, Tensor]:
    return {name: value[k] for name, value in logs.items() if name not in skip}


def _named(models, attr: Optional[str] = None) -> list:
    return [dict((getattr(m, attr) if attr else m).named_parameters()) for m in models]


# --- GANs --------------------------------------------------------------------------------------

class GANPacker(Packer):
    """GAN.train_step for K members: one D update each, a G update where a member's schedule has one."""

    base = GAN
    hooks = ("train_step", "generator_step_due", "logit", "sample_noise", "discriminator_loss", "generator_loss",
             "after_discriminator_step", "after_step")
    forms: ClassVar[Dict[Callable, Callable]] = {GAN.train_step: None, GAN.generator_step_due: None,
                                                 GAN.logit: None, GenerativeModel.sample_noise: None}

    @classmethod
    def applies(cls, model_cls: type) -> bool:
        penalty = getattr(model_cls, "penalty", None)
        return super().applies(model_cls) and (penalty is None or isinstance(penalty, GradientPenalty))

    def __init__(self, models, batched=None):
        super().__init__(models, batched)
        self.G = Stack([m.G for m in self.models], batched)
        self.D = Stack([m.D for m in self.models], batched)
        self.opt_G = PackedAdam({"": self.G}, [m.optimizers()["G"] for m in self.models], _named(self.models, "G"))
        self.opt_D = PackedAdam({"": self.D}, [m.optimizers()["D"] for m in self.models], _named(self.models, "D"))
        self.extra = {name: torch.stack([getattr(m, name) for m in self.models]).clone()
                      for name, _ in self.models[0].named_buffers(recurse=False)}  # BEGAN's k

    def logit(self, x: Tensor) -> Tensor:
        return self.D(x).squeeze(-1)

    def train_step(self, real, rngs):
        z = self.noise(rngs, real.shape[1])
        with torch.no_grad():
            fake = self.G(z)
        d_terms = self.form("discriminator_loss")(self, real, fake, rngs)
        self.D.zero_grad()
        d_terms["d_loss"].sum().backward()
        self.opt_D.step()
        self.form("after_discriminator_step")(self)
        logs = {k: v.detach() for k, v in d_terms.items()}

        due = [m.generator_step_due(self.steps) for m in self.models]
        if any(due):
            mask = self.mask(due)
            if self.cls.fresh_z_for_generator:
                z = torch.stack([m.sample_noise(real.shape[1], rng) if d else z[k]
                                 for k, (m, rng, d) in enumerate(zip(self.models, rngs, due))])
            # A member not due this step must come out of it untouched, its batch-norm statistics too.
            saved = None if mask is None else (self.G.snapshot_buffers(), self.D.snapshot_buffers())
            self.D.requires_grad_(False)
            try:
                g_loss = self.form("generator_loss")(self, self.G(z))
            finally:
                self.D.requires_grad_(True)
            self.G.zero_grad()
            (g_loss.sum() if mask is None else torch.where(mask, g_loss, 0.0).sum()).backward()
            self.opt_G.step(due, mask)
            if saved is not None:
                self.G.keep_buffers(saved[0], ~mask)
                self.D.keep_buffers(saved[1], ~mask)
            logs["g_loss"] = g_loss.detach()

        logs.update(self.form("after_step")(self, real, z))
        self.steps += 1
        self.g_steps = [g + d for g, d in zip(self.g_steps, due)]
        return [_per_member(logs, k, () if d else ("g_loss",)) for k, d in enumerate(due)]

    def unpack(self):
        self.G.unstack_into([m.G for m in self.models])
        self.D.unstack_into([m.D for m in self.models])
        self.opt_G.unstack_into([m.optimizers()["G"] for m in self.models], _named(self.models, "G"))
        self.opt_D.unstack_into([m.optimizers()["D"] for m in self.models], _named(self.models, "D"))
        with torch.no_grad():
            for k, m in enumerate(self.models):
                for name, value in self.extra.items():
                    getattr(m, name).copy_(value[k])
                m.steps, m.g_steps = self.steps, self.g_steps[k]


def gan_form(method: Callable):
    def register(fn: Callable) -> Callable:
        GANPacker.forms[method] = fn
        return fn
    return register


@gan_form(GAN.discriminator_loss)
def _gan_discriminator_loss(pack: GANPacker, real, fake, rngs):
    loss = vmap(pack.cls.loss.discriminator)(pack.logit(real), pack.logit(fake))
    penalty: Optional[GradientPenalty] = pack.cls.penalty
    if penalty is None:
        return {"d_loss": loss}
    points = torch.stack([penalty.point(r, f, rng) for r, f, rng in zip(real, fake, rngs)])
    value = gradient_norm_penalty(penalty.score(pack.logit), points, lead=2)
    return {"d_loss": loss + pack.hparam("lambda") * value, "penalty": value}


@gan_form(GAN.generator_loss)
def _gan_generator_loss(pack: GANPacker, fake):
    return vmap(pack.cls.loss.generator)(pack.logit(fake))


@gan_form(GAN.after_discriminator_step)
def _nothing_after_discriminator_step(pack: GANPacker):
    pass


@gan_form(GAN.after_step)
def _nothing_after_step(pack: GANPacker, real, z):
    return {}


@gan_form(WassersteinGAN.after_discriminator_step)
@torch.no_grad()
def _clip_discriminator(pack: GANPacker):
    clip = pack.hparam("clip")
    for p in pack.D.parameters():
        bound = _along(clip, p)
        p.clamp_(-bound, bound)


def _reconstruction_error(pack: GANPacker, x: Tensor) -> Tensor:
    """BEGAN's L(v) per member: mean |v − AE(v)| over each member's whole batch."""
    return (pack.D(x) - x).abs().flatten(1).mean(1)


@gan_form(BEGAN.discriminator_loss)
def _began_discriminator_loss(pack: GANPacker, real, fake, rngs):
    return {"d_loss": _reconstruction_error(pack, real) - pack.extra["k"] * _reconstruction_error(pack, fake)}


@gan_form(BEGAN.generator_loss)
def _began_generator_loss(pack: GANPacker, fake):
    return _reconstruction_error(pack, fake)


@gan_form(BEGAN.after_step)
@torch.no_grad()
def _began_update_k(pack: GANPacker, real, z):
    real_error = _reconstruction_error(pack, real)
    fake_error = _reconstruction_error(pack, pack.G(z))
    k = pack.extra["k"]
    k.add_(pack.hparam("lambda_k") * (pack.hparam("gamma") * real_error - fake_error))
    return {"k": k.clone()}


# --- VAEs --------------------------------------------------------------------------------------

class VAEPacker(Packer):
    """VAE.train_step for K members: the encoder and decoder stacked, the loss from the model's own
    `elbo_terms` under vmap, one Adam over both networks per member."""

    base = VAE
    hooks = ("train_step", "negative_elbo", "encode", "posterior", "minimize")
    forms = {VAE.train_step: None, VAE.negative_elbo: None, VAE.encode: None, VAE.posterior: None,
             GenerativeModel.minimize: None}

    def __init__(self, models, batched=None):
        super().__init__(models, batched)
        self.encoder = Stack([m.encoder for m in self.models], batched)
        self.decoder = Stack([m.decoder for m in self.models], batched)
        self.opt = PackedAdam({"encoder.": self.encoder, "decoder.": self.decoder},
                              [m.optimizers()["model"] for m in self.models], _named(self.models))
        self.kl_weight = torch.tensor([float(m.kl_weight()) for m in self.models], device=self.device)
        self.terms = vmap(self.models[0].elbo_terms)

    def train_step(self, real, rngs):
        mu, sigma = self.cls.posterior(self.encoder(real))
        eps = torch.stack([torch.randn(mu.shape[1:], generator=rng, device=mu.device) for rng in rngs])
        decoded = self.decoder(mu + sigma * eps)
        terms = self.terms(real, mu, sigma, decoded, self.kl_weight)
        self.encoder.zero_grad(), self.decoder.zero_grad()
        terms["loss"].sum().backward()
        self.opt.step()
        self.steps += 1
        self.g_steps = [g + 1 for g in self.g_steps]
        logs = {k: v.detach() for k, v in terms.items()}
        return [_per_member(logs, k) for k in range(len(self.models))]

    def unpack(self):
        self.encoder.unstack_into([m.encoder for m in self.models])
        self.decoder.unstack_into([m.decoder for m in self.models])
        self.opt.unstack_into([m.optimizers()["model"] for m in self.models], _named(self.models))
        for k, m in enumerate(self.models):
            m.steps, m.g_steps = self.steps, self.g_steps[k]


PACKERS = (GANPacker, VAEPacker)


def packer_for(model_cls: type) -> Optional[type]:
    """The packer that trains `model_cls` exactly as alone, or None (it trains one at a time)."""
    return next((p for p in PACKERS if p.applies(model_cls)), None)


def packs(model_cls: type, arch: str = DEFAULT_ARCH) -> bool:
    """Whether trials of `model_cls` built on `arch` train packed: the model has a packer and its
    networks batch under vmap (a model with networks of its own brings them whatever the arch)."""
    return packer_for(model_cls) is not None and (own_networks(model_cls) or get_architecture(arch).packs)
