"""`bench score` on samples generated elsewhere: folders and arrays, numbers, JSON, bad input."""

import json

import numpy as np
import pytest
import torch

from bench.data import get_dataset
from bench.metrics import compute_metrics, extract_features, get_extractor
from bench.score import score_samples
from tests.test_cli import assert_one_line_error, run_cli


@pytest.fixture
def reference_images(blob_folder):
    return get_dataset(f"folder:{blob_folder}").load("reference").images


def test_npz_scores_equal_a_direct_computation(blob_folder, reference_images, tmp_path):
    samples = reference_images.numpy().transpose(0, 2, 3, 1)[::-1].copy()  # NHWC uint8, reversed order
    np.savez(tmp_path / "s.npz", samples=samples, labels=np.zeros(len(samples)))
    out = tmp_path / "scores.json"
    result = score_samples(tmp_path / "s.npz", f"folder:{blob_folder}", ("fid", "kid", "pr", "dc", "is"), n=64,
                           device="cpu", extractor="tiny", progress=False, out=out)
    extractor = get_extractor("tiny")
    real = extract_features(extractor, reference_images[:64], progress=False)
    fake = extract_features(extractor, torch.from_numpy(samples[:64].transpose(0, 3, 1, 2).copy()), progress=False)
    direct = compute_metrics(("fid", "kid", "pr", "dc", "is"), real["features"], fake["features"], fake["logits"])
    # FID on the evaluator's device path uses torch's eigensolver, the direct one NumPy's: with fewer
    # samples than dimensions the null eigenvalues' round-off enters as ~1e-8 in absolute terms.
    assert result.metrics["fid"] == pytest.approx(direct.values["fid"], abs=1e-7)
    assert {k: v for k, v in result.metrics.items() if k != "fid"} == pytest.approx(
        {k: v for k, v in direct.values.items() if k != "fid"}, rel=1e-9)
    stored = json.loads(out.read_text())
    assert stored["n"] == 64 and stored["metrics"] == pytest.approx(result.metrics)
    assert stored["protocol"]["n_real"] == 64 and stored["protocol"]["standard"] is False
    assert stored["protocol"]["per_metric"]["kid"]["subset_size"] == 64


def test_float_samples_and_folders(blob_folder, reference_images, tmp_path):
    floats = reference_images[:40].float().numpy() / 255  # NCHW floats in [0, 1]
    np.save(tmp_path / "s.npy", floats)
    a = score_samples(tmp_path / "s.npy", f"folder:{blob_folder}", ("fid",), device="cpu", extractor="tiny", progress=False)
    assert a.n == 40 and a.metrics["fid"] == pytest.approx(0.0, abs=1e-6)  # the same images as the reference
    b = score_samples(blob_folder / "train", f"folder:{blob_folder}", ("fid", "prd"), n=50, device="cpu",
                      extractor="tiny", progress=False)
    assert b.n == 50 and b.metrics["fid"] > 0 and 0 <= b.metrics["prd_f8"] <= 1


def test_cli_prints_a_table_and_writes_json(blob_folder, reference_images, tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "gen.npz", reference_images.numpy())
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["score", "--samples", str(tmp_path / "gen.npz"), "--dataset", f"folder:{blob_folder}",
                            "--extractor", "tiny", "--device", "cpu", "--no-progress", "--n", "32"], capsys)
    assert code == 0 and "fid" in out and "kid_mean" in out and "non-standard" in out
    written = list(tmp_path.glob("scores-gen-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["n"] == 32


@pytest.mark.parametrize("make, args, fragments", [
    (lambda p: None, ["--samples", "{tmp}/absent.npz"], ["absent.npz not found"]),
    (lambda p: np.save(p / "s.npy", np.zeros((4, 5, 5), np.int32)), ["--samples", "{tmp}/s.npy"], ["dtype int32", "accepted"]),
    (lambda p: np.save(p / "s.npy", np.full((4, 8, 8), 2.0)), ["--samples", "{tmp}/s.npy"], ["floats in [2, 2]"]),
    (lambda p: np.save(p / "s.npy", np.zeros((4, 3, 16, 16), np.uint8)), ["--samples", "{tmp}/s.npy"], ["16x16x3", "8x8x1"]),
    (lambda p: np.save(p / "s.npy", np.zeros((40, 8, 8), np.uint8)), ["--samples", "{tmp}/s.npy", "--n", "50"], ["--n 50", "2..40"]),
    (lambda p: np.save(p / "s.npy", np.zeros((40, 8, 8), np.uint8)), ["--samples", "{tmp}/s.npy", "--metrics", "fid,xyz"],
     ["unknown metric 'xyz'", "accepted: fid"]),
    (lambda p: (p / "s.txt").write_text("x"), ["--samples", "{tmp}/s.txt"], ["unsupported file type"]),
])
def test_bad_input(make, args, fragments, blob_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(["score", "--dataset", f"folder:{blob_folder}", "--extractor", "tiny", "--device", "cpu",
                            "--no-progress", *args], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not list(tmp_path.glob("scores-*.json"))
