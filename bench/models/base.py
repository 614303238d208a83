"""The contract every model fulfils, built-in or plug-in (DESIGN.md, "A model").

A model owns its networks, its optimisers and its step counters, so that one `state_dict()`
is a complete checkpoint and the training loop needs to know nothing about model families.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Dict, Iterator, Optional

import torch
from torch import nn

from bench.models.architecture import Z_DIM
from bench.models.architectures import DEFAULT_ARCH, get_architecture
from bench.models.search_space import SearchSpace


class GenerativeModel(nn.Module):
    """Base class of all models. Subclasses set the class attributes and implement `train_step`.

    - `name` is set by `@register_model`; `family` groups models in tables ("gan", "vae", ...);
    - `explicit` models have a likelihood (issue: NLL), implicit ones only samples;
    - `search_space` holds the author defaults and the wide/narrow ranges of PROTOCOL §4;
    - `noise` is the prior of z: "uniform" (U[-1,1], the study's GANs) or "normal" (N(0,I)).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    explicit: ClassVar[bool] = False
    # Explicit models: what their likelihood is of (bench/model_metrics/metric_nll.py, LIKELIHOODS):
    # "discrete" (a distribution over the 256 values of each 8-bit dimension), "dequantized"
    # (a density of y = (255·x + u)/256, u ~ U[0,1)) or "binarized" (Bernoulli pixels; nats).
    likelihood: ClassVar[str] = ""
    exact_likelihood: ClassVar[bool] = False  # log p(x) itself (PixelCNN, flows), not a bound (VAEs)
    # A bound that is not an importance-weighted average (DDPM's variational bound): log_weights
    # returns it as one row, computed whole from its k in one call; `bound_protocol(k)` says what it is.
    bound_in_one_call: ClassVar[bool] = False
    search_space: ClassVar[SearchSpace]
    noise: ClassVar[str] = "uniform"
    z_dim: ClassVar[int] = Z_DIM  # an instance may set its own (PixelCNN: one variate per dimension)
    # Triangle recall inverts decode() by gradient descent on z; a sampler that is not a
    # differentiable function of z (PixelCNN) sets this False and its recall is unavailable.
    invertible_by_gradient: ClassVar[bool] = True
    # Samples generated per call at an evaluation point: the study's 10,000 in 20 calls for a
    # network whose cost is its arithmetic; a sampler whose cost is its kernel launches (PixelCNN:
    # a fixed number per call, whatever the batch) takes them all in one.
    generate_batch: ClassVar[int] = 500
    # An iterative sampler (DDPM) draws a sample in a number of network passes that the protocol
    # sets (`--sample-steps`) and the trial records; `sample_steps` is what decode() takes.
    iterative_sampler: ClassVar[bool] = False
    sample_steps: int = 0
    # The architectures (bench/models/architectures.py) whose generator and discriminator bodies
    # this model can be built on, from `self.architecture`; None: networks of its own, the same
    # under every `--arch`. A model that builds the study's networks directly stays on infogan.
    architectures: ClassVar[Optional[tuple]] = (DEFAULT_ARCH,)

    def __init__(self, image_shape: tuple[int, int, int], hparams: Optional[dict] = None, arch: str = DEFAULT_ARCH):
        super().__init__()
        self.image_shape = tuple(int(v) for v in image_shape)
        self.hparams = self.search_space.resolve(hparams)
        self.architecture = get_architecture(arch)
        self.steps = 0  # training steps taken (one discriminator update each, for GANs)
        self.g_steps = 0  # generator updates taken
        self._opts: Dict[str, torch.optim.Optimizer] = {}

    # --- what subclasses implement -------------------------------------------------------

    def train_step(self, real: torch.Tensor, rng: torch.Generator) -> Dict[str, torch.Tensor]:
        """One training step on a batch of real images in [0,1]; returns this step's losses as
        detached 0-d tensors (no host synchronisation: the loop reads them in bulk)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0,1] for latent codes z; called in eval mode, without gradients."""
        raise NotImplementedError

    def optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        """The model's optimisers by name; by default one Adam over all parameters. Created on first
        use, after the model has moved to its device, so fused CUDA Adam can be chosen."""
        if not self._opts:
            self._opts = {"model": self.make_adam(self.parameters())}
        return self._opts

    def parameter_counts(self) -> Dict[str, int]:
        """Parameters per network, e.g. {"G": ..., "D": ...}, for `bench list models` and reports."""
        raise NotImplementedError

    def log_weights(self, x: torch.Tensor, k: int, rng: torch.Generator) -> torch.Tensor:
        """Explicit models only: log-likelihood terms in nats of images x, [k', N].

        x holds 8-bit images as floats in [0,1] (value/255; for "binarized" models, 0/1 pixels
        binarised by the caller). Latent-variable models return k' = k importance log-weights
        log p(x, z_i) − log q(z_i | x) (their mean-exp is the IWAE bound); exact models return
        k' = 1 row of log p(x), whatever k. A "dequantized" model returns log p(y) of
        y = (255·x + u)/256 with u drawn from `rng`. Called in eval mode without gradients.
        """
        raise NotImplementedError(f"{type(self).__name__} has no likelihood")

    @classmethod
    def sampling_steps(cls, hparams: dict, asked: int) -> int:
        """The sampling steps a trial of these hyperparameters takes when the protocol asks for
        `asked` (recorded in its configuration): 0 for a model that samples in one pass."""
        return 0

    def bound_protocol(self, k: int) -> dict:
        """A `bound_in_one_call` model's NLL record fields: "estimator", the "k" it used, and its own."""
        raise NotImplementedError

    # --- shared behaviour ----------------------------------------------------------------

    def sample_noise(self, n: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
        device = device if device is not None else self.device
        if self.noise == "normal":
            return torch.randn(n, self.z_dim, generator=generator, device=device)
        return torch.rand(n, self.z_dim, generator=generator, device=device).mul_(2).sub_(1)

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Samples for z with batch-norm running statistics (PROTOCOL §2: evaluation mode)."""
        with evaluating(self):
            return self.decode(z)

    def minimize(self, loss: torch.Tensor) -> None:
        """One step of the default optimiser on `loss`, counted as a training step: the whole
        update of a model trained on one objective (VAEs, PixelCNN, flows)."""
        opt = self.optimizers()["model"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.steps += 1
        self.g_steps += 1

    def generator_step_due(self, step: Optional[int] = None) -> bool:
        """Whether step `step` (default: the next one) updates the generator. Models trained on one
        objective update everything at every step; GANs follow their `disc_iters` schedule."""
        return True

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def make_adam(self, params: Iterator[nn.Parameter]) -> torch.optim.Adam:
        """Adam as in the study: searched lr and β1, β2 = 0.999, ε = 1e-8."""
        params = list(params)
        fused = bool(params) and params[0].is_cuda
        return torch.optim.Adam(
            params, lr=self.hparams["lr"], betas=(self.hparams["beta1"], 0.999), eps=1e-8, fused=fused or None
        )

    # What a finished trial keeps for later commands (samples, `bench score --checkpoint`, AIS):
    # the weights of these top-level networks (None: every parameter and buffer), never the
    # optimiser state; a GAN keeps G, a VAE its decoder. `bound_networks` are what an explicit
    # model's likelihood bound needs besides (a VAE's encoder): kept only with --keep weights or
    # checkpoints, since the bound is already in every record and, at a study's scale, encoders
    # would be a third of the run's disk.
    kept_networks: ClassVar[Optional[tuple]] = None
    bound_networks: ClassVar[tuple] = ()

    def kept_weights(self, with_bound: bool = True) -> Dict[str, torch.Tensor]:
        named = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        keep = None if self.kept_networks is None else (*self.kept_networks, *(self.bound_networks if with_bound else ()))
        return {name: t.detach() for name, t in named.items() if keep is None or name.split(".")[0] in keep}

    def holds_bound_networks(self, weights: Dict[str, torch.Tensor]) -> bool:
        """Whether kept `weights` hold what the likelihood bound needs."""
        return all(any(k.split(".")[0] == net for k in weights) for net in self.bound_networks)

    def load_kept_weights(self, weights: Dict[str, torch.Tensor]) -> None:
        """Load what `kept_weights` saved; the networks not kept stay as built."""
        missing, unexpected = self.load_state_dict(weights, strict=False)
        expected = set(self.kept_weights(with_bound=self.holds_bound_networks(weights)))
        lost = [k for k in missing if k in expected]
        if lost or unexpected:
            raise ValueError(f"weights do not fit: missing {lost[:3]}, unexpected {list(unexpected)[:3]}")

    # Optimiser state and step counters travel inside state_dict(), so a checkpoint is one call.
    def get_extra_state(self) -> dict:
        return {
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers().items()},
            "steps": self.steps,
            "g_steps": self.g_steps,
        }

    def set_extra_state(self, state: dict) -> None:
        for key, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][key])
        self.steps = int(state["steps"])
        self.g_steps = int(state["g_steps"])


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """Eval mode inside the block, the previous mode after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """No parameter gradients for `module` inside the block (gradients still flow through it).

    The generator step only needs gradients with respect to G; skipping D's weight gradients
    saves about a third of D's backward pass."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
