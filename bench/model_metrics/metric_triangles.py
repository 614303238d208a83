"""Precision, recall and F1 on the triangles dataset (PROTOCOL §3 and §5), with every choice recorded.


precision = share of n generated samples within squared-L2 pixel distance δ of the triangle
manifold; recall = share of the first n "reference" (test) triangles x that the generator
reproduces within δ, ‖G(z*) − x‖² ≤ δ; F1 = their harmonic mean. Distances are sums over the
28×28 pixels of squared differences of values in [0, 1] (dark polygon 0 on white 1). The study
published neither δ nor the manifold-distance method nor the inversion settings: ours follow.

The parts: the rasteriser (triangle_raster.py), the distance to the manifold
(triangle_manifold.py), δ (triangle_delta.py) and the generator's inversion
(triangle_inversion.py). This module combines them into the registered metric "triangle_pr".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from bench.data import triangles as tri
from bench.metrics.registry import MetricInputs, MetricOutput, register_metric
from bench.model_metrics.triangle_delta import DEFAULT_MARGIN, calibrate_delta
from bench.model_metrics.triangle_inversion import Inversion, invert_generator
from bench.model_metrics.triangle_manifold import ManifoldSearch, manifold_distance
from bench.numerics import METRICS

TRIANGLE_PR_SAMPLES = 1024  # PROTOCOL §5; fewer when a trial evaluates fewer


@dataclass
class TrianglePR:
    """Precision, recall and F1 on triangles with the choices behind them (`protocol()`)."""

    precision: float
    recall: float
    f1: float
    delta: float
    n: int
    settings: dict = field(default_factory=dict)
    # Per-image distances, kept so that other thresholds can be read off without a rerun.
    sample_distances: Optional[torch.Tensor] = field(default=None, repr=False)
    test_distances: Optional[torch.Tensor] = field(default=None, repr=False)

    def protocol(self) -> dict:
        # A measure that could not be taken (recall of a sampler that cannot be inverted) is None.
        value = lambda v: None if isinstance(v, float) and math.isnan(v) else v
        return {"precision": value(self.precision), "recall": value(self.recall), "f1": value(self.f1),
                "delta": self.delta, "n": self.n, **self.settings}

    def with_delta(self, delta: float) -> "TrianglePR":
        """The same run scored at another threshold (needs the stored distances)."""
        precision = float((self.sample_distances <= delta).double().mean())
        recall = float((self.test_distances <= delta).double().mean())
        settings = {**self.settings, "delta_calibration": f"re-scored at {delta} by the caller"}
        return TrianglePR(precision, recall, f1_score(precision, recall), float(delta), self.n, settings,
                          self.sample_distances, self.test_distances)


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def triangle_precision_recall(model, n: int = 1024, test_images: Optional[torch.Tensor] = None,
                              delta: Optional[float] = None, seed: int = 0,
                              search: ManifoldSearch = ManifoldSearch(), inversion: Inversion = Inversion(),
                              quantile: float = 0.99, margin: float = DEFAULT_MARGIN,
                              holdout_images: Optional[torch.Tensor] = None, batch: int = 1024,
                              cache_dir: Optional[Path] = None, calibration: str = "nearest-train",
                              data_root: Optional[Path] = None) -> TrianglePR:
    """Precision and recall of `model` on triangles (PROTOCOL §5), and F1.

    Samples: n draws of the model's prior from `seed` (a CPU generator: the same z on any device),
    made by `model.generate` (eval mode). Test triangles: the first n of the "reference" split
    unless `test_images` is given. δ: `calibrate_delta` on `holdout_images` (default: the whole
    holdout split) unless given. The inversion's own seed is `inversion.seed`.
    """
    device = model.device
    z = model.sample_noise(n, generator=torch.Generator().manual_seed(seed), device="cpu").to(device)
    samples = torch.cat([model.generate(zb).reshape(len(zb), -1).float() for zb in z.split(batch)])
    if test_images is None:
        start = tri.SPLIT_RANGES["reference"][0]
        test_images, test_desc = torch.from_numpy(tri.generate_triangles(start, start + n)), \
            f"triangles v{tri.VERSION} seed 0 rotation study, reference [{start}:{start + n}]"
    else:
        test_desc = f"caller's {len(test_images)} images"
    if delta is None:
        delta = calibrate_delta(holdout_images, quantile, margin, search, cache_dir=cache_dir, method=calibration,
                                data_root=data_root)
        held_out = ("the whole holdout split [70000:80000]" if holdout_images is None
                    else f"the caller's {len(holdout_images)} held-out images")
        delta_desc = (f"the {quantile} quantile ('higher') of the squared distance from {held_out} to their nearest "
                      "of the 60k training triangles" if calibration == "nearest-train" else
                      f"(1 + {margin}) x the {quantile} quantile ('higher') of the manifold distances of {held_out}")
    else:
        delta_desc = "given by the caller"
    sample_d = manifold_distance(samples, search)
    if getattr(model, "invertible_by_gradient", True):
        _, test_d = invert_generator(model, test_images, inversion.restarts, inversion.steps, inversion.lr,
                                     inversion.seed, inversion.pool, inversion.batch)
    else:  # a sampler that is not differentiable in z (PixelCNN): recall is unavailable, not guessed
        test_d = torch.empty(0)
    precision = float((sample_d <= delta).double().mean()) if n else math.nan
    recall = float((test_d <= delta).double().mean()) if len(test_d) else math.nan
    settings = {
        "metric": "triangles precision/recall (PROTOCOL §5, study-specific details ours)",
        "distance": "squared L2 over 28x28 pixels, values in [0,1]; inside iff <= delta",
        "delta_calibration": delta_desc,
        "manifold": {"method": "bank of exact manifold images on a phi grid -> top_k nearest -> "
                               "Levenberg-Marquardt on a differentiable copy of the rasteriser -> "
                               "LM polish of the best at sharper sample ramps -> every candidate "
                               "scored by the dataset's own rasteriser (8-bit), minimum kept",
                     "rotation": "study", **asdict(search)},
        "inversion": {"optimizer": "Adam(betas=(0.9, 0.999)) on z, eval mode, best iterate kept",
                      "z_clamp": "[-1, 1]" if model.noise == "uniform" else None, **asdict(inversion)},
        "samples": f"{n} draws of the model's {model.noise} prior, torch.Generator (CPU) seed {seed}",
        "test_set": test_desc,
        "n_test": len(test_d),
        "triangles_version": tri.VERSION,
    }
    return TrianglePR(precision, recall, f1_score(precision, recall), float(delta), n, settings,
                      sample_d.cpu(), test_d.cpu())


@register_metric("triangle_pr", columns=("tri_precision", "tri_recall", "tri_f1"), needs=("model",),
                 applies_to="triangles", protocol_key="triangles", numerics=METRICS,
                 description="the study's precision/recall/F1: manifold distance, recall by inversion")
def _triangle_pr(x: MetricInputs) -> MetricOutput:
    """The number triangles are ranked by, in true float32 as the features (the registry's `numerics`)."""
    model = x.model
    tri_pr = triangle_precision_recall(model, n=min(TRIANGLE_PR_SAMPLES, x.n_fake), cache_dir=x.cache_dir,
                                       data_root=x.data_root)
    out = MetricOutput({"tri_precision": tri_pr.precision}, protocol=tri_pr.protocol())
    if math.isnan(tri_pr.recall):
        out.unavailable.update({"tri_recall": f"{type(model).__name__} cannot be inverted by gradient "
                                              "descent on its input noise", "tri_f1": "needs recall"})
    else:
        out.values.update(tri_recall=tri_pr.recall, tri_f1=tri_pr.f1)
    return out
