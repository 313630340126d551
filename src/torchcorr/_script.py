"""TorchScript-compatible forms of the checks and the call every module's forward makes.

``torch.jit.script`` cannot compile the Python faces (dataclasses, keyword dictionaries, the
dispatcher), so each module precomputes its sixteen geometry integers at construction and, when
scripted, its ``forward`` runs :func:`correlate` below: the same input checks (ValueError or
TypeError naming the input and the rule), the same output-size rule, then the registered op.
Eager calls, ``torch.jit.trace``, ``torch.compile`` and ``torch.export`` keep the Python faces.

A scripted or traced module saved with ``torch.jit.save`` holds a call of
``torchcorr::correlation``: ``import torchcorr`` before ``torch.jit.load``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_pair(f1: Tensor, f2: Tensor, name1: str, name2: str) -> None:
    """Two floating 4-D tensors of one shape, dtype and device (scripted form of the face checks)."""
    if not f1.is_floating_point():
        raise TypeError(name1 + " must have a floating dtype (float16, bfloat16, float32, float64)")
    if not f2.is_floating_point():
        raise TypeError(name2 + " must have a floating dtype (float16, bfloat16, float32, float64)")
    if f1.dim() != 4:
        raise ValueError(name1 + " must be a 4-D tensor (B, C, H, W), got " + str(f1.dim()) + " dimensions")
    if f2.dim() != 4:
        raise ValueError(name2 + " must be a 4-D tensor (B, C, H, W), got " + str(f2.dim()) + " dimensions")
    if f1.dtype != f2.dtype:
        raise TypeError(name1 + " and " + name2 + " must have the same dtype")
    if f1.device != f2.device:
        raise ValueError(name1 + " and " + name2 + " must be on the same device")
    if f1.shape != f2.shape:
        raise ValueError(
            name1 + " and " + name2 + " must have the same shape, got " + str(f1.shape) + " and " + str(f2.shape)
        )


def _axis_out(n: int, geometry: list[int], first: int) -> int:
    pad_before, pad_after, stride = geometry[first], geometry[first + 1], geometry[first + 2]
    span = (geometry[first + 3] - 1) * geometry[first + 4] + 1
    return (n + pad_before + pad_after - span) // stride + 1


def correlate(
    f1: Tensor,
    f2: Tensor,
    geometry: list[int],
    groups: int,
    mode: str,
    scale: float,
    backend: str,
    name1: str,
    name2: str,
) -> Tensor:
    """Checked call of ``torchcorr::correlation``: (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo)."""
    check_pair(f1, f2, name1, name2)
    if f1.shape[1] % groups != 0:
        raise ValueError(
            "groups must divide the channel count: "
            + str(f1.shape[1])
            + " channels cannot split into "
            + str(groups)
            + " groups"
        )
    ho = _axis_out(f1.shape[2], geometry, 0)
    wo = _axis_out(f1.shape[3], geometry, 8)
    if ho < 1 or wo < 1:
        raise ValueError(
            "the correlation window does not fit a "
            + str(f1.shape[2])
            + " x "
            + str(f1.shape[3])
            + " map: the output would be "
            + str(ho)
            + " x "
            + str(wo)
        )
    return torch.ops.torchcorr.correlation(f1, f2, geometry, groups, mode, scale, backend)


def normalization_scale(kind: str, factor: float, channels_per_group: int, kernel_area: int) -> float:
    """Scripted form of :func:`torchcorr.functional.normalization_scale` (``kind == "factor"``: ``factor``)."""
    c = max(channels_per_group, 1)
    if kind == "mean":
        return 1.0 / (kernel_area * c)
    if kind == "channels":
        return 1.0 / c
    if kind == "sqrt_channels":
        return 1.0 / math.sqrt(c)
    if kind == "none":
        return 1.0
    return factor


def to_layout(out: Tensor, layout: str, groups: int) -> Tensor:
    """Scripted form of :func:`torchcorr.functional.to_layout`."""
    if layout == "flat":
        out = out.flatten(2, 3)
    elif layout == "channels_last":
        out = out.flatten(2, 3).movedim(2, -1)
    if groups == 1:
        return out.squeeze(1)
    return out
