"""A run's studies open in optuna-dashboard (README: `optuna-dashboard RUN/optuna.journal`): its
own storage guess, app and JSON API, called as the browser calls them, with no server."""

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_cli import run_cli

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-2026-11-triangles"


def dashboard_get(app, path: str) -> dict:
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, *exc: status.append(s)))
    assert status and status[0].startswith("200"), (path, status, body[:500])
    return json.loads(body)


@pytest.fixture(params=["fresh", "2026-11 fixture"])
def run_folder(request, tmp_path, capsys):
    """A run of today's format (README command 1's, where .ci/run names it), and the 2026-11 fixture."""
    if request.param == "2026-11 fixture":
        return Path(shutil.copytree(FIXTURE, tmp_path / "old"))
    if os.environ.get("BENCH_QUICK_RUN"):
        return Path(os.environ["BENCH_QUICK_RUN"])
    out = tmp_path / "triangles"
    code, _, err = run_cli(["run", "--model", "ns_gan,wgan", "--dataset", "triangles", "--budget", "2", "--preset",
                            "quick", "--steps", "2", "--eval-every", "2", "--eval-samples", "16", "--extractor",
                            "tiny", "--device", "cpu", "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    return out


def test_a_runs_studies_open_in_optuna_dashboard(run_folder):
    pytest.importorskip("optuna_dashboard", reason="the dev extra installs optuna-dashboard")
    import optuna
    from optuna_dashboard import wsgi

    journal = run_folder / "optuna.journal"
    app = wsgi(str(journal))  # the path as the command line takes it: the dashboard guesses a journal file
    listed = dashboard_get(app, "/api/studies")["study_summaries"]
    names = {s["study_name"] for s in listed}
    stored = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert names == {s.study_name for s in optuna.get_all_study_summaries(stored)} and names
    for summary in listed:
        study = dashboard_get(app, f"/api/studies/{summary['study_id']}")
        trials = optuna.load_study(study_name=summary["study_name"], storage=stored).trials
        assert len(study["trials"]) == len(trials) > 0, summary["study_name"]
        assert [t["state"] for t in study["trials"]] == [t.state.name.title() for t in trials]
