"""Bad input tried as a careless user would (issue 15's list): each gives one line saying what was
wrong and what is accepted, exits 2, and leaves what is stored untouched."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_blob_folder
from tests.test_cli import assert_one_line_error, run_cli

QUICK = ["--steps", "2", "--eval-every", "2", "--eval-samples", "16", "--extractor", "tiny", "--no-progress",
         "--device", "cpu"]


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def run_args(dataset, out, *extra, model="ns_gan"):
    return ["run", "--model", model, "--dataset", dataset, "--budget", "2", "--preset", "quick", *QUICK,
            "--out", str(out), *extra]


# 1. `bench run` checks what every trial shares before it makes any study or file.

def test_run_without_the_datasets_files_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "no-data"))
    code, _, err = run_cli(run_args("cifar10", tmp_path / "run"), capsys)
    assert_one_line_error(code, err, "cifar10", "not found")
    assert not (tmp_path / "run").exists()


def test_run_on_cuda_without_cuda_writes_nothing(blob_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bench.devices.cuda_device_count", lambda: 0)
    args = run_args(f"folder:{blob_folder}", tmp_path / "run")
    args[args.index("--device") + 1] = "cuda"
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--device cuda", "no CUDA device")
    assert not (tmp_path / "run").exists()


def test_run_on_a_folder_of_mixed_image_sizes_writes_nothing(tmp_path, capsys):
    folder = write_blob_folder(tmp_path / "mixed", n_train=70, n_test=20)
    Image.fromarray(np.zeros((12, 12), np.uint8), "L").save(folder / "train" / "9999.png")
    code, _, err = run_cli(run_args(f"folder:{folder}", tmp_path / "run"), capsys)
    assert_one_line_error(code, err, "9999.png")
    assert not (tmp_path / "run").exists()


def test_run_on_fewer_images_than_a_batch_writes_nothing(tmp_path, capsys):
    folder = write_blob_folder(tmp_path / "few", n_train=10, n_test=20)
    code, _, err = run_cli(run_args(f"folder:{folder}", tmp_path / "run"), capsys)
    assert_one_line_error(code, err, "train split has 10 images", "need 64")
    assert not (tmp_path / "run").exists()


def test_run_without_inception_weights_writes_nothing(blob_folder, tmp_path, capsys):
    args = run_args(f"folder:{blob_folder}", tmp_path / "run", "--inception-weights", str(tmp_path / "absent.pth"))
    args[args.index("--extractor") + 1] = "inception"
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "Inception weights", "not found")
    assert not (tmp_path / "run").exists()


# 2. `--set` checks each value against its hyperparameter's domain.

@pytest.mark.parametrize("assignment, says", [("lr=-1", "lr: it must be > 0"), ("beta1=2", "beta1: it must be >= 0 and < 1"),
                                              ("disc_iters=0", "disc_iters: it must be >= 1")])
def test_set_outside_the_domain_is_refused(blob_folder, tmp_path, capsys, assignment, says):
    code, _, err = run_cli(["train", "--model", "wgan", "--dataset", f"folder:{blob_folder}", *QUICK,
                            "--set", assignment, "--out", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, says)
    assert not (tmp_path / "t").exists()


def test_set_outside_the_search_range_warns_and_trains(blob_folder, tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", "wgan", "--dataset", f"folder:{blob_folder}", *QUICK,
                            "--set", "disc_iters=3", "--out", str(tmp_path / "t")], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "disc_iters=3 (wide range {1, 5})" in warnings[0]
    assert json.loads((tmp_path / "t" / "trial.json").read_text())["config"]["hparams"]["disc_iters"] == 3


def test_search_space_defaults_must_lie_in_their_domains():
    from bench.models.search_space import LogUniform, SearchSpace

    with pytest.raises(ValueError, match="lr=-0.1 lies outside its domain"):
        SearchSpace(defaults={"lr": -0.1}, wide={"lr": LogUniform(-5, -2)}, narrow={"lr": LogUniform(-4, -3)})


# 3. `bench run --eval-samples` beyond the reference split.

def test_run_eval_samples_beyond_the_reference_split_is_refused(blob_folder, tmp_path, capsys):
    args = run_args(f"folder:{blob_folder}", tmp_path / "run")
    args[args.index("--eval-samples") + 1] = "20000"
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--eval-samples 20000")
    assert not (tmp_path / "run").exists()


# 4. PostgreSQL without its driver.

def test_postgres_without_its_driver_names_the_extra(blob_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    code, _, err = run_cli(run_args(f"folder:{blob_folder}", tmp_path / "run", "--storage",
                                    "postgresql://u@127.0.0.1:1/db"), capsys)
    assert_one_line_error(code, err, "PostgreSQL driver 'psycopg'", "pip install 'bench[postgres]'")


# 5. `bench score` edge cases.

def _score(path, capsys, tmp_path):
    return run_cli(["score", "--samples", str(path), "--dataset", "triangles", "--extractor", "tiny",
                    "--out", str(tmp_path / "s.json"), "--no-progress"], capsys)


def test_score_a_truncated_npz(tmp_path, capsys):
    path = tmp_path / "s.npz"
    np.savez(path, samples=np.zeros((8, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:100])
    code, _, err = _score(path, capsys, tmp_path)
    assert_one_line_error(code, err, "truncated or damaged .npz")


def test_score_garbage_named_npz(tmp_path, capsys):
    path = tmp_path / "s.npz"
    path.write_bytes(os.urandom(300))
    code, _, err = _score(path, capsys, tmp_path)
    assert_one_line_error(code, err, "is not an image array")
    assert "allow_pickle" not in err
    path = tmp_path / "g.npy"
    path.write_bytes(b"not an array at all" * 10)
    code, _, err = _score(path, capsys, tmp_path)
    assert_one_line_error(code, err, "is not an image array")
    assert "allow_pickle" not in err


def test_score_nan_samples(tmp_path, capsys):
    path = tmp_path / "s.npy"
    array = np.zeros((8, 28, 28), np.float32)
    array[3, 4, 5] = np.nan
    np.save(path, array)
    code, _, err = _score(path, capsys, tmp_path)
    assert_one_line_error(code, err, "contain 1 NaN value")


@pytest.mark.parametrize("n", [0, 1])
def test_score_too_few_samples(tmp_path, capsys, n):
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((n, 28, 28), np.uint8))
    code, _, err = _score(path, capsys, tmp_path)
    assert_one_line_error(code, err, f"hold {n} image(s)", "at least 2")


# 6. `--out` that is a file or cannot be written.

def test_out_that_is_a_file(blob_folder, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for args in (["train", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}", *QUICK, "--out", str(taken)],
                 run_args(f"folder:{blob_folder}", taken)):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, f"--out {taken} is a file")
    code, _, err = run_cli(["train", "--model", "ns_gan", "--dataset", f"folder:{blob_folder}", *QUICK,
                            "--out", str(taken / "t")], capsys)
    assert_one_line_error(code, err, "cannot be created", "is a file")
    assert taken.read_text() == "mine"


def test_out_that_cannot_be_written(blob_folder, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK) and os.geteuid() == 0:
            target = "/proc/bench-out"  # root writes anywhere but here
        else:
            target = str(locked / "run")
        code, _, err = run_cli(run_args(f"folder:{blob_folder}", target), capsys)
        assert_one_line_error(code, err, "cannot be written")
    finally:
        locked.chmod(0o700)


def test_score_out_is_checked_before_the_metrics(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((8, 28, 28), np.uint8))
    monkeypatch.setattr("bench.score.score_samples", lambda *a, **k: pytest.fail("metrics computed first"))
    code, _, err = run_cli(["score", "--samples", str(path), "--dataset", "triangles", "--extractor", "tiny",
                            "--out", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "is a folder")


# 7. A directory as --inception-weights.

def test_inception_weights_that_are_a_directory(tmp_path, capsys):
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((8, 28, 28), np.uint8))
    code, _, err = run_cli(["score", "--samples", str(path), "--dataset", "triangles", "--inception-weights",
                            str(tmp_path), "--out", str(tmp_path / "s.json"), "--no-progress"], capsys)
    assert_one_line_error(code, err, "is a directory", "weights file itself")


# 9. A damaged file in a finished slot is named by `bench run`.

def test_a_damaged_finished_slot_is_named(blob_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(run_args(f"folder:{blob_folder}", out, "--keep", "weights"), capsys)[0] == 0
    slot = next(out.glob("ns_gan/*/slot-0001"))
    (slot / "trial.json").write_text('{"config": ')
    weights = next(out.glob("ns_gan/*/slot-0000")) / "weights-best.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in out.glob("ns_gan/**/*") if p.is_file()}
    code, _, err = run_cli(run_args(f"folder:{blob_folder}", out, "--keep", "weights"), capsys)
    assert code == 0
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 2
    assert "slot 1" in lines[1] and "trial.json is damaged" in lines[1]
    assert "slot 0" in lines[0] and "weights-best.pt is damaged" in lines[0]
    after = {p: p.read_bytes() for p in out.glob("ns_gan/**/*") if p.is_file()}
    assert after == before  # the slots stay as they are


# 10. Help text.

def test_rank_help_prints_a_plain_percent(capsys):
    code, out, _ = run_cli(["rank", "--help"], capsys)
    assert code == 0 and "95% interval" in " ".join(out.split()) and "%%" not in out


# 11. Long parts of an evaluation show progress.

def test_train_help_says_what_the_nll_defaults_cost(capsys):
    _, out, _ = run_cli(["train", "--help"], capsys)
    assert "10 million decoder passes" in " ".join(out.split())


def test_long_parts_of_an_evaluation_show_progress(capfd):
    import torch

    from bench.model_metrics.metric_nll import model_nll
    from bench.models import build_model
    from bench.progress import shown

    torch.manual_seed(0)
    vae = build_model("vae", (1, 28, 28), None, torch.device("cpu"))
    pixelcnn = build_model("pixelcnn", (1, 8, 8), None, torch.device("cpu"))
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    model_nll(vae, images, k=2, batch=4)
    assert "NLL bound" not in capfd.readouterr().err  # off unless asked for
    with shown(True):
        model_nll(vae, images, k=2, batch=4)
        pixelcnn.generate(torch.rand(2, 64) * 2 - 1)
    err = capfd.readouterr().err
    assert "NLL bound (k = 2) on 8 images" in err and "PixelCNN sampling 2 images" in err
