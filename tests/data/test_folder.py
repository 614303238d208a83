"""`folder:PATH` datasets: layouts, labels, modes, errors, and the decoded-array cache."""

import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import get_dataset
from bench.data import folder as folder_mod
from bench.errors import BenchError


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


def gray_files(folder, values, size=(12, 8)):  # size = (H, W)
    for i, v in enumerate(values):
        save(folder / f"{i:03d}.png", np.full(size, v))


def test_flat_grayscale_folder(tmp_path):
    gray_files(tmp_path / "imgs", [10, 20, 30, 40, 50])
    ds = get_dataset(f"folder:{tmp_path / 'imgs'}")
    assert ds.name == f"folder:{(tmp_path / 'imgs').resolve()}"
    assert ds.info.image_shape == (1, 12, 8) and ds.info.splits == ("train", "reference")
    assert (ds.info.steps, ds.info.eval_every) == (15_625, 3_906)
    train = ds.load("train", tmp_path / "root")
    ref = ds.load("reference", tmp_path / "root")
    assert train.images.shape == (5, 1, 12, 8) and train.images.dtype == torch.uint8 and train.labels is None
    assert sorted(train.images[:, 0, 0, 0].tolist()) == [10, 20, 30, 40, 50]
    assert torch.equal(train.images, ref.images)
    assert "same images" in ref.description
    assert train.images[:, 0, 0, 0].tolist() != [10, 20, 30, 40, 50]  # fixed shuffle, not sorted order


def test_class_subfolders_rgb_labels(tmp_path):
    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "ant": (0, 0, 255)}
    for name, c in colours.items():
        for i in range(3):
            save(tmp_path / "d" / name / f"{i}.png", np.tile(np.array(c, np.uint8), (4, 4, 1)))
    split = get_dataset(f"folder:{tmp_path / 'd'}").load("train", tmp_path / "root")
    assert split.images.shape == (9, 3, 4, 4) and split.labels.dtype == torch.int64
    for image, label in zip(split.images, split.labels):
        name = ["ant", "cat", "dog"][label]  # index in the sorted sub-folder names
        assert image[:, 0, 0].tolist() == list(colours[name])


def test_train_test_layout(tmp_path):
    gray_files(tmp_path / "ds" / "train" / "a", [1, 2, 3])
    gray_files(tmp_path / "ds" / "train" / "b", [4, 5])
    gray_files(tmp_path / "ds" / "test" / "b", [6, 7])  # no "a" in test: labels still by the union
    ds = get_dataset(f"folder:{tmp_path / 'ds'}")
    train, ref = ds.load("train", tmp_path / "root"), ds.load("reference", tmp_path / "root")
    assert len(train) == 5 and len(ref) == 2
    assert sorted(ref.images[:, 0, 0, 0].tolist()) == [6, 7] and ref.labels.tolist() == [1, 1]
    assert "test/" in ref.description and "train/" in train.description


def test_reference_is_capped_at_the_reference_size(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "REFERENCE_SIZE", 3)
    gray_files(tmp_path / "f", range(0, 100, 10))
    ds = get_dataset(f"folder:{tmp_path / 'f'}")
    assert len(ds.load("reference", tmp_path / "root")) == 3 and len(ds.load("train", tmp_path / "root")) == 10


def test_transparency_and_palette_become_rgb_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    save(tmp_path / "f" / "0.png", rgba, "RGBA")
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "f" / "1.png")
    ds = get_dataset(f"folder:{tmp_path / 'f'}")
    assert ds.info.image_shape == (3, 4, 4)
    images = {int(im[0, 0, 0]): im for im in ds.load("train", tmp_path / "root").images}
    assert images[200][:, 0, 0].tolist() == [200, 0, 0] and images[200][:, 3, 0].tolist() == [255, 255, 255]
    assert images[90][:, 0, 0].tolist() == [90, 90, 90]


def test_grayscale_file_in_rgb_folder_is_widened_but_not_the_reverse(tmp_path):
    save(tmp_path / "rgb" / "0.png", np.zeros((4, 4, 3)))
    save(tmp_path / "rgb" / "1.png", np.full((4, 4), 7))
    assert get_dataset(f"folder:{tmp_path / 'rgb'}").load("train", tmp_path / "root").images.shape == (2, 3, 4, 4)
    save(tmp_path / "gray" / "0.png", np.zeros((4, 4)))
    save(tmp_path / "gray" / "1.png", np.zeros((4, 4, 3)))
    with pytest.raises(BenchError, match=r"0\.png is grayscale.*1\.png is colour"):
        get_dataset(f"folder:{tmp_path / 'gray'}").load("train", tmp_path / "root")


def test_mixed_sizes_name_two_files(tmp_path):
    save(tmp_path / "m" / "a.png", np.zeros((8, 8)))
    save(tmp_path / "m" / "b.png", np.zeros((8, 9)))
    with pytest.raises(BenchError, match=r"a\.png is 8x8, .*b\.png is 9x8"):
        get_dataset(f"folder:{tmp_path / 'm'}").load("train", tmp_path / "root")


@pytest.mark.parametrize("make", ["missing", "empty", "no_images", "empty_test", "file"])
def test_unusable_folders_are_bench_errors(tmp_path, make):
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "no_images":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
        (path / ".hidden.png").write_bytes(b"")
    elif make == "empty_test":
        gray_files(path / "train", [1])
        (path / "test").mkdir()
    elif make == "file":
        path.write_text("x")
    with pytest.raises(BenchError, match="folder:"):
        get_dataset(f"folder:{path}")


def test_corrupt_image_names_the_file(tmp_path):
    gray_files(tmp_path / "c", [1])
    (tmp_path / "c" / "zz.png").write_bytes(b"not a png")
    with pytest.raises(BenchError, match=r"zz\.png"):
        get_dataset(f"folder:{tmp_path / 'c'}").load("train", tmp_path / "root")


def test_cache_is_reused_refreshed_and_never_inside_the_folder(tmp_path, monkeypatch):
    data = tmp_path / "imgs"
    gray_files(data, [1, 2, 3])
    before = sorted(p.name for p in data.rglob("*"))
    root = tmp_path / "root"
    get_dataset(f"folder:{data}").load("train", root)
    assert len(list((root / "folders").glob("*.npy"))) == 1
    assert sorted(p.name for p in data.rglob("*")) == before

    decode = folder_mod._decode
    monkeypatch.setattr(folder_mod, "_decode", lambda *a: pytest.fail("decoded again"))
    first = get_dataset(f"folder:{data}").load("train", root)

    save(data / "001.png", np.full((12, 8), 99))  # same name and count, new content
    os.utime(data / "001.png", ns=(1, 1))
    monkeypatch.setattr(folder_mod, "_decode", decode)
    second = get_dataset(f"folder:{data}").load("train", root)
    assert 99 in second.images[:, 0, 0, 0].tolist() and 99 not in first.images[:, 0, 0, 0].tolist()
    assert first.description != second.description  # reference statistics keyed on it are refreshed too
    assert len(list((root / "folders").glob("*.npy"))) == 1  # the stale array was replaced

    # A data root inside the user's folder is not written to.
    inner = tmp_path / "own"
    gray_files(inner, [5])
    get_dataset(f"folder:{inner}").load("train", inner / "cache")
    assert not (inner / "cache").exists()


@pytest.mark.shared_data
def test_cifar10_jpeg_subset(shared_data, tmp_path):
    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    with tarfile.open(archive) as tar:
        members = []
        for m in tar:  # the archive starts with train/<class>/; stop early instead of reading 60k entries
            if m.isfile() and m.name.lower().endswith(".jpg"):
                members.append(m)
                if len(members) == 300:
                    break
        tar.extractall(tmp_path, members=members, filter="data")
    train_dir = tmp_path / "cifar10-jpeg" / "train"
    ds = get_dataset(f"folder:{train_dir}")
    assert ds.info.image_shape == (3, 32, 32)
    split = ds.load("train", tmp_path / "root")
    assert split.images.shape == (300, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.labels is not None and split.images.float().std() > 30  # real photos, not blanks
