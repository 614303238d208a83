"""The queue across commands: `bench run` again gives a slot whose every trial failed one more try
(not a seed re-run retired as stale), and `bench worker --storage RUN_DIR` trains a run's waiting
trials. Through the command line, as a user runs them, with plug-in models that stop on purpose."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from tests.conftest import run_storage
from bench.studies.protocol import RunProtocol, resolve_protocol
from bench.studies.search import SEED_RERUN_BASE
from bench.records.storage import open_storage
from bench.records.study_store import StudyStore
from bench.studies.study import SEARCH, SEEDS, study_name
from tests.reports.synthetic import make_run

PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "flaky_gan.py"
TINY = ["--preset", "quick", "--steps", "4", "--eval-every", "4", "--eval-samples", "16", "--extractor", "tiny",
        "--device", "cpu", "--no-progress"]


def bench(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_TEST_")}
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**environ, **(env or {})}, cwd=cwd)


def studies(out: Path, role: str = SEARCH) -> dict:
    """model -> its study's trials, in the order they were added."""
    record = json.loads((out / "run.json").read_text())
    storage, proto = open_storage(run_storage(out)), RunProtocol.from_dict(record["protocol"])
    names = set(optuna.get_all_study_names(storage))
    return {m: optuna.load_study(study_name=study_name(proto, m, role), storage=storage).get_trials()
            for m in record["models"] if study_name(proto, m, role) in names}


@pytest.mark.slow  # several `bench` processes: 30-90 s on a shared 2-core CPU
def test_a_failed_slot_is_tried_again_by_a_run_with_a_larger_max_retries(blob_folder, tmp_path):
    out = tmp_path / "run"
    command = ["run", "--model", f"{PLUGINS}:FailsWhileAsked", "--dataset", f"folder:{blob_folder}", "--budget", "2",
               "--seeds", "0", *TINY, "--out", out]
    first = bench(*command, "--max-retries", "0", env={"BENCH_TEST_FAIL": "1"})
    assert first.returncode == 1, first.stderr[-2000:]
    assert "2 trial(s) failed after 0 retries" in first.stdout and "a larger --max-retries" in first.stdout
    (failed,) = studies(out).values()
    assert [(t.state, t.user_attrs["slot"]) for t in failed] == [(TrialState.FAIL, 0), (TrialState.FAIL, 1)]
    assert all("failing on purpose" in t.user_attrs["error"] for t in failed)

    second = bench(*command, "--max-retries", "1")  # the cause is gone: each slot gets one more try, and trains
    assert second.returncode == 0, second.stderr[-2000:]
    (trials,) = studies(out).values()
    assert [(t.state, t.user_attrs["slot"]) for t in trials] == [
        (TrialState.FAIL, 0), (TrialState.FAIL, 1), (TrialState.COMPLETE, 0), (TrialState.COMPLETE, 1)]
    assert [t.params for t in trials[2:]] == [t.params for t in trials[:2]]  # the same configurations
    assert all(t.user_attrs["status"] == "complete" and t.value is not None for t in trials[2:])

    third = bench(*command, "--max-retries", "1")  # a slot that has trained is never tried again
    assert third.returncode == 0, third.stderr[-2000:]
    assert len(next(iter(studies(out).values()))) == 4


@pytest.mark.slow  # several `bench` processes: 30-90 s on a shared 2-core CPU
def test_a_stale_seed_rerun_is_not_tried_again(blob_folder, tmp_path):
    """Slot 1 is the best; a re-run of slot 0 queued when slot 0 was best was retired as stale
    (failed, status "stale"): the next run re-runs slot 1 and leaves the stale one alone."""
    proto = resolve_protocol(f"folder:{blob_folder}", "quick", steps=4, eval_every=4, eval_samples=16, extractor="tiny")
    fields = {k: v for k, v in proto.to_dict().items() if k != "dataset"}
    out = tmp_path / "run"
    make_run(out, {"ns_gan": [[30.0], [20.0]]}, dataset=proto.dataset, protocol=fields)
    seeds = optuna.create_study(study_name=study_name(proto, "ns_gan", SEEDS), storage=open_storage(run_storage(out)))
    source = optuna.load_study(study_name=study_name(proto, "ns_gan"), storage=open_storage(run_storage(out)))
    slot0 = source.get_trials()[0]
    seeds.add_trial(create_trial(state=TrialState.FAIL, params=slot0.params, distributions=slot0.distributions,
                                 user_attrs={"slot": 1, "seed": SEED_RERUN_BASE + 1, "role": SEEDS, "source_slot": 0,
                                             "rerun": 1, "status": "stale"}))
    from bench.studies.study import open_study

    open_study(StudyStore(run_storage(out)), proto, "ns_gan", SEEDS)  # its metadata, as bench run writes it

    result = bench("run", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}", "--budget", "2", "--seeds", "1",
                   *TINY, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    stale, *reruns = studies(out, SEEDS)["ns_gan"]
    assert stale.state == TrialState.FAIL and stale.user_attrs["status"] == "stale"
    assert [(t.state, t.user_attrs["source_slot"]) for t in reruns] == [(TrialState.COMPLETE, 1)]


def status_table(out: Path) -> list[dict]:
    """`bench status RUN_DIR`'s table, as it prints it, one dict per row."""
    result = bench("status", out)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines()[1:] if line.strip() and not set(line.strip()) <= set("-+| ")]
    header, *rows = [[cell for cell in line.split("  ") if cell.strip()] for line in lines]
    return [dict(zip([h.strip() for h in header], [c.strip() for c in row])) for row in rows]


@pytest.mark.slow  # several `bench` processes: 30-90 s on a shared 2-core CPU
def test_a_worker_given_the_run_folder_trains_its_waiting_trials(blob_folder, tmp_path):
    out = tmp_path / "run"
    interrupted = bench("run", "--model", f"{PLUGINS}:InterruptedWhileAsked", "--dataset", f"folder:{blob_folder}",
                        "--budget", "2", "--seeds", "0", *TINY, "--out", out, env={"BENCH_TEST_INTERRUPT": "1"})
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    (trials,) = studies(out).values()
    waiting = lambda trials, state=TrialState.WAITING: sorted(t.user_attrs["slot"] for t in trials if t.state == state)
    assert waiting(trials) == [0, 1]  # the interrupted one went back to the queue
    (row,) = status_table(out)
    assert (row["done"], row["waiting"]) == ("0", "2"), row

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    worker = bench("worker", "--storage", out, "--study", f"folder:{blob_folder}", "--device", "cpu", "--no-progress",
                   cwd=elsewhere)
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert "no waiting trials left; this worker trained 2" in worker.stdout
    (trials,) = studies(out).values()
    assert waiting(trials) == [] and waiting(trials, TrialState.COMPLETE) == [0, 1]
    assert all(t.user_attrs["status"] == "complete" and t.value is not None
               for t in trials if t.state == TrialState.COMPLETE)
    (row,) = status_table(out)
    assert (row["done"], row["waiting"], row["running"]) == ("2", "0", "0"), row
    folders = [Path(t.user_attrs["folder"]) for t in trials if t.state == TrialState.COMPLETE]
    assert all(folder.parents[2] == out and (folder / "trial.json").is_file() for folder in folders), folders
    assert not (elsewhere / "runs").exists()  # the run's trial folders are in the run folder, not where it ran


def test_a_worker_given_a_folder_without_a_run_says_so_in_one_line(tmp_path):
    result = bench("worker", "--storage", tmp_path, "--study", "triangles", "--device", "cpu")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith(f"bench worker: error: {tmp_path} holds no bench run (no run.json)")
