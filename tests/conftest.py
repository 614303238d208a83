"""Shared fixtures: isolated caches, small image folders, the real data in ../shared/data."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """`slow` tests run only with BENCH_SLOW_TESTS=1: they cost minutes on a 2-core CPU."""
    if os.environ.get("BENCH_SLOW_TESTS"):
        return
    skip = pytest.mark.skip(reason="slow on a CPU; set BENCH_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


_MODELS_AT_START: list = []


def pytest_sessionstart(session):
    """The registry before any test module is imported: the built-ins and installed plug-ins."""
    from bench.models import model_names

    _MODELS_AT_START[:] = model_names()


@pytest.fixture(autouse=True)
def model_registry_unchanged():
    """Every test starts and ends with the registry of a fresh process (what `bench list models`
    prints): a test model is registered inside its test (`bench.models.registered`), never as a
    side effect of importing a test module, so no result depends on which tests ran before."""
    from bench.models import model_names, restored_registry

    assert model_names() == _MODELS_AT_START, "a test module registered models when it was imported"
    with restored_registry():  # put back what the test left, so one leak fails one test
        yield
        left = model_names()
    assert left == _MODELS_AT_START, f"the test left the registry changed: {left}"


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory):
    """Datasets, reference statistics and converted weights go to a per-session folder, never ~/.cache."""
    home = tmp_path_factory.mktemp("bench-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("BENCH_DATA", str(home / "data"))
    patch.setenv("BENCH_CACHE", str(home / "cache"))
    yield home
    patch.undo()


def shared_data_dir() -> Path:
    return Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set BENCH_SHARED_DATA)")
    return path


def write_blob_folder(root: Path, n_train: int = 192, n_test: int = 96, size: int = 8, seed: int = 0) -> Path:
    """A tiny image dataset: gray blobs at random places on 8x8, as train/ and test/ PNGs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cy, cx = rng.uniform(2, size - 2, 2)
            img = 255 * (1 - np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0))
            Image.fromarray(img.astype(np.uint8), "L").save(root / split / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def blob_folder(tmp_path_factory) -> Path:
    return write_blob_folder(tmp_path_factory.mktemp("blobs"))


def run_storage(out) -> str:
    """The storage URL of the run folder `out`, as bench opens it (run.json keeps it run-relative)."""
    from bench.records.run_folder import RunRecord

    return RunRecord.require(out).storage_url(out)
