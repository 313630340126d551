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


# --------------------------------------------------------------------------------------------
# RAFT window lookup (one pyramid level; semantics.md section 5)
#
# For pixel p of f1 with target c = coords[b, :, y, x] (x first, in f2's pixel units), let
# (X0, Y0) = floor(c), (fx, fy) = c - floor(c), K = 2*RADIUS + 1, and G[u, v] the scaled dot
# product of f1[b, :, y, x] with f2[b, :, Y0 + v - RADIUS, X0 + u - RADIUS] (zero outside f2) for
# u, v in [0, K]: the (K+1)^2 integer neighbours every bilinear sample of the window reads.
# Output channel a*K + d (a horizontal, the slow index) is
#   G[a, d]*(1-fx)*(1-fy) + G[a+1, d]*fx*(1-fy) + G[a, d+1]*(1-fx)*fy + G[a+1, d+1]*fx*fy.
# Neighbour q = u*(K+1) + v is a column of a BLOCK_Q-wide tile; output k = a*K + d of a
# BLOCK_K-wide one.
# --------------------------------------------------------------------------------------------


@triton.jit
def _lookup_base(c_ptr, sc_b, sc_c, sc_h, sc_w, b, y, x, pmask, LIMIT, CDT: tl.constexpr):
    """Floor and fractions of the targets of a block of pixels (coordinates clamped to +-LIMIT)."""
    cx = tl.load(c_ptr + b * sc_b + y * sc_h + x * sc_w, mask=pmask, other=0.0).to(CDT)
    cy = tl.load(c_ptr + b * sc_b + sc_c + y * sc_h + x * sc_w, mask=pmask, other=0.0).to(CDT)
    cx = tl.minimum(tl.maximum(cx, -LIMIT), LIMIT)
    cy = tl.minimum(tl.maximum(cy, -LIMIT), LIMIT)
    bx = tl.floor(cx)
    by = tl.floor(cy)
    return bx.to(tl.int32), by.to(tl.int32), cx - bx, cy - by


@triton.jit
def lookup_fwd_kernel(
    f1_ptr,
    f2_ptr,
    c_ptr,
    out_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    scb,
    scc,
    sch,
    scw,
    C,
    H,
    W,
    H2,
    W2,
    LIMIT,
    scale,
    RADIUS: tl.constexpr,
    ACC: tl.constexpr,
    CDT: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Window lookup forward: ``out[b, :, p0:p0+BLOCK_P]`` of one batch item.

    One program accumulates the ``BLOCK_P x (K+1)^2`` neighbour correlations ``G`` over all
    channels (one channel at a time: an ``f1`` vector times a gathered ``f2`` tile), then gathers
    the four corners of every bilinear sample from ``G`` in registers and writes the
    ``BLOCK_P x K^2`` window.

    Grid: ``(cdiv(H*W, BLOCK_P), B)``.
    """
    K: tl.constexpr = 2 * RADIUS + 1
    K1: tl.constexpr = K + 1
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * W
    y = p // W
    x = p % W
    bx, by, fx, fy = _lookup_base(c_ptr, scb, scc, sch, scw, b, y, x, pmask, LIMIT, CDT)
    fx = fx.to(ACC)
    fy = fy.to(ACC)
    q = tl.arange(0, BLOCK_Q)
    X = bx[:, None] + (q // K1 - RADIUS)[None, :]
    Y = by[:, None] + (q % K1 - RADIUS)[None, :]
    m2 = pmask[:, None] & (q < K1 * K1)[None, :] & (X >= 0) & (X < W2) & (Y >= 0) & (Y < H2)
    off2 = Y * s2h + X * s2w
    off1 = y * s1h + x * s1w
    G = tl.zeros((BLOCK_P, BLOCK_Q), dtype=ACC)
    for c in range(C):
        a = tl.load(f1_ptr + b * s1b + c * s1c + off1, mask=pmask, other=0.0).to(ACC)
        w2 = tl.load(f2_ptr + b * s2b + c * s2c + off2, mask=m2, other=0.0).to(ACC)
        G += a[:, None] * w2
    k = tl.arange(0, BLOCK_K)
    kmask = k < K * K
    i00 = tl.where(kmask, (k // K) * K1 + k % K, 0)
    i00 = tl.broadcast_to(i00[None, :], (BLOCK_P, BLOCK_K))
    g00 = tl.gather(G, i00, 1)
    g10 = tl.gather(G, i00 + K1, 1)
    g01 = tl.gather(G, i00 + 1, 1)
    g11 = tl.gather(G, i00 + K1 + 1, 1)
    gx = 1.0 - fx[:, None]
    gy = 1.0 - fy[:, None]
    val = g00 * gx * gy + g10 * fx[:, None] * gy + g01 * gx * fy[:, None] + g11 * fx[:, None] * fy[:, None]
    val = val * scale
    out_off = (b * K * K + k[None, :]) * H * W + p[:, None]
    tl.store(out_ptr + out_off, val.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & kmask[None, :])


@triton.jit
def lookup_bwd_pixel_kernel(
    grad_ptr,
    f1_ptr,
    f2_ptr,
    c_ptr,
    g1_ptr,
    gc_ptr,
    wt_ptr,
    key_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    s2b,
    s2c,
    s2h,
    s2w,
    scb,
    scc,
    sch,
    scw,
    C,
    H,
    W,
    H2,
    W2,
    LIMIT,
    scale,
    RADIUS: tl.constexpr,
    NEED_F1: tl.constexpr,
    NEED_F2: tl.constexpr,
    NEED_COORDS: tl.constexpr,
    NEED_ROWS: tl.constexpr,
    ACC: tl.constexpr,
    CDT: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Window lookup backward, everything a pixel of ``f1`` owns (gather form, deterministic).

    One program takes ``BLOCK_P`` pixels of one batch item.  From the output gradient it forms
    ``dG``, the gradient of each neighbour correlation (adjoint of the bilinear combination, times
    the scale, zero for neighbours outside ``f2``).  Over the channels it writes
    ``grad_f1[b, c, p] = sum_q dG[p, q] * f2[b, c, neighbour q]`` and accumulates ``G``, from
    which ``grad_coords[b, :, p]`` follows (derivative of the bilinear weights).  For the ``f2``
    gradient it stores ``dG`` and the flat target index of every neighbour
    (``b*H2*W2 + Y*W2 + X``, or ``B*H2*W2`` outside) as ``(B*H*W, (K+1)^2)`` arrays, which
    :func:`lookup_bwd_f2_kernel` reads after a stable sort by target.

    Grid: ``(cdiv(H*W, BLOCK_P), B)``.
    """
    K: tl.constexpr = 2 * RADIUS + 1
    K1: tl.constexpr = K + 1
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    nb = tl.num_programs(1)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * W
    y = p // W
    x = p % W
    bx, by, fx, fy = _lookup_base(c_ptr, scb, scc, sch, scw, b, y, x, pmask, LIMIT, CDT)
    fx = fx.to(ACC)
    fy = fy.to(ACC)
    gx = 1.0 - fx
    gy = 1.0 - fy
    q = tl.arange(0, BLOCK_Q)
    u = q // K1
    v = q % K1
    X = bx[:, None] + (u - RADIUS)[None, :]
    Y = by[:, None] + (v - RADIUS)[None, :]
    qmask = pmask[:, None] & (q < K1 * K1)[None, :]
    m2 = qmask & (X >= 0) & (X < W2) & (Y >= 0) & (Y < H2)
    # dG[p, (u, v)] collects the output gradient of the four samples that read neighbour (u, v)
    gbase = grad_ptr + b * K * K * H * W + p[:, None]
    pm = pmask[:, None]
    t00 = tl.load(gbase + ((u * K + v) * H * W)[None, :], mask=pm & ((u < K) & (v < K))[None, :], other=0.0)
    t10 = tl.load(
        gbase + (((u - 1) * K + v) * H * W)[None, :], mask=pm & ((u >= 1) & (u <= K) & (v < K))[None, :], other=0.0
    )
    t01 = tl.load(
        gbase + ((u * K + v - 1) * H * W)[None, :], mask=pm & ((u < K) & (v >= 1) & (v <= K))[None, :], other=0.0
    )
    t11 = tl.load(
        gbase + (((u - 1) * K + v - 1) * H * W)[None, :],
        mask=pm & ((u >= 1) & (u <= K) & (v >= 1) & (v <= K))[None, :],
        other=0.0,
    )
    dG = (
        t00.to(ACC) * (gx * gy)[:, None]
        + t10.to(ACC) * (fx * gy)[:, None]
        + t01.to(ACC) * (gx * fy)[:, None]
        + t11.to(ACC) * (fx * fy)[:, None]
    )
    dG = tl.where(m2, dG * scale, 0.0)
    off2 = Y * s2h + X * s2w
    off1 = y * s1h + x * s1w
    G = tl.zeros((BLOCK_P, BLOCK_Q), dtype=ACC)
    if NEED_ROWS:  # NEED_F1 or NEED_COORDS
        for c in range(C):
            w2 = tl.load(f2_ptr + b * s2b + c * s2c + off2, mask=m2, other=0.0).to(ACC)
            if NEED_F1:
                g1 = tl.sum(dG * w2, axis=1)
                tl.store(g1_ptr + (b * C + c) * H * W + p, g1.to(g1_ptr.dtype.element_ty), mask=pmask)
            if NEED_COORDS:
                a = tl.load(f1_ptr + b * s1b + c * s1c + off1, mask=pmask, other=0.0).to(ACC)
                G += a[:, None] * w2
    if NEED_COORDS:
        k = tl.arange(0, BLOCK_K)
        kmask = k < K * K
        i00 = tl.where(kmask, (k // K) * K1 + k % K, 0)
        i00 = tl.broadcast_to(i00[None, :], (BLOCK_P, BLOCK_K))
        g00 = tl.gather(G, i00, 1)
        g10 = tl.gather(G, i00 + K1, 1)
        g01 = tl.gather(G, i00 + 1, 1)
        g11 = tl.gather(G, i00 + K1 + 1, 1)
        go = tl.load(grad_ptr + (b * K * K + k[None, :]) * H * W + p[:, None], mask=pm & kmask[None, :], other=0.0).to(
            ACC
        )
        ddx = (g10 - g00) * gy[:, None] + (g11 - g01) * fy[:, None]
        ddy = (g01 - g00) * gx[:, None] + (g11 - g10) * fx[:, None]
        gcx = tl.sum(go * ddx, axis=1) * scale
        gcy = tl.sum(go * ddy, axis=1) * scale
        cdt = gc_ptr.dtype.element_ty
        tl.store(gc_ptr + (b * 2) * H * W + p, gcx.to(cdt), mask=pmask)
        tl.store(gc_ptr + (b * 2 + 1) * H * W + p, gcy.to(cdt), mask=pmask)
    if NEED_F2:
        rows = (b * H * W + p)[:, None] * (K1 * K1) + q[None, :]
        tl.store(wt_ptr + rows, dG, mask=qmask)
        key = tl.where(m2, b * H2 * W2 + Y * W2 + X, nb * H2 * W2)
        tl.store(key_ptr + rows, key, mask=qmask)


@triton.jit
def lookup_bwd_f2_kernel(
    f1_ptr,
    wt_ptr,
    perm_ptr,
    start_ptr,
    g2_ptr,
    s1b,
    s1c,
    s1h,
    s1w,
    C,
    H,
    W,
    H2,
    W2,
    Q,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    """Window lookup backward for ``f2`` (gather form over a sorted list, deterministic).

    One program owns ``grad_f2[b, c0:c0+BLOCK_C, t]`` for one ``f2`` pixel ``t``.  Entries
    ``start[t] .. start[t+1]`` of the stable sort by target list every (pixel, neighbour) pair of
    the forward that read ``t``; the program adds ``dG`` of each times ``f1`` of its pixel,
    ``BLOCK_E`` pairs at a time (their loads in flight together; a fixed order of summation, so
    runs are bit-identical).

    Grid: ``(B*H2*W2, cdiv(C, BLOCK_C))``.
    """
    t = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    start = tl.load(start_ptr + t)
    end = tl.load(start_ptr + t + 1)
    acc = tl.zeros((BLOCK_C,), dtype=ACC)
    for i0 in range(start, end, BLOCK_E):
        i = i0 + tl.arange(0, BLOCK_E)
        emask = i < end
        e = tl.load(perm_ptr + i, mask=emask, other=0)
        pix = e // Q
        wt = tl.load(wt_ptr + e, mask=emask, other=0.0).to(ACC)
        bi = pix // (H * W)
        pp = pix % (H * W)
        yy = pp // W
        xx = pp % W
        off = (bi * s1b + yy * s1h + xx * s1w)[:, None] + c[None, :] * s1c
        a = tl.load(f1_ptr + off, mask=emask[:, None] & cmask[None, :], other=0.0).to(ACC)
        acc += tl.sum(wt[:, None] * a, axis=0)
    b = t // (H2 * W2)
    tt = t % (H2 * W2)
    tl.store(g2_ptr + (b * C + c) * H2 * W2 + tt, acc.to(g2_ptr.dtype.element_ty), mask=cmask)
