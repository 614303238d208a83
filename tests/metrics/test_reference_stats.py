import json

import numpy as np
import pytest
import torch

from bench.data.base import ImageSplit
from bench.metrics import SampleEvaluator, extract_features, fid_from_features, reference_statistics
from bench.metrics.feature_extractor_tiny import TinyExtractor
import bench.metrics.reference_stats as reference_stats


class CountingTiny(TinyExtractor):
    calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def make_split(n=40, description="toy test"):
    g = torch.Generator().manual_seed(0)
    return ImageSplit(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), None, description)


def stray_files(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_second_call_reads_the_cache(tmp_path):
    ext, split = CountingTiny(), make_split()
    first = reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False, batch_size=16)
    assert ext.calls == 3
    second = reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False, batch_size=16)
    assert ext.calls == 3  # nothing recomputed
    np.testing.assert_array_equal(first.mu, second.mu)
    np.testing.assert_array_equal(first.sigma, second.sigma)
    np.testing.assert_array_equal(first.features, second.features)
    assert second.n == 40 and second.protocol["split"] == "toy test"
    assert second.protocol["extractor"] == ext.protocol()
    assert len(list((tmp_path / "reference_stats").glob("*.npz"))) == 1
    assert stray_files(tmp_path) == []


def test_key_fields_give_different_files(tmp_path):
    ext, split = CountingTiny(), make_split()
    reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False)
    reference_statistics(split.head(30), "toy", ext, cache_dir=tmp_path, progress=False)
    reference_statistics(make_split(description="toy train"), "toy", ext, cache_dir=tmp_path, progress=False)
    reference_statistics(split, "toy2", ext, cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "reference_stats").glob("*.npz"))) == 4
    assert ext.calls == 4


def test_default_cache_dir_is_bench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    reference_statistics(make_split(), "toy", TinyExtractor(), progress=False)
    assert len(list((tmp_path / "reference_stats").glob("toy-40-*.npz"))) == 1


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(reference_stats.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        reference_statistics(make_split(), "toy", TinyExtractor(), cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "reference_stats").iterdir()) == []


def test_corrupt_or_foreign_cache_file_is_recomputed(tmp_path):
    ext, split = CountingTiny(), make_split()
    stats = reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False)
    path = reference_stats.cache_path(stats.protocol, tmp_path)
    path.write_bytes(b"not a zip")
    again = reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    with np.load(path) as z:  # a file whose stored key differs (e.g. a hash collision) is not trusted
        arrays = {k: z[k] for k in z.files}
    arrays["key"] = np.array(json.dumps({**stats.protocol, "n": 1}))
    np.savez(path, **arrays)
    calls = ext.calls
    reference_statistics(split, "toy", ext, cache_dir=tmp_path, progress=False)
    assert ext.calls > calls


def test_evaluator_scores_and_records_protocol(tmp_path):
    split = make_split(60)
    ev = SampleEvaluator("toy", split, 50, TinyExtractor(), cache_dir=tmp_path, progress=False)
    same = split.images[:50].float() / 255
    assert ev.evaluate(same).metrics["fid"] == pytest.approx(0.0, abs=1e-6)
    noise = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    result = ev.evaluate(noise).metrics
    ref_feats = ev.stats.features
    expected = fid_from_features(ref_feats, extract_features(ev.extractor, noise, progress=False)["features"])
    # The evaluator's FID is torch's float64 eigensolver on the device, this one NumPy's: with fewer
    # samples than dimensions the square roots of the null eigenvalues' round-off (~1e-8 each) differ.
    assert result["fid"] == pytest.approx(expected, rel=1e-7) and result["fid"] > 1
    assert {"kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean", "is_std"} <= set(result)
    protocol = ev.protocol()
    assert protocol["n_real"] == 50 and protocol["n_fake"] == 50
    assert protocol["reference"] == "toy test, first 50" and protocol["dataset"] == "toy"
    assert protocol["standard"] is False and protocol["extractor"]["extractor"] == "tiny-random-projection"
    assert "not quantised" in protocol["samples"]
    assert set(protocol["versions"]) == {"bench", "torch", "torch-fidelity", "numpy", "scipy"}
    assert protocol["per_metric"]["kid"]["subset_size"] == 50 and protocol["per_metric"]["pr"]["k"] == 3
    json.dumps(protocol, allow_nan=False)


def test_evaluator_flags_non_finite_samples_and_checks_n(tmp_path):
    ev = SampleEvaluator("toy", make_split(), 20, TinyExtractor(), cache_dir=tmp_path, progress=False)
    bad = torch.rand(20, 1, 28, 28)
    bad[3, 0, 1, 1] = float("nan")
    result = ev.evaluate(bad)
    assert not result.finite and result.metrics == {}
    with pytest.raises(ValueError, match="n_fake"):
        ev.evaluate(torch.rand(19, 1, 28, 28))
