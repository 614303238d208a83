"""Precision and recall for distributions (PRD) from features (PROTOCOL §5).

Sajjadi et al. 2018, "Assessing Generative Models via Precision and Recall"; conventions from
their prd_score.py (msmsajjadi/precision-recall-distributions, identical to
google/compare_gan compare_gan/src/prd_score.py):

- argument order (eval, ref): eval is the model's samples, ref the real data;
- the pooled features are clustered into `num_clusters` (20) clusters, and each set becomes the
  histogram of its samples over the clusters (normalised counts);
- for slopes λ = tan(θ), θ on `num_angles` (1001) equally spaced angles from ε to π/2 − ε with
  ε = 1e-10 (the end points 0 and π/2 themselves would give slopes 0 and ∞):
  precision(λ) = Σ_ω min(λ·ref(ω), eval(ω)), recall(λ) = precision(λ) / λ;
- curves are averaged over `num_runs` (10) independent clusterings;
- summaries: max over the curve of F_β = (1 + β²) p r / (β² p + r + 1e-10) for β = 8 and 1/8.
- equal set sizes are required unless enforce_balance=False (unequal sets bias the clustering).

Deviations, both deliberate:
- Clustering: the reference calls sklearn's MiniBatchKMeans(n_clusters, n_init=10) without a
  seed, so its numbers are not reproducible and sklearn is not a dependency here. We run our own
  k-means in float64 numpy: `n_init` k-means++ seedings, the one of least inertia refined by
  full-batch Lloyd iterations until the labels or centres settle (MiniBatchKMeans also keeps only
  the best of its n_init seedings and refines that one), all from np.random.default_rng(seed), so a
  seed fixes the result. scipy.cluster.vq.kmeans2 was not used: one seeding per call and a fixed
  iteration count, with no convergence test.
- recall = precision / λ can exceed 1 by a few ulps, which the reference's own F_β check rejects;
  both curves are clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SEED = 2020


@dataclass(frozen=True)
class PRDResult:
    precision: np.ndarray  # [num_angles], run average
    recall: np.ndarray  # [num_angles], run average
    f_beta: float  # max F_8: high when the model covers the reference (recall-like)
    f_beta_inv: float  # max F_1/8: high when the model's samples are realistic (precision-like)


def prd_from_histograms(eval_dist, ref_dist, num_angles: int = 1001, epsilon: float = 1e-10):
    """(precision, recall) curves [num_angles] of discrete distributions eval_dist against ref_dist."""
    if not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon must be in (0, 0.1), got {epsilon}")
    if int(num_angles) != num_angles or not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be an integer in [3, 1e6], got {num_angles}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, int(num_angles)))
    eval_dist, ref_dist = np.asarray(eval_dist, dtype=np.float64), np.asarray(ref_dist, dtype=np.float64)
    precision = np.minimum(ref_dist[None, :] * slopes[:, None], eval_dist[None, :]).sum(axis=1)
    return precision, precision / slopes


def f_beta_score(precision, recall, beta: float = 1.0, epsilon: float = 1e-10) -> np.ndarray:
    """F_beta of each (precision, recall) pair; epsilon keeps p = r = 0 at 0 instead of NaN."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    if not (((precision >= 0) & (precision <= 1)).all() and ((recall >= 0) & (recall <= 1)).all()):
        raise ValueError("precision and recall must lie in [0, 1]")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall + epsilon)


def max_f_beta_pair(precision, recall, beta: float = 8.0) -> tuple[float, float]:
    """(max F_beta, max F_1/beta) over a PRD curve."""
    return float(np.max(f_beta_score(precision, recall, beta))), float(np.max(f_beta_score(precision, recall, 1 / beta)))


def _sq_dists(x, x_sq, centers):
    return np.maximum(x_sq[:, None] - 2 * x @ centers.T + (centers ** 2).sum(axis=1)[None, :], 0)


def _kmeans_pp(x, x_sq, k, rng, n_init):
    """Arthur & Vassilvitskii's seeding, n_init of them side by side (one pass over x per centre
    serves all); returns the centres [k, d] of the seeding with the least inertia."""
    chosen = np.empty((n_init, k), dtype=np.int64)
    chosen[:, 0] = rng.integers(len(x), size=n_init)
    d2 = _sq_dists(x, x_sq, x[chosen[:, 0]])  # [N, n_init]: squared distance to the nearest chosen centre
    for j in range(1, k):
        cum = np.cumsum(d2, axis=0)
        draws = rng.random(n_init) * cum[-1]
        for s in range(n_init):
            if cum[-1, s] <= 0:  # every point already on a centre (fewer distinct points than k)
                chosen[s, j] = rng.integers(len(x))
            else:  # probability proportional to d2
                chosen[s, j] = min(int(np.searchsorted(cum[:, s], draws[s], "right")), len(x) - 1)
        d2 = np.minimum(d2, _sq_dists(x, x_sq, x[chosen[:, j]]))
    return x[chosen[int(np.argmin(d2.sum(axis=0)))]].copy()


def kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 10, max_iter: int = 300,
                  tol: float = 1e-4) -> np.ndarray:
    """Cluster labels [N] of x [N, d]: best of n_init k-means++ seedings, refined by Lloyd's algorithm.

    Lloyd stops when the labels repeat, or when the centres' total squared shift falls to
    tol × the mean per-feature variance (sklearn's KMeans criterion and default tol): on
    unstructured data the last labels creep for hundreds of iterations without changing the
    histograms that matter here.
    """
    x = np.asarray(x, dtype=np.float64)
    x_sq = (x ** 2).sum(axis=1)
    threshold = tol * x.var(axis=0).mean()
    centers = _kmeans_pp(x, x_sq, k, rng, n_init)
    labels = None
    for _ in range(max_iter):
        d2 = _sq_dists(x, x_sq, centers)
        new = d2.argmin(axis=1)  # ties go to the lowest cluster index
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        one_hot = np.zeros((k, len(x)))
        one_hot[labels, np.arange(len(x))] = 1
        old, centers = centers, one_hot @ x / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # an empty cluster restarts at the points farthest from their centres
            far = np.argsort(-d2[np.arange(len(x)), labels], kind="stable")[:len(empty)]
            centers[empty] = x[far]
        elif ((centers - old) ** 2).sum() <= threshold:
            labels = _sq_dists(x, x_sq, centers).argmin(axis=1)
            break
    return labels


def prd(eval_features, ref_features, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10,
        enforce_balance: bool = True, seed: int = DEFAULT_SEED, n_init: int = 10) -> PRDResult:
    """PRD curves of eval_features [N, d] (model) against ref_features [M, d] (data), max F_8 and F_1/8."""
    eval_x, ref_x = np.asarray(eval_features, dtype=np.float64), np.asarray(ref_features, dtype=np.float64)
    if eval_x.ndim != 2 or ref_x.ndim != 2 or eval_x.shape[1] != ref_x.shape[1]:
        raise ValueError(f"want eval [N, d] and ref [M, d], got {eval_x.shape} and {ref_x.shape}")
    if not len(eval_x) or not len(ref_x):
        raise ValueError("both feature sets must hold samples")
    if enforce_balance and len(eval_x) != len(ref_x):
        raise ValueError(f"eval has {len(eval_x)} samples and ref {len(ref_x)}: unequal sets bias the clustering; "
                         f"pass enforce_balance=False to proceed anyway")
    if not 1 <= num_clusters <= len(eval_x) + len(ref_x):
        raise ValueError(f"need 1 <= num_clusters <= number of pooled samples, got {num_clusters}")
    if not (np.isfinite(eval_x).all() and np.isfinite(ref_x).all()):
        raise ValueError("features contain NaN or infinity")
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([eval_x, ref_x])
    curves = []
    for _ in range(num_runs):
        labels = kmeans_labels(pooled, num_clusters, rng, n_init)
        eval_hist = np.bincount(labels[:len(eval_x)], minlength=num_clusters) / len(eval_x)
        ref_hist = np.bincount(labels[len(eval_x):], minlength=num_clusters) / len(ref_x)
        curves.append(prd_from_histograms(eval_hist, ref_hist, num_angles))
    precision, recall = (np.clip(np.mean(c, axis=0), 0, 1) for c in zip(*curves))
    return PRDResult(precision, recall, *max_f_beta_pair(precision, recall, beta=8))
