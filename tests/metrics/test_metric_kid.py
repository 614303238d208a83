import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from bench.metrics.metric_kid import KIDResult, kid


def feature_sets(n_real=600, n_fake=500, d=64, shift=0.3, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, d)) + 1.0
    fake = rng.standard_normal((n_fake, d)) * 1.2 + 1.0 + shift
    return real, fake


def torch_fidelity_kid(real, fake, **kwargs):
    """torch-fidelity's own function, in its convention input1 = fake, input2 = real; float64 features."""
    out = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), verbose=False, **kwargs)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


def literal_unbiased_mmd2(x, y):
    """Bińkowski et al.'s unbiased estimator written out term by term."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    off = ~np.eye(m, dtype=bool)
    return k(x, x)[off].sum() / (m * (m - 1)) + k(y, y)[off].sum() / (m * (m - 1)) - 2 * k(x, y).sum() / m ** 2


def test_matches_torch_fidelity_same_seed():
    real, fake = feature_sets()
    result = kid(real, fake, subsets=20, subset_size=200, seed=7)
    ref_mean, ref_std = torch_fidelity_kid(real, fake, kid_subsets=20, kid_subset_size=200, rng_seed=7)
    assert result.mean == pytest.approx(ref_mean, rel=1e-6)
    assert result.std == pytest.approx(ref_std, rel=1e-6)
    assert result.mean > 10 * result.std > 0  # a real difference, not round-off, is being compared


def test_default_seed_is_torch_fidelitys():
    real, fake = feature_sets(n_real=300, n_fake=300, d=16, seed=1)
    mean, std = kid(real, fake, subsets=5, subset_size=100)
    assert (mean, std) == pytest.approx(torch_fidelity_kid(real, fake, kid_subsets=5, kid_subset_size=100), rel=1e-6)


def test_draw_order_fake_first():
    """The subsets depend on which set is drawn first; ours must be torch-fidelity's input1 = fake."""
    real, fake = feature_sets(n_real=400, n_fake=300, d=16, seed=2)
    ours = kid(real, fake, subsets=10, subset_size=100, seed=3).mean
    swapped = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=10,
                                     kid_subset_size=100, rng_seed=3, verbose=False)[KEY_METRIC_KID_MEAN]
    assert ours == pytest.approx(torch_fidelity_kid(real, fake, kid_subsets=10, kid_subset_size=100, rng_seed=3)[0], rel=1e-6)
    assert ours != pytest.approx(swapped, rel=1e-6)


def test_whole_sets_match_literal_estimator():
    real, fake = feature_sets(n_real=150, n_fake=150, d=32, seed=3)
    result = kid(real, fake, subsets=3, subset_size=150)  # every subset is a permutation of the whole set
    assert result.mean == pytest.approx(literal_unbiased_mmd2(real, fake), rel=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-12)


def test_fewer_samples_than_subset_size():
    real, fake = feature_sets(n_real=80, n_fake=50, d=16, seed=4)
    result = kid(real, fake, subsets=10)  # default subset_size 1000
    assert (result.subset_size, result.subset_size_reduced) == (50, True)
    assert result.protocol()["subset_size"] == 50 and result.protocol()["subset_size_reduced"] is True
    assert tuple(result) == pytest.approx(torch_fidelity_kid(real, fake, kid_subsets=10, kid_subset_size=50), rel=1e-6)
    assert kid(real, fake, subsets=2, subset_size=40).subset_size_reduced is False


def test_float64_math_for_any_input_type():
    real, fake = feature_sets(n_real=200, n_fake=200, d=2048, seed=5)
    real32, fake32 = real.astype(np.float32), fake.astype(np.float32)
    expected = kid(real32.astype(np.float64), fake32.astype(np.float64), subsets=4, subset_size=100)
    assert kid(real32, fake32, subsets=4, subset_size=100) == expected
    assert kid(torch.from_numpy(real32), torch.from_numpy(fake32), subsets=4, subset_size=100) == expected
    assert isinstance(expected, KIDResult) and type(expected.mean) is float and type(expected.std) is float


def test_same_distribution_is_near_zero():
    """Unbiased: two samples of one distribution average to ~0, far below a real difference."""
    real, fake = feature_sets(n_real=1000, n_fake=1000, d=32, shift=0.0, seed=6)
    other = np.random.default_rng(0).standard_normal((1000, 32)) + 1.0  # real's distribution
    different = kid(real, fake, subsets=10, subset_size=300)
    assert different.mean > 0
    assert abs(kid(real, other, subsets=10, subset_size=300).mean) < 0.05 * different.mean


def test_bad_inputs():
    real, fake = feature_sets(n_real=10, n_fake=10, d=4)
    with pytest.raises(ValueError, match="dimensions"):
        kid(real, fake[:, :3])
    with pytest.raises(ValueError, match="at least 2"):
        kid(real[:1], fake)
    with pytest.raises(ValueError, match="NaN"):
        kid(real * np.nan, fake)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        kid(real[0], fake)
