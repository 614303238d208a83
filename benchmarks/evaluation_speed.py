"""Time of one evaluation point, the host path against the device path with its reference-side cache.

    python benchmarks/evaluation_speed.py [--device auto] [--n N] [--extractor tiny|inception]
                                          [--inception-weights PATH] [--dataset triangles] [--repeats R]

Before (the path trials took until issue 13): features copied to the host batch by batch in
Inception batches of 64, FID in NumPy/SciPy, and the reference side of FID, precision/recall and
density/coverage (Σ_r^½, the real k-NN radii) recomputed at the point. After: `SampleEvaluator.evaluate`,
features kept on the device in the device's batch size, FID in float64 torch there, the reference
side made once per process (its first call is timed apart). Both compute every feature metric a
trial computes (model metrics such as the triangle metric are left out: they are the same in
both). Defaults: 10,000 samples and Inception on a GPU; 2,000 and the tiny extractor on a CPU,
where Inception runs at a few images per second. Prints seconds per point and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.config import resolve_device
from bench.data import get_dataset
from bench.metrics import SampleEvaluator, get_extractor
from bench.metrics.feature_extractor_base import extract_features
from bench.metrics.metric_set import compute_metrics
from bench.metrics.registry import get_metric, trial_metrics


def feature_metrics() -> tuple:
    return tuple(m for m in trial_metrics() if not get_metric(m).needs_model)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_point(evaluator: SampleEvaluator, samples: torch.Tensor) -> dict:
    out = extract_features(evaluator.extractor, samples, batch_size=64, device=evaluator.device, progress=False)
    return compute_metrics(feature_metrics(), evaluator.stats.features, out["features"], out.get("logits"),
                           device=evaluator.device).values


def device_point(evaluator: SampleEvaluator, samples: torch.Tensor) -> dict:
    return evaluator.evaluate(samples).metrics


def timed(fn, device, repeats: int) -> tuple[float, dict]:
    times, values = [], {}
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        values = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int)
    parser.add_argument("--extractor")
    parser.add_argument("--inception-weights")
    parser.add_argument("--dataset", default="triangles")
    parser.add_argument("--data-root")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))
    gpu = device.type == "cuda"
    n = args.n or (10_000 if gpu else 2_000)
    extractor_name = args.extractor or ("inception" if gpu else "tiny")
    dataset = get_dataset(args.dataset)
    reference = dataset.load("reference", args.data_root).head(n)
    extractor = get_extractor(extractor_name, weights=args.inception_weights, device=device)
    samples = torch.rand(n, *dataset.info.image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    t0 = time.perf_counter()
    evaluator = SampleEvaluator(args.dataset, reference, n, extractor, device=device, progress=False,
                                metrics=feature_metrics())
    setup = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; {n} samples of {args.dataset}, {extractor_name} features, "
          f"metrics {', '.join(feature_metrics())}; median of {args.repeats}")
    print(f"evaluator set-up (reference statistics from the disk cache or computed, reference side): {setup:.2f} s")
    before, v_before = timed(lambda: host_point(evaluator, samples), device, args.repeats)
    after, v_after = timed(lambda: device_point(evaluator, samples), device, args.repeats)
    print(f"host path   {before:8.3f} s per point")
    print(f"device path {after:8.3f} s per point   x{before / after:.2f} faster")
    worst = max(abs(v_after[k] - v_before[k]) / max(abs(v_before[k]), 1e-12) for k in v_before
                if isinstance(v_before.get(k), float) and isinstance(v_after.get(k), float))
    print(f"largest relative difference between the two paths' metrics: {worst:.1e}")


if __name__ == "__main__":
    main()
