"""Kernel Inception Distance from features (PROTOCOL §5), in float64.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs") is the unbiased MMD² estimate with the cubic
polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets:

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (m(m−1)) − 2 Σ_{i,j} k(x_i, y_j) / m²

(the "unbiased" estimator of MMD-GAN's compute_scores.py, which torch-fidelity adopted; the cross
term keeps its diagonal). Mean and std (ddof = 0) over the subsets are reported.

Subsets are drawn exactly as torch-fidelity 0.4's `kid_features_to_metric`: one
np.random.RandomState(seed), seed 2020 by default; for each subset, `choice(n, m, replace=False)`
for its input1 and then for its input2. torch-fidelity's convention is input1 = generated,
input2 = real, so we draw the fake subset first: `kid(real, fake, seed=s)` equals torch-fidelity's
`calculate_kid(input1=fake, input2=real, rng_seed=s)` on the same features (the estimator itself
is symmetric in its two sets; only the draw order matters).

Fewer samples than `subset_size`: torch-fidelity refuses; we use m = min(n_real, n_fake) and say so
in the result (`subset_size`, `subset_size_reduced`). torch-fidelity computes the kernel in the
features' dtype (float32 for its extractors); we always use float64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

DEFAULT_SEED = 2020  # torch-fidelity's rng_seed


@dataclass(frozen=True)
class KIDResult:
    """Unpacks as (mean, std); the other fields are the protocol behind the number."""

    mean: float
    std: float
    subsets: int
    subset_size: int  # the m actually used
    subset_size_reduced: bool  # True when fewer samples than the requested subset size existed
    seed: int

    def __iter__(self):
        return iter((self.mean, self.std))

    def protocol(self) -> dict:
        out = asdict(self)
        del out["mean"], out["std"]
        return {"kid": "unbiased MMD^2, k(x,y)=(x.y/d+1)^3, float64, torch-fidelity subset draws", **out}


def _as_tensor(x, device) -> torch.Tensor:
    t = x.detach() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"features must be [N, d], got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float64)


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = DEFAULT_SEED, device=None) -> KIDResult:
    """KID between feature sets real [N1, d] and fake [N2, d] (numpy arrays or torch tensors).

    Runs on `device` (default: the device of `real` when it is a tensor, else the CPU).
    """
    if device is None:
        device = real.device if torch.is_tensor(real) else "cpu"
    x, y = _as_tensor(real, device), _as_tensor(fake, device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"need at least 2 samples in each set, got {len(x)} real and {len(y)} fake")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("features contain NaN or infinity")
    d = x.shape[1]

    def kernel(a, b):
        return (a @ b.T / d + 1) ** 3

    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for s in range(subsets):
        fi = torch.from_numpy(rng.choice(len(y), m, replace=False)).to(device)  # fake first: torch-fidelity's input1
        ri = torch.from_numpy(rng.choice(len(x), m, replace=False)).to(device)
        a, b = x[ri], y[fi]
        k_aa, k_bb = kernel(a, a), kernel(b, b)
        within = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
        mmds[s] = float(within - 2 * kernel(a, b).sum() / (m * m))
    return KIDResult(float(mmds.mean()), float(mmds.std()), subsets, m, m < subset_size, seed)
