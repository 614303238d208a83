from math import comb

import numpy as np
import pytest
import scipy.spatial.distance
import torch
from torch_fidelity.metric_prc import calculate_precision_recall_full, calculate_precision_recall_part

from bench.metrics.metric_prc import density_coverage, knn_radii, precision_recall

SLOW = pytest.mark.slow


def feature_sets(n_real=600, n_fake=500, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * 1.1 + 0.2


def literal_prdc(real, fake, k_pr, k_dc):
    """The four formulas written out with scipy distances; radii as prdc does (k+1-th value, self included)."""
    d_rr, d_ff = (scipy.spatial.distance.cdist(a, a) for a in (real, fake))
    d_fr = scipy.spatial.distance.cdist(fake, real)
    r_real, r_fake = np.sort(d_rr, axis=1)[:, k_pr], np.sort(d_ff, axis=1)[:, k_pr]
    precision = np.mean([(d_fr[j] <= r_real).any() for j in range(len(fake))])
    recall = np.mean([(d_fr[:, i] <= r_fake).any() for i in range(len(real))])
    r5 = np.sort(d_rr, axis=1)[:, k_dc]
    density = sum((d_fr[j] < r5).sum() for j in range(len(fake))) / (k_dc * len(fake))
    coverage = np.mean([d_fr[:, i].min() < r5[i] for i in range(len(real))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch_fidelity(dtype):
    real, fake = feature_sets()
    r, f = torch.from_numpy(real).to(dtype), torch.from_numpy(fake).to(dtype)
    ours = precision_recall(real, fake, k=3, batch_size=128, dtype=dtype)
    for fn in (calculate_precision_recall_full, calculate_precision_recall_part):
        precision, recall = fn(f, r, neighborhood=3, batch_size=256)  # its features_1 = generated
        assert ours["precision"] == pytest.approx(precision, rel=1e-6)
        assert ours["recall"] == pytest.approx(recall, rel=1e-6)
    assert 0.1 < ours["precision"] < 0.95 and 0.1 < ours["recall"] < 0.95  # not a degenerate comparison


def test_matches_literal_formulas():
    real, fake = feature_sets(n_real=400, n_fake=300, d=32, seed=1)
    precision, recall, density, coverage = literal_prdc(real, fake, 3, 5)
    pr = precision_recall(real, fake, batch_size=64)
    dc = density_coverage(real, fake, batch_size=64)
    assert (pr["precision"], pr["recall"]) == pytest.approx((precision, recall), rel=1e-6)
    assert (dc["density"], dc["coverage"]) == pytest.approx((density, coverage), rel=1e-6)


def test_hand_computed_ties():
    """1-d, k = 1. Real radii: 0->1, 1->1, 3->2, 6->3; fake radii: 0.5->1.5, 2->1.5, 10->8.
    Fake 2 lies exactly on the ball of real 1: inside for precision (<=), outside for density (<)."""
    real, fake = np.array([[0.0], [1.0], [3.0], [6.0]]), np.array([[0.5], [2.0], [10.0]])
    assert precision_recall(real, fake, k=1) == {"precision": pytest.approx(2 / 3), "recall": 1.0}
    assert density_coverage(real, fake, k=1) == {"density": pytest.approx(1.0), "coverage": 0.75}


def test_block_size_does_not_matter():
    real, fake = feature_sets(n_real=150, n_fake=120, d=16, seed=2)
    expected = precision_recall(real, fake, batch_size=10_000), density_coverage(real, fake, batch_size=10_000)
    for batch_size in (1, 7, 64):
        assert (precision_recall(real, fake, batch_size=batch_size), density_coverage(real, fake, batch_size=batch_size)) == expected


def test_radius_excludes_only_the_sample_itself():
    a = torch.tensor([[0.0], [0.0], [2.0], [5.0]])  # an exact duplicate is a neighbour at distance 0
    assert knn_radii(a, 1, batch_size=3).tolist() == [0.0, 0.0, 2.0, 3.0]
    assert knn_radii(a, 2, batch_size=3).tolist() == [2.0, 2.0, 2.0, 5.0]


def test_mode_collapse_high_precision_low_recall():
    """Fakes in four tight clusters, each around a real sample: realistic but not diverse."""
    rng = np.random.default_rng(3)
    real = rng.standard_normal((1000, 16))
    fake = real[rng.choice(1000, 4, replace=False)].repeat(100, axis=0) + 0.01 * rng.standard_normal((400, 16))
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.05
    assert dc["coverage"] < 0.05
    swapped = precision_recall(fake, real)
    assert swapped["precision"] < 0.05 and swapped["recall"] > 0.95


def test_identical_distributions_expectations():
    """Exchangeability gives, in any dimension, E[density] = 1 and
    E[coverage] = 1 - C(N-1, k) / C(N+M-1, k) (about 1 - 2^-5 for N = M)."""
    n, k = 1000, 5
    densities, coverages = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        dc = density_coverage(rng.standard_normal((n, 8)), rng.standard_normal((n, 8)), k=k, dtype=torch.float32)
        densities.append(dc["density"])
        coverages.append(dc["coverage"])
    assert np.mean(densities) == pytest.approx(1.0, abs=0.04)
    assert np.mean(coverages) == pytest.approx(1 - comb(n - 1, k) / comb(2 * n - 1, k), abs=0.01)
    assert 1 - comb(n - 1, k) / comb(2 * n - 1, k) == pytest.approx(1 - 2 ** -5, abs=1e-3)


def readme_example(n):
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.standard_normal((n, 1000))).float()
    fake = torch.from_numpy(rng.standard_normal((n, 1000))).float()
    pr = precision_recall(real, fake, k=5, dtype=torch.float32)
    return {**pr, **density_coverage(real, fake, k=5, dtype=torch.float32)}


def test_prdc_readme_example_reduced():
    """prdc's README (two N(0, I) sets, 10k x 1000-d, k = 5): P 0.4772, R 0.4705, density 1.0555,
    coverage 0.9735. At 2500 samples P and R run ~0.07 higher, and density varies by ±0.15 between
    seeds in 1000-d (hubness), hence the loose bounds; the full size is test_prdc_readme_example."""
    out = readme_example(2500)
    assert out["precision"] == pytest.approx(0.477, abs=0.12) and out["recall"] == pytest.approx(0.471, abs=0.12)
    assert out["density"] == pytest.approx(1.056, abs=0.3) and out["coverage"] == pytest.approx(0.974, abs=0.03)


@SLOW
def test_prdc_readme_example():
    out = readme_example(10_000)
    assert out["precision"] == pytest.approx(0.477, abs=0.04) and out["recall"] == pytest.approx(0.471, abs=0.04)
    assert out["density"] == pytest.approx(1.056, abs=0.2) and out["coverage"] == pytest.approx(0.974, abs=0.025)


def test_bad_inputs():
    real, fake = feature_sets(n_real=10, n_fake=10, d=4)
    with pytest.raises(ValueError, match="k"):
        precision_recall(real, fake, k=10)
    with pytest.raises(ValueError, match="k"):
        density_coverage(real, fake, k=0)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        precision_recall(real, fake[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        density_coverage(real, fake * np.nan)
