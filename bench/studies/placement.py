"""Where worker processes run: round-robin over the GPUs `--device` names, each with its share of
the CPU cores, so that `--jobs N` on an 8-GPU machine uses all eight instead of stacking on GPU 0.

Which devices `--device` names is bench/devices.py's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from bench.defaults import DEFAULTS
from bench.devices import device_list
from bench.errors import BenchError

POLL_SECONDS = 2.0
# torch's own pool and the BLAS libraries' pools, each sized per worker: N processes with
# all-core pools oversubscribe the cores and CPU training slows several-fold (measured on the
# 2-core VM: 0.03 -> 0.3 s per 8x8 step).
THREAD_VARIABLES = ("BENCH_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Placement:
    device: str
    threads: int  # CPU threads of its torch and BLAS pools


def place_workers(jobs: int, devices: list[str], cpu_count: Optional[int] = None) -> list[Placement]:
    """Worker i runs on devices[i mod len(devices)] with an equal share of the cores."""
    threads = max(1, (cpu_count or os.cpu_count() or 1) // jobs)
    return [Placement(devices[i % len(devices)], threads) for i in range(jobs)]


def worker_command(url: str, names: list[str], out: Path, device: str, *, data_root: Optional[Path] = None,
                   inception_weights: Optional[Path] = None, quiet: bool = True, pack=DEFAULTS["pack"],
                   max_retries: int = DEFAULTS["max_retries"], follow: Optional[str] = None,
                   wait: bool = False, checkpoint_every: str = DEFAULTS["checkpoint_every"],
                   keep: str = DEFAULTS["keep"], log: str = DEFAULTS["log"]) -> list[str]:
    """`bench worker` for `names` of the storage `url`, or, with `follow`, for every study of that run."""
    command = [sys.executable, "-m", "bench", "worker", "--out", str(out), "--device", device, "--pack", str(pack),
               "--max-retries", str(max_retries), "--checkpoint-every", str(checkpoint_every), "--keep", keep, "--log", log,
               "--no-progress"] + \
        (["--quiet"] if quiet else []) + (["--wait"] if wait else [])
    if follow:
        command += ["--run", str(follow)]
    else:
        command += ["--storage", url]
        for name in names:
            command += ["--study", name]
    if data_root:
        command += ["--data-root", str(data_root)]
    if inception_weights:
        command += ["--inception-weights", str(inception_weights)]
    return command


def start_workers(url: str, names: list[str], out: Path, jobs: int, device: str, *,
                  data_root: Optional[Path] = None, inception_weights: Optional[Path] = None, quiet: bool = True,
                  poll: Optional[Callable[[], None]] = None, cuda_count: Optional[int] = None,
                  pack=DEFAULTS["pack"], max_retries: int = DEFAULTS["max_retries"], follow: Optional[str] = None,
                  wait: bool = False, checkpoint_every: str = DEFAULTS["checkpoint_every"],
                  keep: str = DEFAULTS["keep"], log: str = DEFAULTS["log"]) -> None:
    """Run `jobs` `bench worker` processes on the placed devices until all have exited; `poll` is
    called every POLL_SECONDS meanwhile. One line and an error if any exits with an error."""
    placements = place_workers(jobs, device_list(device, cuda_count))
    workers = []
    for placement in placements:
        env = {**os.environ, "BENCH_PARENT_PID": str(os.getpid()),
               **{name: str(placement.threads) for name in THREAD_VARIABLES}}
        command = worker_command(url, names, out, placement.device, data_root=data_root,
                                 inception_weights=inception_weights, quiet=quiet, pack=pack,
                                 max_retries=max_retries, follow=follow, wait=wait,
                                 checkpoint_every=checkpoint_every, keep=keep, log=log)
        workers.append(subprocess.Popen(command, env=env))
    try:
        while any(w.poll() is None for w in workers):
            if poll is not None:
                poll()
            time.sleep(POLL_SECONDS)
        if poll is not None:
            poll()
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
    failed = [w.returncode for w in workers if w.returncode not in (0, None)]
    if failed:
        raise BenchError(f"{len(failed)} of {len(workers)} worker processes exited with an error "
                         f"(codes {failed}); rerun the same command to resume")
