"""Per-configuration step time of packed trials (bench/packing) against trials alone, one device.

    python benchmarks/packed_training.py [--device auto|cpu|cuda] [--shape 3x32x32] [--packs 1,4,16,64]
                                         [--steps N] [--repeats 3] [--models ns_gan,wgan_gp,vae] [--json FILE]

For each model (author defaults, except disc_iters 1 and 5 alternating between members so that the
masked G step is timed too) it times K configurations trained alone one after the other (K = 1 is
the ordinary trial) and trained as one pack of K, and prints milliseconds per configuration-step
and the speed-up per configuration over K = 1 alone. A pack size that runs out of memory is
reported as such. The figures belong in benchmarks/RESULTS.md with the device, date and command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bench.config import resolve_device
from bench.devices import device_name
from bench.models import build_model
from bench.packing import packer_for

BATCH = 64


def members(name: str, k: int, shape, device) -> list:
    models = []
    for i in range(k):
        torch.manual_seed(i)
        hparams = {"disc_iters": (1, 5)[i % 2]} if name != "vae" else {}
        models.append(build_model(name, shape, hparams, device))
    return models


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alone(name: str, k: int, shape, device, steps: int) -> float:
    """Seconds per configuration-step, K configurations one after the other."""
    models = members(name, k, shape, device)
    rngs = [torch.Generator(device=device).manual_seed(i) for i in range(k)]
    real = torch.rand(BATCH, *shape, device=device)
    for m, rng in zip(models, rngs):  # warm-up: optimiser state, kernels, allocator
        m.train_step(real, rng)
    _sync(device)
    t0 = time.perf_counter()
    for m, rng in zip(models, rngs):
        for _ in range(steps):
            m.train_step(real, rng)
    _sync(device)
    return (time.perf_counter() - t0) / (k * steps)


def time_packed(name: str, k: int, shape, device, steps: int) -> float:
    models = members(name, k, shape, device)
    for m in models:
        m.optimizers()
    pack = packer_for(type(models[0]))(models)
    rngs = [torch.Generator(device=device).manual_seed(i) for i in range(k)]
    real = torch.rand(k, BATCH, *shape, device=device)
    pack.train_step(real, rngs)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        pack.train_step(real, rngs)
    _sync(device)
    return (time.perf_counter() - t0) / (k * steps)


def measure(models, packs, shape, device, steps, repeats: int = 1, alone_every_k: bool = True) -> list[dict]:
    """Per model and pack size K: K configurations trained alone one after the other and as one
    pack, alternately `repeats` times (medians), so that a slow spell of a shared machine falls on
    both. The speed-ups are against K = 1 alone (the ordinary trial) and, with `alone_every_k`,
    against the same K alone (else only the first size is timed alone: quicker, noisier)."""
    rows = []
    for name in models:
        base = None
        for k in packs:
            row = {"model": name, "K": k}
            try:
                alone, packed = [], []
                for _ in range(repeats):
                    if alone_every_k or base is None:
                        alone.append(time_alone(name, k, shape, device, steps))
                    packed.append(time_packed(name, k, shape, device, steps))
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
                rows.append(row)
                torch.cuda.empty_cache()
                break
            alone, packed = (statistics.median(alone) if alone else None), statistics.median(packed)
            base = alone if base is None else base  # K = 1, or the first size asked for
            row.update(packed_ms_per_config=round(packed * 1e3, 3), speedup_vs_alone=round(base / packed, 3))
            if alone is not None:
                row.update(alone_ms_per_config=round(alone * 1e3, 3), speedup_vs_same_k_alone=round(alone / packed, 3))
            rows.append(row)
            print(f"{name:8s} K={k:3d}  alone " + (f"{alone * 1e3:9.2f}" if alone else "        -")
                  + f"  packed {packed * 1e3:9.2f} ms/config-step   x{row['speedup_vs_alone']:.2f} vs K=1 alone"
                  + (f", x{row['speedup_vs_same_k_alone']:.2f} vs these {k} alone" if alone else "")
                  + f" (median of {repeats})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", default="3x32x32", help="CxHxW (the study's CIFAR-10: 3x32x32)")
    parser.add_argument("--packs", default=None, help="pack sizes (default 1,4,16 on a CPU, 1,4,16,64 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on a CPU, 30 on a GPU)")
    parser.add_argument("--models", default="ns_gan,wgan_gp,vae")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of alone and packed (medians)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))
    gpu = device.type == "cuda"
    packs = [int(k) for k in (args.packs or ("1,4,16,64" if gpu else "1,4,16")).split(",")]
    steps = args.steps or (30 if gpu else 3)
    shape = tuple(int(v) for v in args.shape.split("x"))
    print(f"device: {device_name(device)}; shape {args.shape}, batch {BATCH}, {steps} timed steps, {args.repeats} "
          f"repeats, torch {torch.__version__}")
    rows = measure(args.models.split(","), packs, shape, device, steps, args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(device), "shape": args.shape, "steps": steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
