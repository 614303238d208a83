"""RealNVP: exact inversion, exact log-determinants, a normalised density, learning, and sampling."""

import math

import pytest
import torch
from torch import nn

from bench.model_metrics.metric_nll import importance_weighted_nll
from bench.models import build_model, model_names

model_names()  # built-ins first: importing realnvp below must not put it ahead of the study's table order
from bench.models.realnvp import ALPHA, AffineCoupling, RealNVP  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are too small to share between threads; on a busy 2-core machine two threads
    stall each other (10× slower measured), so each test runs on one and restores the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomised(model, std=0.5, seed=0):
    """The flow starts as the identity (zero output convs): give those convs random weights of
    output scale ~std so that the tests see couplings that really shift and scale."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".out." in name:
                p.add_(std / math.sqrt(p[0].numel()) * torch.randn(p.shape, generator=g))
    return model


def midpoints(lo, hi, n=400):
    """n×n midpoint-rule nodes on [lo, hi]² as [n², 2], and the cell area."""
    h = (hi - lo) / n
    t = lo + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).view(-1, 2), h * h


def test_contract():
    model = build_model("realnvp", (3, 8, 8))
    assert isinstance(model, RealNVP)
    assert (model.family, model.explicit, model.likelihood, model.noise) == ("flow", True, "dequantized", "normal")
    assert model.z_dim == 3 * 8 * 8 and model.sample_noise(2).shape == (2, 192)
    assert model.parameter_counts() == {"flow": sum(p.numel() for p in model.parameters())}
    space = RealNVP.search_space
    assert set(space.defaults) == set(space.wide) == set(space.narrow) == {"lr", "beta1"}
    logs = model.train_step(torch.rand(4, 3, 8, 8), torch.Generator().manual_seed(0))
    assert set(logs) == {"loss", "bpd"} and model.steps == model.g_steps == 1
    assert logs["bpd"].item() == pytest.approx(logs["loss"].item() / math.log(2) + 8)


@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 4, 4), (1, 3, 5)])  # two scales (squeeze) and the odd fallback
def test_inverse_and_log_determinant_are_exact(shape):
    torch.manual_seed(0)
    model = randomised(build_model("realnvp", shape)).double()
    y = torch.rand(3, *shape, dtype=torch.float64) * 0.98 + 0.01
    u, logdet = model.forward_flow(y)
    assert u.shape == (3, math.prod(shape))
    assert torch.allclose(model.inverse_flow(u), y, atol=1e-10)
    for i in range(len(y)):  # brute force: log|det ∂u/∂y| from the full Jacobian
        jac = torch.autograd.functional.jacobian(lambda v: model.forward_flow(v.view(1, *shape))[0][0], y[i].flatten())
        assert torch.linalg.slogdet(jac).logabsdet.item() == pytest.approx(logdet[i].item(), abs=1e-8)
    assert logdet.std() > 0.1  # the randomised couplings really do change the volume


def test_inverse_in_float32_at_a_benchmark_shape():
    torch.manual_seed(0)
    model = randomised(build_model("realnvp", (3, 8, 8)))
    y = torch.rand(16, 3, 8, 8) * 0.99
    assert torch.allclose(model.inverse_flow(model.forward_flow(y)[0]), y, atol=1e-4)


def test_the_density_of_y_integrates_to_one():
    """The model's density of y (couplings, logit, prior) on 2 pixels, 1×1×2, its stack swapped for
    narrow couplings of the same class so 160,000 points are cheap. The logit's domain,
    (−α/(1−2α), 1 + α/(1−2α))², a little wider than [0,1)², is covered whole by substituting
    y = (σ(s) − α)/(1 − 2α), dy = σ(s)(1 − σ(s))/(1 − 2α) ds, with s on a grid over [−10, 10]²:
    a grid in y itself misses the sharp peaks the flow makes near the domain's edges."""
    torch.manual_seed(0)
    model = build_model("realnvp", (1, 1, 2))
    model.layers = nn.ModuleList(AffineCoupling(1, "checkerboard", i % 2, hidden=8) for i in range(4))
    model = randomised(model, std=2.0)
    s, area = midpoints(-10.0, 10.0)
    sig = torch.sigmoid(s)
    y = ((sig - ALPHA) / (1 - 2 * ALPHA)).float().view(-1, 1, 1, 2)
    dy_ds = (sig * (1 - sig) / (1 - 2 * ALPHA)).prod(1)
    with torch.no_grad():
        total = (model.log_prob(y).double().exp() * dy_ds).sum().item() * area
        h, logdet = s.float().view(-1, 1, 1, 2), 0
        for layer in model.layers:
            h, ld = layer(h)
            logdet = logdet + ld
    assert logdet.max() - logdet.min() > 1  # the couplings' own volume change varies: a real test
    assert total == pytest.approx(1.0, abs=1e-2)


def test_a_stack_of_channel_couplings_is_a_normalised_density_on_the_plane():
    """The channel-mask coupling used after the squeeze, on 2 variables with a N(0, I) prior."""
    torch.manual_seed(0)
    flow = randomised(nn.ModuleList(AffineCoupling(2, "channel", i % 2, hidden=8) for i in range(4)), 2.0)
    v, area = midpoints(-10.0, 10.0)
    v = v.float().view(-1, 2, 1, 1)
    logdet = torch.zeros(len(v))
    with torch.no_grad():
        for layer in flow:
            v, ld = layer(v)
            logdet += ld
        log_p = -0.5 * (v.square().flatten(1).sum(1) + 2 * math.log(2 * math.pi)) + logdet
    total = log_p.double().exp().sum().item() * area
    assert logdet.max() - logdet.min() > 1
    assert total == pytest.approx(1.0, abs=1e-2)


def test_training_on_a_few_distinct_images_brings_bits_per_dim_well_below_8():
    """A density uniform on [0,1)^D scores exactly 8 bits/dim; 150 steps at the default lr must
    beat it by 2 bits (4 distinct images: the ideal is log2(4)/64 bits/dim)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    templates = torch.randint(0, 3, (4, 1, 8, 8), generator=g).float() * (127 / 255)  # values 0, 127, 254
    data = templates.repeat(16, 1, 1, 1)
    model = build_model("realnvp", (1, 8, 8))
    rng = torch.Generator().manual_seed(1)

    def bits_per_dim():
        model.eval()
        estimate = importance_weighted_nll(model.log_weights(data, 5, torch.Generator().manual_seed(2)))
        model.train()
        assert estimate.k == 1 and estimate.n == 64  # exact likelihood: one row, whatever k
        return estimate.bits_per_dim(64, dequantized=True)[0]

    before = bits_per_dim()
    for _ in range(150):
        logs = model.train_step(data, rng)
    after = bits_per_dim()
    assert after < 6.0 and before > 8.0, (before, after)
    assert logs["bpd"].item() == pytest.approx(after, abs=0.5)


def test_decode_is_deterministic_and_in_range():
    torch.manual_seed(0)
    model = randomised(build_model("realnvp", (3, 8, 8)))
    z = model.sample_noise(6, torch.Generator().manual_seed(1))
    a, b = model.generate(z), model.generate(z)
    assert a.shape == (6, 3, 8, 8) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, model.generate(model.sample_noise(6, torch.Generator().manual_seed(2))))
    y = torch.rand(4, 3, 8, 8) * 0.99  # decode inverts the flow: the code of y decodes back to y
    with torch.no_grad():
        assert torch.allclose(model.decode(model.forward_flow(y)[0]), y, atol=1e-4)
