"""Packed trials write what the same trials write alone (bench/packing/packed_trials.py).

The comparisons run in float64 (`--numerics float64`): float32 training amplifies the round-off
of any change in summation order, a pack's grouped kernels included, and the two part within a
few dozen steps; in float64 they agree to far better than the 1e-4 asked here.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import RunOptions, make_trial_config
from bench.models import registered
from bench.packing.packed_trials import run_trials
from bench.train import run_trial

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
REL = 1e-4


def config(folder, model="ns_gan", steps=20, eval_every=10, seed=0, **overrides):
    return make_trial_config(model, f"folder:{folder}", steps=steps, eval_every=eval_every, eval_samples=64,
                             extractor="tiny", numerics="float64", seed=seed, overrides=overrides or None,
                             **({"nll_k": 4, "nll_n": 32} if model == "vae" else {}))


def options(out):
    return RunOptions(out=out, device="cpu", progress=False, checkpoint_every="1")  # resumes from every point


def files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_records(alone: list, packed: list) -> None:
    assert [r["step"] for r in alone] == [r["step"] for r in packed]
    for a, p in zip(alone, packed):
        assert (a["g_steps"], a["images_seen"]) == (p["g_steps"], p["images_seen"])
        assert a["losses"].keys() == p["losses"].keys() and a["metrics"].keys() == p["metrics"].keys()
        for key in a["losses"]:
            assert p["losses"][key] == pytest.approx(a["losses"][key], rel=REL, abs=1e-9), key
        for key, value in a["metrics"].items():
            if value is None:
                assert p["metrics"][key] is None
            else:
                assert p["metrics"][key] == pytest.approx(value, rel=REL, abs=1e-9), key


def assert_same_trials(alone_results, packed_results) -> None:
    for a, p in zip(alone_results, packed_results):
        assert (a.status, a.diverged_at_step) == (p.status, p.diverged_at_step)
        assert_same_records(a.evaluations, p.evaluations)
        assert files(a.out) == files(p.out)


def mixed_configs(folder):
    """ns_gan with three G-step schedules (two packs: D batch norm on and off) and two VAEs."""
    return [config(folder, seed=1, disc_iters=1), config(folder, seed=2, disc_iters=5, lr=3e-4),
            config(folder, seed=3, disc_iters=2, d_batch_norm=False),
            config(folder, seed=4, disc_iters=1, d_batch_norm=False, beta1=0.9),
            config(folder, "vae", seed=5), config(folder, "vae", seed=6, lr=1e-3)]


def test_packed_trials_write_what_they_write_alone(blob_folder, tmp_path):
    configs = mixed_configs(blob_folder)
    alone = [run_trial(c, options(tmp_path / "alone" / str(i))) for i, c in enumerate(configs)]
    packed = run_trials(configs, [options(tmp_path / "packed" / str(i)) for i in range(len(configs))], pack=4)
    assert_same_trials(alone, packed)
    packs = [json.loads((tmp_path / "packed" / str(i) / "trial.json").read_text())["pack"] for i in range(6)]
    assert packs == [2, 2, 2, 2, 2, 2]  # BN on, BN off, VAEs: three packs of two
    assert {json.loads((tmp_path / "alone" / "0" / "trial.json").read_text())["pack"]} == {1}
    record = json.loads((tmp_path / "packed" / "0" / "evals.jsonl").read_text().splitlines()[0])
    assert record["pack"] == 2


class Interrupt(Exception):
    pass


def test_an_interrupted_pack_resumes_packed_or_alone_to_the_same_numbers(blob_folder, tmp_path):
    configs = mixed_configs(blob_folder)[:2]
    reference = [run_trial(c, options(tmp_path / "alone" / str(i))) for i, c in enumerate(configs)]

    def interrupt(done):
        if done == 15:  # between the points at 10 and 20
            raise Interrupt

    for again in ("packed", "alone"):
        outs = [options(tmp_path / again / f"resumed-{i}") for i in range(2)]
        with pytest.raises(Interrupt):
            run_trials(configs, outs, pack=2, on_step=interrupt)
        states = [json.loads((o.out / "trial.json").read_text()) for o in outs]
        assert [s["status"] for s in states] == ["running", "running"]
        resumed = run_trials(configs, outs, pack=2 if again == "packed" else 1)
        assert_same_trials(reference, resumed)
        assert all(r.evaluations[-1]["step"] == 20 for r in resumed)
        assert [json.loads((o.out / "trial.json").read_text())["resumes"] for o in outs] == [[10], [10]]


def load_plugin(file: str, cls: str):
    spec = importlib.util.spec_from_file_location(f"bench_test_{Path(file).stem}", PLUGINS / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, cls)


def test_a_member_that_diverges_stops_alone_and_the_pack_goes_on(blob_folder, tmp_path):
    exploding = load_plugin("exploding_gan.py", "ExplodingGAN")
    with registered("exploding_gan", exploding):
        configs = [config(blob_folder, "exploding_gan", seed=s, steps=40, eval_every=10, explode_after=e)
                   for s, e in ((1, 0), (2, 50), (3, 0))]
        alone = [run_trial(c, options(tmp_path / "alone" / str(i))) for i, c in enumerate(configs)]
        packed = run_trials(configs, [options(tmp_path / "packed" / str(i)) for i in range(3)], pack=3)
    assert [r.status for r in packed] == ["complete", "diverged", "complete"]
    assert 10 < packed[1].diverged_at_step < 40  # after a point, so the pack shrinks mid-trial
    assert_same_trials(alone, packed)


def slots(run: Path) -> dict:
    return {str(p.parent.relative_to(run)): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(run.glob("*/*/slot-*/evals.jsonl"))}


def bench_run(blob_folder, out: Path, pack: int) -> list:
    return [sys.executable, "-m", "bench", "run", "--model", "ns_gan,wgan_gp,vae", "--dataset",
            f"folder:{blob_folder}", "--budget", "4", "--preset", "quick", "--steps", "40", "--eval-every", "20",
            "--nll-n", "32", "--eval-samples", "16", "--extractor", "tiny", "--numerics", "float64", "--device", "cpu",
            "--pack", str(pack), "--no-progress", "--checkpoint-every", "1", "--out", str(out)]


@pytest.mark.slow
def test_a_packed_study_killed_and_rerun_equals_the_study_alone(blob_folder, tmp_path):
    """The acceptance run of issue 13, 10 minutes on 2 cores (float64 convolutions are slow there).
    40 steps: some searched configurations (a large lr) are chaotic even in float64 and part from
    the same trial computed another way by ~1e-3 after 100 steps (at 40, by 1e-8 or less)."""
    alone = subprocess.run(bench_run(blob_folder, tmp_path / "alone", 1), capture_output=True, text=True, timeout=900)
    assert alone.returncode == 0, alone.stderr[-2000:]

    packed_out = tmp_path / "packed"
    first = subprocess.Popen(bench_run(blob_folder, packed_out, 4), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    victim, deadline = None, time.time() + 600
    while victim is None and time.time() < deadline and first.poll() is None:
        for state_file in packed_out.glob("*/*/slot-*/trial.json"):
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                continue  # written as we read
            if state["status"] == "running" and state.get("pack", 1) > 1 and 20 <= state["steps_done"] < 40:
                victim = state_file.parent
                break
        time.sleep(0.01)
    assert victim is not None, "no packed trial reached a checkpoint in time"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    again = subprocess.run(bench_run(blob_folder, packed_out, 4), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((victim / "trial.json").read_text())["resumes"]  # it did resume

    expected, got = slots(tmp_path / "alone"), slots(packed_out)
    assert expected.keys() == got.keys() and len(expected) == 12
    for slot in expected:
        assert_same_records(expected[slot], got[slot])
        assert files(tmp_path / "alone" / slot) == files(packed_out / slot)
    configs = [r[0]["hparams"] for r in got.values()]
    gans = [h for h in configs if "disc_iters" in h]
    # The study's search gave the GANs different schedules and batch-norm switches inside packs.
    assert {h["disc_iters"] for h in gans} == {1, 5} and {h["d_batch_norm"] for h in gans} == {True, False}
    assert max(r[-1]["pack"] for r in got.values()) > 1
