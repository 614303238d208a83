"""FID with the real Inception network behaves as FID must: small between samples of one
distribution, larger for a degraded copy, zero for a set against itself."""

import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data.triangles import SPLIT_RANGES, generate_triangles
from bench.metrics import extract_features, fid_from_features, get_extractor

N = 160


def degrade(images: torch.Tensor) -> torch.Tensor:
    """Shift by 2 px (white fill) and blur with a 3x3 box: the same shapes, slightly off."""
    x = images.float() / 255
    x = F.pad(x, (2, 0, 2, 0), value=1.0)[..., :-2, :-2]
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


@pytest.mark.inception
def test_triangles_train_vs_test_is_small_and_a_degraded_copy_is_far():
    extractor = get_extractor("inception")
    start = SPLIT_RANGES["reference"][0]
    test = torch.from_numpy(generate_triangles(start, start + N))[:, None]
    train = torch.from_numpy(generate_triangles(0, N))[:, None]
    feats = {name: extract_features(extractor, images, progress=False)["features"]
             for name, images in {"test": test, "train": train, "degraded": degrade(train)}.items()}
    same_distribution = fid_from_features(feats["test"], feats["train"])
    degraded = fid_from_features(feats["test"], feats["degraded"])
    assert fid_from_features(feats["test"], feats["test"]) == pytest.approx(0.0, abs=1e-4)  # round-off of N < d
    assert 0 < same_distribution < degraded / 3, (same_distribution, degraded)


def read_mnist_test(shared_data, n):
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.from_numpy(data[:n].copy())


@pytest.mark.inception
@pytest.mark.shared_data
@pytest.mark.slow
def test_mnist_test_set_against_itself_and_its_halves(shared_data):
    images = read_mnist_test(shared_data, 1000)
    feats = extract_features(get_extractor("inception"), images, progress=False)["features"]
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-4)
    halves = fid_from_features(feats[:500], feats[500:])
    assert 0 < halves < 20, halves
