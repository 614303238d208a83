"""The first group ports the reference's own cases (google/compare_gan prd_score_test.py)."""

import numpy as np
import pytest

from bench.metrics.metric_prd import PRDResult, f_beta_score, kmeans_labels, max_f_beta_pair, prd, prd_from_histograms


def test_no_overlap():
    np.testing.assert_allclose(np.ravel(prd_from_histograms([0, 1], [1, 0])), 0, atol=1e-7)


def test_perfect_overlap():
    precision, recall = prd_from_histograms([1, 0], [1, 0], num_angles=11)
    np.testing.assert_allclose([precision[5], recall[5]], [1, 1], atol=1e-12)


def test_low_precision_high_recall():
    precision, recall = prd_from_histograms([0.5, 0.5], [1, 0], num_angles=11)
    np.testing.assert_allclose([precision[5], recall[5], precision[10], recall[1]], [0.5, 0.5, 0.5, 1], atol=1e-7)


def test_high_precision_low_recall():
    precision, recall = prd_from_histograms([1, 0], [0.5, 0.5], num_angles=11)
    np.testing.assert_allclose([precision[5], recall[5], recall[1], precision[10]], [0.5, 0.5, 0.5, 1], atol=1e-7)


@pytest.mark.parametrize("epsilon", [0, 1, -1])
def test_bad_epsilon(epsilon):
    with pytest.raises(ValueError):
        prd_from_histograms([1], [1], epsilon=epsilon)


@pytest.mark.parametrize("num_angles", [0, 1, -1, 1e6 + 1, 2.5])
def test_bad_num_angles(num_angles):
    with pytest.raises(ValueError):
        prd_from_histograms([1], [1], num_angles=num_angles)


def test_cluster_into_bins():
    """Reference: 5 zeros vs 5 ones into 3 clusters gives two histograms of 3 bins summing to 1."""
    labels = kmeans_labels(np.vstack([np.zeros((5, 4)), np.ones((5, 4))]), 3, np.random.default_rng(0))
    eval_hist, ref_hist = (np.bincount(part, minlength=3) / 5 for part in (labels[:5], labels[5:]))
    assert len(eval_hist) == len(ref_hist) == 3
    assert eval_hist.sum() == pytest.approx(1) and ref_hist.sum() == pytest.approx(1)
    assert not set(labels[:5]) & set(labels[5:])  # the two points are never merged


def test_unbalanced_sets():
    with pytest.raises(ValueError, match="enforce_balance"):
        prd(np.array([[0], [0], [1]]), np.array([[0], [1]]), num_clusters=2, enforce_balance=True)
    prd(np.array([[0], [0], [1]]), np.array([[0], [1]]), num_clusters=2, enforce_balance=False)


def test_f_beta_values():
    precision = np.array([1, 1, 0, 0, 0.5, 1, 0.5])
    recall = np.array([1, 0, 1, 0, 0.5, 0.5, 1])
    for beta, expected in [(1, [1, 0, 0, 0, 0.5, 2 / 3, 2 / 3]), (2, [1, 0, 0, 0, 0.5, 5 / 9, 5 / 6]),
                           (1 / 2, [1, 0, 0, 0, 0.5, 5 / 6, 5 / 9])]:
        np.testing.assert_allclose(f_beta_score(precision, recall, beta=beta), expected, atol=1e-7)
    assert f_beta_score(np.array([]), np.array([])).shape == (0,)


def test_f_beta_bad_arguments():
    for beta in (0, -3):
        with pytest.raises(ValueError):
            f_beta_score(np.ones(1), np.ones(1), beta=beta)
    with pytest.raises(ValueError):
        f_beta_score(-np.ones(1), np.ones(1))
    with pytest.raises(ValueError):
        f_beta_score(np.ones(1), -np.ones(1))


# Our own cases: the whole pipeline on features.

def blobs(centres, per_blob, rng, spread=0.1):
    return np.concatenate([c + spread * rng.standard_normal((per_blob, len(c))) for c in centres])


def test_identical_sets_reach_one_one():
    x = np.random.default_rng(0).standard_normal((400, 8))
    result = prd(x, x, num_runs=3)
    assert isinstance(result, PRDResult) and result.precision.shape == result.recall.shape == (1001,)
    assert (result.precision[500], result.recall[500]) == pytest.approx((1, 1), abs=1e-12)
    assert (result.f_beta, result.f_beta_inv) == pytest.approx((1, 1), abs=1e-8)


def test_disjoint_sets_score_zero():
    rng = np.random.default_rng(1)
    result = prd(rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 100, num_runs=3)
    assert result.precision.max() < 1e-8 and result.recall.max() < 1e-8
    assert result.f_beta < 1e-8 and result.f_beta_inv < 1e-8


def test_mode_dropping_and_argument_order():
    """eval draws from 2 of ref's 4 well-separated modes: precision-like F_1/8 high, recall-like F_8 ~0.5."""
    rng = np.random.default_rng(2)
    centres = 10 * np.eye(4, 16)
    ref = blobs(centres, 100, rng)
    evaluated = blobs(centres[:2], 200, rng)
    result = prd(evaluated, ref, num_clusters=20, num_runs=3)
    assert result.f_beta_inv > 0.9 and 0.4 < result.f_beta < 0.6
    swapped = prd(ref, evaluated, num_clusters=20, num_runs=3)
    assert swapped.f_beta > 0.9 and 0.4 < swapped.f_beta_inv < 0.6


def test_seed_fixes_the_result():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((300, 16)) + 0.5
    first, again = prd(a, b, num_runs=2, seed=5), prd(a, b, num_runs=2, seed=5)
    np.testing.assert_array_equal(first.precision, again.precision)
    assert (first.f_beta, first.f_beta_inv) == (again.f_beta, again.f_beta_inv)


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(4)
    x = blobs(10 * np.eye(5, 32), 60, rng)
    labels = kmeans_labels(x, 5, rng)
    groups = labels.reshape(5, 60)
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 5


def test_max_f_beta_pair_matches_definition():
    precision, recall = np.array([0.2, 0.9, 0.6]), np.array([0.95, 0.1, 0.5])
    f8 = [(65 * p * r) / (64 * p + r + 1e-10) for p, r in zip(precision, recall)]
    f18 = [((1 + 1 / 64) * p * r) / (p / 64 + r + 1e-10) for p, r in zip(precision, recall)]
    assert max_f_beta_pair(precision, recall) == pytest.approx((max(f8), max(f18)), rel=1e-12)
