"""Numba drivers of the CPU backend's fast path: the product mode on a unit pixel step.

Imported only when numba imports (see :mod:`torchcorr.backends.cpu`), which prepares the arrays.

The problem.  Output pixel ``(i, j)`` reads ``f1`` at row ``y0 + i*sy`` and column ``x0 + j`` (the
pixel step is one: the output grid of a one-tap window with ``stride1 == 1``, or the window-position
grid of a larger window), and ``f2`` at that position shifted by ``(dy0 + ty*sdy, dxmin + t*sdx)``
with ``sdx >= 1``; ``t`` counts horizontal displacements in increasing order and is written to
output index ``dxn - 1 - t`` when the caller's step was negative (``rev``).  Reads outside the maps
are zero.

Arrays.  ``A`` holds ``f1`` (NCHW, rows ``H``, row length ``a_r``) with pixel ``j`` of a row at
column ``axo + j``; ``B`` holds ``f2`` the same way with ``z = j + t*sdx`` at column ``bxo + z``.
The caller pads the columns with zeros wherever a read would leave the map, so the kernels never
test a column; rows outside the map are skipped (their products are zero).

How the work is split.  Pixels go in blocks of ``LANES`` along a row (the unit LLVM vectorises;
``_cpu_xvec``), the reduction runs over channels (forward), displacements (``f1`` gradient) or
output rows (``f2`` gradient) with the block's sums in registers.  In the forward two output rows
that read the same ``f2`` row (rows ``i`` and ``i + p`` at vertical displacements ``ty`` and
``ty + qq``) share each load of it.

Threads.  The forward and the ``f1`` gradient run one output row (or row pair) per task, the ``f2``
gradient one ``f2`` row per task; every output or gradient element has one writer and a fixed order
of summation, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _cpu_xvec as xk

_PJIT = dict(cache=True, nogil=True, fastmath={"contract"}, parallel=True, boundscheck=False)
_JIT = dict(cache=True, nogil=True, fastmath={"contract"}, boundscheck=False, inline="always")

L = xk.LANES
TMAX = xk.XT_MAX


@nb.njit(**_JIT)
def _put(out, base, plane, t0, T, dxn, rev, acc, aoff, scale):
    """``out[base + txo*plane + l] = acc[aoff + t*L + l] * scale`` for a block of ``T`` displacements."""
    for t in range(T):
        tt = t0 + t
        txo = dxn - 1 - tt if rev else tt
        o = base + txo * plane
        a = aoff + t * L
        for lane in range(L):
            out[o + lane] = acc[a + lane] * scale


@nb.njit(**_JIT)
def _zero_rows(out, base, plane, dxn, n):
    for t in range(dxn):
        o = base + t * plane
        for x in range(n):
            out[o + x] = 0


@nb.njit(**_JIT)
def _cblock(rest):
    """Channels in the next gradient block (8, 4, 2 or 1)."""
    if rest >= 8:
        return 8
    if rest >= 4:
        return 4
    if rest >= 2:
        return 2
    return 1


@nb.njit(**_PJIT)
def forward(A, a_b, a_c, a_r, axo, B, b_b, b_c, b_r, bxo, out, dims, geo, pair, scale):
    """Correlation into ``out`` (flat ``(nbat, groups, dyn, dxn, ho, wo)``), every element written.

    ``dims = (nbat, groups, cg, h)``; ``geo = (ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev)``;
    ``pair = (p, qq)``: output rows ``i`` and ``i + p`` read the same ``f2`` row at vertical
    displacements ``ty`` and ``ty + qq`` (``p == 0``: no pairing).
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    p, qq = pair
    plane = ho * wo
    nfull = wo - wo % L
    if p > 0:
        nsub = ((ho + 2 * p - 1) // (2 * p)) * p
    else:
        nsub = ho
    for task in nb.prange(nbat * groups * nsub):
        bg = task // nsub
        rem = task % nsub
        if p > 0:
            i0 = (rem // p) * 2 * p + rem % p
            i1 = i0 + p
        else:
            i0 = rem
            i1 = ho
        if i0 >= ho:
            continue
        two = i1 < ho
        bi = bg // groups
        g = bg % groups
        acc = np.empty(2 * TMAX * L, out.dtype)
        ya0 = y0 + i0 * sy
        ya1 = y0 + i1 * sy
        ok0 = 0 <= ya0 < h
        ok1 = two and 0 <= ya1 < h
        cbase = bi * b_b + g * cg * b_c
        abase0 = bi * a_b + g * cg * a_c + ya0 * a_r + axo
        abase1 = bi * a_b + g * cg * a_c + ya1 * a_r + axo
        ob0 = bg * dyn * dxn * plane + i0 * wo
        ob1 = bg * dyn * dxn * plane + i1 * wo
        lo = 0
        hi = dyn
        if two:
            lo = min(0, -qq)
            hi = max(dyn, dyn - qq)
        for k in range(lo, hi):
            iy0 = k
            iy1 = k + qq
            v0 = 0 <= iy0 < dyn
            v1 = two and 0 <= iy1 < dyn
            if v0:
                yb = ya0 + dy0 + iy0 * sdy
            else:
                yb = ya1 + dy0 + iy1 * sdy
            inside = 0 <= yb < h
            c0 = v0 and ok0 and inside
            c1 = v1 and ok1 and inside
            o0 = ob0 + iy0 * dxn * plane
            o1 = ob1 + iy1 * dxn * plane
            if v0 and not c0:
                _zero_rows(out, o0, plane, dxn, wo)
            if v1 and not c1:
                _zero_rows(out, o1, plane, dxn, wo)
            if not (c0 or c1):
                continue
            bbase = cbase + yb * b_r + bxo
            for t0 in range(0, dxn, TMAX):
                T = min(TMAX, dxn - t0)
                ib = bbase + t0 * sdx
                for x in range(0, nfull, L):
                    if c0 and c1:
                        xk.xfwd_block(2, T, A, abase0 + x, abase1 + x, a_c, B, ib + x, b_c, sdx, cg, acc)
                        _put(out, o0 + x, plane, t0, T, dxn, rev, acc, 0, scale)
                        _put(out, o1 + x, plane, t0, T, dxn, rev, acc, T * L, scale)
                    elif c0:
                        xk.xfwd_block(1, T, A, abase0 + x, 0, a_c, B, ib + x, b_c, sdx, cg, acc)
                        _put(out, o0 + x, plane, t0, T, dxn, rev, acc, 0, scale)
                    else:
                        xk.xfwd_block(1, T, A, abase1 + x, 0, a_c, B, ib + x, b_c, sdx, cg, acc)
                        _put(out, o1 + x, plane, t0, T, dxn, rev, acc, 0, scale)
                for x in range(nfull, wo):
                    for r in range(2):
                        if (r == 0 and c0) or (r == 1 and c1):
                            xk.xfwd_tail(A, (abase0 if r == 0 else abase1) + x, a_c, B, ib + x, b_c, sdx, cg, T, acc)
                            ob = (o0 if r == 0 else o1) + x
                            for t in range(T):
                                tt = t0 + t
                                txo = dxn - 1 - tt if rev else tt
                                out[ob + txo * plane] = acc[t] * scale
    return out


@nb.njit(**_PJIT)
def grad_f1(G, B, b_b, b_c, b_r, bxo, GA, w, ax0, dims, geo, scale):
    """Adds the gradient with respect to ``f1`` to ``GA`` (flat NCHW).

    ``G``: flat ``(nbat, groups, dyn, dxn, ho, wo)``; ``ax0``: the ``f1`` column of pixel 0 (may
    be negative: columns outside the map are not written).  One task per output row.
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    plane = ho * wo
    nfull = wo - wo % L
    ctot = groups * cg
    for task in nb.prange(nbat * groups * ho):
        bg = task // ho
        i = task % ho
        bi = bg // groups
        g = bg % groups
        ya = y0 + i * sy
        if ya < 0 or ya >= h:
            continue
        ty_lo = dyn
        ty_hi = -1
        for ty in range(dyn):
            yb = ya + dy0 + ty * sdy
            if 0 <= yb < h:
                ty_lo = min(ty_lo, ty)
                ty_hi = max(ty_hi, ty)
        if ty_hi < 0:
            continue
        ni = ty_hi - ty_lo + 1
        acc = np.empty(8 * L, GA.dtype)
        gbase = (bg * dyn + ty_lo) * dxn * plane + i * wo
        gsk = plane
        if rev:
            gbase += (dxn - 1) * plane
            gsk = -plane
        gsi = dxn * plane
        xbase = bi * b_b + g * cg * b_c + (ya + dy0 + ty_lo * sdy) * b_r + bxo
        xsi = sdy * b_r
        abase = (bi * ctot + g * cg) * h * w + ya * w + ax0
        lane_lo = max(0, -ax0)
        lane_hi = min(wo, w - ax0)
        c0 = 0
        while c0 < cg:
            K = _cblock(cg - c0)
            for x in range(0, nfull, L):
                xk.xsum_block(K, G, gbase + x, gsi, gsk, ni, dxn, B, xbase + c0 * b_c + x, b_c, xsi, sdx, acc)
                lo = max(lane_lo - x, 0)
                hi = min(lane_hi - x, L)
                for j in range(K):
                    o = abase + (c0 + j) * h * w + x
                    for lane in range(lo, hi):
                        GA[o + lane] += acc[j * L + lane] * scale
            for x in range(nfull, wo):
                xk.xsum_tail(K, G, gbase + x, gsi, gsk, ni, dxn, B, xbase + c0 * b_c + x, b_c, xsi, sdx, acc)
                if lane_lo <= x < lane_hi:
                    for j in range(K):
                        GA[abase + (c0 + j) * h * w + x] += acc[j] * scale
            c0 += K
    return GA


@nb.njit(**_PJIT)
def grad_f2(G, A, a_b, a_c, a_r, axo, GB, w, bx0, dims, geo, scale):
    """Adds the gradient with respect to ``f2`` to ``GB`` (flat NCHW).

    ``bx0``: the ``f2`` column of ``z = 0`` (pixel 0 at the smallest horizontal displacement).
    One task per ``f2`` row: it visits the output rows and vertical displacements that reach the row
    (an arithmetic progression) and, per horizontal displacement, adds their sum to the row.
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    plane = ho * wo
    nfull = wo - wo % L
    ctot = groups * cg
    for task in nb.prange(nbat * groups * h):
        bg = task // h
        yb = task % h
        bi = bg // groups
        g = bg % groups
        n = 0
        ty_f = 0
        i_f = 0
        ty_s = 0
        i_s = 0
        for ty in range(dyn):
            num = yb - y0 - dy0 - ty * sdy
            if num % sy != 0:
                continue
            i = num // sy
            ya = y0 + i * sy
            if i < 0 or i >= ho or ya < 0 or ya >= h:
                continue
            if n == 0:
                ty_f = ty
                i_f = i
            elif n == 1:
                ty_s = ty
                i_s = i
            n += 1
        if n == 0:
            continue
        dty = ty_s - ty_f if n > 1 else 0
        di = i_s - i_f if n > 1 else 0
        gsi = dty * dxn * plane + di * wo
        asi = di * sy * a_r
        acc = np.empty(8 * L, GB.dtype)
        arow = bi * a_b + g * cg * a_c + (y0 + i_f * sy) * a_r + axo
        rowbase = (bi * ctot + g * cg) * h * w + yb * w
        for t in range(dxn):
            txo = dxn - 1 - t if rev else t
            g0 = (bg * dyn + ty_f) * dxn * plane + txo * plane + i_f * wo
            col = bx0 + t * sdx  # f2 column of pixel 0 at this displacement
            lane_lo = max(0, -col)
            lane_hi = min(wo, w - col)
            if lane_hi <= lane_lo:
                continue
            c0 = 0
            while c0 < cg:
                K = _cblock(cg - c0)
                for x in range(0, nfull, L):
                    lo = max(lane_lo - x, 0)
                    hi = min(lane_hi - x, L)
                    if hi <= lo:
                        continue
                    xk.xsum_block(K, G, g0 + x, gsi, 0, n, 1, A, arow + c0 * a_c + x, a_c, asi, 0, acc)
                    for j in range(K):
                        o = rowbase + (c0 + j) * h * w + col + x
                        for lane in range(lo, hi):
                            GB[o + lane] += acc[j * L + lane] * scale
                for x in range(nfull, wo):
                    if lane_lo <= x < lane_hi:
                        xk.xsum_tail(K, G, g0 + x, gsi, 0, n, 1, A, arow + c0 * a_c + x, a_c, asi, 0, acc)
                        for j in range(K):
                            GB[rowbase + (c0 + j) * h * w + col + x] += acc[j] * scale
                c0 += K
    return GB
