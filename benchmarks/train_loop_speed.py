"""Training speed of the suite's loop against a plain hand-written PyTorch loop, same device, one run.

    python benchmarks/train_loop_speed.py [--device auto|cpu|cuda] [--steps N] [--repeats R]

For ns_gan and wgan_gp (author defaults, 28x28x1, batch 64) it times `bench.train.train_until`,
the exact loop every trial runs, and a plain loop written here from scratch with the same
architecture, losses and G/D schedule, and prints steps/s of both and their ratio (goal: the
suite is not slower than 0.95x). Runs alternate and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import resolve_device
from bench.data.device_batches import DeviceBatches
from bench.loss_monitor import LossMonitor
from bench.models import build_model
from bench.train import train_until

GOAL = 0.95


def plain_networks(c=1, h=28, w=28, batch_norm=True):
    """The InfoGAN-style G and D typed out again, independent of bench.models."""
    def bn1(n): return nn.BatchNorm1d(n, eps=1e-3, momentum=1e-3) if batch_norm else nn.Identity()
    def bn2(n): return nn.BatchNorm2d(n, eps=1e-3, momentum=1e-3) if batch_norm else nn.Identity()
    g = nn.Sequential(
        nn.Linear(64, 1024), nn.BatchNorm1d(1024, eps=1e-3, momentum=1e-3), nn.LeakyReLU(0.2),
        nn.Linear(1024, 128 * (h // 4) * (w // 4)), nn.BatchNorm1d(128 * (h // 4) * (w // 4), eps=1e-3, momentum=1e-3),
        nn.LeakyReLU(0.2), nn.Unflatten(1, (128, h // 4, w // 4)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64, eps=1e-3, momentum=1e-3), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(64, c, 4, 2, 1), nn.Sigmoid())
    d = nn.Sequential(
        nn.Conv2d(c, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1), bn2(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * (h // 4) * (w // 4), 1024), bn1(1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))
    return g, d


def plain_loop(model_name: str, images: torch.Tensor, steps: int, device) -> float:
    """A researcher's straightforward loop; returns steps/s."""
    wgan_gp = model_name == "wgan_gp"
    lr, beta1, disc_iters = (1e-4, 0.5, 5) if wgan_gp else (5e-5, 0.0, 1)
    g, d = plain_networks(batch_norm=not wgan_gp)
    g, d = g.to(device), d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(beta1, 0.999))
    losses = []

    def step(i):
        idx = torch.randint(len(images), (64,), device=device)
        real = images[idx].float() / 255
        z = torch.rand(64, 64, device=device) * 2 - 1
        fake = g(z).detach()
        if wgan_gp:
            d_loss = d(fake).mean() - d(real).mean()
            alpha = torch.rand(64, 1, 1, 1, device=device)
            x = (real + alpha * (fake - real)).requires_grad_(True)
            (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
            d_loss = d_loss + 10 * (torch.sqrt(1e-4 + grad.square().flatten(1).sum(1)) - 1).square().mean()
        else:
            d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        losses.append(d_loss.detach())
        if i == 0 or (i - 1) % disc_iters == 0:
            if wgan_gp:
                z = torch.rand(64, 64, device=device) * 2 - 1
            out = d(g(z))
            g_loss = -out.mean() if wgan_gp else F.softplus(-out).mean()
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            losses.append(g_loss.detach())
        if len(losses) >= 100:  # the plain loop also looks at its losses now and then
            torch.stack(losses).cpu()
            losses.clear()

    for i in range(5):  # warm-up, not timed
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i + 5)
    _sync(device)
    return steps / (time.perf_counter() - t0)


def suite_loop(model_name: str, images: torch.Tensor, steps: int, device) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, (1, 28, 28), None, device)
    batches = DeviceBatches(images, 64, seed=0)
    rng = torch.Generator(device=device).manual_seed(0)
    monitor = LossMonitor()
    train_until(model, batches, rng, monitor, 0, 5)  # warm-up, not timed
    _sync(device)
    t0 = time.perf_counter()
    train_until(model, batches, rng, monitor, 5, 5 + steps)
    _sync(device)
    return steps / (time.perf_counter() - t0)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 2000 on CUDA, 40 on CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    steps = args.steps or (2000 if device.startswith("cuda") else 40)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}; {steps} timed steps x {args.repeats} runs")
    images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, device=device)
    worst = float("inf")
    for model_name in ("ns_gan", "wgan_gp"):
        suite, plain = [], []
        for _ in range(args.repeats):
            suite.append(suite_loop(model_name, images, steps, device))
            plain.append(plain_loop(model_name, images, steps, device))
        s, p = statistics.median(suite), statistics.median(plain)
        worst = min(worst, s / p)
        print(f"{model_name:8s} suite {s:9.1f} steps/s   plain {p:9.1f} steps/s   ratio {s / p:.3f}")
    print(f"worst ratio {worst:.3f} (goal >= {GOAL}): {'met' if worst >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
