"""One short, prepared check of the code paths that only a GPU exercises; every figure with its device.

    python benchmarks/gpu_check.py [--device auto|cpu|cuda] [--steps N] [--out DIR]

1. Numerics (bench/numerics.py): PyTorch's own default flags on this machine; a trial's flags are in
   force during its training steps and recorded; feature extraction runs in true float32 under a
   TF32 caller and gives the caller's flags back.
2. TF32 against float32: the largest relative difference of the feature extractor's output (the
   real Inception where its weights load, else the tiny extractor, said so) and of an ns_gan
   generator's output; ns_gan training steps/s on 32x32x3, batch 64, under each (medians of 3).
3. A short trial on the device, end to end: its records, where its tensors lived, its numerics.
4. Every built-in model trains a few steps on the device; on CUDA with `torch.cuda.set_sync_debug_mode`
   set to "error" after its first step, so that a host synchronisation inside `train_step` fails it.
5. A trial interrupted mid-way and resumed on the same device gives records identical to the bit
   to the same trial run through.
6. Packed equals alone on the device: ns_gan, wgan_gp and vae, three members each (different
   disc_iters), in float64: the largest relative difference of losses and weights after 6 steps.
7. Packed training speed (benchmarks/packed_training.py) at K = 1, 4, 16, 64 for ns_gan, wgan_gp,
   vae on 32x32x3, and the aggregate throughput of 1, 2 and 4 worker processes on one GPU each
   training a pack of 8 ns_gan configurations.

On a CPU it runs the same steps, small, so that the script itself is tested where no GPU is lent;
the TF32 figures are then meaningless (a CPU has no TF32) and are printed as such.
"""

from __future__ import annotations

import argparse
import json
import os
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

TF32_PAIR = {key: NUMERICS[key] for key in ("float32", "tf32")}  # float64 is a reference, not a speed option
from bench.train import run_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/ and benchmarks/


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
    for key, numerics in TF32_PAIR.items():
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
        for key, numerics in TF32_PAIR.items():
            with numerics.applied():
                gen[key] = generator(z)
        out["generator_max_relative_difference_tf32"] = _relative(gen["tf32"], gen["float32"])
    speed = {}
    for key, numerics in TF32_PAIR.items():
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
    from tests.conftest import write_blob_folder

    data = write_blob_folder(folder / "data", n_train=128, n_test=64)
    config = make_trial_config("ns_gan", f"folder:{data}", steps=8, eval_every=4, eval_samples=32, extractor="tiny")
    before = Numerics.current()
    t0 = time.perf_counter()
    result = run_trial(config, RunOptions(out=folder / "trial", device=str(device), progress=False, keep="checkpoints"))
    seconds = time.perf_counter() - t0
    records = [json.loads(line) for line in (folder / "trial" / "evals.jsonl").read_text().splitlines()]
    checkpoint = torch.load(folder / "trial" / "checkpoint.pt", map_location="cpu", weights_only=True)
    return {"status": result.status, "points": [r["step"] for r in records], "device": records[-1]["device"],
            "recorded_numerics": records[-1]["numerics"], "metric_numerics_float32":
                records[-1]["protocol"]["metric_numerics"] == FEATURES.to_dict(),
            "rng_device": checkpoint["rng_device"], "caller_flags_back": Numerics.current() == before,
            "seconds": round(seconds, 2)}


def _blob_config(folder: Path, model="ns_gan", steps=8, eval_every=4, **extra):
    from tests.conftest import write_blob_folder

    data = folder / "data"
    if not data.exists():
        write_blob_folder(data, n_train=128, n_test=64)
    return make_trial_config(model, f"folder:{data}", steps=steps, eval_every=eval_every, eval_samples=32,
                             extractor="tiny", **extra)


def every_model(device: torch.device) -> dict:
    from bench.models import model_names

    shape = (3, 32, 32) if device.type == "cuda" else (1, 8, 8)
    out = {}
    for name in model_names():
        torch.manual_seed(0)
        model = build_model(name, shape, {}, device)
        rng = torch.Generator(device=device).manual_seed(0)
        real = torch.rand(64, *shape, device=device)
        try:
            model.train_step(real, rng)  # first step: lazy optimiser state, allocator, autotuning
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("error")
            for _ in range(3):
                losses = model.train_step(real, rng)
            out[name] = {"ok": all(v.device.type == device.type for v in losses.values())
                         and all(p.device.type == device.type for p in model.parameters()),
                         "no_host_sync": device.type == "cuda" or "n/a on a CPU"}
        except Exception as exc:  # a sync under "error" raises RuntimeError
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    return out


def resume_bit_for_bit(device: torch.device, folder: Path) -> dict:
    config = _blob_config(folder, steps=12, eval_every=4)

    class Stop(Exception):
        pass

    def stop_at(done):
        if done == 6:
            raise Stop

    through = run_trial(config, RunOptions(out=folder / "through", device=str(device), progress=False,
                                           checkpoint_every="1"))
    try:
        run_trial(config, RunOptions(out=folder / "resumed", device=str(device), progress=False, checkpoint_every="1"),
                  on_step=stop_at)
    except Stop:
        pass
    resumed = run_trial(config, RunOptions(out=folder / "resumed", device=str(device), progress=False,
                                           checkpoint_every="1"))
    same = [(a["losses"], a["metrics"]) == (b["losses"], b["metrics"])
            for a, b in zip(through.evaluations, resumed.evaluations)]
    return {"points": len(same), "identical": all(same) and len(same) == len(through.evaluations)}


def packed_equals_alone(device: torch.device) -> dict:
    from bench.packing import packer_for

    shape, steps, out = ((3, 32, 32) if device.type == "cuda" else (1, 8, 8)), 6, {}
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for name in ("ns_gan", "wgan_gp", "vae"):
            hparams = [{}, {}, {}] if name == "vae" else [{"disc_iters": d} for d in (1, 5, 2)]

            def members():
                built = []
                for k, h in enumerate(hparams):
                    torch.manual_seed(k)
                    built.append(build_model(name, shape, h, device))
                return built

            data = torch.rand(len(hparams), steps, 64, *shape, generator=torch.Generator().manual_seed(0)).to(device)
            alone, alone_losses = members(), []
            for k, m in enumerate(alone):
                rng = torch.Generator(device=device).manual_seed(k)
                alone_losses.append([m.train_step(data[k, s], rng) for s in range(steps)])
            packed = members()
            for m in packed:
                m.optimizers()
            pack = packer_for(type(packed[0]))(packed)
            rngs = [torch.Generator(device=device).manual_seed(k) for k in range(len(hparams))]
            packed_losses, synced = [pack.train_step(data[:, 0], rngs)], None
            try:  # after the first step (masks and hyperparameters are put on the device once), no host sync
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("error")
                packed_losses += [pack.train_step(data[:, s], rngs) for s in range(1, steps)]
            except RuntimeError as exc:
                synced = str(exc).splitlines()[0][:200]
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
            if synced:
                out[name] = {"ok": False, "error": synced}
                continue
            pack.unpack()
            loss_diff = max(abs(float(packed_losses[s][k][n]) - float(v)) / max(abs(float(v)), 1e-12)
                            for k in range(len(hparams)) for s in range(steps) for n, v in alone_losses[k][s].items())
            weight_diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                              for ma, mb in zip(alone, packed)
                              for a, b in zip(ma.parameters(), mb.parameters()))
            out[name] = {"largest_relative_loss_difference": loss_diff,
                         "largest_relative_weight_difference": weight_diff, "ok": loss_diff < 1e-6,
                         "no_host_sync": device.type == "cuda" or "n/a on a CPU"}
    finally:
        torch.set_default_dtype(before)
    return out


def packing_speed(device: torch.device, steps: int) -> dict:
    from benchmarks.packed_training import measure

    cuda = device.type == "cuda"
    rows = measure(["ns_gan", "wgan_gp", "vae"], [1, 4, 16, 64] if cuda else [1, 4],
                   (3, 32, 32) if cuda else (1, 28, 28), device, steps, alone_every_k=False)
    return {"rows": rows}


def processes_per_gpu(device: torch.device) -> dict:
    """Configuration-steps per second of P processes on one device, each a pack of 8 ns_gan."""
    import subprocess

    script = str(Path(__file__).resolve().parent / "packed_training.py")
    cuda = device.type == "cuda"
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for procs in ((1, 2, 4) if cuda else (1, 2)):
            files = [Path(tmp) / f"p{procs}-{i}.json" for i in range(procs)]
            command = [sys.executable, script, "--device", str(device), "--models", "ns_gan", "--packs", "8",
                       "--steps", "20" if cuda else "2", "--shape", "3x32x32" if cuda else "1x8x8", "--repeats", "1"]
            t0 = time.perf_counter()
            root = str(Path(__file__).resolve().parents[1])  # this checkout's bench, whatever is installed
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            running = [subprocess.Popen(command + ["--json", str(f)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env=env) for f in files]
            results = [p.communicate() for p in running]
            wall = time.perf_counter() - t0
            if any(p.returncode for p in running):
                out[procs] = {"error": next(err for p, (_, err) in zip(running, results) if p.returncode)[-300:]}
                continue
            rates = [1e3 / json.loads(f.read_text())["rows"][0]["packed_ms_per_config"] for f in files]
            out[procs] = {"config_steps_per_s": round(sum(rates), 1), "wall_s": round(wall, 1)}
    return out


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
        report["every_model"] = every_model(device)
        report["resume_bit_for_bit"] = resume_bit_for_bit(device, Path(tmp))
    report["packed_equals_alone"] = packed_equals_alone(device)
    report["packing_speed"] = packing_speed(device, 30 if device.type == "cuda" else 2)
    report["processes_per_gpu"] = processes_per_gpu(device)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text)
    checks = [report["numerics"]["flags_in_train_step_are_tf32"], report["numerics"]["caller_flags_back_after_features"],
              report["numerics"]["flags_back_after_block"], report["short_trial"]["status"] == "complete",
              report["short_trial"]["metric_numerics_float32"], report["short_trial"]["caller_flags_back"],
              *(v["ok"] for v in report["every_model"].values()), report["resume_bit_for_bit"]["identical"],
              *(v["ok"] for v in report["packed_equals_alone"].values())]
    print(f"gpu_check on {name}: {sum(checks)} of {len(checks)} checks hold", file=sys.stderr)
    return 0 if all(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
