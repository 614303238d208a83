"""Speed of the metrics layer against the usual alternatives, same device, one run.

    python benchmarks/metrics_speed.py [--device auto|cpu|cuda] [--images N] [--repeats R] [--batch-size B]

(a) Fréchet distance at d = 2048 on random full-rank covariances: `bench.metrics.frechet_distance`
    (symmetric eigensolvers, float64, on the CPU whatever --device says) against the classic
    scipy.linalg.sqrtm(Σ1 Σ2) formula of pytorch-fid / TTUR. Prints both times, the speed-up
    (goal: ours faster) and the absolute difference of the two values.
(b) Inception feature throughput on the same uint8 32×32×3 images: `bench.metrics.extract_features`
    against torch-fidelity's own loop (`torch_fidelity.utils.get_featuresdict_from_dataset`, its
    defaults: DataLoader workers, uint8 batches moved to the device, its FeatureExtractorInceptionV3
    in NCHW) built from the same weights file that bench resolves (torch-fidelity's download, or
    the TorchScript converted under $BENCH_CACHE/weights). Prints images/s of both, their ratio
    (goal: ≥ 0.95) and the largest feature difference. Runs alternate; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import scipy.linalg
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.utils import get_featuresdict_from_dataset

from bench.config import resolve_device
from bench.metrics import extract_features, feature_statistics, frechet_distance, get_extractor
from bench.metrics.feature_extractor_inceptionv3 import WEIGHTS_ENV, _resolve_weights

GOAL = 0.95


def sqrtm_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_frechet(repeats: int) -> None:
    rng = np.random.default_rng(0)
    (mu1, s1), (mu2, s2) = (feature_statistics(rng.standard_normal((4096, 2048)) * scale + shift)
                            for scale, shift in ((1.0, 0.0), (1.1, 0.1)))  # n > d: full rank
    ours = [timed(lambda: frechet_distance(mu1, s1, mu2, s2)) for _ in range(repeats)]
    t_ref, ref = timed(lambda: sqrtm_fid(mu1, s1, mu2, s2))  # minutes on a small CPU: timed once
    t_ours, value = statistics.median(t for t, _ in ours), ours[0][1]
    print(f"(a) Frechet distance, d = 2048, CPU {torch.get_num_threads()} threads")
    print(f"    bench.metrics.frechet_distance: {t_ours:.2f} s (median of {repeats}), FID {value:.9f}")
    print(f"    scipy.linalg.sqrtm reference:   {t_ref:.2f} s (once), FID {ref:.9f}")
    print(f"    speed-up {t_ref / t_ours:.1f}x  faster: {t_ours < t_ref}  |difference| {abs(value - ref):.3e} "
          f"(relative {abs(value - ref) / abs(ref):.1e})")


class _Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def bench_inception(device: str, n: int, repeats: int, batch_size: int) -> None:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    weights, source, _ = _resolve_weights(os.environ.get(WEIGHTS_ENV) or None)
    ours_net = get_extractor("inception", weights=weights, device=device)
    theirs_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    theirs_net = theirs_net.to(device).eval()
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def ours(x):
        out = extract_features(ours_net, x, batch_size=batch_size, progress=False)["features"]
        sync()
        return out

    def theirs(x):
        out = get_featuresdict_from_dataset(_Images(x), theirs_net, batch_size, cuda, save_cpu_ram=False, verbose=False)["2048"]
        sync()
        return out

    ours(images[:batch_size]), theirs(images[:batch_size])  # warm-up: kernel selection, first allocations
    rates = {"ours": [], "theirs": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            t, feats = timed(lambda: fn(images))
            rates[name].append(n / t)
            if name == "ours":
                ours_feats = feats
            else:
                max_diff = float((torch.as_tensor(ours_feats) - feats.double()).abs().max())
    r_ours, r_theirs = statistics.median(rates["ours"]), statistics.median(rates["theirs"])
    where = torch.cuda.get_device_name(device) if cuda else f"CPU {torch.get_num_threads()} threads"
    print(f"(b) Inception features, {n} uint8 32x32 images, batch {batch_size}, {where}, weights {weights.name} ({source})")
    print(f"    bench.metrics.extract_features:  {r_ours:.1f} images/s  runs {[round(r, 1) for r in rates['ours']]}")
    print(f"    torch-fidelity feature loop:     {r_theirs:.1f} images/s  runs {[round(r, 1) for r in rates['theirs']]}")
    print(f"    ratio ours / torch-fidelity {r_ours / r_theirs:.3f}  >= {GOAL}: {r_ours / r_theirs >= GOAL}  "
          f"max |feature difference| {max_diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, help="images for (b) (default 10000 on CUDA, 128 on CPU)")
    parser.add_argument("--repeats", type=int, help="timed runs of each (default 3 on CUDA, 2 on CPU)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-frechet", action="store_true")
    args = parser.parse_args()
    # torch-fidelity's loop asks for 4 DataLoader workers whatever the core count; its own choice, measured as is.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    repeats = args.repeats or (3 if cuda else 2)
    print(f"torch {torch.__version__}, device {device}")
    if not args.skip_frechet:
        bench_frechet(repeats)
    bench_inception(device, args.images or (10_000 if cuda else 128), repeats, args.batch_size)


if __name__ == "__main__":
    main()
