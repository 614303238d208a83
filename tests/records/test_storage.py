"""The default journal survives a torn last record and a copied or moved run folder (issue 14, 0)."""

import filecmp
import shutil
import subprocess
import sys

import pytest

from bench.records.run_folder import RunRecord
from bench.records.storage import JOURNAL_NAME, RUN_RELATIVE, TORN_SUFFIX, open_storage, repair_torn_journal
from bench.records.study_store import StudyStore
from bench.studies.run import RunRequest, run_study
from bench.studies.study import summarize
from bench.studies.protocol import resolve_protocol
from tests.conftest import run_storage


def _protocol(folder):
    return resolve_protocol(f"folder:{folder}", "quick", steps=4, eval_every=2, eval_samples=16, extractor="tiny")


def _request(folder, out, budget):
    return RunRequest(models=["ns_gan"], protocol=_protocol(folder), budget=budget, out=out, device="cpu",
                      progress=False)


def _done(out) -> int:
    store = StudyStore(run_storage(out))
    return sum(summarize(store.load(name)).done for name in store.names())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, blob_folder):
    """A finished 2-slot run made by another process, so that its trials' owner is gone."""
    out = tmp_path_factory.mktemp("torn") / "run"
    command = [sys.executable, "-m", "bench", "run", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}",
               "--budget", "2", "--preset", "quick", "--steps", "4", "--eval-every", "2", "--eval-samples", "16",
               "--extractor", "tiny", "--device", "cpu", "--no-progress", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _last_line_start(data: bytes) -> int:
    return data.rstrip(b"\n").rfind(b"\n") + 1


def test_a_journal_cut_anywhere_in_its_last_record_reopens_and_takes_appends(finished_run, tmp_path):
    journal = (finished_run / JOURNAL_NAME).read_bytes()
    start = _last_line_start(journal)
    assert len(journal) - start > 20
    path = tmp_path / JOURNAL_NAME
    for cut in range(start + 1, len(journal)):  # every byte offset inside the last line, its newline last
        path.write_bytes(journal[:cut])
        (tmp_path / (JOURNAL_NAME + TORN_SUFFIX)).unlink(missing_ok=True)
        aside = repair_torn_journal(path)
        assert aside is not None and aside.read_bytes() == journal[start:cut] + b"\n", cut
        assert path.read_bytes() == journal[:start]
        store = StudyStore(f"journal:{path}")
        study = store.load(store.names()[0])
        before = len(study.trials())
        study.retry(study.trials()[0])  # an append after the repair, then a fresh read of everything
        assert len(StudyStore(f"journal:{path}").load(study.name).trials()) == before + 1
    path.write_bytes(journal)
    assert repair_torn_journal(path) is None and path.read_bytes() == journal  # a whole journal is left alone


def test_damage_beyond_the_tail_is_refused_in_one_line(tmp_path):
    from bench.errors import BenchError

    path = tmp_path / JOURNAL_NAME
    path.write_bytes(b"{}\n" + b"not json\n" * 20)
    with pytest.raises(BenchError, match="unreadable; this is damage"):
        open_storage(f"journal:{path}")
    assert path.read_bytes() == b"{}\n" + b"not json\n" * 20  # nothing is cut from a damaged journal


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_run_whose_journal_was_cut_resumes_to_its_budget(finished_run, blob_folder, tmp_path, where, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    journal = (out / JOURNAL_NAME).read_bytes()
    start = _last_line_start(journal)
    cut = {"first": start + 1, "middle": (start + len(journal)) // 2, "last": len(journal) - 1}[where]
    (out / JOURNAL_NAME).write_bytes(journal[:cut])
    run_study(_request(blob_folder, out, budget=2))
    assert "torn record" in capsys.readouterr().err
    assert _done(out) == 2
    run_study(_request(blob_folder, out, budget=3))
    assert _done(out) == 3


def test_copied_and_moved_run_folders_use_their_own_journal(finished_run, blob_folder, tmp_path):
    original = tmp_path / "a"
    shutil.copytree(finished_run, original)
    record = RunRecord.read(original)
    assert record.storage == RUN_RELATIVE  # stored run-relative: the folder is self-contained
    snapshot = tmp_path / "snapshot"
    shutil.copytree(original, snapshot)

    copy = tmp_path / "b"
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    run_study(_request(blob_folder, copy, budget=3))
    assert _done(copy) == 3 and _done(original) == 2
    assert not filecmp.dircmp(original, snapshot).diff_files and (original / JOURNAL_NAME).read_bytes() == \
        (snapshot / JOURNAL_NAME).read_bytes()

    moved = tmp_path / "c"
    shutil.move(original, moved)
    run_study(_request(blob_folder, moved, budget=3))
    assert _done(moved) == 3 and not original.exists()


def test_an_old_record_with_an_absolute_journal_path_reads_the_folders_own(finished_run, blob_folder, tmp_path):
    """Runs stored before storage was run-relative: a copy must not write into the original."""
    original = tmp_path / "a"
    shutil.copytree(finished_run, original)
    record = RunRecord.read(original)
    record.storage = f"journal:{(original / JOURNAL_NAME).resolve()}"
    record.write(original)
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    before = (original / JOURNAL_NAME).read_bytes()
    run_study(_request(blob_folder, copy, budget=3))
    assert (original / JOURNAL_NAME).read_bytes() == before and _done(copy) == 3
    assert RunRecord.read(copy).storage == RUN_RELATIVE  # rewritten in today's form


def test_a_cut_write_while_workers_run_is_set_aside_before_the_next_append(finished_run, tmp_path, capsys):
    path = tmp_path / JOURNAL_NAME
    path.write_bytes((finished_run / JOURNAL_NAME).read_bytes())
    store = StudyStore(f"journal:{path}")  # opened while the journal was whole
    study = store.load(store.names()[0])
    with open(path, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"x","trial_id":0,"user_a')  # another process's write, cut
    study.retry(study.trials()[0])  # this process appends next
    assert "torn record" in capsys.readouterr().err
    assert len(StudyStore(f"journal:{path}").load(study.name).trials()) == len(study.trials())


def test_the_journal_claim_of_a_trial_another_worker_took_is_refused(tmp_path):
    """Optuna's journal answers a claim by comparing with the last trial this thread claimed; a
    trial claimed, released, then taken by another worker would read as won again. bench forgets
    its last claim before each one (StoredStudy._forget_last_claim)."""
    import optuna

    from bench.records.study_store import StudyMeta
    from optuna.trial import TrialState

    url = f"journal:{tmp_path / 'j.journal'}"
    a, b = StudyStore(url), StudyStore(url)  # two workers: two storages, two worker ids
    raw = optuna.create_study(study_name="s", storage=a._storage)
    raw.set_user_attr("bench", StudyMeta(model="ns_gan", role="search", protocol={"dataset": "triangles"}, digest="d").to_dict())
    raw.enqueue_trial({})
    sa, sb = a.load("s"), b.load("s")
    (trial,) = sa.trials()
    storage_a, storage_b = sa._study._storage, sb._study._storage
    assert storage_a.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
    assert storage_a.set_trial_state_values(trial._trial_id, TrialState.WAITING)  # released

    def claim_racing_b(forget: bool) -> bool:
        """A's claim, with B's claim landing between A's look at the trial and A's write (the
        window between Optuna's pre-check and its append, which another process can hit)."""
        sync, calls = storage_a._sync_with_backend, []

        def stale_first(*args):
            calls.append(1)
            if len(calls) > 1:
                return sync(*args)
            assert storage_b.set_trial_state_values(trial._trial_id, TrialState.RUNNING)  # B wins meanwhile

        if forget:
            sa._forget_last_claim()
        storage_a._sync_with_backend = stale_first
        try:
            return storage_a.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
        finally:
            storage_a._sync_with_backend = sync

    assert claim_racing_b(forget=False)  # Optuna alone: "won", though B holds the trial
    assert storage_b.set_trial_state_values(trial._trial_id, TrialState.WAITING)
    assert not claim_racing_b(forget=True)  # bench forgets its last claim first: refused
