"""RAFT workloads W5 and W6, and the straightforward RAFT formulation they are compared with.

The baseline (also a cross-check in ``tests/test_raft.py``): matmul all-pairs volume scaled by
1/sqrt(C), ``avg_pool2d`` pyramid on the ``(B*H*W, 1, h, w)`` view, ``grid_sample`` lookup
(normalised with ``2*x/(size-1) - 1``, ``align_corners=True``, zero padding) with the horizontal
shift as the slow index.  Written here from RAFT's documented behaviour; it is what RAFT's
``CorrBlock`` computes (and divides by zero on a level one pixel wide).

Workloads (``shared/spec/workloads.md``), one lookup at random flow (4 px standard deviation):

* W5, RAFT on Sintel at 1/8: B=1, C=256, 55 x 128, 4 levels, r=4.  Ours (``torchcorr[<backend>]``,
  the on-the-fly lookup), ``CorrBlock`` (torchcorr's all-pairs path) and the baseline.
* W6, 1088 x 1920 at 1/8: B=1, C=256, 136 x 240.  Ours only: the all-pairs pyramid is 5.66 GB and
  needs over 11 GB with its gradient (``benchmarks/raft_memory.py`` reports that size).

Useful flops: ``2 * B*H*W * L * (2r+2)^2 * C`` per forward (the integer-offset correlations every
window's bilinear samples need).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat.raft import CorrBlock
from ..raft import alternate_lookup, lookup_backend_names
from .workloads import Inputs, Workload, register

__all__ = ["baseline_corr_block", "baseline_lookup", "baseline_pyramid"]


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


# --------------------------------------------------------------------------------------------
# W5, W6
# --------------------------------------------------------------------------------------------


def _raft_workload(wid: str, title: str, b: int, c: int, h: int, w: int, with_all_pairs: bool) -> Workload:
    levels, radius = 4, 4

    def sizes(quick: bool) -> tuple[int, int, int, int]:
        return (1, 8, 12, 16) if quick else (b, c, h, w)

    def setup(quick: bool) -> Inputs:
        bb, cc, hh, ww = sizes(quick)
        g = torch.Generator().manual_seed(0)
        ys, xs = torch.meshgrid(
            torch.arange(hh, dtype=torch.float32), torch.arange(ww, dtype=torch.float32), indexing="ij"
        )
        coords = torch.stack((xs, ys))[None] + 4.0 * torch.randn(bb, 2, hh, ww, generator=g)
        return {
            "f1": torch.randn(bb, cc, hh, ww, generator=g),
            "f2": torch.randn(bb, cc, hh, ww, generator=g),
            "coords": coords,
        }

    def flops(quick: bool) -> float:
        bb, cc, hh, ww = sizes(quick)
        return 2.0 * bb * hh * ww * levels * (2 * radius + 2) ** 2 * cc

    from ..backends import resolve_names

    impls = {
        f"torchcorr[{name}]": (
            lambda x, _n=name: alternate_lookup(x["f1"], x["f2"], x["coords"], levels, radius, backend=_n)
        )
        for name in lookup_backend_names()
        if name in resolve_names()
    }
    if with_all_pairs:
        impls["torchcorr CorrBlock (all-pairs)"] = lambda x: CorrBlock(x["f1"], x["f2"], levels, radius)(x["coords"])
        impls["RAFT matmul + grid_sample"] = lambda x: baseline_corr_block(
            x["f1"], x["f2"], x["coords"], levels, radius
        )
    params = f"B={b} C={c} {h}x{w} levels={levels} r={radius}"
    return Workload(wid, title, flops, setup, impls, params)


register(_raft_workload("W5", "RAFT (Sintel, 1/8)", 1, 256, 55, 128, with_all_pairs=True))
register(_raft_workload("W6", "RAFT high resolution (1088 x 1920, 1/8), on the fly only", 1, 256, 136, 240, False))
