"""The VAEs' bound with the protocol's k only at the points a study reports (issue 13, item 4)."""

import pandas as pd

import bench.train
from bench.config import RunOptions, make_trial_config
from bench.reports.tables import at_protocol_k
from bench.scores import FID
from bench.train import run_trial


def test_the_protocol_k_is_used_at_the_last_point_and_at_each_best_so_far(blob_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.train, "NLL_K_BETWEEN", 2)
    # A large lr makes FID go up and down between points (measured: worse at steps 35 and 40).
    config = make_trial_config("vae", f"folder:{blob_folder}", steps=50, eval_every=5, eval_samples=32,
                               extractor="tiny", nll_k=6, nll_n=16, overrides={"lr": 1e-2})
    records = run_trial(config, RunOptions(out=tmp_path / "t", device="cpu", progress=False)).evaluations
    assert len(records) >= 6
    best = float("inf")
    kinds = set()
    for record in records:
        fid = record["metrics"]["fid"]
        reported = record["step"] == config.steps or FID.key(fid) <= best
        best = min(best, FID.key(fid))
        assert record["protocol"]["nll"]["k"] == (6 if reported else 2), record["step"]
        assert record["protocol"]["nll"]["estimator"].endswith(f"k = {record['protocol']['nll']['k']}")
        kinds.add(reported)
    assert kinds == {True, False}  # both kinds of point occurred, so the rule was exercised


def test_reports_quote_only_the_protocol_k():
    rows = pd.DataFrame({"nll_bpd": [1.0, 2.0, 3.0, 4.0, 5.0],
                         "metric_protocol.nll.k": [100, 1000, 1, float("nan"), 100],
                         "metric_protocol.nll.estimator": ["importance-weighted bound, k = 100",
                                                           "importance-weighted bound, k = 1000", "exact", None,
                                                           "importance-weighted bound, k = 100"],
                         "protocol.nll_k": [1000, 1000, 1000, 1000, 100]})
    assert at_protocol_k(rows)["nll_bpd"].tolist() == [2.0, 3.0, 4.0, 5.0]
    old = rows.drop(columns="metric_protocol.nll.k")  # records from before the rule
    assert len(at_protocol_k(old)) == 5
