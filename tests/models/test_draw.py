"""DRAW: its attention windows, its bound, and a short training on triangles (issue 16)."""

import math

import pytest
import torch

from bench.config import RunOptions, make_trial_config
from bench.data import get_dataset
from bench.model_metrics.metric_nll import model_nll
from bench.models import build_model
from bench.models.draw import filterbanks
from bench.train import run_trial


def window(gx=0.0, gy=0.0, log_var=0.0, log_delta=0.0, log_gamma=0.0):
    return torch.tensor([[gx, gy, log_var, log_delta, log_gamma]])


def test_each_filter_is_a_normalised_gaussian_centred_on_the_grid():
    fy, fx, gamma = filterbanks(window(log_var=math.log(0.5)), 3, 9, 9)
    assert fy.shape == (1, 3, 9) and fx.shape == (1, 3, 9) and gamma.item() == pytest.approx(1)
    assert torch.allclose(fx.sum(-1), torch.ones(1, 3))
    # g̃ = 0 centres the grid on the image's middle pixel (coordinate 5 of 1..9), stride (9 − 1)/(3 − 1) = 4.
    assert fx[0].argmax(-1).tolist() == [0, 4, 8]


def test_reading_a_window_placed_on_a_pixel_reads_that_pixel():
    model = build_model("draw", (1, 9, 9))
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 2, 6] = 1.0  # row 3, column 7 in the filterbank's 1-based coordinates
    with torch.no_grad():
        head = model.encoder["read_window"]
        head.weight.zero_()
        # g_X = (9 + 1)/2 (g̃ + 1) = 7 and g_Y = 3; a narrow window (σ² = e^-6) with δ̃ small.
        head.bias.copy_(torch.tensor([0.4, -0.4, -6.0, -6.0, 0.0]))
        glimpse = model.read(x, torch.zeros_like(x), torch.zeros(1, model.size.hidden))
    n = model.size.read
    assert glimpse.shape == (1, 2 * n * n)
    assert glimpse[0, : n * n].min() > 0.9  # every filter of the tiny grid sits on the one lit pixel


def test_the_bound_is_over_whole_sequences_and_tightens_with_k():
    torch.manual_seed(0)
    model = build_model("draw", (1, 8, 8))
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    with torch.no_grad():
        lw = model.log_weights(x, 64, torch.Generator().manual_seed(0))
    assert lw.shape == (64, 6) and torch.isfinite(lw).all()
    elbo = lw.mean(0)
    iwae = torch.logsumexp(lw, 0) - math.log(64)
    assert (iwae >= elbo).all()


@pytest.mark.slow  # 50 steps of 64 glimpses: about 100 s on 2 cores
def test_a_short_training_on_triangles_lowers_its_loss_and_its_nll(tmp_path):
    config = make_trial_config("draw", "triangles", steps=50, eval_every=25, eval_samples=32,
                               extractor="tiny", nll_k=8, nll_n=128)
    result = run_trial(config, RunOptions(out=tmp_path / "draw", device="cpu", progress=False))
    assert result.status == "complete"
    first, last = result.evaluations
    # Measured here: loss 884 (steps 1-25) -> 252 (26-50) nats, NLL 446 -> 154 nats, FID 14 -> 2.8 (tiny extractor).
    assert last["losses"]["loss"] < 0.8 * first["losses"]["loss"]
    assert math.isfinite(last["metrics"]["fid"])
    assert last["protocol"]["nll"]["k"] == 8
    torch.manual_seed(config.seed)
    untrained = build_model("draw", (1, 28, 28), config.hparams)
    test_images = get_dataset("triangles").load("reference").head(128).images
    before = model_nll(untrained, test_images, k=8)[0]["nll_nats_binarized"]
    assert last["metrics"]["nll_nats_binarized"] < before
