"""unrolled_gan (Metz et al. 2017): k = 0 is ns_gan step for step; k > 0 changes G's gradient,
which matches finite differences through D's unrolled Adam steps; the unrolled steps are
torch.optim.Adam's own, and they leave D, its statistics and its optimiser untouched."""

import copy
import math

import pytest
import torch
from torch import nn

from bench.config import RunOptions, make_trial_config
from bench.models import build_model, losses
from bench.train import run_trial
from bench.models.unrolled import adam_moments, unrolled_parameters

SHAPE = (1, 8, 8)
NS_DEFAULTS = dict(lr=5e-5, beta1=0.0, disc_iters=1, d_batch_norm=True)


def batch(seed, n=16):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_zero_unrolling_steps_is_the_non_saturating_gan_step_for_step():
    models = []
    for name, extra in (("ns_gan", {}), ("unrolled_gan", {"unroll_steps": 0})):
        torch.manual_seed(0)
        models.append(build_model(name, SHAPE, {**NS_DEFAULTS, **extra}))
    ns, unrolled = models
    rngs = [torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)]
    for step in range(4):
        a, b = (m.train_step(batch(step), rng) for m, rng in zip(models, rngs))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), step
    for net in ("G", "D"):
        for (name, x), (_, y) in zip(getattr(ns, net).state_dict().items(), getattr(unrolled, net).state_dict().items()):
            assert torch.equal(x, y), f"{net}.{name}"


def _generator_gradient(model, real, z):
    model._real = real
    model.G.zero_grad(set_to_none=True)
    model.generator_loss(model.G(z)).backward()
    return torch.cat([p.grad.flatten() for p in model.G.parameters()])


def test_unrolling_changes_the_generators_gradient_and_leaves_the_discriminator_alone():
    torch.manual_seed(0)
    model = build_model("unrolled_gan", SHAPE, {"unroll_steps": 3})
    model.train_step(batch(0), torch.Generator().manual_seed(0))  # D's Adam has state from here on
    real, z = batch(1), model.sample_noise(16, torch.Generator().manual_seed(1))
    d_before = copy.deepcopy(model.D.state_dict())
    opt_before = copy.deepcopy(model.optimizers()["D"].state_dict())
    ahead = _generator_gradient(model, real, z)
    for name, value in model.D.state_dict().items():  # weights and batch-norm statistics
        assert torch.equal(value, d_before[name]), name
    opt_after = model.optimizers()["D"].state_dict()["state"]
    assert all(torch.equal(opt_after[i][k], opt_before["state"][i][k]) for i in opt_after for k in opt_after[i])
    model.hparams["unroll_steps"] = 0
    now = _generator_gradient(model, real, z)
    assert torch.isfinite(ahead).all() and not torch.allclose(ahead, now, rtol=1e-3, atol=0)


def test_the_unrolled_steps_are_torch_adams_own():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    real, fake = torch.randn(8, 3), torch.randn(8, 3)
    optimizer = torch.optim.Adam(d.parameters(), lr=0.01, betas=(0.5, 0.999), eps=1e-8)

    def loss_of(module_or_params):
        call = (lambda x: torch.func.functional_call(d, module_or_params, (x,))) \
            if isinstance(module_or_params, dict) else module_or_params
        return losses.NON_SATURATING.discriminator(call(real).squeeze(1), call(fake).squeeze(1))

    for _ in range(2):  # Adam with state, as D's is when G steps
        optimizer.zero_grad()
        loss_of(d).backward()
        optimizer.step()
    params = {n: p.detach().requires_grad_(True) for n, p in d.named_parameters()}
    ahead = unrolled_parameters(loss_of, params, adam_moments(optimizer, dict(d.named_parameters())), 3,
                                0.01, (0.5, 0.999), 1e-8)
    for _ in range(3):
        optimizer.zero_grad()
        loss_of(d).backward()
        optimizer.step()
    for name, p in d.named_parameters():
        torch.testing.assert_close(ahead[name], p, rtol=1e-5, atol=1e-7, msg=name)


def test_the_generators_gradient_through_unrolled_steps_matches_finite_differences():
    """float64 on a tiny G and D: autograd's gradient of the unrolled loss (second order through
    k = 2 Adam steps) equals central differences in every G parameter."""
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    d = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    real, z = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    d_params = {n: p.detach() for n, p in d.named_parameters()}
    moments = {n: (1.0, 0.1 * torch.randn_like(p), 0.01 * torch.rand_like(p)) for n, p in d_params.items()}
    names = [n for n, _ in g.named_parameters()]

    def unrolled_loss(*g_values):
        fake = torch.func.functional_call(g, dict(zip(names, g_values)), (z,))
        logit = lambda p, x: torch.func.functional_call(d, p, (x,)).squeeze(1)  # noqa: E731
        start = {n: p.clone().requires_grad_(True) for n, p in d_params.items()}
        ahead = unrolled_parameters(lambda p: losses.NON_SATURATING.discriminator(logit(p, real), logit(p, fake)),
                                    start, moments, 2, 0.05, (0.5, 0.999), 1e-8)
        return losses.NON_SATURATING.generator(logit(ahead, fake))

    values = tuple(p.detach().clone().requires_grad_(True) for p in g.parameters())
    assert torch.autograd.gradcheck(unrolled_loss, values, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_a_discriminator_parameter_with_no_gradient_yet_gives_a_finite_generator_gradient():
    """Adam's √v at v = 0 (a fresh optimiser, a parameter the loss does not move) has an infinite
    slope: the unrolled update must not turn it into a NaN gradient for G."""
    w = torch.randn(3, requires_grad=True)
    params = {"w": torch.randn(3, requires_grad=True), "still": torch.zeros(3, requires_grad=True),
              "unused": torch.zeros(2, requires_grad=True)}
    moments = {n: (0.0, torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
    # "still": its gradient depends on w but is 0; "unused": not in the loss at all.
    ahead = unrolled_parameters(lambda p: (p["w"] * w).sum() ** 2 + 0.0 * (p["still"] * w).sum(), params, moments,
                                2, 0.1, (0.5, 0.999), 1e-8)
    sum(a.sum() for a in ahead.values()).backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


@pytest.mark.slow  # 50 steps, each through 5 unrolled D steps: about 2 min on 2 cores
def test_a_short_training_on_triangles_lowers_the_discriminators_loss(tmp_path):
    config = make_trial_config("unrolled_gan", "triangles", steps=50, eval_every=25, eval_samples=32,
                               extractor="tiny")
    assert config.hparams["unroll_steps"] == 5  # the author default
    result = run_trial(config, RunOptions(out=tmp_path / "unrolled_gan", device="cpu", progress=False))
    assert result.status == "complete"
    first, last = result.evaluations
    # Measured here: D's loss 1.27 (steps 1-25) -> 1.07 (26-50); log 4 = 1.39 is a D that cannot tell.
    assert last["losses"]["d_loss"] < first["losses"]["d_loss"] < math.log(4)
    assert math.isfinite(last["metrics"]["fid"]) and math.isfinite(last["losses"]["g_loss"])
