"""Triton implementation of the RAFT window lookup (one pyramid level), gradients to f1, f2, coords.

A lookup backend in the sense of :mod:`torchcorr.raft` (``NAME``, ``available``, ``can_run``,
``forward``, ``backward``): for pixel ``p`` of ``f1`` with target ``c = coords[b, :, y, x]`` (x first,
in ``f2``'s pixel units)::

    out[b, (a + r)*K + (d + r), y, x] = bilinear(S_p, c_x + a, c_y + d),   a, d in [-r, r], K = 2r + 1
    S_p[Y, X] = scale * <f1[b, :, y, x], f2[b, :, Y, X]>                  (zero outside f2)

with bilinear sampling at ``align_corners=True`` (pixel ``i`` at coordinate ``i``).  Forward and the
per-pixel backward (``f1``, ``coords``) are one program per block of pixels; the ``f2`` gradient is a
gather over the (pixel, neighbour) pairs sorted stably by the ``f2`` pixel they read, so the whole
backward is deterministic (no atomics).  Memory: ``O(B*H*W*(2r+2)^2)`` for that list, never the
``(H*W)^2`` volume.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import available, interpret_requested, launcher

NAME = "triton"

__all__ = ["CALLS", "NAME", "available", "backward", "can_run", "forward"]

#: Calls per kernel (tests use it to check which kernels ran).
CALLS: dict[str, int] = {"lookup_fwd": 0, "lookup_bwd_pixel": 0, "lookup_bwd_f2": 0}


_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def can_run(f1: Tensor, f2: Tensor, coords: Tensor, radius: int) -> str | None:
    """``None`` if the Triton lookup handles this input, else why not."""
    if f1.device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
    elif f1.device.type == "cpu":
        if not interpret_requested():
            return "CPU tensors run through Triton only in its interpreter (set TRITON_INTERPRET=1)"
    else:
        return f"device {f1.device.type!r} is not supported (CUDA only)"
    if f1.dtype not in _DTYPES:
        return f"dtype {f1.dtype} is not supported (float32, float16, bfloat16, float64)"
    if not coords.is_floating_point():
        return f"coords dtype {coords.dtype} is not floating"
    if radius > 15:
        return f"radius {radius} > 15: the (2r+2)^2 neighbour tile would not fit in registers"
    k1 = (2 * radius + 2) ** 2
    if max(f1.numel(), f2.numel(), f1.shape[0] * f1.shape[2] * f1.shape[3] * k1) >= 2**31:
        return "more than 2**31 elements in one buffer (32-bit indexing)"
    try:
        module = launcher()
    except RuntimeError as exc:
        return str(exc)
    if f1.device.type == "cpu" and not module.interpreted():
        return "the Triton kernels were compiled for the GPU before TRITON_INTERPRET=1 was set"
    return None


def _meta(f1: Tensor, coords: Tensor, radius: int) -> dict:
    import triton
    import triton.language as tl

    k = 2 * radius + 1
    block_q = triton.next_power_of_2((k + 1) ** 2)
    return {
        "RADIUS": radius,
        "ACC": tl.float64 if f1.dtype == torch.float64 else tl.float32,
        "CDT": tl.float64 if coords.dtype == torch.float64 else tl.float32,
        "BLOCK_P": max(2, min(64, 4096 // block_q)),
        "BLOCK_Q": block_q,
        "BLOCK_K": triton.next_power_of_2(k * k),
    }


def _strides(x: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in x.stride())


def forward(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    """One level of the window lookup: ``Tensor[B, (2r+1)^2, H, W]``."""
    import triton

    kern = launcher().kernels
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    if b * h * w == 0 or h2 * w2 == 0 or c == 0:
        return f1.new_zeros((b, k * k, h, w))
    out = torch.empty((b, k * k, h, w), dtype=f1.dtype, device=f1.device)
    meta = _meta(f1, coords, radius)
    grid = (triton.cdiv(h * w, meta["BLOCK_P"]), b)
    limit = float(max(h2, w2) + radius + 2)
    kscale, post = launcher().kernel_scale(scale, f1.dtype)
    kern.lookup_fwd_kernel[grid](
        f1, f2, coords, out, *_strides(f1), *_strides(f2), *_strides(coords), c, h, w, h2, w2, limit, kscale, **meta
    )
    CALLS["lookup_fwd"] += 1
    return out if post is None else out.mul_(post)


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
    """Gradients of :func:`forward` for ``f1``, ``f2``, ``coords`` (``None`` where not asked)."""
    import triton

    kern = launcher().kernels
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    n = b * h * w
    if n == 0 or h2 * w2 == 0 or c == 0 or not (need_f1 or need_f2 or need_coords):
        return (
            torch.zeros_like(f1, memory_format=torch.contiguous_format) if need_f1 else None,
            torch.zeros_like(f2, memory_format=torch.contiguous_format) if need_f2 else None,
            torch.zeros_like(coords, memory_format=torch.contiguous_format) if need_coords else None,
        )
    grad = grad.contiguous()
    dev = f1.device
    g1 = torch.empty((b, c, h, w), dtype=f1.dtype, device=dev) if need_f1 else None
    gc = torch.empty((b, 2, h, w), dtype=coords.dtype, device=dev) if need_coords else None
    q1 = (k + 1) ** 2
    acc = torch.float64 if f1.dtype == torch.float64 else torch.float32
    wt = torch.empty((n, q1), dtype=acc, device=dev) if need_f2 else None
    key = torch.empty((n, q1), dtype=torch.int64, device=dev) if need_f2 else None
    dummy = f1.new_empty(1)
    meta = _meta(f1, coords, radius)
    grid = (triton.cdiv(h * w, meta["BLOCK_P"]), b)
    limit = float(max(h2, w2) + radius + 2)
    kscale, post = launcher().kernel_scale(scale, f1.dtype)  # every gradient is linear in the scale
    kern.lookup_bwd_pixel_kernel[grid](
        grad,
        f1,
        f2,
        coords,
        g1 if g1 is not None else dummy,
        gc if gc is not None else dummy,
        wt if wt is not None else dummy,
        key if key is not None else dummy,
        *_strides(f1),
        *_strides(f2),
        *_strides(coords),
        c,
        h,
        w,
        h2,
        w2,
        limit,
        kscale,
        NEED_F1=need_f1,
        NEED_F2=need_f2,
        NEED_COORDS=need_coords,
        NEED_ROWS=need_f1 or need_coords,
        **meta,
    )
    CALLS["lookup_bwd_pixel"] += 1
    g2 = None
    if need_f2:
        assert wt is not None and key is not None
        sorted_keys, perm = torch.sort(key.reshape(-1), stable=True)
        targets = torch.arange(b * h2 * w2 + 1, device=dev, dtype=sorted_keys.dtype)
        starts = torch.searchsorted(sorted_keys, targets)
        g2 = torch.empty((b, c, h2, w2), dtype=f2.dtype, device=dev)
        block_c = min(max(2, triton.next_power_of_2(c)), 64)
        # 16 pairs per step (H100, W5: this gradient 6.3 -> 1.1 ms against one pair per step; a
        # channels-last copy of f1 for coalesced loads did not pay)
        kern.lookup_bwd_f2_kernel[(b * h2 * w2, triton.cdiv(c, block_c))](
            f1, wt, perm, starts, g2, *_strides(f1), c, h, w, h2, w2, q1, ACC=meta["ACC"], BLOCK_C=block_c, BLOCK_E=16
        )
        CALLS["lookup_bwd_f2"] += 1
    if post is not None:
        g1, g2, gc = (g.mul_(post) if g is not None else None for g in (g1, g2, gc))
    return g1, g2, gc
