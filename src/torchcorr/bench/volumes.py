"""Stereo and template-matching workloads W7-W9, and the formulations networks ship for them.

Baselines, each written here from the behaviour it reproduces (also used by
``benchmarks/volumes.py``):

* :func:`dispnetc_loop`: DispNetC-style 1-D correlation, a Python loop over disparities that writes
  the channel mean of ``left[..., d:] * right[..., :-d]`` into a zero-initialised (B, D, H, W)
  volume.
* :func:`gwcnet_loop`: the same loop with GwcNet's group-wise mean, filling (B, G, D, H, W).
* :func:`psmnet_loop`: PSMNet's concatenation volume by slice assignment.
* :func:`conv2d_xcorr`: MATLAB ``xcorr2`` 'full' as ``F.conv2d`` with ``padding = template - 1``.

Workloads (``shared/spec/workloads.md``): W7 DispNetC (B=2, C=256, 48 x 96, D=40), W8 GwcNet
(B=1, C=320, 64 x 128, G=40, D=48), W9 xcorr2 'full' of a 64 x 64 template over a 512 x 512 image.
Useful flops: 2 x the multiply-adds of the definition (stereo: only where ``x >= d``; xcorr2:
``Ha*Wa*Hb*Wb``, every image-template pair once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..volumes import groupwise_correlation, stereo_correlation
from ..xcorr import xcorr2
from .workloads import Inputs, Workload, ours, register

__all__ = ["conv2d_xcorr", "dispnetc_loop", "gwcnet_loop", "psmnet_loop", "stereo_macs"]


def dispnetc_loop(left: Tensor, right: Tensor, max_disp: int) -> Tensor:
    """One-sided 1-D correlation, one disparity at a time, into a zero-initialised volume."""
    b, _, h, w = left.shape
    volume = left.new_zeros(b, max_disp, h, w)
    for d in range(max_disp):
        if d == 0:
            volume[:, 0] = (left * right).mean(1)
        elif d < w:
            volume[:, d, :, d:] = (left[..., d:] * right[..., :-d]).mean(1)
    return volume


def gwcnet_loop(left: Tensor, right: Tensor, max_disp: int, groups: int) -> Tensor:
    """Group-wise correlation, one disparity at a time, into a (B, G, D, H, W) volume."""
    b, c, h, w = left.shape

    def group_mean(x: Tensor, y: Tensor) -> Tensor:
        prod = x * y
        return prod.view(b, groups, c // groups, h, prod.shape[-1]).mean(2)

    volume = left.new_zeros(b, groups, max_disp, h, w)
    for d in range(max_disp):
        if d == 0:
            volume[:, :, 0] = group_mean(left, right)
        elif d < w:
            volume[:, :, d, :, d:] = group_mean(left[..., d:], right[..., :-d])
    return volume.contiguous()


def psmnet_loop(left: Tensor, right: Tensor, max_disp: int) -> Tensor:
    """Concatenation volume (B, 2C, D, H, W) by slice assignment, both halves zero where x < d."""
    b, c, h, w = left.shape
    volume = left.new_zeros(b, 2 * c, max_disp, h, w)
    for d in range(max_disp):
        if d == 0:
            volume[:, :c, 0] = left
            volume[:, c:, 0] = right
        elif d < w:
            volume[:, :c, d, :, d:] = left[..., d:]
            volume[:, c:, d, :, d:] = right[..., :-d]
    return volume.contiguous()


def conv2d_xcorr(image: Tensor, template: Tensor) -> Tensor:
    """MATLAB ``xcorr2`` 'full' of two 2-D tensors as the ``conv2d`` a PyTorch user writes."""
    hb, wb = template.shape[-2:]
    return F.conv2d(image[None, None], template[None, None], padding=(hb - 1, wb - 1))[0, 0]


def stereo_macs(b: int, c: int, h: int, w: int, d: int) -> int:
    """Multiply-adds of a one-sided stereo correlation (products only where ``x >= d``)."""
    return b * c * h * sum(max(w - k, 0) for k in range(d))


def _stereo_workload(
    wid: str, title: str, b: int, c: int, h: int, w: int, d: int, groups: int | None, quick_sizes: tuple
) -> Workload:
    def sizes(quick: bool) -> tuple[int, int, int, int, int]:
        return quick_sizes if quick else (b, c, h, w, d)

    def setup(quick: bool) -> Inputs:
        bb, cc, hh, ww, dd = sizes(quick)
        g = torch.Generator().manual_seed(0)
        return {
            "left": torch.randn(bb, cc, hh, ww, generator=g),
            "right": torch.randn(bb, cc, hh, ww, generator=g),
            "_max_disparity": torch.tensor(dd),  # an integer tensor: no gradient, read by the impls
        }

    def flops(quick: bool) -> float:
        bb, cc, hh, ww, dd = sizes(quick)
        return 2.0 * stereo_macs(bb, cc, hh, ww, dd)

    def max_disp(x: Inputs) -> int:
        return int(x["_max_disparity"])

    if groups is None:
        impls = {
            **ours(lambda x, backend: stereo_correlation(x["left"], x["right"], max_disp(x), backend=backend)),
            "DispNetC shift loop": lambda x: dispnetc_loop(x["left"], x["right"], max_disp(x)),
        }
        params = f"B={b} C={c} {h}x{w} D={d}"
    else:
        impls = {
            **ours(
                lambda x, backend: groupwise_correlation(x["left"], x["right"], max_disp(x), groups, backend=backend)
            ),
            "GwcNet disparity loop": lambda x: gwcnet_loop(x["left"], x["right"], max_disp(x), groups),
        }
        params = f"B={b} C={c} {h}x{w} G={groups} D={d}"
    return Workload(wid, title, flops, setup, impls, params)


def _xcorr_workload() -> Workload:
    def sizes(quick: bool) -> tuple[int, int]:
        return (48, 8) if quick else (512, 64)

    def setup(quick: bool) -> Inputs:
        n, k = sizes(quick)
        g = torch.Generator().manual_seed(0)
        return {"image": torch.randn(n, n, generator=g), "template": torch.randn(k, k, generator=g)}

    def flops(quick: bool) -> float:
        n, k = sizes(quick)
        return 2.0 * n * n * k * k

    impls = {
        "torchcorr.xcorr2 (auto)": lambda x: xcorr2(x["image"], x["template"]),
        "F.conv2d": lambda x: conv2d_xcorr(x["image"], x["template"]),
    }
    return Workload("W9", "template matching, xcorr2 'full'", flops, setup, impls, "512x512 image, 64x64 template")


register(_stereo_workload("W7", "DispNetC-like stereo", 2, 256, 48, 96, 40, None, (1, 16, 6, 20, 8)))
register(_stereo_workload("W8", "GwcNet", 1, 320, 64, 128, 48, 40, (1, 40, 6, 20, 8)))
register(_xcorr_workload())
