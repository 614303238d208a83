"""`bench run` on triangles keeps a diverged trial's best point before the divergence as its score
(its maximum triangle F1), and reads runs stored before these rules by recomputing their scores
(issue 11's acceptance)."""

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.conftest import run_storage
from bench import load_results
from bench.models import restored_registry
from bench.reports import tables
from bench.reports.report import write_report
from bench.studies.protocol import resolve_protocol
from bench.studies.run import RunRequest, parse_models, run_study
from bench.records.storage import open_storage
from bench.records.study_store import StudyStore
from bench.studies.study import SEARCH, study_name, summarize

PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "nan_gan.py"
LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "run-2026-11-triangles"


def _study(out, proto, model, role=SEARCH):
    return StudyStore(run_storage(out)).load(study_name(proto, model, role))


@pytest.fixture(scope="module")
def triangles_run(tmp_path_factory):
    """A GAN whose weights turn NaN after its second evaluation point (steps 2 and 4) and one that
    diverges at its first step, on triangles with the tiny extractor. (The quick run of
    tests/reports/test_report.py is the triangles study of ns_gan and wgan with a seed re-run.)"""
    out = tmp_path_factory.mktemp("triangles")
    proto = resolve_protocol("triangles", "quick", steps=6, eval_every=2, eval_samples=16, extractor="tiny")
    with restored_registry():  # the plug-ins are this fixture's only: the registry guard holds per test
        models = parse_models(f"{PLUGINS}:NanAfterStep4,{PLUGINS}:NanAtStep1")
        assert models == ["nan_after_step4", "nan_at_step1"]
        run_study(RunRequest(models=models, protocol=proto, budget=2, out=out, device="cpu", progress=False))
    return out, proto, load_results(out)


def test_a_diverged_trial_keeps_its_best_point_and_can_win(triangles_run, tmp_path):
    out, proto, df = triangles_run
    rows = df[(df["model"] == "nan_after_step4") & (df["role"] == "search")]
    assert set(rows["status"]) == {"diverged"} and rows.groupby("trial")["step"].apply(list).tolist() == [[2, 4]] * 2
    study = _study(out, proto, "nan_after_step4")
    assert study.direction == "maximize"
    for trial in study.trials():
        points = rows[rows["trial"] == trial.user_attrs["slot"]]
        assert trial.user_attrs["diverged_at_step"] == 5 and trial.user_attrs["score_name"] == "tri_f1"
        assert trial.value == points["tri_f1"].max() == points["objective"].iloc[0]  # its best point's score
    never = df[df["model"] == "nan_at_step1"]
    assert set(never["status"]) == {"diverged"} and never["step"].isna().all() and (never["objective"] == 0).all()
    # Scored before it diverged, it beats a model whose trials never reached a point (under the old
    # rule both would have had no score and tied at one half), in every budget draw.
    pair = tables.pairwise_table(df, k=1, draws=200).set_index("model")
    assert pair.loc["nan_after_step4", "nan_at_step1"] == 1.0
    budget = tables.budget_table(df, ks=(1,), draws=200).set_index("model")
    assert budget.loc["nan_after_step4", "no_score"] == 0 and budget.loc["nan_after_step4", "strict_no_score"] == 1
    assert summarize(study).best is not None and summarize(_study(out, proto, "nan_at_step1")).best is None
    report = write_report(out, out=tmp_path / "report", draws=200)
    assert "triangle F1 at budget k" in [s.title for s in report.sections]


def test_a_run_stored_before_this_rule_loads_and_is_rescored(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(LEGACY, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    df = load_results(run)
    storage = open_storage(f"journal:{run / 'optuna.journal'}")
    stored = {}
    for name in optuna.get_all_study_names(storage):
        for trial in optuna.load_study(study_name=name, storage=storage).get_trials():
            stored[(name, trial.user_attrs["slot"])] = trial.value
    assert any(v == float("inf") for v in stored.values())  # what the old code stored for diverged trials
    for (name, slot), points in df.groupby(["study", "trial"]):
        f1 = points["tri_f1"].max()
        assert (points["objective"] == f1).all() and points["objective"].iloc[0] != stored[(name, slot)]
    diverged = df[df["status"] == "diverged"]
    assert len(diverged) and np.isfinite(diverged["objective"]).all()
    assert df["folder"].notna().all() and df["folder"].map(lambda f: Path(f).is_dir()).all()  # below the moved run
    report = write_report(run, draws=100)
    assert "triangle F1 at budget k" in (report.out / "README.md").read_text()
    after = {p: p.read_bytes() for p in before}
    assert after == before  # reading rewrote nothing
