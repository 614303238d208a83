"""`--arch`: the DCGAN and SNDCGAN networks, which models are built on them, and the protocol
field that records them (old records read as the study's infogan)."""

import json

import pytest
import torch
from torch import nn

from bench.config import TrialConfig, make_trial_config
from bench.defaults import CHOICES
from bench.errors import BenchError
from bench.models import build_model, get_model_class, model_names
from bench.models.arch_dcgan import levels
from bench.models.architectures import architecture_names, get_architecture, supported_architectures
from bench.packing.packed_trials import pack_key
from bench.records.protocol import RunProtocol
from bench.studies.run import parse_models
from tests.test_cli import assert_one_line_error, run_cli

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]


def test_the_three_architectures_are_registered_with_the_study_s_first():
    assert architecture_names() == ["infogan", "dcgan", "sndcgan"] == list(CHOICES["arch"])  # --help needs no torch
    assert [get_architecture(a).packs for a in architecture_names()] == [True, True, False]


@pytest.mark.parametrize("shape, expected", [((1, 28, 28), 2), ((3, 32, 32), 3), ((3, 64, 64), 4), ((1, 8, 8), 1),
                                             ((3, 48, 48), 3), ((3, 28, 32), 2)])
def test_the_pyramid_has_as_many_stride_2_stages_as_the_image_allows(shape, expected):
    assert levels(*shape[1:]) == expected


@pytest.mark.parametrize("arch", ["dcgan", "sndcgan"])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_networks_map_z_to_images_in_0_1_and_images_to_logits(arch, shape):
    torch.manual_seed(0)
    networks = get_architecture(arch)
    g, d = networks.generator(shape, 64), networks.discriminator(shape, batch_norm=True)
    x = g(torch.rand(3, 64) * 2 - 1)
    assert x.shape == (3, *shape) and 0 <= x.min() and x.max() <= 1
    assert d(x).shape == (3, 1)
    two = networks.generator(shape, 64, decoder=True, out_channels=2 * shape[0])(torch.randn(3, 64))
    assert two.shape == (3, 2 * shape[0], *shape[1:])  # vae_dl's means and log-scales
    assert networks.discriminator(shape, batch_norm=False, out_dim=128)(x).shape == (3, 128)  # a VAE's encoder


def test_dcgan_is_the_published_64x64_pyramid():
    d = get_architecture("dcgan").discriminator((3, 64, 64), batch_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [128, 256, 512]  # none after the first convolution
    g = get_architecture("dcgan").generator((3, 64, 64), 64)
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [256, 128, 64, 3]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in
                   get_architecture("dcgan").discriminator((3, 64, 64), batch_norm=False).modules())


def test_sndcgan_is_miyato_s_standard_cnn_with_every_d_weight_spectrally_normalised():
    torch.manual_seed(0)
    d = get_architecture("sndcgan").discriminator((3, 32, 32), batch_norm=False)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (64, 3, 1), (64, 4, 2), (128, 3, 1), (128, 4, 2), (256, 3, 1), (256, 4, 2), (512, 3, 1)]
    g = get_architecture("sndcgan").generator((3, 32, 32), 64)
    assert [(m.out_channels, m.kernel_size[0]) for m in g.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))] \
        == [(256, 4), (128, 4), (64, 4), (3, 3)]
    assert g.net[0].out_features == 512 * 4 * 4
    layers = convs + [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    for _ in range(30):  # power iterations, one per forward pass in training mode
        d(torch.rand(2, 3, 32, 32))
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("arch", ["dcgan", "sndcgan"])
def test_every_model_that_takes_an_architecture_trains_on_it(name, arch):
    archs = supported_architectures(get_model_class(name))
    if archs is not None and arch not in archs:
        with pytest.raises(BenchError, match=f"{name} cannot be built on the {arch} architecture; it can on: "):
            build_model(name, (1, 8, 8), None, "cpu", arch)
        return
    torch.manual_seed(0)
    model = build_model(name, (1, 8, 8), None, "cpu", arch, sample_steps=4)  # DDPM: 4 of its 1000 steps
    rng = torch.Generator().manual_seed(0)
    for _ in range(2):
        logs = model.train_step(torch.rand(8, 1, 8, 8), rng)
        assert all(torch.isfinite(v) for v in logs.values())
    assert model.generate(model.sample_noise(3, torch.Generator().manual_seed(1))).shape == (3, 1, 8, 8)
    if archs is not None:  # its bodies are the architecture's, not the study's
        plain = build_model(name, (1, 8, 8), None, "cpu")
        assert model.parameter_counts() != plain.parameter_counts()


def test_which_models_take_which_architecture():
    assert supported_architectures(get_model_class("ns_gan")) == ("infogan", "dcgan", "sndcgan")
    assert supported_architectures(get_model_class("began")) == ("infogan",)
    assert supported_architectures(get_model_class("vae")) == ("infogan", "dcgan")
    assert supported_architectures(get_model_class("pixelcnn")) is None  # its own networks

    class OldPlugin(get_model_class("ns_gan")):  # a constructor written before `arch` existed
        def __init__(self, image_shape, hparams=None):
            super().__init__(image_shape, hparams)

    assert supported_architectures(OldPlugin) == ("infogan",)


def test_the_architecture_is_a_protocol_field_and_old_records_are_infogan():
    old = {k: v for k, v in make_trial_config("ns_gan", "triangles", steps=4, eval_every=2, eval_samples=16,
                                              extractor="tiny").to_dict().items() if k != "arch"}
    assert TrialConfig.from_dict(old).arch == "infogan"
    dcgan = make_trial_config("ns_gan", "triangles", steps=4, eval_every=2, eval_samples=16, extractor="tiny",
                              arch="dcgan")
    assert TrialConfig.from_dict(old).differences(dcgan) == ["arch: 'infogan' vs 'dcgan'"]
    stored = dict(dataset="triangles", search="wide", steps=4, eval_every=2, eval_samples=16, extractor="tiny",
                  match="steps", numerics="float32")
    protocol = RunProtocol.from_dict(stored)
    assert protocol.arch == "infogan"
    # A run stored before the field keeps its studies' names; another architecture gets its own.
    assert protocol.digest == RunProtocol.from_dict({**stored, "arch": "infogan"}).digest
    assert RunProtocol.from_dict({**stored, "arch": "dcgan"}).digest != protocol.digest
    assert RunProtocol.from_dict({**stored, "arch": "dcgan"}).trial_config("ns_gan", {}, 0).arch == "dcgan"


def test_model_lists_follow_the_architecture(capsys):
    assert parse_models("ns_gan,pixelcnn", arch="sndcgan") == ["ns_gan", "pixelcnn"]
    everything = parse_models("all", arch="sndcgan")
    err = capsys.readouterr().err
    assert "began" not in everything and "vae" not in everything and "ns_gan" in everything
    assert "pixelcnn" in everything  # its own networks train under any
    assert "leaves out began, vae, beta_vae, vae_dl, aae" in err
    assert "pixelcnn, realnvp, pixelrnn, draw, ddpm: networks of their own" in err
    with pytest.raises(BenchError, match="began cannot be built on the dcgan architecture; it can on: infogan"):
        parse_models("ns_gan,began", arch="dcgan")


def test_sndcgan_trials_train_alone_and_dcgan_trials_pack():
    config = make_trial_config("ns_gan", "triangles", steps=4, eval_every=2, eval_samples=16, extractor="tiny")
    shape = (1, 28, 28)
    keys = {arch: pack_key(TrialConfig.from_dict({**config.to_dict(), "arch": arch}), shape)
            for arch in ("infogan", "dcgan", "sndcgan")}
    assert keys["sndcgan"] is None
    assert keys["infogan"] is not None and keys["dcgan"] is not None and keys["infogan"] != keys["dcgan"]


def test_unrolled_gan_looks_ahead_through_a_spectrally_normalised_d():
    torch.manual_seed(0)
    model = build_model("unrolled_gan", (1, 8, 8), {"unroll_steps": 2}, "cpu", "sndcgan")
    before = {k: v.clone() for k, v in model.D.state_dict().items()}
    model.D.eval()  # no power iteration: D's state must change only by its own update below
    fake = model.G(model.sample_noise(8, torch.Generator().manual_seed(0)))
    model._real = torch.rand(8, 1, 8, 8)
    model.generator_loss(fake).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.G.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.D.state_dict().items())


def test_bench_list_shows_sizes_on_the_architecture_asked(capsys):
    code, out, _ = run_cli(["list", "architectures"], capsys)
    assert code == 0 and all(a in out for a in ("infogan", "dcgan", "sndcgan", "Radford", "Miyato"))
    code, out, _ = run_cli(["list", "models", "--arch", "dcgan"], capsys)
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert code == 0 and "infogan, dcgan, sndcgan" in rows["ns_gan"] and "its own" in rows["pixelcnn"]
    assert "0.55M" in rows["ns_gan"]  # DCGAN's G on 28x28 (0.55M parameters), not the study's 6.64M
    from bench.models.catalog import model_rows

    began = next(row for row in model_rows("dcgan") if row["model"] == "began")
    assert began["packs"] == began["params 28x28x1"] == ""  # not built on dcgan: nothing to say about it
    code, _, err = run_cli(["list", "datasets", "--arch", "dcgan"], capsys)
    assert_one_line_error(code, err, "--arch applies to `bench list models`")


def test_bench_train_refuses_a_model_the_architecture_cannot_build(tmp_path, capsys):
    code, _, err = run_cli(["train", "--model", "began", "--dataset", "triangles", "--arch", "sndcgan",
                            "--steps", "2", "--extractor", "tiny", "--out", str(tmp_path / "t")], capsys)
    assert_one_line_error(code, err, "began cannot be built on the sndcgan architecture", "it can on: infogan")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("arch", ["dcgan", "sndcgan"])
def test_a_run_on_another_architecture_completes_and_its_report_says_so(arch, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["run", "--model", "ns_gan,wgan_gp", "--dataset", "triangles", "--budget", "2",
                            "--preset", "quick", "--arch", arch, "--steps", "2", "--eval-every", "2",
                            "--eval-samples", "16", "--extractor", "tiny", "--device", "cpu", "--no-progress",
                            "--out", str(out)], capsys)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["protocol"]["arch"] == arch
    trial = next(out.glob("ns_gan/*/slot-0000/trial.json"))
    assert json.loads(trial.read_text())["config"]["arch"] == arch
    code, _, err = run_cli(["report", str(out), "--out", str(tmp_path / "report"), "--draws", "50"], capsys)
    assert code == 0, err
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"on the {arch} architecture" in page and f"{arch} architecture, wide search" in page
    code, _, err = run_cli(["rank", "--model", "lsgan", "--dataset", "triangles", "--budget", "1", "--against",
                            str(out), "--device", "cpu", "--no-progress"], capsys)  # infogan: the default
    assert_one_line_error(code, err, "holds no run on triangles with the infogan architecture", f"on: {arch}",
                          f"add --arch {arch}")
