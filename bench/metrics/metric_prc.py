"""k-nearest-neighbour precision/recall and density/coverage from features (PROTOCOL §5).

Both families describe each set by balls: the radius of a sample is the distance to its k-th
nearest neighbour within its own set, the sample itself excluded (excluded by index, so an exact
duplicate still counts as a neighbour at distance 0).

- Precision/recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric"; the
  conventions of torch-fidelity 0.4's metric_prc.py, default k = 3): precision is the fraction of
  fake samples inside at least one real ball, recall the fraction of real samples inside at least
  one fake ball; "inside" is `<=`.
- Density/coverage (Naeem et al. 2020, clovaai/prdc, default k = 5): only real balls are used;
  density = 1/(k·M) Σ_j Σ_i 1[‖y_j − x_i‖ < r_i] (can exceed 1), coverage = 1/N Σ_i
  1[min_j ‖y_j − x_i‖ < r_i]; "inside" is strict `<`, as in prdc.

torch-fidelity finds the k-th neighbour as `kthvalue(k + 1)` of a row that includes the sample's
own zero distance; clovaai/prdc does the same with np.partition. Excluding the sample by index
gives the same radius whenever its own (round-off) distance is the smallest in its row.

All distances are Euclidean, computed with torch.cdist on the features' device, in row blocks of
`batch_size` so that no more than batch_size × N distances exist at once (10k × 10k × 2048 needs
only a few hundred MB). float64 by default; dtype=torch.float32 halves the cost (torch-fidelity
works in its features' float32).
"""

from __future__ import annotations

import numpy as np
import torch


def _prepare(real, fake, k, device, dtype, fake_balls):
    if device is None:
        device = real.device if torch.is_tensor(real) else "cpu"
    x, y = (t.detach().to(device, dtype) if torch.is_tensor(t)
            else torch.as_tensor(np.asarray(t), dtype=dtype, device=device) for t in (real, fake))
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"want real [N, d] and fake [M, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    smallest = min(len(x), len(y)) if fake_balls else len(x)  # k neighbours need k + 1 samples
    if not len(y) or not 1 <= k < smallest:
        raise ValueError(f"need 1 <= k < number of samples in each set with balls, got k={k}, N={len(x)}, M={len(y)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("features contain NaN or infinity")
    return x, y


def knn_radii(a: torch.Tensor, k: int, batch_size: int = 1024) -> torch.Tensor:
    """Distance from each row of a [N, d] to its k-th nearest other row, computed block by block."""
    radii = []
    for start in range(0, len(a), batch_size):
        block = torch.cdist(a[start:start + batch_size], a)
        rows = torch.arange(len(block), device=a.device)
        block[rows, start + rows] = float("inf")  # the sample itself is no neighbour
        radii.append(block.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def precision_recall(real, fake, k: int = 3, batch_size: int = 1024, device=None, dtype=torch.float64,
                     real_radii=None) -> dict:
    """{"precision", "recall"} of fake [M, d] against real [N, d] (Kynkäänniemi 2019); `real_radii`:
    the real set's k-NN radii when already made (they depend on the real set alone)."""
    x, y = _prepare(real, fake, k, device, dtype, fake_balls=True)
    r_real = knn_radii(x, k, batch_size) if real_radii is None else real_radii.to(x.device, x.dtype)
    r_fake = knn_radii(y, k, batch_size)
    fake_inside = 0
    real_covered = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    # One pass over fake-vs-real distances serves both directions.
    for start in range(0, len(y), batch_size):
        dist = torch.cdist(y[start:start + batch_size], x)
        fake_inside += int((dist <= r_real).any(dim=1).sum())
        real_covered |= (dist <= r_fake[start:start + batch_size, None]).any(dim=0)
    return {"precision": fake_inside / len(y), "recall": float(real_covered.double().mean())}


def density_coverage(real, fake, k: int = 5, batch_size: int = 1024, device=None, dtype=torch.float64,
                     real_radii=None) -> dict:
    """{"density", "coverage"} of fake [M, d] against real [N, d] (Naeem 2020); `real_radii` as above."""
    x, y = _prepare(real, fake, k, device, dtype, fake_balls=False)
    r_real = knn_radii(x, k, batch_size) if real_radii is None else real_radii.to(x.device, x.dtype)
    inside = 0
    nearest_fake = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
    for start in range(0, len(y), batch_size):
        dist = torch.cdist(y[start:start + batch_size], x)
        inside += int((dist < r_real).sum())
        nearest_fake = torch.minimum(nearest_fake, dist.min(dim=0).values)
    return {"density": inside / (k * len(y)), "coverage": float((nearest_fake < r_real).double().mean())}
