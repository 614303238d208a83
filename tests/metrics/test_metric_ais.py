"""AIS log-likelihood against closed forms and quadrature; settings; determinism; the model wrapper."""

import math

import pytest
import torch
from torch import nn

from bench.model_metrics.metric_ais import AISSettings, _reflect, ais_log_likelihood, ais_nll, betas


def linear_gaussian(d, D, sigma, scale, n, seed):
    """decode(z) = W z + b with z ~ N(0, I): x ~ N(b, W Wᵀ + σ² I) exactly; n data points from the model."""
    g = torch.Generator().manual_seed(seed)
    W, b = torch.randn(D, d, generator=g) * scale, torch.rand(D, generator=g)
    x = torch.randn(n, d, generator=g) @ W.T + b + sigma * torch.randn(n, D, generator=g)
    cov = (W @ W.T + sigma**2 * torch.eye(D)).double()
    truth = torch.distributions.MultivariateNormal(b.double(), cov).log_prob(x.double())
    return (lambda z: z @ W.T + b), x, truth


# Prior-to-posterior information ½ log det(I + WᵀW/σ²) ≈ 3.5, 5 and 7 nats.
@pytest.mark.parametrize("d, D, scale", [(2, 10, 0.5), (3, 16, 0.5), (5, 20, 0.3)])
def test_linear_gaussian_matches_the_closed_form(d, D, scale):
    # 128 chains cost about what 16 do at this size (per-call overhead dominates) and cut the
    # per-example error to ≈ 0.05–0.1 nats (std over seeds), so 0.3 nats is a ≥ 3σ tolerance.
    sigma, n, chains = 0.3, 8, 128
    decode, x, truth = linear_gaussian(d, D, sigma, scale, n, seed=d)
    res = ais_log_likelihood(decode, x, d, "normal", AISSettings(steps=400, chains=chains, sigma=sigma, seed=1))
    err = res.log_px - truth
    assert res.log_px.shape == (n,) and res.log_weights.shape == (chains, n)
    assert 0.5 < res.acceptance < 0.9  # the adaptation reaches the neighbourhood of the target 0.65
    assert err.abs().max().item() < 0.3, err
    # No systematic overestimate: log p̂ is a lower bound in expectation (Jensen, on an unbiased p̂).
    assert err.mean().item() < 0.05 + 3 * err.std().item() / math.sqrt(n), err
    assert res.nll_nats == pytest.approx(-res.log_px.mean().item())
    assert res.nll_nats_se == pytest.approx(res.log_px.std().item() / math.sqrt(n))


def test_more_steps_tighten_the_estimate():
    decode, x, truth = linear_gaussian(5, 20, 0.2, 0.4, 8, seed=7)
    gaps = [(truth - ais_log_likelihood(decode, x, 5, "normal", AISSettings(steps=t, chains=8, sigma=0.2)).log_px)
            .mean().item() for t in (10, 300)]
    assert gaps[0] > gaps[1] + 1.0 and abs(gaps[1]) < 0.3, gaps


@pytest.mark.parametrize("z_true", [(0.9, -0.95), (1.2, 0.3)])  # near a corner; posterior mode outside the box
def test_uniform_prior_matches_quadrature(z_true):
    g = torch.Generator().manual_seed(3)
    d, D, sigma = 2, 8, 0.2
    W, b = torch.randn(D, d, generator=g) * 0.5, torch.rand(D, generator=g)
    x = (torch.tensor([z_true]) @ W.T + b + sigma * torch.randn(1, D, generator=g)).repeat(8, 1)  # 8 repeats

    # Midpoint rule on a 1000² grid: p(x) = ∫_{[-1,1]²} ¼ N(x; W z + b, σ² I) dz.
    h = 2 / 1000
    c = torch.arange(-1 + h / 2, 1, h, dtype=torch.float64)
    grid = torch.cartesian_prod(c, c)
    sq = (x[0].double() - grid @ W.T.double() - b.double()).square().sum(1)
    log_lik = -sq / (2 * sigma**2) - D * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    truth = (torch.logsumexp(log_lik, 0) + math.log(h * h / 4)).item()

    res = ais_log_likelihood(lambda z: z @ W.T + b, x, d, "uniform", AISSettings(steps=300, chains=64, sigma=sigma))
    err = res.log_px - truth
    assert res.acceptance > 0.5
    assert err.abs().max().item() < 0.3 and abs(err.mean().item()) < 0.1, (err, truth)


def test_reflection_folds_into_the_box_and_flips_momentum_on_odd_crossings():
    z = torch.tensor([0.5, 1.2, -1.3, 3.5, -4.5, 1.0])
    p = torch.ones(6)
    zr, pr = _reflect(z, p)
    assert torch.allclose(zr, torch.tensor([0.5, 0.8, -0.7, -0.5, -0.5, 1.0]))
    assert pr.tolist() == [1, -1, -1, 1, 1, 1]


def test_sigmoid_schedule_runs_from_zero_to_one():
    b = betas(100)
    assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all() and len(b) == 101
    assert b.diff()[0] < b.diff()[50] / 10  # small steps at the ends, where log w changes fastest
    assert betas(1).tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("chains", 0), ("leapfrog", 0), ("sigma", 0.0), ("sigma", -1.0), ("step_size", 0.0),
     ("target_accept", 0.0), ("target_accept", 1.0), ("schedule", "cosine"), ("steps", 2.5)],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"AISSettings\.{field} must be"):
        AISSettings(**{field: value}).validate()
    with pytest.raises(ValueError, match=field):
        ais_log_likelihood(lambda z: z, torch.zeros(1, 2), 2, "normal", AISSettings(**{field: value}))


def test_unknown_prior_is_refused():
    with pytest.raises(ValueError, match="prior"):
        ais_log_likelihood(lambda z: z, torch.zeros(1, 2), 2, "laplace", AISSettings(steps=2))


def test_same_seed_same_result():
    decode, x, _ = linear_gaussian(2, 10, 0.3, 0.5, 3, seed=0)
    settings = AISSettings(steps=30, chains=4, sigma=0.3, seed=11)
    a, b = (ais_log_likelihood(decode, x, 2, "normal", settings) for _ in range(2))
    assert torch.equal(a.log_weights, b.log_weights) and a.as_dict() == b.as_dict()
    c = ais_log_likelihood(decode, x, 2, "normal", AISSettings(steps=30, chains=4, sigma=0.3, seed=12))
    assert not torch.equal(a.log_weights, c.log_weights)


class TinyDecoder(nn.Module):
    """Stands in for a GenerativeModel: decode, z_dim, noise; records the mode decode runs in."""

    noise, z_dim = "uniform", 3

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 12), nn.Sigmoid())
        self.modes = []

    @property
    def device(self):
        return next(self.parameters()).device

    def decode(self, z):
        self.modes.append(self.training)
        return self.net(z).view(-1, 1, 3, 4)


def test_ais_nll_wraps_a_model_without_touching_its_parameters():
    torch.manual_seed(0)
    model = TinyDecoder().train()
    images = torch.rand(5, 1, 3, 4)
    settings = AISSettings(steps=20, chains=3, sigma=0.1)
    res = ais_nll(model, images, settings, seed=4, batch_size=2)
    assert model.modes and not any(model.modes)  # decoded in eval mode, then the mode is restored
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    assert res.log_px.shape == (5,) and torch.isfinite(res.log_px).all()
    assert res.protocol["seed"] == 4 and res.protocol["prior"] == "U[-1, 1]^d" and res.protocol["n"] == 5
    info = res.as_dict()
    for key in ("nll_nats", "nll_nats_se", "acceptance", "sigma", "steps", "chains", "leapfrog", "step_size",
                "target_accept", "schedule", "seed", "observation", "batch_size"):
        assert key in info
    assert torch.equal(res.log_px, ais_nll(model, images, settings, seed=4, batch_size=2).log_px)
