"""Two `bench worker` processes share one study through PostgreSQL, to completion.

Needs a server: `.ci/run` starts one on 127.0.0.1 and sets BENCH_TEST_POSTGRES to its URL."""

import os
import subprocess
import sys

import optuna
import pytest

from bench.studies.protocol import resolve_protocol
from bench.records.storage import open_storage
from bench.records.study_store import StudyStore
from bench.studies.study import enqueue_search, open_study
from tests.conftest import write_blob_folder

URL = os.environ.get("BENCH_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="no PostgreSQL server: set BENCH_TEST_POSTGRES (as .ci/run does)")


def test_two_workers_share_one_study(tmp_path):
    folder = write_blob_folder(tmp_path / "blobs")  # a fresh path: a fresh protocol, a fresh study
    protocol = resolve_protocol(f"folder:{folder}", "quick", steps=40, eval_every=20, eval_samples=16, extractor="tiny")
    storage = open_storage(URL)
    study = open_study(StudyStore(URL), protocol, "ns_gan")
    enqueue_search(study, protocol, "ns_gan", 6)
    command = [sys.executable, "-m", "bench", "worker", "--storage", URL, "--study", study.name,
               "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-1500:] for _, err in outputs]
    trained = [int(out.strip().splitlines()[-1].rsplit(" ", 1)[1]) for out, _ in outputs]
    assert sum(trained) == 6 and min(trained) >= 1  # both took trials of the one study
    trials = optuna.load_study(study_name=study.name, storage=storage).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["slot"] for t in done) == list(range(6)) and len(trials) == 6
    owners = {t.system_attrs["bench:owner"]["pid"] for t in done}
    assert len(owners) == 2
