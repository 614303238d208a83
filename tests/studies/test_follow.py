"""`bench worker --run` follows a run: workers started during the search also train the seed
re-runs `bench run` queues after it (issue 14, 4)."""

import os
import subprocess
import sys
import time
from pathlib import Path

from optuna.trial import TrialState

from bench.records.study_store import StudyStore
from tests.conftest import run_storage

PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "fault_gans.py"


def test_workers_that_follow_the_run_train_its_seed_reruns(blob_folder, tmp_path):
    out = tmp_path / "run"
    # Trials of about 8 s: longer than an idle worker's look for work (5 s), so that the second
    # seed re-run is there for a following worker while `bench run` trains the first.
    env = {**os.environ, "BENCH_TEST_SLEEP": "0.2", "BENCH_THREADS": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--model", f"{PLUGINS}:Sleepy", "--dataset", f"folder:{blob_folder}",
         "--budget", "2", "--seeds", "2", "--preset", "quick", "--steps", "40", "--eval-every", "20",
         "--eval-samples", "16", "--extractor", "tiny", "--device", "cpu", "--no-progress", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (out / "run.json").exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    assert (out / "run.json").exists(), run.communicate()[1][-2000:]
    workers = [subprocess.Popen([sys.executable, "-m", "bench", "worker", "--run", str(out), "--device", "cpu",
                                 "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in (run, *workers)]
    assert [p.returncode for p in (run, *workers)] == [0, 0, 0], [err[-1500:] for _, err in outputs]

    store = StudyStore(run_storage(out))
    studies = {store.load(n).meta.role: store.load(n) for n in store.names()}
    seeds = [t for t in studies["seeds"].trials() if t.state == TrialState.COMPLETE]
    assert len(seeds) == 2 and not studies["search"].trials("running", "waiting")
    worker_pids = {p.pid for p in workers}
    seed_owners = {t.system_attrs["bench:owner"]["pid"] for t in seeds}
    assert seed_owners & worker_pids, (seed_owners, worker_pids, run.pid)  # a follower took a seed re-run
