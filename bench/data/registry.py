"""Dataset registry: names to loaders. `folder:PATH` is resolved here, not registered."""

from __future__ import annotations

from typing import Callable, Dict

from bench.data.base import Dataset, DatasetInfo, ImageSplit
from bench.errors import BenchError

_DATASETS: Dict[str, Dataset] = {}


def register_dataset(info: DatasetInfo) -> Callable:
    """Decorator for a loader `fn(split, root) -> ImageSplit` of the dataset described by `info`."""

    def wrap(loader):
        if info.name in _DATASETS:
            raise ValueError(f"dataset {info.name!r} is registered twice")
        if ":" in info.name or not info.name.replace("_", "").isalnum():
            raise ValueError(f"dataset name {info.name!r} must be letters, digits and '_'")
        _DATASETS[info.name] = Dataset(info, loader)
        return loader

    return wrap


def dataset_names() -> list[str]:
    _load_builtins()
    return sorted(_DATASETS)


def get_dataset(name: str) -> Dataset:
    """A registered dataset by name, or a folder of images given as `folder:PATH`."""
    _load_builtins()
    if name.startswith("folder:"):
        from bench.data.folder import folder_dataset

        return folder_dataset(name[len("folder:"):])
    if name not in _DATASETS:
        known = ", ".join(sorted(_DATASETS) + ["folder:PATH"])
        raise BenchError(f"unknown dataset {name!r}; known datasets: {known}")
    return _DATASETS[name]


def _load_builtins() -> None:
    # Imported for their registration side effect; kept lazy so `bench --help` stays fast.
    from bench.data import torchvision_sets, triangles  # noqa: F401


__all__ = ["register_dataset", "get_dataset", "dataset_names", "Dataset", "DatasetInfo", "ImageSplit"]
