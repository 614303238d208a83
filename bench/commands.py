"""What each `bench` sub-command does once its arguments are parsed (bench/cli.py): one library
call, and the table or lines it prints. A handler takes the parsed arguments and returns the exit code."""

from __future__ import annotations

import re
from pathlib import Path

from bench.defaults import DEFAULTS, STUDY_KEYS, TRIAL_KEYS
from bench.errors import BenchError
from bench.preflight import check_out_file, check_trial_inputs


def _protocol_flags(args, keys) -> dict:
    """The protocol options as given: None where not given, for the library to fill (table, preset)."""
    return {key: getattr(args, key) for key in keys}


def _machine_flags(args) -> dict:
    """The machine options (cli.MACHINE_OPTIONS) as every library entry point takes them."""
    return {"device": args.device, "data_root": args.data_root, "inception_weights": args.inception_weights,
            "progress": not args.no_progress}


def _checkpoint_flags(args) -> dict:
    """cli.CHECKPOINT_OPTIONS as the library takes them."""
    return {"checkpoint_every": args.checkpoint_every, "keep": args.keep, "log": args.log}


def _list_models(arch: str) -> list[dict]:
    from bench.models.catalog import model_rows

    return model_rows(arch)


def _list_architectures() -> list[dict]:
    from bench.models.catalog import architecture_rows

    return architecture_rows()


def _list_datasets() -> list[dict]:
    from bench.data import dataset_names, get_dataset
    from bench.scores import SCORES

    rows = []
    for name in dataset_names():
        info = get_dataset(name).info
        c, h, w = info.image_shape
        score = SCORES[info.score]
        rows.append({"dataset": name, "shape": f"{h}x{w}x{c}", "steps": info.steps, "eval every": info.eval_every,
                     "score": f"{score.best_word[:3]} {score.metric}",
                     "splits": ", ".join(info.splits), "note": info.note})
    rows.append({"dataset": "folder:PATH", "score": "min fid",
                 "note": "your own images, one size; PATH/train + PATH/test if present"})
    return rows


# `bench list WHAT`: one table of rows per entry; a new lister is one more entry.
def _list_metrics() -> list[dict]:
    from bench.metrics.registry import listing

    return listing()


LISTERS = {"models": _list_models, "architectures": _list_architectures, "datasets": _list_datasets,
           "metrics": _list_metrics}


def listing(args) -> int:
    from bench.textfmt import format_table

    if args.arch is not None and args.what != "models":
        raise BenchError(f"--arch applies to `bench list models` (sizes on that architecture), not to {args.what}")
    lister = LISTERS[args.what]
    print(format_table(lister(args.arch or DEFAULTS["arch"]) if args.what == "models" else lister()))
    return 0


def train(args) -> int:
    from bench.config import RunOptions, make_trial_config, parse_assignments
    from bench.scores import score_for
    from bench.textfmt import format_table
    from bench.train import run_trial

    config = make_trial_config(args.model, args.dataset, seed=args.seed, overrides=parse_assignments(args.assignments),
                               **_protocol_flags(args, TRIAL_KEYS))
    out = args.out or Path("runs") / "train" / f"{_slug(config.model)}-{_slug(config.dataset)}-seed{config.seed}"
    check_trial_inputs(config.dataset, batch_size=config.batch_size, eval_samples=config.eval_samples,
                       nll_n=config.nll_n, extractor=config.extractor, out=out, device=args.device,
                       data_root=args.data_root, inception_weights=args.inception_weights)
    result = run_trial(config, RunOptions(out=out, **_checkpoint_flags(args), **_machine_flags(args)))
    shown = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "is_mean", "tri_f1", "nll_bpd",
             "nll_nats_binarized")
    rows = [{"step": r["step"], **{k: r["metrics"][k] for k in shown if k in r["metrics"]},
             "train s": r.get("train_seconds"), "eval s": r.get("eval_seconds")} for r in result.evaluations]
    if result.already_finished:
        print(f"{out}: this trial is already {result.status}; nothing to do")
    print(format_table(rows))
    if result.status == "diverged":
        best = "" if result.score is None else f"; its score is its best point before: {result.score:.4g}"
        print(f"status: diverged at step {result.diverged_at_step} (recorded in {out / 'trial.json'}){best}")
    else:
        score = score_for(config.dataset)
        print(f"status: {result.status}; best {score.label} {result.score:.4g}" if result.score is not None
              else f"status: {result.status}; no {score.label} was measured")
    print(f"records: {out / 'evals.jsonl'}")
    return 0


def score(args) -> int:
    from bench.metrics.registry import default_score_metrics, parse_metrics
    from bench.score import score_samples
    from bench.textfmt import format_table

    if args.checkpoint is not None or args.nll is not None:
        return _score_nll(args)
    if args.samples is None or args.dataset is None:
        raise BenchError("give --samples PATH --dataset NAME (metrics of samples), or --checkpoint TRIAL_DIR --nll "
                         "bound|ais (a trained model's likelihood)")

    metrics = parse_metrics(args.metrics) if args.metrics is not None else default_score_metrics()
    out = args.out or Path(f"scores-{_slug(args.samples.stem or 'samples')}-{_slug(args.dataset)}.json")
    check_out_file(out)  # before the metrics, not after
    if (args.extractor or "inception") == "inception":
        from bench.metrics.feature_extractor_inceptionv3 import check_inception_weights

        check_inception_weights(args.inception_weights)
    result = score_samples(args.samples, args.dataset, metrics, n=args.n, extractor=args.extractor, out=out,
                           **_machine_flags(args))
    rows = [{"metric": k, "value": v} for k, v in result.metrics.items()]
    rows += [{"metric": k, "value": f"unavailable: {why}"} for k, why in result.unavailable.items()]
    print(format_table(rows))
    if not result.protocol["standard"]:
        print("note: non-standard feature extractor (tests only); these numbers compare with nothing published")
    print(f"n = {result.n} samples vs {result.protocol['reference']}; written to {out}")
    return 0


def _score_nll(args) -> int:
    from bench.records.trial_folder import TrialFolder
    from bench.score_nll import score_checkpoint_nll
    from bench.textfmt import format_table

    if args.checkpoint is None or args.nll is None:
        raise BenchError("a likelihood needs both --checkpoint TRIAL_DIR and --nll bound|ais")
    ais = {}
    for key in ("steps", "chains", "leapfrog", "sigma"):
        value = getattr(args, f"ais_{key}")
        if value is not None:
            if key != "sigma" and (value != int(value) or value < 1):
                raise BenchError(f"--ais-{key} must be an integer >= 1, got {value:g}")
            ais[key] = value if key == "sigma" else int(value)
    if ais and args.nll != "ais":
        raise BenchError("--ais-* settings apply to --nll ais only")
    if args.out is not None:
        check_out_file(args.out)
    record = score_checkpoint_nll(args.checkpoint, args.nll, n=args.n, nll_k=args.nll_k, ais=ais, device=args.device,
                                  data_root=args.data_root, out=args.out, progress=not args.no_progress)
    print(format_table([{"metric": k, "value": v} for k, v in record["metrics"].items()]))
    print(f"{record['model']} at step {record['step']} on {record['n']} images of {record['dataset']}; "
          f"written to {args.out or TrialFolder(args.checkpoint).nll_path(args.nll)}")
    return 0


def run(args) -> int:
    from bench.defaults import preset_seeds
    from bench.studies.protocol import resolve_protocol
    from bench.studies.run import RunRequest, parse_models, run_study
    from bench.data import get_dataset
    from bench.models import get_model_class
    from bench.records.storage import check_storage_url
    from bench.studies.status import status_rows
    from bench.textfmt import format_table

    protocol = resolve_protocol(args.dataset, args.preset, **_protocol_flags(args, TRIAL_KEYS + STUDY_KEYS))
    models = parse_models(args.model, get_dataset(protocol.dataset).info.image_shape, protocol.arch)
    out = args.out or Path("runs") / _slug(args.dataset)
    seeds = preset_seeds(args.preset) if args.seeds is None else args.seeds
    if args.storage:
        check_storage_url(args.storage)  # cheap checks before the dataset is loaded (or generated)
    explicit = any(get_model_class(m).explicit for m in models)
    check_trial_inputs(protocol.dataset, batch_size=protocol.batch_size, eval_samples=protocol.eval_samples,
                       nll_n=protocol.nll_n if explicit else None, extractor=protocol.extractor, out=out,
                       device=args.device, data_root=args.data_root, inception_weights=args.inception_weights)
    request = RunRequest(models=models, protocol=protocol, budget=args.budget, out=out, seeds=seeds,
                         jobs=args.jobs, pack=args.pack, max_retries=args.max_retries, storage=args.storage,
                         force=args.force, **_checkpoint_flags(args), **_machine_flags(args))
    run_study(request)
    _, rows = status_rows(out)
    print(format_table(rows))
    failed = sum(r["failed"] for r in rows)
    print(f"run folder: {out}" + (f"; {failed} trial(s) failed after {args.max_retries} retries: see error.log in "
                                  "their folders, and rerun with a larger --max-retries to try them again" if failed else
                                  f"; tables, rankings, figures: bench report {out}"))
    return 1 if failed else 0


def worker(args) -> int:
    from bench.records.run_folder import RunRecord
    from bench.records.storage import check_storage_url
    from bench.records.study_store import StudyStore
    from bench.studies.ownership import patiently
    from bench.studies.worker import RunStudies, train_waiting_trials

    given = args.run or args.storage
    if args.storage and not args.study:
        raise BenchError("--storage needs --study NAME (repeatable), or use --run to serve every study of the run")
    url, run_dir, record = given, None, None
    if Path(given).is_dir():  # a run folder: its storage, and its trial folders go there
        run_dir = Path(given)
        record = RunRecord.require(run_dir)
        url = record.storage_url(run_dir)
    store = patiently(StudyStore, check_storage_url(url))  # a worker waits out a database restart
    if args.run:
        names = RunStudies(store, record.dataset if record else None, record.digest if record else None)
        first = names()
        if not first:
            raise BenchError(f"{given} holds no bench study yet; start the run with `bench run` first")
    else:
        first = list(dict.fromkeys(n for pattern in args.study for n in store.select(pattern)))
        names = first
    out = args.out or run_dir or Path("runs") / _slug(first[0].split("/")[0])

    def say(item):
        if not args.quiet:
            value = f"{item.value:.2f}" if item.value is not None else "-"
            print(f"{item.model} slot {item.slot}: {item.status}, {item.score_name} {value}"
                  + (f" ({item.error}; queued again)" if item.retried else f" ({item.error})" if item.error else ""),
                  flush=True)

    if args.jobs > 1:  # worker processes placed over the GPUs of --device, each printing its own lines
        from bench.studies.placement import start_workers

        start_workers(store.url, first, out, args.jobs, args.device, data_root=args.data_root,
                      inception_weights=args.inception_weights, quiet=args.quiet, pack=args.pack,
                      max_retries=args.max_retries, follow=given if args.run else None, wait=args.wait,
                      **_checkpoint_flags(args))
        return 0
    count = train_waiting_trials(store.url, names, out, on_finished=say, pack=args.pack, max_retries=args.max_retries,
                                 wait=args.wait, **_checkpoint_flags(args), **_machine_flags(args))
    if not args.quiet:
        print(f"no waiting trials left; this worker trained {count}")
    return 0


def status(args) -> int:
    from bench.scores import score_for
    from bench.studies.status import status_rows
    from bench.textfmt import format_table

    record, rows = status_rows(args.dir)
    p = record.protocol
    budgets = sorted(set(record.budgets.values()))
    score = score_for(p["dataset"])
    print(f"{args.dir}: {p['dataset']}, budget {'/'.join(map(str, budgets))} per model, {p['search']} search, "
          f"{p['steps']} steps, {p['eval_samples']} samples per evaluation ({p['extractor']}), match {p['match']}, "
          f"{p.get('numerics', 'float32')} numerics, {record.seeds} seed re-runs; scored by "
          f"{score.best_word} {score.label}")
    print(format_table(rows))
    return 0


def report(args) -> int:
    from bench.reports.report import write_report

    written = write_report(args.dir, out=args.out, draws=args.draws)
    print(f"report: {written.out / 'index.html'} ({len(written.sections)} tables, {len(written.figures)} figures; "
          f"also README.md, tables/, figures/)")
    return 0


def export(args) -> int:
    from bench.reports.export import export_results

    path, rows = export_results(args.dir, args.format, args.out)
    print(f"{rows} evaluation points written to {path}")
    return 0


def rank(args) -> int:
    from bench.studies.rank_study import rank_model
    from bench.scores import score_for
    from bench.textfmt import format_table

    ranking = rank_model(args.model, args.dataset, args.budget, args.against, arch=args.arch or DEFAULTS["arch"],
                         jobs=args.jobs,
                         pack=args.pack, draws=args.draws,
                         max_retries=args.max_retries, **_checkpoint_flags(args), **_machine_flags(args))
    score = score_for(args.dataset)
    print(f"ranking at budget {ranking.budget} (bootstrap mean of the {score.best_word} "
          f"{score.label} among {ranking.budget} trials):")
    print(format_table(ranking.table.to_dict("records")))
    for note in ranking.notes:
        print(f"note: {note}")
    print("written: " + ", ".join(str(p) for p in ranking.written))
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-60:]
