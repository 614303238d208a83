"""The triangles dataset's rasteriser, exact and differentiable, over the manifold's parameters.

The manifold is every image bench.data.triangles can draw; it is parameterised redundantly by
p = (a_0, a_1, a_2, θ) in the box [P_LO, P_HI] (see triangle_manifold.py). `render_exact` is the
dataset's own rasteriser with its 8-bit rounding; `render_soft` is a differentiable copy with an
analytic Jacobian, for the Levenberg-Marquardt search.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from bench.data import triangles as tri

PIXELS = tri.RASTER * tri.RASTER
_SECTOR = 360.0 / tri.N_VERTICES
# Box of p = (a_0, a_1, a_2, θ) in radians. u ~ U[0, 1) never reaches the upper end; closing it is harmless.
P_LO = torch.tensor([math.radians(i * _SECTOR + tri.MIN_SEGMENT_ANGLE / 2) for i in range(tri.N_VERTICES)] + [0.0],
                    dtype=torch.float64)
P_HI = torch.tensor([math.radians((i + 1) * _SECTOR) for i in range(tri.N_VERTICES)] + [math.radians(2 * math.pi)],
                    dtype=torch.float64)


def vertices(p: torch.Tensor) -> torch.Tensor:
    """Pixel-unit vertices [N, 3, 2] (x = row, y = column) of parameters p = (a_0, a_1, a_2, θ) [N, 4].

    Equals bench.data.triangles.polygon_vertices to round-off: turning the circle point at angle a
    clockwise by θ (the original's `x @ R`) puts it at angle a − θ; for a triangle the area
    centroid is the vertex mean.
    """
    phi = p[:, :3] - p[:, 3:]
    unit = (torch.stack([phi.cos(), phi.sin()], dim=-1) + 1) / 2
    v = unit * (tri.RASTER * tri.SCALE)
    return v + (tri.RASTER / 2 - v.mean(dim=1, keepdim=True))


def render_exact(p: torch.Tensor) -> torch.Tensor:
    """Images [N, 784] in [0, 1], pixel for pixel what the dataset generator draws for parameters p."""
    v = vertices(p.detach().to("cpu", torch.float64))
    return (tri.rasterise(v).reshape(len(p), PIXELS).to(p.device, torch.float32) / 255.0)


def _vertex_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d vertices / d p [N, 3, 2, 4]: turning vertex j moves every vertex through the recentring."""
    phi = p[:, :3] - p[:, 3:]
    t = torch.stack([-phi.sin(), phi.cos()], dim=-1) * (tri.RASTER * tri.SCALE / 2)  # [N, 3, 2]
    eye = torch.eye(3, dtype=p.dtype, device=p.device)
    da = (eye - 1 / 3)[None, :, None, :] * t.transpose(1, 2)[:, None]  # [N, i, 2, j]: d v_i / d a_j
    return torch.cat([da, -da.sum(-1, keepdim=True)], dim=-1)


def _row_intervals(p: torch.Tensor, jacobian: bool = False):
    """Each sub-row's inside interval [lo, hi] [N, 224] in pixel columns, clamped to [0, 28], solved
    like the rasteriser; with `jacobian` also d lo / d p and d hi / d p [N, 224, 4].

    On sub-row x, edge a→b's line is at y = a_y + m (x − a_x), m = (b_y − a_y) / (b_x − a_x); the
    edges the polygon lies above bound it from below (lo = their max), the others from above.
    """
    v = vertices(p)
    a, b = v, v.roll(-1, dims=1)
    d = b - a
    orient = torch.sign((a[..., 0] * b[..., 1] - b[..., 0] * a[..., 1]).sum(1))[:, None, None]
    xs = (torch.arange(tri.RASTER * tri.SUBPIXELS, dtype=p.dtype, device=p.device) + 0.5) / tri.SUBPIXELS
    dx, dy = d[..., 0:1], d[..., 1:2]  # [N, 3, 1]
    flat = dx == 0  # an edge along a sub-row: it only decides whether rows past it are empty
    m = dy / torch.where(flat, torch.ones_like(dx), dx)
    y = a[..., 1:2] + m * (xs - a[..., 0:1])  # [N, 3, 224]
    lo, ilo = torch.where(orient * dx > 0, y, -math.inf).max(1)
    hi, ihi = torch.where(orient * dx < 0, y, math.inf).min(1)
    empty = (hi < lo) | (flat & (orient * dy * (xs - a[..., 0:1]) > 0)).any(1)
    hi = torch.where(empty, lo, hi)
    ihi = torch.where(empty, ilo, ihi)
    lo, hi = lo.clamp(0, tri.RASTER), hi.clamp(0, tri.RASTER)
    if not jacobian:
        return lo, hi
    # y = (1 − s) a_y + s b_y with s = (x − a_x) / (b_x − a_x), so per edge
    # d y = (1 − s)(d a_y − m d a_x) + s (d b_y − m d b_x) = A + s B, evaluated for the chosen edge only.
    dv = _vertex_jacobian(p)  # [N, 3, 2, 4]
    da, db = dv, dv.roll(-1, dims=1)
    coef_a = da[:, :, 1] - m * da[:, :, 0]  # [N, 3, 4]
    coef_b = db[:, :, 1] - m * db[:, :, 0] - coef_a
    s = (xs - a[..., 0:1]) / torch.where(flat, torch.ones_like(dx), dx)  # [N, 3, 224]

    def tangent(edge):
        rows = edge[..., None].expand(-1, -1, p.shape[1])
        return coef_a.gather(1, rows) + s.gather(1, edge[:, None]).squeeze(1)[..., None] * coef_b.gather(1, rows)

    return lo, hi, tangent(ilo), tangent(ihi)


def render_soft(p: torch.Tensor, jacobian: bool = False, ramp: float = 1.0):
    """Differentiable images [N, 784] (and with `jacobian`, d image / d p [N, 784, 4]).

    The rasteriser's 8 sub-rows per pixel row, solved the same way; only the number of a sub-row's
    8 sample points inside [lo, hi] within a pixel is smoothed: a staircase whose steps (at the
    sample points) are linear ramps `ramp` samples wide. ramp = 1 measures the covered length
    continuously; as ramp → 0 it tends to the rasteriser's count. Everything is a scatter-add over
    the 224 sub-rows (not [N, 224, 28] tensors), and the Jacobian is the analytic derivatives of lo
    and hi scattered the same way (autograd's forward mode was ~50× slower).
    """
    n = len(p)
    if not jacobian:
        lo, hi = _row_intervals(p)
        return 1 - (_scatter_rows(hi, ramp) - _scatter_rows(lo, ramp)).reshape(n, PIXELS) / tri.SUBPIXELS
    lo, hi, dlo, dhi = _row_intervals(p, jacobian=True)
    image = 1 - (_scatter_rows(hi, ramp) - _scatter_rows(lo, ramp)).reshape(n, PIXELS) / tri.SUBPIXELS
    jac = _scatter_rows(hi, ramp, dhi) - _scatter_rows(lo, ramp, dlo)
    return image, -jac.reshape(n, PIXELS, p.shape[1]) / tri.SUBPIXELS


def _scatter_rows(t: torch.Tensor, ramp: float, values: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per pixel (row, column c): Σ over its 8 sub-rows of the smoothed share of samples of the
    sub-row in [0, t] that fall in column c, for t [N, 224] in [0, 28]; with `values` [N, 224, K]
    (d t / d p), its derivative instead ([N, 28, 28, K]).

    That share is 1 for c < ⌊t⌋ and s(8 frac t) / 8 for c = ⌊t⌋, where s(u) = ⌊u⌋ + clamp((frac u − ½)
    / ramp + ½, 0, 1) counts the samples at (j + ½)/8 below u, smoothed (s(u) = u for ramp = 1).
    """
    n = len(t)
    k = t.floor()
    idx = k.long().view(n, tri.RASTER, tri.SUBPIXELS)
    u = (t - k) * tri.SUBPIXELS
    step = ((u - u.floor() - 0.5) / ramp + 0.5).view(n, tri.RASTER, tri.SUBPIXELS)
    if values is not None:
        # d share / d t = 1/ramp on a ramp, else 0; a clamped end (t = 0 or 28) does not move.
        slope = ((step > 0) & (step < 1) & ((t > 0) & (t < tri.RASTER)).view_as(step)) / ramp
        v = values.view(n, tri.RASTER, tri.SUBPIXELS, -1) * slope[..., None]
        bins = v.new_zeros(n, tri.RASTER, tri.RASTER + 1, v.shape[-1])
        return bins.scatter_add_(2, idx[..., None].expand_as(v), v)[:, :, :-1]  # bin 28 is off the image
    share = (u.floor().view_as(step) + step.clamp(0, 1)) / tri.SUBPIXELS
    bins = t.new_zeros(n, tri.RASTER, tri.RASTER + 1)
    count = bins.scatter_add(2, idx, torch.ones_like(share)).flip(2).cumsum(2).flip(2)  # #{⌊t⌋ ≥ c}
    return count[..., 1:] + bins.scatter_add(2, idx, share)[..., :-1]


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """Float32 [N, 784] in [0, 1] from uint8 (0..255) or float ([0, 1]) images [N, 1, 28, 28],
    [N, 28, 28] or [N, 784]."""
    images = torch.as_tensor(images)
    if images.dim() < 2 or images.shape[1:] not in ((1, tri.RASTER, tri.RASTER), (tri.RASTER, tri.RASTER), (PIXELS,)):
        raise ValueError(f"want images [N, 1, 28, 28], [N, 28, 28] or [N, 784], got {tuple(images.shape)}")
    x = images.reshape(len(images), PIXELS)
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()

