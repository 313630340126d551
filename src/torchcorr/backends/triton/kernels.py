"""Triton kernels of the core correlation (only ``@triton.jit`` functions live here).

Notation shared by every kernel (see :mod:`torchcorr._geometry`): per axis, output ``o`` and
window tap ``u`` read ``f1`` at ``-pad + o*stride + u*dilation`` and ``f2`` at that position plus
the displacement ``disp_start + t*disp_step``; reads outside the map count as zero.  Features
are addressed through their four strides (any memory layout), outputs are contiguous
``(B, G, Dy, Dx, Ho, Wo)``, gradients contiguous ``(B, C, H, W)``.  Every kernel accumulates in
``ACC`` (float32, or float64 for float64 inputs) and stores in the output's dtype.

``MODE`` is 0 for the product and 1 for the absolute difference; the gradient of the latter uses
``sign(f1 - f2)`` with ``sign(0) = +1`` for ``f1`` and ``-1`` for ``f2``.

The backward kernels are gathers: each program owns a tile of the gradient and loops over every
output that reads it, in a fixed order, and writes it once.  No atomics, so two runs are
bit-identical.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def corr_fwd_kernel(
    f1_ptr,
    f2_ptr,
    out_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    H,
    W,
    Ho,
    Wo,
    CG,
    G,
    PADY,
    PADX,
    SY,
    SX,
    KY,
    KX,
    DILY,
    DILX,
    DY0,
    DYN,
    DYS,
    DX0,
    DXN,
    DXS,
    scale,
    MODE: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Correlation forward on CUDA cores, any geometry, product or absolute difference.

    One program computes ``out[b, g, ty, tx0:tx0+BLOCK_D, p0:p0+BLOCK_P]`` (output pixels
    flattened row-major) for one batch item, group and vertical displacement: a
    ``BLOCK_P x BLOCK_D`` tile accumulated over the group's channels and the window taps.

    Grid: ``(cdiv(Ho*Wo, BLOCK_P), Dy * cdiv(Dx, BLOCK_D), B*G)``.
    """
    pid_p = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_bg = tl.program_id(2).to(tl.int64)
    n_dblocks = tl.cdiv(DXN, BLOCK_D)
    ty = pid_d // n_dblocks
    txb = pid_d % n_dblocks
    b = pid_bg // G
    g = pid_bg % G

    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < Ho * Wo
    oy = p // Wo
    ox = p % Wo
    t = txb * BLOCK_D + tl.arange(0, BLOCK_D)
    tmask = t < DXN
    dy = DY0 + ty * DYS
    dx = DX0 + t * DXS

    base1 = f1_ptr + b * s1b + g * CG * s1c
    base2 = f2_ptr + b * s2b + g * CG * s2c
    acc = tl.zeros((BLOCK_P, BLOCK_D), dtype=ACC)
    for u in range(KY):
        y = -PADY + oy * SY + u * DILY
        y2 = y + dy
        my1 = pmask & (y >= 0) & (y < H)
        my2 = pmask & (y2 >= 0) & (y2 < H)
        for v in range(KX):
            x = -PADX + ox * SX + v * DILX
            x2 = x[:, None] + dx[None, :]
            m1 = my1 & (x >= 0) & (x < W)
            m2 = my2[:, None] & tmask[None, :] & (x2 >= 0) & (x2 < W)
            off1 = y * s1h + x * s1w
            off2 = (y2 * s2h)[:, None] + x2 * s2w
            for c in range(CG):
                a = tl.load(base1 + c * s1c + off1, mask=m1, other=0.0).to(ACC)
                w = tl.load(base2 + c * s2c + off2, mask=m2, other=0.0).to(ACC)
                if MODE == 0:
                    acc += a[:, None] * w
                else:
                    acc += tl.abs(a[:, None] - w)
    acc = acc * scale
    out_off = (((pid_bg * DYN + ty) * DXN + t[None, :]) * Ho * Wo) + p[:, None]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & tmask[None, :])


@triton.jit
def corr_fwd_dot_kernel(
    f1_ptr,
    f2_ptr,
    out_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    H,
    W,
    Ho,
    Wo,
    CG,
    G,
    PADY,
    PADX,
    SY,
    SX,
    DY0,
    DYN,
    DYS,
    DX0,
    DXN,
    DXS,
    DXMIN,
    scale,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_W: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Product correlation with a one-tap window on tensor cores (``tl.dot``).

    One program takes ``BLOCK_W`` consecutive output pixels of one output row ``oy`` and one
    vertical displacement ``ty``.  Their ``f1`` vectors (``BLOCK_W x C``) are multiplied with the
    ``C x BLOCK_N`` strip of ``f2`` that every horizontal displacement of these pixels reads
    (row ``y + dy``, columns ``x(ox0) + DXMIN`` onwards), accumulating over channel blocks of
    ``BLOCK_C`` in float32.  The band ``P[w, w*SX + dx - DXMIN]`` of that product is then
    gathered into ``out[b, g, ty, :, oy, ox0:ox0+BLOCK_W]``.  ``UPCAST`` (interpreter only) turns the
    operands to float32 before the product.  ``BLOCK_N`` must cover
    ``(BLOCK_W - 1)*SX + (Dx - 1)*|DXS| + 1`` columns and ``BLOCK_D >= Dx``.

    Grid: ``(cdiv(Wo, BLOCK_W), Ho * Dy, B*G)``.
    """
    pid_w = tl.program_id(0)
    pid_yd = tl.program_id(1)
    pid_bg = tl.program_id(2).to(tl.int64)
    oy = pid_yd // DYN
    ty = pid_yd % DYN
    b = pid_bg // G
    g = pid_bg % G

    w = tl.arange(0, BLOCK_W)
    ox = pid_w * BLOCK_W + w
    wmask = ox < Wo
    y = -PADY + oy * SY
    y2 = y + DY0 + ty * DYS
    x = -PADX + ox * SX
    n = tl.arange(0, BLOCK_N)
    x2 = -PADX + pid_w * BLOCK_W * SX + DXMIN + n
    # row tests as vectors (the interpreter mishandles a scalar boolean in a masked load)
    yv = y + 0 * w
    y2v = y2 + 0 * n
    m1 = wmask & (x >= 0) & (x < W) & (yv >= 0) & (yv < H)
    m2 = (x2 >= 0) & (x2 < W) & (y2v >= 0) & (y2v < H)
    c = tl.arange(0, BLOCK_C)
    base1 = f1_ptr + b * s1b + g * CG * s1c + y * s1h
    base2 = f2_ptr + b * s2b + g * CG * s2c + y2 * s2h
    acc = tl.zeros((BLOCK_W, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, CG, BLOCK_C):
        cm = (c0 + c) < CG
        a = tl.load(base1 + (c0 + c)[None, :] * s1c + (x * s1w)[:, None], mask=m1[:, None] & cm[None, :], other=0.0)
        bm = tl.load(base2 + (c0 + c)[:, None] * s2c + (x2 * s2w)[None, :], mask=cm[:, None] & m2[None, :], other=0.0)
        if UPCAST:  # Triton's interpreter multiplies bfloat16 as raw bits: work around it there
            a = a.to(tl.float32)
            bm = bm.to(tl.float32)
        acc = tl.dot(a, bm, acc, input_precision=PRECISION)
    t = tl.arange(0, BLOCK_D)
    tmask = t < DXN
    idx = w[:, None] * SX + (DX0 + t * DXS - DXMIN)[None, :]
    idx = tl.where(tmask[None, :], idx, 0)
    band = tl.gather(acc, idx, 1) * scale
    out_off = (((pid_bg * DYN + ty) * DXN + t[None, :]) * Ho + oy) * Wo + ox[:, None]
    tl.store(out_ptr + out_off, band.to(out_ptr.dtype.element_ty), mask=wmask[:, None] & tmask[None, :])


@triton.jit
def corr_bwd_f1_kernel(
    grad_ptr,
    f1_ptr,
    f2_ptr,
    g1_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    H,
    W,
    Ho,
    Wo,
    CG,
    G,
    PADY,
    PADX,
    SY,
    SX,
    KY,
    KX,
    DILY,
    DILX,
    DY0,
    DYN,
    DYS,
    DX0,
    DXN,
    DXS,
    scale,
    MODE: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Gradient with respect to ``f1`` (gather form, deterministic).

    One program owns ``grad_f1[b, c0:c0+BLOCK_C, p0:p0+BLOCK_P]`` (channels of one group, input
    pixels flattened row-major).  For every displacement ``(ty, tx)`` and window tap ``(u, v)``
    it finds the output ``(oy, ox)`` whose window puts that tap on the pixel (if any: the
    position must be a multiple of the stride inside the output grid) and adds
    ``grad[b, g, ty, tx, oy, ox]`` times ``f2`` at the displaced position (product) or times
    ``sign+(f1 - f2)`` (absolute difference).

    Grid: ``(cdiv(H*W, BLOCK_P), cdiv(C/G, BLOCK_C), B*G)``.
    """
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bg = tl.program_id(2).to(tl.int64)
    b = pid_bg // G
    g = pid_bg % G

    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * W
    y = p // W
    x = p % W
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < CG
    chan = g * CG + c
    base2 = f2_ptr + b * s2b + (chan * s2c)[:, None]
    if MODE == 1:
        own = tl.load(
            f1_ptr + b * s1b + (chan * s1c)[:, None] + (y * s1h + x * s1w)[None, :],
            mask=cmask[:, None] & pmask[None, :],
            other=0.0,
        ).to(ACC)
    grad_base = grad_ptr + pid_bg * DYN * DXN * Ho * Wo
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for ty in range(DYN):
        y2 = y + DY0 + ty * DYS
        my2 = (y2 >= 0) & (y2 < H)
        for u in range(KY):
            ny = y + PADY - u * DILY
            nyc = tl.where(ny >= 0, ny, 0)
            oy = nyc // SY
            vy = pmask & (ny >= 0) & (nyc - oy * SY == 0) & (oy < Ho)
            for tx in range(DXN):
                x2 = x + DX0 + tx * DXS
                m2 = cmask[:, None] & (my2 & (x2 >= 0) & (x2 < W))[None, :]
                for v in range(KX):
                    nx = x + PADX - v * DILX
                    nxc = tl.where(nx >= 0, nx, 0)
                    ox = nxc // SX
                    valid = vy & (nx >= 0) & (nxc - ox * SX == 0) & (ox < Wo)
                    gv = tl.load(grad_base + ((ty * DXN + tx) * Ho + oy) * Wo + ox, mask=valid, other=0.0).to(ACC)
                    other = tl.load(base2 + (y2 * s2h + x2 * s2w)[None, :], mask=m2 & valid[None, :], other=0.0).to(ACC)
                    if MODE == 0:
                        acc += gv[None, :] * other
                    else:
                        acc += tl.where(own >= other, gv[None, :], -gv[None, :])
    acc = acc * scale
    out_off = (b * G * CG + chan)[:, None] * H * W + p[None, :]
    tl.store(g1_ptr + out_off, acc.to(g1_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])


@triton.jit
def corr_bwd_f2_kernel(
    grad_ptr,
    f1_ptr,
    f2_ptr,
    g2_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    H,
    W,
    Ho,
    Wo,
    CG,
    G,
    PADY,
    PADX,
    SY,
    SX,
    KY,
    KX,
    DILY,
    DILX,
    DY0,
    DYN,
    DYS,
    DX0,
    DXN,
    DXS,
    scale,
    MODE: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """Gradient with respect to ``f2`` (gather form, deterministic).

    One program owns ``grad_f2[b, c0:c0+BLOCK_C, p0:p0+BLOCK_P]``.  For every displacement
    ``(ty, tx)`` and tap ``(u, v)`` the ``f1`` pixel that reads this ``f2`` pixel is the pixel
    minus the displacement; the output whose window puts tap ``(u, v)`` there (if any)
    contributes ``grad`` times that ``f1`` value (product) or ``-grad * sign+(f1 - f2)``
    (absolute difference).

    Grid: ``(cdiv(H*W, BLOCK_P), cdiv(C/G, BLOCK_C), B*G)``.
    """
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bg = tl.program_id(2).to(tl.int64)
    b = pid_bg // G
    g = pid_bg % G

    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * W
    y2 = p // W
    x2 = p % W
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < CG
    chan = g * CG + c
    base1 = f1_ptr + b * s1b + (chan * s1c)[:, None]
    if MODE == 1:
        own = tl.load(
            f2_ptr + b * s2b + (chan * s2c)[:, None] + (y2 * s2h + x2 * s2w)[None, :],
            mask=cmask[:, None] & pmask[None, :],
            other=0.0,
        ).to(ACC)
    grad_base = grad_ptr + pid_bg * DYN * DXN * Ho * Wo
    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
    for ty in range(DYN):
        y = y2 - DY0 - ty * DYS
        my = (y >= 0) & (y < H)
        for u in range(KY):
            ny = y + PADY - u * DILY
            nyc = tl.where(ny >= 0, ny, 0)
            oy = nyc // SY
            vy = pmask & (ny >= 0) & (nyc - oy * SY == 0) & (oy < Ho)
            for tx in range(DXN):
                x = x2 - DX0 - tx * DXS
                m1 = cmask[:, None] & (my & (x >= 0) & (x < W))[None, :]
                for v in range(KX):
                    nx = x + PADX - v * DILX
                    nxc = tl.where(nx >= 0, nx, 0)
                    ox = nxc // SX
                    valid = vy & (nx >= 0) & (nxc - ox * SX == 0) & (ox < Wo)
                    gv = tl.load(grad_base + ((ty * DXN + tx) * Ho + oy) * Wo + ox, mask=valid, other=0.0).to(ACC)
                    other = tl.load(base1 + (y * s1h + x * s1w)[None, :], mask=m1 & valid[None, :], other=0.0).to(ACC)
                    if MODE == 0:
                        acc += gv[None, :] * other
                    else:
                        acc += tl.where(other >= own, -gv[None, :], gv[None, :])
    acc = acc * scale
    out_off = (b * G * CG + chan)[:, None] * H * W + p[None, :]
    tl.store(g2_ptr + out_off, acc.to(g2_ptr.dtype.element_ty), mask=cmask[:, None] & pmask[None, :])
