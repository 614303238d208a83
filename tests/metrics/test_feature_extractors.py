import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.metrics import extract_features, get_extractor
from bench.metrics.feature_extractor_tiny import TinyExtractor


def gradient_image():
    return torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(1, 3, 32, 32) * 255 / 3071


def test_tiny_is_deterministic_and_pinned():
    """Fixed-seed weights: same numbers in every process and on every machine (pinned literals)."""
    a, b = TinyExtractor(), TinyExtractor()
    x = gradient_image()
    fa, fb = a(x), b(x)
    assert torch.equal(fa["features"], fb["features"]) and torch.equal(fa["logits"], fb["logits"])
    np.testing.assert_allclose(fa["features"][0, :4], [0.4893069565, 0.2764763236, 0.2831027210, 0.1043926626], rtol=1e-5)
    np.testing.assert_allclose(fa["logits"][0, :2], [1.5665563345, 3.6234002113], rtol=1e-5)
    assert not a.standard and "tests only" in a.protocol()["note"]
    assert a.protocol()["standard"] is False


def test_uint8_and_float_inputs_agree():
    ext = get_extractor("tiny")
    u8 = torch.randint(0, 256, (10, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    from_u8 = extract_features(ext, u8, batch_size=4, progress=False)
    from_float = extract_features(ext, u8.double() / 255, batch_size=3, progress=False)
    assert from_u8["features"].dtype == np.float64 and from_u8["features"].shape == (10, 64)
    assert from_u8["logits"].shape == (10, 10)
    np.testing.assert_allclose(from_float["features"], from_u8["features"], atol=1e-5)
    np.testing.assert_allclose(from_float["logits"], from_u8["logits"], atol=1e-4)


def test_float_input_is_not_quantised():
    ext = get_extractor("tiny")
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    exact = extract_features(ext, x, progress=False)["features"]
    rounded = extract_features(ext, (x * 255).round().to(torch.uint8), progress=False)["features"]
    assert np.abs(exact - rounded).max() > 1e-4


def test_one_channel_is_repeated():
    ext = get_extractor("tiny")
    gray = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    one = extract_features(ext, gray, progress=False)["features"]
    three = extract_features(ext, gray.repeat(1, 3, 1, 1), progress=False)["features"]
    np.testing.assert_array_equal(one, three)


def test_bad_inputs_are_rejected():
    ext = get_extractor("tiny")
    with pytest.raises(ValueError, match="1 or 3"):
        extract_features(ext, torch.zeros(2, 2, 8, 8, dtype=torch.uint8), progress=False)
    with pytest.raises(ValueError, match="uint8"):
        extract_features(ext, torch.zeros(2, 3, 8, 8, dtype=torch.int64), progress=False)
    with pytest.raises(ValueError, match="get_extractor"):
        extract_features(ext, torch.zeros(2, 3, 8, 8), device="cuda", progress=False)
    assert extract_features(ext, torch.zeros(2, 3, 8, 8), device="cpu", progress=False)["features"].shape == (2, 64)
    assert extract_features(ext, torch.zeros(0, 3, 8, 8), progress=False)["features"].shape == (0, 64)


def test_unknown_extractor_lists_known_ones():
    with pytest.raises(BenchError, match="inception, tiny"):
        get_extractor("vgg")
