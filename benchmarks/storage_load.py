"""Load on the study database, before and after the evaluation records left it (issue 14, 3).

    python benchmarks/storage_load.py [--storage sqlite:///FILE | postgresql://...] [--trials 200]
                                      [--studies 13] [--points 5] [--finishing 6] [--json FILE]

Builds `--trials` finished trials over `--studies` studies twice: with the attributes a worker
stored before (a compact copy of every evaluation record: `--points` of them, taken from the
fixture run in tests/fixtures) and with today's (the best point only). Then measures:

- bytes of attributes stored per trial (the sum of the stored JSON values);
- one minute of `bench run` polling (30 polls, one every 2 s) while `--finishing` trials end in
  that minute: SQL statements executed (counted on the SQLAlchemy engine) and the bytes of
  attributes of the trials those statements read (a COUNT reads none). Before: every poll loads every study and all
  its trials (bench up to 2026-12-02). After: `_Reporter.poll`, a COUNT per study, and the trials of
  a study read only when its count moved.

Prints both, with the ratio; the figures belong in benchmarks/RESULTS.md with the storage and date.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy import event, text

from bench.records.evaluation import EvalRecord
from bench.records.study_store import META_KEY, StudyStore
from bench.studies.run import _Reporter

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "run-2026-11-triangles"
POLLS_PER_MINUTE = 30  # bench/studies/placement.py POLL_SECONDS = 2


def sample_record() -> dict:
    path = next(FIXTURE.glob("*/*/slot-*/evals.jsonl"))
    return json.loads(path.read_text().splitlines()[0])


def attributes(style: str, slot: int, points: int) -> dict:
    record = sample_record()
    common = {"slot": slot, "seed": slot, "role": "search", "status": "complete", "score_name": "fid",
              "score": 20.0, "best_fid": 20.0, "diverged_at_step": None, "folder": f"/runs/x/slot-{slot:04d}",
              "steps": 15625, "compute": {"steps": 15625, "g_steps": 15625, "flops": 4.2e14, "parameters": {"G": 6e6}}}
    if style == "before":
        compact = EvalRecord.from_dict(record).compact()
        return {**common, "evaluations": [{**compact, "step": 3906 * (i + 1)} for i in range(points)]}
    return {**common, "best": {"step": record["step"], "g_steps": record["g_steps"], "metrics": record["metrics"]},
            "points": points}


class Counter:
    def __init__(self, engine):
        self.statements = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *args, **kwargs):
        self.statements += 1


def build(url: str, style: str, trials: int, studies: int, points: int) -> tuple[StudyStore, list]:
    store, tag, names = StudyStore(url), uuid.uuid4().hex[:8], []
    meta = {"format": "bench-study/1", "model": "ns_gan", "role": "search", "digest": "d",
            "protocol": {"dataset": "triangles"}}
    for s in range(studies):
        names.append(f"triangles-{style}-{tag}/m{s}/d")  # its own names: a shared server holds others
        study = optuna.create_study(study_name=names[-1], storage=store._storage)
        study.set_user_attr(META_KEY, {**meta, "model": f"m{s}"})
        for slot in range(s, trials, studies):
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=20.0, params={"lr": 1e-4},
                                         distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
                                         user_attrs=attributes(style, slot, points)))
    return store, names


def attribute_bytes(store: StudyStore, names) -> int:
    """Bytes of the user and system attributes of every trial of `names`: what a read of those
    trials transfers at least."""
    engine = store._storage.engine
    where = "where s.study_name in ({})".format(",".join(f"'{n}'" for n in names))
    total = 0
    for table in ("trial_user_attributes", "trial_system_attributes"):
        query = (f"select coalesce(sum(length(a.value_json)), 0) from {table} a join trials t "
                 "on a.trial_id = t.trial_id join studies s on t.study_id = s.study_id " + where)
        with engine.connect() as conn:
            total += int(conn.execute(text(query)).scalar())
    return total


def old_poll(store: StudyStore, names) -> None:
    for name in names:
        store.load(name).trials("complete", "diverged", "failed")


def finish_one(store: StudyStore, name: str, style: str, points: int) -> None:
    study = optuna.load_study(study_name=name, storage=store._storage)
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=21.0, params={"lr": 1e-4},
                                 distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
                                 user_attrs=attributes(style, 10_000, points)))


def minute_of_polling(store: StudyStore, names: list, style: str, finishing: int, points: int) -> dict:
    reporter = _Reporter(store, names, pending=1, progress=False)
    counter, read = Counter(store._storage.engine), 0
    every = max(1, POLLS_PER_MINUTE // max(finishing, 1))
    for poll in range(POLLS_PER_MINUTE):
        if finishing and poll % every == 0 and poll // every < finishing:
            before = counter.statements
            finish_one(store, names[poll % len(names)], style, points)
            counter.statements = before  # the worker's writes are not the poll's
            changed = [names[poll % len(names)]]
        else:
            changed = []
        if style == "before":
            old_poll(store, names)
            read += attribute_bytes(store, names)
        else:
            reporter.poll()
            read += attribute_bytes(store, changed) if changed else 0
    reporter.close()
    return {"statements": counter.statements, "attribute_bytes_read": read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="a database URL (default: SQLite files in a temporary folder)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--studies", type=int, default=13)
    parser.add_argument("--points", type=int, default=5)
    parser.add_argument("--finishing", type=int, default=6, help="trials that end during the measured minute")
    parser.add_argument("--json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("before", "after"):
            url = args.storage or f"sqlite:///{tmp}/{style}.db"
            store, names = build(url, style, args.trials, args.studies, args.points)
            per_trial = attribute_bytes(store, names) / args.trials
            rows[style] = {"bytes_per_trial": round(per_trial), **minute_of_polling(store, names, style, args.finishing,
                                                                                      args.points)}
            print(f"{style:6s}: {per_trial:9.0f} B of attributes per trial; one minute of polling: "
                  f"{rows[style]['statements']:6d} statements, {rows[style]['attribute_bytes_read'] / 1e6:8.2f} MB "
                  "of attributes read", flush=True)
    b, a = rows["before"], rows["after"]
    print(f"ratio before/after: {b['bytes_per_trial'] / a['bytes_per_trial']:.1f}x bytes per trial, "
          f"{b['statements'] / max(a['statements'], 1):.1f}x statements and "
          f"{b['attribute_bytes_read'] / max(a['attribute_bytes_read'], 1):.1f}x bytes per minute of polling "
          f"({args.trials} trials in {args.studies} studies, {args.finishing} ending per minute, "
          f"{'SQLite' if not args.storage else args.storage.split(':')[0]})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
