"""The reference half of the feature metrics, made once on the device, gives the numbers the
array forms give (FID to 1e-10 relative, the k-NN metrics exactly)."""

import numpy as np
import torch

from bench.metrics.feature_extractor_base import extract_features
from bench.metrics.feature_extractor_tiny import TinyExtractor
from bench.metrics.metric_fid import feature_statistics, fid_to_reference, frechet_distance
from bench.metrics.metric_prc import density_coverage, precision_recall
from bench.metrics.reference_side import reference_side
from bench.metrics.reference_stats import ReferenceStats


def _stats(real: np.ndarray) -> ReferenceStats:
    mu, sigma = feature_statistics(real)
    return ReferenceStats(mu, sigma, real.astype(np.float32), len(real), {"test": "reference side", "n": len(real)})


def test_the_reference_side_gives_the_array_forms_numbers():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 24)).astype(np.float32)
    fake = (rng.normal(size=(200, 24)) * 1.3 + 0.2)
    stats = _stats(real)
    side = reference_side(stats, "cpu")
    assert reference_side(stats, "cpu") is side  # made once per process and device
    fake_t = torch.as_tensor(fake)
    expected = frechet_distance(stats.mu, stats.sigma, *feature_statistics(fake))
    assert abs(fid_to_reference(side, fake_t) - expected) <= 1e-10 * expected
    real64 = real.astype(np.float64)
    assert precision_recall(side.features, fake_t, k=3, real_radii=side.radii(3)) == precision_recall(real64, fake, k=3)
    assert density_coverage(side.features, fake_t, k=5, real_radii=side.radii(5)) == density_coverage(real64, fake, k=5)
    assert side.radii(3) is side.radii(3)


def test_features_can_stay_on_the_extractors_device():
    extractor = TinyExtractor()
    images = torch.rand(10, 1, 28, 28)
    on_device = extract_features(extractor, images, batch_size=4, progress=False, on_device=True)
    on_host = extract_features(extractor, images, batch_size=4, progress=False)
    assert torch.is_tensor(on_device["features"]) and on_device["features"].device == extractor.device
    assert on_device["features"].dtype == torch.float64
    np.testing.assert_array_equal(on_device["features"].numpy(), on_host["features"])
