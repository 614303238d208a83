"""`bench score --checkpoint TRIAL_DIR --nll bound|ais`: the likelihood of a trained trial's model.

`bound`: the model's own likelihood (exact, or the importance-weighted bound with --nll-k samples)
for explicit models; `ais`: annealed importance sampling (bench/model_metrics/metric_ais.py) for any
model with a decoder differentiable in z, GANs included. Both score the first N images of the
dataset's evaluation split and write DIR/nll-METHOD.json, which `bench report` shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from bench.config import NLL_K, resolve_device
from bench.data import get_dataset
from bench.defaults import CHOICES, DEFAULTS
from bench.errors import BenchError
from bench.files import atomic_write_json, now
from bench.numerics import METRICS
from bench.progress import shown
from bench.records.trial_folder import TrialFolder

METRIC_OF_METHOD = {"bound": "nll", "ais": "ais"}  # the registered metric (bench/metrics/registry.py) of each --nll
METHODS = CHOICES["nll"]
AIS_IMAGES = 100  # AIS costs T x L decoder passes per chain: a documented subset, as Wu et al. score


def score_checkpoint_nll(checkpoint_dir: Path, method: str, *, n: Optional[int] = None, nll_k: Optional[int] = None,
                         ais: Optional[dict] = None, device: str = DEFAULTS["device"], data_root: Optional[Path] = None,
                         out: Optional[Path] = None, progress: bool = False) -> dict:
    from bench.metrics.registry import MetricInputs, get_metric
    from bench.model_metrics.metric_ais import AISSettings
    from bench.models import build_model, get_model_class

    if method not in METHODS:
        raise BenchError(f"unknown --nll {method!r}; accepted: {', '.join(METHODS)}")
    folder = TrialFolder(checkpoint_dir)
    state = folder.read_state()
    if state is None:
        raise BenchError(f"{checkpoint_dir} holds no bench trial (no trial.json); give a trial folder of `bench train` "
                         "or of a run (runs/DATASET/MODEL/PROTOCOL/slot-NNNN)")
    config = state.config
    cls = get_model_class(config.model)
    if method == "bound" and not cls.explicit:
        raise BenchError(f"{config.model} is implicit: it has no likelihood of its own; use --nll ais")
    settings = None
    if method == "ais":
        try:
            settings = AISSettings(**(ais or {})).validate()
        except ValueError as exc:
            raise BenchError(str(exc).rstrip(".")) from None
        if not cls.invertible_by_gradient:
            raise BenchError(f"{config.model} does not decode differentiably from z; AIS needs a decoder "
                             "(use --nll bound for its exact likelihood)")
    data = get_dataset(config.dataset)
    reference = data.load("reference", data_root)
    n = n or (AIS_IMAGES if method == "ais" else len(reference))
    if not 1 <= n <= len(reference):
        raise BenchError(f"--n {n} must lie in 1..{len(reference)} (the evaluation split of {config.dataset})")
    torch_device = torch.device(resolve_device(device))
    model = build_model(config.model, data.info.image_shape, config.hparams, torch_device, config.arch)
    # A trial in progress (or kept with --keep checkpoints) is scored at its checkpoint; an ended
    # one at its last point's kept weights (the best point's where they are the same).
    checkpoint = folder.load_checkpoint(config, torch_device)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    else:
        checkpoint = folder.load_weights(config, torch_device, "last") or folder.load_weights(config, torch_device, "best")
        if checkpoint is None:
            raise BenchError(f"{checkpoint_dir} has no checkpoint or kept weights: the trial has not reached its first "
                             "evaluation point, or another trial of its study ended better (only the best trial "
                             "keeps its weights; bench run --keep weights keeps every trial's)")
        if method == "bound" and not model.holds_bound_networks(checkpoint["weights"]):
            raise BenchError(f"{checkpoint_dir} kept only the {', '.join(cls.kept_networks)} (what samples and AIS "
                             f"need; its bound at k = {config.nll_k} is in evals.jsonl): the bound also needs the "
                             f"{', '.join(cls.bound_networks)}, kept by bench run/train --keep weights")
        try:
            model.load_kept_weights(checkpoint["weights"])
        except ValueError as exc:
            raise BenchError(f"{checkpoint_dir}: {exc}") from None
    metric = get_metric(METRIC_OF_METHOD[method])
    inputs = MetricInputs(model=model, test_images=reference.head(n).images, nll_k=nll_k or NLL_K, ais=settings)
    try:
        # true float32, as the NLL inside a trial (bench/numerics.py)
        with metric.numerics.applied(), shown(progress):
            result = metric.compute(inputs)
    except ValueError as exc:
        raise BenchError(str(exc).rstrip(".")) from None
    metrics, protocol = result.values, result.protocol
    protocol["metric_numerics"] = METRICS.to_dict()
    record = {"method": method, "model": config.model, "dataset": config.dataset, "step": int(checkpoint["step"]),
              "n": n, "metrics": metrics, "protocol": protocol, "config": config.to_dict(), "time": now()}
    atomic_write_json(out or folder.nll_path(method), record)
    return record
