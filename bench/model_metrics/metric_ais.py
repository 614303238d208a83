"""Annealed importance sampling log-likelihood of decoder-based models (Wu, Burda, Salakhutdinov &
Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative Models").

A decoder g (a GAN generator, a VAE decoder's mean) defines no density of images; with the
observation model p(x|z) = N(x; g(z), σ²I) on the D flattened pixels of x ∈ [0,1] it does,
p(x) = ∫ p(z) p(x|z) dz, and AIS estimates that integral. Protocol:

- prior p(z): N(0, I) for `noise == "normal"` (VAEs), U[-1,1]^d for "uniform" (the study's GANs);
- path f_t(z) = p(z) p(x|z)^β_t, t = 0..T, on Wu et al.'s sigmoid schedule
  β_t ∝ sigmoid(4(2t/T − 1)) − sigmoid(−4), rescaled so that β_0 = 0 and β_T = 1;
- z_0 ~ p(z); for t = 1..T: log w += (β_t − β_{t−1}) log p(x|z_{t−1}), then (t < T) one HMC
  transition leaving f_t invariant: L leapfrog steps, unit mass, Metropolis test. In the uniform
  prior's box a position past a wall is mirrored and that momentum component flipped: the map
  stays volume-preserving and reversible, so the test stays exact for a density flat on the box;
- one step size per example, adapted during the run: ×1.02 or ×0.98 as the acceptance rate of its
  M chains (smoothed, slowness 0.9) is above or below the target 0.65, within [1e-4, 0.5] (the
  constants of public AIS code following Wu et al.). Adapting each chain on its own history, as
  that code does, biases p̂ upwards: +3–5% (≈ 0.04 nats) in a 3-D linear-Gaussian test with
  T = 500; pooling over 16 chains removed it within noise (±1%);
- M independent chains per example: log p̂(x) = logsumexp_m log w_m − log M. p̂ is unbiased for p(x),
  so log p̂(x) is a stochastic lower bound of log p(x) (Jensen), tight as T grows.

Reported: mean −log p̂(x) in nats over the examples and its standard error over the examples (the
spread of test images, not the AIS noise). It is a density of continuous x under a Gaussian of
width σ: it depends strongly on σ and is not bits/dim on 8-bit data. Wu et al. choose σ on
validation data; a reported number states σ with the rest of the protocol.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

import torch

from bench.defaults import DEFAULTS
from bench.metrics.registry import MetricInputs, MetricOutput, register_metric
from bench.model_metrics.metric_nll import NLLEstimate
from bench.models.base import evaluating, frozen
from bench.numerics import METRICS
from bench.progress import bar

PRIORS = ("normal", "uniform")
SCHEDULES = ("sigmoid", "linear")
SIGMOID_RADIUS = 4.0  # Wu et al.'s sigmoid schedule spans sigmoid(−4) .. sigmoid(4)
STEP_MIN, STEP_MAX, STEP_UP, STEP_DOWN, SLOWNESS = 1e-4, 0.5, 1.02, 0.98, 0.9  # step-size adaptation


@dataclass(frozen=True)
class AISSettings:
    """AIS settings. T = 1000 and 16 chains are for reported numbers (Wu et al. use 1000–10000
    steps; the bound tightens with T, so a number states T). σ = 0.05 (≈ 13 of 255 levels) is a
    default only: the likelihood depends strongly on σ; pass the one chosen on validation data.
    The initial step 0.1 suits the prior at β ≈ 0; starting at 0.01 (as Wu et al.'s code) spent
    ~200 transitions growing it and left the mean log w ≈ 5 nats lower at T = 300 in a 5-D test."""

    steps: int = DEFAULTS["ais_steps"]  # T intermediate distributions
    chains: int = DEFAULTS["ais_chains"]  # M independent chains per example
    leapfrog: int = DEFAULTS["ais_leapfrog"]  # L leapfrog steps per HMC transition
    sigma: float = DEFAULTS["ais_sigma"]  # observation noise std of p(x|z) = N(g(z), σ²I)
    step_size: float = 0.1  # initial leapfrog step size, adapted per example
    target_accept: float = 0.65
    schedule: str = "sigmoid"
    seed: int = 0

    def validate(self) -> "AISSettings":
        def count(v):
            return isinstance(v, numbers.Integral) and v >= 1

        for name, ok, need in (
            ("steps", count(self.steps), "an integer >= 1"),
            ("chains", count(self.chains), "an integer >= 1"),
            ("leapfrog", count(self.leapfrog), "an integer >= 1"),
            ("sigma", self.sigma > 0, "> 0"),
            ("step_size", self.step_size > 0, "> 0"),
            ("target_accept", 0 < self.target_accept < 1, "in (0, 1)"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ):
            if not ok:
                raise ValueError(f"AISSettings.{name} must be {need}, got {getattr(self, name)!r}.")
        return self


@dataclass
class AISResult:
    """Per-example log p̂(x) [N] (float64), the mean NLL over examples in nats and its standard error."""

    log_px: torch.Tensor
    log_weights: torch.Tensor  # [M, N] per-chain log w (float64, with p(x|z)'s constant): diagnostics
    nll_nats: float
    nll_nats_se: float
    acceptance: float  # fraction of HMC proposals accepted, over all chains and transitions
    protocol: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"nll_nats": self.nll_nats, "nll_nats_se": self.nll_nats_se, "acceptance": self.acceptance,
                "n": len(self.log_px), **self.protocol}


def betas(steps: int, schedule: str = "sigmoid") -> torch.Tensor:
    """β_0 = 0, ..., β_T = 1 (float64); sigmoid spends its steps near both ends, where log w varies most."""
    if schedule == "linear":
        return torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    s = torch.sigmoid(torch.linspace(-SIGMOID_RADIUS, SIGMOID_RADIUS, steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


def _reflect(z: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold z into [-1, 1] by mirroring at the walls (any number of times); flip p on an odd count."""
    out = z.abs() > 1
    y = torch.remainder(z + 1, 4)  # in [0, 4): [0, 2] an even number of crossings, (2, 4) odd
    odd = out & (y > 2)
    return torch.where(out, torch.where(y > 2, 3 - y, y - 1), z), torch.where(odd, -p, p)


def ais_log_likelihood(decode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, z_dim: int, prior: str,
                       settings: AISSettings = AISSettings(), generator: Optional[torch.Generator] = None,
                       device=None) -> AISResult:
    """AIS estimate of log p(x) for images x [N, ...] under decode: z [B, z_dim] -> images [B, ...].

    All N × M chains run as one batch (row m·N + i is chain m of example i), so decode must treat
    rows independently (eval-mode batch norm does). Gradients are taken with respect to z only.
    Draws come from `generator` when given, else from a fresh one seeded with settings.seed.
    """
    s = settings.validate()
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}.")
    device = torch.device(device) if device is not None else x.device
    gen = generator if generator is not None else torch.Generator(device).manual_seed(s.seed)
    n, m, normal = len(x), s.chains, prior == "normal"
    xf = x.reshape(n, -1).to(device)
    xf = (xf if xf.is_floating_point() else xf.float()).repeat(m, 1)
    dims, shape, dt = xf.shape[1], (m * n, z_dim), xf.dtype

    def lik(z):  # log p(x|z) without its constant (float64) and its gradient in z
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            sq = (xf - decode(z).reshape(len(z), -1)).square().sum(1)
            (g,) = torch.autograd.grad(sq.sum(), z)
        return -sq.detach().double() / (2 * s.sigma**2), g.mul_(-1 / (2 * s.sigma**2))

    def potential(z, ll, beta):  # U = −log f_β up to a constant (float64)
        return (0.5 * z.double().square().sum(1) if normal else 0) - beta * ll

    def grad_u(z, g, beta):
        return (z - beta * g) if normal else -beta * g

    def randn():
        return torch.randn(shape, generator=gen, device=device, dtype=dt)

    z = randn() if normal else torch.rand(shape, generator=gen, device=device, dtype=dt).mul_(2).sub_(1)
    b = betas(s.steps, s.schedule).tolist()
    ll, g = lik(z)
    log_w = torch.zeros(m * n, dtype=torch.float64, device=device)
    eps_n = torch.full((n,), s.step_size, dtype=torch.float64, device=device)  # one step size per example
    eps = eps_n.to(dt).repeat(m)[:, None]
    avg = torch.full((n,), s.target_accept, dtype=torch.float64, device=device)
    accepted = torch.zeros((), device=device)
    for t in bar(range(1, s.steps + 1), desc=f"AIS on {n} images x {m} chains", unit="step"):
        log_w += (b[t] - b[t - 1]) * ll
        if t == s.steps:
            break  # the last transition would not change the weight
        beta = b[t]
        p0 = randn()
        zn, lln, gn = z, ll, g
        p = p0 - 0.5 * eps * grad_u(z, g, beta)
        for step in range(s.leapfrog):
            zn = zn + eps * p
            if not normal:
                zn, p = _reflect(zn, p)
            lln, gn = lik(zn)
            p = p - (eps if step < s.leapfrog - 1 else 0.5 * eps) * grad_u(zn, gn, beta)
        h0 = potential(z, ll, beta) + 0.5 * p0.double().square().sum(1)
        h1 = potential(zn, lln, beta) + 0.5 * p.double().square().sum(1)
        log_a = torch.nan_to_num(h0 - h1, nan=-math.inf).clamp(max=0)  # a NaN decode is rejected
        u = torch.rand(m * n, generator=gen, device=device, dtype=torch.float64)
        acc = u.log() < log_a
        z, ll, g = torch.where(acc[:, None], zn, z), torch.where(acc, lln, ll), torch.where(acc[:, None], gn, g)
        accepted += acc.sum()  # a tensor: no host synchronisation inside the loop
        avg = SLOWNESS * avg + (1 - SLOWNESS) * log_a.exp().view(m, n).mean(0)  # pooled over the M chains
        eps_n = torch.where(avg > s.target_accept, eps_n * STEP_UP, eps_n * STEP_DOWN).clamp_(STEP_MIN, STEP_MAX)
        eps = eps_n.to(dt).repeat(m)[:, None]
    const = -dims * (math.log(s.sigma) + 0.5 * math.log(2 * math.pi))  # β sums to 1: added once
    log_w = log_w.view(m, n) + const
    log_px = torch.logsumexp(log_w, 0) - math.log(m)
    estimate = NLLEstimate.of(-log_px, m)
    protocol = {"method": "AIS (Wu et al. 2017)", "observation": "N(x; decode(z), sigma^2 I), x flattened",
                "prior": "N(0, I)" if normal else "U[-1, 1]^d", "z_dim": z_dim, "dims": dims, "n": n,
                "hmc": "unit mass" + ("" if normal else ", reflection at the box walls"),
                "adaptation": f"per example, pooled acceptance, x{STEP_UP}/x{STEP_DOWN} in [{STEP_MIN}, {STEP_MAX}], "
                              f"slowness {SLOWNESS}", "sigmoid_radius": SIGMOID_RADIUS, **asdict(s)}
    rate = accepted.item() / (m * n * (s.steps - 1)) if s.steps > 1 else float("nan")
    if generator is not None:
        protocol["seed"] = "caller's generator"
    return AISResult(log_px.cpu(), log_w.cpu(), estimate.nats, estimate.standard_error, rate, protocol)


def ais_nll(model, images: torch.Tensor, settings: AISSettings = AISSettings(), seed: Optional[int] = None,
            batch_size: int = 256) -> AISResult:
    """AIS on a bench GenerativeModel: model.decode in eval mode with frozen weights, its z_dim and prior.

    Examples run in chunks of `batch_size` (× chains rows each); the chunking changes the random
    draws, so it is part of the protocol. `seed` overrides settings.seed.
    """
    if not getattr(model, "invertible_by_gradient", True):
        raise ValueError(f"{type(model).__name__}.decode is not differentiable in z; AIS needs its gradient.")
    s = replace(settings, seed=settings.seed if seed is None else seed).validate()
    device = model.device
    gen = torch.Generator(device).manual_seed(s.seed)
    parts = []
    with evaluating(model), frozen(model):
        for chunk in images.split(batch_size):
            parts.append(ais_log_likelihood(model.decode, chunk, model.z_dim, model.noise, s, gen, device))
    log_px, log_w = torch.cat([r.log_px for r in parts]), torch.cat([r.log_weights for r in parts], 1)
    estimate, n = NLLEstimate.of(-log_px, s.chains), len(log_px)
    rate = sum(r.acceptance * len(r.log_px) for r in parts) / n
    protocol = {**parts[0].protocol, "n": n, "seed": s.seed, "batch_size": batch_size, "model": type(model).__name__}
    return AISResult(log_px, log_w, estimate.nats, estimate.standard_error, rate, protocol)


@register_metric("ais", columns=("ais_nll_nats", "ais_nll_nats_se", "ais_acceptance"), needs=("model", "test_images"),
                 applies_to="decoders", in_trials=False, numerics=METRICS,
                 description="annealed importance sampling NLL (Wu 2017); `bench score --checkpoint --nll ais`")
def _ais(x: MetricInputs) -> MetricOutput:
    settings = x.ais or AISSettings()
    result = ais_nll(x.model, x.test_images.float().div(255).to(x.model.device), settings)
    return MetricOutput({"ais_nll_nats": result.nll_nats, "ais_nll_nats_se": result.nll_nats_se,
                         "ais_acceptance": result.acceptance},
                        protocol={**result.protocol, "settings": asdict(settings)})
