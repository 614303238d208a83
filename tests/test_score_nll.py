"""`bench score --checkpoint DIR --nll bound|ais`: likelihoods of trained trials, and one clear
line for every request that cannot be met."""

import json
import math

import pytest

from tests.test_cli import assert_one_line_error, run_cli

TINY = ["--steps", "4", "--eval-every", "4", "--eval-samples", "16", "--extractor", "tiny", "--device", "cpu",
        "--no-progress"]


@pytest.fixture(scope="module")
def trials(tmp_path_factory, blob_folder):
    from bench.cli import main

    out = tmp_path_factory.mktemp("nll")
    for model in ("vae", "ns_gan", "vae_dl"):
        extra = ["--nll-k", "4"] if model != "ns_gan" else []
        assert main(["train", "--model", model, "--dataset", f"folder:{blob_folder}", "--out", str(out / model),
                     *TINY, *extra]) == 0
        # ended: scored from the weights it keeps, its optimiser checkpoint gone
        assert not (out / model / "checkpoint.pt").exists() and (out / model / "weights-best.pt").exists()
    return out


def test_bound_of_an_explicit_model(trials, capsys):
    code, out, err = run_cli(["score", "--checkpoint", str(trials / "vae_dl"), "--nll", "bound", "--nll-k", "8",
                              "--n", "16", "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((trials / "vae_dl" / "nll-bound.json").read_text())
    assert record["protocol"]["k"] == 8 and record["n"] == 16 and math.isfinite(record["metrics"]["nll_bpd"])
    assert "nll_bpd" in out


def test_ais_of_a_gan(trials, capsys):
    code, _, err = run_cli(["score", "--checkpoint", str(trials / "ns_gan"), "--nll", "ais", "--ais-steps", "20",
                            "--ais-chains", "2", "--ais-leapfrog", "2", "--ais-sigma", "0.1", "--n", "4",
                            "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((trials / "ns_gan" / "nll-ais.json").read_text())
    assert math.isfinite(record["metrics"]["ais_nll_nats"]) and record["protocol"]["settings"]["sigma"] == 0.1
    assert record["protocol"]["prior"].startswith("U[-1, 1]") and record["step"] == 4


@pytest.mark.parametrize("args, fragment", [
    (["--nll", "bound"], "ns_gan is implicit"),
    (["--nll", "ais", "--ais-sigma", "-1"], "sigma must be > 0"),
    (["--nll", "ais", "--ais-steps", "0"], "--ais-steps must be an integer >= 1"),
    (["--nll", "ais", "--ais-chains", "2.5"], "--ais-chains must be an integer >= 1"),
    (["--nll", "bound", "--ais-steps", "5"], "apply to --nll ais only"),
    ([], "needs both --checkpoint"),
])
def test_bad_likelihood_requests(trials, capsys, args, fragment):
    code, _, err = run_cli(["score", "--checkpoint", str(trials / "ns_gan"), *args], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (trials / "ns_gan" / "nll-bound.json").exists()


def test_nll_k_below_one_and_missing_trials(trials, capsys, tmp_path):
    code, _, err = run_cli(["score", "--checkpoint", str(trials / "vae"), "--nll", "bound", "--nll-k", "0"], capsys)
    assert code == 2 and "--nll-k" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["score", "--checkpoint", str(tmp_path), "--nll", "ais"], capsys)
    assert_one_line_error(code, err, "holds no bench trial")


def test_train_refuses_an_nll_of_an_implicit_model(capsys, blob_folder, tmp_path):
    code, _, err = run_cli(["train", "--model", "wgan", "--dataset", f"folder:{blob_folder}", "--nll-k", "5",
                            "--out", str(tmp_path / "t"), *TINY], capsys)
    assert_one_line_error(code, err, "wgan is implicit", "AIS")
    assert not (tmp_path / "t").exists()


def test_explicit_trials_record_their_nll_at_every_evaluation(trials):
    for model, metric in (("vae", "nll_nats_binarized"), ("vae_dl", "nll_bpd")):
        records = [json.loads(line) for line in (trials / model / "evals.jsonl").read_text().splitlines()]
        assert all(math.isfinite(r["metrics"][metric]) for r in records)
        assert records[0]["protocol"]["nll"]["k"] == 4 and records[0]["protocol"]["nll"]["n"] == 96
    ns = json.loads((trials / "ns_gan" / "evals.jsonl").read_text().splitlines()[0])
    assert not any(k.startswith("nll") for k in ns["metrics"]) and "nll" not in ns["protocol"]
