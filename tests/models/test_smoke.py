"""Every registered model: build, a few steps on the CPU, sample; shapes and finite losses."""

import pytest
import torch

from bench.models import build_model, model_names

STUDY_MODELS = ["mm_gan", "ns_gan", "lsgan", "wgan", "wgan_gp", "dragan", "began", "vae"]


def test_the_study_models_are_registered_in_table_order():
    assert model_names()[: len(STUDY_MODELS)] == STUDY_MODELS


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
def test_smoke(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, sample_steps=4)  # DDPM: 4 of its 1000 denoising steps
    rng = torch.Generator().manual_seed(0)
    for step in range(3):
        logs = model.train_step(torch.rand(8, *shape), rng)
        assert logs and all(v.dim() == 0 and torch.isfinite(v) and not v.requires_grad for v in logs.values())
    z = model.sample_noise(5, torch.Generator().manual_seed(1))
    samples = model.generate(z)
    assert samples.shape == (5, *shape)
    assert torch.isfinite(samples).all() and samples.min() >= 0 and samples.max() <= 1
    assert model.training  # generate() restores the training mode


@pytest.mark.parametrize("name", model_names())
def test_one_step_at_the_study_resolution(name):
    torch.manual_seed(0)
    model = build_model(name, (1, 28, 28))
    logs = model.train_step(torch.rand(64, 1, 28, 28), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in logs.values())


def test_noise_priors():
    gan, vae = build_model("ns_gan", (1, 8, 8)), build_model("vae", (1, 8, 8))
    z = gan.sample_noise(10000, torch.Generator().manual_seed(0))
    assert z.shape == (10000, 64) and z.min() >= -1 and z.max() <= 1 and abs(z.mean()) < 0.01
    assert vae.sample_noise(10000, torch.Generator().manual_seed(0)).std().item() == pytest.approx(1, abs=0.01)
