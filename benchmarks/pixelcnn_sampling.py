"""PixelCNN sampling with the row cache against sampling without it, same device, same z.

    python benchmarks/pixelcnn_sampling.py [--device auto|cpu|cuda] [--shape 1,28,28] [--n 32]

Times `PixelCNN.decode` (vertical stack once per row, horizontal stack on one row per sub-pixel)
and the uncached sampler (the whole network over the rows up to the current one, per sub-pixel,
which is what decode did before the cache), checks that both draw the same images, and prints
seconds of each and their ratio (goal: the cache is at least 5x faster).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.config import resolve_device
from bench.models import build_model

GOAL = 5.0


def uncached_decode(model, z: torch.Tensor) -> torch.Tensor:
    c, h, w = model.image_shape
    u = ((z + 1) / 2).reshape(-1, c, h, w)
    x = torch.zeros(u.shape, device=z.device)
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                probs = model.logits(x[:, :, : i + 1])[:, :, ch, i, j].float().softmax(1)
                value = torch.searchsorted(probs.cumsum(1), u[:, ch, i, j, None].contiguous(), right=True)
                x[:, ch, i, j] = value.clamp(max=255).squeeze(1) / 255
    return x


def timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", default="1,28,28", help="C,H,W of the images (default 1,28,28)")
    parser.add_argument("--n", type=int, default=32, help="images drawn at once (default 32)")
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))
    shape = tuple(int(s) for s in args.shape.split(","))
    torch.manual_seed(0)
    model = build_model("pixelcnn", shape).to(device).eval()
    z = model.sample_noise(args.n, torch.Generator(device=device).manual_seed(0)).to(device)
    cached_s, cached = timed(lambda: model.decode(z), device)
    uncached_s, uncached = timed(lambda: uncached_decode(model, z), device)
    same = (cached == uncached).float().mean().item()
    print(f"device {device}, shape {shape}, {args.n} images")
    print(f"cached decode   {cached_s:8.2f} s")
    print(f"uncached decode {uncached_s:8.2f} s")
    print(f"speed-up {uncached_s / cached_s:.1f}x (goal ≥ {GOAL:.0f}x); identical sub-pixels: {same:.4%}")


if __name__ == "__main__":
    main()
