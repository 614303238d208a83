"""Studies (`bench run`): budgets, the defaults in slot 0, the same configurations on every
dataset, objectives, resumption, seeds, FLOP matching and bad input."""

import json
import math
from pathlib import Path

import optuna
import pytest
import torch

from bench.errors import BenchError
from bench.models import get_model_class
from bench.studies.protocol import RunProtocol, resolve_protocol
from bench.studies.run import RunRequest, parse_models, run_study
from bench.studies.search import SEED_RERUN_BASE
from bench.studies.status import status_rows
from bench.records.storage import open_storage
from bench.studies.study import SEEDS, study_name
from tests.conftest import write_blob_folder, run_storage
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_train import nan_at_7  # noqa: F401  the fixture that registers test_nan_at_7 for a test


def protocol(folder, **kw):
    values = dict(steps=4, eval_every=2, eval_samples=16, extractor="tiny")
    values.update(kw)
    return resolve_protocol(f"folder:{folder}", "quick", **values)


def request(folder, out, models=("ns_gan", "vae"), budget=3, **kw):
    proto = kw.pop("protocol", None) or protocol(folder)
    return RunRequest(models=list(models), protocol=proto, budget=budget, out=out, device="cpu", progress=False, **kw)


def trials(out, proto, model, role="search"):
    study = optuna.load_study(study_name=study_name(proto, model, role), storage=open_storage(run_storage(out)))
    return study.get_trials()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, blob_folder):
    out = tmp_path_factory.mktemp("run")
    req = request(blob_folder, out)
    run_study(req)
    return req, out


def test_budget_defaults_and_objective(tiny_run):
    req, out = tiny_run
    for model in ("ns_gan", "vae"):
        done = [t for t in trials(out, req.protocol, model) if t.state == optuna.trial.TrialState.COMPLETE]
        assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]
        slot0 = next(t for t in done if t.user_attrs["slot"] == 0)
        assert slot0.params == dict(get_model_class(model).search_space.defaults)
        for t in done:
            records = [json.loads(l) for l in (open(f"{t.user_attrs['folder']}/evals.jsonl"))]
            assert t.value == min(r["metrics"]["fid"] for r in records)
            assert [r["step"] for r in records] == [2, 4] and t.user_attrs["points"] == 2
            best = min(records, key=lambda r: r["metrics"]["fid"])  # the storage keeps the best point, not every record
            assert t.user_attrs["best"] == {"step": best["step"], "g_steps": best["g_steps"], "metrics": best["metrics"]}
            assert "evaluations" not in t.user_attrs and len(json.dumps(t.user_attrs)) < 3000
            assert t.user_attrs["status"] == "complete" and t.user_attrs["compute"]["steps"] == 4
            assert t.user_attrs["compute"]["flops"] > 0
        assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 3  # random search: distinct configs


def _kept(t):
    return sorted(p.name for p in Path(t.user_attrs["folder"]).glob("weights-*.pt"))


def test_only_each_studys_best_trial_keeps_its_weights(tiny_run, capsys):
    from bench.scores import FID

    req, out = tiny_run
    for model in ("ns_gan", "vae"):
        done = [t for t in trials(out, req.protocol, model) if t.state == optuna.trial.TrialState.COMPLETE]
        best = min(done, key=lambda t: (FID.record_key(t.user_attrs["best"]), t.number))
        assert _kept(best) and "weights-best.pt" in _kept(best)
        others = [t for t in done if t.number != best.number]
        assert len(others) == 2 and all(_kept(t) == [] for t in others)
        for t in others:  # what they recorded stays
            folder = Path(t.user_attrs["folder"])
            assert (folder / "trial.json").exists() and (folder / "evals.jsonl").exists()
            assert list((folder / "samples").glob("*.png"))
    dropped = next(t for t in trials(out, req.protocol, "vae") if not _kept(t))
    code, _, err = run_cli(["score", "--checkpoint", dropped.user_attrs["folder"], "--nll", "bound"], capsys)
    assert_one_line_error(code, err, "no checkpoint or kept weights", "--keep weights")


def test_the_best_vae_keeps_its_decoder_for_samples_and_ais_not_its_encoder(tiny_run, capsys):
    from bench.scores import FID

    req, out = tiny_run
    done = [t for t in trials(out, req.protocol, "vae") if t.state == optuna.trial.TrialState.COMPLETE]
    best = Path(min(done, key=lambda t: (FID.record_key(t.user_attrs["best"]), t.number)).user_attrs["folder"])
    kept = torch.load(best / "weights-best.pt", weights_only=True)["weights"]
    assert {k.split(".")[0] for k in kept} == {"decoder"}
    code, _, err = run_cli(["score", "--checkpoint", str(best), "--nll", "bound"], capsys)
    assert_one_line_error(code, err, "kept only the decoder", "encoder", "--keep weights")
    assert not (best / "nll-bound.json").exists()
    code, _, err = run_cli(["score", "--checkpoint", str(best), "--nll", "ais", "--ais-steps", "5", "--ais-chains",
                            "2", "--ais-leapfrog", "2", "--n", "2", "--device", "cpu", "--no-progress"], capsys)
    assert code == 0, err
    assert math.isfinite(json.loads((best / "nll-ais.json").read_text())["metrics"]["ais_nll_nats"])


def test_keep_weights_keeps_every_trials(blob_folder, tmp_path):
    req = request(blob_folder, tmp_path / "run", models=("ns_gan",), budget=2, keep="weights")
    run_study(req)
    done = trials(req.out, req.protocol, "ns_gan")
    assert len(done) == 2 and all("weights-best.pt" in _kept(t) for t in done)
    assert not any((Path(t.user_attrs["folder"]) / "checkpoint.pt").exists() for t in done)


def test_keep_weights_keeps_a_vaes_encoder_for_its_bound(blob_folder, tmp_path, capsys):
    req = request(blob_folder, tmp_path / "run", models=("vae",), budget=1, keep="weights")
    run_study(req)
    folder = Path(trials(req.out, req.protocol, "vae")[0].user_attrs["folder"])
    kept = torch.load(folder / "weights-best.pt", weights_only=True)["weights"]
    assert {k.split(".")[0] for k in kept} == {"encoder", "decoder"}
    code, _, err = run_cli(["score", "--checkpoint", str(folder), "--nll", "bound", "--nll-k", "2", "--n", "4",
                            "--device", "cpu", "--no-progress"], capsys)
    assert code == 0, err


def test_same_configurations_on_every_dataset(tiny_run, tmp_path):
    req, out = tiny_run
    other = write_blob_folder(tmp_path / "other", n_train=96, n_test=48, seed=1)
    out2 = tmp_path / "run2"
    req2 = request(other, out2, models=("ns_gan",), budget=3)
    run_study(req2)
    first = {t.user_attrs["slot"]: t.params for t in trials(out, req.protocol, "ns_gan")}
    second = {t.user_attrs["slot"]: t.params for t in trials(out2, req2.protocol, "ns_gan")}
    assert first == second


def test_rerun_resumes_and_a_larger_budget_only_adds(tiny_run, monkeypatch):
    req, out = tiny_run
    before = {m: len(trials(out, req.protocol, m)) for m in ("ns_gan", "vae")}
    monkeypatch.setattr("bench.train._Trial.__init__", lambda *a: pytest.fail("a finished slot was trained again"))
    run_study(req)
    assert {m: len(trials(out, req.protocol, m)) for m in ("ns_gan", "vae")} == before
    monkeypatch.undo()
    run_study(request(req.protocol.dataset.split(":", 1)[1], out, models=("ns_gan",), budget=4))
    slots = sorted(t.user_attrs["slot"] for t in trials(out, req.protocol, "ns_gan"))
    assert slots == [0, 1, 2, 3]


def test_status_rows(tiny_run):
    req, out = tiny_run
    record, rows = status_rows(out)
    by_model = {r["model"]: r for r in rows if r["study"] == "search"}
    assert by_model["vae"]["done"] == 3 and by_model["vae"]["waiting"] == 0 and by_model["vae"]["best fid"] > 0


def test_seeds_rerun_the_best_configuration(blob_folder, tmp_path):
    req = request(blob_folder, tmp_path / "r", models=("ns_gan",), budget=2, seeds=2)
    result = run_study(req)
    best = result.summaries[("ns_gan", "search")].best
    reruns = trials(tmp_path / "r", req.protocol, "ns_gan", SEEDS)
    assert sorted(t.user_attrs["seed"] for t in reruns) == [SEED_RERUN_BASE + 1, SEED_RERUN_BASE + 2]
    assert all(t.params == best.params and t.state == optuna.trial.TrialState.COMPLETE for t in reruns)


def test_diverged_trials_keep_their_best_point_before_the_divergence(blob_folder, tmp_path, nan_at_7):
    req = request(blob_folder, tmp_path / "r", models=("test_nan_at_7",), budget=2,
                  protocol=protocol(blob_folder, steps=10, eval_every=5))
    result = run_study(req)
    summary = result.summaries[("test_nan_at_7", "search")]
    assert summary.diverged == 2 and summary.done == 2
    done = trials(tmp_path / "r", req.protocol, "test_nan_at_7")
    for t in done:
        point = t.user_attrs["best"]  # step 5, its only point; the loss turned NaN at step 7
        assert point["step"] == 5 and t.user_attrs["points"] == 1
        assert t.user_attrs["diverged_at_step"] == 7 and t.user_attrs["status"] == "diverged"
        assert t.value == point["metrics"]["fid"] == t.user_attrs["score"]
    assert summary.best_score == min(t.value for t in done)
    # One that diverges before its first point has no score: the worst value, infinite FID.
    req = request(blob_folder, tmp_path / "r2", models=("test_nan_at_7",), budget=1,
                  protocol=protocol(blob_folder, steps=10, eval_every=8))
    summary = run_study(req).summaries[("test_nan_at_7", "search")]
    assert summary.best is None and trials(tmp_path / "r2", req.protocol, "test_nan_at_7")[0].value == float("inf")


def test_match_flops_gives_cheaper_models_more_steps(blob_folder):
    proto = protocol(blob_folder, steps=100, eval_every=50, match="flops")
    ns = proto.trial_config("ns_gan", dict(get_model_class("ns_gan").search_space.defaults), 0)
    vae = proto.trial_config("vae", dict(get_model_class("vae").search_space.defaults), 0)
    wgan = proto.trial_config("wgan", dict(get_model_class("wgan").search_space.defaults), 0)
    assert ns.steps == 100
    assert vae.steps > 150 and wgan.steps > 110  # half the FLOPs per step; D-only steps are cheaper
    assert vae.eval_every == round(50 * vae.steps / 100) or abs(vae.eval_every - vae.steps / 2) <= 1


def test_a_different_protocol_is_refused_then_forced_beside(tiny_run, tmp_path):
    req, out = tiny_run
    changed = request(req.protocol.dataset.split(":", 1)[1], out, protocol=protocol(
        req.protocol.dataset.split(":", 1)[1], steps=6))
    journal = (out / "optuna.journal").read_bytes()
    with pytest.raises(BenchError, match=r"another protocol \(steps: 4 stored, 6 asked"):
        run_study(changed)
    assert (out / "optuna.journal").read_bytes() == journal
    forced = RunRequest(**{**changed.__dict__, "force": True, "models": ["vae"], "budget": 1})
    run_study(forced)
    assert len(trials(out, req.protocol, "vae")) >= 3  # the old studies are untouched
    assert len(trials(out, forced.protocol, "vae")) == 1


def test_parse_models():
    assert parse_models("all")[:8] == ["mm_gan", "ns_gan", "lsgan", "wgan", "wgan_gp", "dragan", "began", "vae"]
    assert parse_models("vae, ns_gan,vae") == ["vae", "ns_gan"]
    with pytest.raises(BenchError, match="unknown model 'gan'"):
        parse_models("ns_gan,gan")


RUN = ["run", "--dataset", "triangles", "--extractor", "tiny", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("args, fragments", [
    (["--model", "all", "--budget", "0"], ["--budget", "positive integer"]),
    (["--model", "all", "--budget", "2.5"], ["--budget", "positive integer"]),
    (["--model", "nope", "--budget", "2"], ["unknown model 'nope'"]),
    (["--model", "all", "--budget", "2", "--preset", "fast"], ["unknown preset 'fast'", "paper, quick"]),
    (["--model", "all", "--budget", "2", "--jobs", "0"], ["--jobs", "positive integer"]),
    (["--model", "all", "--budget", "2", "--storage", "mysql:/x"], ["malformed storage URL", "postgresql://"]),
    (["--model", "all", "--budget", "2", "--storage", "postgresql://u:p@127.0.0.1:1/db"], ["cannot open storage"]),
])
def test_bad_run_input_is_one_line(args, fragments, tmp_path, capsys):
    code, _, err = run_cli(RUN + args + ["--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize("flags, seeds", [([], 50), (["--seeds", "0"], 0), (["--seeds", "3"], 3)])
def test_the_paper_preset_reruns_the_best_configurations_with_50_seeds(flags, seeds, blob_folder, tmp_path, capsys,
                                                                       monkeypatch):
    """The paper preset is the paper's protocol, its 50 seed re-runs included (no training here:
    the queue is not worked, so run.json is all that is written)."""
    monkeypatch.setattr("bench.studies.run._train_queued", lambda *a, **k: None)
    out = tmp_path / "r"
    code, _, err = run_cli(["run", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}", "--budget", "1",
                            "--preset", "paper", "--extractor", "tiny", "--eval-samples", "16", "--device", "cpu",
                            "--no-progress", "--out", str(out), *flags], capsys)
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["seeds"] == seeds and record["protocol"]["numerics"] == "float32"
