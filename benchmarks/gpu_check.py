"""One short, prepared check of the code paths that only a GPU exercises; every figure with its device.

    python benchmarks/gpu_check.py [--device auto|cpu|cuda] [--steps N] [--out DIR]

1. Numerics (bench/numerics.py): PyTorch's own default flags on this machine; a trial's flags are in
   force during its training steps and recorded; feature extraction runs in true float32 under a
   TF32 caller and gives the caller's flags back.
2. TF32 against float32: the largest relative difference of the feature extractor's output (the
   real Inception where its weights load, else the tiny extractor, said so) and of an ns_gan
   generator's output; ns_gan training steps/s on 32x32x3, batch 64, under each (medians of 3).
3. A short trial on the device, end to end: its records, where its tensors lived, its numerics.

On a CPU it runs the same steps, small, so that the script itself is tested where no GPU is lent;
the TF32 figures are then meaningless (a CPU has no TF32) and are printed as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.config import RunOptions, make_trial_config, resolve_device
from bench.metrics import extract_features, get_extractor
from bench.models import build_model
from bench.numerics import FEATURES, NUMERICS, Numerics
from bench.train import run_trial


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def check_numerics(device: torch.device) -> dict:
    seen = []
    model = build_model("ns_gan", (3, 32, 32), device=device)
    original = model.train_step

    def noting(real, rng):
        seen.append(Numerics.current())
        return original(real, rng)

    model.train_step = noting
    rng = torch.Generator(device=device).manual_seed(0)
    real = torch.rand(64, 3, 32, 32, device=device)
    before = Numerics.current()
    with NUMERICS["tf32"].applied():
        model.train_step(real, rng)
        extractor = get_extractor("tiny", device=device)
        extract_features(extractor, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), progress=False)
        back_after_features = Numerics.current() == NUMERICS["tf32"]
    return {"pytorch_defaults": before.to_dict(), "flags_in_train_step_are_tf32": seen == [NUMERICS["tf32"]],
            "caller_flags_back_after_features": back_after_features, "flags_back_after_block": Numerics.current() == before}


def tf32_against_float32(device: torch.device, steps: int, weights) -> dict:
    out = {}
    try:
        extractor, name = get_extractor("inception", weights=weights, device=device), "inception"
    except Exception as exc:  # no weights on this machine: say so, measure the tiny one
        extractor, name = get_extractor("tiny", device=device), f"tiny (inception unavailable: {str(exc)[:80]})"
    images = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    results = {}
    for key, numerics in NUMERICS.items():
        extractor.numerics = numerics  # this instance only: the one pass, under other flags than its own
        try:
            results[key] = torch.from_numpy(extract_features(extractor, images, device=device, progress=False)["features"])
        finally:
            del extractor.numerics
    with torch.inference_mode():
        out["features"] = {"extractor": name, "max_relative_difference_tf32": _relative(results["tf32"], results["float32"])}
        torch.manual_seed(0)
        generator = build_model("ns_gan", (3, 32, 32), device=device).G.eval()
        z = torch.rand(256, 64, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
        gen = {}
        for key, numerics in NUMERICS.items():
            with numerics.applied():
                gen[key] = generator(z)
        out["generator_max_relative_difference_tf32"] = _relative(gen["tf32"], gen["float32"])
    speed = {}
    for key, numerics in NUMERICS.items():
        torch.manual_seed(0)
        model = build_model("ns_gan", (3, 32, 32), device=device)
        rng = torch.Generator(device=device).manual_seed(0)
        real = torch.rand(64, 3, 32, 32, device=device)
        rates = []
        with numerics.applied():
            for _ in range(3):
                for _ in range(3):
                    model.train_step(real, rng)  # warm-up (cuDNN plans, allocator)
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    model.train_step(real, rng)
                _sync(device)
                rates.append(steps / (time.perf_counter() - t0))
        speed[key] = statistics.median(rates)
    out["ns_gan_steps_per_s"] = speed
    out["tf32_over_float32_speed"] = speed["tf32"] / speed["float32"]
    return out


def short_trial(device: torch.device, folder: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/, for its blob folder
    from tests.conftest import write_blob_folder

    data = write_blob_folder(folder / "data", n_train=128, n_test=64)
    config = make_trial_config("ns_gan", f"folder:{data}", steps=8, eval_every=4, eval_samples=32, extractor="tiny")
    before = Numerics.current()
    t0 = time.perf_counter()
    result = run_trial(config, RunOptions(out=folder / "trial", device=str(device), progress=False))
    seconds = time.perf_counter() - t0
    records = [json.loads(line) for line in (folder / "trial" / "evals.jsonl").read_text().splitlines()]
    checkpoint = torch.load(folder / "trial" / "checkpoint.pt", map_location="cpu", weights_only=True)
    return {"status": result.status, "points": [r["step"] for r in records], "device": records[-1]["device"],
            "recorded_numerics": records[-1]["numerics"], "metric_numerics_float32":
                records[-1]["protocol"]["metric_numerics"] == FEATURES.to_dict(),
            "rng_device": checkpoint["rng_device"], "caller_flags_back": Numerics.current() == before,
            "seconds": round(seconds, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 50 on CUDA, 3 on CPU)")
    parser.add_argument("--inception-weights", type=Path)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(resolve_device(args.device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    steps = args.steps or (50 if device.type == "cuda" else 3)
    report = {"device": name, "torch": torch.__version__, "numerics": check_numerics(device),
              "tf32_vs_float32": tf32_against_float32(device, steps, args.inception_weights)}
    if device.type != "cuda":
        report["tf32_vs_float32"]["note"] = "a CPU has no TF32: these differences and ratios mean nothing here"
    with tempfile.TemporaryDirectory() as tmp:
        report["short_trial"] = short_trial(device, Path(tmp))
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text)
    checks = [report["numerics"]["flags_in_train_step_are_tf32"], report["numerics"]["caller_flags_back_after_features"],
              report["numerics"]["flags_back_after_block"], report["short_trial"]["status"] == "complete",
              report["short_trial"]["metric_numerics_float32"], report["short_trial"]["caller_flags_back"]]
    print(f"gpu_check on {name}: {sum(checks)} of {len(checks)} checks hold", file=sys.stderr)
    return 0 if all(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
