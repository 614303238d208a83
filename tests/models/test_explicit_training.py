"""Issue 6's acceptance on the CPU: a short training of each bits/dim model on triangles, scored
as every trial is (NLL on the test split and FID of its samples), ends clearly below 8 bits/dim."""

import math

import pytest
import torch

from bench.config import RunOptions, make_trial_config
from bench.data import get_dataset
from bench.model_metrics.metric_nll import model_nll
from bench.models import build_model
from bench.train import run_trial

STEPS, NLL_N = 50, 128
# Measured here at 50 steps with the author defaults: pixelcnn 3.2, realnvp 4.0, vae_dl 2.4, pixelrnn
# 5.7 bits/dim (its two Row LSTM layers learn more slowly at PixelCNN's learning rate).
CLEARLY_BELOW_8 = {"pixelcnn": 5.0, "realnvp": 5.0, "vae_dl": 5.0, "pixelrnn": 6.5}


# CI's 30 minutes: pixelcnn and realnvp (over a minute each) are slow tests; README command 1's
# 30-step run is checked for their bits/dim below 8 (tests/reports/test_report.py).
SLOW = pytest.mark.slow


@pytest.mark.parametrize("model", [pytest.param("pixelcnn", marks=SLOW), pytest.param("realnvp", marks=SLOW),
                                   "vae_dl", pytest.param("pixelrnn", marks=SLOW)])
def test_a_short_training_on_triangles_ends_clearly_below_8_bits_per_dim(model, tmp_path):
    config = make_trial_config(model, "triangles", steps=STEPS, eval_every=STEPS, eval_samples=32,
                               extractor="tiny", nll_k=8, nll_n=NLL_N)
    result = run_trial(config, RunOptions(out=tmp_path / model, device="cpu", progress=False))
    assert result.status == "complete"
    (record,) = result.evaluations
    metrics, protocol = record["metrics"], record["protocol"]["nll"]
    assert protocol["n"] == NLL_N and protocol["unit"] == "bits per dimension"
    assert metrics["nll_bpd"] < CLEARLY_BELOW_8[model] and metrics["nll_bpd_se"] < 0.1
    assert math.isfinite(metrics["fid"]) and metrics["fid"] >= 0

    # ... and training is what got it there: the untrained network scores worse on the same images.
    torch.manual_seed(config.seed)
    untrained = build_model(model, (1, 28, 28), config.hparams)
    test_images = get_dataset("triangles").load("reference").head(NLL_N).images
    before = model_nll(untrained, test_images, k=8)[0]["nll_bpd"]
    assert metrics["nll_bpd"] < before, (before, metrics["nll_bpd"])
