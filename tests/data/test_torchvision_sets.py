"""mnist, fashion_mnist, cifar10, celeba: layouts, one split at a time, and clear errors offline."""

import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import dataset_names, get_dataset
from bench.data import torchvision_sets as tvs
from bench.errors import BenchError


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may wait on the network, whatever machine runs it."""
    monkeypatch.setenv("BENCH_OFFLINE", "1")


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def fake_mnist(folder, split="t10k", n=12, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, gz)
    write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
    return images, labels


def test_registered_with_the_protocol_schedules():
    expected = {
        "mnist": ((1, 28, 28), 15_625, 3_906),
        "fashion_mnist": ((1, 28, 28), 15_625, 3_906),
        "cifar10": ((3, 32, 32), 78_125, 3_906),
        "celeba": ((3, 64, 64), 101_250, 12_656),
    }
    assert set(expected) | {"triangles"} <= set(dataset_names())
    for name, (shape, steps, every) in expected.items():
        info = get_dataset(name).info
        assert (info.image_shape, info.steps, info.eval_every) == (shape, steps, every)
        assert info.splits == ("train", "reference") and info.reference_size == 10_000


@pytest.mark.shared_data
@pytest.mark.parametrize("sub", ["", "mnist"])
def test_mnist_reference_from_the_shared_test_files(shared_data, sub):
    root = shared_data / sub if sub else shared_data
    if not (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("the MNIST test files are not in the shared data")
    split = get_dataset("mnist").load("reference", root)
    assert split.images.shape == (10_000, 1, 28, 28) and split.images.dtype == torch.uint8
    assert split.labels.dtype == torch.int64 and split.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert split.labels.bincount().tolist()[:2] == [980, 1135]  # the official test-set class counts
    assert split.images.float().mean().item() == pytest.approx(33.79, abs=0.05)  # mean pixel of MNIST test


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_either_idx_flavour_in_torchvision_layout(tmp_path, gz):
    images, labels = fake_mnist(tmp_path / "MNIST" / "raw", "train", gz=gz)
    split = get_dataset("mnist").load("train", tmp_path)
    assert torch.equal(split.images[:, 0], torch.from_numpy(images))
    assert split.labels.tolist() == labels.tolist()


def test_reference_is_the_first_10k_of_test(tmp_path):
    fake_mnist(tmp_path / "mnist", n=10_005)
    assert len(get_dataset("mnist").load("reference", tmp_path)) == 10_000


def test_fashion_mnist_never_takes_mnist_files_from_the_bare_root(tmp_path):
    fake_mnist(tmp_path)
    with pytest.raises(BenchError, match="fashion_mnist reference"):
        get_dataset("fashion_mnist").load("reference", tmp_path)
    images, _ = fake_mnist(tmp_path / "FashionMNIST" / "raw", seed=1)
    assert torch.equal(get_dataset("fashion_mnist").load("reference", tmp_path).images[:, 0], torch.from_numpy(images))


def test_missing_files_give_one_line_naming_directory_and_files(tmp_path, capsys):
    with pytest.raises(BenchError) as err:
        get_dataset("mnist").load("reference", tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "t10k-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert list(tmp_path.iterdir()) == []  # nothing created
    with pytest.raises(BenchError, match=r"cifar10 train.*data_batch_1.*cifar-10-batches-py"):
        get_dataset("cifar10").load("train", tmp_path)
    with pytest.raises(BenchError, match=r"celeba reference.*list_eval_partition.txt"):
        get_dataset("celeba").load("reference", tmp_path)
    assert capsys.readouterr().out == ""


def test_failed_download_is_quiet_and_cleans_up(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_OFFLINE")
    target = tmp_path / "MNIST"

    def fetch():
        (target / "raw").mkdir(parents=True)
        print("Downloading http://example.invalid/x.gz")
        raise RuntimeError("Error downloading x.gz:\nTried mirror, got:\n<urlopen error no network>")

    assert tvs._download(fetch, target) == "download failed: <urlopen error no network>"
    assert not target.exists()
    assert capsys.readouterr() == ("", "")


def test_idx_garbage_is_a_bench_error(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(BenchError, match="IDX"):
        tvs.read_idx(tmp_path / "bad")


def test_cifar10_reads_one_split_from_the_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": list(range(10)) * 2}, f)
    split = get_dataset("cifar10").load("reference", tmp_path)
    assert split.images.shape == (20, 3, 32, 32) and split.labels.dtype == torch.int64
    assert torch.equal(split.images[3, 1].flatten(), torch.from_numpy(data[3, 1024:2048]))
    with pytest.raises(BenchError, match="data_batch_1"):
        get_dataset("cifar10").load("train", tmp_path)


def test_tf1_bilinear_uses_corner_aligned_source_coordinates():
    ramp = np.tile(np.arange(160, dtype=np.float32), (160, 1))[..., None]  # value = column index
    out = tvs.tf1_resize_bilinear(ramp, 64)
    assert out.shape == (64, 64, 1)
    assert np.allclose(out[0, :, 0], 2.5 * np.arange(64))  # half-pixel centres would give 2.5k + 0.75


def test_celeba_crop_resize_and_cache(tmp_path, monkeypatch):
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    (folder / "list_eval_partition.txt").write_text(
        "\n".join(f"{n} {p}" for n, p in zip(names, [0, 0, 0, 1, 1, 2])) + "\n")
    for i, n in enumerate(names):
        img = np.zeros((218, 178, 3), np.uint8)  # aligned CelebA size; crop keeps rows 29..188, columns 9..168
        img[29:189, 9:169] = 40 * i
        Image.fromarray(img).save(folder / "img_align_celeba" / n, format="PNG")  # lossless, any name
    ref = get_dataset("celeba").load("reference", tmp_path)
    assert ref.images.shape == (2, 3, 64, 64) and ref.images.dtype == torch.uint8 and ref.labels is None
    assert (ref.images[0] == 120).all() and (ref.images[1] == 160).all()  # nothing outside the crop leaks in
    assert len(get_dataset("celeba").load("train", tmp_path)) == 3
    monkeypatch.setattr(tvs, "_celeba_names", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(get_dataset("celeba").load("reference", tmp_path).images, ref.images)
