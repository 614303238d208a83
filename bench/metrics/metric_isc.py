"""Inception Score from Inception logits (PROTOCOL §5).

IS = exp(E_x KL(p(y|x) ‖ p(y))) per split, reported as mean and std (ddof = 0) over the splits,
following the OpenAI reference (Salimans et al. 2016, improved-gan/inception_score/model.py) and
torch-fidelity's `isc_features_to_metric`:

- inputs are the 1008 logits of the 2015-12-05 graph WITHOUT the classifier bias, which is what
  the TF graph's softmax consumed ("logits_unbiased" in torch-fidelity);
- split i holds samples [i·N//splits, (i+1)·N//splits), p(y) is that split's mean of p(y|x);
- float64 throughout, log-probabilities from log_softmax so that tiny probabilities cost no NaN.

Order: the OpenAI reference splits the samples in the order given; torch-fidelity by default
first permutes them with np.random.RandomState(2020) (`samples_shuffle=True`). We do not shuffle:
the samples a trial generates are already i.i.d., and the number then depends on nothing but
the logits. torch-fidelity reproduces ours with `samples_shuffle=False`.
"""

from __future__ import annotations

import numpy as np
import torch


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` consecutive splits of logits [N, C]."""
    z = logits.detach() if torch.is_tensor(logits) else torch.as_tensor(np.asarray(logits))
    if z.dim() != 2 or not z.is_floating_point():
        raise ValueError(f"logits must be a float array [N, classes], got {z.dtype} {tuple(z.shape)}")
    n = z.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"need 1 <= splits <= N, got splits={splits} for N={n}")
    if not torch.isfinite(z).all():
        raise ValueError("logits contain NaN or infinity")
    log_p = torch.log_softmax(z.to(torch.float64), dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        p = part.exp()
        log_py = torch.log(p.mean(dim=0))
        # A class with p(y) = 0 has p(y|x) = 0 for every x in the split: its KL term is 0, not 0·inf.
        kl = torch.where(p > 0, p * (part - log_py), torch.zeros_like(p)).sum(dim=1)
        scores.append(float(kl.mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
