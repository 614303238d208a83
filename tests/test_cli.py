"""The command line: help everywhere, listings, and one clear line for every kind of bad input."""

import json
import subprocess
import sys

import pytest

from bench.cli import main
from tests.conftest import write_blob_folder


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse exits on its own errors and on --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


COMMANDS = ["list", "train", "score", "run", "worker", "status", "report", "export", "rank"]


@pytest.mark.parametrize("args", [["--help"]] + [[c, "--help"] for c in COMMANDS])
def test_help(args):
    result = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: bench" in result.stdout
    if args == ["--help"]:
        assert all(c in result.stdout for c in COMMANDS)


def test_list_models(capsys):
    code, out, _ = run_cli(["list", "models"], capsys)
    assert code == 0
    for name in ("mm_gan", "ns_gan", "lsgan", "wgan", "wgan_gp", "dragan", "began", "vae"):
        assert f"\n{name} " in out
    assert "6.64M / 6.56M" in out  # ns_gan's G / D on 28x28x1
    assert "explicit" in out and "implicit" in out


def test_list_datasets(capsys):
    code, out, _ = run_cli(["list", "datasets"], capsys)
    assert code == 0
    for name in ("mnist", "fashion_mnist", "cifar10", "celeba", "triangles", "folder:PATH"):
        assert name in out


TRAIN = ["train", "--no-progress", "--extractor", "tiny", "--device", "cpu"]


@pytest.mark.parametrize("args, fragments", [
    (["--model", "nope", "--dataset", "triangles"], ["unknown model 'nope'", "known models: mm_gan"]),
    (["--model", "ns_gan", "--dataset", "nope"], ["unknown dataset 'nope'", "triangles"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--set", "clip=1"], ["unknown hyperparameter 'clip'", "accepted:"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--set", "disc_iters=two"], ["disc_iters", "expected an integer"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--set", "lr"], ["bad --set 'lr'", "key=value"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--steps", "0"], ["--steps", "positive integer"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--steps", "x"], ["--steps", "positive integer"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--eval-samples", "20000"], ["20000", "10000 reference images"]),
    (["--model", "ns_gan", "--dataset", "triangles", "--device", "tpu"], ["unknown device 'tpu'", "auto, cpu"]),
])
def test_bad_input_is_one_line(args, fragments, capsys, tmp_path):
    code, _, err = run_cli(TRAIN + args + ["--out", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "t").exists()


def test_bad_image_folders(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(TRAIN + ["--model", "ns_gan", "--dataset", f"folder:{tmp_path / 'empty'}"], capsys)
    assert_one_line_error(code, err, "no images")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("L", (8, 8)).save(mixed / "a.png")
    Image.new("L", (12, 12)).save(mixed / "b.png")
    code, _, err = run_cli(TRAIN + ["--model", "ns_gan", "--dataset", f"folder:{mixed}", "--steps", "2",
                                    "--eval-samples", "2", "--out", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, "a.png", "b.png")


def test_unwritable_data_root(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run_cli(TRAIN + ["--model", "ns_gan", "--dataset", "triangles", "--data-root", str(blocker / "data"),
                                    "--out", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, "not writable")


def test_train_then_resume_and_refuse_a_different_trial(tmp_path, capsys):
    folder = write_blob_folder(tmp_path / "blobs")
    args = TRAIN + ["--model", "ns_gan", "--dataset", f"folder:{folder}", "--steps", "10", "--eval-every", "5",
                    "--eval-samples", "32", "--out", str(tmp_path / "t")]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "status: complete" in out
    records = [json.loads(line) for line in (tmp_path / "t" / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "already complete" in out
    code, _, err = run_cli(args + ["--set", "lr=1e-3"], capsys)
    assert_one_line_error(code, err, "different trial", "lr")
    (tmp_path / "t" / "trial.json").unlink()
    (tmp_path / "t" / "checkpoint.pt").write_bytes(b"\x00garbage")
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "checkpoint", "unreadable")
    assert (tmp_path / "t" / "checkpoint.pt").read_bytes() == b"\x00garbage"


@pytest.mark.inception
@pytest.mark.slow
def test_trial_on_triangles_with_the_real_inception(tmp_path, isolated_caches):
    """Issue 2's acceptance trial: two records with finite FID; a rerun returns at once (6 min on 2 cores)."""
    import os
    import time

    command = [sys.executable, "-m", "bench", "train", "--model", "ns_gan", "--dataset", "triangles", "--steps", "300",
               "--eval-every", "150", "--eval-samples", "256", "--no-progress", "--out", str(tmp_path / "t")]
    env = {**os.environ, "BENCH_OFFLINE": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "t" / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [150, 300]
    for r in records:
        assert 0 < r["metrics"]["fid"] < 1000
        assert r["protocol"]["extractor"]["extractor"] == "inception-v3-tf-2015-12-05" and r["protocol"]["n_fake"] == 256
    t0 = time.perf_counter()
    again = subprocess.run(command, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "already complete" in again.stdout
    assert time.perf_counter() - t0 < 30  # no data, no network, no training: just the interpreter
    assert len((tmp_path / "t" / "evals.jsonl").read_text().splitlines()) == 2
