import numpy as np
import pytest
import scipy.special
import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

from bench.metrics.metric_isc import inception_score


def openai_inception_score(logits, splits=10):
    """The OpenAI reference (improved-gan inception_score/model.py) typed out literally, in float64."""
    preds = scipy.special.softmax(np.asarray(logits, dtype=np.float64), axis=1)
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return np.mean(scores), np.std(scores)


def random_logits(n, seed=0, scale=4.0):
    return np.random.default_rng(seed).standard_normal((n, 1008)) * scale


@pytest.mark.parametrize("n, splits", [(1000, 10), (1003, 10), (257, 3), (50, 1)])
def test_matches_openai_reference(n, splits):
    logits = random_logits(n, seed=n)
    mean, std = inception_score(logits, splits)
    ref_mean, ref_std = openai_inception_score(logits, splits)
    assert mean == pytest.approx(ref_mean, rel=1e-6)
    assert std == pytest.approx(ref_std, rel=1e-6)


@pytest.mark.parametrize("n, splits", [(1000, 10), (1003, 10)])
def test_matches_torch_fidelity_without_shuffle(n, splits):
    logits = random_logits(n, seed=1).astype(np.float32)  # torch-fidelity's features are float32; both go to float64
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=splits, shuffle=False)
    mean, std = inception_score(logits, splits)
    assert mean == pytest.approx(ref[KEY_METRIC_ISC_MEAN], rel=1e-6)
    assert std == pytest.approx(ref[KEY_METRIC_ISC_STD], rel=1e-6)


def test_torch_fidelity_default_is_ours_after_its_permutation():
    """torch-fidelity shuffles by default (RandomState(2020).permutation); we keep the given order."""
    logits = random_logits(1000, seed=2)
    ref = isc_features_to_metric(torch.from_numpy(logits))  # shuffle=True, rng_seed=2020
    permuted = logits[np.random.RandomState(2020).permutation(len(logits))]
    assert inception_score(permuted)[0] == pytest.approx(ref[KEY_METRIC_ISC_MEAN], rel=1e-6)
    assert inception_score(permuted)[1] == pytest.approx(ref[KEY_METRIC_ISC_STD], rel=1e-6)
    assert inception_score(logits)[1] != pytest.approx(ref[KEY_METRIC_ISC_STD], rel=1e-6)


def test_closed_forms():
    # Identical predictions: p(y|x) = p(y), KL = 0, IS = 1 in every split.
    assert inception_score(np.zeros((100, 1008))) == pytest.approx((1.0, 0.0), abs=1e-12)
    # Confident predictions spread evenly over 10 classes within each split: IS = 10.
    logits = np.zeros((200, 1008))
    logits[np.arange(200), np.arange(200) % 10] = 1000.0  # p(y|x) one-hot, even in float64
    assert inception_score(logits, splits=4) == pytest.approx((10.0, 0.0), rel=1e-9, abs=1e-9)


def test_float64_math_for_any_input_type():
    logits = random_logits(300, seed=3).astype(np.float32)
    expected = inception_score(logits.astype(np.float64), 3)
    assert inception_score(logits, 3) == expected
    assert inception_score(torch.from_numpy(logits), 3) == expected
    assert all(type(v) is float for v in expected)


def test_bad_inputs():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((5, 1008)), splits=10)
    with pytest.raises(ValueError, match="NaN"):
        inception_score(np.full((20, 1008), np.nan), splits=2)
    with pytest.raises(ValueError, match="logits"):
        inception_score(np.zeros(1008))
