"""Training-step semantics shared by the GANs (PROTOCOL §1) and the model-specific hooks."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bench.models import build_model
from bench.models.began import reconstruction_error
from bench.models.vae import bernoulli_nll

SHAPE = (1, 8, 8)  # the fixed architecture at its smallest: fast on a CPU


def batch(n=16, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def run(model, steps, seed=0):
    rng = torch.Generator().manual_seed(seed)
    return [model.train_step(batch(seed=i), rng) for i in range(steps)]


@pytest.mark.parametrize("disc_iters, expected_g_steps", [(1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), (5, [0, 1, 6])])
def test_generator_update_schedule(disc_iters, expected_g_steps):
    """compare_gan updates G on step 0 and when (step - 1) % disc_iters == 0."""
    torch.manual_seed(0)
    model = build_model("ns_gan", SHAPE, {"disc_iters": disc_iters})
    logs = run(model, 10)
    assert [i for i, log in enumerate(logs) if "g_loss" in log] == expected_g_steps
    assert model.steps == 10 and model.g_steps == len(expected_g_steps)


def test_discriminator_sees_real_and_fake_in_separate_calls():
    torch.manual_seed(0)
    model = build_model("ns_gan", SHAPE)
    sizes = []
    model.D.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape[0]))
    run(model, 1)
    assert sizes == [16, 16, 16]  # D(real), D(fake) for the D step, D(fake) for the G step


GANS = ("mm_gan", "ns_gan", "lsgan", "wgan", "wgan_gp", "dragan", "began")


@pytest.mark.parametrize("name", GANS)
def test_generator_step_does_not_touch_discriminator_weights(name):
    """The real step, not G's optimiser alone: what D holds when its own update (and WGAN's
    clipping) is done is exactly what it holds after the G step; G does change."""
    torch.manual_seed(0)
    model = build_model(name, SHAPE, {"disc_iters": 1, "d_batch_norm": True})
    run(model, 1)  # D's Adam has state from here on, so a stray D step would move it
    after_d = {}
    own_after_d = model.after_discriminator_step

    def snapshot():
        own_after_d()
        after_d["D"] = copy.deepcopy(model.D)
        after_d["grads"] = {n: p.grad.clone() for n, p in model.D.named_parameters() if p.grad is not None}
        after_d["opt"] = copy.deepcopy(model.optimizers()["D"].state_dict())

    fakes = []
    own_g_loss = model.generator_loss
    model.generator_loss = lambda fake: (fakes.append(fake.detach().clone()), own_g_loss(fake))[1]
    model.after_discriminator_step = snapshot
    g_before = copy.deepcopy(model.G.state_dict())
    log = model.train_step(batch(seed=1), torch.Generator().manual_seed(1))
    assert "g_loss" in log and len(fakes) == 1 and after_d  # this step did update D, then G

    params = dict(model.D.named_parameters())
    assert params and all(torch.equal(p, dict(after_d["D"].named_parameters())[n]) for n, p in params.items())
    assert {n: p.grad for n, p in params.items() if p.grad is not None}.keys() == after_d["grads"].keys()
    assert all(torch.equal(params[n].grad, g) for n, g in after_d["grads"].items())  # no D gradients from G's loss
    opt_after, opt_d = model.optimizers()["D"].state_dict()["state"], after_d["opt"]["state"]
    assert opt_after.keys() == opt_d.keys() and all(
        torch.equal(opt_after[i][k], opt_d[i][k]) for i in opt_d for k in opt_d[i])
    changed = [k for k, v in model.G.state_dict().items() if v.is_floating_point() and not torch.equal(v, g_before[k])]
    assert len(changed) > len(g_before) // 2, changed

    # D's batch-norm buffers: the G step's forward pass through D runs in training mode, so it moves
    # the running statistics exactly as one more forward pass on the G step's fake batch does (D's
    # running statistics are never used: D is not evaluated). BEGAN's after_step passes D again.
    buffers = {k: v for k, v in model.D.state_dict().items() if "running" in k or "num_batches" in k}
    if name != "began":
        assert buffers  # d_batch_norm=True
        expected = after_d["D"]
        with torch.no_grad():
            expected(fakes[0])
        assert all(torch.equal(v, expected.state_dict()[k]) for k, v in buffers.items())


def test_wgan_clips_every_discriminator_parameter_including_batch_norm():
    torch.manual_seed(0)
    c = 0.01
    model = build_model("wgan", SHAPE, {"clip": c, "d_batch_norm": True})
    run(model, 1)
    params = dict(model.D.named_parameters())
    assert any("net.3" in name for name in params)  # the batch-norm layer after conv 2 exists
    for name, p in params.items():
        assert p.abs().max() <= c + 1e-9, name
    bn_scales = [m.weight for m in model.D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bn_scales and all(torch.allclose(w, torch.full_like(w, c)) for w in bn_scales)  # were 1, clipped to c
    assert max(p.abs().max() for p in model.G.parameters()) > c  # G is never clipped


def test_wgan_gp_draws_fresh_noise_for_the_generator_step():
    torch.manual_seed(0)
    seen = {}
    for name in ("wgan", "wgan_gp"):
        model = build_model(name, SHAPE, {"disc_iters": 1})
        inputs = []
        model.G.register_forward_hook(lambda module, args, out: inputs.append(args[0].clone()))
        run(model, 1)
        seen[name] = torch.equal(inputs[0], inputs[1])
    assert seen == {"wgan": True, "wgan_gp": False}


@pytest.mark.parametrize("name", ["wgan_gp", "dragan"])
def test_penalty_models_report_their_penalty_and_weight_it(name):
    """d_loss = adversarial loss + λ·penalty with λ = hparams["lambda"] (10 by default): the same
    first step with λ = 0 gives the bare loss and the same penalty."""
    logs = {}
    for lam in (0.0, None, 2.5):
        torch.manual_seed(0)
        model = build_model(name, SHAPE, None if lam is None else {"lambda": lam})
        logs[model.hparams["lambda"]] = run(model, 1)[0]
    assert sorted(logs) == [0.0, 2.5, 10.0]
    penalty = logs[0.0]["penalty"]
    assert torch.isfinite(penalty) and penalty > 0
    for lam, log in logs.items():
        assert torch.equal(log["penalty"], penalty)  # the same networks, batch and draws
        assert log["d_loss"].item() == pytest.approx(logs[0.0]["d_loss"].item() + lam * penalty.item(), rel=1e-5)


def test_began_k_update_is_unclipped_and_uses_updated_networks():
    torch.manual_seed(0)
    model = build_model("began", SHAPE, {"gamma": 1.0, "lambda_k": 1.0})
    real, z = batch(), model.sample_noise(16, torch.Generator().manual_seed(3))
    model.k.fill_(0.9)
    with torch.no_grad():
        expected = 0.9 + 1.0 * (1.0 * reconstruction_error(model.D, real) - reconstruction_error(model.D, model.G(z)))
    model.after_step(real, z)
    assert model.k.item() == pytest.approx(expected.item(), rel=1e-6)
    # Push k beyond [0, 1]: it is never clipped.
    model.hparams["lambda_k"] = 1e3
    for _ in range(3):
        model.after_step(real, z)
    assert model.k.item() > 1 or model.k.item() < 0


def test_began_k_starts_at_zero_and_moves_after_each_step():
    torch.manual_seed(0)
    model = build_model("began", SHAPE)
    assert model.k.item() == 0
    logs = run(model, 3)
    ks = [log["k"].item() for log in logs]
    assert len(set(ks)) == 3 and ks[-1] == model.k.item()


def test_vae_loss_is_reconstruction_plus_kl():
    torch.manual_seed(0)
    model = build_model("vae", SHAPE)
    log = run(model, 1)[0]
    assert log["loss"].item() == pytest.approx(log["recon"].item() + log["kl"].item(), rel=1e-6)
    assert log["kl"] >= 0 and log["recon"] > 0


def _v1_vae_loss(x_nchw, out_nchw, mu, sigma) -> float:
    """compare_gan v1 `gans/VAE.py`, in numpy: NHWC images, the Bernoulli term summed over axes
    [1, 2] (height, width) and averaged over batch and channels, plus the batch mean of the KL."""
    x, out = x_nchw.transpose(0, 2, 3, 1), np.clip(out_nchw.transpose(0, 2, 3, 1), 1e-8, 1 - 1e-8)
    marginal_likelihood = np.sum(x * np.log(out) + (1 - x) * np.log(1 - out), axis=(1, 2))
    kl = 0.5 * np.sum(mu ** 2 + sigma ** 2 - np.log(1e-8 + sigma ** 2) - 1, axis=1)
    return float(-np.mean(marginal_likelihood) + np.mean(kl))


@pytest.mark.parametrize("channels", [3, 1])
def test_vae_trains_on_v1s_loss(channels):
    """On RGB the reconstruction term is averaged over channels, as v1 did (the KL is 3x stronger
    than in the ELBO); on one channel that is the ELBO itself, as before."""
    torch.manual_seed(0)
    model = build_model("vae", (channels, 8, 8))
    x = torch.rand(16, channels, 8, 8, generator=torch.Generator().manual_seed(1))
    terms = model.negative_elbo(x, torch.Generator().manual_seed(2))
    # The same forward pass by hand: the encoder in training mode on the same batch, the same eps.
    mu, sigma = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
    out = model.decoder(mu + sigma * eps)
    as_np = lambda t: t.detach().double().numpy()
    expected = _v1_vae_loss(as_np(x), as_np(out), as_np(mu), as_np(sigma))
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)
    elbo_recon = bernoulli_nll(x, out).mean().item()  # Σ over (C, H, W): the true −log p(x|z)
    assert terms["recon"].item() == pytest.approx(elbo_recon / channels, rel=1e-6)


def test_vae_dl_trains_on_the_bound_it_reports():
    torch.manual_seed(0)
    model = build_model("vae_dl", (3, 8, 8))
    x = torch.randint(0, 256, (8, 3, 8, 8), generator=torch.Generator().manual_seed(1)).float() / 255
    terms = model.negative_elbo(x, torch.Generator().manual_seed(2))
    mu, sigma = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
    recon = model.reconstruction_nll(x, model.decoder(mu + sigma * eps)).mean().item()
    assert terms["recon"].item() == pytest.approx(recon, rel=1e-6)


def test_checkpoint_round_trip_restores_optimisers_and_counters():
    torch.manual_seed(0)
    model = build_model("began", SHAPE)
    run(model, 3)
    state = copy.deepcopy(model.state_dict())  # Adam.load_state_dict shares tensors; a file would not
    torch.manual_seed(1)
    clone = build_model("began", SHAPE)
    clone.load_state_dict(state)
    assert clone.steps == 3 and clone.g_steps == model.g_steps and clone.k.item() == model.k.item()
    a, b = run(model, 2, seed=5), run(clone, 2, seed=5)
    assert all(torch.equal(x["d_loss"], y["d_loss"]) for x, y in zip(a, b))
