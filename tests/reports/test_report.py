"""`bench report` and `bench export` on a real tiny run and on a run still in progress; the page
renders in a headless browser where one is installed; each figure draws one series per model, with
the numbers of the table it is drawn from (on a synthetic run whose numbers are all known)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import json

import pytest

from tests.conftest import run_storage
from bench.reports.plots import FIGURES
from bench.records.protocol import RunProtocol
from bench.records.study_store import StudyStore
from bench.studies.study import SEEDS, study_name, summarize
from bench.reports.report import write_report
from tests.reports.synthetic import make_run
from tests.reports.cli import assert_one_line_error, run_cli

SECTIONS = ("models", "budget", "pairwise", "quality", "compute")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`bench run --preset quick` on triangles, shrunk for the CPU: tiny extractor, 4 steps, one
    evaluation per trial (triangle precision/recall alone costs ~15 s per evaluation here)."""
    out = tmp_path_factory.mktemp("quick") / "triangles"
    result = run_cli("run", "--model", "ns_gan,wgan", "--dataset", "triangles", "--budget", "2", "--preset", "quick",
                     "--steps", "4", "--eval-every", "4", "--eval-samples", "16", "--extractor", "tiny",
                     "--seeds", "1", "--device", "cpu", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return out


def test_report_of_a_quick_run_has_every_table_and_figure(quick_run):
    result = run_cli("report", str(quick_run), "--draws", "300")
    assert result.returncode == 0, result.stderr
    report = quick_run / "report"
    page = (report / "index.html").read_text()
    for key in SECTIONS + ("seeds",):
        assert f"id='{key}'" in page, key
        for ext in ("csv", "md", "tex"):
            assert (report / "tables" / f"{key}.{ext}").is_file()
    drawn = [key for key in FIGURES if key != "fid_vs_nll"]  # ns_gan and wgan have no likelihood
    for key in drawn:  # the triangle precision/recall and the sample grids included
        assert f"id='fig-{key}'" in page, key
        assert (report / "figures" / f"{key}.png").is_file() and (report / "figures" / f"{key}.svg").is_file()
    assert "id='fig-fid_vs_nll'" not in page
    assert page.count("src='data:image/png;base64,") == len(drawn)  # self-contained
    assert "Non-standard feature extractor" in page and "triangles" in page
    assert "Smoke protocol (4 steps, 16 samples per evaluation)" in page and "rank nothing" in page
    readme = (report / "README.md").read_text()
    assert "![" in readme and "## Trials per model" in readme and "Non-standard" in readme
    assert "\\toprule" in (report / "tables" / "models.tex").read_text()


def test_a_triangles_report_ranks_by_f1_with_precision_and_recall_beside(quick_run, tmp_path, monkeypatch):
    import pandas as pd

    from bench import load_results
    from bench.reports import plots

    results = load_results(quick_run)
    assert set(results["score_name"]) == {"tri_f1"}
    for (_, _), trial in results.groupby(["study", "trial"]):  # each trial's objective: its maximum F1
        assert (trial["objective"] == trial["tri_f1"].max()).all()
    record = json.loads((quick_run / "run.json").read_text())
    store = StudyStore(run_storage(quick_run))
    for model in ("ns_gan", "wgan"):  # the study maximises F1; `--seeds 1` re-ran the max-F1 configuration
        proto = RunProtocol.from_dict(record["protocol"])
        study = store.load(study_name(proto, model))
        assert study.direction == "maximize"
        summary = summarize(study)
        mine = results[(results["model"] == model) & (results["role"] == "search")]
        assert summary.best_score == mine["objective"].max()
        (rerun,) = store.load(study_name(proto, model, SEEDS)).trials()
        assert rerun.params == summary.best.params and rerun.user_attrs["source_slot"] == summary.best.user_attrs["slot"]
    report = write_report(quick_run, out=tmp_path / "report", draws=200).out
    budget = pd.read_csv(report / "tables" / "budget.csv")
    assert {"mean", "lo", "hi", "no_score", "tri_precision", "tri_recall", "strict_mean"} <= set(budget.columns)
    assert "budget_curve" in {p.stem for p in (report / "figures").glob("*.png")}
    readme = (report / "README.md").read_text()
    assert "## triangle F1 at budget k" in readme and "maximum triangle F1" in readme
    labels = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out, name, **_: labels.setdefault(name, [a.get_ylabel() for a in fig.axes]))
    plots.budget_plot(results, tmp_path, draws=100)
    assert labels["budget_curve"] == ["maximum triangle F1 among k trials", "triangle precision at that point",
                                      "triangle recall at that point"]


def test_export_of_a_quick_run(quick_run, tmp_path):
    import pandas as pd

    result = run_cli("export", str(quick_run), "--format", "csv", "--out", str(tmp_path / "r.csv"))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(tmp_path / "r.csv")
    assert set(frame["model"]) == {"ns_gan", "wgan"} and set(frame["role"]) == {"search", "seeds"}
    assert len(frame) == 2 * (2 + 1)  # models x (slots + seed reruns), one evaluation point each
    assert frame["tri_f1"].notna().all() and frame["fid"].notna().all()
    assert "hp.lr" in frame and "protocol.steps" in frame and "metric_protocol.n_fake" in frame


def test_report_of_a_run_in_progress(tmp_path):
    make_run(tmp_path, {"ns_gan": [[30.0, 20.0]], "wgan": [[25.0]]}, pending={"ns_gan": 2, "wgan": 1})
    report = write_report(tmp_path, draws=100)
    page = (report.out / "index.html").read_text()
    assert "still in progress" in page and "3 of 6" not in page
    assert re.search(r"2 of 5 trials finished", page)


def test_report_puts_nll_ranks_beside_fid_and_quotes_published_likelihoods(tmp_path):
    make_run(tmp_path, {"pixelcnn": [[70.0]], "realnvp": [[60.0]], "ns_gan": [[50.0]]}, dataset="cifar10",
             nll={"pixelcnn": ("nll_bpd", [[3.9]]), "realnvp": ("nll_bpd", [[4.2]])})
    page = (write_report(tmp_path, draws=100).out / "index.html").read_text()
    ranking, anchors, models = (page.index(f"id='{key}'") for key in ("ranking", "likelihood_anchors", "models"))
    assert models < ranking < anchors  # the NLL ranking right after the FID summary, the quotes after it
    # The page labels columns for people; the table files keep the machine names.
    assert "rank by NLL (bits/dim)" in page and "nll_bpd_rank" not in page
    assert "nll_bpd_rank" in (tmp_path / "report" / "tables" / "ranking.csv").read_text()
    assert "PixelCNN++" in page and "not measured here" in page
    # The first screen: the best model by FID (ns_gan's 50) with its interval, before every section.
    summary = page.index("id='summary'")
    assert summary < page.index("id='models'") and "Best at budget 1: ns_gan" in page
    assert "95% interval 50" in page
    assert "id='fig-fid_vs_nll'" in page and (tmp_path / "report" / "figures" / "fid_vs_nll.svg").is_file()


def test_summary_calls_equal_best_scores_a_tie_instead_of_naming_the_first(tmp_path):
    make_run(tmp_path, {"wgan": [[40.0]], "ns_gan": [[40.0]], "vae": [[55.0]]})
    page = (write_report(tmp_path, draws=100).out / "index.html").read_text()
    assert "Tied for best at budget 1: wgan, ns_gan" in page or "Tied for best at budget 1: ns_gan, wgan" in page
    assert "Best at budget 1:" not in page
    make_run(tmp_path / "b", {"wgan": [[41.0]], "ns_gan": [[40.0]]})
    page = (write_report(tmp_path / "b", draws=100).out / "index.html").read_text()
    assert "Best at budget 1: ns_gan" in page and "Tied" not in page


def test_report_and_export_refuse_a_folder_without_a_run(tmp_path):
    for args in (("report", str(tmp_path)), ("export", str(tmp_path)), ("export", str(tmp_path), "--format", "xlsx")):
        result = run_cli(*args)
        assert result.returncode != 0
        if "--format" not in args:
            assert_one_line_error(result, "holds no bench run")
    assert not (tmp_path / "report").exists()


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def runs_to_render(quick_run):
    """The shrunk quick run, and the full `--preset quick` run of README command 1 where .ci/run
    names it (BENCH_QUICK_RUN), so that the report of the real thing is rendered too."""
    runs = [quick_run]
    if os.environ.get("BENCH_QUICK_RUN"):
        runs.append(Path(os.environ["BENCH_QUICK_RUN"]))
    return runs


@pytest.mark.parametrize("which", [0, 1], ids=["shrunk", "readme-command-1"])
def test_report_renders_in_a_headless_browser(quick_run, tmp_path, which):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser installed (Debian: apt-get install chromium)")
    runs = runs_to_render(quick_run)
    if which >= len(runs):
        pytest.skip("BENCH_QUICK_RUN does not name the folder of README command 1 (.ci/run sets it)")
    run = runs[which]
    figures = write_report(run, draws=300).figures
    assert len(figures) == len(FIGURES) - (which == 0)  # README command 1's run has explicit models
    page = (run / "report" / "index.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == len(figures) and "Trials per model" in dom.stdout
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1100,2000", page],
                   capture_output=True, text=True, timeout=120)
    from PIL import Image
    import numpy as np

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2000, 1100)
    assert (pixels < 128).mean() > 0.005  # text and figures were drawn, not a blank page
    # No part of the page is wider than a 1400-pixel window (wide tables scroll inside their box).
    probe = tmp_path / "probe.html"
    probe.write_text((run / "report" / "index.html").read_text().replace(
        "</body>", "<script>window.addEventListener('load', () => document.body.setAttribute('data-width', "
                   "document.documentElement.scrollWidth + ' ' + window.innerWidth))</script></body>"))
    dom = subprocess.run([browser, *flags, "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    widths = re.search(r'data-width="(\d+) (\d+)"', dom.stdout)
    assert widths, dom.stderr[-2000:]
    assert int(widths[1]) <= int(widths[2]), f"the page is {widths[1]} px wide in a {widths[2]} px window"
    _assert_figure_colours(run)


def _assert_figure_colours(run: Path) -> None:
    """Each SVG figure draws with the palette colours of the report's models only, and the budget
    curve, which draws every model with a curve, with exactly theirs."""
    from bench import load_results
    from bench.reports.style import PALETTE, model_styles
    from bench.reports.tables import budget_curves

    results = load_results(run)
    styles = model_styles(results["model"].unique())
    mine = {style.color for style in styles.values()}
    for svg in sorted((run / "report" / "figures").glob("*.svg")):
        used = set(re.findall(r"#[0-9a-f]{6}", svg.read_text().lower())) & set(PALETTE)
        assert used <= mine, f"{svg.name}: colours of no model of this report: {used - mine}"
        if svg.stem == "budget_curve":
            assert used == {styles[m].color for m in budget_curves(results, draws=50)["model"].unique()}, svg.name


def test_a_real_quick_run_ranks_every_family_in_one_table():
    """Issues 6 and 16 on README command 1's run (all models: GANs, VAEs, autoregressive models, a
    flow and a diffusion model): one ranking table, every model by FID, the explicit ones also by NLL."""
    if not os.environ.get("BENCH_QUICK_RUN"):
        pytest.skip("BENCH_QUICK_RUN does not name the folder of README command 1 (.ci/run sets it)")
    import pandas as pd

    from bench import load_results
    from bench.reports.tables import compute_table, ranking

    table = ranking(load_results(Path(os.environ["BENCH_QUICK_RUN"]))).set_index("model")
    four = ["vae", "pixelcnn", "realnvp", "ns_gan"]
    # On triangles the score is triangle F1; FID ranks every model beside it, PixelCNN included,
    # whose recall (and so F1) cannot be measured: it cannot be inverted by gradient descent.
    assert set(four) <= set(table.index) and table.loc[four, "fid_rank"].notna().all()
    assert table.loc[["vae", "realnvp", "ns_gan"], "score_rank"].notna().all()
    assert pd.isna(table.loc["pixelcnn", "score_rank"])
    assert table.loc[["pixelcnn", "realnvp"], "nll_bpd_rank"].notna().all()
    assert (table.loc[["pixelcnn", "realnvp"], "nll_bpd"] < 8).all()  # both learn something in 30 steps
    assert pd.notna(table.loc["vae", "nll_nats_binarized_rank"])
    assert pd.isna(table.loc["ns_gan", "nll_bpd_rank"]) and pd.isna(table.loc["ns_gan", "nll_nats_binarized_rank"])
    assert set(table["family"]) >= {"gan", "vae", "autoregressive", "flow", "diffusion"}
    assert table["fid_rank"].notna().all()
    assert pd.notna(table.loc["ddpm", "nll_bpd_rank"]) and pd.notna(table.loc["draw", "nll_nats_binarized_rank"])
    compute = compute_table(load_results(Path(os.environ["BENCH_QUICK_RUN"]))).set_index("model")
    assert 0 < compute.loc["ddpm", "sample_hours"] < compute.loc["ddpm", "eval_hours"]  # its 20 steps per sample
    run = Path(os.environ["BENCH_QUICK_RUN"])
    write_report(run, draws=300)
    readme = (run / "report" / "README.md").read_text()
    assert "## Models ranked by triangle F1 and, where they have a likelihood, by NLL" in readme


# What the figures draw. Each figure of FIGURES is drawn from a synthetic two-dataset run (every
# number known), `plots._save` is replaced so that the Figure is kept open instead of saved, and
# its artists are read back: one series per model, and the series' numbers equal to those of the
# table the figure says it is drawn from (bench/reports/tables.py), computed here independently.

FIGURE_DRAWS = 300
INF, NAN = float("inf"), float("nan")
# Ten models, so that one axes holds as many as the tab10 palette has colours: trials of several
# points, trials diverged after their points (inf / NaN) and before any (None), counts from 1 to 6
# (ns_gan's 6 put k = 5 in the budget table), and every model's FIDs in a range of its own.
MNIST_TRIALS = {
    "mm_gan": [[41.0, 37.5], [44.0], None],
    "ns_gan": [[30.0, 26.0, 27.5], [33.0], [29.0, INF], [35.5, 31.0], [28.25], [40.0]],
    "lsgan": [[52.0, 49.0], [47.5, NAN]],
    "wgan": [[61.0], [58.0, 55.5], [63.0]],
    "wgan_gp": [[24.0, 22.5]],
    "dragan": [[70.0, 66.0], None, [68.5]],
    "began": [[90.0, 81.0, 85.0], [88.0]],
    "vae": [[120.0, 110.0], [115.0]],
    "pixelcnn": [[75.0], [72.0, 71.0]],
    "realnvp": [[100.0, 95.0], [98.0]],
}
MNIST_NLL = {"vae": ("nll_nats_binarized", [[101.0, 96.5], [99.0]]),
             "pixelcnn": ("nll_bpd", [[3.9], [3.6, 3.5]]), "realnvp": ("nll_bpd", [[4.4, 4.1], [4.3]])}
TRIANGLE_TRIALS = {"ns_gan": [[30.0, 28.0], [35.0], [32.0, 31.0]], "wgan": [[40.0], [38.0, 39.0]],
                   "vae": [[80.0, 70.0], None]}
TRIANGLE_F1 = {"ns_gan": [[0.30, 0.45], [0.2], [0.5, 0.4]], "wgan": [[0.1], [0.25, 0.35]], "vae": [[0.05, 0.15], []]}
# Sample grids in the trial folders of these models (every trial, every step); lsgan's folders
# exist but hold no grid, and the other models have no folder: neither gets a panel.
WITH_GRIDS = {"mnist": ("ns_gan", "wgan", "vae", "pixelcnn"), "triangles": ("ns_gan",)}
# Figures whose series are coloured by model (score_distribution too, though there the x tick names
# the model as well).
COLOURED_BY_MODEL = ("budget_curve", "precision_recall", "score_vs_learning_rate", "training_curves", "fid_vs_nll",
                     "score_distribution")
# Figures that put GANs and the other families on separate rows once a panel would hold more than
# plots.FACET_AT models (mnist's ten here).
FACETED = ("budget_curve", "training_curves")
CLOSE = dict(rtol=1e-9, atol=1e-12)


def _write_grids(run_dir: Path, proto, trials: dict, models, start: int) -> int:
    """A distinct tiny grey PNG per (trial, step) of `models`: a panel shows which one by its pixels."""
    import numpy as np
    from PIL import Image

    value = start
    for model in models:
        for slot in range(len(trials[model])):
            samples = run_dir / model / proto.digest / f"slot-{slot:04d}" / "samples"
            samples.mkdir(parents=True)
            for step in range(proto.eval_every, proto.eval_every * 4, proto.eval_every):
                Image.fromarray(np.full((6, 6), value, dtype=np.uint8)).save(samples / f"step-{step:07d}.png")
                value += 3
    return value


@pytest.fixture(scope="module")
def drawn_figures(tmp_path_factory):
    """(results, {figure key: the open matplotlib Figure}) of a folder of two runs (mnist,
    triangles): every figure has one panel per dataset."""
    import matplotlib.pyplot as plt

    from bench import load_results
    from bench.reports import plots

    root = tmp_path_factory.mktemp("figures")
    mnist = make_run(root / "mnist", MNIST_TRIALS, nll=MNIST_NLL)
    triangles = make_run(root / "triangles", TRIANGLE_TRIALS, dataset="triangles", f1=TRIANGLE_F1)
    value = _write_grids(root / "mnist", mnist, MNIST_TRIALS, WITH_GRIDS["mnist"], start=10)
    _write_grids(root / "triangles", triangles, TRIANGLE_TRIALS, WITH_GRIDS["triangles"], start=value)
    (root / "mnist" / "lsgan" / mnist.digest / "slot-0000").mkdir(parents=True)
    results = load_results(root)
    assert set(results["dataset"]) == {"mnist", "triangles"}
    figures = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save",
                      lambda fig, out_dir, name, **_: figures.setdefault(name, fig) and out_dir / f"{name}.png")
        for key, (_, draw) in FIGURES.items():
            assert draw(results, root / "figures", **({"draws": FIGURE_DRAWS} if key == "budget_curve" else {})) \
                is not None, key
    assert set(figures) == set(FIGURES)
    yield results, figures
    for fig in figures.values():
        plt.close(fig)


def _panels_by_dataset(fig) -> dict:
    """dataset -> its axes (in order), read from the panel titles "DATASET (protocol ID)[ · FACET]"."""
    panels = {}
    for (dataset, _), axes in _panels_by_facet(fig).items():
        panels.setdefault(dataset, []).extend(axes)
    return panels


def _panels_by_facet(fig) -> dict:
    """(dataset, facet) -> its axes; facet is "" where the figure has one row, else "GANs" or
    "other families"."""
    panels = {}
    for ax in fig.axes:
        title = ax.get_title()
        assert title, "a panel without a title"
        head, _, facet = title.partition(" · ")
        panels.setdefault((head.split(" (protocol ")[0], facet), []).append(ax)
    return panels


def _in_facet(models, facet: str) -> set:
    from bench.models import get_model_class

    if not facet:
        return set(models)
    return {m for m in models if (get_model_class(m).family == "gan") == (facet == "GANs")}


def _labelled_lines(ax) -> dict:
    lines = {}
    for line in ax.get_lines():
        if not line.get_label().startswith("_"):
            assert line.get_label() not in lines, f"two lines labelled {line.get_label()}"
            lines[line.get_label()] = line
    return lines


def _scatters(ax) -> list:
    from matplotlib.collections import PathCollection

    return [c for c in ax.collections if isinstance(c, PathCollection)]


def _labelled_scatters(ax) -> dict:
    scatters = {}
    for scatter in _scatters(ax):
        if not scatter.get_label().startswith("_"):
            assert scatter.get_label() not in scatters, f"two scatters labelled {scatter.get_label()}"
            scatters[scatter.get_label()] = scatter
    return scatters


def _colour(artist) -> str:
    from matplotlib.collections import Collection
    from matplotlib.colors import to_hex

    if isinstance(artist, Collection):
        colours = {to_hex(c, keep_alpha=False) for c in artist.get_facecolor()}
        assert len(colours) == 1, f"{artist.get_label()} has several colours: {colours}"
        return colours.pop()
    return to_hex(artist.get_color(), keep_alpha=False)


def _assert_points(offsets, x, y, what):
    """The scatter's points are the (x, y) pairs, in any order."""
    import numpy as np

    got = np.asarray(offsets, dtype=float)
    want = np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
    assert got.shape == want.shape, f"{what}: {len(got)} points drawn, {len(want)} in the table"
    got, want = got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])]
    np.testing.assert_allclose(got, want, err_msg=what, **CLOSE)


def test_budget_curve_draws_each_models_bootstrap_curve(drawn_figures):
    import numpy as np

    from bench.reports.tables import budget_curves, budget_table
    from bench.scores import score_for

    results, figures = drawn_figures
    curves = budget_curves(results, draws=FIGURE_DRAWS)  # the same draws and seed as the figure's
    table = budget_table(results, draws=FIGURE_DRAWS)
    panels = _panels_by_facet(figures["budget_curve"])
    assert {dataset for dataset, _ in panels} == set(curves["dataset"])
    assert {facet for _, facet in panels} == {"GANs", "other families"}  # 10 mnist models, 11 in all
    for (dataset, facet), axes in panels.items():
        mine, rows = curves[curves["dataset"] == dataset], table[table["dataset"] == dataset]
        columns = ["mean"] + [c for c in score_for(dataset).companions if c in mine and mine[c].notna().any()]
        assert len(axes) == len(columns), (dataset, [ax.get_ylabel() for ax in axes])
        assert len(columns) == (3 if dataset == "triangles" else 1)  # F1, its precision and its recall
        for ax, column in zip(axes, columns):
            lines = _labelled_lines(ax)
            assert sorted(lines) == sorted(_in_facet(set(mine["model"]), facet)), (dataset, facet, column)
            for model, line in lines.items():
                curve = mine[mine["model"] == model].sort_values("k")
                what = f"{dataset} {column} {model}"
                np.testing.assert_array_equal(line.get_xdata(), curve["k"], err_msg=what)
                np.testing.assert_allclose(np.asarray(line.get_ydata(), float), curve[column], err_msg=what, **CLOSE)
                points = rows[rows["model"] == model]  # the budget table's k: the same numbers
                assert len(points) >= 1
                at = dict(zip(np.asarray(line.get_xdata()), np.asarray(line.get_ydata(), float)))
                np.testing.assert_allclose([at[k] for k in points["k"]], points[column], err_msg=what, **CLOSE)
            if column != "mean":
                continue
            bands = {_colour(band): band for band in ax.collections}  # mean ± 1 std, coloured as its line
            assert len(bands) == len(lines), dataset
            for model, line in lines.items():
                curve = mine[mine["model"] == model]
                vertices = bands[_colour(line)].get_paths()[0].vertices
                for k, mean, std in zip(curve["k"], curve["mean"], curve["std"]):
                    at_k = vertices[np.isclose(vertices[:, 0], k), 1]
                    np.testing.assert_allclose([at_k.min(), at_k.max()], [mean - std, mean + std],
                                               err_msg=f"{dataset} band {model} k={k}", **CLOSE)
    ns_gan = table[(table["dataset"] == "mnist") & (table["model"] == "ns_gan")]
    assert list(ns_gan["k"]) == [1, 5]  # k = 5 was compared, not only k = 1


def test_score_distribution_shows_each_models_trial_scores(drawn_figures):
    import numpy as np

    from bench.reports.results import finished
    from bench.reports.tables import search_trials, trial_scores
    from bench.scores import score_for

    results, figures = drawn_figures
    trials = search_trials(results)
    trials = trials[finished(trials["status"])]
    panels = _panels_by_dataset(figures["score_distribution"])
    assert set(panels) == set(trials["dataset"])
    for dataset, (ax,) in panels.items():
        score = score_for(dataset)
        expected = {}
        for model, group in trials[trials["dataset"] == dataset].groupby("model"):
            values = trial_scores(group, score)
            if np.isfinite(values).any():
                expected[model] = values[np.isfinite(values)]
        ticks = {label.get_text(): position for label, position in zip(ax.get_xticklabels(), ax.get_xticks())}
        assert len(ticks) == len(ax.get_xticks()) and sorted(ticks) == sorted(expected), dataset
        at_tick = {}
        for scatter in _scatters(ax):
            x = scatter.get_offsets()[:, 0]
            (model,) = [m for m, position in ticks.items() if np.all(np.abs(x - position) <= 0.15 + 1e-9)]
            assert model not in at_tick, f"{dataset}: two scatters at {model}"
            at_tick[model] = np.asarray(scatter.get_offsets()[:, 1], dtype=float)
        assert sorted(at_tick) == sorted(expected), dataset
        for model, values in expected.items():
            np.testing.assert_allclose(np.sort(at_tick[model]), np.sort(values), err_msg=f"{dataset} {model}", **CLOSE)
    # The table is the synthetic run's: a trial's FID is its best finite point, diverged or not.
    mnist = trials[(trials["dataset"] == "mnist") & (trials["model"] == "ns_gan")]
    assert sorted(mnist["fid"]) == [26.0, 28.25, 29.0, 31.0, 33.0, 40.0]


def test_precision_recall_plots_each_models_trials(drawn_figures):
    from bench.reports.tables import search_trials

    results, figures = drawn_figures
    trials = search_trials(results).dropna(subset=["tri_precision", "tri_recall"])  # where the figure has them
    panels = _panels_by_dataset(figures["precision_recall"])
    assert set(panels) == set(trials["dataset"])
    for dataset, (ax,) in panels.items():
        mine = trials[trials["dataset"] == dataset]
        scatters = _labelled_scatters(ax)
        assert sorted(scatters) == sorted(set(mine["model"])) and len(_scatters(ax)) == len(scatters), dataset
        for model, scatter in scatters.items():
            group = mine[mine["model"] == model]
            _assert_points(scatter.get_offsets(), group["tri_recall"], group["tri_precision"], f"{dataset} {model}")


def test_learning_rate_plot_shows_each_models_trial_scores(drawn_figures):
    import numpy as np

    from bench.reports.results import finished
    from bench.reports.tables import search_trials, trial_scores
    from bench.scores import score_for

    results, figures = drawn_figures
    trials = search_trials(results)
    trials = trials[finished(trials["status"]) & trials["hp.lr"].notna()]
    panels = _panels_by_dataset(figures["score_vs_learning_rate"])
    assert set(panels) == set(trials["dataset"])
    unscored_models = set()
    for dataset, (ax,) in panels.items():
        score = score_for(dataset)
        mine = trials[trials["dataset"] == dataset]
        scatters = _labelled_scatters(ax)
        assert sorted(scatters) == sorted(set(mine["model"])), dataset
        markers = [s for s in _scatters(ax) if s.get_label().startswith("_")]  # x: trials without a score
        all_scores = trial_scores(mine, score)
        worst = score.unkey(np.max(score.key(all_scores[np.isfinite(all_scores)])))
        for model, scatter in scatters.items():
            group = mine[mine["model"] == model]
            values = trial_scores(group, score)
            ok = np.isfinite(values)
            _assert_points(scatter.get_offsets(), group["hp.lr"][ok], values[ok], f"{dataset} {model}")
            mine_x = [m for m in markers if _colour(m) == _colour(scatter)]
            if ok.all():
                assert not mine_x, f"{dataset} {model}: no trial without a score, yet x markers"
                continue
            unscored_models.add((dataset, model))
            (marker,) = mine_x
            x, y = np.asarray(marker.get_offsets(), dtype=float).T
            np.testing.assert_allclose(np.sort(x), np.sort(group["hp.lr"][~ok]), err_msg=f"{dataset} {model}", **CLOSE)
            assert len(set(y)) == 1 and score.key(y[0]) > score.key(worst), f"{dataset} {model}: x beyond the worst"
        assert len(markers) == sum(d == dataset for d, _ in unscored_models), dataset
    assert unscored_models == {("mnist", "mm_gan"), ("mnist", "dragan"), ("triangles", "vae")}


def test_training_curves_follow_each_models_best_trial(drawn_figures):
    import numpy as np

    from bench.reports.tables import best_trials
    from bench.scores import score_for

    results, figures = drawn_figures
    best = best_trials(results)
    panels = _panels_by_facet(figures["training_curves"])
    assert {dataset for dataset, _ in panels} == set(best["dataset"])
    for (dataset, facet), (ax,) in panels.items():
        score = score_for(dataset)
        mine = best[(best["dataset"] == dataset) & best["model"].isin(_in_facet(best["model"], facet))]
        lines = _labelled_lines(ax)
        assert sorted(lines) == sorted(f"{row.model} (trial {row.trial})" for row in mine.itertuples()), dataset
        for row in mine.itertuples():
            points = results[(results["dataset"] == dataset) & (results["model"] == row.model)
                             & (results["role"] == "search") & (results["trial"] == row.trial)]
            points = points.dropna(subset=["step", score.metric]).sort_values("step")
            line = lines[f"{row.model} (trial {row.trial})"]
            what = f"{dataset} {row.model}"
            np.testing.assert_allclose(np.asarray(line.get_xdata(), float), points["step"].astype(float), err_msg=what)
            np.testing.assert_allclose(np.asarray(line.get_ydata(), float), points[score.metric], err_msg=what, **CLOSE)
    ns_gan = best[(best["dataset"] == "mnist") & (best["model"] == "ns_gan")]
    assert list(ns_gan["trial"]) == [0]  # FID 26 at its second point


def test_fid_vs_nll_plots_each_explicit_model(drawn_figures):
    from bench.reports.tables import NLL_COLUMNS

    results, figures = drawn_figures
    search = results[results["role"] == "search"]
    expected = {}  # (dataset, x label) -> the points of that panel
    for unit, words in NLL_COLUMNS:
        for dataset, block in search.dropna(subset=[unit, "fid"]).groupby("dataset"):
            expected[dataset, f"NLL ({words})"] = (unit, block)
    assert sorted(expected) == [("mnist", "NLL (bits/dim)"), ("mnist", "NLL (nats, binarised images)")]
    fig = figures["fid_vs_nll"]
    assert len(fig.axes) == len(expected)
    for ax in fig.axes:
        unit, block = expected[ax.get_title().split(" (protocol ")[0], ax.get_xlabel()]
        scatters = _labelled_scatters(ax)
        assert sorted(scatters) == sorted(set(block["model"])) and len(_scatters(ax)) == len(scatters), unit
        assert block["explicit"].astype(bool).all()
        for model, scatter in scatters.items():
            group = block[block["model"] == model]
            _assert_points(scatter.get_offsets(), group[unit], group["fid"], f"{unit} {model}")
    assert {m for _, (_, b) in expected.items() for m in b["model"]} == set(MNIST_NLL)


def test_samples_show_each_models_best_grid(drawn_figures):
    import numpy as np
    from PIL import Image

    from bench.reports.tables import best_trials
    from bench.scores import FID, score_for

    results, figures = drawn_figures
    expected = {}  # the grid's pixel value -> (model, title words)
    for row in best_trials(results).itertuples():
        path = Path(str(row.folder)) / "samples" / f"step-{int(row.step):07d}.png"
        if not path.is_file():
            continue
        pixels = np.asarray(Image.open(path))
        score = score_for(row.dataset)
        shown = score if np.isfinite(getattr(row, score.metric)) else FID
        expected[int(pixels.flat[0])] = (row.model, pixels, f"{shown.label} {getattr(row, shown.metric):.3g}",
                                         f"step {int(row.step)}")
    assert sorted(m for m, *_ in expected.values()) == sorted(WITH_GRIDS["mnist"] + WITH_GRIDS["triangles"])
    shown_panels = [ax for ax in figures["samples"].axes if ax.images]
    assert len(shown_panels) == len(expected)
    seen = set()
    for ax in shown_panels:
        (image,) = ax.images
        pixels = np.asarray(image.get_array())
        model, want, score_words, step_words = expected[int(pixels.flat[0])]
        np.testing.assert_array_equal(pixels, want)
        first, second = ax.get_title().split("\n")
        assert first == model and score_words in second and step_words in second, ax.get_title()
        seen.add(int(pixels.flat[0]))
    assert seen == set(expected)  # each grid once


@pytest.mark.parametrize("key", COLOURED_BY_MODEL)
def test_no_two_models_share_a_colour_within_a_panel(drawn_figures, key):
    """Each model of a panel has a colour of its own, the one style.model_styles gives it for the
    report's models, whatever figure or panel draws it."""
    from bench.reports.style import model_styles

    results, figures = drawn_figures
    styles = model_styles(results["model"].unique())
    most = 0
    for ax in figures[key].axes:
        series = {**_labelled_lines(ax), **_labelled_scatters(ax)}
        models = {label.split(" (trial ")[0]: _colour(artist) for label, artist in series.items()}
        assert len(models) == len(series)
        assert len(set(models.values())) == len(models), f"{key} {ax.get_title()}: {models}"
        for model, colour in models.items():
            assert colour == styles[model].color, f"{key}: {model} drawn {colour}, its style is {styles[model].color}"
        most = max(most, len(models))
    # fid_vs_nll: pixelcnn and realnvp in bits/dim; faceted figures: mnist's 7 GANs on a row.
    assert most == (2 if key == "fid_vs_nll" else 7 if key in FACETED else 10)


def test_each_model_has_a_style_of_its_own_fixed_by_the_registry():
    from bench.models import model_names
    from bench.reports.style import model_styles

    everyone = model_styles(model_names())
    assert len(everyone) == len(model_names()) >= 13
    assert len({s.color for s in everyone.values()}) == len(everyone)  # no colour reused among the built-ins
    some = model_styles(["wgan", "vae", "ns_gan"])  # a run of three models: the same styles as in a full run
    assert some == {m: everyone[m] for m in some}
    mine = model_styles(["ns_gan", "zz_plugin", "aa_plugin"])  # unregistered: after the registry, by name
    assert mine["aa_plugin"] != mine["zz_plugin"] and mine["aa_plugin"].color not in {everyone[m].color for m in ("ns_gan",)}


def test_a_figure_with_more_models_than_fit_a_panel_keeps_one_legend_outside_the_axes(drawn_figures):
    _, figures = drawn_figures
    for key in FACETED + ("precision_recall", "score_vs_learning_rate"):
        fig = figures[key]
        assert len(fig.legends) == 1, key
        assert not any(ax.get_legend() for ax in fig.axes), f"{key}: a legend inside an axes"
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(labels) == len(set(labels)), f"{key}: a model twice in the legend"


def test_every_figure_has_a_content_test():
    checked = {"budget_curve", "score_distribution", "precision_recall", "score_vs_learning_rate",
               "training_curves", "fid_vs_nll", "samples"}
    assert set(FIGURES) == checked, "a new figure needs a test of what it draws above"
