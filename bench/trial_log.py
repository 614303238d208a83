"""`--log tensorboard`: a trial's losses, metrics and sample grids as TensorBoard events.

The trial folder's records stay what every command reads; the log is a view of them for the tool
GAN researchers watch while training runs. Each trial writes into its own folder
(TRIAL/tensorboard), so `tensorboard --logdir runs/cifar10` shows every trial of a run, each named
by its path (model/protocol/slot). A trial's log is opened where it trains, in the worker.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

from bench.errors import BenchError

LOGS = ("none", "tensorboard")  # defaults.CHOICES["log"] repeats these for a torch-free `bench --help`


class NoLog:
    """`--log none`: nothing beyond the trial folder's own records."""

    def loss(self, step: int, name: str, value: float) -> None:
        pass

    def evaluation(self, step: int, metrics: dict, grid: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLog(NoLog):
    """Every loss value (read in bulk with the divergence check, so no extra host sync), every
    finite metric and the saved sample grid of each evaluation point."""

    def __init__(self, folder: Path, start_step: int, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        # A trial resumed from step T drops the events a killed run wrote after T: they are trained
        # again, and a curve must hold one value per step.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start_step + 1 if start_step else None)
        if not start_step:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True) + "\n```", 0)

    def loss(self, step: int, name: str, value: float) -> None:
        self.writer.add_scalar(f"loss/{name}", value, step)

    def evaluation(self, step: int, metrics: dict, grid: np.ndarray) -> None:
        for name, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"metric/{name}", value, step)
        self.writer.add_image("samples", grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")
        self.writer.flush()  # an evaluation point is visible in TensorBoard when its record is

    def close(self) -> None:
        self.writer.close()


def check_log(kind: str) -> str:
    """`kind` if this machine can write it; one line saying what to install otherwise."""
    if kind not in LOGS:
        raise BenchError(f"--log {kind!r}: accepted are {', '.join(LOGS)}")
    if kind == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise BenchError("--log tensorboard needs the tensorboard package: pip install 'bench[tensorboard]'")
    return kind


def open_log(kind: str, folder: Path, start_step: int, config: dict) -> NoLog:
    return TensorBoardLog(folder, start_step, config) if check_log(kind) == "tensorboard" else NoLog()
