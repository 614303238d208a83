"""Trials ranked by their dataset's score: maximum triangle F1 on triangles, minimum FID elsewhere,
a diverged trial at its best point before the divergence (compare_gan v1), on synthetic runs
where every number is known."""

import math
import zlib

import numpy as np
import pytest

from bench import load_results
from bench.reports import tables
from bench.reports.bootstrap import budget_curve
from bench.scores import FID, TRIANGLE_F1, score_for
from bench.records.study_store import StudyStore
from bench.studies.study import study_name, summarize
from tests.reports.synthetic import make_run

INF = float("inf")
# FIDs and F1s per evaluation point. The lowest FID and the highest F1 are in different trials, so
# a table that still ranked triangles by FID would pick other trials. ns_gan's trial 2 diverges
# after one point (its F1 0.7 is the model's best); its trial 3 diverges before any.
FIDS = {"ns_gan": [[30.0, 20.0], [25.0, 26.0], [40.0, INF], None],
        "wgan": [[22.0, 19.0], [35.0, 33.0]]}
F1S = {"ns_gan": [[0.3, 0.4], [0.6, 0.5], [0.7], []],
       "wgan": [[0.1, 0.2], [0.25, 0.3]]}


def max_f1(model, strict=False):
    out = []
    for fids, f1s in zip(FIDS[model], F1S[model]):
        diverged = fids is None or INF in fids
        out.append(np.nan if not f1s or (strict and diverged) else max(f1s))
    return np.array(out)


@pytest.fixture(scope="module", params=["new", "old"])
def triangles(request, tmp_path_factory):
    """The same trials as bench writes them now, and as it wrote them before (Optuna values: the
    minimum FID, infinite for a diverged trial): the tables must not tell them apart."""
    out = tmp_path_factory.mktemp(f"triangles-{request.param}")
    proto = make_run(out, FIDS, dataset="triangles", f1=F1S, seeds={"ns_gan": [[21.0], [24.0]]},
                     seed_f1={"ns_gan": [[0.65], [0.55]]}, stored=request.param)
    return out, proto, load_results(out)


def test_the_objective_is_the_maximum_f1_recomputed_from_the_records(triangles):
    _, _, df = triangles
    assert set(df["score_name"]) == {"tri_f1"}
    trials = tables.trial_table(df)
    search = trials[(trials["model"] == "ns_gan") & (trials["role"] == "search")].set_index("trial")
    assert search["objective"].tolist() == [0.4, 0.6, 0.7, 0.0]  # no point at all: zero F1
    assert search.loc[1, "step"] == 50 and search.loc[1, "tri_f1"] == 0.6  # the max-F1 point, not the min-FID one
    assert search.loc[2, "status"] == "diverged" and search.loc[2, "objective"] == 0.7


def test_summary_and_best_trial_by_maximum_f1(triangles):
    _, _, df = triangles
    summary = tables.model_summary(df).set_index("model")
    scored = max_f1("ns_gan")[:3]
    assert summary.loc["ns_gan", "score"] == "tri_f1" and summary.loc["ns_gan", "best_score"] == 0.7
    assert summary.loc["ns_gan", "best_trial"] == 2 and summary.loc["ns_gan", "diverged"] == 2
    assert summary.loc["ns_gan", "median_score"] == pytest.approx(np.median(scored))
    best = tables.best_trials(df).set_index("model")
    assert best.loc["wgan", "trial"] == 1  # F1 0.3, though its trial 0 has the lower FID
    quality = tables.quality_table(df).set_index("model")
    assert quality.loc["ns_gan", "tri_f1"] == 0.7 and quality.loc["ns_gan", "fid"] == 40.0
    seeds = tables.seed_table(df).set_index("model")
    assert seeds.loc["ns_gan", "mean"] == pytest.approx(0.6) and seeds.loc["ns_gan", "score"] == "tri_f1"


def test_budget_table_bootstraps_the_maximum_f1_with_its_precision_and_recall(triangles):
    _, _, df = triangles
    table = tables.budget_table(df, ks=(1, 2, 4), draws=3000, seed=3)
    got = table[table["model"] == "ns_gan"].set_index("k")
    values, strict = max_f1("ns_gan"), max_f1("ns_gan", strict=True)
    trials = tables.trial_table(df)
    trials = trials[(trials["model"] == "ns_gan") & (trials["role"] == "search")]
    precision, recall = trials["tri_precision"].to_numpy(), trials["tri_recall"].to_numpy()
    rng = np.random.default_rng([3, zlib.crc32(b"ns_gan")])
    index = rng.integers(0, 4, size=(3000, 4))
    for k in (1, 2, 4):
        best, strict_best, p, r = [], [], [], []
        for row in index[:, :k]:
            scored = [i for i in row if not math.isnan(values[i])]
            if scored:
                winner = max(scored, key=lambda i: values[i])
                best.append(values[winner])
                p.append(precision[winner])
                r.append(recall[winner])
            strict_scored = [values[i] for i in row if not math.isnan(strict[i])]
            if strict_scored:
                strict_best.append(max(strict_scored))
        assert got.loc[k, "mean"] == pytest.approx(np.mean(best), rel=1e-12)
        assert got.loc[k, "hi"] == pytest.approx(np.percentile(best, 97.5))
        assert got.loc[k, "no_score"] == pytest.approx(1 - len(best) / 3000)
        assert got.loc[k, "tri_precision"] == pytest.approx(np.mean(p))
        assert got.loc[k, "tri_recall"] == pytest.approx(np.mean(r))
        assert got.loc[k, "strict_mean"] == pytest.approx(np.mean(strict_best), rel=1e-12)
        assert got.loc[k, "strict_no_score"] == pytest.approx(1 - len(strict_best) / 3000)
    assert (np.diff(got["mean"].to_numpy()) >= 0).all()  # the best of more trials is never worse
    assert got.loc[4, "mean"] > got.loc[4, "strict_mean"]  # the diverged trial's 0.7 wins draws


def test_pairwise_and_ranking_follow_the_direction(triangles):
    _, _, df = triangles
    pair = tables.pairwise_table(df, k=2, draws=2000).set_index("model")
    # Every ns_gan draw with a score beats wgan's best, 0.3; only draws of its trial 3 twice do not.
    assert pair.loc["ns_gan", "wgan"] == pytest.approx(1 - 1 / 16, abs=0.02)
    ranked = tables.ranking(df).set_index("model")
    assert ranked.loc["ns_gan", "score_rank"] == 1 and ranked.loc["wgan", "score_rank"] == 2
    assert ranked.loc["wgan", "fid_rank"] == 1 and ranked.loc["wgan", "best_fid"] == 19.0  # ... FID says otherwise


def test_seed_reruns_take_the_maximum_f1_configuration(triangles):
    out, proto, _ = triangles
    study = StudyStore(f"journal:{out / 'optuna.journal'}").load(study_name(proto, "ns_gan"))
    summary = summarize(study)
    assert summary.best.user_attrs["slot"] == 2 and summary.best_score == 0.7 and summary.score is TRIANGLE_F1


def test_fid_runs_keep_a_diverged_trials_best_point(tmp_path):
    """A model whose only scored trial diverged after reaching FID 10 beats one that never diverged."""
    make_run(tmp_path, {"ns_gan": [[10.0, INF]], "wgan": [[30.0, 25.0]]}, stored="old")
    df = load_results(tmp_path)
    trials = tables.trial_table(df).set_index("model")
    assert trials.loc["ns_gan", "status"] == "diverged" and trials.loc["ns_gan", "objective"] == 10.0
    pair = tables.pairwise_table(df, k=1, draws=200).set_index("model")
    assert pair.loc["ns_gan", "wgan"] == 1.0
    table = tables.budget_table(df, ks=(1,), draws=200).set_index("model")
    assert table.loc["ns_gan", "mean"] == 10.0 and math.isnan(table.loc["ns_gan", "strict_mean"])
    assert table.loc["ns_gan", "strict_no_score"] == 1.0


def test_score_keys_and_bounds():
    assert score_for("triangles") is TRIANGLE_F1 and score_for("mnist") is FID and score_for("folder:/x") is FID
    assert TRIANGLE_F1.key(0.5) == -0.5 and TRIANGLE_F1.key(float("nan")) == INF
    assert FID.key(float("nan")) == INF and FID.unkey(INF) != FID.unkey(INF)  # no score: NaN
    assert TRIANGLE_F1.unkey(TRIANGLE_F1.key(np.array([0.2, np.nan]))).tolist()[0] == 0.2
    records = [{"metrics": {"tri_f1": 0.2}}, {"metrics": {}}, {"metrics": {"tri_f1": 0.5}}, {"metrics": {"tri_f1": 0.5}}]
    assert TRIANGLE_F1.best_record(records) is records[2] and TRIANGLE_F1.stored_value([]) == 0.0
    assert FID.stored_value([{"metrics": {"fid": float("nan")}}]) == INF
    curve = budget_curve([0.1, np.nan], 2, draws=500, score=TRIANGLE_F1)
    assert curve["mean"].tolist() == pytest.approx([0.1, 0.1]) and 0 < curve.loc[0, "no_score"] < 1


def test_bench_rank_orders_by_maximum_f1(triangles):
    from bench.reports.rank import ranking_table

    _, proto, df = triangles
    table, _ = ranking_table(df, "wgan", 2, proto.digest, draws=1000)
    table = table.set_index("model")
    assert table.loc["ns_gan", "rank"] == 1 and table.loc["wgan", "rank"] == 2
    assert table.loc["ns_gan", "score"] == "tri_f1" and table.loc["ns_gan", "mean"] > table.loc["wgan", "mean"]
    assert table.loc["ns_gan", "p_wgan_beats"] == pytest.approx(1 / 16, abs=0.03)  # only when ns_gan has no score


def test_equal_f1s_are_told_apart_by_fid_and_unfinished_trials_never_lead(tmp_path):
    # All F1s 0, as in short runs: the lower FID decides the best point, trial and re-run source.
    make_run(tmp_path, {"ns_gan": [[30.0, 26.0], [25.0, 27.0]]}, dataset="triangles",
             f1={"ns_gan": [[0.0, 0.0], [0.0, 0.0]]}, pending={"ns_gan": 1})
    df = load_results(tmp_path)
    trials = tables.trial_table(df).set_index("trial")
    assert trials.loc[0, "step"] == 100 and trials.loc[1, "step"] == 50  # each trial's lowest-FID point
    assert tables.best_trials(df)["trial"].tolist() == [1]
    assert tables.model_summary(df)["best_trial"].tolist() == [1]
    # Budget 2: a draw holding trial 1 (FID 25, precision 0.90 there) wins with it; only a draw of
    # trial 0 twice (a quarter) shows trial 0's 0.89. Slot order would give 0.8925 instead.
    table = tables.budget_table(df, ks=(2,), draws=2000)
    assert table["tri_precision"].iloc[0] == pytest.approx(0.25 * 0.89 + 0.75 * 0.90, abs=0.002)
    records = [{"metrics": {"tri_f1": 0.0, "fid": 9.0}}, {"metrics": {"tri_f1": 0.0, "fid": 7.0}}]
    assert TRIANGLE_F1.best_record(records) is records[1]
    # A running trial with a better point than every finished one is not "the best trial".
    df.loc[(df["trial"] == 2), ["status", "tri_f1", "fid", "step"]] = ["running", 0.9, 1.0, 50]
    assert tables.best_trials(df)["trial"].tolist() == [1]


def test_seed_reruns_follow_the_current_best(tmp_path):
    """Re-runs made when another trial was best stay stored but no longer count, and the new best
    gets its own re-runs in new slots (here: the legacy fixture's ns_gan re-run of slot 1 is still
    the best by F1, ties broken by FID; then the best is moved by hand)."""
    import shutil

    from pathlib import Path

    from bench.studies.study import SEEDS, enqueue_seeds

    run = tmp_path / "old"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "run-2026-11-triangles", run)
    df = load_results(run)
    assert tables.best_trials(df).set_index("model").loc["ns_gan", "trial"] == 1
    assert tables.seed_table(df).set_index("model").loc["ns_gan", "seeds"] == 1
    stale = df.copy()
    stale.loc[(stale["role"] == "seeds"), "source_slot"] = 0
    assert "ns_gan" not in set(tables.seed_table(stale)["model"])

    store = StudyStore(f"journal:{run / 'optuna.journal'}")
    name = next(n for n in store.names() if n.startswith("triangles/ns_gan/") and n.endswith(SEEDS))
    study = store.load(name)
    search = store.load(name[: -len("/" + SEEDS)])
    other = next(t for t in search.trials() if t.user_attrs["slot"] == 0)
    assert enqueue_seeds(study, next(t for t in search.trials() if t.user_attrs["slot"] == 1), 1) == 0
    assert enqueue_seeds(study, other, 2) == 2
    added = [t.user_attrs for t in study.trials() if t.user_attrs.get("source_slot") == 0]
    assert sorted((a["slot"], a["rerun"], a["seed"]) for a in added) == [(2, 1, 100_001), (3, 2, 100_002)]
    # The best changes back before they ran: they leave the queue, count in no budget, and a
    # rerun of `bench run` does not queue them again.
    from bench.studies.study import requeue_failed, retire_stale_reruns

    assert retire_stale_reruns(study, source_slot=1) == 2
    assert requeue_failed(study) == 0
    assert not study.trials("waiting")
    summary = summarize(study)
    assert summary.budget == 1 and summary.failed == 0 and summary.complete == 1
    assert set(load_results(run).query("role == 'seeds'")["status"]) == {"complete", "stale"}
