"""The devices `--device` names: `auto` and `cuda` mean every visible GPU (auto falls back to the
CPU where there is none); `cuda:0,2` names a list; `cuda:N` and `cpu` one device. A process trains
on the first (`bench.config.resolve_device`); `--jobs` spreads its workers over all of them
(bench/studies/placement.py)."""

from __future__ import annotations

from typing import Optional

from bench.errors import BenchError


# Trials per pack where `--pack auto` (bench/packing): 1 on a CPU, where packing gains little (and
# costs memory); on a GPU a provisional value, not yet measured (benchmarks/packed_training.py
# prints the per-configuration step times from which it is to be chosen; benchmarks/RESULTS.md).
AUTO_PACK = {"cpu": 1, "cuda": 8}


def pack_size(pack, device: str) -> int:
    """What `--pack` (a positive int or "auto") means for a worker training on `device`."""
    if pack == "auto":
        return AUTO_PACK["cuda" if str(device).startswith("cuda") else "cpu"]
    return int(pack)


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_list(spec: str, cuda_count: Optional[int] = None) -> list[str]:
    """The devices `spec` names, checked against the `cuda_count` visible GPUs (asked of torch by default)."""
    count = cuda_device_count() if cuda_count is None else cuda_count
    visible = [f"cuda:{i}" for i in range(count)]
    if spec == "cpu":
        return ["cpu"]
    if spec == "auto":
        return visible or ["cpu"]
    if spec == "cuda" or spec.startswith("cuda:"):
        if not visible:
            raise BenchError(f"--device {spec} was asked for but no CUDA device is available; use --device cpu or auto")
        if spec == "cuda":
            return visible
        chosen = [f"cuda:{i.strip()}" for i in spec[len("cuda:"):].split(",")]
        for device in chosen:
            if device not in visible:
                raise BenchError(f"--device {spec}: {device} is not a visible GPU (visible: {', '.join(visible)})")
        return list(dict.fromkeys(chosen))
    raise BenchError(f"unknown device {spec!r}; accepted: auto, cpu, cuda (every visible GPU), cuda:N, cuda:N,M,...")


def device_name(device) -> str:
    """The device a trial ran on, as records hold it: `cuda:1 (NVIDIA ...)` with its index (the
    trials of `--jobs N` run on several GPUs), or the CPU with its thread count."""
    import platform

    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
