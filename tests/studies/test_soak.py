"""A soak test of workers on PostgreSQL (issue 14): 8 `bench worker` processes on one study of 32
slots, a driver that SIGKILLs a random worker every 1.5 s and starts a replacement (20 kills), and
one 12-second stop of the database in the middle. Afterwards: exactly 32 slots complete, none
twice, no trial folder written by two owners in turn, no finished trial trained again.

Needs a server it may stop: `.ci/run` starts one and sets BENCH_TEST_POSTGRES to its URL and
BENCH_TEST_PG_STOP / BENCH_TEST_PG_START to scripts that stop and start it."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.records.study_store import StudyStore
from bench.studies.protocol import resolve_protocol
from bench.studies.study import enqueue_search, open_study
from bench.studies.run import parse_models
from bench.models import restored_registry
from tests.conftest import write_blob_folder

URL = os.environ.get("BENCH_TEST_POSTGRES")
STOP, START = os.environ.get("BENCH_TEST_PG_STOP"), os.environ.get("BENCH_TEST_PG_START")
pytestmark = pytest.mark.skipif(not (URL and STOP and START),
                                reason="no PostgreSQL server to stop: set BENCH_TEST_POSTGRES, BENCH_TEST_PG_STOP "
                                "and BENCH_TEST_PG_START (as .ci/run does)")
PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "fault_gans.py"
SLOTS, WORKERS, KILLS, STEPS = 32, 8, 20, 40
SLEEP_S = 0.15  # per training step of the Sleepy plug-in: one trial sleeps STEPS * SLEEP_S = 6 s
OUTAGE_S = 12  # twice one trial's sleep, so workers end or claim trials while the server is down


def test_workers_killed_at_random_and_a_database_restart_lose_and_repeat_nothing(tmp_path):
    folder = write_blob_folder(tmp_path / "blobs", seed=7)  # a fresh path: a fresh protocol, a fresh study
    protocol = resolve_protocol(f"folder:{folder}", "quick", steps=STEPS, eval_every=20, eval_samples=16,
                                extractor="tiny")
    with restored_registry():
        (model,) = parse_models(f"{PLUGINS}:Sleepy")
        study = open_study(StudyStore(URL), protocol, model)
        enqueue_search(study, protocol, model, SLOTS)
    out = tmp_path / "out"
    env = {**os.environ, "BENCH_TEST_SLEEP": str(SLEEP_S), "BENCH_THREADS": "1"}
    command = [sys.executable, "-m", "bench", "worker", "--storage", URL, "--study", study.name, "--out", str(out),
               "--device", "cpu", "--no-progress", "--quiet"]
    logs = tmp_path / "logs"
    logs.mkdir()

    def start():
        log = open(logs / f"worker-{len(list(logs.iterdir()))}.log", "w")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    rng = random.Random(0)
    workers = [start() for _ in range(WORKERS)]
    kills, outage = 0, False
    deadline = time.time() + 1200
    try:
        while time.time() < deadline:
            time.sleep(1.5)
            alive = [w for w in workers if w.poll() is None]
            if kills < KILLS and alive:
                victim = rng.choice(alive)
                victim.kill()
                victim.wait()
                kills += 1
                workers[workers.index(victim)] = start()
            if kills == KILLS // 2 and not outage:
                subprocess.run(STOP, shell=True, check=True, timeout=60)
                time.sleep(OUTAGE_S)
                subprocess.run(START, shell=True, check=True, timeout=60)
                outage = True
            if kills >= KILLS and all(w.poll() is not None for w in workers):
                break
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    tails = "\n".join((p.read_text()[-600:]) for p in sorted(logs.iterdir()))
    assert kills == KILLS and outage
    assert all(w.returncode == 0 for w in workers), tails

    trials = optuna.load_study(study_name=study.name, storage=URL).get_trials()
    by_slot = {}
    for t in trials:
        by_slot.setdefault(t.user_attrs["slot"], []).append(t)
    assert sorted(by_slot) == list(range(SLOTS))
    for slot, attempts in by_slot.items():
        complete = [t for t in attempts if t.state == TrialState.COMPLETE]
        assert len(complete) == 1, (slot, [t.state for t in attempts])  # exactly one result per slot
        assert all(t.number < complete[0].number for t in attempts if t is not complete[0])  # none after it
        assert not [t for t in attempts if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        folder = out / model / study.meta.digest / f"slot-{slot:04d}"
        lines = [json.loads(line) for line in (folder / "evals.jsonl").read_text().splitlines() if line.strip()]
        steps, owners = [r["step"] for r in lines], [r["owner"] for r in lines]
        assert steps == sorted(set(steps)) and steps[-1] == STEPS, (slot, steps)  # no point written twice
        runs = [o for i, o in enumerate(owners) if i == 0 or o != owners[i - 1]]
        assert len(runs) == len(set(runs)), (slot, owners)  # owners in turn, never one back after another
        assert json.loads((folder / "trial.json").read_text())["owner"] == owners[-1]
        assert json.loads((folder / "trial.json").read_text())["status"] == "complete"
