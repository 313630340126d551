"""The straightforward RAFT formulation in plain PyTorch: the baseline for W5/W6 and a cross-check in the tests.

Matmul all-pairs volume scaled by 1/sqrt(C), ``avg_pool2d`` pyramid on the ``(B*H*W, 1, h, w)``
view, ``grid_sample`` lookup (normalised with ``2*x/(size-1) - 1``, ``align_corners=True``, zero
padding) with the delta grid's first component (the horizontal shift) as the slow index.  Written
here from RAFT's documented behaviour; it is what ``CorrBlock`` computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def baseline_pyramid(f1: Tensor, f2: Tensor, num_levels: int) -> list[Tensor]:
    """All-pairs volume (B*H*W, 1, H, W) and its pooled levels."""
    b, c, h, w = f1.shape
    volume = torch.bmm(f1.reshape(b, c, h * w).transpose(1, 2), f2.reshape(b, c, h * w)) / math.sqrt(c)
    levels = [volume.reshape(b * h * w, 1, h, w)]
    for _ in range(num_levels - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def baseline_lookup(levels: list[Tensor], coords: Tensor, radius: int) -> Tensor:
    """(B, 2, H, W) target positions -> (B, L*(2r+1)^2, H, W) by grid_sample per level."""
    b, _, h, w = coords.shape
    k = 2 * radius + 1
    steps = torch.arange(-radius, radius + 1, dtype=coords.dtype, device=coords.device)
    shift_x = steps.view(k, 1).expand(k, k)  # slow index: horizontal
    shift_y = steps.view(1, k).expand(k, k)
    centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
    outs = []
    for i, level in enumerate(levels):
        lh, lw = level.shape[-2:]
        x = centre[..., 0] / 2**i + shift_x
        y = centre[..., 1] / 2**i + shift_y
        grid = torch.stack((2 * x / (lw - 1) - 1, 2 * y / (lh - 1) - 1), dim=-1)
        sampled = F.grid_sample(level, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        outs.append(sampled.reshape(b, h, w, k * k))
    return torch.cat(outs, dim=-1).permute(0, 3, 1, 2).contiguous()


def baseline_corr_block(f1: Tensor, f2: Tensor, coords: Tensor, num_levels: int = 4, radius: int = 4) -> Tensor:
    """Pyramid and one lookup, like building RAFT's CorrBlock and calling it once."""
    return baseline_lookup(baseline_pyramid(f1, f2, num_levels), coords, radius)
