"""Numba kernels of the CPU backend: the one-tap correlation on a sampled grid, and its two gradients.

Imported only when numba imports (see :mod:`torchcorr.backends.cpu`).  Everything here works on
flat, contiguous arrays and plain integers; :mod:`torchcorr.backends.cpu` prepares them.

With ``|f1 - f2|`` a position outside the map still contributes ``|f1 - 0|`` or ``|0 - f2|``, so
rows outside are computed (with zero buffers) rather than skipped.

The one-tap problem.  ``f1`` is read at rows ``y0 + i*sy`` (``i < ny``) and columns ``x0 + j*sx``
(``j < nx``); ``f2`` at those positions shifted by ``(dy0 + ty*sdy, dx0 + tx*sdx)``, with
``sdx > 0`` (the caller reverses a negative horizontal step).  Reads outside the maps are zero.
For each group ``g`` of ``cg`` channels::

    out[b, g, ty, tx, i, j] = scale * sum_c  f1[b, g*cg + c, y, x] (*) f2[b, g*cg + c, y + dy, x + dx]

with ``(*)`` a product or an absolute difference.

How a row is computed.  For one output row and one vertical displacement, the sampled ``f1`` row
is copied into a channels-last buffer ``abuf`` (pixel ``j`` at ``j*cg``) and the part of the ``f2``
row that any horizontal displacement reaches into ``bbuf`` (position ``q = j*sx + tx*sdx`` at
``q*cg``), zeros outside the map.  Inner kernels (``_cpu_micro``) then take blocks of ``P`` pixels
``m`` apart (``m*sx == sdx``, so pixel ``p`` with displacement ``t`` reads position ``p + t``
steps of ``sdx``) and ``T`` displacements: ``P + T - 1`` loads of ``f2`` feed ``P*T`` accumulators
per channel vector.  Where no such ``m`` exists, blocks are one pixel wide.

Threads.  The forward and the ``f1`` gradient run one output row per task; the ``f2`` gradient one
``f2`` row per task, visiting every displacement that reaches it.  Each output or gradient element
is therefore written by exactly one task, in a fixed order: results do not depend on the thread
count or on timing.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import _cpu_micro as mk

_JIT = dict(cache=True, nogil=True, fastmath=True)
_PJIT = dict(cache=True, nogil=True, fastmath=True, parallel=True)

SHAPES = mk.SHAPES


@nb.njit(**_JIT)
def _fill_a(abuf, f, nhwc, b, r, cg_off, ctot, h, w, cg, x0, sx, nx):
    """Sampled row ``r`` of ``f`` (channels ``cg_off..cg_off+cg``) -> ``abuf[j*cg + c]``; zero outside."""
    if r < 0 or r >= h:
        for k in range(nx * cg):
            abuf[k] = 0
        return
    for j in range(nx):
        x = x0 + j * sx
        o = j * cg
        if x < 0 or x >= w:
            for c in range(cg):
                abuf[o + c] = 0
        elif nhwc:
            s = ((b * h + r) * w + x) * ctot + cg_off
            for c in range(cg):
                abuf[o + c] = f[s + c]
        else:
            s = ((b * ctot + cg_off) * h + r) * w + x
            for c in range(cg):
                abuf[o + c] = f[s + c * h * w]


@nb.njit(**_JIT)
def _fill_b(bbuf, f, nhwc, b, r, cg_off, ctot, h, w, cg, cx0, nq):
    """Columns ``cx0 .. cx0+nq`` of row ``r`` of ``f`` -> ``bbuf[q*cg + c]``; zero outside the map."""
    qlo = min(max(-cx0, 0), nq)
    qhi = max(min(w - cx0, nq), qlo)
    if r < 0 or r >= h:
        qlo = qhi = nq
    for q in range(qlo):
        for c in range(cg):
            bbuf[q * cg + c] = 0
    for q in range(qhi, nq):
        for c in range(cg):
            bbuf[q * cg + c] = 0
    if nhwc:
        for q in range(qlo, qhi):
            s = ((b * h + r) * w + cx0 + q) * ctot + cg_off
            o = q * cg
            for c in range(cg):
                bbuf[o + c] = f[s + c]
    else:
        for c in range(cg):
            s = ((b * ctot + cg_off + c) * h + r) * w + cx0
            for q in range(qlo, qhi):
                bbuf[q * cg + c] = f[s + q]


@nb.njit(**_PJIT)
def forward(f1, f1_nhwc, f2, f2_nhwc, out, dims, grid, shape, m, absdiff, scale, z):
    """One-tap correlation into ``out`` (flat ``(B, G, Dy, Dx, ny, nx)``); see the module docstring.

    ``dims = (B, C, H, W, G)``; ``grid = (ny, y0, sy, dy_count, dy0, sdy, nx, x0, sx, dx_count, dx0, sdx,
    reverse_x)``.  ``m``: pixel step of a block (1 without shared loads); ``shape``: block id.
    """
    bsz, ctot, h, w, groups = dims
    ny, y0, sy, dyn, dy0, sdy, nx, x0, sx, dxn, dx0, sdx, rev = grid
    cg = ctot // groups
    bp, bt = SHAPES[shape]
    npx = (nx + bp * m - 1) // (bp * m) * (bp * m) + bp * m  # padded pixel count
    tpad = (dxn + bt - 1) // bt * bt
    nq = (npx - 1) * sx + (tpad - 1) * sdx + 1  # positions of the f2 buffer
    plane = ny * nx
    for task in nb.prange(bsz * groups * ny):
        bg = task // ny
        i = task % ny
        bi = bg // groups
        g = bg % groups
        abuf = np.zeros(npx * cg, out.dtype)
        bbuf = np.zeros(nq * cg, out.dtype)
        res = np.zeros(bp * bt, out.dtype)
        r1 = y0 + i * sy
        base = bg * dyn * dxn * plane + i * nx
        if (r1 < 0 or r1 >= h) and not absdiff:
            for t in range(dyn * dxn):
                for j in range(nx):
                    out[base + t * plane + j] = 0
            continue
        _fill_a(abuf, f1, f1_nhwc, bi, r1, g * cg, ctot, h, w, cg, x0, sx, nx)
        for ty in range(dyn):
            r2 = r1 + dy0 + ty * sdy
            obase = base + ty * dxn * plane
            if (r2 < 0 or r2 >= h) and not absdiff:
                for t in range(dxn):
                    for j in range(nx):
                        out[obase + t * plane + j] = 0
                continue
            _fill_b(bbuf, f2, f2_nhwc, bi, r2, g * cg, ctot, h, w, cg, x0 + dx0, nq)
            for j00 in range(0, nx, bp * m):
                for ph in range(m):
                    j0 = j00 + ph
                    if j0 >= nx:
                        break
                    for tb0 in range(0, dxn, bt):
                        tb = max(min(tb0, dxn - bt), 0)
                        mk.fwd_block(
                            shape, absdiff, res, z, abuf, j0 * cg, m * cg, bbuf, (j0 * sx + tb * sdx) * cg, sdx * cg, cg
                        )
                        for p in range(bp):
                            j = j0 + p * m
                            if j < nx:
                                for t in range(bt):
                                    tx = tb + t
                                    if tx < dxn:
                                        txo = dxn - 1 - tx if rev else tx
                                        out[obase + txo * plane + j] = res[p * bt + t] * scale
    return out


@nb.njit(**_JIT, inline="always")
def _block_weights(gv, gout, gbase, plane, j0, m, bp, bt, tb, nx, dxn, rev, scale, z):
    """The weights of one gradient block: ``gv[p*bt + t]``.

    The scaled incoming gradient of block pixel ``p`` (``j0 + p*m``) at displacement ``tb + t``;
    zero past the last pixel or displacement.
    """
    for p in range(bp):
        j = j0 + p * m
        for t in range(bt):
            tx = tb + t
            v = z
            if j < nx and tx < dxn:
                txo = dxn - 1 - tx if rev else tx
                v = gout[gbase + txo * plane + j] * scale
            gv[p * bt + t] = v


@nb.njit(**_PJIT)
def grad_f1(gout, f1, f1_nhwc, f2, f2_nhwc, g1, dims, grid, shape, m, absdiff, scale, z):
    """Accumulate the gradient of :func:`forward` with respect to ``f1`` into ``g1`` (flat NCHW).

    ``gout`` is the incoming gradient, flat ``(B, G, Dy, Dx, ny, nx)``; other arguments as in
    :func:`forward`.  One task per output row, so each ``g1`` row has one writer.
    """
    bsz, ctot, h, w, groups = dims
    ny, y0, sy, dyn, dy0, sdy, nx, x0, sx, dxn, dx0, sdx, rev = grid
    cg = ctot // groups
    bp, bt = SHAPES[shape]
    npx = (nx + bp * m - 1) // (bp * m) * (bp * m) + bp * m
    tpad = (dxn + bt - 1) // bt * bt
    nq = (npx - 1) * sx + (tpad - 1) * sdx + 1
    plane = ny * nx
    for task in nb.prange(bsz * groups * ny):
        bg = task // ny
        i = task % ny
        bi = bg // groups
        g = bg % groups
        r1 = y0 + i * sy
        if r1 < 0 or r1 >= h:
            continue  # no f1 gradient outside the map
        abuf = np.zeros(npx * cg, g1.dtype)
        gbuf = np.zeros(npx * cg, g1.dtype)
        bbuf = np.zeros(nq * cg, g1.dtype)
        gv = np.zeros(bp * bt, g1.dtype)
        if absdiff:
            _fill_a(abuf, f1, f1_nhwc, bi, r1, g * cg, ctot, h, w, cg, x0, sx, nx)
        base = bg * dyn * dxn * plane + i * nx
        touched = False
        for ty in range(dyn):
            r2 = r1 + dy0 + ty * sdy
            if (r2 < 0 or r2 >= h) and not absdiff:
                continue
            touched = True
            gbase = base + ty * dxn * plane
            _fill_b(bbuf, f2, f2_nhwc, bi, r2, g * cg, ctot, h, w, cg, x0 + dx0, nq)
            for j00 in range(0, nx, bp * m):
                for ph in range(m):
                    j0 = j00 + ph
                    if j0 >= nx:
                        break
                    for tb in range(0, dxn, bt):
                        _block_weights(gv, gout, gbase, plane, j0, m, bp, bt, tb, nx, dxn, rev, scale, z)
                        mk.bw1_block(
                            shape,
                            absdiff,
                            gbuf,
                            abuf,
                            j0 * cg,
                            m * cg,
                            bbuf,
                            (j0 * sx + tb * sdx) * cg,
                            sdx * cg,
                            cg,
                            gv,
                        )
        if touched:
            _store_a(g1, gbuf, bi, r1, g * cg, ctot, h, w, cg, x0, sx, nx)
    return g1


@nb.njit(**_PJIT)
def grad_f2(gout, f1, f1_nhwc, f2, f2_nhwc, g2, dims, grid, shape, m, absdiff, scale, z):
    """Accumulate the gradient of :func:`forward` with respect to ``f2`` into ``g2`` (flat NCHW).

    One task per ``f2`` row: it visits every (output row, vertical displacement) pair that reads
    the row, so each ``g2`` row has one writer.
    """
    bsz, ctot, h, w, groups = dims
    ny, y0, sy, dyn, dy0, sdy, nx, x0, sx, dxn, dx0, sdx, rev = grid
    cg = ctot // groups
    bp, bt = SHAPES[shape]
    npx = (nx + bp * m - 1) // (bp * m) * (bp * m) + bp * m
    tpad = (dxn + bt - 1) // bt * bt
    nq = (npx - 1) * sx + (tpad - 1) * sdx + 1
    plane = ny * nx
    for task in nb.prange(bsz * groups * h):
        bg = task // h
        r2 = task % h
        bi = bg // groups
        g = bg % groups
        abuf = np.zeros(npx * cg, g2.dtype)
        gbuf = np.zeros(nq * cg, g2.dtype)
        bbuf = np.zeros(nq * cg, g2.dtype)
        gv = np.zeros(bp * bt, g2.dtype)
        if absdiff:
            _fill_b(bbuf, f2, f2_nhwc, bi, r2, g * cg, ctot, h, w, cg, x0 + dx0, nq)
        touched = False
        for ty in range(dyn):
            r1 = r2 - dy0 - ty * sdy
            if (r1 - y0) % sy != 0 or ((r1 < 0 or r1 >= h) and not absdiff):
                continue
            i = (r1 - y0) // sy
            if i < 0 or i >= ny:
                continue
            touched = True
            gbase = (bg * dyn + ty) * dxn * plane + i * nx
            _fill_a(abuf, f1, f1_nhwc, bi, r1, g * cg, ctot, h, w, cg, x0, sx, nx)
            for j00 in range(0, nx, bp * m):
                for ph in range(m):
                    j0 = j00 + ph
                    if j0 >= nx:
                        break
                    for tb in range(0, dxn, bt):
                        _block_weights(gv, gout, gbase, plane, j0, m, bp, bt, tb, nx, dxn, rev, scale, z)
                        mk.bw2_block(
                            shape,
                            absdiff,
                            gbuf,
                            abuf,
                            j0 * cg,
                            m * cg,
                            bbuf,
                            (j0 * sx + tb * sdx) * cg,
                            sdx * cg,
                            cg,
                            gv,
                        )
        if touched:
            _store_b(g2, gbuf, bi, r2, g * cg, ctot, h, w, cg, x0 + dx0, nq)
    return g2


@nb.njit(**_JIT)
def _store_a(gx, gbuf, b, r, cg_off, ctot, h, w, cg, x0, sx, nx):
    """Add ``gbuf[j*cg + c]`` into row ``r`` of the flat NCHW gradient at the sampled columns."""
    for c in range(cg):
        s = ((b * ctot + cg_off + c) * h + r) * w
        for j in range(nx):
            x = x0 + j * sx
            if x >= 0 and x < w:
                gx[s + x] += gbuf[j * cg + c]


@nb.njit(**_JIT)
def _store_b(gx, gbuf, b, r, cg_off, ctot, h, w, cg, cx0, nq):
    """Add ``gbuf[q*cg + c]`` into row ``r`` of the flat NCHW gradient at columns ``cx0 + q``."""
    qlo = min(max(-cx0, 0), nq)
    qhi = max(min(w - cx0, nq), qlo)
    for c in range(cg):
        s = ((b * ctot + cg_off + c) * h + r) * w + cx0
        for q in range(qlo, qhi):
            gx[s + q] += gbuf[q * cg + c]
