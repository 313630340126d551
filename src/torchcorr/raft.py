"""RAFT all-pairs correlation, its pyramid, and the window lookup at fractional positions.

Definitions (semantics.md section 5):

* ``all_pairs``: ``corr[b, y1, x1, y2, x2] = <f1[b, :, y1, x1], f2[b, :, y2, x2]> / sqrt(C)``.
* ``correlation_pyramid``: level ``l+1`` is the 2x2 average (stride 2, floor) of level ``l`` over
  the last two dimensions.
* ``pyramid_lookup``: level ``l`` is sampled at ``coords / 2**l + (a, d)``, ``a, d in [-r, r]``,
  bilinear with ``align_corners=True`` semantics (pixel ``i`` sits at coordinate ``i``), zero
  outside; channel ``(a + r)*(2r+1) + (d + r)`` (the horizontal offset ``a`` is the slow index),
  levels concatenated.
* ``alternate_lookup``: the same numbers without the ``(H*W)^2`` volume.  Correlation is linear in
  ``f2``, so level ``l`` of the pyramid is the correlation of ``f1`` with ``f2`` average-pooled ``l``
  times; only the ``(2r+1)^2`` window of each pixel is computed, by the registered op
  ``torch.ops.torchcorr.corr_lookup`` (gradients to ``f1``, ``f2`` and ``coords``).

Lookup backends
---------------
``torchcorr::corr_lookup`` runs the first implementation in :data:`LOOKUP_PRIORITY` that imports
and accepts the input.  An implementation is a module with ``NAME``, optional
``available() -> str | None``, ``can_run(f1, f2, coords, radius) -> str | None`` (``None``: yes, else
a reason), ``forward(f1, f2, coords, radius, scale) -> Tensor[B, (2r+1)^2, H, W]`` and
``backward(grad, f1, f2, coords, radius, scale, need_f1, need_f2, need_coords)`` returning the three
gradients (``None`` where not needed).  Add one with :func:`register_lookup_backend`; choose one per
call with ``backend=`` or for the process with the environment variable ``TORCHCORR_LOOKUP_BACKEND``.
The pure-PyTorch one, :mod:`torchcorr.backends.lookup_pure` (``"torch"``), runs everywhere.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor

from . import _composite, _shortcut
from ._validation import check_feature_pair, check_int
from .backends import lookup_pure
from .backends.pure import accumulation_dtype

__all__ = [
    "LOOKUP_PRIORITY",
    "all_pairs",
    "alternate_lookup",
    "correlation_pyramid",
    "feature_pyramid",
    "local_lookup",
    "lookup_backend_names",
    "pyramid_lookup",
    "register_lookup_backend",
]

LOOKUP_ENV_VAR = "TORCHCORR_LOOKUP_BACKEND"

#: Lookup implementations in the order ``"auto"`` tries them: (name, module path).
LOOKUP_PRIORITY: list[tuple[str, str]] = [
    ("triton", "torchcorr.backends.triton.lookup"),
    ("torch", "torchcorr.backends.lookup_pure"),
]

_lookup_loaded: dict[str, ModuleType | None] = {}
_lookup_reasons: dict[str, str] = {}


# --------------------------------------------------------------------------------------------
# lookup dispatch
# --------------------------------------------------------------------------------------------


def register_lookup_backend(name: str, module_path: str, before: str | None = "torch") -> None:
    """Add a lookup implementation to :data:`LOOKUP_PRIORITY`, ahead of ``before`` (default: the pure one)."""
    names = lookup_backend_names()
    if name in names:
        return
    index = names.index(before) if before in names else len(LOOKUP_PRIORITY)
    LOOKUP_PRIORITY.insert(index, (name, module_path))


def lookup_backend_names() -> list[str]:
    """All lookup implementation names, in priority order."""
    return [n for n, _ in LOOKUP_PRIORITY]


def _lookup_module(name: str) -> ModuleType | None:
    if name not in _lookup_loaded:
        path = dict(LOOKUP_PRIORITY)[name]
        try:
            module = importlib.import_module(path)
            reason = module.available() if hasattr(module, "available") else None
        except ImportError as exc:
            module, reason = None, f"cannot import {path}: {exc}"
        if reason is not None:
            _lookup_reasons[name] = reason
            module = None
        _lookup_loaded[name] = module
    return _lookup_loaded[name]


def _resolve_lookup_backend(backend: str | None) -> str:
    if backend is None or backend == "":
        backend = os.environ.get(LOOKUP_ENV_VAR, "") or "auto"
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto" and backend not in lookup_backend_names():
        raise ValueError(f"backend must be one of {lookup_backend_names()} or 'auto', got {backend!r}")
    return backend


def _select_lookup(backend: str, f1: Tensor, f2: Tensor, coords: Tensor, radius: int) -> ModuleType:
    names = lookup_backend_names() if backend == "auto" else [backend]
    reasons = []
    for name in names:
        module = _lookup_module(name)
        if module is None:
            reason = _lookup_reasons.get(name, "not available")
        else:
            reason = module.can_run(f1, f2, coords, radius)
        if reason is None:
            assert module is not None
            return module
        reasons.append(f"{name}: {reason}")
    if backend != "auto":
        raise ValueError(f"lookup backend {backend!r} cannot run this input: {reasons[0]}")
    raise RuntimeError("no lookup backend can run this input:\n  " + "\n  ".join(reasons))


# --------------------------------------------------------------------------------------------
# the registered op
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("torchcorr::corr_lookup", mutates_args=())
def corr_lookup(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float, backend: str) -> Tensor:
    """One level of the window lookup: ``Tensor[B, (2r+1)^2, H, W]`` (see :func:`local_lookup`)."""
    return _lookup_forward(f1, f2, coords, radius, scale, backend)


def _lookup_forward(f1, f2, coords, radius, scale, backend) -> Tensor:
    return _select_lookup(backend, f1, f2, coords, radius).forward(f1, f2, coords, radius, scale)


@corr_lookup.register_fake
def _corr_lookup_fake(f1, f2, coords, radius, scale, backend):
    k = 2 * radius + 1
    return f1.new_empty((f1.shape[0], k * k, f1.shape[2], f1.shape[3]))


@torch.library.custom_op("torchcorr::corr_lookup_backward", mutates_args=())
def corr_lookup_backward(
    grad: Tensor,
    f1: Tensor,
    f2: Tensor,
    coords: Tensor,
    radius: int,
    scale: float,
    backend: str,
    need_f1: bool,
    need_f2: bool,
    need_coords: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`corr_lookup` for ``f1``, ``f2``, ``coords`` (empty where not needed)."""
    g1, g2, gc = _lookup_backward(grad, f1, f2, coords, radius, scale, backend, need_f1, need_f2, need_coords)
    return (
        g1 if g1 is not None else f1.new_empty(0),
        g2 if g2 is not None else f2.new_empty(0),
        gc if gc is not None else coords.new_empty(0),
    )


def _lookup_backward(grad, f1, f2, coords, radius, scale, backend, need_f1, need_f2, need_coords):
    impl = _select_lookup(backend, f1, f2, coords, radius)
    return impl.backward(grad.contiguous(), f1, f2, coords, radius, scale, need_f1, need_f2, need_coords)


@corr_lookup_backward.register_fake
def _corr_lookup_backward_fake(grad, f1, f2, coords, radius, scale, backend, need_f1, need_f2, need_coords):
    return (
        f1.new_empty(f1.shape if need_f1 else (0,)),
        f2.new_empty(f2.shape if need_f2 else (0,)),
        coords.new_empty(coords.shape if need_coords else (0,)),
    )


def _corr_lookup_setup(ctx, inputs, output) -> None:
    f1, f2, coords, radius, scale, backend = inputs
    ctx.save_for_backward(f1, f2, coords)
    ctx.params = (radius, scale, backend)


def _corr_lookup_bwd(ctx, grad):
    f1, f2, coords = ctx.saved_tensors
    n1, n2, nc = ctx.needs_input_grad[:3]
    g1, g2, gc = corr_lookup_backward(grad, f1, f2, coords, *ctx.params, n1, n2, nc)
    return (g1 if n1 else None), (g2 if n2 else None), (gc if nc else None), None, None, None


corr_lookup.register_autograd(_corr_lookup_bwd, setup_context=_corr_lookup_setup)

#: :func:`corr_lookup` for plain eager calls (:func:`torchcorr._shortcut.call`)
_SHORTCUT = _shortcut.Route(_lookup_forward, _lookup_backward, corr_lookup_backward)


def _lookup(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float, backend: str) -> Tensor:
    """The op, or under ``torch.export`` / ONNX export its composite of standard aten ops.

    Plain eager calls skip the op's dispatch (:mod:`torchcorr._shortcut`).
    """
    if _composite.active():
        return _composite.corr_lookup(f1, f2, coords, radius, scale)
    if _shortcut.usable(f1, f2, coords):  # nothing needs to see the registered op
        return _shortcut.call(_SHORTCUT, (f1, f2, coords), (radius, scale, backend))
    return corr_lookup(f1, f2, coords, radius, scale, backend)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _check_coords(coords: object, b: int, h: int, w: int, device: torch.device) -> Tensor:
    if not isinstance(coords, Tensor):
        raise TypeError(f"coords must be a torch.Tensor, got {type(coords).__name__}")
    if not coords.is_floating_point():
        raise TypeError(f"coords must have a floating dtype, got {coords.dtype}")
    if tuple(coords.shape) != (b, 2, h, w):
        raise ValueError(
            f"coords must have shape (B, 2, H, W) = {(b, 2, h, w)} (x then y, absolute pixel positions "
            f"for every pixel of f1), got {tuple(coords.shape)}"
        )
    if coords.device != device:
        raise ValueError(f"coords must be on the features' device {device}, got {coords.device}")
    return coords


def _check_level(f1: Tensor, level: object, name: str) -> Tensor:
    if not isinstance(level, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(level).__name__}")
    if level.dim() != 4:
        raise ValueError(f"{name} must be a 4-D tensor (B, C, h, w), got shape {tuple(level.shape)}")
    if level.dtype != f1.dtype:
        raise TypeError(f"f1 and {name} must have the same dtype, got {f1.dtype} and {level.dtype}")
    if level.device != f1.device:
        raise ValueError(f"f1 and {name} must be on the same device, got {f1.device} and {level.device}")
    if level.shape[:2] != f1.shape[:2]:
        raise ValueError(
            f"f1 and {name} must have the same batch and channel sizes, got {tuple(f1.shape)} and {tuple(level.shape)}"
        )
    return level


def _check_f1(f1: object) -> Tensor:
    if not isinstance(f1, Tensor):
        raise TypeError(f"f1 must be a torch.Tensor, got {type(f1).__name__}")
    if not f1.is_floating_point():
        raise TypeError(f"f1 must have a floating dtype (float16, bfloat16, float32, float64), got {f1.dtype}")
    if f1.dim() != 4:
        raise ValueError(f"f1 must be a 4-D tensor (B, C, H, W), got shape {tuple(f1.shape)}")
    if f1.shape[1] < 1:
        raise ValueError("f1 must have at least one channel (the scale is 1/sqrt(C))")
    return f1


# --------------------------------------------------------------------------------------------
# all-pairs path
# --------------------------------------------------------------------------------------------


def all_pairs(f1: Tensor, f2: Tensor) -> Tensor:
    """All-pairs correlation of two feature maps, scaled by ``1/sqrt(C)`` (RAFT's level 0).

    ``out[b, y1, x1, y2, x2] = <f1[b, :, y1, x1], f2[b, :, y2, x2]> / sqrt(C)``, one matrix product.
    The output holds ``B*(H*W)^2`` values (4.3 GB in float32 for a 1088 x 1920 frame at 1/8):
    for large maps use :func:`alternate_lookup`, which never builds it.

    Args:
        f1: ``Tensor[B, C, H, W]``, any floating dtype, any memory layout.
        f2: ``Tensor[B, C, H, W]``, same shape, dtype and device.

    Returns:
        ``Tensor[B, H, W, H, W]`` in the inputs' dtype.

    Example:
        >>> import torch, torchcorr
        >>> torchcorr.all_pairs(torch.randn(2, 8, 6, 10), torch.randn(2, 8, 6, 10)).shape
        torch.Size([2, 6, 10, 6, 10])
    """
    check_feature_pair(f1, f2)
    _check_f1(f1)
    b, c, h, w = f1.shape
    scale = 1.0 / math.sqrt(c)
    a = f1.reshape(b, c, h * w).transpose(1, 2) * scale
    return torch.matmul(a, f2.reshape(b, c, h * w)).reshape(b, h, w, h, w)


def _pool2x2(x: Tensor) -> Tensor:
    """2x2 average pooling with stride 2 (floor) over the last two dimensions, any leading shape."""
    h, w = x.shape[-2], x.shape[-1]
    lead = x.shape[:-2]
    if h < 2 or w < 2 or x.numel() == 0:
        return x.new_zeros((*lead, h // 2, w // 2))
    # the mean of the four corners of each 2 x 2 cell, from strided views (floor(n / 2) of them
    # along an axis of n: even indices up to n - 2, odd ones from 1).  Symbolic sizes
    # (torch.export, torch.compile(dynamic=True)) stay free of guards: avg_pool2d's shape formula
    # adds a parity guard on torch 2.11 (seen on the first GPU machine), as would a reshape, and a
    # slice ending at 2 * (n // 2) a bound guard.  Summed in row-major order within a cell, as
    # avg_pool2d does (bit-identical on CPU), into one output-sized buffer.
    even_r, odd_r = x[..., 0 : h - 1 : 2, :], x[..., 1::2, :]
    out = even_r[..., 0 : w - 1 : 2] + even_r[..., 1::2]
    out += odd_r[..., 0 : w - 1 : 2]
    out += odd_r[..., 1::2]
    return out.mul_(0.25)


def correlation_pyramid(corr: Tensor, num_levels: int = 4) -> list[Tensor]:
    """RAFT's correlation pyramid: repeated 2x2 average pooling (stride 2, floor) of the last two dims.

    Level ``l`` has the last two sizes ``floor(h / 2**l), floor(w / 2**l)``; a level that shrinks
    to zero rows or columns is an empty tensor (lookups there read zeros).

    Args:
        corr: ``Tensor[..., h, w]``, usually :func:`all_pairs`'s ``Tensor[B, H, W, H, W]``.
        num_levels: number of levels returned, >= 1 (the first is ``corr`` itself).

    Returns:
        A list of ``num_levels`` tensors ``Tensor[..., h >> l, w >> l]``.

    Example:
        >>> import torch, torchcorr
        >>> corr = torchcorr.all_pairs(torch.randn(1, 8, 6, 10), torch.randn(1, 8, 6, 10))
        >>> [tuple(c.shape[-2:]) for c in torchcorr.correlation_pyramid(corr, 3)]
        [(6, 10), (3, 5), (1, 2)]
    """
    if not isinstance(corr, Tensor):
        raise TypeError(f"corr must be a torch.Tensor, got {type(corr).__name__}")
    if corr.dim() < 2:
        raise ValueError(f"corr must have at least two dimensions, got shape {tuple(corr.shape)}")
    check_int(num_levels, "num_levels", 1)
    levels = [corr]
    for _ in range(num_levels - 1):
        levels.append(_pool2x2(levels[-1]))
    return levels


def feature_pyramid(f2: Tensor, num_levels: int = 4) -> list[Tensor]:
    """``f2`` average-pooled ``0 .. num_levels-1`` times: the features whose correlations form the pyramid.

    Args:
        f2: ``Tensor[B, C, H, W]``.
        num_levels: number of levels, >= 1.

    Returns:
        A list of ``Tensor[B, C, H >> l, W >> l]``.
    """
    if not isinstance(f2, Tensor) or f2.dim() != 4:
        raise ValueError(f"f2 must be a 4-D tensor (B, C, H, W), got {getattr(f2, 'shape', type(f2).__name__)}")
    return correlation_pyramid(f2, num_levels)


def pyramid_lookup(pyramid: Sequence[Tensor], coords: Tensor, radius: int = 4) -> Tensor:
    """Bilinear window lookup in a correlation pyramid (RAFT's ``CorrBlock.__call__``).

    Level ``l`` is sampled at ``coords / 2**l + (a, d)`` for ``a, d in [-r, r]``; samples use
    ``align_corners=True`` semantics (pixel ``i`` at coordinate ``i``) and read zero outside the
    level.  Channel ``l*(2r+1)^2 + (a + r)*(2r+1) + (d + r)``: ``a`` is the horizontal offset and
    the slow index, as in RAFT.  Differentiable with respect to the pyramid and ``coords``
    (standard aten ops).

    Args:
        pyramid: levels ``Tensor[B, H, W, h_l, w_l]`` from :func:`correlation_pyramid`.
        coords: ``Tensor[B, 2, H, W]``, absolute (x, y) positions in level-0 pixels.
        radius: window radius ``r`` >= 0.

    Returns:
        ``Tensor[B, L*(2r+1)^2, H, W]`` with ``L = len(pyramid)``.

    Example:
        >>> import torch, torchcorr
        >>> f1, f2 = torch.randn(2, 1, 8, 6, 10).unbind(0)
        >>> pyramid = torchcorr.correlation_pyramid(torchcorr.all_pairs(f1, f2), 2)
        >>> torchcorr.pyramid_lookup(pyramid, torch.rand(1, 2, 6, 10) * 6, radius=3).shape
        torch.Size([1, 98, 6, 10])
    """
    if isinstance(pyramid, Tensor) or not isinstance(pyramid, Sequence) or len(pyramid) == 0:
        raise TypeError("pyramid must be a non-empty list of Tensor[B, H, W, h, w] (see correlation_pyramid)")
    check_int(radius, "radius", 0)
    first = pyramid[0]
    for i, level in enumerate(pyramid):
        if not isinstance(level, Tensor) or level.dim() != 5:
            raise ValueError(f"pyramid[{i}] must be a 5-D tensor (B, H, W, h, w), got {getattr(level, 'shape', level)}")
        if level.shape[:3] != first.shape[:3]:
            raise ValueError(f"pyramid[{i}] must have leading sizes {tuple(first.shape[:3])}, got {tuple(level.shape)}")
        if not level.is_floating_point():
            raise TypeError(f"pyramid[{i}] must have a floating dtype, got {level.dtype}")
    b, h, w = first.shape[:3]
    _check_coords(coords, b, h, w, first.device)
    k = 2 * radius + 1
    n = b * h * w
    outs = []
    for i, level in enumerate(pyramid):
        h2, w2 = level.shape[-2:]
        acc = accumulation_dtype(level.dtype)
        if n == 0 or h2 * w2 == 0:
            outs.append(level.new_zeros((b, k * k, h, w)))
            continue
        index, valid, fractions = lookup_pure.bilinear_taps(coords / 2**i, radius, h2, w2, acc)
        rows = level.reshape(n, h2 * w2)
        grid = rows.gather(1, index.reshape(-1, n).t()).t().reshape(index.shape).to(acc) * valid
        sampled = lookup_pure.combine(grid, fractions)
        outs.append(sampled.reshape(k * k, b, h, w).transpose(0, 1).to(level.dtype))
    return torch.cat(outs, 1)


# --------------------------------------------------------------------------------------------
# on-the-fly path
# --------------------------------------------------------------------------------------------


def local_lookup(
    f1: Tensor,
    f2: Tensor,
    coords: Tensor,
    radius: int = 4,
    *,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Correlation window at fractional positions without the all-pairs volume (one pyramid level).

    ``out[b, (a + r)*(2r+1) + (d + r), y, x]`` is the correlation volume
    ``S[Y, X] = scale * <f1[b, :, y, x], f2[b, :, Y, X]>`` (zero outside ``f2``) sampled bilinearly
    (``align_corners=True``) at ``coords[b, :, y, x] + (a, d)``, ``a`` horizontal.  ``f2`` may have
    any spatial size (e.g. a pooled pyramid level); ``coords`` are in ``f2``'s pixel units.  Runs
    the registered op ``torchcorr::corr_lookup``: memory ``O(B*H*W*(2r+2)^2)`` plus input-sized
    buffers, gradients to ``f1``, ``f2`` and ``coords``.

    Args:
        f1: ``Tensor[B, C, H, W]``, floating.
        f2: ``Tensor[B, C, h, w]``, same batch, channels, dtype and device.
        coords: ``Tensor[B, 2, H, W]``, (x, y) positions in ``f2`` (any floating dtype).
        radius: window radius ``r`` >= 0.
        scale: factor of the dot product, default ``1/sqrt(C)``.
        backend: lookup implementation (see the module docstring), default ``"auto"``.

    Returns:
        ``Tensor[B, (2r+1)^2, H, W]`` in ``f1``'s dtype.

    Example:
        >>> import torch, torchcorr
        >>> f1, f2 = torch.randn(2, 1, 16, 12, 20).unbind(0)
        >>> torchcorr.local_lookup(f1, f2, torch.rand(1, 2, 12, 20) * 12, radius=2).shape
        torch.Size([1, 25, 12, 20])
    """
    _check_f1(f1)
    _check_level(f1, f2, "f2")
    check_int(radius, "radius", 0)
    b, c, h, w = f1.shape
    _check_coords(coords, b, h, w, f1.device)
    if scale is None:
        scale = 1.0 / math.sqrt(c)
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    return _lookup(f1, f2, coords, radius, float(scale), _resolve_lookup_backend(backend))


def alternate_lookup(
    f1: Tensor,
    f2: Tensor | Sequence[Tensor],
    coords: Tensor,
    num_levels: int | None = None,
    radius: int = 4,
    *,
    backend: str | None = None,
) -> Tensor:
    """RAFT's pyramid lookup computed on the fly: equal to ``pyramid_lookup(correlation_pyramid(all_pairs(f1, f2)))``.

    Level ``l`` correlates ``f1`` with ``f2`` average-pooled ``l`` times (correlation is linear in
    ``f2``, so this is the pooled volume) and samples only the ``(2r+1)^2`` window of each pixel
    at ``coords / 2**l``.  The ``(H*W)^2`` volume is never built, forward or backward: working
    memory is ``O(B*H*W*L*(2r+1)^2)`` plus input-sized buffers.  Gradients flow to ``f1``, ``f2``
    and ``coords``; any channel count works.

    Args:
        f1: ``Tensor[B, C, H, W]``, floating.
        f2: ``Tensor[B, C, H, W]`` (pooled here), or a precomputed list of levels
            ``Tensor[B, C, h_l, w_l]`` such as :func:`feature_pyramid`'s.
        coords: ``Tensor[B, 2, H, W]``, absolute (x, y) positions in level-0 pixels.
        num_levels: number of levels, >= 1; default 4 for a tensor, the list length for a list.
        radius: window radius ``r`` >= 0.
        backend: lookup implementation, default ``"auto"`` (or ``TORCHCORR_LOOKUP_BACKEND``).

    Returns:
        ``Tensor[B, L*(2r+1)^2, H, W]``, channels ordered as in :func:`pyramid_lookup`.

    Example:
        >>> import torch, torchcorr
        >>> f1, f2 = torch.randn(2, 1, 16, 24, 32).unbind(0)
        >>> torchcorr.alternate_lookup(f1, f2, torch.rand(1, 2, 24, 32) * 24).shape
        torch.Size([1, 324, 24, 32])
    """
    _check_f1(f1)
    if isinstance(f2, Tensor):
        check_feature_pair(f1, f2)
        levels = feature_pyramid(f2, 4 if num_levels is None else check_int(num_levels, "num_levels", 1))
    elif isinstance(f2, Sequence) and len(f2) > 0:
        levels = [_check_level(f1, lvl, f"f2[{i}]") for i, lvl in enumerate(f2)]
        if num_levels is not None and check_int(num_levels, "num_levels", 1) != len(levels):
            raise ValueError(f"num_levels must equal the number of f2 levels given ({len(levels)}), got {num_levels}")
    else:
        raise TypeError("f2 must be a Tensor[B, C, H, W] or a non-empty list of pooled levels")
    check_int(radius, "radius", 0)
    b, c, h, w = f1.shape
    _check_coords(coords, b, h, w, f1.device)
    name = _resolve_lookup_backend(backend)
    scale = 1.0 / math.sqrt(c)
    outs = [_lookup(f1, level, coords / 2**i, radius, scale, name) for i, level in enumerate(levels)]
    return torch.cat(outs, 1)
