"""The composite (pure-aten) correlation that export paths trace instead of the registered op.

``torch.export`` and ``torch.onnx.export(..., dynamo=True)`` see only standard aten ops when a
face runs :func:`correlation` below, so the exported program needs neither torchcorr nor a custom
ONNX domain to run.  The faces switch here under :func:`active` (while ``torch.export`` traces,
unless :func:`keep_custom_ops` is in effect); ``torch.compile`` keeps the registered op.

The code is written for symbolic heights and widths: Python loops run over the displacement grid
only (static, from the geometry), both inputs are padded once by non-negative constants that cover
every read, and every window is a slice whose bounds are affine in the output size.  There is no
Python ``min``/``max`` on a size, so no guard on the input size beyond "the output is not empty".
Working memory per displacement is one input-sized product; the output is stacked from
(B, G, Ho, Wo) pieces, never a (B, C, D, H, W) tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ._geometry import AxisGeometry, Geometry

__all__ = ["active", "axis_plan", "correlation", "keep_custom_ops"]

_keep_ops = False


def _exporting() -> bool:
    """Whether ``torch.export`` (or an exporter built on it) is tracing.

    Reads the flag behind ``torch.compiler.is_exporting()`` where it exists: up to torch 2.11 at
    least, TorchDynamo replaced a call of that function by the constant ``True`` while tracing, so
    ``torch.compile`` would have traced the composite as well (pytorch/pytorch#176347).  The flag
    itself holds the right value under both.
    """
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    if isinstance(flag, bool):
        return flag
    return torch.compiler.is_exporting()


def active() -> bool:
    """Whether the faces should trace the composite path instead of the registered op."""
    return _exporting() and not _keep_ops


@contextlib.contextmanager
def keep_custom_ops() -> Iterator[None]:
    """Export with the registered ``torchcorr`` ops left in the graph (not the composite path).

    Use it with :func:`torchcorr.onnx.onnx_translation_table` or when the exported program runs
    where torchcorr is installed (AOTInductor, a later ``torch.compile``).

    Example:
        >>> import torch, torchcorr
        >>> class Block(torch.nn.Module):
        ...     def forward(self, a, b):
        ...         return torchcorr.correlation(a, b, max_displacement=1)
        >>> x = torch.randn(1, 2, 5, 6)
        >>> with torchcorr.keep_custom_ops():
        ...     ep = torch.export.export(Block(), (x, x))
        >>> any("torchcorr" in str(n.target) for n in ep.graph.nodes)
        True
    """
    global _keep_ops
    previous, _keep_ops = _keep_ops, True
    try:
        yield
    finally:
        _keep_ops = previous


def axis_plan(a: AxisGeometry) -> tuple[int, int]:
    """Constant non-negative padding ``(lo, hi)`` of both inputs that covers every read along one axis.

    In the padded map of length ``N = n + lo + hi``, the window of ``f2`` for displacement ``d``
    (and of ``f1`` for ``d = 0``) is ``[lo - pad_before + d, N - (hi - pad_after - d))``: its
    length is always ``n + pad_before + pad_after`` and both bounds are constants from the start or
    the end of the map, so slicing needs no comparison of symbolic sizes.
    """
    lo = max(0, a.pad_before, a.pad_before - a.disp_min)
    hi = max(0, a.pad_after, a.pad_after + a.disp_max)
    return lo, hi


def _window(x: Tensor, dim: int, lo: int, hi: int, a: AxisGeometry, d: int, step: int) -> Tensor:
    """Slice of the padded ``x`` along ``dim`` aligned with displacement ``d`` (see :func:`axis_plan`)."""
    start = lo - a.pad_before + d
    from_end = hi - a.pad_after - d
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, -from_end if from_end > 0 else None, step)
    return x[tuple(index)]


def correlation(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str, scale: float) -> Tensor:
    """Composite correlation: (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo), same values as the op.

    float16 and bfloat16 inputs accumulate in float32; the result has the inputs' dtype.
    """
    gy, gx = geometry.y, geometry.x
    acc = torch.float32 if f1.dtype in (torch.float16, torch.bfloat16) else f1.dtype
    c = f1.shape[1]
    ylo, yhi = axis_plan(gy)
    xlo, xhi = axis_plan(gx)
    a = f1.to(acc).unflatten(1, (groups, c // groups))
    bb = f2.to(acc).unflatten(1, (groups, c // groups))
    if ylo or yhi or xlo or xhi:
        a = F.pad(a, (xlo, xhi, ylo, yhi))
        bb = F.pad(bb, (xlo, xhi, ylo, yhi))
    unit = gy.kernel_size == 1 and gx.kernel_size == 1
    # with a one-tap window only every stride-th position is read: sample before multiplying
    sy, sx = (gy.stride, gx.stride) if unit else (1, 1)
    p1 = _window(_window(a, 3, ylo, yhi, gy, 0, sy), 4, xlo, xhi, gx, 0, sx)
    weight = None if unit else p1.new_ones((1, 1, gy.kernel_size, gx.kernel_size))
    pieces = []
    for dy in gy.displacements:
        rows = _window(bb, 3, ylo, yhi, gy, dy, sy)
        for dx in gx.displacements:
            p2 = _window(rows, 4, xlo, xhi, gx, dx, sx)
            prod = p1 * p2 if mode == "product" else (p1 - p2).abs()
            r = prod.sum(2)  # (B, G, Ho, Wo) or, with a window, (B, G, H + pads, W + pads)
            if weight is not None:
                # box sum over the window with stride: (H + pb + pa - span) // stride + 1 rows
                r = F.conv2d(
                    r.flatten(0, 1).unsqueeze(1),
                    weight,
                    stride=(gy.stride, gx.stride),
                    dilation=(gy.kernel_dilation, gx.kernel_dilation),
                )
                r = r.squeeze(1).unflatten(0, (-1, groups))
            pieces.append(r)
    out = torch.stack(pieces, 2)  # (B, G, Dy*Dx, Ho, Wo)
    if scale != 1.0:
        out = out * scale
    return out.unflatten(2, (gy.disp_count, gx.disp_count)).to(f1.dtype)


def corr_lookup(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    """Composite RAFT window lookup (``torchcorr::corr_lookup``): ``Tensor[B, (2r+1)^2, H, W]``.

    Correlation is linear in ``f2``, so the bilinear sample of the correlation at ``c + (a, d)``
    is the dot product of ``f1`` with ``f2`` sampled bilinearly there: one ``grid_sample`` of
    ``f2`` (zeros outside) per window offset, then a channel reduction.  Coordinates are mapped
    with ``align_corners=False`` arithmetic (``(2x + 1) / w - 1``), which puts pixel ``i`` at
    coordinate ``i`` for every size, 1 included; positions that are not finite read zero.
    """
    acc = torch.float32 if f1.dtype in (torch.float16, torch.bfloat16) else f1.dtype
    a, b = f1.to(acc), f2.to(acc)
    h2, w2 = f2.shape[2], f2.shape[3]
    outside = -(radius + 2.0)  # every tap of a window anchored here lies left of / above the map
    c = torch.nan_to_num(coords.to(acc), nan=outside, posinf=outside, neginf=outside)
    x, y = c[:, 0], c[:, 1]  # (B, H, W)
    pieces = []
    for dx in range(-radius, radius + 1):  # the horizontal offset is the slow index (RAFT)
        gx = (2 * (x + dx) + 1) / w2 - 1
        for dy in range(-radius, radius + 1):
            gy = (2 * (y + dy) + 1) / h2 - 1
            grid = torch.stack((gx, gy), -1)
            sampled = F.grid_sample(b, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            pieces.append((a * sampled).sum(1))
    out = torch.stack(pieces, 1)
    if scale != 1.0:
        out = out * scale
    return out.to(f1.dtype)
