"""Plug-in models and `bench rank`: the README's example trains against a run and is ranked;
broken plug-ins and impossible rankings stop with one clear line and leave the run untouched."""

import json
import textwrap
from pathlib import Path

import pytest

from bench.reports.rank import ranking_table
from bench.reports.results import load_results
from tests.reports.cli import assert_one_line_error, run_cli
from tests.reports.synthetic import make_run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hinge_gan.py"
TINY = ["--steps", "4", "--eval-every", "2", "--eval-samples", "16", "--extractor", "tiny", "--device", "cpu",
        "--no-progress"]


def test_the_readme_shows_the_example_plug_in_in_full():
    readme = (REPO / "README.md").read_text()
    assert EXAMPLE.read_text().strip() in readme


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, blob_folder):
    out = tmp_path_factory.mktemp("rank") / "run"
    result = run_cli("run", "--model", "ns_gan,wgan", "--dataset", f"folder:{blob_folder}", "--budget", "2",
                     "--preset", "quick", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr
    return out, blob_folder


def test_rank_trains_the_example_under_the_runs_protocol(base_run):
    out, blobs = base_run
    before = json.loads((out / "run.json").read_text())["protocol"]
    result = run_cli("rank", "--model", str(EXAMPLE) + ":HingeGAN", "--dataset", f"folder:{blobs}", "--budget", "2",
                     "--against", str(out), "--device", "cpu", "--draws", "500", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "hinge_gan" in result.stdout and "ns_gan" in result.stdout and "wgan" in result.stdout
    ranking = (out / "rank" / "hinge_gan-budget2.csv").read_text().splitlines()
    assert len(ranking) == 1 + 3 and "p_hinge_gan_beats" in ranking[0]
    frame = load_results(out)
    hinge = frame[(frame["model"] == "hinge_gan") & (frame["role"] == "search")]
    assert sorted(set(hinge["trial"])) == [0, 1] and set(hinge["status"]) <= {"complete", "diverged"}
    assert frame["protocol_id"].nunique() == 1  # the exact protocol of the run, nothing new
    assert json.loads((out / "run.json").read_text())["protocol"] == before
    # a rerun of the same ranking trains nothing and gives the same table
    again = run_cli("rank", "--model", str(EXAMPLE) + ":HingeGAN", "--dataset", f"folder:{blobs}", "--budget", "2",
                    "--against", str(out), "--device", "cpu", "--draws", "500", "--no-progress")
    table = lambda text: text[text.index("ranking at"):]
    assert again.returncode == 0 and "trial 0" not in again.stdout and table(again.stdout) == table(result.stdout)


BROKEN = {
    "missing_class.py": ("Nope", "has no class 'Nope'", "from bench.models import GAN\n"),
    "not_a_model.py": ("Thing", "not a subclass of bench.models.GenerativeModel", "class Thing:\n    pass\n"),
    "bad_space.py": ("BadSpace", "disagree on ['lambda']", """
        from bench.models import GAN, LogUniform, gan_search_space
        from bench.models.losses import NON_SATURATING

        class BadSpace(GAN):
            loss = NON_SATURATING
            search_space = gan_search_space(dict(lr=1e-4, beta1=0.5, disc_iters=1, d_batch_norm=True),
                                            wide={"lambda": LogUniform(-1, 1)})
        """),
    "wrong_shape.py": ("Cropped", "the dataset needs (2, 1, 8, 8)", """
        from bench.models import GAN
        from bench.models.gan_variants import NonSaturatingGAN

        class Cropped(NonSaturatingGAN):
            def decode(self, z):
                return super().decode(z)[:, :, :4]
        """),
}


@pytest.mark.parametrize("name", sorted(BROKEN) + ["missing_file.py"])
def test_a_broken_plug_in_gives_one_clear_line_and_touches_nothing(base_run, tmp_path, name):
    out, blobs = base_run
    journal = (out / "optuna.journal").read_bytes()
    if name in BROKEN:
        cls, message, source = BROKEN[name]
        (tmp_path / name).write_text(textwrap.dedent(source))
    else:
        cls, message = "Any", "does not exist"
    result = run_cli("rank", "--model", f"{tmp_path / name}:{cls}", "--dataset", f"folder:{blobs}", "--budget", "1",
                     "--against", str(out), "--device", "cpu", "--no-progress")
    assert_one_line_error(result, message)
    assert (out / "optuna.journal").read_bytes() == journal


def test_rank_refuses_what_it_cannot_do(base_run, tmp_path):
    out, blobs = base_run
    model = str(EXAMPLE) + ":HingeGAN"
    result = run_cli("rank", "--model", model, "--dataset", "triangles", "--budget", "1", "--against", str(out))
    assert_one_line_error(result, "holds no run on triangles", "same dataset")
    result = run_cli("rank", "--model", model, "--dataset", f"folder:{blobs}", "--budget", "1", "--against",
                     str(tmp_path))
    assert_one_line_error(result, "holds no bench run")
    result = run_cli("rank", "--model", model, "--dataset", f"folder:{blobs}", "--budget", "0", "--against", str(out))
    assert result.returncode == 2 and "--budget" in result.stderr


def test_ranking_table_numbers(tmp_path):
    import numpy as np

    from bench.reports.bootstrap import min_draws
    from bench.reports.tables import beat_probability

    proto = make_run(tmp_path, {"ns_gan": [[20.0], [30.0], [25.0]], "wgan": [[22.0], [None][0] or [float("inf")]]})
    table, notes = ranking_table(load_results(tmp_path), "wgan", 3, proto.digest, draws=1000)
    table = table.set_index("model")
    a = min_draws([20.0, 30.0, 25.0], 3, draws=1000, model="ns_gan")[:, 2]
    b = min_draws([22.0, float("inf")], 3, draws=1000, model="wgan")[:, 2]
    assert table.loc["ns_gan", "mean"] == pytest.approx(a.mean()) and table.loc["ns_gan", "score"] == "fid"
    assert table.loc["wgan", "p_wgan_beats"] != table.loc["wgan", "p_wgan_beats"]  # NaN against itself
    assert table.loc["ns_gan", "p_wgan_beats"] == pytest.approx(beat_probability(b, a))
    assert table.loc["ns_gan", "rank"] == 1 and any("wgan has 2 finished trials" in n for n in notes)
    assert np.isclose(table.loc["wgan", "no_score"], np.mean(~np.isfinite(b)))


def test_an_entry_point_plug_in_is_registered_under_its_name(tmp_path):
    import subprocess
    import sys

    script = f"""
import importlib.metadata as md, sys
sys.path.insert(0, {str(EXAMPLE.parent)!r})
real = md.entry_points
fake = md.EntryPoint(name="hinge_ep", value="hinge_gan:HingeGAN", group="bench.models")
md.entry_points = lambda **kw: [fake] if kw.get("group") == "bench.models" else real(**kw)
from bench.models import get_model_class, model_names
assert "hinge_ep" in model_names(), model_names()
print(get_model_class("hinge_ep").__name__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "HingeGAN", result.stderr
