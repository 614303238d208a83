"""The stored formats (bench/records/): one definition each, old folders read, the digest kept."""

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.records.evaluation import EvalRecord, read_records
from bench.records.run_folder import RunRecord
from bench.records.study_store import StudyStore
from bench.reports.results import load_results
from bench.records.protocol import RunProtocol
from bench.studies.status import status_rows

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "run-2026-11-triangles"
OLD_LINE = LEGACY / "ns_gan" / "bb6bc96b" / "slot-0000" / "evals.jsonl"


def test_one_record_type_makes_the_line_the_storage_copy_and_the_row():
    record = EvalRecord(step=4, g_steps=4, images_seen=256, metrics={"fid": 12.5, "is_mean": None},
                        losses={"d_loss": 0.7}, train_seconds=1.0, eval_seconds=0.5, config={"model": "ns_gan"},
                        protocol={"standard": False, "extractor": {"extractor": "tiny"}}, device="cpu", host="h")
    line = record.to_dict()
    assert list(line) == [f.name for f in fields(EvalRecord)]  # the JSONL line: every field, once
    assert EvalRecord.from_dict(json.loads(json.dumps(line))) == record
    copy = record.compact()
    assert set(copy) < set(line) and {"config", "host", "hparams"}.isdisjoint(copy)
    assert copy["metrics"] == line["metrics"] and copy["step"] == 4
    row = record.row()
    assert row["fid"] == 12.5 and row["is_mean"] != row["is_mean"]  # None becomes NaN, never a string
    assert row["loss.d_loss"] == 0.7 and row["metric_protocol.extractor.extractor"] == "tiny"
    assert row["standard"] is False and row["device"] == "cpu"
    assert EvalRecord.from_dict(copy).row() == row  # a report reads the storage copy as it reads the file


def test_an_old_record_reads_and_an_unknown_key_is_refused():
    (old,) = [json.loads(line) for line in OLD_LINE.read_text().splitlines()][:1]
    assert "numerics" not in old  # written before the field existed
    assert EvalRecord.from_dict(old).numerics is None
    with pytest.raises(BenchError, match="unknown key 'ema'"):
        EvalRecord.from_dict({**old, "ema": 0.999}, "evals.jsonl")
    repeated = read_records([{"step": 4, "metrics": {"fid": 1.0}}, {"step": 2}, {"step": 4, "metrics": {"fid": 9.0}}])
    assert [r["step"] for r in repeated] == [2, 4] and repeated[1]["metrics"]["fid"] == 1.0  # the first of a step


@pytest.fixture
def legacy_run(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LEGACY, run)
    return run


def test_the_stored_digest_names_the_studies_whatever_the_rule(legacy_run, monkeypatch):
    """A later version that computes another digest for the same protocol (a field added with a
    new default, a changed rule) must find, report and extend the old run's studies."""
    from bench.studies.run import RunRequest, run_study

    record = RunRecord.read(legacy_run)
    assert record.digest == "bb6bc96b"  # stored before digests were: the one its studies were named by
    record.storage = f"journal:{legacy_run / 'optuna.journal'}"
    record.write(legacy_run)
    names = StudyStore(record.storage).names()
    monkeypatch.setattr(RunProtocol, "digest", property(lambda self: "0badc0de"))

    assert json.loads((legacy_run / "run.json").read_text())["digest"] == "bb6bc96b"
    _, rows = status_rows(legacy_run)
    assert {(r["model"], r["done"]) for r in rows} >= {("ns_gan", 2)}
    assert set(load_results(legacy_run)["protocol_id"]) == {"bb6bc96b"}
    run_study(RunRequest(models=["ns_gan"], protocol=RunProtocol.from_dict(record.protocol), budget=3,
                         out=legacy_run, device="cpu", progress=False))
    assert StudyStore(record.storage).names() == names  # the new slot joined the old study
    assert (legacy_run / "ns_gan" / "bb6bc96b" / "slot-0002" / "evals.jsonl").is_file()
    assert not (legacy_run / "ns_gan" / "0badc0de").exists()


def test_a_run_record_with_an_unknown_key_is_refused(legacy_run):
    data = json.loads((legacy_run / "run.json").read_text())
    (legacy_run / "run.json").write_text(json.dumps({**data, "owner": "me"}))
    with pytest.raises(BenchError, match="unknown key 'owner'"):
        RunRecord.read(legacy_run)
