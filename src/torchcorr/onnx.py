"""ONNX support: translations of the ``torchcorr`` operators into standard ONNX operators.

Exporting a model whose correlation goes through a torchcorr face needs nothing from this
module: under ``torch.onnx.export(..., dynamo=True)`` the faces trace a composite of standard
aten ops (see :mod:`torchcorr._composite`), so the ONNX model holds only standard operators.

This module is for graphs that keep the registered ops (a model that calls
``torch.ops.torchcorr.correlation`` itself, or one exported inside
:func:`torchcorr.keep_custom_ops`): pass the table to the exporter and each op becomes a short
sequence of standard ONNX operators (``Pad``, ``Slice``, ``Mul``/``Sub``+``Abs``,
``ReduceSum``, a depthwise ``Conv`` for windows larger than one tap, ``Concat``), valid for any
input height and width::

    import torchcorr.onnx
    program = torch.onnx.export(
        model, (f1, f2), dynamo=True,
        custom_translation_table=torchcorr.onnx.onnx_translation_table(),
        dynamic_shapes=...,
    )

``onnxscript`` (a dependency of ``torch.onnx.export(dynamo=True)``) is imported only when the
table is built.  Install the ``export`` extra: ``pip install torchcorr[export]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._composite import axis_plan
from ._geometry import AxisGeometry, Geometry

__all__ = ["corr_lookup_onnx", "correlation_onnx", "onnx_translation_table"]

_INT64_MAX = 2**63 - 1


def _op() -> Any:
    try:
        from onnxscript import opset18
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "torchcorr.onnx needs onnxscript (and onnx) for the translation table: pip install 'torchcorr[export]'"
        ) from exc
    return opset18


def _slice_bounds(a: AxisGeometry, lo: int, hi: int, d: int) -> tuple[int, int]:
    """Start and end of the window for displacement ``d`` in the padded map (end counted from the end)."""
    start = lo - a.pad_before + d
    from_end = hi - a.pad_after - d
    return start, (-from_end if from_end > 0 else _INT64_MAX)


def correlation_onnx(f1: Any, f2: Any, geometry: Sequence[int], groups: int, mode: str, scale: float, backend: str):
    """ONNX translation of ``torchcorr::correlation`` (traced by the exporter, standard operators only).

    Same values as the op: inputs ``(B, C, H, W)``, output ``(B, G, Dy, Dx, Ho, Wo)``; float16 and
    bfloat16 accumulate in float32.  ``backend`` has no meaning in ONNX and is ignored.
    """
    from onnxscript.ir import DataType

    op = _op()
    g = Geometry.from_list(list(geometry))
    gy, gx = g.y, g.x
    half = f1.dtype in (DataType.FLOAT16, DataType.BFLOAT16)
    in_type = f1.dtype
    acc = DataType.FLOAT if half else in_type
    a, b = f1, f2
    if half:
        a, b = op.Cast(a, to=DataType.FLOAT), op.Cast(b, to=DataType.FLOAT)
    ylo, yhi = axis_plan(gy)
    xlo, xhi = axis_plan(gx)
    if ylo or yhi or xlo or xhi:
        pads = op.Constant(value_ints=[0, 0, ylo, xlo, 0, 0, yhi, xhi])
        a, b = op.Pad(a, pads), op.Pad(b, pads)
    if groups > 1:
        # (B, C, H, W) -> (B, G, C/G, H, W)
        shape = op.Concat(
            op.Shape(a, start=0, end=1), op.Constant(value_ints=[groups, -1]), op.Shape(a, start=2, end=4), axis=0
        )
        a, b = op.Reshape(a, shape), op.Reshape(b, shape)
    else:
        a, b = op.Unsqueeze(a, op.Constant(value_ints=[1])), op.Unsqueeze(b, op.Constant(value_ints=[1]))
    unit = gy.kernel_size == 1 and gx.kernel_size == 1
    sy, sx = (gy.stride, gx.stride) if unit else (1, 1)
    axes = op.Constant(value_ints=[3, 4])
    steps = op.Constant(value_ints=[sy, sx])
    ys, ye = _slice_bounds(gy, ylo, yhi, 0)
    xs, xe = _slice_bounds(gx, xlo, xhi, 0)
    p1 = op.Slice(a, op.Constant(value_ints=[ys, xs]), op.Constant(value_ints=[ye, xe]), axes, steps)
    weight = None
    if not unit:
        weight = op.Constant(value=_ones_tensor(groups, gy.kernel_size, gx.kernel_size, acc))
    channel_axis = op.Constant(value_ints=[2])
    pieces = []
    for dy in gy.displacements:
        for dx in gx.displacements:
            ys, ye = _slice_bounds(gy, ylo, yhi, dy)
            xs, xe = _slice_bounds(gx, xlo, xhi, dx)
            p2 = op.Slice(b, op.Constant(value_ints=[ys, xs]), op.Constant(value_ints=[ye, xe]), axes, steps)
            prod = op.Mul(p1, p2) if mode == "product" else op.Abs(op.Sub(p1, p2))
            r = op.ReduceSum(prod, channel_axis, keepdims=0)  # (B, G, L, L)
            if weight is not None:
                r = op.Conv(
                    r,
                    weight,
                    group=groups,
                    strides=[gy.stride, gx.stride],
                    dilations=[gy.kernel_dilation, gx.kernel_dilation],
                    kernel_shape=[gy.kernel_size, gx.kernel_size],
                )
            pieces.append(r)
    # (B, G, Ho, Wo) x D -> (B, G, D, Ho, Wo) -> (B, G, Dy, Dx, Ho, Wo)
    out = op.Concat(*[op.Unsqueeze(p, channel_axis) for p in pieces], axis=2) if len(pieces) > 1 else pieces[0]
    if len(pieces) == 1:
        out = op.Unsqueeze(out, channel_axis)
    if scale != 1.0:
        out = op.Mul(out, op.CastLike(op.Constant(value_float=float(scale)), out))
    shape = op.Concat(
        op.Shape(out, start=0, end=2),
        op.Constant(value_ints=[gy.disp_count, gx.disp_count]),
        op.Shape(out, start=3, end=5),
        axis=0,
    )
    out = op.Reshape(out, shape)
    if half:
        out = op.Cast(out, to=in_type)
    return out


def _ones_tensor(groups: int, ky: int, kx: int, dtype: Any) -> Any:
    import numpy as np
    from onnxscript import ir

    return ir.tensor(np.ones((groups, 1, ky, kx), dtype=dtype.numpy()))


def corr_lookup_onnx(f1: Any, f2: Any, coords: Any, radius: int, scale: float, backend: str):
    """ONNX translation of ``torchcorr::corr_lookup`` (RAFT window lookup, standard operators only).

    One ``GridSample`` (bilinear, zeros outside) of ``f2`` per window offset, a channel dot
    product with ``f1``, then ``Concat``: ``Tensor[B, (2r+1)^2, H, W]``, the horizontal offset the
    slow index.  Positions that are not finite read zero.  ``backend`` is ignored.
    """
    from onnxscript.ir import DataType

    op = _op()
    half = f1.dtype in (DataType.FLOAT16, DataType.BFLOAT16)
    a, b = f1, f2
    if half:
        a, b = op.Cast(a, to=DataType.FLOAT), op.Cast(b, to=DataType.FLOAT)
    c = op.CastLike(coords, a)
    outside = op.CastLike(op.Constant(value_float=-(radius + 2.0)), a)
    c = op.Where(op.Or(op.IsNaN(c), op.IsInf(c)), outside, c)
    x = op.Gather(c, op.Constant(value_int=0), axis=1)  # (B, H, W)
    y = op.Gather(c, op.Constant(value_int=1), axis=1)
    h2 = op.CastLike(op.Shape(b, start=2, end=3), a)
    w2 = op.CastLike(op.Shape(b, start=3, end=4), a)
    one = op.CastLike(op.Constant(value_float=1.0), a)
    two = op.CastLike(op.Constant(value_float=2.0), a)
    last = op.Constant(value_ints=[-1])
    channel = op.Constant(value_ints=[1])
    pieces = []
    for dx in range(-radius, radius + 1):
        gx = op.Sub(
            op.Div(op.Add(op.Mul(two, op.Add(x, op.CastLike(op.Constant(value_float=float(dx)), a))), one), w2), one
        )
        for dy in range(-radius, radius + 1):
            gy = op.Sub(
                op.Div(op.Add(op.Mul(two, op.Add(y, op.CastLike(op.Constant(value_float=float(dy)), a))), one), h2),
                one,
            )
            grid = op.Concat(op.Unsqueeze(gx, last), op.Unsqueeze(gy, last), axis=-1)
            sampled = op.GridSample(b, grid, align_corners=0, mode="bilinear", padding_mode="zeros")
            pieces.append(op.ReduceSum(op.Mul(a, sampled), channel, keepdims=1))
    out = op.Concat(*pieces, axis=1) if len(pieces) > 1 else pieces[0]
    if scale != 1.0:
        out = op.Mul(out, op.CastLike(op.Constant(value_float=float(scale)), out))
    if half:
        out = op.Cast(out, to=f1.dtype)
    return out


def onnx_translation_table() -> dict[Callable[..., Any], Callable[..., Any]]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``.

    Maps every torchcorr operator that can appear in an inference graph to a function that emits
    standard ONNX operators (no custom domain), for any input height and width.

    Returns:
        ``{torch.ops.torchcorr.<op>.default: translation}``.

    Example:
        >>> import torch, torchcorr, torchcorr.onnx
        >>> table = torchcorr.onnx.onnx_translation_table()
        >>> torch.ops.torchcorr.correlation.default in table
        True
    """
    _op()  # a clear error now if onnxscript is missing
    table = {torch.ops.torchcorr.correlation.default: correlation_onnx}
    if hasattr(torch.ops.torchcorr, "corr_lookup"):
        table[torch.ops.torchcorr.corr_lookup.default] = corr_lookup_onnx
    return table
