"""`bench run`'s polling reads the database only where something changed, and a finished trial
stores its best point, not its records (issue 14, 3): the counts of benchmarks/storage_load.py,
small, as behaviour rather than speed."""

import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import storage_load  # noqa: E402


def test_a_poll_that_finds_nothing_new_reads_no_trial(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {}
    for style in ("before", "after"):
        store, names = storage_load.build(f"sqlite:///{tmp_path / style}.db", style, trials=26, studies=3, points=5)
        rows[style] = {"per_trial": storage_load.attribute_bytes(store, names) / 26,
                       **storage_load.minute_of_polling(store, names, style, finishing=2, points=5)}
    before, after = rows["before"], rows["after"]
    assert after["per_trial"] < before["per_trial"] / 10
    assert after["statements"] < before["statements"] / 3
    assert after["attribute_bytes_read"] < before["attribute_bytes_read"] / 50
