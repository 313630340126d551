"""Pure-PyTorch kernels of the RAFT window lookup (``torchcorr::corr_lookup``): any device, any dtype.

One call handles one pyramid level.  For every pixel ``p = (y, x)`` of ``f1`` and its target
``c = coords[:, :, y, x]`` (level pixel units, x first), the op returns::

    out[b, (a + r)*K + (d + r), y, x] = bilinear(S_p, c_x + a, c_y + d),   a, d in [-r, r], K = 2r + 1
    S_p[Y, X] = scale * <f1[b, :, y, x], f2[b, :, Y, X]>                  (zero outside f2)

with ``a`` the horizontal offset (RAFT's order: horizontal is the slow index).  Sampling at
``c + (a, d)`` for integer offsets reads the four neighbours ``floor(c) + (a, d) + {0, 1}^2``, so
all ``K*K`` samples of a pixel use the same two fractions ``(fx, fy)`` and the ``(K+1)^2`` integer
neighbours ``floor(c) + (u, v)``, ``u, v in [-r, r+1]``.  The kernels

1. compute the ``(K+1)^2`` integer-offset correlations ``G[u, v]`` one offset at a time: gather the
   ``f2`` feature rows at ``floor(c) + (u, v)`` for every pixel (an input-sized temporary), take the
   channel dot product with ``f1``;
2. combine them with the bilinear weights.

The backward runs the same loop once: ``grad_f1 += g_uv * f2[rows]`` and
``grad_f2[rows] += g_uv * f1`` (an ``index_add_``), where ``g_uv`` collects the output gradient
through the bilinear weights, and, for ``coords``, the derivative of the weights times ``G``.

Working memory is ``O(B*H*W*(K+1)^2)`` plus a few input-sized buffers; never ``(B, C, K*K, H, W)``
nor ``(H*W)^2``.  float16 and bfloat16 features accumulate in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .pure import accumulation_dtype

NAME = "torch"

__all__ = ["NAME", "backward", "bilinear_taps", "can_run", "combine", "forward"]


def can_run(f1: Tensor, f2: Tensor, coords: Tensor, radius: int) -> str | None:
    """The pure lookup runs everything; ``None`` means "yes"."""
    return None


def coordinate_dtype(coords: Tensor) -> torch.dtype:
    """float64 coordinates stay float64; every other floating dtype is read as float32."""
    return torch.float64 if coords.dtype == torch.float64 else torch.float32


def bilinear_taps(coords: Tensor, radius: int, h: int, w: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour indices and bilinear fractions of a window lookup on an ``h x w`` map.

    Args:
        coords: ``Tensor[B, 2, H, W]``, (x, y) positions in the map's pixel units.
        radius: window radius ``r``.
        h: map height.
        w: map width.
        dtype: dtype of the returned fractions.

    Returns:
        ``index`` ``Tensor[K+1, K+1, B*H*W]`` (int64): ``Y*w + X`` of the neighbour
        ``floor(c) + (u, v)`` clamped into the map, ``u`` (horizontal) the first axis;
        ``valid`` of the same shape (in ``dtype``): 1 where that neighbour lies inside the map;
        ``fractions`` ``Tensor[2, B*H*W]``: ``c - floor(c)`` for x and y.  Pixels run in
        ``(b, y, x)`` order.  Fractions carry the autograd graph of ``coords``.
    """
    c = coords.to(coordinate_dtype(coords)).movedim(1, 0).reshape(2, -1)
    base = torch.floor(c)
    # positions that are not finite read zero: their fractions are set to 0 and their taps lie outside
    fractions = torch.nan_to_num(c - base, nan=0.0, posinf=0.0, neginf=0.0).to(dtype)
    # clamp before the integer conversion: far-away, infinite and NaN positions stay outside
    outside = float(max(h, w) + radius + 2)
    base = torch.nan_to_num(base.detach(), nan=-outside).clamp(-outside, outside).long()
    offsets = torch.arange(-radius, radius + 2, device=coords.device)
    xs = base[0][None, :] + offsets[:, None]  # (K+1, N)
    ys = base[1][None, :] + offsets[:, None]
    valid_x = (xs >= 0) & (xs < w)
    valid_y = (ys >= 0) & (ys < h)
    index = ys.clamp(0, max(h - 1, 0))[None, :, :] * w + xs.clamp(0, max(w - 1, 0))[:, None, :]
    valid = (valid_x[:, None, :] & valid_y[None, :, :]).to(dtype)
    return index, valid, fractions


def combine(grid: Tensor, fractions: Tensor) -> Tensor:
    """Bilinear samples from the integer-offset values: ``Tensor[K+1, K+1, N] -> Tensor[K, K, N]``."""
    fx, fy = fractions[0], fractions[1]
    gx, gy = 1 - fx, 1 - fy
    return grid[:-1, :-1] * (gx * gy) + grid[1:, :-1] * (fx * gy) + grid[:-1, 1:] * (gx * fy) + grid[1:, 1:] * (fx * fy)


def _rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``Tensor[B, C, H, W] -> Tensor[B*H*W, C]`` (channels last, contiguous, in ``dtype``)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).to(dtype).contiguous()


def _batch_offsets(b: int, hw: int, per_map: int, device: torch.device) -> Tensor:
    """Row offset of each pixel's batch entry in the flattened ``f2`` rows."""
    return (torch.arange(b, device=device) * per_map).repeat_interleave(hw)


def forward(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    """One level of the window lookup: ``Tensor[B, (2r+1)^2, H, W]`` (see the module docstring)."""
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    if b * h * w == 0 or h2 * w2 == 0 or c == 0:
        return f1.new_zeros((b, k * k, h, w))
    acc = accumulation_dtype(f1.dtype)
    with torch.no_grad():
        index, valid, fractions = bilinear_taps(coords, radius, h2, w2, acc)
        index = index + _batch_offsets(b, h * w, h2 * w2, f1.device)
        rows1 = _rows(f1, acc)
        rows2 = _rows(f2, acc)
        grid = torch.empty(index.shape, dtype=acc, device=f1.device)
        for u in range(k + 1):
            for v in range(k + 1):
                torch.linalg.vecdot(rows1, rows2.index_select(0, index[u, v]), out=grid[u, v])
        grid.mul_(valid).mul_(scale)
        out = combine(grid, fractions)  # (K, K, N)
    return out.reshape(k * k, b, h, w).transpose(0, 1).to(f1.dtype).contiguous()


def backward(
    grad: Tensor,
    f1: Tensor,
    f2: Tensor,
    coords: Tensor,
    radius: int,
    scale: float,
    need_f1: bool,
    need_f2: bool,
    need_coords: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`forward` with respect to ``f1``, ``f2`` and ``coords`` (``None`` if not asked)."""
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    acc = accumulation_dtype(f1.dtype)
    g1 = torch.zeros_like(f1, memory_format=torch.contiguous_format) if need_f1 else None
    g2 = torch.zeros_like(f2, memory_format=torch.contiguous_format) if need_f2 else None
    gc = torch.zeros_like(coords, memory_format=torch.contiguous_format) if need_coords else None
    n = b * h * w
    if n == 0 or h2 * w2 == 0 or c == 0 or not (need_f1 or need_f2 or need_coords):
        return g1, g2, gc
    with torch.no_grad():
        index, valid, fractions = bilinear_taps(coords, radius, h2, w2, acc)
        index = index + _batch_offsets(b, h * w, h2 * w2, f1.device)
        fx, fy = fractions[0], fractions[1]
        gx, gy = 1 - fx, 1 - fy
        go = grad.to(acc).transpose(0, 1).reshape(k, k, n)
        # gradient of each integer-offset correlation G[u, v] (adjoint of combine), times scale
        ggrid = torch.zeros((k + 1, k + 1, n), dtype=acc, device=f1.device)
        ggrid[:-1, :-1] += go * (gx * gy)
        ggrid[1:, :-1] += go * (fx * gy)
        ggrid[:-1, 1:] += go * (gx * fy)
        ggrid[1:, 1:] += go * (fx * fy)
        ggrid.mul_(valid).mul_(scale)
        rows1 = _rows(f1, acc)
        rows2 = _rows(f2, acc)
        r1 = torch.zeros_like(rows1) if need_f1 else None
        r2 = torch.zeros_like(rows2) if need_f2 else None
        grid = torch.empty((k + 1, k + 1, n), dtype=acc, device=f1.device) if need_coords else None
        for u in range(k + 1):
            for v in range(k + 1):
                idx = index[u, v]
                weight = ggrid[u, v].unsqueeze(1)
                if need_f1 or need_coords:
                    gathered = rows2.index_select(0, idx)
                    if grid is not None:
                        torch.linalg.vecdot(rows1, gathered, out=grid[u, v])
                    if r1 is not None:
                        r1.addcmul_(gathered, weight)
                if r2 is not None:
                    r2.index_add_(0, idx, rows1 * weight)
        if g1 is not None and r1 is not None:
            g1.copy_(r1.reshape(b, h, w, c).permute(0, 3, 1, 2))
        if g2 is not None and r2 is not None:
            g2.copy_(r2.reshape(b, h2, w2, c).permute(0, 3, 1, 2))
        if gc is not None and grid is not None:
            grid.mul_(valid).mul_(scale)
            # d out[a, d] / d fx and / d fy from the bilinear weights
            dx = (grid[1:, :-1] - grid[:-1, :-1]) * gy + (grid[1:, 1:] - grid[:-1, 1:]) * fy
            dy = (grid[:-1, 1:] - grid[:-1, :-1]) * gx + (grid[1:, 1:] - grid[1:, :-1]) * fx
            gxy = torch.stack(((go * dx).sum((0, 1)), (go * dy).sum((0, 1))))  # (2, N)
            gc.copy_(gxy.reshape(2, b, h, w).transpose(0, 1))
    return g1, g2, gc
