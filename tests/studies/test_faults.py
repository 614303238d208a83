"""Workers under faults (issue 14, 1-2): a retry cap, a device error that ends the worker, a
heartbeat that abandons a trial it no longer owns, and owners told apart across PID namespaces."""

import json
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from bench import load_results
from bench.models import restored_registry
from bench.records.study_store import StudyStore
from bench.records.trial_folder import Lease, LeaseLost, TrialFolder
from bench.studies import ownership, worker
from bench.studies.protocol import resolve_protocol
from bench.studies.run import RunRequest, parse_models, run_study
from bench.studies.status import status_rows
from bench.studies.study import enqueue_search, open_study
from tests.conftest import run_storage

PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "fault_gans.py"


@pytest.fixture(autouse=True)
def _plugins_stay_here():
    with restored_registry():
        yield


def _protocol(folder, **kw):
    values = dict(steps=4, eval_every=2, eval_samples=16, extractor="tiny")
    values.update(kw)
    return resolve_protocol(f"folder:{folder}", "quick", **values)


def _slots(out):
    store = StudyStore(run_storage(out))
    (name,) = store.names()
    return store.load(name)


def test_a_trial_that_always_fails_stays_failed_after_max_retries(blob_folder, tmp_path):
    out = tmp_path / "run"
    (model,) = parse_models(f"{PLUGINS}:AlwaysFails")
    request = RunRequest(models=[model], protocol=_protocol(blob_folder), budget=2, out=out, device="cpu",
                         progress=False, max_retries=1)
    run_study(request)  # terminates: no retry loop
    study = _slots(out)
    assert [(s.slot, s.status, s.failures) for s in study.slots()] == [(0, "failed", 2), (1, "failed", 2)]
    assert all(t.state == TrialState.FAIL for t in study.trials())
    _, (row,) = status_rows(out)
    assert row["failed"] == 2 and "fails on purpose in every step" in row["last error"]
    results = load_results(out)
    assert set(results["status"]) == {"failed"} and results["error"].str.contains("fails on purpose").all()

    assert len(study.trials()) == 2  # each failed attempt went back to the queue in place
    run_study(request)  # started again: the cap holds, nothing is tried again
    assert [s.failures for s in _slots(out).slots()] == [2, 2] and len(_slots(out).trials()) == 2
    run_study(RunRequest(**{**request.__dict__, "max_retries": 2}))  # a larger cap: one more try each
    assert [(s.status, s.failures) for s in _slots(out).slots()] == [("failed", 3)] * 2
    assert len(_slots(out).trials()) == 4


def test_a_device_error_requeues_the_trial_and_ends_the_worker(blob_folder, tmp_path):
    out = tmp_path / "run"
    (model,) = parse_models(f"{PLUGINS}:DeviceFails")
    protocol = _protocol(blob_folder)
    store = StudyStore(f"journal:{tmp_path / 'j.journal'}")
    study = open_study(store, protocol, model)
    enqueue_search(study, protocol, model, 2)
    with pytest.raises(worker.DeviceLost, match="the device failed .*illegal memory access"):
        worker.train_waiting_trials(store.url, [study.name], out, device="cpu", progress=False)
    slots = store.load(study.name).slots()
    assert [s.status for s in slots] == ["waiting", "waiting"]  # not the trial's fault: queued again
    assert all(s.failures == 0 for s in slots)


def test_a_trial_requeued_while_it_trains_is_abandoned_and_its_folder_has_one_writer_at_a_time(
        blob_folder, tmp_path, monkeypatch):
    """The heartbeat finds its trial failed and queued again (what another worker does to a trial
    it presumes lost): the worker stops it at the next step and writes nothing more; the queued
    copy, taken here by the same worker, resumes from the checkpoint and completes."""
    monkeypatch.setattr(ownership, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setenv("BENCH_TEST_SLEEP", "0.05")
    (model,) = parse_models(f"{PLUGINS}:Sleepy")
    protocol = _protocol(blob_folder, steps=60, eval_every=10)
    store = StudyStore(f"journal:{tmp_path / 'j.journal'}")
    study = open_study(store, protocol, model)
    enqueue_search(study, protocol, model, 1)
    out = tmp_path / "run"
    seen = []
    thread = threading.Thread(target=lambda: worker.train_waiting_trials(
        store.url, [study.name], out, device="cpu", progress=False, on_finished=seen.append))
    thread.start()
    state_file = None
    deadline = time.time() + 300
    while time.time() < deadline:
        files = list(out.glob("*/*/slot-0000/trial.json"))
        if files and json.loads(files[0].read_text())["steps_done"] >= 20:
            state_file = files[0]
            break
        time.sleep(0.02)
    assert state_file is not None, "the trial did not reach step 20"
    (running,) = store.load(study.name).trials("running")
    assert store.load(study.name).release(running)  # what a worker that presumes it lost does
    thread.join(timeout=300)
    assert [r.status for r in seen] == ["abandoned", "complete"]

    lines = [json.loads(line) for line in (state_file.parent / "evals.jsonl").read_text().splitlines()]
    steps, owners = [r["step"] for r in lines], [r["owner"] for r in lines]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # no point written twice
    changes = [i for i in range(1, len(owners)) if owners[i] != owners[i - 1]]
    assert len(changes) == 1  # the first claim's token, then the second's, never back
    assert json.loads(state_file.read_text())["owner"] == owners[-1]


def test_a_folder_refuses_writes_from_an_owner_whose_lease_was_taken(tmp_path):
    from bench.config import make_trial_config

    config = make_trial_config("ns_gan", "triangles", steps=4, eval_every=2, eval_samples=16, extractor="tiny")
    first = TrialFolder(tmp_path, Lease("worker-a/0"))
    first.claim(config)
    first.write_error("still mine")
    TrialFolder(tmp_path, Lease("worker-b/1")).claim(config)  # the re-queued copy takes the folder
    with pytest.raises(LeaseLost, match="owned by another worker now"):
        first.write_error("too late")
    assert (tmp_path / "error.log").read_text() == "still mine" and first.lease.lost.is_set()


class _Unreachable:
    def renew(self, trial, owner_id):
        raise ConnectionError("database is restarting")


def test_a_heartbeat_that_cannot_renew_abandons_before_the_grace_period(monkeypatch):
    monkeypatch.setattr(ownership, "HEARTBEAT_SECONDS", 0.01)
    monkeypatch.setattr(ownership, "ABANDON_SECONDS", 0.2)
    lease = Lease("me/0")
    beat = ownership.Heartbeat(_Unreachable(), [object()], [lease])
    assert not lease.lost.wait(0.1)  # a short outage is retried, not given up
    assert lease.lost.wait(5)
    beat.stop()
    assert ownership.ABANDON_SECONDS < ownership.GRACE_SECONDS


class _Beats:
    def __init__(self, owner, beat):
        self._owner, self._beat = owner, beat

    def owner(self, trial):
        return self._owner

    def last_heartbeat(self, trial):
        return self._beat

    def claim_in_progress(self, trial, within):
        return False


def test_owners_in_another_pid_namespace_are_judged_by_their_heartbeat():
    me = ownership.worker_identity()
    gone = {**me, "pid": 2 ** 22 + 7, "id": "other"}  # no such process here
    assert not ownership._alive(_Beats(gone, time.time()), None, grace=300)  # same namespace: the process table
    elsewhere = {**gone, "pidns": "pid:[1]"}  # a container with the same host name, its own PIDs
    assert ownership._alive(_Beats(elsewhere, time.time()), None, grace=300)
    assert not ownership._alive(_Beats(elsewhere, time.time() - 400), None, grace=300)
    assert ownership.worker_identity()["id"] == me["id"] and len(me["id"]) == 32


class _Claimed(_Beats):
    def __init__(self, owner, beat, claiming):
        super().__init__(owner, beat)
        self._claiming = claiming

    def claim_in_progress(self, trial, within):
        from bench.records.study_store import StoredStudy

        trial = type("T", (), {"system_attrs": {"bench:owner": self._owner, "bench:claiming": self._claiming}})()
        return StoredStudy.claim_in_progress(trial, within)


def test_a_released_trial_being_claimed_is_not_taken_for_lost():
    """Between a claim's state change and its owner record, the trial still names its previous,
    dead owner: the claim written before the state change keeps reapers off it."""
    me = ownership.worker_identity()
    dead = {**me, "pid": 2 ** 22 + 7, "id": "previous"}
    assert not ownership._alive(_Claimed(dead, time.time() - 999, {}), None, grace=300)
    claiming = {"id": "new-claimant", "time": time.time()}
    assert ownership._alive(_Claimed(dead, time.time() - 999, claiming), None, grace=300)
    stale = {"id": "new-claimant", "time": time.time() - ownership.CLAIM_SECONDS - 1}
    assert not ownership._alive(_Claimed(dead, time.time() - 999, stale), None, grace=300)  # a claimant that died
    assert not ownership._alive(_Claimed(dead, time.time() - 999, {"id": "previous", "time": time.time()}), None, 300)


def test_only_the_owner_finishes_or_releases_a_trial(tmp_path):
    import optuna

    from bench.records.study_store import StudyMeta

    store = StudyStore(f"journal:{tmp_path / 'j.journal'}")
    raw = optuna.create_study(study_name="s", storage=store._storage)
    raw.set_user_attr("bench", StudyMeta(model="ns_gan", role="search", protocol={"dataset": "triangles"}, digest="d").to_dict())
    raw.enqueue_trial({})
    study = store.load("s")
    trial = study.claim_waiting({**ownership.worker_identity(), "id": "a"})
    assert not study.release(trial, "b") and not study.finish(trial, True, 1.0, {}, "b")
    assert study.release(trial, "a")
    trial = study.claim_waiting({**ownership.worker_identity(), "id": "b"})
    assert not study.finish(trial, True, 1.0, {}, "a") and study.finish(trial, True, 1.0, {}, "b")


def test_a_trial_this_worker_holds_between_trials_goes_back_to_the_queue(tmp_path):
    """A claim cut by a storage error after its state change leaves a trial RUNNING under a live
    owner that does not train it; the owner itself releases it at its next look for work."""
    import optuna

    from bench.records.study_store import StudyMeta

    store = StudyStore(f"journal:{tmp_path / 'j.journal'}")
    raw = optuna.create_study(study_name="s", storage=store._storage)
    raw.set_user_attr("bench", StudyMeta(model="ns_gan", role="search", protocol={"dataset": "triangles"}, digest="d").to_dict())
    raw.enqueue_trial({})
    study = store.load("s")
    assert study.claim_waiting(ownership.worker_identity()) is not None
    assert ownership.reclaim_lost_trials(study) == 1 and [t.state for t in study.trials()] == [TrialState.WAITING]
