"""A pack computes each member's step as the member's own `train_step` would (bench/packing).

In float64 the pack and the members trained alone agree to round-off (1e-9 relative after a few
steps), which only holds if they draw the same z and noise, follow the same G-step schedule,
update the same batch-norm statistics and take the same Adam steps. In float32 the two part
after a few steps however correct the pack is (a different summation order, amplified by
training), so these tests run in float64.
"""

import pytest
import torch

from bench.models import build_model, get_model_class, model_names, registered
from bench.models.gan_variants import NonSaturatingGAN
from bench.packing import packer_for, packs

SHAPE = (1, 8, 8)
BATCH = 16
# Members of each packed model: hyperparameters that differ between them (disc_iters among them).
MEMBERS = {
    "mm_gan": [dict(disc_iters=1), dict(disc_iters=5, lr=3e-4, beta1=0.5)],
    "ns_gan": [dict(disc_iters=1, lr=1e-3), dict(disc_iters=5, beta1=0.5), dict(disc_iters=2, lr=2e-4)],
    "lsgan": [dict(disc_iters=1), dict(disc_iters=5, lr=1e-3)],
    "wgan": [dict(disc_iters=1, clip=0.01), dict(disc_iters=5, clip=0.1)],
    "wgan_gp": [dict(disc_iters=1), dict(disc_iters=5, **{"lambda": 1.0})],
    "dragan": [dict(disc_iters=1), dict(disc_iters=2, **{"lambda": 1.0})],
    "began": [dict(gamma=0.5), dict(gamma=0.9, lambda_k=1e-2, disc_iters=1)],
    "vae": [dict(), dict(lr=1e-3)],
    "beta_vae": [dict(), dict(beta=2.0, lr=2e-4)],
    "vae_dl": [dict(), dict(lr=1e-3)],
}


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def make(name, i, hparams, arch="infogan"):
    torch.manual_seed(100 + i)
    return build_model(name, SHAPE, hparams, torch.device("cpu"), arch)


def data(steps, seed=0):
    return torch.rand(steps, BATCH, *SHAPE, generator=torch.Generator().manual_seed(seed))


def train_alone(model, batches, seed):
    rng = torch.Generator().manual_seed(seed)
    return [{k: v.item() for k, v in model.train_step(batch, rng).items()} for batch in batches]


def train_packed(models, batches_per_member, seeds, batched=True):
    for m in models:
        m.optimizers()
    pack = packer_for(type(models[0]))(models, batched=batched)
    rngs = [torch.Generator().manual_seed(s) for s in seeds]
    logs = [[] for _ in models]
    for step in range(len(batches_per_member[0])):
        real = torch.stack([b[step] for b in batches_per_member])
        for k, losses in enumerate(pack.train_step(real, rngs)):
            logs[k].append({n: v.item() for n, v in losses.items()})
    pack.unpack()
    return logs


def assert_same_state(a, b, rel=1e-9, atol=1e-8):
    """Weights, buffers, optimiser moments and step counts of two models agree. `atol`: the biases
    just before a batch norm have a gradient that is round-off only (the norm cancels them), so they
    wander near 0 by ~1e-10 differently in any two computations."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if torch.is_tensor(sa[key]):
            assert torch.allclose(sa[key].double(), sb[key].double(), rtol=rel, atol=atol), key
    assert (a.steps, a.g_steps) == (b.steps, b.g_steps)
    for name, opt in a.optimizers().items():
        other = b.optimizers()[name]
        params_a, params_b = opt.param_groups[0]["params"], other.param_groups[0]["params"]
        for pa, pb in zip(params_a, params_b):
            state_a, state_b = opt.state[pa], other.state[pb]
            assert float(state_a["step"]) == float(state_b["step"])
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(state_a[moment], state_b[moment], rtol=rel, atol=atol)


def assert_same_logs(alone, packed, rel=1e-9):
    assert [sorted(s) for s in alone] == [sorted(s) for s in packed]  # g_loss exactly on the G steps
    for a, p in zip(alone, packed):
        for name in a:
            assert p[name] == pytest.approx(a[name], rel=rel, abs=1e-12), name


@pytest.mark.parametrize("batched", [True, False], ids=["vmap", "per-member"])
@pytest.mark.parametrize("name, arch", [(n, "infogan") for n in sorted(MEMBERS)]
                         + [(n, "dcgan") for n in ("ns_gan", "wgan_gp", "vae")])  # SNDCGAN's do not pack
def test_a_pack_trains_each_member_as_alone(name, arch, batched, float64):
    """Both ways a Stack runs its networks: vmap (an accelerator's default) and per member (a CPU's)."""
    steps, members = 7, MEMBERS[name]
    batches = [data(steps, seed=k) for k in range(len(members))]
    alone = [make(name, k, h, arch) for k, h in enumerate(members)]
    alone_logs = [train_alone(m, batches[k], seed=7 + k) for k, m in enumerate(alone)]
    packed = [make(name, k, h, arch) for k, h in enumerate(members)]
    packed_logs = train_packed(packed, batches, seeds=[7 + k for k in range(len(members))], batched=batched)
    for k in range(len(members)):
        assert_same_logs(alone_logs[k], packed_logs[k])
        assert_same_state(alone[k], packed[k])


def test_every_built_in_packs_but_aae_the_autoregressive_ones_realnvp_unrolled_gan_draw_and_ddpm():
    # unrolled_gan's G loss differentiates through D's Adam steps: no packed form yet; draw and ddpm
    # bring networks of their own that no packer batches.
    assert {n for n in model_names() if not packs(get_model_class(n))} == {"aae", "pixelcnn", "pixelrnn", "realnvp",
                                                                           "unrolled_gan", "draw", "ddpm"}
    assert set(MEMBERS) == {n for n in model_names() if packs(get_model_class(n))}


class OwnStep(NonSaturatingGAN):
    def train_step(self, real, rng):
        return super().train_step(real, rng)


class OwnLoss(NonSaturatingGAN):
    def generator_loss(self, fake):
        return super().generator_loss(fake) * 2


class OnlyRanges(NonSaturatingGAN):
    """Changes nothing the step does: it packs like ns_gan."""


def test_a_plug_in_that_overrides_a_step_hook_trains_alone():
    assert not packs(OwnStep) and not packs(OwnLoss)
    assert packs(OnlyRanges)
    with registered("only_ranges_gan", OnlyRanges):
        assert packer_for(get_model_class("only_ranges_gan")) is packer_for(NonSaturatingGAN)


def test_pack_and_unpack_change_nothing():
    models = [make("wgan_gp", k, h) for k, h in enumerate(MEMBERS["wgan_gp"])]
    rng = torch.Generator().manual_seed(0)
    for m in models:  # optimiser state and batch-norm statistics worth keeping
        for batch in data(3):
            m.train_step(batch, rng)
    before = [{k: v.clone() for k, v in m.state_dict().items() if torch.is_tensor(v)} for m in models]
    moments = [{id(p): s["exp_avg"].clone() for p, s in m.optimizers()["D"].state.items()} for m in models]
    packer_for(type(models[0]))(models).unpack()
    for m, saved, moment in zip(models, before, moments):
        for key, value in m.state_dict().items():
            if torch.is_tensor(value):
                assert torch.equal(value, saved[key]), key
        for p, s in m.optimizers()["D"].state.items():
            assert torch.equal(s["exp_avg"], moment[id(p)])


def test_members_must_share_class_and_step():
    a, b = make("ns_gan", 0, {}), make("ns_gan", 1, {})
    b.steps = 3
    with pytest.raises(ValueError, match="one step"):
        packer_for(NonSaturatingGAN)([a, b])
    with pytest.raises(ValueError, match="one model class"):
        packer_for(NonSaturatingGAN)([a, make("lsgan", 1, {})])


def test_a_member_that_diverges_leaves_the_others_as_they_were(float64):
    """A NaN batch makes member 1's losses non-finite; members 0 and 2 train as without it."""
    name, members, steps = "ns_gan", MEMBERS["ns_gan"], 5
    batches = [data(steps, seed=k) for k in range(3)]
    poisoned = [b.clone() for b in batches]
    poisoned[1][2] = float("nan")
    models = [make(name, k, h) for k, h in enumerate(members)]
    logs = train_packed(models, poisoned, seeds=[7, 8, 9])
    assert all(v == v for s in logs[1][:2] for v in s.values())
    assert logs[1][2]["d_loss"] != logs[1][2]["d_loss"]  # NaN from the step of the bad batch
    for k in (0, 2):
        alone = make(name, k, members[k])
        assert_same_logs(train_alone(alone, batches[k], seed=7 + k), logs[k])
        assert_same_state(alone, models[k])
