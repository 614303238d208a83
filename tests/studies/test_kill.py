"""kill -9 in the middle of a trial, then the same command again: nothing lost, nothing twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from tests.conftest import run_storage
from bench.records.protocol import RunProtocol
from bench.records.storage import open_storage
from bench.studies.study import study_name


def bench_processes(out: Path) -> list[int]:
    """PIDs of live processes whose command line mentions the run folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(out) in cmdline and "bench" in cmdline and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
    return pids


def test_sigkill_mid_trial_then_rerun(blob_folder, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "bench", "run", "--model", "ns_gan,vae", "--dataset", f"folder:{blob_folder}",
               "--budget", "2", "--preset", "quick", "--steps", "200", "--eval-every", "20", "--eval-samples", "16",
               "--extractor", "tiny", "--device", "cpu", "--jobs", "2", "--no-progress", "--checkpoint-every", "1",
               "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim, deadline = None, time.time() + 600
    while victim is None and time.time() < deadline and first.poll() is None:
        for state_file in out.glob("*/*/slot-*/trial.json"):
            state = json.loads(state_file.read_text())
            if state["status"] == "running" and 20 <= state["steps_done"] <= 120:
                victim = state_file.parent
                break
        time.sleep(0.02)
    assert victim is not None, "no trial reached a checkpoint in time"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    for _ in range(50):  # the workers die with the run that started them
        if not bench_processes(out):
            break
        time.sleep(0.1)
    assert not bench_processes(out)
    assert json.loads((victim / "trial.json").read_text())["status"] == "running"

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    record = json.loads((out / "run.json").read_text())
    storage, protocol = open_storage(run_storage(out)), RunProtocol.from_dict(record["protocol"])
    for model in ("ns_gan", "vae"):
        trials = optuna.load_study(study_name=study_name(protocol, model), storage=storage).get_trials()
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert sorted(t.user_attrs["slot"] for t in done) == [0, 1]  # exactly the budget, no slot twice
    state = json.loads((victim / "trial.json").read_text())
    assert state["status"] == "complete" and state["resumes"] and state["resumes"][0] >= 20  # from its checkpoint
    steps = [json.loads(line)["step"] for line in (victim / "evals.jsonl").read_text().splitlines()]
    assert steps == list(range(20, 201, 20))  # every evaluation point exactly once
