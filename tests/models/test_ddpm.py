"""DDPM: its schedule, its variational bound, its sampler and its place in the protocol (issue 16)."""

import math

import numpy as np
import pytest
import torch

from bench.config import RunOptions, make_trial_config
from bench.data import get_dataset
from bench.model_metrics.metric_nll import model_nll
from bench.models import build_model
from bench.models.ddpm import HALF_BIN, discretized_gaussian_log_prob
from bench.train import run_trial

SHAPE = (1, 8, 8)


def tiny(timesteps=8, **kw):
    torch.manual_seed(0)
    return build_model("ddpm", SHAPE, {"timesteps": timesteps}, **kw)


def test_the_papers_linear_schedule():
    model = build_model("ddpm", SHAPE)
    assert model.timesteps == 1000 and model.alpha_bar.shape == (1000,)
    betas = 1 - model.alpha_bar_host / torch.cat([torch.ones(1, dtype=torch.float64), model.alpha_bar_host[:-1]])
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert model.alpha_bar_host[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # x_T is almost pure noise


def test_the_decoder_is_a_distribution_over_the_256_values():
    values = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1
    for mean, std in ((0.3, 0.01), (-0.999, 0.05), (0.5, 0.3)):
        log_p = discretized_gaussian_log_prob(values.view(256, 1), torch.full((256, 1), mean, dtype=torch.float64), std)
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert HALF_BIN == pytest.approx(1 / 255)


def test_the_decoder_keeps_far_tails_in_float32():
    """A value 5 to 40 σ from the mean: Φ underflows in float32 there; the log-space form must not
    (scipy's float64 log_ndtr as the reference)."""
    from scipy.special import log_ndtr

    std, offsets = 0.01, np.array([0.06, 0.1, -0.3, 0.4])
    got = discretized_gaussian_log_prob(torch.tensor(offsets, dtype=torch.float32).view(-1, 1), torch.zeros(4, 1), std)
    a, b = (np.abs(offsets) - HALF_BIN) / std, (np.abs(offsets) + HALF_BIN) / std
    want = log_ndtr(-a) + np.log1p(-np.exp(log_ndtr(-b) - log_ndtr(-a)))
    assert got.numpy() == pytest.approx(want, rel=1e-5)


def bounds(model, x, k, draws):
    with torch.no_grad():
        return torch.stack([model.log_weights(x, k, torch.Generator().manual_seed(s))[0] for s in range(draws)])


def test_fewer_timesteps_estimate_the_sum_over_all_of_them_without_bias():
    """With a term of the bound made a known function of t, 2^t, the sum over T = 8 timesteps is
    255; 3 strata (sizes 3, 2, 3) must average to it, which weights of T/k = 8/3 each would not (237)."""
    model = tiny()
    model.term = lambda x0, t, rng: torch.exp2(t.to(x0.dtype))
    x = torch.randint(0, 256, (2, *SHAPE)).float() / 255
    every = bounds(model, x, 8, 1)[0]
    prior = -every - 255  # L_T: what is not the sum over t
    assert (prior > 0).all()  # a KL divergence (large here: 8 steps of β ≤ 0.02 leave x_T far from N(0, I))
    assert torch.equal(bounds(model, x, 1000, 1)[0], every)  # k >= T: every timestep, nothing drawn
    strata = -bounds(model, x, 3, 4000) - prior
    se = strata.std(0) / math.sqrt(4000)
    assert ((strata.mean(0) - 255).abs() < 4 * se).all() and (se < 3).all()


class Denoiser(torch.nn.Module):
    """A cheap stand-in for the U-Net whose error depends on the timestep."""

    def forward(self, x, t):
        return 0.5 * x + 0.01 * t.to(x.dtype).view(-1, 1, 1, 1)


def test_each_term_is_the_kl_between_the_posterior_and_the_reverse_step():
    from torch.distributions import Normal, kl_divergence

    model = tiny(timesteps=20)
    model.unet = Denoiser()
    x0 = (torch.randint(0, 256, (3, *SHAPE)).double() / 255 * 2 - 1).float()
    a_bar = model.alpha_bar_host
    for step in (0, 1, 7, 19):  # 0-based: the paper's t = step + 1
        t = torch.full((3,), step)
        got = model.term(x0, t, torch.Generator().manual_seed(5))
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5)).double()
        a, a_prev = a_bar[step], a_bar[step - 1] if step else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - a / a_prev
        xt = a.sqrt() * x0.double() + (1 - a).sqrt() * eps
        eps_hat = model.unet(xt, t)
        mean_theta = (xt - beta / (1 - a).sqrt() * eps_hat) / (1 - beta).sqrt()
        if step == 0:  # L_0 = −log p(x_0 | x_1), σ_1² = β̃_2 (Ho et al.'s code clips β̃_1 = 0 so)
            beta_2 = 1 - a_bar[1] / a_bar[0]
            want = -discretized_gaussian_log_prob(x0.double(), mean_theta, ((1 - a) / (1 - a_bar[1]) * beta_2).sqrt())
        else:  # Ho et al. (7): the posterior's mean and variance β̃_t, shared by the reverse step
            posterior_mean = a_prev.sqrt() * beta / (1 - a) * x0.double() + (1 - beta).sqrt() * (1 - a_prev) / (1 - a) * xt
            std = ((1 - a_prev) / (1 - a) * beta).sqrt()
            want = kl_divergence(Normal(posterior_mean, std), Normal(mean_theta, std)).flatten(1).sum(1)
        assert torch.allclose(got.double(), want, rtol=1e-3, atol=1e-3), (step, got, want)


def test_the_nll_record_states_the_timesteps_and_how_many_were_evaluated():
    model = tiny()
    images = torch.randint(0, 256, (6, *SHAPE), dtype=torch.uint8)
    metrics, protocol = model_nll(model, images, k=3)
    assert protocol["timesteps"] == 8 and protocol["k"] == 3 and "stratified" in protocol["estimator"]
    assert math.isfinite(metrics["nll_bpd"]) and metrics["nll_bpd"] > 0
    metrics, protocol = model_nll(model, images, k=1000)
    assert protocol["k"] == 8 and "every timestep" in protocol["estimator"]


def unet_calls(model, z):
    calls = []
    handle = model.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        images = model.generate(z)
    finally:
        handle.remove()
    return images, len(calls)


def test_sampling_takes_the_recorded_steps_and_is_a_function_of_z():
    model = tiny(timesteps=50, sample_steps=5)
    z = model.sample_noise(3, torch.Generator().manual_seed(0))
    images, calls = unet_calls(model, z)
    assert calls == 5 and images.shape == (3, *SHAPE) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(unet_calls(model, z)[0], images)
    assert not torch.equal(unet_calls(model, model.sample_noise(3, torch.Generator().manual_seed(1)))[0], images)
    assert unet_calls(tiny(timesteps=50), z)[1] == 50  # by default every timestep


def test_trials_record_the_protocols_sampling_steps_capped_at_t():
    assert make_trial_config("ddpm", "triangles", sample_steps=20).sample_steps == 20
    assert make_trial_config("ddpm", "triangles", sample_steps=5000).sample_steps == 1000
    assert make_trial_config("ddpm", "triangles", sample_steps=20, overrides={"timesteps": "10"}).sample_steps == 10
    assert make_trial_config("ns_gan", "triangles", sample_steps=20).sample_steps == 0  # one-pass samplers


def test_match_flops_trains_ddpm_for_what_ns_gan_spends():
    from bench.flops import flops_per_step
    from bench.models import get_model_class
    from bench.studies.protocol import resolve_protocol

    protocol = resolve_protocol("triangles", "quick", match="flops", steps=3000, eval_every=1000)
    defaults = lambda m: dict(get_model_class(m).search_space.defaults)  # noqa: E731
    ddpm = protocol.trial_config("ddpm", defaults("ddpm"), 0)
    ratio = flops_per_step("ns_gan", (1, 28, 28), defaults("ns_gan")) / flops_per_step("ddpm", (1, 28, 28), defaults("ddpm"))
    assert ratio < 0.2  # a U-Net step costs several GAN steps
    assert ddpm.steps == round(3000 * ratio) and ddpm.sample_steps == 20


def test_a_trial_times_its_sampling_within_its_evaluation(tmp_path):
    config = make_trial_config("ddpm", "triangles", steps=4, eval_every=4, eval_samples=8, extractor="tiny",
                               nll_k=2, nll_n=16, sample_steps=3, overrides={"timesteps": "10"})
    result = run_trial(config, RunOptions(out=tmp_path / "ddpm", device="cpu", progress=False))
    (record,) = result.evaluations
    assert 0 < record["sample_seconds"] < record["eval_seconds"]
    assert record["config"]["sample_steps"] == 3 and record["protocol"]["nll"]["timesteps"] == 10


@pytest.mark.slow  # 50 steps of the study-sized U-Net and its bound: about 5 min on 2 cores
def test_a_short_training_on_triangles_lowers_its_loss_and_its_nll(tmp_path):
    config = make_trial_config("ddpm", "triangles", steps=50, eval_every=25, eval_samples=32,
                               extractor="tiny", nll_k=16, nll_n=128, sample_steps=50)
    result = run_trial(config, RunOptions(out=tmp_path / "ddpm", device="cpu", progress=False))
    assert result.status == "complete"
    first, last = result.evaluations
    assert last["losses"]["loss"] < first["losses"]["loss"]
    assert math.isfinite(last["metrics"]["fid"])
    torch.manual_seed(config.seed)
    untrained = build_model("ddpm", (1, 28, 28), config.hparams)
    test_images = get_dataset("triangles").load("reference").head(128).images
    before = model_nll(untrained, test_images, k=16)[0]["nll_bpd"]
    assert last["metrics"]["nll_bpd"] < before, (before, last["metrics"]["nll_bpd"])
