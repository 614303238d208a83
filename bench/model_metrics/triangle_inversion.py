"""Inverting a generator: the latent z* whose image is nearest a test image (the triangle metric's recall).

Inversion (`invert_generator`, settings `Inversion`): `restarts` = 2 starts per image, the draws
nearest to it (pixel L2) among `pool` = 4096 draws from the model's prior (seeded, on the CPU, so
that every device starts alike; pool = 0 gives plain random starts), then `steps` = 50 Adam steps
(lr 0.05, betas 0.9/0.999) on Σ‖G(z) − x‖² in eval mode, z clamped to [−1, 1] for a uniform
prior; the best z seen per image is kept. Its cost is restarts · steps forward+backward passes
of G per image: with the study's 28×28 generator, n = 1024 takes ~100 s on 2 CPU cores (~3.5 min
on a busy machine), precision ~8 s. More restarts or steps raise recall only where G nearly
reaches a test triangle, at a proportional cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.model_metrics.triangle_raster import as_pixels
from bench.models.base import evaluating
from bench.progress import bar


@dataclass(frozen=True)
class Inversion:
    """Settings of `invert_generator`; all go into protocols."""

    restarts: int = 2
    steps: int = 50
    lr: float = 0.05
    pool: int = 4096  # prior draws the starts are picked from (0: plain draws)
    seed: int = 0
    batch: int = 1024  # rows (image × restart) optimised together (memory only)


def invert_generator(model, images: torch.Tensor, restarts: int = Inversion.restarts, steps: int = Inversion.steps,
                     lr: float = Inversion.lr, seed: int = Inversion.seed, pool: int = Inversion.pool,
                     batch: int = Inversion.batch) -> tuple[torch.Tensor, torch.Tensor]:
    """z* ≈ argmin_z ‖G(z) − x‖² per image: returns z* [N, z_dim] and ‖G(z*) − x‖² [N] (float64),
    on the model's device.

    Starts: the `restarts` draws from the model's prior (seeded by `seed`, on the CPU so that every
    device starts alike) nearest to x among `pool` draws, or `restarts` plain draws if pool = 0.
    Then `steps` Adam steps on z in eval mode, z clamped to [−1, 1] for a uniform prior; the best z
    seen per image over restarts and steps is kept. The model's parameters, their requires_grad
    flags and .grad, and its train/eval mode are left as they were.
    """
    if restarts < 1 or steps < 0:
        raise ValueError(f"need restarts >= 1 and steps >= 0, got {restarts} and {steps}")
    device = model.device
    x = as_pixels(images).to(device)
    n = len(x)
    if not n:
        return torch.zeros(0, model.z_dim, device=device), torch.zeros(0, dtype=torch.float64, device=device)
    rng = torch.Generator().manual_seed(seed)
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # no weight gradients: cheaper, and nothing lands in .grad
    try:
        with evaluating(model):
            if pool:
                z_pool = model.sample_noise(max(pool, restarts), generator=rng, device="cpu").to(device)
                with torch.no_grad():
                    g_pool = torch.cat([model.decode(z).reshape(len(z), -1) for z in z_pool.split(batch)])
                starts = z_pool[_nearest_rows(x, g_pool, restarts)].reshape(n * restarts, -1)
            else:
                starts = model.sample_noise(n * restarts, generator=rng, device="cpu").to(device)
            targets = x.repeat_interleave(restarts, 0)
            pairs = list(zip(starts.split(batch), targets.split(batch)))
            z_best, d_best = zip(*(_descend(model, z, t, steps, lr) for z, t in
                                   bar(pairs, desc=f"triangle recall: inverting G on {n} images", unit="batch")))
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    z_best, d_best = torch.cat(z_best).view(n, restarts, -1), torch.cat(d_best).view(n, restarts)
    pick = d_best.argmin(1)
    rows = torch.arange(n, device=device)
    return z_best[rows, pick], d_best[rows, pick]


def _nearest_rows(x: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    d = (pool * pool).sum(1) - 2 * x @ pool.T
    return d.topk(k, dim=1, largest=False).indices


def _descend(model, z: torch.Tensor, x: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the rows of z (independent: eval-mode batch norm mixes no rows); best iterate per row."""
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best_z = z.detach().clone()
    best_d = torch.full((len(z),), math.inf, dtype=torch.float64, device=z.device)
    for step in range(steps + 1):
        d = (model.decode(z).reshape(len(z), -1).float() - x).square().sum(1)
        with torch.no_grad():
            better = d.double() < best_d
            best_d = torch.where(better, d.double(), best_d)
            best_z[better] = z[better]
        if step == steps:
            break
        (z.grad,) = torch.autograd.grad(d.sum(), z)
        opt.step()
        if model.noise == "uniform":
            with torch.no_grad():
                z.clamp_(-1, 1)
    return best_z, best_d
