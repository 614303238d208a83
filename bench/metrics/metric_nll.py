"""Likelihood bookkeeping for explicit models (PROTOCOL §5, "NLL").

Bits per dimension on 8-bit data: bpd = −log₂ p(x) / D. A model of the 256 discrete values
reports its NLL directly. A continuous density p(y) trained on uniformly dequantised data
y = (x + u)/256 ∈ [0, 1) bounds the discrete likelihood through P(x) ≥ ... = ∫ p(y) dy over the
bin of volume 256⁻ᴰ, so its bits per dimension are −E log p(y)/(D ln 2) + 8.

VAE-type models report the importance-weighted bound log (1/k) Σ_i p(x, z_i)/q(z_i|x), which equals
the ELBO for k = 1 and tightens as k grows (Burda et al. 2016); the reported number uses k ≥ 1000
and carries its standard error over the test examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LN2 = math.log(2.0)
BITS_PER_8BIT_VALUE = 8.0  # log2(256): the dequantisation bin's volume per dimension


def bits_per_dim_discrete(nll_nats: float, num_dims: int) -> float:
    """bpd of a model of the 256 discrete values per dimension (PixelCNN-style)."""
    return nll_nats / (num_dims * LN2)


def bits_per_dim_dequantized(nll_nats: float, num_dims: int) -> float:
    """bpd of a continuous density on y = (x + u)/256: its NLL in nats on y, plus 8 bits per dimension."""
    return nll_nats / (num_dims * LN2) + BITS_PER_8BIT_VALUE


@dataclass(frozen=True)
class NLLEstimate:
    """Mean negative log-likelihood (bound) over examples, in nats per example, with its standard error."""

    nats: float
    standard_error: float
    k: int
    n: int

    def bits_per_dim(self, num_dims: int, dequantized: bool) -> tuple[float, float]:
        """(bpd, its standard error) for 8-bit data; `dequantized` for densities on (x + u)/256."""
        convert = bits_per_dim_dequantized if dequantized else bits_per_dim_discrete
        return convert(self.nats, num_dims), self.standard_error / (num_dims * LN2)

    def as_dict(self) -> dict:
        return {"nll_nats": self.nats, "nll_nats_se": self.standard_error, "k": self.k, "n": self.n}


def importance_weighted_nll(log_weights: torch.Tensor) -> NLLEstimate:
    """−log (1/k) Σ exp(log w) per example from log weights [k, N], log w = log p(x, z) − log q(z|x).

    Computed with logsumexp in float64 so k = 10,000 weights of order −1000 nats do not underflow.
    """
    if log_weights.dim() != 2 or log_weights.shape[0] < 1 or log_weights.shape[1] < 1:
        raise ValueError(f"log_weights must be [k >= 1, N >= 1], got {tuple(log_weights.shape)}")
    lw = log_weights.to(torch.float64)
    k, n = lw.shape
    per_example = -(torch.logsumexp(lw, dim=0) - math.log(k))
    se = per_example.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return NLLEstimate(per_example.mean().item(), se, k, n)
