"""The native correlation API, and the one entry every face goes through."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from . import _autocast, _composite, _shortcut, backends, ops
from ._geometry import AxisGeometry, Geometry, pair
from ._validation import check_feature_pair, check_groups, check_int

__all__ = [
    "Layout",
    "Mode",
    "Normalize",
    "check_options",
    "correlate",
    "correlation",
    "native_geometry",
    "normalization_scale",
    "to_layout",
]

Mode = Literal["product", "absdiff"]
Normalize = Literal["mean", "channels", "sqrt_channels", "none"]
Layout = Literal["flat", "grid", "channels_last"]

_MODES = ("product", "absdiff")
_NORMALIZE = ("mean", "channels", "sqrt_channels", "none")
_LAYOUTS = ("flat", "grid", "channels_last")


def normalization_scale(normalize: str | float, channels_per_group: int, kernel_area: int) -> float:
    """The factor the channel (and window) sum is multiplied by.

    ``"mean"``: ``1 / (kernel_area * channels)`` (FlowNet, MXNet, tensorflow-addons, PWC-Net for a
    one-tap window); ``"channels"``: ``1 / channels``; ``"sqrt_channels"``: ``1 / sqrt(channels)``
    (RAFT); ``"none"``: 1 (spatial-correlation-sampler, mmcv); a float: that factor.
    Channels are those of one group.
    """
    if isinstance(normalize, bool):
        raise TypeError("normalize must be one of 'mean', 'channels', 'sqrt_channels', 'none' or a float")
    if isinstance(normalize, (int, float)):
        if not math.isfinite(normalize):
            raise ValueError(f"normalize must be a finite factor, got {normalize}")
        return float(normalize)
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {list(_NORMALIZE)} or a float, got {normalize!r}")
    c = max(channels_per_group, 1)
    if normalize == "mean":
        return 1.0 / (kernel_area * c)
    if normalize == "channels":
        return 1.0 / c
    if normalize == "sqrt_channels":
        return 1.0 / math.sqrt(c)
    return 1.0


def correlate(
    f1: Tensor,
    f2: Tensor,
    geometry: Geometry,
    *,
    groups: int = 1,
    mode: str = "product",
    scale: float = 1.0,
    backend: str | None = None,
    too_small: Callable[[int, int], str] | None = None,
    names: tuple[str, str] = ("f1", "f2"),
) -> Tensor:
    """Run the core op on checked inputs: (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo).

    Every face (native, compat, volumes) ends here.  ``too_small(ho, wo)`` builds the error
    message for an empty output in the face's own terms.
    """
    f1, f2 = _autocast.cast_inputs(f1, f2)  # the autocast policy, see torchcorr._autocast
    check_feature_pair(f1, f2, names)
    groups = check_groups(groups, f1.shape[1])
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    h, w = f1.shape[2], f1.shape[3]
    ho, wo = geometry.out_hw(h, w)
    if ho < 1 or wo < 1:
        if too_small is not None:
            raise ValueError(too_small(ho, wo))
        raise ValueError(
            f"the output would be {ho} x {wo}: a {geometry.y.span} x {geometry.x.span} window "
            f"with stride ({geometry.y.stride}, {geometry.x.stride}) does not fit a {h} x {w} map "
            f"padded by ({geometry.y.pad_before}, {geometry.y.pad_after}) rows and "
            f"({geometry.x.pad_before}, {geometry.x.pad_after}) columns"
        )
    if _composite.active():  # torch.export / ONNX: trace standard aten ops only
        return _composite.correlation(f1, f2, geometry, groups, mode, float(scale))
    args = (f1, f2, geometry.as_list(), groups, mode, float(scale), backends.resolve(backend))
    if _shortcut.usable(f1, f2):  # nothing needs to see the registered op: skip its dispatch
        return _shortcut.call(ops.SHORTCUT, args[:2], args[2:])
    return torch.ops.torchcorr.correlation(*args)


def to_layout(out: Tensor, layout: str, groups: int) -> Tensor:
    """(B, G, Dy, Dx, Ho, Wo) -> the requested layout (views, no copies).

    ``"flat"``: (B, Dy*Dx, Ho, Wo); ``"grid"``: (B, Dy, Dx, Ho, Wo); ``"channels_last"``:
    (B, Ho, Wo, Dy*Dx).  With ``groups > 1`` a group axis follows the batch axis.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {list(_LAYOUTS)}, got {layout!r}")
    if layout == "flat":
        out = out.flatten(2, 3)
    elif layout == "channels_last":
        out = out.flatten(2, 3).movedim(2, -1)
    return out.squeeze(1) if groups == 1 else out


def _displacement_axis(
    max_displacement: int, displacement_stride: int, rng: range | None, axis: str
) -> tuple[int, int, int]:
    if rng is not None:
        if not isinstance(rng, range):
            raise TypeError(f"displacements must be a pair of range objects, got {type(rng).__name__} for {axis}")
        if len(rng) == 0:
            raise ValueError(f"displacements[{axis}] must not be empty, got {rng}")
        return rng.start, len(rng), rng.step
    radius = max_displacement // displacement_stride
    return -radius * displacement_stride, 2 * radius + 1, displacement_stride


def native_geometry(
    *,
    max_displacement: int | Sequence[int] = 4,
    displacement_stride: int | Sequence[int] = 1,
    displacements: tuple[range, range] | None = None,
    kernel_size: int | Sequence[int] = 1,
    kernel_dilation: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | None = None,
) -> Geometry:
    """Check the native arguments of :func:`correlation` and build their :class:`Geometry`."""
    md = pair(max_displacement, "max_displacement")
    ds = pair(displacement_stride, "displacement_stride")
    ks = pair(kernel_size, "kernel_size")
    kd = pair(kernel_dilation, "kernel_dilation")
    st = pair(stride, "stride")
    for name, value, minimum in (
        ("max_displacement", md, 0),
        ("displacement_stride", ds, 1),
        ("kernel_size", ks, 1),
        ("kernel_dilation", kd, 1),
        ("stride", st, 1),
    ):
        for v in value:
            check_int(v, name, minimum)
    if padding is None:
        pad = (((ks[0] - 1) * kd[0]) // 2, ((ks[1] - 1) * kd[1]) // 2)
    else:
        pad = pair(padding, "padding")
    if displacements is not None:
        if not isinstance(displacements, (tuple, list)) or len(displacements) != 2:
            raise TypeError("displacements must be a pair (range_y, range_x) of range objects")
        rngs: tuple[range | None, range | None] = (displacements[0], displacements[1])
    else:
        rngs = (None, None)
    axes = []
    for a, axis in enumerate(("y", "x")):
        start, count, step = _displacement_axis(md[a], ds[a], rngs[a], axis)
        axes.append(AxisGeometry(pad[a], pad[a], st[a], ks[a], kd[a], start, count, step))
    return Geometry(*axes)


def check_options(mode: str, normalize: object, layout: str) -> None:
    """Check the string options of :func:`correlation` without a tensor at hand."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {list(_LAYOUTS)}, got {layout!r}")
    normalization_scale(normalize, 1, 1)  # type: ignore[arg-type]


def correlation(
    f1: Tensor,
    f2: Tensor,
    *,
    max_displacement: int | Sequence[int] = 4,
    displacement_stride: int | Sequence[int] = 1,
    displacements: tuple[range, range] | None = None,
    kernel_size: int | Sequence[int] = 1,
    kernel_dilation: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | None = None,
    mode: Mode = "product",
    normalize: Normalize | float = "mean",
    groups: int = 1,
    layout: Layout = "flat",
    backend: str | None = None,
) -> Tensor:
    """Correlation of two feature maps over a grid of displacements.

    For every output position ``(i, j)`` a ``kernel_size`` window of ``f1`` with top-left corner
    ``(i*stride - padding, j*stride - padding)`` is compared with the same window of ``f2`` shifted
    by each displacement ``(dy, dx)``; features outside the maps count as zero::

        out[b, (ty, tx), i, j] = scale * sum_c sum_{u, v} f1[b, c, y, x] * f2[b, c, y + dy, x + dx]
        y = i*stride - padding + u*kernel_dilation,   x = j*stride - padding + v*kernel_dilation

    (``mode="absdiff"`` uses ``|f1 - f2|``).  Displacements run from ``-r*displacement_stride``
    to ``r*displacement_stride`` with ``r = max_displacement // displacement_stride`` (the FlowNet
    grid), or over explicit ``range`` objects.  The vertical displacement is the slow index of
    the flattened displacement axis (FlowNet's order).

    Output size per axis::

        Ho = floor((H + 2*padding - ((kernel_size - 1)*kernel_dilation + 1)) / stride) + 1

    Args:
        f1: first features, ``Tensor[B, C, H, W]``, any floating dtype (float16 and bfloat16
            accumulate in float32), any memory layout.
        f2: second features, same shape, dtype and device as ``f1``.
        max_displacement: largest displacement in pixels, an int or an (h, w) pair, >= 0.
        displacement_stride: step between displacements in pixels, >= 1 (int or pair).
        displacements: explicit per-axis displacement grids ``(range_y, range_x)``, e.g.
            ``(range(0, 1), range(0, -40, -1))`` for a one-sided horizontal search; overrides
            ``max_displacement`` and ``displacement_stride``.
        kernel_size: taps of the comparison window per axis, >= 1.
        kernel_dilation: step between window taps, >= 1.
        stride: step between output positions, >= 1.
        padding: zeros around ``f1``'s output grid per side (negative crops).  ``None`` centres
            windows on pixels: ``((kernel_size - 1) * kernel_dilation) // 2``.
        mode: ``"product"`` or ``"absdiff"`` (gradient sign(0) = +1 for f1, -1 for f2).
        normalize: ``"mean"`` (divide by window taps x channels), ``"channels"``,
            ``"sqrt_channels"``, ``"none"`` or a float factor.  Channels are per group.
        groups: split channels into this many contiguous groups, one output per group.
        layout: ``"flat"`` -> ``Tensor[B, Dy*Dx, Ho, Wo]``, ``"grid"`` ->
            ``Tensor[B, Dy, Dx, Ho, Wo]``, ``"channels_last"`` -> ``Tensor[B, Ho, Wo, Dy*Dx]``
            (a view).  With ``groups > 1`` a group axis ``G`` follows ``B``.
        backend: ``"auto"`` (default, or ``TORCHCORR_BACKEND``), ``"torch"``, or another name from
            ``torchcorr.backends.resolve_names()``.

    Returns:
        The correlation in the requested layout, dtype of the inputs.

    Example:
        >>> import torch, torchcorr
        >>> f1, f2 = torch.randn(2, 2, 32, 8, 8).unbind(0)
        >>> torchcorr.correlation(f1, f2, max_displacement=3).shape
        torch.Size([2, 49, 8, 8])
        >>> torchcorr.correlation(f1, f2, max_displacement=3, layout="grid").shape
        torch.Size([2, 7, 7, 8, 8])
    """
    check_options(mode, normalize, layout)
    geometry = native_geometry(
        max_displacement=max_displacement,
        displacement_stride=displacement_stride,
        displacements=displacements,
        kernel_size=kernel_size,
        kernel_dilation=kernel_dilation,
        stride=stride,
        padding=padding,
    )
    if not isinstance(f1, Tensor):
        raise TypeError(f"f1 must be a torch.Tensor, got {type(f1).__name__}")
    c = f1.shape[1] if f1.dim() == 4 else 1
    groups = check_int(groups, "groups", 1)
    scale = normalization_scale(normalize, c // groups if c % groups == 0 else 1, geometry.kernel_area)
    out = correlate(f1, f2, geometry, groups=groups, mode=mode, scale=scale, backend=backend)
    return to_layout(out, layout, groups)
