"""The pure-PyTorch backend: any device, any floating dtype, only standard aten ops.

The forward loops over the displacement grid.  Each step multiplies (or subtracts) one window of
``f1`` with one shifted window of ``f2``, reduces over the channels of each group and, for a kernel
window larger than one tap, applies a box filter.  Working memory is the padded copies of the
inputs plus one input-sized product at a time: never a (B, C, D, H, W) tensor.

The backward is two more contractions of the same shape, accumulated in place into padded gradient
buffers, so it needs no saved intermediates either.

Tensors inside this module use the grouped view ``(B, G, C/G, H, W)``; outputs are
``(B, G, Dy, Dx, Ho, Wo)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._geometry import Geometry
from ._alloc import empty

NAME = "torch"


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 and bfloat16 accumulate in float32; other dtypes in themselves."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def can_run(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str) -> str | None:
    """The pure backend runs everything; ``None`` means "yes"."""
    return None


# --------------------------------------------------------------------------------------------
# windows with zeros outside
# --------------------------------------------------------------------------------------------


def _axis_bounds(start: int, length: int, n: int) -> tuple[int, int]:
    """Overlap ``[lo, hi)`` of the window ``[start, start + length)`` with ``[0, n)`` (may be empty)."""
    lo = min(max(start, 0), n)
    hi = max(min(start + length, n), lo)
    return lo, hi


def window(x: Tensor, y0: int, ly: int, x0: int, lx: int) -> Tensor:
    """Rows ``[y0, y0+ly)`` and columns ``[x0, x0+lx)`` of ``x[..., H, W]``, zero outside."""
    h, w = x.shape[-2], x.shape[-1]
    ylo, yhi = _axis_bounds(y0, ly, h)
    xlo, xhi = _axis_bounds(x0, lx, w)
    if yhi == ylo or xhi == xlo:
        return x.new_zeros((*x.shape[:-2], ly, lx))
    core = x[..., ylo:yhi, xlo:xhi]
    pads = (xlo - x0, x0 + lx - xhi, ylo - y0, y0 + ly - yhi)
    if any(pads):
        return F.pad(core, pads)
    return core


def unwindow(buf: Tensor, y0: int, x0: int, h: int, w: int) -> Tensor:
    """Adjoint of :func:`window`: the part of ``buf`` that lies inside an ``h x w`` map."""
    ly, lx = buf.shape[-2], buf.shape[-1]
    ylo, yhi = _axis_bounds(y0, ly, h)
    xlo, xhi = _axis_bounds(x0, lx, w)
    out = buf.new_zeros((*buf.shape[:-2], h, w))
    if yhi > ylo and xhi > xlo:
        out[..., ylo:yhi, xlo:xhi] = buf[..., ylo - y0 : yhi - y0, xlo - x0 : xhi - x0]
    return out


class _Plan:
    """Index arithmetic shared by the forward and the backward of one call."""

    def __init__(self, geometry: Geometry, h: int, w: int) -> None:
        self.g = geometry
        self.h, self.w = h, w
        self.ho, self.wo = geometry.out_hw(h, w)
        gy, gx = geometry.y, geometry.x
        # f1 region: every row/column some window reads
        self.y1, self.x1 = -gy.pad_before, -gx.pad_before
        self.ly = (self.ho - 1) * gy.stride + gy.span
        self.lx = (self.wo - 1) * gx.stride + gx.span
        # f2 region: the f1 region shifted by every displacement
        self.y2, self.x2 = self.y1 + gy.disp_min, self.x1 + gx.disp_min
        self.l2y = self.ly + gy.disp_max - gy.disp_min
        self.l2x = self.lx + gx.disp_max - gx.disp_min
        self.unit_kernel = gy.kernel_size == 1 and gx.kernel_size == 1

    def f1_region(self, f1: Tensor) -> Tensor:
        return window(f1, self.y1, self.ly, self.x1, self.lx)

    def f2_region(self, f2: Tensor) -> Tensor:
        return window(f2, self.y2, self.l2y, self.x2, self.l2x)

    def sampled(self, region: Tensor) -> Tensor:
        """With a one-tap kernel only every stride-th position is read: take those."""
        if self.unit_kernel:
            return region[..., :: self.g.y.stride, :: self.g.x.stride]
        return region

    def shifted(self, p2: Tensor, ty: int, tx: int) -> Tensor:
        """View of the f2 region aligned with the f1 region for displacement (ty, tx)."""
        gy, gx = self.g.y, self.g.x
        oy = gy.disp_start + ty * gy.disp_step - gy.disp_min
        ox = gx.disp_start + tx * gx.disp_step - gx.disp_min
        return self.sampled(p2[..., oy : oy + self.ly, ox : ox + self.lx])

    def box_weight(self, like: Tensor) -> Tensor:
        gy, gx = self.g.y, self.g.x
        return like.new_ones((1, 1, gy.kernel_size, gx.kernel_size))

    def box(self, r: Tensor, weight: Tensor) -> Tensor:
        """Sum over the kernel window with stride: (N, Ly, Lx) -> (N, Ho, Wo)."""
        gy, gx = self.g.y, self.g.x
        out = F.conv2d(
            r.unsqueeze(1),
            weight,
            stride=(gy.stride, gx.stride),
            dilation=(gy.kernel_dilation, gx.kernel_dilation),
        )
        return out.squeeze(1)

    def box_adjoint(self, g: Tensor, weight: Tensor) -> Tensor:
        """Adjoint of :meth:`box`: (N, Ho, Wo) -> (N, Ly, Lx)."""
        gy, gx = self.g.y, self.g.x
        out = F.conv_transpose2d(
            g.unsqueeze(1),
            weight,
            stride=(gy.stride, gx.stride),
            dilation=(gy.kernel_dilation, gx.kernel_dilation),
        )
        # conv_transpose yields (Ho-1)*s + span, which is exactly (Ly, Lx)
        return out.squeeze(1)


def _grouped(x: Tensor, groups: int) -> Tensor:
    b, c = x.shape[0], x.shape[1]
    return x.reshape(b, groups, c // groups, *x.shape[2:])


def _combine(a: Tensor, b: Tensor, mode: str) -> Tensor:
    return a * b if mode == "product" else (a - b).abs()


def _sign_plus(a: Tensor, b: Tensor) -> Tensor:
    """sign(a - b) with sign(0) = +1 (MXNet's convention for the first input)."""
    return torch.where(a >= b, 1.0, -1.0).to(a.dtype)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


def forward(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str, scale: float) -> Tensor:
    """Correlation (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo)."""
    return _contract(f1, f2, None, None, geometry, groups, mode, scale)


def sign_weighted(
    f1: Tensor, f2: Tensor, h1: Tensor, h2: Tensor, geometry: Geometry, groups: int, scale: float
) -> Tensor:
    """``scale * sum_c sign+(f1 - f2s) * (h1 - h2s)`` per displacement.

    The derivative of the absolute-difference backward with respect to its incoming gradient
    (double backward).
    """
    return _contract(f1, f2, h1, h2, geometry, groups, "sign", scale)


def _contract(
    f1: Tensor,
    f2: Tensor,
    h1: Tensor | None,
    h2: Tensor | None,
    geometry: Geometry,
    groups: int,
    mode: str,
    scale: float,
) -> Tensor:
    b, c, h, w = f1.shape
    acc = accumulation_dtype(f1.dtype)
    plan = _Plan(geometry, h, w)
    gy, gx = geometry.y, geometry.x
    out = empty((b, groups, gy.disp_count, gx.disp_count, plan.ho, plan.wo), acc, f1.device)
    if out.numel() == 0:
        return out.to(f1.dtype)
    if c == 0:
        return out.zero_().to(f1.dtype)
    p1 = plan.sampled(_grouped(plan.f1_region(f1).to(acc), groups))
    p2 = _grouped(plan.f2_region(f2).to(acc), groups)
    if mode == "sign":
        assert h1 is not None and h2 is not None
        q1 = plan.sampled(_grouped(plan.f1_region(h1).to(acc), groups))
        q2 = _grouped(plan.f2_region(h2).to(acc), groups)
    weight = None if plan.unit_kernel else plan.box_weight(p1)
    for ty in range(gy.disp_count):
        for tx in range(gx.disp_count):
            p2s = plan.shifted(p2, ty, tx)
            if mode == "sign":
                prod = _sign_plus(p1, p2s) * (q1 - plan.shifted(q2, ty, tx))
            else:
                prod = _combine(p1, p2s, mode)
            r = prod.sum(2)  # (B, G, Ly', Lx')
            if weight is not None:
                r = plan.box(r.flatten(0, 1), weight).view(b, groups, plan.ho, plan.wo)
            out[:, :, ty, tx] = r
    if scale != 1.0:
        out.mul_(scale)
    return out.to(f1.dtype)


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------


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
    """Gradients of :func:`forward` with respect to ``f1`` and ``f2`` given ``grad`` of its output.

    Absolute difference uses sign(f1 - f2) with sign(0) = +1 for ``f1`` and -1 for ``f2``.
    """
    b, c, h, w = f1.shape
    acc = accumulation_dtype(f1.dtype)
    plan = _Plan(geometry, h, w)
    gy, gx = geometry.y, geometry.x
    g1 = torch.zeros((b, c, plan.ly, plan.lx), dtype=acc, device=f1.device) if need_f1 else None
    g2 = torch.zeros((b, c, plan.l2y, plan.l2x), dtype=acc, device=f1.device) if need_f2 else None
    if grad.numel() > 0 and c > 0 and (need_f1 or need_f2):
        p1 = plan.sampled(_grouped(plan.f1_region(f1).to(acc), groups))
        p2 = _grouped(plan.f2_region(f2).to(acc), groups)
        v1 = plan.sampled(_grouped(g1, groups)) if g1 is not None else None
        v2 = _grouped(g2, groups) if g2 is not None else None
        gs = grad.to(acc)
        if scale != 1.0:
            gs = gs * scale
        weight = None if plan.unit_kernel else plan.box_weight(p1)
        for ty in range(gy.disp_count):
            for tx in range(gx.disp_count):
                gp = gs[:, :, ty, tx]  # (B, G, Ho, Wo)
                if weight is not None:
                    gp = plan.box_adjoint(gp.flatten(0, 1), weight).view(b, groups, plan.ly, plan.lx)
                gp = gp.unsqueeze(2)  # broadcast over the channels of a group
                p2s = plan.shifted(p2, ty, tx)
                if mode == "product":
                    if v1 is not None:
                        v1.addcmul_(gp, p2s)
                    if v2 is not None:
                        plan.shifted(v2, ty, tx).addcmul_(gp, p1)
                else:
                    t = gp * _sign_plus(p1, p2s)
                    if v1 is not None:
                        v1.add_(t)
                    if v2 is not None:
                        plan.shifted(v2, ty, tx).sub_(t)
    grad_f1 = unwindow(g1, plan.y1, plan.x1, h, w).to(f1.dtype) if g1 is not None else None
    grad_f2 = unwindow(g2, plan.y2, plan.x2, h, w).to(f2.dtype) if g2 is not None else None
    return grad_f1, grad_f2
