"""Numerics: the flags a trial trains under are its protocol's, they are what its records say, feature
extraction runs in true float32 whatever the caller set, and every caller gets its flags back."""

import json

import pytest
import torch

from bench.config import RunOptions, make_trial_config
from bench.defaults import preset_names
from bench.errors import BenchError
from bench.metrics import extract_features
from bench.metrics.feature_extractor_tiny import TinyExtractor
from bench.models import registered
from bench.models.gan_variants import NonSaturatingGAN
from bench.numerics import FEATURES, NUMERICS, Numerics, numerics_named
from bench.studies.protocol import RunProtocol, resolve_protocol
from bench.train import run_trial

SEEN: dict = {"train": [], "features": []}
TF32 = NUMERICS["tf32"]


class NumericsProbe(NonSaturatingGAN):
    """ns_gan that notes the flags in force at every training step."""

    def train_step(self, real, rng):
        if real.device.type != "meta":  # not the FLOP count (bench/flops.py), which runs a step on meta
            SEEN["train"].append(Numerics.current())
        return super().train_step(real, rng)


@pytest.fixture
def probe_features(monkeypatch):
    forward = TinyExtractor.forward

    def noting(self, x):
        SEEN["features"].append(Numerics.current())
        return forward(self, x)

    monkeypatch.setattr(TinyExtractor, "forward", noting)
    SEEN["train"].clear()
    SEEN["features"].clear()


@pytest.fixture
def numerics_probe():
    with registered("test_numerics_probe", NumericsProbe):
        yield "test_numerics_probe"


@pytest.fixture
def caller_flags():
    """The test's own flags, distinct from both NUMERICS entries, restored at the end."""
    mine = Numerics(tf32_matmul=True, tf32_conv=False, cudnn_benchmark=True, cudnn_deterministic=True)
    with mine.applied():
        yield mine


def test_a_callers_matmul_precision_comes_back_as_it_was():
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        with NUMERICS["float32"].applied():
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(saved)


def test_applied_sets_and_restores_even_on_error(caller_flags):
    with TF32.applied():
        assert Numerics.current() == TF32
    assert Numerics.current() == caller_flags
    with pytest.raises(RuntimeError):
        with NUMERICS["float32"].applied():
            raise RuntimeError
    assert Numerics.current() == caller_flags


def test_feature_extraction_runs_in_true_float32_and_restores_the_callers_flags(probe_features, caller_flags):
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    extract_features(TinyExtractor(), images, batch_size=2, progress=False)
    assert SEEN["features"] and all(seen == FEATURES for seen in SEEN["features"])
    assert FEATURES.tf32_conv is False and FEATURES.tf32_matmul is False
    assert Numerics.current() == caller_flags


@pytest.mark.parametrize("name", ["tf32", "float32"])
def test_a_trial_trains_under_its_numerics_and_records_them(name, blob_folder, tmp_path, probe_features, caller_flags,
                                                           numerics_probe):
    config = make_trial_config(numerics_probe, f"folder:{blob_folder}", steps=4, eval_every=2,
                               eval_samples=16, extractor="tiny", numerics=name)
    run_trial(config, RunOptions(out=tmp_path / "t", device="cpu", progress=False))
    records = [json.loads(line) for line in (tmp_path / "t" / "evals.jsonl").read_text().splitlines()]
    assert len(SEEN["train"]) == 4 and set(SEEN["train"]) == {NUMERICS[name]}
    for record in records:
        assert record["config"]["numerics"] == name
        assert Numerics(**record["numerics"]) == NUMERICS[name]  # what was in force, as read back
        assert Numerics(**record["protocol"]["metric_numerics"]) == FEATURES
    assert SEEN["features"] and set(SEEN["features"]) == {FEATURES}
    state = json.loads((tmp_path / "t" / "trial.json").read_text())
    assert Numerics(**state["numerics"]) == NUMERICS[name]
    assert Numerics.current() == caller_flags  # the caller's flags are back


def test_the_presets_train_in_true_float32_and_old_protocols_keep_their_names():
    for preset in preset_names():
        assert resolve_protocol("mnist", preset).numerics == "float32"
    assert resolve_protocol("mnist", "quick", numerics="tf32").numerics == "tf32"
    with pytest.raises(BenchError, match="unknown numerics 'bf16'"):
        resolve_protocol("mnist", "quick", numerics="bf16")
    with pytest.raises(BenchError, match="accepted: float32, tf32"):
        numerics_named("fp16")
    # A protocol stored before the field existed has the digest it had then (its studies' names).
    old = {"dataset": "triangles", "search": "wide", "steps": 6, "eval_every": 2, "eval_samples": 16,
           "extractor": "tiny", "match": "steps", "batch_size": 64, "nll_k": 16, "nll_n": 256}
    assert RunProtocol.from_dict(old).digest == "bb6bc96b"  # tests/fixtures/run-2026-11-triangles
    assert RunProtocol.from_dict({**old, "numerics": "tf32"}).digest != "bb6bc96b"


@pytest.mark.inception
def test_the_inception_network_runs_in_float32_under_a_tf32_caller(caller_flags, monkeypatch):
    from bench.metrics import get_extractor
    from bench.metrics.feature_extractor_inceptionv3 import InceptionV3

    ext = get_extractor("inception")
    seen = []
    block = getattr(ext.net, "Mixed_5b")
    original = block.forward
    monkeypatch.setattr(block, "forward", lambda x: (seen.append(Numerics.current()), original(x))[1])
    with TF32.applied():
        extract_features(ext, torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8), progress=False)
        assert Numerics.current() == TF32
    assert seen == [FEATURES] and InceptionV3.numerics == FEATURES
    assert Numerics.current() == caller_flags


def test_a_caller_on_pytorchs_newer_precision_api_is_served_and_restored():
    """Once `fp32_precision` is set, PyTorch refuses to read `allow_tf32`: numerics must cope."""
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("this PyTorch has no fp32_precision API")
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    try:
        matmul.fp32_precision, conv.fp32_precision = "tf32", "ieee"
        mine = Numerics.current()
        assert mine.tf32_matmul and not mine.tf32_conv
        with TF32.applied():
            assert Numerics.current() == TF32
        with NUMERICS["float32"].applied():
            assert Numerics.current() == NUMERICS["float32"]
        assert Numerics.current() == mine and (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "ieee")
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved
