"""Tables from synthetic trial records, every number checked against a direct computation."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from bench import load_results
from bench.errors import BenchError
from bench.reports import tables
from bench.reports.bootstrap import budget_curve, min_draws
from bench.reports.published import published_table
from tests.reports.synthetic import make_run

INF = float("inf")
# Per trial, its FIDs at the evaluation points; None: diverged before the first; INF: diverged there.
TRIALS = {
    "ns_gan": [[30.0, 20.0], [25.0, 22.0], None, [40.0, 35.0], [18.0, 19.0], [50.0, INF]],
    "wgan": [[28.0, 24.0], [33.0, 31.0], [26.0, 21.0], [60.0, 45.0]],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_run(out, TRIALS, seeds={"ns_gan": [[19.0, 17.5], [21.0, 18.5], [20.0, 19.5]]}, pending={"wgan": 1})
    return out, load_results(out)


def objectives(model):
    """Each trial's score: its best point, before a divergence too; none (INF) without a point."""
    out = []
    for fids in TRIALS[model]:
        finite = [f for f in fids or [] if f != INF]
        out.append(min(finite) if finite else INF)
    return np.array(out)


def test_one_row_per_evaluation_point_with_everything(run):
    _, df = run
    search = df[df["role"] == "search"]
    # a trial with no evaluation still has one row; a trial diverged later keeps its finite points
    expected = sum(len([f for f in fids if f != INF]) if fids else 1 for v in TRIALS.values() for fids in v) + 1
    assert len(search) == expected
    assert {"hp.lr", "hp.beta1", "protocol.steps", "protocol.extractor", "metric_protocol.n_real", "fid",
            "kid_mean", "compute.flops", "status", "objective", "step", "seed", "trial"} <= set(df.columns)
    assert set(df["status"]) == {"complete", "diverged", "waiting"}
    waiting = df[df["status"] == "waiting"]
    assert len(waiting) == 1 and waiting["step"].isna().all() and waiting["fid"].isna().all()
    one = search[(search["model"] == "ns_gan") & (search["trial"] == 0)]
    assert one["fid"].tolist() == [30.0, 20.0] and (one["objective"] == 20.0).all()
    assert not df.map(lambda v: isinstance(v, str) and v.lower() in ("n/a", "nan", "none", "-")).any().any()


def test_model_summary(run):
    _, df = run
    summary = tables.model_summary(df).set_index("model")
    ns = objectives("ns_gan")
    finite = ns[np.isfinite(ns)]
    row = summary.loc["ns_gan"]
    assert row["trials"] == 6 and row["done"] == 6 and row["diverged"] == 2
    assert row["diverged_share"] == pytest.approx(2 / 6)
    assert row["score"] == "fid" and row["best_score"] == finite.min() and row["median_score"] == np.median(finite)
    assert row["score_q25"] == pytest.approx(np.quantile(finite, 0.25))
    assert 50.0 in finite  # the trial that diverged after a point at 50 keeps it
    assert row["best_trial"] == 4
    assert summary.loc["wgan", "pending"] == 1 and summary.loc["wgan", "done"] == 4


def test_budget_curve_matches_a_direct_bootstrap_and_never_rises(run):
    _, df = run
    table = tables.budget_table(df, ks=(1, 2, 3, 5), draws=2000, seed=7)
    for model in TRIALS:
        scores = objectives(model)
        rng = np.random.default_rng([7, zlib.crc32(model.encode())])
        index = rng.integers(0, len(scores), size=(2000, len(scores)))  # k <= n: n columns
        got = table[table["model"] == model].set_index("k")
        for k in got.index:
            mins = np.array([min(scores[i] for i in row[:k]) for row in index])
            finite = mins[np.isfinite(mins)]
            assert got.loc[k, "mean"] == pytest.approx(finite.mean(), rel=1e-12)
            assert got.loc[k, "std"] == pytest.approx(finite.std(), rel=1e-12)
            assert got.loc[k, "lo"] == pytest.approx(np.percentile(finite, 2.5))
            assert got.loc[k, "no_score"] == pytest.approx(1 - len(finite) / 2000)
        means = got["mean"].to_numpy()
        assert (np.diff(means) <= 0).all()
    assert set(table[table["model"] == "wgan"]["k"]) == {1, 2, 3}  # k beyond the trials done is left out


def test_budget_curve_edge_cases():
    curve = budget_curve([INF, INF], 3, draws=100)
    assert curve["no_score"].eq(1.0).all() and curve["mean"].isna().all()
    assert budget_curve([5.0], 4, draws=10)["mean"].tolist() == [5.0] * 4
    with pytest.raises(ValueError):
        min_draws([], 1)


def test_pairwise_probabilities(run):
    _, df = run
    pair = tables.pairwise_table(df, k=2, draws=3000, seed=0).set_index("model")
    a = min_draws(objectives("ns_gan"), 2, draws=3000, seed=0, model="ns_gan")[:, 1]
    b = min_draws(objectives("wgan"), 2, draws=3000, seed=0, model="wgan")[:, 1]
    expected = np.mean(a < b) + 0.5 * np.mean(a == b)
    assert pair.loc["ns_gan", "wgan"] == pytest.approx(expected)
    assert pair.loc["ns_gan", "wgan"] + pair.loc["wgan", "ns_gan"] == pytest.approx(1.0)
    assert math.isnan(pair.loc["ns_gan", "ns_gan"])


def test_seed_table(run):
    _, df = run
    seeds = tables.seed_table(df).set_index("model")
    mins = [17.5, 18.5, 19.5]
    assert seeds.loc["ns_gan", "seeds"] == 3
    assert seeds.loc["ns_gan", "mean"] == pytest.approx(np.mean(mins))
    assert seeds.loc["ns_gan", "std"] == pytest.approx(np.std(mins, ddof=1))
    assert "wgan" not in seeds.index


def test_quality_and_compute_tables(run):
    _, df = run
    quality = tables.quality_table(df).set_index("model")
    assert quality.loc["ns_gan", "fid"] == 18.0 and quality.loc["ns_gan", "trial"] == 4
    assert quality.loc["ns_gan", "step"] == 50 and quality.loc["ns_gan", "precision"] == pytest.approx(0.54)
    assert {"tri_precision", "tri_recall", "tri_f1", "kid_mean"} <= set(quality.columns)
    compute = tables.compute_table(df).set_index("model")
    assert compute.loc["ns_gan", "trials"] == 6 and compute.loc["ns_gan", "steps"] == 100
    assert compute.loc["ns_gan", "flops_per_trial"] == pytest.approx(np.mean([1e9 * (i + 1) for i in range(6)]))
    assert compute.loc["wgan", "train_hours"] == pytest.approx(4 * 20.0 / 3600)
    assert np.isnan(compute.loc["wgan", "sample_hours"])  # trials stored before sampling was timed: unknown, not 0


def test_published_numbers_only_beside_the_studys_protocol(tmp_path):
    from bench.studies.protocol import resolve_protocol

    paper = resolve_protocol("mnist", "paper").to_dict()
    paper.pop("dataset")
    make_run(tmp_path / "paper", {"ns_gan": [[9.0, 7.0], [8.0]]}, dataset="mnist", protocol=paper,
             seeds={"ns_gan": [[7.0], [7.4]]})
    df = load_results(tmp_path / "paper")
    table = published_table(df, tables.seed_table(df), tables.model_summary(df))
    row = table.set_index("model").loc["ns_gan"]
    assert row["published_mean"] == 6.8 and row["published_std"] == 0.5
    assert row["ours_mean"] == pytest.approx(7.2) and "Lucic" in row["source"]

    make_run(tmp_path / "quick", {"ns_gan": [[9.0]]}, dataset="mnist")  # tiny extractor: not the study's
    df = load_results(tmp_path / "quick")
    assert published_table(df, tables.seed_table(df), tables.model_summary(df)).empty


def test_a_folder_of_several_datasets(tmp_path):
    make_run(tmp_path / "triangles", {"ns_gan": [[9.0]]}, dataset="triangles")
    make_run(tmp_path / "mnist", {"ns_gan": [[5.0]], "wgan": [[6.0]]}, dataset="mnist")
    df = load_results(tmp_path)
    assert set(df["dataset"]) == {"triangles", "mnist"} and len(df) == 3
    with pytest.raises(BenchError, match="no bench run"):
        load_results(tmp_path / "triangles" / "nothing")


def test_export_roundtrip(run, tmp_path):
    from bench.reports.export import export_results

    out, df = run
    path, n = export_results(out, "parquet", tmp_path / "r.parquet")
    back = pd.read_parquet(path)
    assert n == len(df) == len(back) and back["fid"].sum() == pytest.approx(df["fid"].sum())
    path, _ = export_results(out, "csv", tmp_path / "r.csv")
    assert pd.read_csv(path)["objective"].replace(np.inf, np.nan).sum() == pytest.approx(
        df["objective"].replace(np.inf, np.nan).sum())


def test_ranking_by_fid_and_by_each_likelihood_apart(tmp_path):
    """Five families in one table (issues 6 and 16): all ranked by FID, explicit models also by
    their best NLL over every evaluation point, bits/dim and binarised nats apart."""
    make_run(tmp_path, {"vae": [[90.0, 80.0], [85.0]], "pixelcnn": [[70.0], [75.0, 72.0]],
                        "realnvp": [[60.0, 65.0], [95.0]], "ns_gan": [[50.0], [55.0]], "ddpm": [[66.0]]},
             nll={"vae": ("nll_nats_binarized", [[120.0, 110.0], [115.0]]),
                  "pixelcnn": ("nll_bpd", [[3.0], [3.5, 2.5]]),  # best NLL is not at the best FID
                  "realnvp": ("nll_bpd", [[4.0, 3.9], [4.5]]), "ddpm": ("nll_bpd", [[3.2]])})
    table = tables.ranking(load_results(tmp_path)).set_index("model")
    assert table.index.tolist() == ["ns_gan", "realnvp", "ddpm", "pixelcnn", "vae"]
    assert table["family"].tolist() == ["gan", "flow", "diffusion", "autoregressive", "vae"]
    assert table["score_rank"].tolist() == [1, 2, 3, 4, 5]
    assert table["best_score"].tolist() == [50.0, 60.0, 66.0, 70.0, 80.0]
    assert table.loc["pixelcnn", "nll_bpd"] == 2.5 and table.loc["realnvp", "nll_bpd"] == 3.9
    assert table.loc[["pixelcnn", "ddpm", "realnvp"], "nll_bpd_rank"].tolist() == [1, 2, 3]
    assert table.loc["vae", "nll_nats_binarized"] == 110.0 and table.loc["vae", "nll_nats_binarized_rank"] == 1
    assert table.loc["pixelcnn", "nll_bpd_k"] == 1 and table.loc["vae", "nll_nats_binarized_k"] == 1000  # the protocol's k
    assert pd.isna(table.loc["ns_gan", "nll_bpd_rank"]) and pd.isna(table.loc["ns_gan", "nll_nats_binarized_rank"])
    assert pd.isna(table.loc["vae", "nll_bpd_rank"]) and pd.isna(table.loc["realnvp", "nll_nats_binarized_rank"])


def test_published_likelihoods_only_for_the_datasets_and_units_measured(tmp_path):
    from bench.reports.published import likelihood_anchors

    make_run(tmp_path / "c", {"pixelcnn": [[70.0]], "ns_gan": [[50.0]]}, dataset="cifar10",
             nll={"pixelcnn": ("nll_bpd", [[3.9]])})
    anchors = likelihood_anchors(load_results(tmp_path / "c"))
    assert set(anchors["model"]) == {"Gated PixelCNN", "PixelCNN++", "RealNVP", "Glow"}
    assert (anchors["metric"] == "nll_bpd").all() and anchors["published"].min() == 2.92
    make_run(tmp_path / "t", {"pixelcnn": [[70.0]]}, dataset="triangles", nll={"pixelcnn": ("nll_bpd", [[3.9]])})
    assert likelihood_anchors(load_results(tmp_path / "t")).empty
    make_run(tmp_path / "m", {"vae": [[70.0]]}, dataset="mnist", nll={"vae": ("nll_nats_binarized", [[95.0]])})
    assert set(likelihood_anchors(load_results(tmp_path / "m"))["published"]) == {86.76, 84.78}


def test_page_labels_name_units_and_keep_unknown_columns():
    from bench.reports.render import for_people, label

    assert label("nll_bpd") == "NLL (bits/dim)" and label("nll_bpd_se") == "NLL s.e. (bits/dim)"
    assert label("score_q10") == "score, 10th percentile" and label("my_metric") == "my_metric"
    people = for_people(pd.DataFrame({"flops_per_trial": [3.0e11], "diverged_share": [0.5]}))
    assert list(people.columns) == ["GFLOP per trial", "share diverged"]
    assert people.iloc[0].tolist() == ["300", "50%"]  # in the unit its label names
