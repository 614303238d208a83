"""One trial end to end (bench.train) on a tiny image folder with the tiny feature extractor."""

import json

import pytest
import torch

from bench.config import RunOptions, make_trial_config
from bench.errors import BenchError
from bench.models import registered
from bench.models.gan_variants import NonSaturatingGAN
from bench.train import run_trial


def config_for(folder, model="ns_gan", steps=20, eval_every=10, **overrides):
    return make_trial_config(model, f"folder:{folder}", steps=steps, eval_every=eval_every, eval_samples=64,
                             extractor="tiny", overrides=overrides or None)


def options(out, **kw):
    """A checkpoint at every point (the resume tests resume from one), unless asked otherwise."""
    return RunOptions(out=out, device="cpu", progress=False, **{"checkpoint_every": "1", **kw})


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def hook(done):
        if done == step:
            raise Interrupt
    return hook


def test_trial_records_every_evaluation_point(blob_folder, tmp_path):
    result = run_trial(config_for(blob_folder), options(tmp_path / "t"))
    assert result.status == "complete"
    records = [json.loads(line) for line in (tmp_path / "t" / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20]
    for r in records:
        assert r["metrics"]["fid"] > 0
        assert r["images_seen"] == r["step"] * 64 and r["g_steps"] == r["step"]
        assert r["hparams"]["lr"] == 5e-5 and r["config"]["model"] == "ns_gan"
        assert r["protocol"]["n_fake"] == 64 and r["protocol"]["standard"] is False
        # every number carries the protocol it was computed under
        assert {"fid", "kid", "pr", "dc", "is"} <= set(r["protocol"]["per_metric"])
        assert {"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean"} <= set(r["metrics"])
        assert r["unavailable"] == {}  # the tiny extractor has logits: IS is computed
        assert set(r["losses"]) == {"d_loss", "g_loss"}
    state = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert state["status"] == "complete" and state["compute"]["steps"] == 20
    assert (tmp_path / "t" / "samples" / "step-0000020.png").exists()


def test_finished_trial_returns_at_once(blob_folder, tmp_path, monkeypatch):
    config = config_for(blob_folder, steps=10)
    run_trial(config, options(tmp_path / "t"))
    before = (tmp_path / "t" / "evals.jsonl").read_bytes()
    # A finished trial must not even load its data.
    monkeypatch.setattr("bench.train._Trial.__init__", lambda *a: pytest.fail("a finished trial was restarted"))
    again = run_trial(config, options(tmp_path / "t"))
    assert again.already_finished and again.status == "complete" and len(again.evaluations) == 1
    assert (tmp_path / "t" / "evals.jsonl").read_bytes() == before


def test_interrupted_trial_resumes_to_the_same_result(blob_folder, tmp_path):
    config = config_for(blob_folder, model="wgan_gp", steps=30)
    straight = run_trial(config, options(tmp_path / "a"))
    with pytest.raises(Interrupt):
        run_trial(config, options(tmp_path / "b"), on_step=interrupt_at(25))
    assert json.loads((tmp_path / "b" / "trial.json").read_text())["status"] == "running"
    resumed = run_trial(config, options(tmp_path / "b"))
    assert [r["step"] for r in resumed.evaluations] == [10, 20, 30]
    assert [r["metrics"]["fid"] for r in resumed.evaluations] == [r["metrics"]["fid"] for r in straight.evaluations]
    names = sorted(p.name for p in (tmp_path / "a").glob("weights-*.pt"))
    assert names and names == sorted(p.name for p in (tmp_path / "b").glob("weights-*.pt"))
    for name in names:
        a = torch.load(tmp_path / "a" / name, weights_only=True)["weights"]
        b = torch.load(tmp_path / "b" / name, weights_only=True)["weights"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_ended_trial_keeps_the_weights_later_commands_use_not_its_optimiser(blob_folder, tmp_path):
    config = config_for(blob_folder, steps=30)
    run_trial(config, options(tmp_path / "t"))
    folder = tmp_path / "t"
    assert not (folder / "checkpoint.pt").exists()
    state = json.loads((folder / "trial.json").read_text())
    kept = {p.name for p in folder.glob("weights-*.pt")}
    assert kept == {f"weights-{w}.pt" for w, step in state["weights"].items()
                    if w == "best" or step != state["weights"]["best"]}
    weights = torch.load(folder / "weights-best.pt", weights_only=True)
    assert weights["step"] == state["weights"]["best"] and {k.split(".")[0] for k in weights["weights"]} == {"G"}
    run_trial(config, options(tmp_path / "kept", keep="checkpoints"))
    assert torch.load(tmp_path / "kept" / "checkpoint.pt", weights_only=True)["step"] == 30


@pytest.mark.parametrize("every, resumes_from", [("2", 20), ("1h", 0)])
def test_checkpoints_at_most_every_n_points_or_seconds_and_a_resume_repeats_nothing(
        blob_folder, tmp_path, every, resumes_from):
    config = config_for(blob_folder, model="wgan_gp", steps=30)
    straight = run_trial(config, options(tmp_path / "a"))
    with pytest.raises(Interrupt):
        run_trial(config, options(tmp_path / "b", checkpoint_every=every), on_step=interrupt_at(25))
    state = json.loads((tmp_path / "b" / "trial.json").read_text())
    assert state["checkpoint_step"] == resumes_from and state["checkpoint_every"] == every  # what a resume loses
    resumed = run_trial(config, options(tmp_path / "b", checkpoint_every=every))
    lines = (tmp_path / "b" / "evals.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30]  # retrained points are not recorded twice
    assert [r["metrics"]["fid"] for r in resumed.evaluations] == [r["metrics"]["fid"] for r in straight.evaluations]
    assert json.loads((tmp_path / "b" / "trial.json").read_text())["resumes"] == ([resumes_from] if resumes_from else [])


def test_missing_record_after_checkpoint_is_evaluated_again(blob_folder, tmp_path):
    config = config_for(blob_folder)
    with pytest.raises(Interrupt):
        run_trial(config, options(tmp_path / "t"), on_step=interrupt_at(15))
    evals = tmp_path / "t" / "evals.jsonl"
    first = json.loads(evals.read_text())
    evals.write_text("")  # as if killed between the checkpoint and the record
    result = run_trial(config, options(tmp_path / "t"))
    assert [r["step"] for r in result.evaluations] == [10, 20]
    again = result.evaluations[0]
    assert again["metrics"]["fid"] == first["metrics"]["fid"]
    # The interval's loss means too, as uninterrupted (they travel in the checkpoint).
    assert set(first["losses"]) == {"d_loss", "g_loss"} and again["losses"] == first["losses"]


def test_a_torn_last_line_is_ignored(blob_folder, tmp_path):
    config = config_for(blob_folder)
    with pytest.raises(Interrupt):
        run_trial(config, options(tmp_path / "t"), on_step=interrupt_at(15))
    with open(tmp_path / "t" / "evals.jsonl", "a") as f:
        f.write('{"step": 20, "metr')
    result = run_trial(config, options(tmp_path / "t"))
    assert [r["step"] for r in result.evaluations] == [10, 20]


class NaNAtStep7(NonSaturatingGAN):
    """ns_gan whose discriminator loss turns NaN at step 7 (for the divergence test)."""

    def train_step(self, real, rng):
        logs = super().train_step(real, rng)
        if self.steps == 7:
            logs["d_loss"] = torch.tensor(float("nan"))
        return logs


@pytest.fixture
def nan_at_7():
    with registered("test_nan_at_7", NaNAtStep7):
        yield "test_nan_at_7"


def test_divergence_is_recorded_with_its_step(blob_folder, tmp_path, nan_at_7):
    result = run_trial(config_for(blob_folder, model="test_nan_at_7", steps=20, eval_every=5), options(tmp_path / "t"))
    assert result.status == "diverged" and result.diverged_at_step == 7
    state = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert state["status"] == "diverged" and state["diverged_at_step"] == 7
    assert [r["step"] for r in result.evaluations] == [5]  # evaluations before the divergence stay
    assert run_trial(config_for(blob_folder, model="test_nan_at_7", steps=20, eval_every=5),
                     options(tmp_path / "t")).already_finished


def test_a_different_trial_is_refused_and_nothing_is_touched(blob_folder, tmp_path):
    run_trial(config_for(blob_folder, steps=10), options(tmp_path / "t"))
    files = {p.name: p.read_bytes() for p in (tmp_path / "t").iterdir() if p.is_file()}
    with pytest.raises(BenchError, match=r"different trial \(lr: 5e-05 vs 0.001"):
        run_trial(config_for(blob_folder, steps=10, lr="1e-3"), options(tmp_path / "t"))
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "t").iterdir() if p.is_file()}


def test_corrupted_and_foreign_checkpoints_are_refused(blob_folder, tmp_path):
    config = config_for(blob_folder)
    with pytest.raises(Interrupt):
        run_trial(config, options(tmp_path / "t"), on_step=interrupt_at(15))
    ckpt = tmp_path / "t" / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="unreadable"):
        run_trial(config, options(tmp_path / "t"))
    assert ckpt.read_bytes() == b"not a checkpoint"
    torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(BenchError, match="not a bench trial checkpoint"):
        run_trial(config, options(tmp_path / "t"))


def test_foreign_trial_record_is_refused(blob_folder, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "trial.json").write_text('{"something": "else"}')
    with pytest.raises(BenchError, match="not a bench trial record"):
        run_trial(config_for(blob_folder), options(tmp_path / "t"))
