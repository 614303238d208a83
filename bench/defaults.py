"""Every default of the suite, stated once (torch-fidelity's `DEFAULTS` pattern).

The command line shows these in its help, the library functions fall back to them, and presets
(bench/presets/*.toml) override only the protocol values they name: the paper preset is this table
plus its seed re-runs. Imported by `bench --help`, so nothing heavy is imported here.
"""

from __future__ import annotations

from importlib import resources

from bench.errors import BenchError

# A protocol value the table leaves to the dataset (DatasetInfo: its schedule, its reference split).
FROM_DATASET = "the dataset's"

DEFAULTS = {
    # The study's protocol (PROTOCOL §3-5): what every trial's numbers depend on besides its model,
    # hyperparameters and seed. `bench train` uses it as is; `bench run` under the preset's values.
    "steps": FROM_DATASET,  # training length in D steps
    "eval_every": FROM_DATASET,  # D steps between evaluation points
    "eval_samples": FROM_DATASET,  # samples per evaluation: the whole reference split
    "extractor": "inception",
    "nll_k": 1000,  # importance samples for reported VAE numbers (PROTOCOL §5)
    "nll_n": FROM_DATASET,  # test images of the NLL: the whole reference split
    "sample_steps": 1000,  # iterative samplers (DDPM): denoising steps per sample, at most the model's T
    "numerics": "float32",  # true float32 as the study trained (TF32 off; bench/numerics.py)
    "arch": "infogan",  # the networks every model is built on (bench/models/architectures.py)
    "search": "wide",  # PROTOCOL §4 search ranges
    "match": "steps",  # what is held equal across models
    "batch_size": 64,  # PROTOCOL §1, for every model and dataset; no option changes it
    # One trial and one study.
    "seed": 0,
    "seeds": 0,  # seed re-runs of each model's best configuration, where a preset asks for none
    "preset": "paper",
    # How a command runs: never changes a number.
    "jobs": 1,
    "checkpoint_every": "10m",  # optimiser checkpoints at most this often: a resume loses at most this
    # What an ended trial keeps: best = the generating networks of each study's best trial only
    # (the others' records and samples stay); weights = every trial's, a VAE's encoder too;
    # checkpoints = their optimiser state too. `bench train` (one trial) defaults to weights.
    "keep": "best",
    "log": "none",  # tensorboard: each trial also writes TensorBoard events (bench/trial_log.py)
    "max_retries": 2,  # further attempts of a slot whose trial failed for its own reason
    "pack": "auto",  # trials of one model trained as one (bench/packing; bench/devices.py AUTO_PACK)
    "device": "auto",
    # Reports: bootstrap draws of budget curves and rankings.
    "draws": 5000,
    "format": "csv",  # `bench export`
    # `bench score --nll ais` (bench/model_metrics/metric_ais.py, Wu et al. 2017).
    "ais_steps": 1000,  # T intermediate distributions
    "ais_chains": 16,  # M independent chains per image
    "ais_leapfrog": 10,  # L leapfrog steps per HMC transition
    "ais_sigma": 0.05,  # observation noise std of p(x|z) = N(g(z), sigma^2 I)
}

# Accepted names of the options that take a name. NUMERICS (bench/numerics.py) is keyed by these
# numerics names; they are repeated here so that `bench --help` needs no torch (tests check both agree).
CHOICES = {
    "extractor": ("inception", "tiny"),
    "numerics": ("float32", "tf32", "float64"),
    "arch": ("infogan", "dcgan", "sndcgan"),  # bench/models/architectures.py registers these
    "search": ("wide", "narrow"),
    "match": ("steps", "flops"),
    "nll": ("bound", "ais"),  # `bench score --checkpoint DIR --nll METHOD`
    "format": ("csv", "parquet"),  # `bench export`
    "keep": ("best", "weights", "checkpoints"),
    "log": ("none", "tensorboard"),
}

# The protocol values a trial configuration holds (TrialConfig), and those a study adds (RunProtocol).
TRIAL_KEYS = ("steps", "eval_every", "eval_samples", "extractor", "nll_k", "nll_n", "sample_steps", "numerics", "arch")
STUDY_KEYS = ("search", "match")


def default_text(key: str) -> str:
    """How help texts state a default: "default 1000", "default: the dataset's"."""
    value = DEFAULTS[key]
    return f"default: {value}" if value == FROM_DATASET else f"default {value}"


# What a preset may set: protocol values, its seed re-runs, and a line saying what it is for.
PRESET_KEYS = ("description", "seeds", *STUDY_KEYS, *TRIAL_KEYS)


def _presets():
    return resources.files("bench.presets")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _presets().iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict:
    """A preset's values; a key it may not set is refused, naming it, rather than silently ignored."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if name not in preset_names():
        raise BenchError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    values = tomllib.loads(_presets().joinpath(f"{name}.toml").read_text())
    unknown = [k for k in values if k not in PRESET_KEYS]
    if unknown:
        raise BenchError(f"preset {name!r} has an unknown key {unknown[0]!r}; a preset may set: "
                         f"{', '.join(PRESET_KEYS)}")
    return values


def preset_seeds(name: str) -> int:
    """Seed re-runs of each model's best configuration that the preset asks for (paper: 50)."""
    return int(load_preset(name).get("seeds", DEFAULTS["seeds"]))
