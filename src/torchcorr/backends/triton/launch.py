"""Launchers of the Triton correlation kernels: block sizes, grids, path choice.

Importing this module imports Triton and decorates the kernels; whether they run on the GPU or
in Triton's CPU interpreter is decided at that moment by ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from ..._geometry import Geometry
from .._alloc import empty
from . import kernels

#: Calls per kernel since import (tests use it to check which kernels ran).
CALLS: dict[str, int] = {
    "corr_fwd": 0,
    "corr_fwd_dot": 0,
    "corr_bwd_f1": 0,
    "corr_bwd_f2": 0,
}

_MODES = {"product": 0, "absdiff": 1}


def interpreted() -> bool:
    """True if the kernels were decorated for Triton's CPU interpreter."""
    return type(kernels.corr_fwd_kernel).__name__ == "InterpretedFunction"


def _acc(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def kernel_scale(scale: float, dtype: torch.dtype) -> tuple[float, float | None]:
    """The scale to hand to a kernel, and the one to apply to its results afterwards (or None).

    Triton passes a Python float to a compiled kernel as float32.  Where the problem is float64 and
    float32 does not hold the scale exactly (0.3, 1/3, 1/C for most C), the kernels run with a scale
    of one and the results are multiplied by the scale after them (one more pass over them), so that
    float64 results keep float64 accuracy.  Found on the first run on a GPU: the interpreter passes
    the float as it is.
    """
    s = float(scale)
    if dtype == torch.float64 and float(torch.tensor(s, dtype=torch.float32)) != s:
        return 1.0, s
    return s, None


def _strides(x: Tensor) -> tuple[int, int, int, int]:
    return tuple(int(s) for s in x.stride())  # type: ignore[return-value]


def _geometry_args(g: Geometry) -> tuple[int, ...]:
    gy, gx = g.y, g.x
    return (
        gy.pad_before,
        gx.pad_before,
        gy.stride,
        gx.stride,
        gy.kernel_size,
        gx.kernel_size,
        gy.kernel_dilation,
        gx.kernel_dilation,
        gy.disp_start,
        gy.disp_count,
        gy.disp_step,
        gx.disp_start,
        gx.disp_count,
        gx.disp_step,
    )


def tf32_enabled() -> bool:
    """PyTorch's own TF32 choice for float32 matrix products."""
    return bool(torch.backends.cuda.matmul.allow_tf32)


def dot_plan(f1: Tensor, geometry: Geometry, groups: int, mode: str, allow_fp32: bool = False) -> dict | None:
    """Block sizes for the tensor-core forward, or ``None`` where it does not apply.

    It applies to the product with a one-tap window, at least 16 channels per group, inputs in
    float16 or bfloat16 (or float32 with TF32 enabled, or ``allow_fp32`` for tests) and a
    horizontal displacement band narrow enough for a ``BLOCK_W x BLOCK_N`` accumulator tile of
    at most 8192 values.
    """
    gy, gx = geometry.y, geometry.x
    if mode != "product" or gy.kernel_size != 1 or gx.kernel_size != 1:
        return None
    if f1.shape[1] // groups < 16:
        return None
    if f1.dtype == torch.float32:
        if tf32_enabled():
            precision = "tf32"
        elif allow_fp32:
            precision = "ieee"
        else:
            return None
    elif f1.dtype in (torch.float16, torch.bfloat16):
        precision = "ieee"
    else:
        return None
    band = (gx.disp_count - 1) * abs(gx.disp_step)
    # the product computes BLOCK_N columns per pixel of which Dx are kept: take the narrowest strip
    # (ties: the widest pixel block), BLOCK_W x BLOCK_N at most 8192 accumulators
    best = None
    for block_w in (64, 32, 16):
        block_n = max(16, triton.next_power_of_2((block_w - 1) * gx.stride + band + 1))
        if block_w * block_n <= 8192 and (best is None or block_n < best[1]):
            best = (block_w, block_n)
    if best is None:
        return None
    return {
        "BLOCK_W": best[0],
        "BLOCK_N": best[1],
        "BLOCK_D": max(2, triton.next_power_of_2(gx.disp_count)),
        "BLOCK_C": 32 if f1.shape[1] // groups >= 32 else 16,
        "PRECISION": precision,
        "UPCAST": f1.dtype == torch.bfloat16 and interpreted(),
    }


def forward(
    f1: Tensor,
    f2: Tensor,
    geometry: Geometry,
    groups: int,
    mode: str,
    scale: float,
    path: str = "auto",
) -> Tensor:
    """Correlation (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo) with the Triton kernels.

    ``path``: ``"auto"`` (tensor cores where :func:`dot_plan` applies), ``"direct"`` or
    ``"dot"`` (tests; ``"dot"`` raises where the tensor-core kernel cannot run).
    """
    b, c, h, w = f1.shape
    ho, wo = geometry.out_hw(h, w)
    gy, gx = geometry.y, geometry.x
    out = empty((b, groups, gy.disp_count, gx.disp_count, ho, wo), f1.dtype, f1.device)
    if out.numel() == 0:
        return out
    if c == 0:
        return out.zero_()
    cg = c // groups
    common = (*_strides(f1), *_strides(f2), h, w, ho, wo, cg, groups)
    kscale, post = kernel_scale(scale, f1.dtype)
    plan = None if path == "direct" else dot_plan(f1, geometry, groups, mode, allow_fp32=path == "dot")
    if path == "dot" and plan is None:
        raise ValueError("the tensor-core forward does not apply to this input")
    if plan is not None:
        dxmin = gx.disp_min
        grid = (triton.cdiv(wo, plan["BLOCK_W"]), ho * gy.disp_count, b * groups)
        kernels.corr_fwd_dot_kernel[grid](
            f1,
            f2,
            out,
            *common,
            gy.pad_before,
            gx.pad_before,
            gy.stride,
            gx.stride,
            gy.disp_start,
            gy.disp_count,
            gy.disp_step,
            gx.disp_start,
            gx.disp_count,
            gx.disp_step,
            dxmin,
            kscale,
            num_warps=8 if plan["BLOCK_W"] * plan["BLOCK_N"] > 4096 else 4,
            **plan,
        )
        CALLS["corr_fwd_dot"] += 1
        return out if post is None else out.mul_(post)
    # block shapes from a sweep on an H100 (W1, W2; kernel time): BLOCK_D 8 rather than 16 made the
    # W1 forward 20% faster and changed W2 by under 2%
    block_d = min(max(2, triton.next_power_of_2(gx.disp_count)), 8)
    block_p = 64
    grid = (triton.cdiv(ho * wo, block_p), gy.disp_count * triton.cdiv(gx.disp_count, block_d), b * groups)
    kernels.corr_fwd_kernel[grid](
        f1,
        f2,
        out,
        *common,
        *_geometry_args(geometry),
        kscale,
        MODE=_MODES[mode],
        ACC=_acc(f1.dtype),
        BLOCK_P=block_p,
        BLOCK_D=block_d,
    )
    CALLS["corr_fwd"] += 1
    return out if post is None else out.mul_(post)


def backward(
    grad: Tensor,
    f1: Tensor,
    f2: Tensor,
    geometry: Geometry,
    groups: int,
    mode: str,
    scale: float,
    need_f1: bool = True,
    need_f2: bool = True,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients with respect to ``f1`` and ``f2`` (deterministic gather kernels)."""
    b, c, h, w = f1.shape
    ho, wo = geometry.out_hw(h, w)
    g1 = empty((b, c, h, w), f1.dtype, f1.device) if need_f1 else None
    g2 = empty((b, c, h, w), f2.dtype, f2.device) if need_f2 else None
    if f1.numel() == 0:
        return g1, g2
    if grad.numel() == 0:
        return (g1.zero_() if g1 is not None else None), (g2.zero_() if g2 is not None else None)
    grad = grad.contiguous()
    cg = c // groups
    block_c = min(max(2, triton.next_power_of_2(cg)), 32)
    block_p = 64
    grid = (triton.cdiv(h * w, block_p), triton.cdiv(cg, block_c), b * groups)
    kscale, post = kernel_scale(scale, f1.dtype)
    args = (*_strides(f1), *_strides(f2), h, w, ho, wo, cg, groups, *_geometry_args(geometry), kscale)
    # two warps per program (the same sweep): the W2 f1 gradient 26% faster, W1's gradients 4%
    meta = {"MODE": _MODES[mode], "ACC": _acc(f1.dtype), "BLOCK_C": block_c, "BLOCK_P": block_p, "num_warps": 2}
    if g1 is not None:
        kernels.corr_bwd_f1_kernel[grid](grad, f1, f2, g1, *args, **meta)
        CALLS["corr_bwd_f1"] += 1
    if g2 is not None:
        kernels.corr_bwd_f2_kernel[grid](grad, f1, f2, g2, *args, **meta)
        CALLS["corr_bwd_f2"] += 1
    if post is not None:
        g1 = g1.mul_(post) if g1 is not None else None
        g2 = g2.mul_(post) if g2 is not None else None
    return g1, g2
