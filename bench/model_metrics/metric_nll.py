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

from bench.metrics.registry import MetricInputs, MetricOutput, register_metric
from bench.numerics import METRICS
from bench.progress import bar

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

    @classmethod
    def of(cls, per_example: torch.Tensor, k: int) -> "NLLEstimate":
        """The mean of per-example NLLs in nats, with its standard error over the examples."""
        n = len(per_example)
        se = per_example.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
        return cls(per_example.mean().item(), se, k, n)


def per_example_nll(log_weights: torch.Tensor) -> torch.Tensor:
    """−log (1/k) Σ_i exp(log w_i) of each example (column) of log weights [k, N], in float64."""
    lw = log_weights.to(torch.float64)
    return -(torch.logsumexp(lw, dim=0) - math.log(lw.shape[0]))


def importance_weighted_nll(log_weights: torch.Tensor) -> NLLEstimate:
    """−log (1/k) Σ exp(log w) per example from log weights [k, N], log w = log p(x, z) − log q(z|x).

    Computed with logsumexp in float64 so k = 10,000 weights of order −1000 nats do not underflow.
    """
    if log_weights.dim() != 2 or log_weights.shape[0] < 1 or log_weights.shape[1] < 1:
        raise ValueError(f"log_weights must be [k >= 1, N >= 1], got {tuple(log_weights.shape)}")
    return NLLEstimate.of(per_example_nll(log_weights), log_weights.shape[0])


LIKELIHOODS = ("discrete", "dequantized", "binarized")
BINARIZE_SEED = 0  # binarised test images are one fixed Bernoulli draw: every checkpoint sees the same
K_CHUNK = 128  # importance samples per call, so that k = 1000 fits in memory at any batch size
NLL_SEED = 0  # dequantisation noise and importance samples: the same at every evaluation point
# The two NLL quantities (record column -> unit); each has its standard error in COLUMN_se. They are
# ranked apart in reports: bits/dim of 8-bit data and nats on binarised images are not comparable.
NLL_UNITS = {"nll_bpd": "bits/dim", "nll_nats_binarized": "nats, binarised images"}


def model_nll(model, images: torch.Tensor, k: int, seed: int = 0, batch: int = 64) -> tuple[dict, dict]:
    """(metrics, protocol) of an explicit model's NLL on 8-bit `images` [N, C, H, W] (uint8).

    Discrete and dequantised models report bits/dim (`nll_bpd`, `nll_bpd_se`); Bernoulli models
    report nats on binarised images (`nll_nats_binarized`, `nll_nats_binarized_se`), labelled so.
    Latent-variable models give the importance-weighted bound with k samples; exact models ignore k;
    a `bound_in_one_call` model (DDPM) computes its own bound from k in one call per batch.
    """
    from bench.models.base import evaluating

    if k < 1:
        raise ValueError(f"the number of importance samples k must be at least 1, got {k}")
    kind = model.likelihood
    if kind not in LIKELIHOODS:
        raise ValueError(f"{type(model).__name__} has no likelihood (likelihood = {kind!r}; accepted: {LIKELIHOODS})")
    if images.dtype != torch.uint8:
        raise ValueError("NLL in bits/dim needs 8-bit images (uint8); this dataset is not 8-bit")
    x = images.float() / 255.0
    if kind == "binarized":
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(BINARIZE_SEED))
    device, dtype = model.device, next(model.parameters()).dtype  # float64 under that reference numerics
    rng = torch.Generator(device=device).manual_seed(seed)
    per_example, used_k = [], 1
    with torch.no_grad(), evaluating(model):
        chunks = x.split(batch)
        label = "NLL (exact)" if model_is_exact(model) else f"NLL bound (k = {k})"
        one_call = model_is_exact(model) or model.bound_in_one_call  # all of k at once, not K_CHUNK at a time
        for chunk in bar(chunks, total=len(chunks), desc=f"{label} on {len(x)} images", unit="batch"):
            chunk = chunk.to(device, dtype)
            rows, drawn = [], 0
            while drawn < k:
                lw = model.log_weights(chunk, k if one_call else min(K_CHUNK, k - drawn), rng).double()
                rows.append(lw)
                drawn += lw.shape[0]
                if one_call:
                    break
            lw = torch.cat(rows)
            used_k = lw.shape[0]
            per_example.append(per_example_nll(lw).cpu())
    estimate = NLLEstimate.of(torch.cat(per_example), used_k)
    n, dims = estimate.n, int(images[0].numel())
    if kind == "binarized":
        metrics = {"nll_nats_binarized": estimate.nats, "nll_nats_binarized_se": estimate.standard_error}
    else:
        bpd, bpd_se = estimate.bits_per_dim(dims, dequantized=kind == "dequantized")
        metrics = {"nll_bpd": bpd, "nll_bpd_se": bpd_se}
    estimator = (model.bound_protocol(k) if model.bound_in_one_call else
                 {"estimator": "exact" if model_is_exact(model) else f"importance-weighted bound, k = {used_k}",
                  "k": used_k})
    protocol = {
        "likelihood": kind, **estimator, "n": n, "dims": dims, "seed": seed,
        "unit": "nats per image on binarised images" if kind == "binarized" else "bits per dimension",
        "data": {"discrete": "8-bit values", "dequantized": "y = (x + u)/256, u ~ U[0,1), +8 bits/dim",
                 "binarized": f"Bernoulli(x/255), one fixed draw (seed {BINARIZE_SEED})"}[kind],
    }
    return metrics, protocol


def model_is_exact(model) -> bool:
    """Exact-likelihood models (no latent variable to integrate) say so with `exact_likelihood`."""
    return bool(getattr(model, "exact_likelihood", False))


@register_metric("nll", columns=tuple(c for unit in NLL_UNITS for c in (unit, f"{unit}_se")),
                 needs=("model", "test_images"), applies_to="explicit", protocol_key="nll", protocol_in="protocol",
                 numerics=METRICS, diverged_if_not_finite=True,
                 description="the model's own likelihood: exact, or the importance-weighted bound with k samples")
def _nll(x: MetricInputs) -> MetricOutput:
    """bits/dim (or nats on binarised images) on the test images; a non-finite one means divergence."""
    metrics, protocol = model_nll(x.model, x.test_images, x.nll_k, seed=NLL_SEED)
    return MetricOutput(metrics, protocol=protocol)
