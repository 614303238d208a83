"""Triangles precision/recall (PROTOCOL §5): the manifold distance, δ, generator inversion, the metric."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.data import triangles as tri
from bench.model_metrics import metric_triangles as mt
from bench.model_metrics import triangle_delta as td
from bench.model_metrics import triangle_inversion as ti
from bench.model_metrics import triangle_manifold as tm
from bench.model_metrics import triangle_raster as tr

# A coarser bank than the default keeps the session's one-off bank build to ~1 s; the refinement
# still lands real triangles on the manifold.
SEARCH = tm.ManifoldSearch(grid=20)
HOLDOUT = tri.SPLIT_RANGES["holdout"][0]
REFERENCE = tri.SPLIT_RANGES["reference"][0]


@pytest.fixture(scope="module")
def holdout():
    return torch.from_numpy(tri.generate_triangles(HOLDOUT, HOLDOUT + 200))


@pytest.fixture(scope="module")
def holdout_d(holdout):
    return tm.manifold_distance(holdout, SEARCH)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("triangles-cache")


@pytest.fixture(scope="module")
def delta(holdout, cache):
    """The default calibration: the spacing of real triangles (held-out to nearest of the 60k train)."""
    return td.calibrate_delta(holdout, search=SEARCH, cache_dir=cache)


@pytest.fixture(scope="module")
def delta_manifold(holdout, cache):
    """The strict calibration: held-out triangles' own manifold distances."""
    return td.calibrate_delta(holdout, search=SEARCH, cache_dir=cache, method="manifold")


def reference(n):
    return torch.from_numpy(tri.generate_triangles(REFERENCE, REFERENCE + n))


def dataset_params(start, stop):
    """The dataset's parameters p = (a_0, a_1, a_2, θ) of images [start, stop), from its documented draws."""
    draws = torch.from_numpy(np.random.default_rng(0).random((tri.TOTAL, 4))[start:stop])
    a = tr.P_LO[:3] + draws[:, :3] * (tr.P_HI[:3] - tr.P_LO[:3])
    return torch.cat([a, torch.deg2rad(draws[:, 3:] * 2 * np.pi)], 1)


# --- renderers ---------------------------------------------------------------------------------


def test_exact_renderer_reproduces_the_dataset():
    p = dataset_params(0, 300)
    assert torch.allclose(tr.vertices(p), torch.from_numpy(tri.polygon_vertices()[:300]), atol=1e-12, rtol=0)
    images = torch.from_numpy(tri.generate_triangles(0, 300)).reshape(300, -1).float() / 255
    assert torch.equal(tr.render_exact(p), images)


def test_soft_renderer_is_close_and_its_jacobian_is_right():
    p = dataset_params(0, 64)
    image, jac = tr.render_soft(p, jacobian=True)
    exact = tr.render_exact(p).double()
    assert (image - exact).square().sum(1).max() < 0.05  # only the sub-row sampling differs
    h = 1e-6
    for k in range(4):
        e = torch.zeros(4, dtype=torch.float64)
        e[k] = h
        fd = (tr.render_soft(p + e) - tr.render_soft(p - e)) / (2 * h)
        # piecewise smooth: finite differences disagree only where an end crosses a pixel border
        assert (fd - jac[..., k]).abs().mean() < 1e-4


# --- distance to the manifold and δ ------------------------------------------------------------


def test_real_triangles_lie_on_the_manifold_deterministically(holdout, holdout_d, delta):
    assert holdout_d.dtype == torch.float64 and holdout_d.shape == (200,)
    assert holdout_d.median() < 0.001 and holdout_d.max() < 0.05
    # again, in other batches: the same distances
    again = tm.manifold_distance(holdout[:24], tm.ManifoldSearch(grid=20, batch=5))
    assert torch.allclose(again, holdout_d[:24], rtol=0, atol=1e-9)


def test_off_manifold_images_are_far(holdout, delta, delta_manifold):
    x = holdout[:8].float().div(255).view(8, 1, 28, 28)
    blurred = nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    shifted = torch.roll(x, shifts=1, dims=3)  # a whole triangle, just off-centre by a pixel
    noise = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blank, black = torch.ones(2, 1, 28, 28), torch.zeros(2, 1, 28, 28)
    for name, images in [("blurred", blurred), ("shifted", shifted), ("noise", noise), ("blank", blank),
                         ("black", black)]:
        d = tm.manifold_distance(images, SEARCH)
        assert (d > 100 * delta_manifold).all() and (d > delta).all(), name
    assert tm.manifold_distance(blank, SEARCH).min() > 5  # the smallest polygon, mostly outside the image
    nan = torch.cat([x[:1], torch.full((1, 1, 28, 28), float("nan"))])  # a diverged generator's output
    assert tm.manifold_distance(nan, SEARCH)[1] == float("inf")


def test_manifold_calibration_covers_the_holdout_and_is_cached(holdout, holdout_d, delta_manifold, cache, monkeypatch):
    delta = delta_manifold
    assert (holdout_d <= delta).double().mean() >= 0.99
    q = torch.quantile(holdout_d, 0.99, interpolation="higher").item()
    assert delta == q * (1 + td.DEFAULT_MARGIN)  # deterministic: recomputed here, bit for bit
    assert 0 < delta < 0.01

    def recompute(*args, **kwargs):
        raise RuntimeError("recomputed")

    monkeypatch.setattr(td, "manifold_distance", recompute)  # where calibrate_delta looks it up
    assert td.calibrate_delta(holdout, search=SEARCH, cache_dir=cache, method="manifold") == delta
    with pytest.raises(RuntimeError):  # other images or settings, other key
        td.calibrate_delta(holdout[:199], search=SEARCH, cache_dir=cache, method="manifold")
    with pytest.raises(RuntimeError):
        td.calibrate_delta(holdout, search=SEARCH, margin=0.2, cache_dir=cache, method="manifold")


def test_nearest_train_calibration_is_the_spacing_of_real_data(holdout, holdout_d, delta, delta_manifold, cache):
    train = torch.from_numpy(tri.generate_triangles(*tri.SPLIT_RANGES["train"])).reshape(-1, 784).double() / 255
    x = holdout.reshape(-1, 784).double() / 255
    nearest = torch.cdist(x, train).square().min(1).values
    assert delta == pytest.approx(torch.quantile(nearest, 0.99, interpolation="higher").item(), rel=1e-6)  # float32 pixels
    assert (holdout_d <= delta).all()  # held-out triangles are on the manifold: precision 1 >= 0.99
    assert delta > 50 * delta_manifold
    stored = [json.loads(p.read_text()) for p in (cache / "triangles").glob("delta-*.json")]
    record = next(r for r in stored if r["key"]["method"] == "nearest-train")
    assert record["holdout_precision_first_200"] >= 0.99 and record["delta"] == delta
    with pytest.raises(ValueError, match="accepted: nearest-train, manifold"):
        td.calibrate_delta(holdout, method="quantile")


# --- stand-in generators -----------------------------------------------------------------------


class StandIn(nn.Module):
    """The GenerativeModel interface (decode, generate, sample_noise, z_dim, noise, device)."""

    noise = "uniform"

    def __init__(self, z_dim):
        super().__init__()
        self.z_dim = z_dim
        self.anchor = nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    def sample_noise(self, n, generator=None, device=None):
        return torch.rand(n, self.z_dim, generator=generator, device=device or self.device) * 2 - 1

    @torch.no_grad()
    def generate(self, z):
        return self.decode(z)


class Lookup(StandIn):
    """A perfect generator of the given triangles: its samples are those images, picked by the
    largest coordinate of z; decode (used to invert it) is a sharp, differentiable softmax choice."""

    def __init__(self, images):
        super().__init__(len(images))
        self.register_buffer("images", tr.as_pixels(images))

    def decode(self, z):
        return (torch.softmax(300 * z, 1) @ self.images).view(-1, 1, 28, 28)

    @torch.no_grad()
    def generate(self, z):
        return self.images[z.argmax(1)].view(-1, 1, 28, 28)


class Constant(StandIn):
    def __init__(self, value):
        super().__init__(4)
        self.value = value

    def decode(self, z):
        if self.value == "noise":  # fixed random images, a smooth function of z
            w = torch.randn(4, 784, generator=torch.Generator().manual_seed(0)).to(z)
            return torch.sigmoid(z @ w).view(-1, 1, 28, 28)
        return torch.full((len(z), 1, 28, 28), float(self.value), device=z.device) + 0 * z.sum(1).view(-1, 1, 1, 1)


class LinearSigmoid(StandIn):
    def __init__(self):
        super().__init__(8)
        g = torch.Generator().manual_seed(1)
        self.weight = nn.Parameter(torch.randn(8, 784, generator=g))
        self.bias = nn.Parameter(torch.randn(784, generator=g) * 0.1)

    def decode(self, z):
        return torch.sigmoid(z @ self.weight + self.bias).view(-1, 1, 28, 28)


SMALL = ti.Inversion(restarts=2, steps=30, lr=0.05, pool=64)


def test_perfect_generator_scores_one(holdout, delta, cache):
    model = Lookup(reference(32))
    # The softmax saturates away from the right image: start from a pool that holds every choice.
    inversion = ti.Inversion(restarts=1, steps=10, pool=1024)
    r = mt.triangle_precision_recall(model, n=32, search=SEARCH, inversion=inversion, holdout_images=holdout,
                                     cache_dir=cache)
    assert r.delta == delta  # calibrated on those held-out images: read from the cache
    assert r.precision == 1 and r.recall == 1 and r.f1 == 1
    assert r.n == 32 and r.settings["n_test"] == 32 and r.settings["test_set"].endswith("[60000:60032]")


@pytest.mark.parametrize("value", [1.0, "noise"])
def test_blank_or_noise_generators_score_zero(value, delta):
    r = mt.triangle_precision_recall(Constant(value), n=16, test_images=reference(8), delta=delta, search=SEARCH,
                                     inversion=SMALL)
    assert r.precision == 0 and r.recall == 0 and r.f1 == 0
    assert (r.sample_distances > delta).all() and (r.test_distances > delta).all()


def test_inversion_recovers_z_of_a_linear_sigmoid_generator():
    model = LinearSigmoid()
    z_true = torch.rand(32, 8, generator=torch.Generator().manual_seed(5)) * 1.8 - 0.9
    with torch.no_grad():
        x = model.decode(z_true)
    z, d = ti.invert_generator(model, x, restarts=1, steps=150, lr=0.05, pool=64)
    assert z.shape == (32, 8) and d.shape == (32,) and d.dtype == torch.float64
    assert d.max() < 1e-4 and (z - z_true).abs().max() < 1e-2
    # deterministic, also with plain restarts from the prior (pool = 0)
    z1, d1 = ti.invert_generator(model, x[:4], restarts=3, steps=5, pool=0, seed=1)
    z2, d2 = ti.invert_generator(model, x[:4], restarts=3, steps=5, pool=0, seed=1)
    assert torch.equal(z1, z2) and torch.equal(d1, d2)


@pytest.mark.parametrize("pool", [0, 16])
def test_inversion_leaves_the_model_as_it_was(pool):
    from bench.models import build_model

    model = build_model("ns_gan", (1, 28, 28))  # the study's generator, with batch norm
    model.train()
    model.D.requires_grad_(False)
    marked = next(model.G.parameters())
    marked.grad = torch.ones_like(marked)
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    x = torch.from_numpy(tri.generate_triangles(REFERENCE, REFERENCE + 4))
    z, d = ti.invert_generator(model, x, restarts=2, steps=3, pool=pool)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(marked.grad, torch.ones_like(marked))
    assert all(p.grad is None for p in model.parameters() if p is not marked)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # weights and BN running statistics
    assert z.shape == (4, model.z_dim) and z.abs().max() <= 1 and torch.isfinite(d).all()


def test_result_records_its_protocol(delta):
    test = reference(8)
    r = mt.triangle_precision_recall(Lookup(test), n=8, test_images=test, delta=delta, search=SEARCH,
                                     inversion=SMALL, seed=3)
    proto = r.protocol()
    assert proto["delta"] == delta and proto["delta_calibration"] == "given by the caller"
    assert proto["manifold"]["grid"] == 20 and proto["inversion"]["steps"] == 30 and "seed 3" in proto["samples"]
    assert r.settings["test_set"] == "caller's 8 images" and r.sample_distances.shape == (8,)
    assert mt.f1_score(0.5, 1.0) == pytest.approx(2 / 3) and mt.f1_score(0, 0) == 0
    strict = r.with_delta(0.0)
    assert strict.delta == 0 and strict.precision <= r.precision and strict.protocol()["delta"] == 0
    assert mt.TrianglePR(0, 0, 0, 1.0, 2, {}, torch.tensor([0.5, 2.0]), torch.tensor([3.0])).with_delta(1).precision == 0.5
