"""The feature-extractor interface and the one pass that turns images into features.

Every metric (FID now; KID, IS, precision/recall later) is computed from the dict that
`extract_features` returns, so a set of images goes through the network exactly once.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.numerics import FEATURES, Numerics


class FeatureExtractor(torch.nn.Module):
    """A network mapping float images [N, 3, H, W] with values in [0, 255] to features.

    Subclasses set the class attributes and implement `forward` and `protocol`.
    `forward` returns {"features": float32 [N, feature_dim]} plus "logits" (the 1008 Inception
    classes without bias, for the Inception Score) when `has_logits` is True.
    """

    name: str = "abstract"
    feature_dim: int = 0
    has_logits: bool = False
    standard: bool = True  # False for test-only extractors: tables mark their numbers non-standard
    # Flags in force while features are extracted (bench/numerics.py): true float32, whatever the
    # caller trains with, so that reference statistics and FIDs never depend on TF32.
    numerics: Numerics = FEATURES

    def protocol(self) -> dict:
        """JSON-serialisable description of everything that changes the features (weights, resize, input)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")


def extract_features(
    extractor: FeatureExtractor,
    images,
    batch_size: int = 64,
    device=None,
    progress: bool = True,
    on_device: bool = False,
) -> dict:
    """Features (and logits, when the extractor has them) of `images` as float64 numpy arrays, or
    with `on_device` as float64 tensors left on the extractor's device (no copy to the host).

    `images`: uint8 [N, C, H, W] in 0..255 (real data) or float [N, C, H, W] in [0, 1] (generated
    samples). Floats are multiplied by 255 and NOT quantised (PROTOCOL §5, as compare_gan fed its
    generator's output), nor clamped. One-channel images are repeated to three. Batches are
    moved to the extractor's device before conversion, so uint8 data crosses the bus at 1 byte/px.
    The network runs under `extractor.numerics`; the caller's flags are restored afterwards.
    """
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        scale = 1.0
    elif images.is_floating_point():
        scale = 255.0
    else:
        raise ValueError(f"images must be uint8 in 0..255 or float in [0, 1], got {images.dtype}")
    device = extractor.device if device is None else torch.device(device)
    if device.type != extractor.device.type or device.index not in (None, extractor.device.index):
        raise ValueError(f"extractor is on {extractor.device}, not {device}: build it with get_extractor(..., device=...)")

    chunks: dict[str, list] = {}
    bar = tqdm(total=len(images), desc=f"features ({extractor.name})", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    with torch.inference_mode(), extractor.numerics.applied(), bar:
        for batch in images.split(batch_size):
            x = batch.to(device, non_blocking=True).to(torch.float32) * scale
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            for key, value in extractor(x).items():
                chunks.setdefault(key, []).append(value.to(device if on_device else "cpu", torch.float64))
            bar.update(len(batch))
    if not chunks:  # no images
        return {"features": np.zeros((0, extractor.feature_dim))}
    out = {key: torch.cat(parts) for key, parts in chunks.items()}
    return out if on_device else {key: value.numpy() for key, value in out.items()}
