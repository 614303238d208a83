"""Likelihoods of explicit models: exact conversions, the IWAE bound, the discretised logistic,
and the checks that keep an explicit model honest."""

import math

import pytest
import torch

from bench.model_metrics.metric_nll import model_nll
from bench.models import GenerativeModel, SearchSpace, build_model, register_model
from bench.models.search_space import Fixed
from bench.models.vae_variants import discretized_logistic_log_prob


class UniformModel(GenerativeModel):
    """Every 8-bit image equally likely (discrete), or a uniform density on [0,1)^D (dequantised)."""

    family, explicit, exact_likelihood = "test", True, True
    search_space = SearchSpace(defaults=dict(lr=1e-3), wide={"lr": Fixed(1e-3)}, narrow={"lr": Fixed(1e-3)})

    def __init__(self, image_shape, likelihood):
        super().__init__(image_shape)
        self.likelihood = likelihood
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def log_weights(self, x, k, rng):
        dims = x[0].numel()
        log_p = -dims * math.log(256) if self.likelihood == "discrete" else 0.0
        return torch.full((1, len(x)), log_p, dtype=torch.float64)


@pytest.mark.parametrize("likelihood", ["discrete", "dequantized"])
def test_a_uniform_model_has_exactly_8_bits_per_dim(likelihood):
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    metrics, protocol = model_nll(UniformModel((3, 4, 4), likelihood), images, k=5)
    assert metrics["nll_bpd"] == 8.0 and protocol["k"] == 1 and protocol["estimator"] == "exact"


def test_nll_refuses_bad_input():
    model = UniformModel((1, 4, 4), "discrete")
    with pytest.raises(ValueError, match="at least 1"):
        model_nll(model, torch.zeros(2, 1, 4, 4, dtype=torch.uint8), k=0)
    with pytest.raises(ValueError, match="not 8-bit"):
        model_nll(model, torch.zeros(2, 1, 4, 4), k=1)


def test_discretized_logistic_sums_to_one_over_the_256_values():
    values = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1) / 255
    for mean, log_scale in ((0.3, -3.0), (0.0, -1.0), (1.0, -5.0), (0.5, 1.0)):
        log_p = discretized_logistic_log_prob(values, torch.full_like(values, mean), torch.full((1, 1, 1), log_scale))
        assert torch.logsumexp(log_p.double(), 0).item() == pytest.approx(0.0, abs=1e-4)


@pytest.fixture(scope="module")
def trained_vae():
    torch.manual_seed(0)
    model = build_model("vae_dl", (1, 8, 8), {"lr": 1e-3})
    data = (torch.rand(64, 1, 8, 8) > 0.5).float() * (200 / 255)
    rng = torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train_step(data, rng)
    return model, (data * 255).round().to(torch.uint8)


def test_iwae_with_one_sample_is_the_elbo(trained_vae):
    model, images = trained_vae
    x = images.float() / 255
    model.eval()
    with torch.no_grad():
        lw = model.log_weights(x, 1, torch.Generator().manual_seed(3))[0]
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
        log_px = -model.reconstruction_nll(x, model.decoder(z))
        log_pz = torch.distributions.Normal(0, 1).log_prob(z).sum(1)
        log_qz = torch.distributions.Normal(mu, sigma).log_prob(z).sum(1)
    model.train()
    assert torch.allclose(lw, log_px + log_pz - log_qz, rtol=1e-5, atol=1e-3)


def test_the_iwae_bound_tightens_with_k(trained_vae):
    model, images = trained_vae
    nll = {k: model_nll(model, images, k=k, seed=1)[0] for k in (1, 8, 64, 256)}
    values = [nll[k]["nll_bpd"] for k in (1, 8, 64, 256)]
    noise = max(nll[k]["nll_bpd_se"] for k in nll)
    assert all(b <= a + noise for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]


def test_binarized_models_report_nats_on_binarised_images():
    model = build_model("vae", (1, 8, 8))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    metrics, protocol = model_nll(model, images, k=4)
    assert set(metrics) == {"nll_nats_binarized", "nll_nats_binarized_se"} and metrics["nll_nats_binarized"] > 0
    assert protocol["unit"].startswith("nats") and protocol["k"] == 4
    assert model_nll(model, images, k=4)[0] == metrics  # the binarisation and the samples are seeded


def test_an_explicit_model_must_say_what_its_likelihood_is():
    class NoLikelihood(UniformModel):
        likelihood = ""

        def train_step(self, real, rng):
            return {}

        def decode(self, z):
            return z

    with pytest.raises(TypeError, match="likelihood"):
        register_model("no_likelihood")(NoLikelihood)
