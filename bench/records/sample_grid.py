"""A trial's sample grid: the PNG in TRIAL/samples/ and the image its --log shows, one array."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from bench.files import atomic_write


def grid_image(samples: torch.Tensor) -> np.ndarray:
    """Samples as one 8-wide uint8 grid, HW (grey) or HWC."""
    from torchvision.utils import make_grid

    grid = make_grid(samples.detach().float().cpu().clamp(0, 1), nrow=8, padding=1, pad_value=1.0)
    array = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if samples.shape[1] == 1 else array


def save_grid(path: Path, grid: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
