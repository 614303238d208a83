"""`--log tensorboard` (bench/trial_log.py): what a trial logs reads back with TensorBoard's own
reader, equal to the trial folder's records, and a resumed trial's curves have one value per step."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.train import run_trial
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_train import Interrupt, config_for, interrupt_at, options

pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard (pip install -e '.[dev]')")


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_a_logged_trial_reads_back_its_losses_metrics_and_sample_grids(blob_folder, tmp_path):
    folder = tmp_path / "t"
    result = run_trial(config_for(blob_folder, steps=20, eval_every=10), options(folder, log="tensorboard"))
    assert result.status == "complete"
    records = [json.loads(line) for line in (folder / "evals.jsonl").read_text().splitlines()]
    events = read_events(folder)
    tags = events.Tags()
    assert {"loss/d_loss", "loss/g_loss"} <= set(tags["scalars"])
    for name in ("d_loss", "g_loss"):  # every step's loss; each record's mean is the mean of its interval
        logged = scalars(events, f"loss/{name}")
        assert [step for step, _ in logged] == list(range(1, 21))
        for record in records:
            interval = [v for step, v in logged if record["step"] - 10 < step <= record["step"]]
            np.testing.assert_allclose(np.mean(interval), record["losses"][name], rtol=1e-5, err_msg=name)
    finite = {k for k, v in records[0]["metrics"].items() if isinstance(v, float) and np.isfinite(v)}
    assert {"fid", "kid_mean", "precision", "recall", "is_mean"} <= finite
    assert {f"metric/{k}" for k in finite} <= set(tags["scalars"])
    for name in finite:
        logged = scalars(events, f"metric/{name}")
        assert [step for step, _ in logged] == [10, 20], name
        np.testing.assert_allclose([v for _, v in logged], [r["metrics"][name] for r in records], rtol=1e-6, atol=1e-7)
    images = events.Images("samples")
    assert [image.step for image in images] == [10, 20]
    for image in images:  # the grid TensorBoard shows is the PNG in samples/
        import io

        shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("L"))
        saved = np.asarray(Image.open(folder / "samples" / f"step-{image.step:07d}.png").convert("L"))
        np.testing.assert_array_equal(shown, saved)
    (text,) = events.Tensors("config/text_summary")  # the trial's configuration, as text
    shown = text.tensor_proto.string_val[0].decode()
    assert json.loads(shown.strip("`\n")) == json.loads(json.dumps(result.config.to_dict()))


def test_a_resumed_trial_logs_each_step_once(blob_folder, tmp_path):
    folder = tmp_path / "t"
    config = config_for(blob_folder, model="wgan_gp", steps=30)
    with pytest.raises(Interrupt):
        run_trial(config, options(folder, log="tensorboard"), on_step=interrupt_at(25))
    run_trial(config, options(folder, log="tensorboard"))
    events = read_events(folder)
    steps = [step for step, _ in scalars(events, "loss/d_loss")]
    assert steps == list(range(1, 31)), "steps 21-25 of the killed run were trained again: logged once"
    assert [step for step, _ in scalars(events, "metric/fid")] == [10, 20, 30]
    assert [image.step for image in events.Images("samples")] == [10, 20, 30]


def test_no_log_writes_no_events(blob_folder, tmp_path):
    run_trial(config_for(blob_folder, steps=10), options(tmp_path / "t"))
    assert not (tmp_path / "t" / "tensorboard").exists()


def test_log_tensorboard_without_tensorboard_is_one_line_before_any_work(blob_folder, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, _, err = run_cli(["train", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}", "--steps", "2",
                            "--out", str(tmp_path / "t"), "--log", "tensorboard", "--no-progress"], capsys)
    assert_one_line_error(code, err, "--log", "pip install 'bench[tensorboard]'")
    assert not (tmp_path / "t").exists()
    code, _, err = run_cli(["run", "--model", "ns_gan", "--dataset", "triangles", "--budget", "1",
                            "--out", str(tmp_path / "r"), "--log", "wandb"], capsys)
    assert_one_line_error(code, err, "--log", "none, tensorboard")
    assert not (tmp_path / "r").exists()


def test_the_defaults_table_names_the_logs_there_are():
    from bench.defaults import CHOICES, DEFAULTS
    from bench.trial_log import LOGS

    assert CHOICES["log"] == LOGS and DEFAULTS["log"] == "none"


def test_workers_started_by_bench_run_log_as_asked(tmp_path):
    from bench.studies.placement import worker_command

    command = worker_command("journal:x", ["s"], tmp_path, "cpu", log="tensorboard")
    assert command[command.index("--log") + 1] == "tensorboard"
