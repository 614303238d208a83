"""Bits/dim conversions and the importance-weighted bound."""

import math

import pytest
import torch

from bench.model_metrics.metric_nll import bits_per_dim_dequantized, bits_per_dim_discrete, importance_weighted_nll


def test_a_uniform_model_is_exactly_eight_bits_per_dimension():
    d = 3 * 32 * 32
    # Uniform over the 256 values of every dimension: -log p(x) = D log 256 nats.
    assert bits_per_dim_discrete(d * math.log(256), d) == pytest.approx(8.0, abs=1e-12)
    # Uniform density on [0,1)^D for the dequantised y: -log p(y) = 0.
    assert bits_per_dim_dequantized(0.0, d) == 8.0


def test_dequantised_offset_matches_the_change_of_variables():
    # A density on x + u in [0, 256)^D is 256^-D times the density on y = (x + u)/256.
    d, nll_on_x_plus_u = 10, 57.0
    nll_on_y = nll_on_x_plus_u - d * math.log(256)
    assert bits_per_dim_dequantized(nll_on_y, d) == pytest.approx(nll_on_x_plus_u / (d * math.log(2)))


def test_k1_is_the_elbo():
    log_w = torch.randn(1, 50) * 3 - 100
    est = importance_weighted_nll(log_w)
    assert est.nats == pytest.approx(-log_w.double().mean().item(), rel=1e-12) and est.k == 1 and est.n == 50


def test_bound_tightens_with_k_in_expectation():
    # log w = log p(x) + noise with E[w] = p(x): the bound approaches -log p(x) from above as k grows.
    torch.manual_seed(0)
    true_nll, sigma = 100.0, 1.5
    estimates = []
    for k in (1, 10, 100, 1000):
        log_w = -true_nll - sigma**2 / 2 + sigma * torch.randn(k, 2000, dtype=torch.float64)
        estimates.append(importance_weighted_nll(log_w).nats)
    assert all(a > b for a, b in zip(estimates, estimates[1:]))
    assert estimates[0] == pytest.approx(true_nll + sigma**2 / 2, abs=0.1)
    assert estimates[-1] == pytest.approx(true_nll, abs=0.05)


def test_large_negative_log_weights_do_not_underflow():
    est = importance_weighted_nll(torch.full((10000, 3), -5000.0))
    assert est.nats == pytest.approx(5000.0) and est.standard_error == 0.0


def test_standard_error_and_bits_per_dim():
    log_w = torch.tensor([[-10.0, -12.0, -14.0]])
    est = importance_weighted_nll(log_w)
    assert est.standard_error == pytest.approx(2.0 / math.sqrt(3))
    bpd, se = est.bits_per_dim(num_dims=4, dequantized=False)
    assert bpd == pytest.approx(12.0 / (4 * math.log(2))) and se == pytest.approx(est.standard_error / (4 * math.log(2)))
    with pytest.raises(ValueError):
        importance_weighted_nll(torch.zeros(3))
