"""Search spaces: the author defaults of PROTOCOL §1 and the ranges of §4."""

import numpy as np
import pytest

from bench.errors import BenchError
from bench.models import get_model_class
from bench.models.search_space import Choice, Fixed, LogUniform, Uniform

AUTHOR_DEFAULTS = {
    "mm_gan": dict(lr=5e-5, beta1=0.0, disc_iters=1, d_batch_norm=True),
    "ns_gan": dict(lr=5e-5, beta1=0.0, disc_iters=1, d_batch_norm=True),
    "lsgan": dict(lr=2e-4, beta1=0.5, disc_iters=1, d_batch_norm=True),
    "wgan": dict(lr=5e-5, beta1=0.5, disc_iters=5, d_batch_norm=True, clip=0.01),
    "wgan_gp": {"lr": 1e-4, "beta1": 0.5, "disc_iters": 5, "d_batch_norm": False, "lambda": 10.0},
    "dragan": {"lr": 1e-4, "beta1": 0.5, "disc_iters": 1, "d_batch_norm": True, "lambda": 10.0},
    "began": dict(lr=1e-4, beta1=0.5, disc_iters=5, d_batch_norm=False, gamma=0.75, lambda_k=1e-3),
    "vae": dict(lr=5e-5, beta1=0.5, encoder_batch_norm=True),
}


@pytest.mark.parametrize("name", AUTHOR_DEFAULTS)
def test_author_defaults(name):
    defaults = dict(get_model_class(name).search_space.defaults)
    assert defaults == AUTHOR_DEFAULTS[name]
    assert {k: type(v) for k, v in defaults.items()} == {k: type(v) for k, v in AUTHOR_DEFAULTS[name].items()}


def test_wide_ranges():
    space = get_model_class("wgan").search_space
    assert space.wide["lr"] == LogUniform(-5, -2)
    assert space.wide["beta1"] == Uniform(0, 1)
    assert space.wide["disc_iters"] == Choice((1, 5))
    assert space.wide["d_batch_norm"] == Choice((True, False))
    assert space.wide["clip"] == LogUniform(-3, 0)
    assert get_model_class("wgan_gp").search_space.wide["lambda"] == LogUniform(-1, 2)
    began = get_model_class("began").search_space.wide
    assert began["lambda_k"] == LogUniform(-4, -2) and began["gamma"] == Uniform(0, 1)


def test_narrow_ranges():
    ns = get_model_class("ns_gan").search_space.narrow
    assert ns["lr"] == LogUniform(-4, -3) and ns["beta1"] == Fixed(0.5) and ns["disc_iters"] == Fixed(1)
    assert get_model_class("wgan").search_space.narrow["clip"] == LogUniform(-2, 0)
    for name in ("wgan_gp", "dragan"):
        narrow = get_model_class(name).search_space.narrow
        assert narrow["lambda"] == LogUniform(-1, 1) and narrow["d_batch_norm"] == Fixed(False)
    began = get_model_class("began").search_space.narrow
    assert began["lambda_k"] == Fixed(1e-3) and began["gamma"] == Uniform(0.6, 0.9)


def test_samples_stay_in_range_and_keep_types():
    space = get_model_class("began").search_space
    rng = np.random.default_rng(0)
    for _ in range(200):
        config = space.sample("wide", rng)
        assert 1e-5 <= config["lr"] <= 1e-2 and 0 <= config["beta1"] <= 1
        assert config["disc_iters"] in (1, 5) and type(config["disc_iters"]) is int
        assert type(config["d_batch_norm"]) is bool
        assert 1e-4 <= config["lambda_k"] <= 1e-2
    draws = [space.sample("wide", rng)["lr"] for _ in range(2000)]
    assert np.mean(np.log10(draws)) == pytest.approx(-3.5, abs=0.1)  # log-uniform, not uniform


def test_same_seed_same_configurations():
    space = get_model_class("wgan").search_space
    a = [space.sample("wide", np.random.default_rng(7)) for _ in range(3)]
    b = [space.sample("wide", np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_resolve_parses_and_checks_overrides():
    space = get_model_class("wgan").search_space
    config = space.resolve({"lr": "1e-3", "disc_iters": "1", "d_batch_norm": "off", "clip": 0.1})
    assert config == dict(lr=1e-3, beta1=0.5, disc_iters=1, d_batch_norm=False, clip=0.1)
    with pytest.raises(BenchError, match="unknown hyperparameter 'lambda'.*accepted: beta1, clip"):
        space.resolve({"lambda": "1"})
    with pytest.raises(BenchError, match="expected an integer"):
        space.resolve({"disc_iters": "2.5"})
    with pytest.raises(BenchError, match="expected on/off"):
        space.resolve({"d_batch_norm": "maybe"})
    with pytest.raises(BenchError, match="finite number"):
        space.resolve({"lr": "nan"})


def test_the_vae_searches_its_encoder_batch_norm_as_v1_does():
    """compare_gan v1 `params.py` (VAEHyperParams): the switch in both ranges, on in the wide
    defaults, off in the narrow ones; slot 0 of each search is that range's defaults."""
    from bench.studies.search import configuration, distributions

    for name in ("vae", "beta_vae", "vae_dl", "aae"):
        space = get_model_class(name).search_space
        assert space.wide["encoder_batch_norm"] == Choice((True, False)) == space.narrow["encoder_batch_norm"]
        assert configuration(space, "wide", name, 0)["encoder_batch_norm"] is True
        assert configuration(space, "narrow", name, 0)["encoder_batch_norm"] is False
        assert distributions(space, "narrow")["encoder_batch_norm"].choices == (True, False)
    draws = {configuration(get_model_class("vae").search_space, "wide", "vae", slot)["encoder_batch_norm"]
             for slot in range(1, 30)}
    assert draws == {True, False}
    from bench.models import build_model

    assert build_model("vae", (1, 8, 8), {"encoder_batch_norm": False}).encoder.net[3].__class__.__name__ == "Identity"
    assert build_model("vae", (1, 8, 8)).encoder.net[3].__class__.__name__ == "BatchNorm2d"
    with pytest.raises(ValueError, match="narrow defaults"):
        from bench.models.search_space import SearchSpace

        SearchSpace(defaults={"lr": 1.0}, wide={"lr": Fixed(1.0)}, narrow={"lr": Fixed(1.0)}, narrow_defaults={"x": 1})
