"""Fréchet Inception Distance from features (PROTOCOL §5), in float64.

FID = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1 Σ2)^½, with Tr (Σ1 Σ2)^½ computed as the sum of the
square roots of the eigenvalues of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½ (same spectrum as Σ1 Σ2).
Symmetric eigensolvers need no complex arithmetic and cannot fail the way `scipy.linalg.sqrtm`
does on singular covariances (fewer samples than dimensions); negative round-off eigenvalues are
clamped at 0.

Trials compute it in float64 torch on their device (`fid_to_reference`), with the reference
side's Σ_r^½ made once (bench/metrics/reference_side.py); the NumPy form is the API for arrays.
"""

from __future__ import annotations

import numpy as np
import torch


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof = 1, as np.cov(rowvar=False)) of features [N, d], in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, d], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    sigma1, sigma2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.ndim != 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"want mu [d] and sigma [d, d] for both sets, got mu {mu1.shape}, {mu2.shape} "
                         f"and sigma {sigma1.shape}, {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or infinity")
    root1 = _sqrt_psd(sigma1)
    m = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrise away round-off before the symmetric solver
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(real, fake) -> float:
    """FID between two feature sets [N1, d] and [N2, d]."""
    (mu1, s1), (mu2, s2) = feature_statistics(real), feature_statistics(fake)
    return frechet_distance(mu1, s1, mu2, s2)


def statistics_torch(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`feature_statistics` on the features' device, in float64."""
    f = features.to(torch.float64)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, d], got shape {tuple(f.shape)}")
    mu = f.mean(dim=0)
    centered = f - mu
    return mu, centered.T @ centered / (f.shape[0] - 1)


def sqrt_psd_torch(sigma: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def fid_to_reference(reference, fake_features: torch.Tensor) -> float:
    """FID of fake features [N, d] against a reference side (mu, sigma_root, trace; see
    bench/metrics/reference_side.py), in float64 on the reference's device; one host read."""
    mu_f, sigma_f = statistics_torch(fake_features.to(reference.mu.device))
    m = reference.sigma_root @ sigma_f @ reference.sigma_root
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    diff = reference.mu - mu_f
    return float(diff @ diff + reference.trace + torch.trace(sigma_f) - 2 * tr_covmean)
