"""The generated convex-polygon dataset (PROTOCOL §3): pixels, determinism, splits, cache."""

import numpy as np
import pytest
import torch

from bench.data import get_dataset
from bench.data import triangles as tri
from bench.errors import BenchError


@pytest.fixture(scope="module")
def sample():
    return tri.generate_triangles(0, 1200)


def dark_mass(images):
    return (255.0 - images.astype(np.float64)) / 255.0


def test_shape_dtype_and_range(sample):
    assert sample.shape == (1200, 28, 28) and sample.dtype == np.uint8
    assert sample.min() == 0 and sample.max() == 255  # fully covered and untouched pixels both occur


def test_dark_polygon_on_white_background(sample):
    corners = sample[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()
    centre = sample[:, 13:15, 13:15].astype(float).mean(axis=(1, 2))
    assert (centre < 128).all()  # the area centroid is inside a convex polygon
    assert np.median(centre) == 0


def test_area_is_plausible(sample):
    # Vertices on a circle of radius 10.5 px: an equilateral triangle has 143 px², the thinnest
    # allowed one (gaps of 230°, 10°, 120°) about 15 px².
    area = dark_mass(sample).sum(axis=(1, 2))
    assert area.min() > 14 and area.max() < 144
    assert 95 < area.mean() < 115


def test_centre_of_mass_is_the_image_centre(sample):
    mass = dark_mass(sample)
    centres = np.arange(28) + 0.5
    rows = (mass.sum(2) * centres).sum(1) / mass.sum((1, 2))
    cols = (mass.sum(1) * centres).sum(1) / mass.sum((1, 2))
    # Exact up to the polygon parts clipped at the border and the 8x sampling.
    assert np.abs(rows - 14).max() < 0.3 and np.abs(cols - 14).max() < 0.3
    assert abs(rows.mean() - 14) < 0.01 and abs(cols.mean() - 14) < 0.01


def test_deterministic_and_any_range_equals_the_same_slice(sample):
    assert np.array_equal(tri.generate_triangles(0, 1200), sample)
    # across a chunk boundary, and from an offset that is no chunk multiple
    assert np.array_equal(tri.generate_triangles(490, 1010), sample[490:1010])
    assert np.array_equal(tri.generate_triangles(7, 8), sample[7:8])
    assert tri.generate_triangles(5, 5).shape == (0, 28, 28)


def test_seeds_and_rotations_differ(sample):
    other = tri.generate_triangles(0, 50, seed=1)
    assert (other != sample[:50]).any(axis=(1, 2)).all()
    full = tri.generate_triangles(0, 50, rotation="full")
    assert (full != sample[:50]).any()
    # Same vertex draws, only the rotation differs: the area is preserved up to rasterisation.
    assert np.abs(dark_mass(full).sum((1, 2)) - dark_mass(sample[:50]).sum((1, 2))).max() < 1.0


def test_study_rotation_is_at_most_two_pi_degrees():
    draws = np.random.default_rng(0).random((tri.TOTAL, tri.N_VERTICES + 1))[:, -1]
    study, full = tri.polygon_vertices(0, "study"), tri.polygon_vertices(0, "full")
    assert study.shape == (tri.TOTAL, 3, 2)

    def angle(v):  # direction of vertex 0 from the centroid
        d = v[:, 0] - v.mean(1)
        return np.arctan2(d[:, 1], d[:, 0])

    # Both rotate the same unrotated polygon; they differ by the difference of their angles.
    diff = np.angle(np.exp(1j * (angle(full) - angle(study))))
    expected = np.angle(np.exp(-1j * (draws * 2 * np.pi - np.radians(draws * 2 * np.pi))))
    assert np.allclose(diff, expected, atol=1e-9)


def test_rasterise_is_exact_and_orientation_independent():
    square = torch.tensor([[[10.0, 10.0], [18.0, 10.0], [18.0, 18.0], [10.0, 18.0]]], dtype=torch.float64)
    img = tri.rasterise(square)[0].numpy()
    expected = np.full((28, 28), 255, np.uint8)
    expected[10:18, 10:18] = 0
    assert np.array_equal(img, expected)
    assert np.array_equal(tri.rasterise(square.flip(1))[0].numpy(), expected)
    half = torch.tensor([[[10.0, 10.0], [18.0, 10.0], [18.0, 10.5], [10.0, 10.5]]], dtype=torch.float64)
    assert tri.rasterise(half)[0, 12, 10] == 128  # 32 of 64 samples: round half up of 127.5
    # rows follow x, columns follow y (the original's np.mgrid convention)
    thin = torch.tensor([[[2.0, 20.0], [26.0, 20.0], [26.0, 21.0], [2.0, 21.0]]], dtype=torch.float64)
    assert (tri.rasterise(thin)[0, 2:26, 20] == 0).all()


def test_bad_arguments_are_bench_errors():
    with pytest.raises(BenchError, match="outside"):
        tri.generate_triangles(0, tri.TOTAL + 1)
    with pytest.raises(BenchError, match="study, full"):
        tri.generate_triangles(0, 1, rotation="wide")


def test_loader_splits_and_cache(tmp_path, monkeypatch):
    ds = get_dataset("triangles")
    assert ds.info.image_shape == (1, 28, 28) and (ds.info.steps, ds.info.eval_every) == (15_625, 3_906)
    sizes = {}
    for split in ("train", "reference", "holdout"):
        s = ds.load(split, tmp_path)
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 28, 28) and s.labels is None
        sizes[split] = len(s)
        if split == "reference":
            assert torch.equal(s.images[:20, 0], torch.from_numpy(tri.generate_triangles(60_000, 60_020)))
    assert sizes == {"train": 60_000, "reference": 10_000, "holdout": 10_000}
    assert tri.cache_path(tmp_path).is_file()
    assert not list(tri.cache_path(tmp_path).parent.glob(".*.tmp"))
    # Later loads read the cache instead of generating.
    monkeypatch.setattr(tri, "generate_triangles", lambda *a, **k: pytest.fail("regenerated"))
    assert len(ds.load("holdout", tmp_path)) == 10_000


def test_unwritable_root_says_how_to_choose_another(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(BenchError, match=r"not writable.*--data-root.*BENCH_DATA"):
        get_dataset("triangles").load("train", blocker / "root")
