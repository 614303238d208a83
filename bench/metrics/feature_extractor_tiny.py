"""A tiny fixed random feature extractor, for tests and smoke runs only (never a reported number).

Weights come from numpy's PCG64 generator with a fixed seed, so every machine and run builds the
same extractor without shipping a file; it runs in microseconds per image on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench.metrics.feature_extractor_base import FeatureExtractor

SIZE = 16  # images are area-downsampled to SIZE x SIZE before the projection


class TinyExtractor(FeatureExtractor):
    name = "tiny-random-projection"
    feature_dim = 64
    has_logits = True  # 10 random "classes", so Inception-Score code paths can be tested cheaply
    standard = False

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = seed
        rng = np.random.default_rng(seed)
        d_in = 3 * SIZE * SIZE
        self.register_buffer("projection", torch.from_numpy(rng.standard_normal((d_in, self.feature_dim)) / np.sqrt(d_in)).float())
        self.register_buffer("classifier", torch.from_numpy(rng.standard_normal((self.feature_dim, 10))).float())

    def protocol(self) -> dict:
        return {"extractor": self.name, "features": f"tanh(random projection) {self.feature_dim}", "seed": self.seed,
                "resize": f"area-{SIZE}", "input": "float [0,255], (x-128)/128", "standard": False,
                "note": "non-standard: for tests only"}

    def forward(self, x: torch.Tensor) -> dict:
        x = F.adaptive_avg_pool2d(x.to(torch.float32), SIZE)
        x = (x - 128) / 128
        features = torch.tanh(x.flatten(1) @ self.projection)  # bounded and non-linear, unlike the pixels
        return {"features": features, "logits": features @ self.classifier}
