"""Writes ``_cpu_micro.py`` and ``_cpu_xvec.py``: generated kernel code of the CPU backend.

Run ``python -m torchcorr.backends._cpu_codegen`` after changing it (a test checks that the
committed files are up to date).  At run time only its block-shape constants are imported.

``_cpu_micro.py`` (channels-vectorised; every geometry and both modes).  Numba cannot hold a block
of accumulators in registers unless each is its own local variable, so every block shape is spelled
out.  Every kernel works on rows of channels-last buffers (flat 1-D arrays; a pixel is ``C``
consecutive values).  A block is ``P`` pixels of the first row at ``pa + p*astep`` and ``T``
displacements; pixel ``p`` with displacement ``t`` meets the second row at ``pb + (p + t)*bstep``,
so ``P + T - 1`` loads of the second row feed ``P * T`` products per channel (the pixel step is
chosen so that a pixel step equals a displacement step).  Indices are unsigned so that numba drops
its negative-index checks and LLVM vectorises the channel loop.  Kernels (and ``fwd_block``,
``bw1_block``, ``bw2_block``, which pick one by block-shape id):

* ``fwd_{mode}_p{P}t{T}(z, a, pa, astep, b, pb, bstep, C)``: the ``P*T`` sums over channels,
  returned as a tuple, pixel-major (``z``: a zero of the accumulation dtype).
* ``bw1_{mode}_p{P}t{T}(ga, a, pa, astep, b, pb, bstep, C, g...)``: ``ga[pixel p] += sum_t
  g[p][t] * d/da`` (gradient of the first row).
* ``bw2_{mode}_p{P}t{T}(gb, a, pa, astep, b, pb, bstep, C, g...)``: ``gb[position k] += sum_{p+t=k}
  g[p][t] * d/db`` (gradient of the second row).

``_cpu_xvec.py`` (pixel-vectorised; the product mode on a unit pixel step, the fast path): the
parallel drivers ``forward_r{R}t{T}``, ``grad_f1_c{K}``, ``grad_f1_pair_c{K}``,
``grad_f1_triple_c{K}``, ``grad_f2_c{K}``, ``grad_f2_pair_c{K}`` and ``grad_f2_triple_c{K}`` around the explicit-SIMD kernels of ``_cpu_simd`` (see ``cpu_xkernels`` for
the problem they solve), one per block shape so that only the shapes a problem uses are compiled;
and the channel-vectorised gradients ``grad_f1_cv_t{T}`` and ``grad_f2_cv_t{T}``, one per count
of horizontal displacements.
The forward reads whole blocks of ``LANES`` pixels (from padded copies where a block would leave a
row); the gradients read the inputs and the incoming gradient where they lie, with masked loads
where a block would leave a row; writes are masked to the real pixels.
"""

# ruff: noqa: E501  (the driver templates keep a call on one line)
from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

#: (P, T) block shapes generated for every kernel family.
SHAPES = ((1, 8), (4, 3))
MODES = ("product", "absdiff")
TARGET = Path(__file__).with_name("_cpu_micro.py")
XTARGET = Path(__file__).with_name("_cpu_xvec.py")


def _host_lanes() -> int:
    """Pixels per block: 16 (one 512-bit register of float32) where the CPU has AVX-512, else 8.

    Follows numba's CPU-feature override (``NUMBA_CPU_FEATURES``), which is also part of the key
    of numba's on-disk cache: a cached driver always matches this constant.
    """
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features is not None:
        return 16 if "+avx512f" in features else 8
    try:
        from llvmlite import binding
    except ImportError:  # no numba: the constant is unused
        return 8
    return 16 if binding.get_host_cpu_features().get("avx512f", False) else 8


# shapes of the pixel-vectorised kernels (``_cpu_simd`` reads them from here)
#: pixels per block of the pixel-vectorised kernels (a vector register of float32)
LANES = _host_lanes()
#: displacements per block of the pixel-vectorised forward (1 .. XT_MAX are generated)
XT_MAX = 9
#: output rows per block of the pixel-vectorised forward (rows that share each load of ``f2``;
#: ``cpu_xkernels.FORWARD_ROWS`` picks one)
XR_SIZES = (1, 2, 3)
#: channels per block of the pixel-vectorised gradient sums, largest first (``cpu_xkernels``
#: covers a group's channels with them).  Two rows x 12 channels of sums take 24 of AVX-512's 32
#: vector registers: both gradients together 13% faster than blocks of 8 on W3, 4% on W1, 7% slower
#: on W2.  With AVX2 code (16 registers: sums spill either way; measured on this machine with
#: AVX-512 masked off through NUMBA_CPU_FEATURES) blocks of 12 also beat blocks of 8, by 20-25%.
XC_SIZES = (12, 8, 4, 2, 1)
#: channels per block of the three-row gradient sums (three rows x 8 channels: 24 registers of sums)
XC3_SIZES = (8,)


#: pixels per block of the channel-vectorised gradient sums, with two vectors of channels each (16
#: sums in registers with AVX-512; 12 of AVX2's 16 registers); the one-vector sums take twice as many
CG_PIXELS = 8 if LANES == 16 else 6


def cg_kernels() -> list[tuple[str, int, int, int, bool]]:
    """``(name, pixels, vectors, disps, masked)`` of every channel-vectorised gradient sum (``disps`` 1 .. ``XT_MAX``).

    ``pixels`` is ``CG_PIXELS`` for two vectors of channels, twice that for one.
    """
    out = []
    for p, v in ((CG_PIXELS, 2), (2 * CG_PIXELS, 1)):
        for t in range(1, XT_MAX + 1):
            for m in (False, True):  # named without the pixels, which follow LANES (see XHEADER)
                out.append((f"xcg{'m' if m else ''}_v{v}t{t}", p, v, t, m))
    return out


def sum_kernels() -> list[tuple[str, int, int, bool, bool]]:
    """``(name, channels, streams, masked, packed)`` of every gradient-sum kernel ``_cpu_simd`` defines.

    ``packed``: the unmasked three-row sum that reads a packed copy of the incoming gradient.
    """
    shapes = [(k, s) for k in XC_SIZES for s in (1, 2)] + [(k, 3) for k in XC3_SIZES]
    out = [
        (f"xsum{s if s > 1 else ''}{'m' if m else ''}_c{k}", k, s, m, False) for k, s in shapes for m in (False, True)
    ]
    return out + [(f"xsum3p_c{k}", k, 3, False, True) for k in XC3_SIZES]


HEADER = '''"""Register-blocked inner kernels of the CPU backend (generated by ``_cpu_codegen.py``: do not edit)."""

# ruff: noqa: E501
# fmt: off
import numba as nb
import numpy as np

_JIT = dict(inline="always", fastmath=True, cache=True, nogil=True)
_JIT_CALL = dict(fastmath=True, cache=True, nogil=True)  # dispatchers: compiled once, called per block
'''


def _fwd(mode: str, p_: int, t_: int) -> str:
    acc = [f"s{p}_{t}" for p in range(p_) for t in range(t_)]
    out = ["@nb.njit(**_JIT)", f"def fwd_{mode}_p{p_}t{t_}(z, a, pa, astep, b, pb, bstep, C):"]
    out.append("    " + " = ".join(acc) + " = z")
    out += [f"    ia{p} = np.uint64(pa + {p} * astep)" for p in range(p_)]
    out += [f"    ib{k} = np.uint64(pb + {k} * bstep)" for k in range(p_ + t_ - 1)]
    out.append("    for c in range(np.uint64(C)):")
    out += [f"        a{p} = a[ia{p} + c]" for p in range(p_)]
    out += [f"        b{k} = b[ib{k} + c]" for k in range(p_ + t_ - 1)]
    for p in range(p_):
        for t in range(t_):
            term = f"a{p} * b{p + t}" if mode == "product" else f"abs(a{p} - b{p + t})"
            out.append(f"        s{p}_{t} += {term}")
    out.append("    return (" + ", ".join(acc) + ",)")
    return "\n".join(out)


def _gargs(p_: int, t_: int) -> str:
    return ", ".join(f"g{p}_{t}" for p in range(p_) for t in range(t_))


def _bw1(mode: str, p_: int, t_: int) -> str:
    out = ["@nb.njit(**_JIT)", f"def bw1_{mode}_p{p_}t{t_}(ga, a, pa, astep, b, pb, bstep, C, {_gargs(p_, t_)}):"]
    out += [f"    ia{p} = np.uint64(pa + {p} * astep)" for p in range(p_)]
    out += [f"    ib{k} = np.uint64(pb + {k} * bstep)" for k in range(p_ + t_ - 1)]
    out.append("    for c in range(np.uint64(C)):")
    out += [f"        b{k} = b[ib{k} + c]" for k in range(p_ + t_ - 1)]
    for p in range(p_):
        if mode == "product":
            terms = " + ".join(f"g{p}_{t} * b{p + t}" for t in range(t_))
        else:
            out.append(f"        a{p} = a[ia{p} + c]")
            terms = " + ".join(f"(g{p}_{t} if a{p} >= b{p + t} else -g{p}_{t})" for t in range(t_))
        out.append(f"        ga[ia{p} + c] += {terms}")
    return "\n".join(out)


def _bw2(mode: str, p_: int, t_: int) -> str:
    out = ["@nb.njit(**_JIT)", f"def bw2_{mode}_p{p_}t{t_}(gb, a, pa, astep, b, pb, bstep, C, {_gargs(p_, t_)}):"]
    out += [f"    ia{p} = np.uint64(pa + {p} * astep)" for p in range(p_)]
    out += [f"    ib{k} = np.uint64(pb + {k} * bstep)" for k in range(p_ + t_ - 1)]
    out.append("    for c in range(np.uint64(C)):")
    out += [f"        a{p} = a[ia{p} + c]" for p in range(p_)]
    for k in range(p_ + t_ - 1):
        pairs = [(p, k - p) for p in range(p_) if 0 <= k - p < t_]
        if mode == "product":
            terms = " + ".join(f"g{p}_{t} * a{p}" for p, t in pairs)
            out.append(f"        gb[ib{k} + c] += {terms}")
        else:
            out.append(f"        b{k} = b[ib{k} + c]")
            terms = " + ".join(f"(g{p}_{t} if a{p} >= b{k} else -g{p}_{t})" for p, t in pairs)
            out.append(f"        gb[ib{k} + c] -= {terms}")
    return "\n".join(out)


def _dispatch(family: str) -> str:
    """``{family}_block(shape, absdiff, ...)``: one branch per (mode, shape id)."""
    if family == "fwd":
        out = [
            "@nb.njit(**_JIT_CALL)",
            "def fwd_block(shape, absdiff, res, z, a, pa, astep, b, pb, bstep, C):",
            '    """Sums of one block into ``res[p*T + t]``."""',
        ]
    else:
        out = [
            "@nb.njit(**_JIT_CALL)",
            f"def {family}_block(shape, absdiff, gx, a, pa, astep, b, pb, bstep, C, gv):",
            '    """Accumulate one block with weights ``gv[p*T + t]``."""',
        ]
    for mode in ("absdiff", "product"):
        out.append("    if absdiff:" if mode == "absdiff" else "    else:")
        for k, (p_, t_) in enumerate(SHAPES):
            out.append(f"        {'if' if k == 0 else 'elif'} shape == {k}:")
            if family == "fwd":
                out.append(f"            r = fwd_{mode}_p{p_}t{t_}(z, a, pa, astep, b, pb, bstep, C)")
                out.append(f"            for k in range({p_ * t_}):")
                out.append("                res[k] = r[k]")
            else:
                gv = ", ".join(f"gv[{i}]" for i in range(p_ * t_))
                out.append(f"            {family}_{mode}_p{p_}t{t_}(gx, a, pa, astep, b, pb, bstep, C, {gv})")
    return "\n".join(out)


def source() -> str:
    """The full text of ``_cpu_micro.py``."""
    parts = [HEADER, "#: block shapes (P, T) by id\nSHAPES = " + repr(SHAPES)]
    for mode in MODES:
        for p_, t_ in SHAPES:
            parts += [_fwd(mode, p_, t_), _bw1(mode, p_, t_), _bw2(mode, p_, t_)]
    parts += [_dispatch(f) for f in ("fwd", "bw1", "bw2")]
    return "\n\n\n".join(parts) + "\n"


XHEADER = '''"""Pixel-vectorised inner kernels of the CPU backend (generated by ``_cpu_codegen.py``: do not edit)."""

# ruff: noqa: E501
# __SIMD_HASH__
# fmt: off
import numba as nb
import numpy as np

__IMPORTS__

_JIT = dict(inline="always", cache=True, nogil=True, boundscheck=False)
_CALL = dict(cache=True, nogil=True, boundscheck=False)
# One driver per kernel shape, compiled on first use (each compiles in a few seconds).
_PJIT = dict(cache=True, nogil=True, parallel=True, boundscheck=False)
# The most elements of a gradient task's packed copy of the incoming gradient (1 MiB of float32:
# beyond it the copy no longer streams from L1 or L2; the task then reads it where it lies).
PACK_MAX = 1 << 18
'''


XHELPERS = '''@nb.njit(**_JIT)
def _lined(n, like):
    """An uninitialised vector of ``n`` elements of ``like``'s type starting on a vector's boundary.

    numba aligns its arrays to 32 bytes: a buffer that starts in the middle of a cache line makes
    every vector load and store of it touch two lines (the gradients' packing ran 1.6 against
    3.7 ns per vector, aligned against not).
    """
    buf = np.empty(n + LANES, like.dtype)
    off = (-(buf.ctypes.data // buf.itemsize)) % LANES
    return buf[off : off + n]


@nb.njit(**_JIT)
def _put(out, base, plane, t0, T, dxn, rev, acc, aoff, n):
    """``out[base + txo*plane + l] = acc[aoff + t*LANES + l]``: ``T`` displacements, ``n`` lanes."""
    for t in range(T):
        tt = t0 + t
        txo = dxn - 1 - tt if rev else tt
        o = base + txo * plane
        a = aoff + t * LANES
        for lane in range(n):
            out[o + lane] = acc[a + lane]


@nb.njit(**_JIT)
def _add_lanes(dst, base, stride, K, acc, aoff, lo, hi):
    """``dst[base + j*stride + l] += acc[aoff + j*LANES + l]`` for ``j < K``, ``lo <= l < hi``."""
    for j in range(K):
        for lane in range(lo, hi):
            dst[base + j * stride + lane] += acc[aoff + j * LANES + lane]


@nb.njit(**_JIT)
def _segment_rows(ua, ub, u0, u1):
    """``(first, n)``: the rows ``r < 3`` whose range ``ua[r] .. ub[r]`` covers ``u0 .. u1 - 1``."""
    first = 3
    n = 0
    for r in range(3):
        if ua[r] <= u0 and u1 - 1 <= ub[r]:
            first = min(first, r)
            n += 1
    return first, n


@nb.njit(**_JIT)
def _ring_row(R, dst, B, src, b_c, cg, first, count, w):
    """One row of ``f2`` into a forward's ring: ``R[dst + c*count + j] = B[src + c*b_c + first + j]``.

    For ``c < cg`` and the ``j < count`` inside the row (``0 <= first + j < w``); the other columns
    of ``R`` are left as they are (zeros).
    """
    lo = max(0, -first)
    hi = min(count, w - first)
    if hi <= lo:  # no column of the row (a bound below zero would wrap around)
        return
    for c in range(cg):
        o = dst + c * count
        i = src + c * b_c + first
        R[o + lo : o + hi] = B[i + lo : i + hi]


@nb.njit(**_JIT)
def _zero_rows(out, base, plane, dxn, n):
    """``out[base + t*plane + x] = 0`` for ``t < dxn``, ``x < n``.

    Slices: 2.3x a scalar loop in the forward; in the gradients' zeroing, W2's and W3's backward
    2-8% faster than with a plain loop per row.
    """
    for t in range(dxn):
        o = base + t * plane
        out[o : o + n] = 0


@nb.njit(**_JIT)
def _block_mode(stream, kr):
    """How a three-row gradient task writes a block of pixels: 0, stored; 1, added; 2, streamed.

    Without ``stream`` the sums add to rows zeroed before.  With it (the task zeroes no rows, and
    its blocks tile its rows: every block is whole), a block that reads no masked displacement
    (``kr`` as ``_kranges`` gives it) is streamed; one that does is stored by its unmasked sum,
    which comes first, and added to by the masked ones (zeroing its lines first instead took 5-6%
    of the samples of W3's gradients on one thread: the stores of the zeros wait for lines from
    memory).
    """
    if not stream:
        return 1
    return 2 if (kr[0] == kr[1]) & (kr[2] == kr[3]) else 0


@nb.njit(**_JIT)
def _pack(P, G, base, rstride, tys, gsk, ua, ub, roff, umin, nu, dxn, wlo, whi, wst, nblk, ahead, zeros):
    """The incoming gradient that ``nblk`` blocks of pixels of three rows read, copied into ``P``.

    In the order the sums read it: ``P[b*3*rs + r*rs + (u - umin)*ks + k*LANES + l] =
    G[base + b*LANES + r*rstride + (u + r*roff)*tys + k*gsk + l]`` (``ks = dxn*LANES``,
    ``rs = nu*ks``) for blocks ``b < nblk``, the ``u`` that row ``r`` reads (``ua[r] .. ub[r]``),
    every displacement ``k < dxn`` and the lanes ``wlo + k*wst <= b*LANES + l < whi + k*wst``;
    zeros in the other lanes and, with ``zeros`` (a task's first copy: the later ones into the same
    buffer leave them in place), at the other ``u`` of ``umin .. umin + nu - 1``.  One ``xpack``
    per ``(r, u)`` copies the blocks of every ``k`` (they lie side by side in ``G``); with
    ``ahead``, it also asks for the lines the next copy will read (the ``nblk`` blocks that follow
    along the row) to be brought into L2.
    """
    ks = dxn * LANES
    rs = nu * ks
    for r in range(3):
        for j in range(nu):
            u = umin + j
            dst = r * rs + j * ks
            if (ua[r] <= u) & (u <= ub[r]):
                src = base + r * rstride + (u + r * roff) * tys
                xpack(P, dst, LANES, 3 * rs, G, src, gsk, dxn, nblk, wlo, whi, wst, ahead)
            elif zeros:  # row r does not read u: an empty window writes the zeros, nothing is read
                xpack(P, dst, LANES, 3 * rs, G, 0, 0, dxn, nblk, 0, 0, 0, 0)


@nb.njit(**_JIT)
def _pack_plan(ua, ub, dxn, packed):
    """``(full, umin, nu, npk)``: whether a three-row task reads a packed copy of the incoming gradient.

    ``full``: ``packed`` blocks at a time were asked for, all three rows read something (``ua[r] ..
    ub[r]``) and a copy fits in ``PACK_MAX`` elements; ``umin .. umin + nu - 1``: every ``u`` any row
    reads; ``npk``: blocks of pixels per copy.
    """
    full = (packed > 0) & (ua[0] <= ub[0]) & (ua[1] <= ub[1]) & (ua[2] <= ub[2])
    umin = min(ua[0], min(ua[1], ua[2]))
    nu = max(ub[0], max(ub[1], ub[2])) + 1 - umin
    one = 3 * nu * dxn * LANES
    full &= one <= PACK_MAX
    npk = max(1, min(packed, PACK_MAX // one)) if full else 1
    return full, umin, nu, npk'''

FWD_DRIVER = '''@nb.njit(**_PJIT)
def forward_r__R__t__T__(A, a_strides, axo, B, b_strides, bxo, out, dims, geo, pair, scale, ring, stream, threads):
    """Forward in blocks of __R__ row(s) x __T__ displacements (see ``cpu_xkernels``).

    A task's rows are ``i0 + r*p`` for ``r < __R__`` (``pair = (p, qq)``; one row where ``p`` is 0),
    which read the same ``f2`` row at displacement rows ``k + r*qq``.  ``ring = (rows, first,
    count, w)``: with ``rows`` 0, ``B`` is the caller's row-major copy of ``f2``; else ``B`` is
    ``f2`` as it is, and each thread copies the rows it reads (columns ``first .. first + count``,
    zeros outside the map) into a ring of ``rows`` rows laid out like that copy, keeping them for
    the next rows of its tasks.  The tasks go in ``threads`` contiguous runs, one per thread.
    ``stream``: whole blocks go straight to ``out`` with streaming stores (every row of ``out``
    starts a line and holds whole blocks).
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    a_b, a_c, a_r = a_strides
    nr, rfirst, rcount, rw = ring
    b_b, b_c, b_r = b_strides
    bc = rcount if nr else b_c  # the channel step of what the kernel reads
    p, qq = pair
    plane = ho * wo
    span = __R__ * p  # output rows a run of ``p`` tasks covers
    nsub = ((ho + span - 1) // span) * p if p > 0 else ho
    tstep = -plane if rev else plane
    ntask = nbat * groups * nsub
    nth = max(1, min(threads, ntask))
    per = (ntask + nth - 1) // nth
    rowsize = cg * rcount
    for th in nb.prange(nth):
        R = _lined(max(nr * rowsize, 1), out)
        R[:] = 0
        tags = np.full(max(nr, 1), -1, np.int64)
        acc = _lined(__R__ * __T__ * LANES, out)
        for task in range(th * per, min(ntask, (th + 1) * per)):
            bg = task // nsub
            rem = task % nsub
            i0 = (rem // p) * span + rem % p if p > 0 else rem
            if i0 >= ho:
                continue
            nrow = min(__R__, (ho - 1 - i0) // p + 1) if p > 0 else 1  # the task's rows inside the output
            bi = bg // groups
            g = bg % groups
            cbase = bi * b_b + g * cg * b_c
            ya_R_ = y0 + (i0 + _R_ * p) * sy
            ok_R_ = (_R_ < nrow) & (ya_R_ >= 0) & (ya_R_ < h)  # else its rows are zeros
            abase_R_ = bi * a_b + g * cg * a_c + ya_R_ * a_r + axo  # read only where ok_R_
            ob_R_ = bg * dyn * dxn * plane + (i0 + _R_ * p) * wo
            lo = min(0, -(nrow - 1) * qq)
            hi = max(dyn, dyn - (nrow - 1) * qq)
            for k in range(lo, hi):
                yb = ya0 + dy0 + k * sdy  # the f2 row every row reads (at its own displacement row)
                inside = (yb >= 0) & (yb < h)
                iy_R_ = k + _R_ * qq
                v_R_ = (_R_ < nrow) & (iy_R_ >= 0) & (iy_R_ < dyn)
                c_R_ = v_R_ & ok_R_ & inside
                o_R_ = ob_R_ + iy_R_ * dxn * plane
                if v_R_ & ~c_R_:
                    _zero_rows(out, o_R_, plane, dxn, wo)
                nv = $(int(c_R_)$ + $)  # the rows written: a run of consecutive ones from r0
                if nv == 0:
                    continue
                r0 = __R__
                if c_R_ & (r0 > _R_):
                    r0 = _R_
                if nr:
                    slot = yb % nr
                    if tags[slot] != bg * h + yb:
                        _ring_row(R, slot * rowsize, B, cbase + yb * b_r, b_c, cg, rfirst, rcount, rw)
                        tags[slot] = bg * h + yb
                    Bk = R
                    bbase = slot * rowsize + bxo
                else:
                    Bk = B
                    bbase = cbase + yb * b_r + bxo
                ab = ($(abase_R_$, $),)
                oo = ($(o_R_$, $),)
                for t0 in range(0, dxn, __T__):
                    T = min(__T__, dxn - t0)
                    ib = bbase + t0 * sdx
                    first = (dxn - 1 - t0) * plane if rev else t0 * plane
__LOOPS__
        if stream:
            xsfence()
    return out'''

#: The forward's blocks of one row of displacements for ``__N__`` of a task's rows, ``r0`` on
#: (``nv``: how many it writes; a run of rows past the edges of the displacement rows or the map
#: runs as a block of fewer rows rather than reading a stand-in row and discarding its sums).
FWD_BLOCKS = """                    __IF__ nv == __N__:
                        for x in range(0, wo, LANES):
                            n = min(LANES, wo - x)
                            if (n == LANES) & (T == __T__):  # straight into the output
                                xfwd_r__N__t__T__(A, ($(ab[r0 + _R_] + x$, $),), a_c, Bk, ib + x, bc, sdx, cg, out, ($(oo[r0 + _R_] + first + x$, $),), tstep, scale, stream)
                            else:
                                xfwd_r__N__t__T__(A, ($(ab[r0 + _R_] + x$, $),), a_c, Bk, ib + x, bc, sdx, cg, acc, ($(_R_ * __T__ * LANES$, $),), LANES, scale, 0)
                                for s in range(__N__):
                                    _put(out, oo[r0 + s] + x, plane, t0, T, dxn, rev, acc, s * __T__ * LANES, n)"""


def _forward_driver(rows: int, disps: int) -> str:
    """``forward_r{rows}t{disps}``: a block of every row a task writes, else of the run it writes."""
    loops = [
        _per_row(_sub(FWD_BLOCKS, N=n, T=disps).replace("__IF__", "if" if n == rows else "elif"), n)
        for n in range(rows, 0, -1)
    ]
    return _per_row(_sub(FWD_DRIVER, R=rows, T=disps).replace("__LOOPS__", "\n".join(loops)), rows)


KRANGES = '''@nb.njit(**_JIT)
def _kranges(lo, hi, st, dxn, flo, fhi):
    """Displacements by what a block of lanes may read at them: ``(k0, f0, f1, k1)``.

    At displacement ``k`` lane ``l`` of the block may be read where ``lo + k*st <= l < hi + k*st``
    (``st != 0``; the other operand's row, shifted); the block wants lanes ``flo .. fhi``.
    ``k0 .. k1``: the displacements that read some of them.  ``f0 .. f1``, inside it: those at
    which every lane may be read (none unless the block is whole), summed without masks; the rest
    of ``k0 .. k1`` is summed with masked reads.
    """
    if st > 0:
        k0 = (flo - hi) // st + 1
        k1 = -((lo - fhi) // st)
        f0 = -((hi - LANES) // st)
        f1 = (-lo) // st + 1
    else:
        s = -st
        k0 = (lo - fhi) // s + 1
        k1 = -((flo - hi) // s)
        f0 = -((-lo) // s)
        f1 = (hi - LANES) // s + 1
    k0 = max(k0, 0)
    k1 = max(min(k1, dxn), k0)
    f0 = max(f0, k0)
    f1 = min(f1, k1)
    if (flo != 0) | (fhi != LANES) | (f1 <= f0):
        f0 = k1
        f1 = k1
    return k0, f0, f1, k1'''

SUMS = '''@nb.njit(**_JIT)
def _gsum_c__K__(G, g0, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dcs, scale, add, lo, hi, st, flo, fhi):
    """``xsum_c__K__`` over the displacements that reach the block's lanes ``flo .. fhi``.

    ``X`` (and ``G``) may be read at displacement ``k`` in lanes ``lo + k*st .. hi + k*st`` only
    (see ``_kranges``): reads are masked where a row ends.
    """
    k0, f0, f1, k1 = _kranges(lo, hi, st, dxn, flo, fhi)
    xsum_c__K__(G, g0 + f0 * gsk, gsi, gsk, n, f1 - f0, X, x0 + f0 * xsk, xcs, xsi, xsk, D, d0, dcs, scale, add)
    if k0 < f0:
        xsumm_c__K__(G, g0, gsi, gsk, n, k0, f0, X, x0, xcs, xsi, xsk, D, d0, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)
    if f1 < k1:
        xsumm_c__K__(G, g0, gsi, gsk, n, f1, k1, X, x0, xcs, xsi, xsk, D, d0, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)


@nb.njit(**_JIT)
def _gsum2_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, add, lo, hi, st, flo, fhi):
    """``_gsum_c__K__`` for two streams of ``G`` (``xsum2_c__K__``)."""
    k0, f0, f1, k1 = _kranges(lo, hi, st, dxn, flo, fhi)
    xsum2_c__K__(G, g0 + f0 * gsk, gd, gsi, gsk, n, f1 - f0, X, x0 + f0 * xsk, xcs, xsi, xsk, D, d0, dd, dcs, scale, add)
    if k0 < f0:
        xsum2m_c__K__(G, g0, gd, gsi, gsk, n, k0, f0, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)
    if f1 < k1:
        xsum2m_c__K__(G, g0, gd, gsi, gsk, n, f1, k1, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)'''


SUMS3 = '''@nb.njit(**_JIT)
def _gsum3_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, add, lo, hi, st, flo, fhi):
    """``_gsum_c__K__`` for three streams of ``G`` (``xsum3_c__K__``)."""
    k0, f0, f1, k1 = _kranges(lo, hi, st, dxn, flo, fhi)
    xsum3_c__K__(G, g0 + f0 * gsk, gd, gsi, gsk, n, f1 - f0, X, x0 + f0 * xsk, xcs, xsi, xsk, D, d0, dd, dcs, scale, add)
    if k0 < f0:
        xsum3m_c__K__(G, g0, gd, gsi, gsk, n, k0, f0, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)
    if f1 < k1:
        xsum3m_c__K__(G, g0, gd, gsi, gsk, n, f1, k1, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, -lo, st, hi - lo, flo, fhi)



@nb.njit(**_CALL)
def _gsum_rows_c__K__(rows, G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, lo, hi, st, llo, lhi, acc):
    """The sums of ``rows`` (1 to 3) consecutive rows added to ``D`` (``_gsum3``, ``_gsum2``, ``_gsum``).

    Straight into ``D`` where the block is whole (lanes ``llo .. lhi`` are all of them), else into
    ``acc`` and from there lanes ``llo .. lhi`` only.
    """
    if (llo == 0) & (lhi == LANES):
        if rows == 3:
            _gsum3_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, lo, hi, st, 0, LANES)
        elif rows == 2:
            _gsum2_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, 1, lo, hi, st, 0, LANES)
        else:
            _gsum_c__K__(G, g0, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, D, d0, dcs, scale, 1, lo, hi, st, 0, LANES)
        return
    if rows == 3:
        _gsum3_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, acc, 0, __K__ * LANES, LANES, scale, 0, lo, hi, st, llo, lhi)
    elif rows == 2:
        _gsum2_c__K__(G, g0, gd, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, acc, 0, __K__ * LANES, LANES, scale, 0, lo, hi, st, llo, lhi)
    else:
        _gsum_c__K__(G, g0, gsi, gsk, n, dxn, X, x0, xcs, xsi, xsk, acc, 0, LANES, scale, 0, lo, hi, st, llo, lhi)
    for r in range(rows):
        _add_lanes(D, d0 + r * dd, dcs, __K__, acc, r * __K__ * LANES, llo, lhi)


@nb.njit(**_CALL)
def _gsum_packed_c__K__(P, p0, rs, ks, nu, kr, X, x0, xcs, xsi, xsk, D, d0, dd, dcs, scale, lo, st, mn, llo, lhi, acc, mode, nc):
    """Three rows of sums over ``nu`` rows of ``u`` from the packed incoming gradient ``P`` (see ``_pack``).

    For channels ``c < nc``, ``__K__`` at a time (``X`` ``c*xcs`` and ``D`` ``c*dcs`` further on).
    ``kr``: ``_kranges`` of the block; ``lo, st, mn``: where ``X``'s row lies, as there.
    Straight into ``D`` where the block is whole, else through ``acc`` (lanes ``llo .. lhi``).
    ``mode`` (whole blocks; see ``_block_mode``): how the unmasked sum, which comes first, writes
    ``D``: 0 stored, 1 added, 2 streamed (a block that reads no masked displacement, where nothing
    else adds to it); the masked sums add.

    Compiled on its own rather than inlined into the drivers (``_CALL``): inside a driver's task
    loop the sums' inner loop carried register moves and spills.  One call per block of pixels:
    numba counts references to the arrays at every call, atomically, on lines both threads touch.
    """
    k0, f0, f1, k1 = kr
    whole = (llo == 0) & (lhi == LANES)
    for c in range(0, nc, __K__):
        xc = x0 + c * xcs
        dc = d0 + c * dcs
        if whole:
            xsum3p_c__K__(P, p0 + f0 * LANES, rs, ks, LANES, nu, f1 - f0, X, xc + f0 * xsk, xcs, xsi, xsk, D, dc, dd, dcs, scale, mode)
            if k0 < f0:
                xsum3m_c__K__(P, p0, rs, ks, LANES, nu, k0, f0, X, xc, xcs, xsi, xsk, D, dc, dd, dcs, scale, 1, -lo, st, mn, 0, LANES)
            if f1 < k1:
                xsum3m_c__K__(P, p0, rs, ks, LANES, nu, f1, k1, X, xc, xcs, xsi, xsk, D, dc, dd, dcs, scale, 1, -lo, st, mn, 0, LANES)
            continue
        xsum3m_c__K__(P, p0, rs, ks, LANES, nu, k0, k1, X, xc, xcs, xsi, xsk, acc, 0, __K__ * LANES, LANES, scale, 0, -lo, st, mn, llo, lhi)
        for r in range(3):
            _add_lanes(D, dc + r * dd, dcs, __K__, acc, r * __K__ * LANES, llo, lhi)'''


G1T_DRIVER = '''@nb.njit(**_PJIT)
def grad_f1_triple_c__K__(G, g_strides, B, b_strides, bxo, GA, w, ax0, c_lo, c_hi, dims, geo, pair, scale, packed, ahead, zero):
    """``grad_f1_pair_c__K__`` for three output rows at a time: ``i``, ``i + p``, ``i + 2p``.

    Row ``r`` at vertical displacement ``u + r*qq`` reads the ``f2`` row that row 0 reads at ``u``.
    The rows that read a given ``u`` are consecutive; the driver walks the segments of ``u`` over
    which they stay the same and runs the three-, two- or one-row sum on each, so each load of
    ``f2`` serves every row that reads it.
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    g_bg, g_y, g_t, g_i = g_strides
    b_b, b_c, b_r = b_strides
    p, qq = pair
    ctot = groups * cg
    hw = h * w
    nsub = ((ho + 3 * p - 1) // (3 * p)) * p
    gsk = -g_t if rev else g_t
    lane_lo = max(0, -ax0)
    lane_hi = min(wo, w - ax0)
    for task in nb.prange(nbat * groups * nsub):
        bg = task // nsub
        rem = task % nsub
        i0 = (rem // p) * 3 * p + rem % p
        if i0 >= ho:
            continue
        bi = bg // groups
        g = bg % groups
        # row r reads u = ty - r*qq for its valid displacement rows ty: the range ua[r] .. ub[r]
        ua = np.full(3, 1, np.int64)
        ub = np.full(3, 0, np.int64)
        cuts = np.empty(6, np.int64)
        for r in range(3):
            i = i0 + r * p
            ya = y0 + i * sy
            lo = dyn
            hi = -1
            if i < ho and 0 <= ya < h:
                for ty in range(dyn):
                    yb = ya + dy0 + ty * sdy
                    if 0 <= yb < h:
                        lo = min(lo, ty)
                        hi = max(hi, ty)
            if lo <= hi:
                ua[r] = lo - r * qq
                ub[r] = hi - r * qq
            cuts[2 * r] = ua[r]
            cuts[2 * r + 1] = ub[r] + 1
        cuts.sort()
        # packed, with all three rows inside the map: one three-row sum over every u any of them
        # reads, from a copy of the incoming gradient with zeros where a row does not read u
        full, umin, nu, npk = _pack_plan(ua, ub, dxn, packed)
        # zero 2, a packed task whose blocks tile its rows (the caller checked that they start
        # lines): nothing is zeroed; each block writes its sums itself (see _block_mode)
        stream = (zero == 2) & full & (ax0 == 0) & (wo == w) & (w % LANES == 0)
        ab0 = (bi * ctot + g * cg) * hw + (y0 + i0 * sy) * w + ax0
        dd = p * sy * w
        if zero and not stream:  # this task's rows of the gradient, before it adds to them
            for r in range(3):
                i = i0 + r * p
                ya = y0 + i * sy
                if i < ho and 0 <= ya < h:
                    _zero_rows(GA, (bi * ctot + g * cg + c_lo) * hw + ya * w, hw, c_hi - c_lo, w)
        acc = _lined(3 * __K__ * LANES, GA)
        gb0 = bg * g_bg + i0 * g_i + ((dxn - 1) * g_t if rev else 0)
        xb0 = bi * b_b + g * cg * b_c + (y0 + i0 * sy + dy0) * b_r + bxo
        gd = p * g_i + qq * g_y
        xsi = sdy * b_r
        ks = dxn * LANES
        rs = nu * ks
        P = _lined(npk * 3 * rs if full else 1, GA)
        nxb = (wo + LANES - 1) // LANES
        for xb in range(nxb):
            x = xb * LANES
            if full and xb % npk == 0:
                _pack(P, G, gb0 + x, p * g_i, g_y, gsk, ua, ub, qq, umin, nu, dxn, 0, wo - x, 0, min(npk, nxb - xb), ahead, xb == 0)
            llo = max(lane_lo - x, 0)
            lhi = min(lane_hi - x, LANES)
            if lhi <= llo:  # (never where ``stream``: its blocks tile the rows)
                continue
            xl = -(bxo + x)  # f2's row lies in lanes xl - k*sdx .. xl + w - k*sdx at displacement k
            kr = _kranges(xl, xl + w, -sdx, dxn, llo, lhi)
            mode = _block_mode(stream, kr)
            p0 = (xb % npk) * 3 * rs if full else 0
            if full:  # every block of channels in one call
                xc = xb0 + c_lo * b_c + x + umin * xsi
                _gsum_packed_c__K__(P, p0, rs, ks, nu, kr, B, xc, b_c, xsi, sdx, GA, ab0 + c_lo * hw + x, dd, hw, scale, xl, -sdx, w, llo, lhi, acc, mode, c_hi - c_lo)
                continue
            for c0 in range(c_lo, c_hi, __K__):
                o0 = ab0 + c0 * hw + x
                xc = xb0 + c0 * b_c + x
                for s in range(5):
                    u0 = cuts[s]
                    u1 = cuts[s + 1]
                    first, n = _segment_rows(ua, ub, u0, u1)
                    if u1 > u0 and n > 0:
                        gg = gb0 + first * gd + u0 * g_y + x
                        _gsum_rows_c__K__(n, G, gg, gd, g_y, gsk, u1 - u0, dxn, B, xc + u0 * xsi, b_c, xsi, sdx, GA, o0 + first * dd, dd, hw, scale, xl, xl + w, -sdx, llo, lhi, acc)
        if stream:
            xsfence()
    return GA'''


G2T_DRIVER = '''@nb.njit(**_PJIT)
def grad_f2_triple_c__K__(G, g_strides, A, a_strides, axo, GB, w, bx0, nz, c_lo, c_hi, dims, geo, scale, packed, ahead, zero):
    """``grad_f2_pair_c__K__`` for three ``f2`` rows at a time: ``yb``, ``yb + |sdy|``, ``yb + 2|sdy|``.

    Row ``r`` at vertical displacement ``u + r*e`` (``e`` the sign of ``sdy``) meets the output row
    that row 0 meets at ``u``; segments of ``u`` as in ``grad_f1_triple_c__K__``.
    """
    nbat, groups, cg, h = dims
    ho, nx, dyn, dxn, y0, _, dy0, sdy, sdx, rev = geo  # the row step is one
    g_bg, g_y, g_t, g_i = g_strides
    a_b, a_c, a_r = a_strides
    ctot = groups * cg
    hw = h * w
    d = abs(sdy)
    e = 1 if sdy > 0 else -1
    nsub = ((h + 3 * d - 1) // (3 * d)) * d
    gsk = -g_t - sdx if rev else g_t - sdx
    gt0 = (dxn - 1) * g_t if rev else 0
    lane_lo = max(0, -bx0)
    lane_hi = min(nz, w - bx0)
    pl = max(0, -axo)  # pixels whose f1 column lies in the map (and G's row)
    ph = min(nx, w - axo)
    gd = e * g_y
    dd = d * w
    gsi = g_y - sdy * g_i  # next ty: the output row moves by -sdy
    asi = -sdy * a_r
    for task in nb.prange(nbat * groups * nsub):
        bg = task // nsub
        rem = task % nsub
        yb0 = (rem // d) * 3 * d + rem % d
        if yb0 >= h:
            continue
        bi = bg // groups
        g = bg % groups
        # row r's displacement rows ty whose output row exists and reads f1 inside the map, as
        # u = ty - r*e: the range ua[r] .. ub[r]
        ua = np.full(3, 1, np.int64)
        ub = np.full(3, 0, np.int64)
        cuts = np.empty(6, np.int64)
        for r in range(3):
            yb = yb0 + r * d
            lo = dyn
            hi = -1
            if yb < h:
                for ty in range(dyn):
                    i = yb - y0 - dy0 - ty * sdy
                    ya = y0 + i
                    if 0 <= i < ho and 0 <= ya < h:
                        lo = min(lo, ty)
                        hi = max(hi, ty)
            if lo <= hi:
                ua[r] = lo - r * e
                ub[r] = hi - r * e
            cuts[2 * r] = ua[r]
            cuts[2 * r + 1] = ub[r] + 1
        cuts.sort()
        # packed, with all three rows reached: one three-row sum over every u any of them reads,
        # from a copy of the incoming gradient with zeros where a row does not read u
        full, umin, nu, npk = _pack_plan(ua, ub, dxn, packed)
        # zero 2: streaming stores where the blocks tile the rows, as in grad_f1_triple_c__K__
        stream = (zero == 2) & full & (bx0 <= 0) & (lane_hi - lane_lo == w) & (w % LANES == 0)
        if zero and not stream:  # this task's rows of the gradient, before it adds to them
            for r in range(3):
                yb = yb0 + r * d
                if yb < h:
                    _zero_rows(GB, (bi * ctot + g * cg + c_lo) * hw + yb * w, hw, c_hi - c_lo, w)
        acc = _lined(3 * __K__ * LANES, GB)
        rb0 = (bi * ctot + g * cg) * hw + yb0 * w + bx0
        ks = dxn * LANES
        rs = nu * ks
        P = _lined(npk * 3 * rs if full else 1, GB)
        ib0 = yb0 - y0 - dy0  # at u every stream meets output row ib0 - u*sdy
        nzb = (lane_hi - lane_lo + LANES - 1) // LANES
        for zb in range(nzb):  # blocks from the first f2 column reached
            z = lane_lo + zb * LANES
            if full and zb % npk == 0:
                _pack(P, G, bg * g_bg + ib0 * g_i + gt0 + z, e * g_y, gsi, gsk, ua, ub, 0, umin, nu, dxn, pl - z, ph - z, sdx, min(npk, nzb - zb), ahead, zb == 0)
            llo = max(lane_lo - z, 0)
            lhi = min(lane_hi - z, LANES)
            kr = _kranges(pl - z, ph - z, sdx, dxn, llo, lhi)
            mode = _block_mode(stream, kr)
            p0 = (zb % npk) * 3 * rs if full else 0
            if full:  # every block of channels in one call
                xx = bi * a_b + g * cg * a_c + (y0 + ib0 - umin * sdy) * a_r + axo + c_lo * a_c + z
                _gsum_packed_c__K__(P, p0, rs, ks, nu, kr, A, xx, a_c, asi, -sdx, GB, rb0 + c_lo * hw + z, dd, hw, scale, pl - z, sdx, ph - pl, llo, lhi, acc, mode, c_hi - c_lo)
                continue
            for c0 in range(c_lo, c_hi, __K__):
                o0 = rb0 + c0 * hw + z
                for s in range(5):
                    u0 = cuts[s]
                    u1 = cuts[s + 1]
                    first, n = _segment_rows(ua, ub, u0, u1)
                    if u1 > u0 and n > 0:
                        ty = u0 + first * e
                        i = yb0 + first * d - y0 - dy0 - ty * sdy
                        gg = bg * g_bg + ty * g_y + i * g_i + gt0 + z
                        xx = bi * a_b + g * cg * a_c + (y0 + i) * a_r + axo + c0 * a_c + z
                        _gsum_rows_c__K__(n, G, gg, gd, gsi, gsk, u1 - u0, dxn, A, xx, a_c, asi, -sdx, GB, o0 + first * dd, dd, hw, scale, pl - z, ph - z, sdx, llo, lhi, acc)
        if stream:
            xsfence()
    return GB'''


G1_DRIVER = '''@nb.njit(**_PJIT)
def grad_f1_c__K__(G, g_strides, B, b_strides, bxo, GA, w, ax0, c_lo, c_hi, dims, geo, scale):
    """Adds the ``f1`` gradient of channels ``c_lo .. c_hi`` of each group to ``GA``, __K__ at a time.

    ``G``: the incoming gradient, strides ``g_strides`` (batch-group, displacement row, displacement,
    output row), rows of ``wo`` pixels and nothing around them (a block that is not whole reads
    only its pixels).  ``B``: ``f2`` as it is (NCHW; strides ``b_strides`` for batch, channel and
    row; pixel ``j`` at displacement ``t`` reads column ``bxo + j + t*sdx``), read only inside its
    rows.
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    g_bg, g_y, g_t, g_i = g_strides
    b_b, b_c, b_r = b_strides
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
        acc = _lined(__K__ * LANES, GA)
        gbase = bg * g_bg + ty_lo * g_y + i * g_i
        gsk = g_t
        if rev:
            gbase += (dxn - 1) * g_t
            gsk = -g_t
        gsi = g_y
        xbase = bi * b_b + g * cg * b_c + (ya + dy0 + ty_lo * sdy) * b_r + bxo
        xsi = sdy * b_r
        abase = (bi * ctot + g * cg) * h * w + ya * w + ax0
        lane_lo = max(0, -ax0)
        lane_hi = min(wo, w - ax0)
        for c0 in range(c_lo, c_hi, __K__):
            for x in range(0, wo, LANES):
                lo = max(lane_lo - x, 0)
                hi = min(lane_hi - x, LANES)
                if hi <= lo:
                    continue
                o = abase + c0 * h * w + x
                xl = -(bxo + x)  # f2's row lies in lanes xl - k*sdx .. xl + w - k*sdx at displacement k
                if (lo == 0) & (hi == LANES):
                    _gsum_c__K__(G, gbase + x, gsi, gsk, ni, dxn, B, xbase + c0 * b_c + x, b_c, xsi, sdx, GA, o, h * w, scale, 1, xl, xl + w, -sdx, 0, LANES)
                else:
                    _gsum_c__K__(G, gbase + x, gsi, gsk, ni, dxn, B, xbase + c0 * b_c + x, b_c, xsi, sdx, acc, 0, LANES, scale, 0, xl, xl + w, -sdx, lo, hi)
                    _add_lanes(GA, o, h * w, __K__, acc, 0, lo, hi)
    return GA'''

G2_DRIVER = '''@nb.njit(**_PJIT)
def grad_f2_c__K__(G, g_strides, A, a_strides, axo, GB, w, bx0, nz, c_lo, c_hi, dims, geo, scale):
    """Adds the ``f2`` gradient of channels ``c_lo .. c_hi`` of each group to ``GB``, __K__ at a time.

    ``G`` as for ``grad_f1``; ``A``: ``f1`` as it is (pixel ``j`` at column ``axo + j``).  Both are
    read shifted by every displacement, only inside their rows.  One task per ``f2`` row: the
    output rows and vertical displacements that reach it form an arithmetic progression, and each
    block of ``f2`` columns sums over them and over every horizontal displacement in registers.
    """
    nbat, groups, cg, h = dims
    ho, nx, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo  # f2 columns: up to nz
    g_bg, g_y, g_t, g_i = g_strides
    a_b, a_c, a_r = a_strides
    ctot = groups * cg
    lane_lo = max(0, -bx0)
    lane_hi = min(nz, w - bx0)
    pl = max(0, -axo)  # pixels whose f1 column lies in the map (and G's row)
    ph = min(nx, w - axo)
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
        gsi = dty * g_y + di * g_i
        gsk = -g_t - sdx if rev else g_t - sdx
        g0 = bg * g_bg + ty_f * g_y + i_f * g_i
        if rev:
            g0 += (dxn - 1) * g_t
        asi = di * sy * a_r
        a0 = bi * a_b + g * cg * a_c + (y0 + i_f * sy) * a_r + axo
        acc = _lined(__K__ * LANES, GB)
        rowbase = (bi * ctot + g * cg) * h * w + yb * w + bx0
        for c0 in range(c_lo, c_hi, __K__):
            for z in range(lane_lo, lane_hi, LANES):  # blocks from the first f2 column reached
                lo = max(lane_lo - z, 0)
                hi = min(lane_hi - z, LANES)
                o = rowbase + c0 * h * w + z
                if (lo == 0) & (hi == LANES):
                    _gsum_c__K__(G, g0 + z, gsi, gsk, n, dxn, A, a0 + c0 * a_c + z, a_c, asi, -sdx, GB, o, h * w, scale, 1, pl - z, ph - z, sdx, 0, LANES)
                else:
                    _gsum_c__K__(G, g0 + z, gsi, gsk, n, dxn, A, a0 + c0 * a_c + z, a_c, asi, -sdx, acc, 0, LANES, scale, 0, pl - z, ph - z, sdx, lo, hi)
                    _add_lanes(GB, o, h * w, __K__, acc, 0, lo, hi)
    return GB'''


G1P_DRIVER = '''@nb.njit(**_PJIT)
def grad_f1_pair_c__K__(G, g_strides, B, b_strides, bxo, GA, w, ax0, c_lo, c_hi, dims, geo, pair, scale):
    """``grad_f1_c__K__`` for two output rows at a time.

    Rows ``i`` and ``i + p`` at vertical displacements ``ty`` and ``ty + qq`` read the same ``f2``
    row: each load of it serves both.
    """
    nbat, groups, cg, h = dims
    ho, wo, dyn, dxn, y0, sy, dy0, sdy, sdx, rev = geo
    g_bg, g_y, g_t, g_i = g_strides
    b_b, b_c, b_r = b_strides
    p, qq = pair
    ctot = groups * cg
    hw = h * w
    nsub = ((ho + 2 * p - 1) // (2 * p)) * p
    gsk = -g_t if rev else g_t
    lane_lo = max(0, -ax0)
    lane_hi = min(wo, w - ax0)
    for task in nb.prange(nbat * groups * nsub):
        bg = task // nsub
        rem = task % nsub
        i0 = (rem // p) * 2 * p + rem % p
        if i0 >= ho:
            continue
        i1 = i0 + p
        bi = bg // groups
        g = bg % groups
        rows = np.empty(2, np.int64)
        rows[0] = i0
        rows[1] = i1
        # valid displacement rows of each output row (f1 row and f2 row inside the maps)
        lo = np.full(2, dyn, np.int64)
        hi = np.full(2, -1, np.int64)
        for r in range(2):
            i = rows[r]
            ya = y0 + i * sy
            if i >= ho or ya < 0 or ya >= h:
                continue
            for ty in range(dyn):
                yb = ya + dy0 + ty * sdy
                if 0 <= yb < h:
                    lo[r] = min(lo[r], ty)
                    hi[r] = max(hi[r], ty)
        # the shared range, in row 0's displacement rows
        s_lo = max(lo[0], lo[1] - qq)
        s_hi = min(hi[0], hi[1] - qq)
        acc = _lined(2 * __K__ * LANES, GA)
        gb0 = bg * g_bg + i0 * g_i + ((dxn - 1) * g_t if rev else 0)
        xb0 = bi * b_b + g * cg * b_c + (y0 + i0 * sy + dy0) * b_r + bxo
        ab0 = (bi * ctot + g * cg) * hw + (y0 + i0 * sy) * w + ax0
        gd = p * g_i + qq * g_y
        dd = p * sy * w
        for c0 in range(c_lo, c_hi, __K__):
            for x in range(0, wo, LANES):
                llo = max(lane_lo - x, 0)
                lhi = min(lane_hi - x, LANES)
                if lhi <= llo:
                    continue
                full = (llo == 0) & (lhi == LANES)
                o0 = ab0 + c0 * hw + x
                xc = xb0 + c0 * b_c + x
                xl = -(bxo + x)  # f2's row lies in lanes xl - k*sdx .. xl + w - k*sdx at displacement k
                if s_lo <= s_hi:
                    gg = gb0 + s_lo * g_y + x
                    xx = xc + s_lo * sdy * b_r
                    n = s_hi - s_lo + 1
                    if full:
                        _gsum2_c__K__(G, gg, gd, g_y, gsk, n, dxn, B, xx, b_c, sdy * b_r, sdx, GA, o0, dd, hw, scale, 1, xl, xl + w, -sdx, 0, LANES)
                    else:
                        _gsum2_c__K__(G, gg, gd, g_y, gsk, n, dxn, B, xx, b_c, sdy * b_r, sdx, acc, 0, __K__ * LANES, LANES, scale, 0, xl, xl + w, -sdx, llo, lhi)
                        _add_lanes(GA, o0, hw, __K__, acc, 0, llo, lhi)
                        _add_lanes(GA, o0 + dd, hw, __K__, acc, __K__ * LANES, llo, lhi)
                # what is left of each row on its own: below and above the shared range
                for r in range(2):
                    if lo[r] > hi[r]:
                        continue
                    shift = 0 if r == 0 else qq
                    for part in range(2):
                        if s_lo > s_hi:  # nothing shared: the row's whole range, once
                            if part == 1:
                                continue
                            a, b = lo[r], hi[r]
                        elif part == 0:
                            a, b = lo[r], min(hi[r], s_lo + shift - 1)
                        else:
                            a, b = max(lo[r], s_hi + shift + 1), hi[r]
                        if a > b:
                            continue
                        gg = gb0 + r * p * g_i + a * g_y + x
                        xx = xc + r * p * sy * b_r + a * sdy * b_r
                        o = o0 + r * dd
                        if full:
                            _gsum_c__K__(G, gg, g_y, gsk, b - a + 1, dxn, B, xx, b_c, sdy * b_r, sdx, GA, o, hw, scale, 1, xl, xl + w, -sdx, 0, LANES)
                        else:
                            _gsum_c__K__(G, gg, g_y, gsk, b - a + 1, dxn, B, xx, b_c, sdy * b_r, sdx, acc, 0, LANES, scale, 0, xl, xl + w, -sdx, llo, lhi)
                            _add_lanes(GA, o, hw, __K__, acc, 0, llo, lhi)
    return GA'''


G2P_DRIVER = '''@nb.njit(**_PJIT)
def grad_f2_pair_c__K__(G, g_strides, A, a_strides, axo, GB, w, bx0, nz, c_lo, c_hi, dims, geo, scale):
    """``grad_f2_c__K__`` for two ``f2`` rows at a time, on a unit row step (``sy == 1``).

    Rows ``yb`` and ``yb + |sdy|`` meet output row ``i`` at vertical displacements ``ty`` and
    ``ty + e`` (``e`` the sign of ``sdy``): each load of ``f1`` serves both.
    """
    nbat, groups, cg, h = dims
    ho, nx, dyn, dxn, y0, _, dy0, sdy, sdx, rev = geo  # the row step is one
    g_bg, g_y, g_t, g_i = g_strides
    a_b, a_c, a_r = a_strides
    ctot = groups * cg
    hw = h * w
    d = abs(sdy)
    e = 1 if sdy > 0 else -1
    nsub = ((h + 2 * d - 1) // (2 * d)) * d
    gsk = -g_t - sdx if rev else g_t - sdx
    gt0 = (dxn - 1) * g_t if rev else 0
    lane_lo = max(0, -bx0)
    lane_hi = min(nz, w - bx0)
    pl = max(0, -axo)  # pixels whose f1 column lies in the map (and G's row)
    ph = min(nx, w - axo)
    for task in nb.prange(nbat * groups * nsub):
        bg = task // nsub
        rem = task % nsub
        yb0 = (rem // d) * 2 * d + rem % d
        if yb0 >= h:
            continue
        bi = bg // groups
        g = bg % groups
        # each row's displacement rows ty whose output row i = yb - y0 - dy0 - ty*sdy exists and
        # reads a row of f1 inside the map (a contiguous range)
        lo = np.full(2, dyn, np.int64)
        hi = np.full(2, -1, np.int64)
        for r in range(2):
            yb = yb0 + r * d
            if yb >= h:
                continue
            for ty in range(dyn):
                i = yb - y0 - dy0 - ty * sdy
                ya = y0 + i
                if 0 <= i < ho and 0 <= ya < h:
                    lo[r] = min(lo[r], ty)
                    hi[r] = max(hi[r], ty)
        # shared: row 0 at ty and row 1 at ty + e meet the same output row
        s_lo = max(lo[0], lo[1] - e)
        s_hi = min(hi[0], hi[1] - e)
        acc = _lined(2 * __K__ * LANES, GB)
        rb0 = (bi * ctot + g * cg) * hw + yb0 * w + bx0
        dd = d * w
        gd = e * g_y
        gsi = g_y - sdy * g_i  # next ty: the output row moves by -sdy
        asi = -sdy * a_r
        for c0 in range(c_lo, c_hi, __K__):
            for z in range(lane_lo, lane_hi, LANES):  # blocks from the first f2 column reached
                llo = max(lane_lo - z, 0)
                lhi = min(lane_hi - z, LANES)
                full = (llo == 0) & (lhi == LANES)
                o0 = rb0 + c0 * hw + z
                for part in range(5):
                    # part 0: the shared range (both rows); 1, 2: row 0 below / above it;
                    # 3, 4: row 1 below / above it (all of a row's range when nothing is shared)
                    r = 0 if part <= 2 else 1
                    if part == 0:
                        a, b = s_lo, s_hi
                    elif s_lo > s_hi:
                        if part == 2 or part == 4:
                            continue
                        a, b = lo[r], hi[r]
                    elif part == 1 or part == 3:
                        a, b = lo[r], min(hi[r], s_lo + r * e - 1)
                    else:
                        a, b = max(lo[r], s_hi + r * e + 1), hi[r]
                    if a > b or (part == 0 and (lo[0] > hi[0] or lo[1] > hi[1])):
                        continue
                    yb = yb0 + r * d
                    i = yb - y0 - dy0 - a * sdy
                    gg = bg * g_bg + a * g_y + i * g_i + gt0 + z
                    xx = bi * a_b + g * cg * a_c + (y0 + i) * a_r + axo + c0 * a_c + z
                    o = o0 + r * dd
                    if part == 0:
                        if full:
                            _gsum2_c__K__(G, gg, gd, gsi, gsk, b - a + 1, dxn, A, xx, a_c, asi, -sdx, GB, o, dd, hw, scale, 1, pl - z, ph - z, sdx, 0, LANES)
                        else:
                            _gsum2_c__K__(G, gg, gd, gsi, gsk, b - a + 1, dxn, A, xx, a_c, asi, -sdx, acc, 0, __K__ * LANES, LANES, scale, 0, pl - z, ph - z, sdx, llo, lhi)
                            _add_lanes(GB, o, hw, __K__, acc, 0, llo, lhi)
                            _add_lanes(GB, o + dd, hw, __K__, acc, __K__ * LANES, llo, lhi)
                    elif full:
                        _gsum_c__K__(G, gg, gsi, gsk, b - a + 1, dxn, A, xx, a_c, asi, -sdx, GB, o, hw, scale, 1, pl - z, ph - z, sdx, 0, LANES)
                    else:
                        _gsum_c__K__(G, gg, gsi, gsk, b - a + 1, dxn, A, xx, a_c, asi, -sdx, acc, 0, LANES, scale, 0, pl - z, ph - z, sdx, llo, lhi)
                        _add_lanes(GB, o, hw, __K__, acc, 0, llo, lhi)
    return GB'''


CG_HELPERS = """@nb.njit(**_JIT)
def _cg_rows(dyn, first, step, lo, hi):
    \"\"\"``(a, b)``: the displacement rows ``a <= ty < b`` for which ``lo <= first + ty*step < hi`` (a run).\"\"\"
    a = dyn
    b = 0
    for ty in range(dyn):
        v = first + ty * step
        if (v >= lo) & (v < hi):
            a = min(a, ty)
            b = max(b, ty + 1)
    return a, max(a, b)


@nb.njit(**_CALL)  # compiled once for every driver (each one compiles in seconds)
def _cg_out(D, base, hw, buf, cg, jlo, jhi, wlo, whi, stream):
    \"\"\"One row of every channel of a flat NCHW gradient from a task's channels-last row of sums.

    ``D[base + c*hw + j] = buf[j*cg + c]`` for ``c < cg`` and ``jlo <= j < jhi``, and zeros for the
    ``j`` of ``wlo .. whi`` outside that range (``wlo <= jlo``, ``jhi <= whi``; ``cg`` a multiple of
    ``LANES``): whole tiles of ``LANES`` pixels x ``LANES`` channels are transposed in registers.
    With ``stream`` (``D`` starts a line and ``hw`` is a multiple of ``LANES``), tiles whose rows
    start lines are written with streaming stores: each of their rows is a whole line that no
    other task writes.  The row starts at ``base + wlo``: every slice bound is at least that (a
    negative one would count from the end of ``D``).
    \"\"\"
    nt = stream and (base + jlo) % LANES == 0
    j = jlo
    while j + LANES <= jhi:
        for c in range(0, cg, LANES):
            if nt:
                xtile_nt(buf, j * cg + c, cg, D, base + c * hw + j, hw)
            else:
                xtile(buf, j * cg + c, cg, D, base + c * hw + j, hw)
        j += LANES
    for c in range(cg):
        o = base + c * hw
        D[o + wlo : o + max(jlo, wlo)] = 0
        for k in range(j, jhi):
            D[o + k] = buf[k * cg + c]
        D[o + max(jhi, wlo) : o + whi] = 0


@nb.njit(**_JIT)
def _cg_row(R, dst, F, src, hw, cg, first, count, w):
    \"\"\"One row of ``cg`` channels of a flat NCHW map, channels-last, into a gradient thread's ring.

    ``R[dst + k*cg + c] = F[src + c*hw + first + k]`` for ``k < count`` inside the row (``0 <= first
    + k < w``), zeros for the other ``k``; tiles of ``LANES`` columns x ``LANES`` channels are
    transposed in registers (``cg`` a multiple of ``LANES``).
    \"\"\"
    lo = min(max(0, -first), count)
    hi = max(lo, min(count, w - first))
    R[dst : dst + lo * cg] = 0
    R[dst + hi * cg : dst + count * cg] = 0
    k = lo
    while k + LANES <= hi:
        for c in range(0, cg, LANES):
            xtile(F, src + c * hw + first + k, hw, R, dst + k * cg + c, cg)
        k += LANES
    for kk in range(k, hi):
        for c in range(cg):
            R[dst + kk * cg + c] = F[src + c * hw + first + kk]


@nb.njit(**_CALL)  # compiled once for every driver (each one compiles in seconds)
def _cg_ring(R, tags, xr, F, base, hw, w, cg, first, count, row0, step, n, key):
    \"\"\"Rows ``row0 + i*step`` (``i < n``) of the map at ``F[base]`` in a thread's ring of channels-last rows.

    A row already in its slot (``row % len(tags)``, tagged ``key + row``) is not copied again: the
    next task of the thread reads mostly the same rows.  ``xr[i]``: where row ``i`` starts in ``R``.
    Returns where the row the next task adds starts in ``F`` (its column ``max(0, first)``; -1 past
    the map), for ``_cg_ahead``.
    \"\"\"
    size = count * cg
    for i in range(n):
        row = row0 + i * step
        slot = row % tags.shape[0]
        if tags[slot] != key + row:
            _cg_row(R, slot * size, F, base + row * w, hw, cg, first, count, w)
            tags[slot] = key + row
        xr[i] = slot * size
    row = max(row0, row0 + (n - 1) * step) + 1  # the rows move down by one
    return base + row * w + max(0, first) if row < hw // w else -1


@nb.njit(**_JIT)
def _cg_ahead(F, at, hw, cg, lo, hi):
    \"\"\"Hints for the lines of columns ``lo <= x < hi`` of every channel of the row at ``F[at]`` (none if -1).

    One hint per line (at the columns ``x`` that are multiples of 16 float32 from ``at``): the row the
    next task adds to the ring, one stream per channel a map apart, which the hardware prefetchers
    do not follow from one task to the next.  The tasks ask for it a block at a time: all of a row's
    hints at the task's start (528 on W2, likely more than the misses' buffers hold) gained 2-8%
    less (fifteenth session).
    \"\"\"
    if at >= 0:
        for x in range(lo + (-lo) % 16, hi, 16):
            for c in range(cg):
                xprefetch(F, at + c * hw + x)"""


CG1_DRIVER = """@nb.njit(**_PJIT)
def grad_f1_cv_t__T__(G, g_strides, F, GA, w, dims, geo, scale, stream, threads):
    \"\"\"The ``f1`` gradient by the channel-vectorised sums, ``__T__`` displacements a row (see ``cpu_xkernels``).

    ``F``: ``f2``, flat NCHW.  Each task (an output row) copies the rows of ``G`` it reads into a
    buffer (zeros past ``nx``), finds the rows of ``f2`` they meet in its thread's ring (copied in
    channels-last, columns from ``x0 + dx0`` on), runs the sums on blocks of pixels and writes its
    row of ``GA`` (flat NCHW) whole, zeros outside the grid; the rows no output row reads are the
    caller's.  ``geo = (ho, nx, dyn, dxn, x0, y0, sy, dx0, dy0, sdy, rev)``; ``stream``: whole
    lines of ``GA`` are written with streaming stores (see ``_cg_out``).
    \"\"\"
    nbat, groups, cg, h = dims
    ho, nx, dyn, dxn, x0, y0, sy, dx0, dy0, sdy, rev = geo
    g_bg, g_y, g_t, g_i = g_strides
    ctot = groups * cg
    hw = h * w
    nblk = -(-nx // (2 * CG_PIXELS)) * 2  # blocks of CG_PIXELS pixels: an even number, for the one-vector sums
    count = nblk * CG_PIXELS + __T__ - 1  # the columns of f2 the blocks read
    S = nblk * CG_PIXELS + LANES  # a packed row of G (a line longer than its pixels: rows start on different sets)
    gst = -S - 1 if rev else S - 1  # the next displacement, one pixel to the left
    gt0 = (dxn - 1) * S if rev else 0
    jlo = max(0, -x0)
    jhi = min(nx, w - x0)
    ntask = nbat * groups * ho
    nth = max(1, min(threads, ntask))
    per = (ntask + nth - 1) // nth
    nr = (dyn - 1) * abs(sdy) + 1  # rows of the ring: every row one task reads
    # each thread's buffers: one allocation per kind, a slice of it per thread
    nbuf = nblk * CG_PIXELS * cg
    ngp = dyn * dxn * S
    nring = nr * count * cg
    bufs = _lined(nth * nbuf, F)
    gps = _lined(nth * ngp, G)
    rings = _lined(nth * nring, F)
    tagss = np.full(nth * nr, -1, np.int64)
    xrs = np.empty(nth * dyn, np.int64)
    for th in nb.prange(nth):
        buf = bufs[th * nbuf : (th + 1) * nbuf]
        gp = gps[th * ngp : (th + 1) * ngp]
        R = rings[th * nring : (th + 1) * nring]
        tags = tagss[th * nr : (th + 1) * nr]
        xr = xrs[th * dyn : (th + 1) * dyn]
        for task in range(th * per, min(ntask, (th + 1) * per)):
            bg = task // ho
            i = task % ho
            bi = bg // groups
            g = bg % groups
            ya = y0 + i * sy
            if (ya < 0) | (ya >= h):
                continue
            tlo, thi = _cg_rows(dyn, ya + dy0, sdy, 0, h)
            n = thi - tlo
            cbase = (bi * ctot + g * cg) * hw
            obase = cbase + ya * w + x0
            if n == 0:
                _cg_out(GA, obase, hw, buf, cg, 0, 0, -x0, w - x0, 0)
                continue
            src = bg * g_bg + tlo * g_y + i * g_i
            nxt = src + g_i  # where the next output row's copy will read (a hint: never read past G here)
            for k in range(n * dxn):
                o = k * S
                at = src + (k // dxn) * g_y + (k % dxn) * g_t
                gp[o : o + nx] = G[at : at + nx]
                gp[o + nx : o + S] = 0
                for x in range(0, nx, LANES):
                    xprefetch(G, at - src + nxt + x)
            ahead = _cg_ring(R, tags, xr, F, cbase, hw, w, cg, x0 + dx0, count, ya + dy0 + tlo * sdy, sdy, n, bg * h)
            for cb in range(0, cg - 2 * LANES + 1, 2 * LANES):
                for jb in range(0, nblk * CG_PIXELS, CG_PIXELS):
                    xcg_v2t__T__(gp, gt0 + jb, dxn * S, gst, n, R, jb * cg + cb, xr, cg, buf, jb * cg + cb, cg, scale, 0, 0, 0)
                    if cb == 0:
                        _cg_ahead(F, ahead, hw, cg, jb, jb + CG_PIXELS)
            if cg % (2 * LANES):
                cb = cg - LANES
                for jb in range(0, nblk * CG_PIXELS, 2 * CG_PIXELS):
                    xcg_v1t__T__(gp, gt0 + jb, dxn * S, gst, n, R, jb * cg + cb, xr, cg, buf, jb * cg + cb, cg, scale, 0, 0, 0)
                    if cb == 0:
                        _cg_ahead(F, ahead, hw, cg, jb, jb + 2 * CG_PIXELS)
            _cg_ahead(F, ahead, hw, cg, nblk * CG_PIXELS, count)
            _cg_out(GA, obase, hw, buf, cg, jlo, jhi, -x0, w - x0, stream)
        if stream:
            xsfence()
    return GA"""

CG2_DRIVER = """@nb.njit(**_PJIT)
def grad_f2_cv_t__T__(G, g_strides, F, GB, w, dims, geo, scale, stream, threads):
    \"\"\"The ``f2`` gradient by the channel-vectorised sums, ``__T__`` displacements a row (see ``cpu_xkernels``).

    ``F``: ``f1``, flat NCHW, whose rows a task finds in its thread's ring as for
    ``grad_f1_cv_t__T__`` (columns from ``-dx0 - (__T__ - 1)`` on).  Each task (a row of ``f2``)
    reads ``G`` where it lies and writes its row of ``GB`` (flat NCHW) whole; blocks whose reads of
    ``G`` would leave its rows take the masked sums.  ``geo`` and ``stream`` as for ``grad_f1_cv_t__T__``;
    the row step is one.
    \"\"\"
    nbat, groups, cg, h = dims
    ho, nx, dyn, _, x0, y0, _, dx0, dy0, sdy, rev = geo  # dxn is __T__
    g_bg, g_y, g_t, g_i = g_strides
    ctot = groups * cg
    hw = h * w
    nblk = -(-w // (2 * CG_PIXELS)) * 2
    count = nblk * CG_PIXELS + __T__ - 1
    first = -dx0 - (__T__ - 1)  # the f1 column the first block reads first
    gst = g_t if rev else -g_t  # u = __T__ - 1 - t: the displacements right to left
    gt0 = 0 if rev else (__T__ - 1) * g_t
    gsi = g_y - sdy * g_i  # the next displacement row: the output row moves by -sdy
    ntask = nbat * groups * h
    nth = max(1, min(threads, ntask))
    per = (ntask + nth - 1) // nth
    nr = (dyn - 1) * abs(sdy) + 1
    nbuf = nblk * CG_PIXELS * cg  # each thread's buffers (see grad_f1_cv_t__T__)
    nring = nr * count * cg
    bufs = _lined(nth * nbuf, F)
    rings = _lined(nth * nring, F)
    tagss = np.full(nth * nr, -1, np.int64)
    xrs = np.empty(nth * dyn, np.int64)
    for th in nb.prange(nth):
        buf = bufs[th * nbuf : (th + 1) * nbuf]
        R = rings[th * nring : (th + 1) * nring]
        tags = tagss[th * nr : (th + 1) * nr]
        xr = xrs[th * dyn : (th + 1) * dyn]
        for task in range(th * per, min(ntask, (th + 1) * per)):
            bg = task // h
            r = task % h
            bi = bg // groups
            g = bg % groups
            # the displacement rows whose output row i = r - y0 - dy0 - ty*sdy exists and reads f1 inside the map
            a1, b1 = _cg_rows(dyn, r - y0 - dy0, -sdy, 0, ho)
            a2, b2 = _cg_rows(dyn, r - dy0, -sdy, 0, h)
            tlo = max(a1, a2)
            n = max(0, min(b1, b2) - tlo)
            cbase = (bi * ctot + g * cg) * hw
            obase = cbase + r * w
            if n == 0:
                _cg_out(GB, obase, hw, buf, cg, 0, 0, 0, w, 0)
                continue
            i0 = r - y0 - dy0 - tlo * sdy
            gb0 = bg * g_bg + tlo * g_y + i0 * g_i + gt0
            ahead = _cg_ring(R, tags, xr, F, cbase, hw, w, cg, first, count, y0 + i0, -sdy, n, bg * h)
            for cb in range(0, cg - 2 * LANES + 1, 2 * LANES):
                for qb in range(0, nblk * CG_PIXELS, CG_PIXELS):
                    jz = qb - x0 - dx0 - (__T__ - 1)  # G's pixel at the block's first column of f1
                    if (jz >= 0) & (jz + CG_PIXELS + __T__ - 2 < nx):
                        xcg_v2t__T__(G, gb0 + jz, gsi, gst, n, R, qb * cg + cb, xr, cg, buf, qb * cg + cb, cg, scale, 0, 0, 0)
                    else:
                        xcgm_v2t__T__(G, gb0 + jz, gsi, gst, n, R, qb * cg + cb, xr, cg, buf, qb * cg + cb, cg, scale, jz, 0, nx)
                    if cb == 0:
                        _cg_ahead(F, ahead, hw, cg, qb, qb + CG_PIXELS)
            if cg % (2 * LANES):
                cb = cg - LANES
                for qb in range(0, nblk * CG_PIXELS, 2 * CG_PIXELS):
                    jz = qb - x0 - dx0 - (__T__ - 1)
                    if (jz >= 0) & (jz + 2 * CG_PIXELS + __T__ - 2 < nx):
                        xcg_v1t__T__(G, gb0 + jz, gsi, gst, n, R, qb * cg + cb, xr, cg, buf, qb * cg + cb, cg, scale, 0, 0, 0)
                    else:
                        xcgm_v1t__T__(G, gb0 + jz, gsi, gst, n, R, qb * cg + cb, xr, cg, buf, qb * cg + cb, cg, scale, jz, 0, nx)
                    if cb == 0:
                        _cg_ahead(F, ahead, hw, cg, qb, qb + 2 * CG_PIXELS)
            _cg_ahead(F, ahead, hw, cg, nblk * CG_PIXELS, count)
            _cg_out(GB, obase, hw, buf, cg, 0, w, 0, w, stream)
        if stream:
            xsfence()
    return GB"""


def _sub(template: str, **values: int) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key}__", str(value))
    return template


def _per_row(template: str, rows: int) -> str:
    """Spells out a template's code for ``rows`` rows.

    ``$(expr$sep$)`` becomes ``expr`` for each row, joined by ``sep``; every other line holding
    ``_R_`` (with the block it opens, if it ends in a colon) is repeated once per row.  ``_R_``
    stands for the row's number.
    """

    def each(m: re.Match) -> str:
        return m.group(2).join(m.group(1).replace("_R_", str(r)) for r in range(rows))

    src = re.sub(r"\$\((.*?)\$(.*?)\$\)", each, template).split("\n")
    out, i = [], 0
    while i < len(src):
        j = i + 1
        if "_R_" in src[i] and src[i].endswith(":"):
            depth = len(src[i]) - len(src[i].lstrip())
            while j < len(src) and len(src[j]) - len(src[j].lstrip()) > depth:
                j += 1
        block = "\n".join(src[i:j])
        out += [block.replace("_R_", str(r)) for r in range(rows)] if "_R_" in src[i] else [block]
        i = j
    return "\n".join(out)


def _natural(name: str) -> list:
    """Sort key with numbers compared as numbers (the order ruff's import sorting keeps)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def xsource() -> str:
    """The full text of ``_cpu_xvec.py``."""
    kernels = [f"xfwd_r{r_}t{t_}" for r_ in XR_SIZES for t_ in range(1, XT_MAX + 1)]
    kernels += [name for name, *_ in sum_kernels()] + ["xpack", "xprefetch", "xsfence", "xtile", "xtile_nt"]
    kernels += [name for name, *_ in cg_kernels()]
    names = "".join(f"    {n},\n" for n in ["CG_PIXELS", "LANES", *sorted(kernels, key=_natural)])
    # numba's on-disk cache is keyed on this file alone: naming the kernels' source here makes a
    # change to them (inlined into every driver) a change to this file
    digest = hashlib.sha256(Path(__file__).with_name("_cpu_simd.py").read_bytes()).hexdigest()[:16]
    header = XHEADER.replace("__IMPORTS__", f"from ._cpu_simd import (\n{names})")
    parts = [header.replace("__SIMD_HASH__", f"_cpu_simd.py sha256 {digest}")]
    parts.append(XHELPERS)
    parts += [_forward_driver(r_, t_) for r_ in XR_SIZES for t_ in range(1, XT_MAX + 1)]
    parts.append(KRANGES)
    parts += [_sub(SUMS, K=k_) for k_ in XC_SIZES]
    parts += [_sub(G1_DRIVER, K=k_) for k_ in XC_SIZES]
    parts += [_sub(G1P_DRIVER, K=k_) for k_ in XC_SIZES]
    parts += [_sub(SUMS3, K=k_) for k_ in XC3_SIZES]
    parts += [_sub(G1T_DRIVER, K=k_) for k_ in XC3_SIZES]
    parts += [_sub(G2T_DRIVER, K=k_) for k_ in XC3_SIZES]
    parts += [_sub(G2_DRIVER, K=k_) for k_ in XC_SIZES]
    parts += [_sub(G2P_DRIVER, K=k_) for k_ in XC_SIZES]
    parts.append(CG_HELPERS)
    for t_ in range(1, XT_MAX + 1):
        for template in (CG1_DRIVER, CG2_DRIVER):
            parts.append(_sub(template, T=t_))
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    TARGET.write_text(source())
    XTARGET.write_text(xsource())
    sys.stdout.write(f"wrote {TARGET} and {XTARGET}\n")
