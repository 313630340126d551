"""The CPU backend's fast path: the product mode on a unit pixel step.

Imported only when numba imports.  :mod:`torchcorr.backends.cpu` prepares the arrays; this module
picks the block shapes and calls the generated numba drivers of :mod:`._cpu_xvec`.

The problem.  Output pixel ``(i, j)`` reads ``f1`` at row ``y0 + i*sy`` and column ``x0 + j`` (the
pixel step is one: the output grid of a one-tap window with ``stride1 == 1``, or the window-position
grid of a larger window), and ``f2`` at that position shifted by ``(dy0 + ty*sdy, dxmin + t*sdx)``
with ``sdx >= 1``; ``t`` counts horizontal displacements in increasing order and is written to
output index ``dxn - 1 - t`` when the caller's step was negative (``rev``).  Reads outside the maps
are zero.

Arrays.  ``A`` holds ``f1`` with strides ``(a_b, a_c, a_r)`` for batch, channel and row and pixel
``j`` of a row at column ``axo + j``; ``B`` holds ``f2`` the same way with ``z = j + t*sdx`` at
column ``bxo + z``.  For the forward, whose loop runs over channels, ``f2``'s rows are laid out
with their channels together and their columns padded with zeros so that every block of ``LANES``
pixels (the last one included) and every block of displacements (the last one rounded up) can be
read: the forward never tests a column.  Each thread copies the rows it reads into such a ring of
rows, which stays in its L2 from one task to the next (``RING_BYTES``); where the ring would be too
large the caller copies all of ``f2`` that way first.  ``f1`` is read in NCHW where every block of
pixels lies inside its rows (each load of it serves every displacement of a block, so its long
channel step costs little), else from a copy laid out like ``f2``'s.  The gradients loop over displacements and read
the inputs as they are (NCHW): a block's reads are masked to the columns inside the map at every
displacement where a row ends inside the block (``_kranges``), and plain elsewhere.  Rows outside the maps are skipped
(their products are zero).  The incoming gradient ``G`` (on the one-tap grid) is read where it
lies too: strides ``(batch-group, displacement row, displacement, output row)``, rows of ``nx``
pixels with nothing around them, masked the same way.

How the work is split.  Pixels go in blocks of ``LANES`` along a row (one vector register; the
kernels of ``_cpu_simd``, called by the drivers of ``_cpu_xvec``), the reduction runs over channels
(forward), displacements (``f1`` gradient) or output rows and displacements (``f2`` gradient) with
the block's sums in registers.  Output rows that read the same ``f2`` row (rows ``i``, ``i + p``
and ``i + 2p`` at vertical displacements ``ty``, ``ty + qq`` and ``ty + 2qq``) share each load of
it.  The forward takes three such rows at a time (``FORWARD_ROWS``; three rows x 9 displacements
of sums in registers), the gradients three on blocks of 8 channels (for the ``f2`` gradient three
``f2`` rows that meet the same output row; three rows x 8 channels of sums): each shifted load of
the other input then feeds three FMAs instead of two.  Those loads mostly straddle two cache lines
(a shift of one pixel), which costs a load port more than an aligned load: with two rows the
forward's kernel ran 74-127 GFLOP/s on one core from L1 (against 155 with aligned shifts, the
spread following the host's busy and quiet minutes), with three 134-154.  Alternating in one
process against two rows: the forward on W2 -19 to -25%, W3 -13%, W1 -10 to +2%; the ``f1`` /
``f2`` gradients 13-14% / 11% faster on W2 and 13% / 18% on W1 (W3 -6% / even).  The displacement
rows that only some of the rows reach run as blocks of fewer rows (as two- or one-row sums in the
gradients).

Packed incoming gradient.  Where a group has at least ``PACK_CHANNELS`` channels, a three-row
gradient task first copies, for each block of pixels (``PACK_BLOCKS`` neighbouring blocks at a
time), the incoming gradient its three rows read into a small buffer in the order the sums read it
(``3 x rows of u x dxn`` vectors per block, zeros where a row does not read a displacement row),
then runs one three-row sum over every displacement row on each block of channels.  Read where it
lies, each vector of the incoming gradient sits on its own page, a whole map away from the next
(the displacement planes), and the planes fall on a few L1 sets: a block re-read them for every
block of channels.  The copy is read once per block and then streams from L1; the three-row sum
over every ``u`` also replaces up to five short calls (and their read-modify-write epilogues) per
block.  Measured alternating in one process against the unpacked drivers (f1 / f2 gradient, three
or four runs each): W2 -1 to -11% / -10 to -14%, W3 -11 to -14% / -25 to -28%, W1 -15% / -17 to
-24%; at 16 channels the copy no longer pays for the ``f1`` gradient (+9%), hence the
threshold.

Channel-vectorised gradients.  With 16 or 32 channels per group (float32, a one-tap grid with unit
steps, horizontal displacement step one, at most ``XT_MAX`` horizontal displacements) both
gradients instead hold their sums per pixel and vector of channels (``_cpu_codegen.CG_PIXELS`` x
two vectors, the kernels ``xcg*`` of ``_cpu_simd``): a gradient element is a sum over
displacements, not over channels, so its channels fill the vectors with nothing left to
reduce.  Each term of the incoming gradient is one scalar broadcast to a vector, and each
channels-last column of the other input, loaded once, feeds every pixel of the block that meets it
(up to nine FMAs per load, none on zeros).  A task is one row of the gradient; it finds the rows of
the other input it reads in its thread's ring of channels-last rows (each row transposed once per
thread, in ``LANES x LANES`` tiles in registers, and the next task's new row prefetched a block of
sums at a time), and writes its row through the same tile transposes, with streaming stores where
the gradient's rows start lines (from ``GRAD_STREAM_BYTES``; alternating in one process, W2's
backward -18%).  The ``f1`` gradient copies the rows of the incoming gradient its output row reads
into a packed buffer first (their 81 planes otherwise fall on one L1 set, a map apart).  Alternating
in one process against the pixel-vectorised gradients, both gradients of W2 (32 channels) ran 9-24%
faster (six runs) and of 16 channels 38%; with 64 channels 28% slower and with 128 (W3) 16%, where
the three rows of the pixel-vectorised sums sharing each load of the other input pay more than the
broadcasts: hence ``CV_CHANNELS``.

Threads.  The forward and the ``f1`` gradient run one output row (or a group of rows) per task, the
``f2`` gradient one ``f2`` row (or group) per task (the forward's tasks in one contiguous run per
thread, for its ring); every output or gradient element has one writer and a fixed order of
summation, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numba
import torch

from . import _cpu_xvec as xv
from ._cpu_simd import LANES, XC3_SIZES, XC_SIZES, XT_MAX

#: Run the gradients three rows at a time (else two) where rows share loads of the other input.
#: With AVX2 code (16 vector registers, where the sums spill either way; measured on this machine
#: with AVX-512 masked off through NUMBA_CPU_FEATURES) about even: W2 -11% / -4%, W1 +5% / -7%,
#: W3 +3% / +7% for the f1 / f2 gradient; with AVX-512 a clear gain (see the module docstring).
TRIPLE = True

#: Channels per group from which the three-row gradients read the incoming gradient from a packed
#: copy (see the module docstring); below it, where it lies.
PACK_CHANNELS = 32
#: Blocks of pixels a task packs at a time: their vectors of one displacement lie side by side in
#: the incoming gradient, one page visit for both (alternating in one process against one block:
#: W2 -8% / -8%, W1 -11% / -12%, W3 -2 to -6% / -4 to -7%; four blocks overflow L1 on W3, +6%).
PACK_BLOCKS = 2
#: Channels per group up to which a task, while packing, asks for what its next copy will read.
#: The copies read one or two lines from each of ``3 x rows of u x dxn`` planes of the incoming
#: gradient, each a whole map away from the next: far more streams than the hardware prefetchers
#: follow, so without the hint every line is a miss the task waits for.  With few channels the sums
#: between two copies are short and cannot hide those misses.  Alternating in one process, with
#: the hint against without: W2 (32 channels) forward + backward -7 to -11%, its ``f2`` gradient
#: alone -25 to -30% (once the hint covered the third line a shifted span touches), W4 (64) -2 to
#: -4%; W3 (128) and W1 (256) even, and W1's ``f1`` gradient +10% with the first, two-line hint (its
#: copies are 185 KB: prefetching the next one pushes the other input out of L2).
PREFETCH_CHANNELS = 64
#: Output rows per forward block where rows share ``f2`` rows (2 or 3; see the module docstring).
FORWARD_ROWS = 3

#: Channels per group up to which float32 gradients on a one-tap grid with unit steps run on the
#: channel-vectorised sums (see the module docstring) instead of the pixel-vectorised ones.  Both
#: gradients alternating in one process, channel- against pixel-vectorised: 16 channels -38%, 32
#: (W2) -9 to -24%, 64 +28%, 128 (W3) +16%.
CV_CHANNELS = 32

#: Output size (bytes) from which the forward writes its result with streaming stores, which send
#: each line to memory without reading it first (a plain store reads the line for ownership, then
#: writes it back) or keeping it in the caches.  Alternating in one process against plain stores:
#: W2 (18.6 MB) forward -4 to -25% in the host's slow minutes and even (+-3%) in quiet ones, W3
#: (2.3 MB) -12 to -20%, W1 -5 to -7%.  Not for an output read again at once (W4's one-tap volume,
#: which the box filter reads next: +13%), nor a small one.
STREAM_BYTES = 1 << 20

#: Gradient size (bytes) from which whole blocks of pixels write their sums with streaming stores
#: instead of adding them to rows zeroed first (when the gradient is the caller's result in one
#: pass and its blocks tile its rows), and the channel-vectorised gradients write whole lines
#: with them (alternating in one process against plain stores: W2's f1 / f2 gradients -14% / -22%).
GRAD_STREAM_BYTES = 1 << 20

#: The most bytes of ``f2`` rows a forward thread keeps in its ring (see ``forward_r*``): where the
#: rows a task reads, and the next task's, fit, each thread copies the rows it reads into a ring
#: that stays in its L2 instead of the caller copying all of ``f2`` to memory first, which the
#: kernels then read back.  Alternating in one process against the caller's copy: W2's forward
#: -12 to -21%, W3's -12 to -20%.  Above it (W1: 21 displacement rows of 256 channels) the
#: caller's copy is read.
RING_BYTES = 1 << 20


def displacement_block(dxn: int) -> int:
    """Displacements per forward block.

    The size up to ``XT_MAX`` that wastes least when ``dxn`` is rounded up to whole blocks (the
    larger one on a tie).
    """
    if dxn <= XT_MAX:
        return dxn
    return min(range(XT_MAX, 4, -1), key=lambda t: -(-dxn // t) * t)


def channel_blocks(cg: int) -> list[tuple[int, int, int]]:
    """``(K, c_lo, c_hi)`` runs covering ``cg`` channels with the gradient kernels' block sizes."""
    runs, c = [], 0
    for k in XC_SIZES:
        n = (cg - c) // k * k
        if n:
            runs.append((k, c, c + n))
            c += n
    return runs


def gradient_runs(cg: int, shared: bool) -> tuple[int, list[tuple[int, int, int]]]:
    """How a gradient covers ``cg`` channels: ``(n3, runs)``.

    Channels ``0 .. n3`` go to the three-row drivers, the rest in ``runs`` as for
    :func:`channel_blocks` (all of them where rows share no loads or ``TRIPLE`` is off).
    """
    k3 = XC3_SIZES[0]
    n3 = cg // k3 * k3 if TRIPLE and shared else 0
    return n3, [(k, lo + n3, hi + n3) for k, lo, hi in channel_blocks(cg - n3)]


def ring_rows(cg: int, count: int, itemsize: int, geo: tuple, pair: tuple[int, int]) -> int:
    """Rows of ``f2`` in each forward thread's ring (0: none; the caller copies ``f2`` first).

    Enough rows for every row one task reads (``dyn`` displacement rows, ``|qq|`` more for each of
    its output rows after the first) and the rows the next task moves on, where they fit in
    ``RING_BYTES``.
    """
    dyn, sy, sdy = geo[2], geo[5], geo[7]
    p, qq = pair
    r = forward_rows(pair)
    rows = (dyn - 1 + (r - 1) * abs(qq)) * abs(sdy) + 1 + r * max(p, 1) * sy
    return rows if rows * cg * count * itemsize <= RING_BYTES else 0


def forward_rows(pair: tuple[int, int]) -> int:
    """Output rows per forward block: ``FORWARD_ROWS`` where rows share ``f2`` rows, else one."""
    return FORWARD_ROWS if pair[0] > 0 else 1


def forward(a, a_strides, axo, b, b_strides, bxo, out, dims, geo, pair, t_block, scale, ring, final) -> None:
    """Every element of ``out`` (flat ``(nbat, groups, dyn, dxn, ho, wo)``); ``ring`` as for the drivers.

    ``final``: nothing reads ``out`` next (it is the caller's result): from ``STREAM_BYTES`` on,
    where its rows start lines, it is written with streaming stores.
    """
    driver = getattr(xv, f"forward_r{forward_rows(pair)}t{t_block}")
    wo = geo[1]
    aligned = wo % LANES == 0 and out.ctypes.data % 64 == 0  # every block starts a line
    stream = int(final and aligned and out.nbytes >= STREAM_BYTES)
    driver(a, a_strides, axo, b, b_strides, bxo, out, dims, geo, pair, scale, ring, stream, numba.get_num_threads())


def _packing(cg: int) -> tuple[int, int]:
    """The three-row gradients' ``(packed, ahead)`` for ``cg`` channels per group.

    ``packed``: blocks of pixels they pack at a time (0: they read ``G`` where it lies); ``ahead``:
    whether they prefetch what their next copy reads.
    """
    return (PACK_BLOCKS if cg >= PACK_CHANNELS else 0), int(cg <= PREFETCH_CHANNELS)


def _zero_rest(arr, dims, w, n3: int, rows: list[int]) -> None:
    """Zeroes what the three-row drivers' tasks do not zero themselves in a flat NCHW gradient.

    They zero their own rows of channels ``0 .. n3`` of each group; ``rows``: the rows no task owns.
    """
    nbat, groups, cg, h = dims
    v = torch.from_numpy(arr).view(nbat, groups, cg, h, w)
    if n3 == 0:
        v.zero_()
        return
    v[:, :, n3:].zero_()
    if rows:
        v[:, :, :n3, rows] = 0


def _streamable(grad, w: int) -> bool:
    """Whether a gradient may take streaming stores: large enough, and its rows start lines."""
    return grad.nbytes >= GRAD_STREAM_BYTES and grad.ctypes.data % 64 == 0 and w % LANES == 0


def grad_f1(g, g_strides, b, b_strides, bxo, ga, w, ax0, dims, geo, pair, scale, zero, final=False) -> None:
    """Adds the gradient with respect to ``f1`` to ``ga`` (flat NCHW), or with ``zero`` writes it.

    Three (else two) output rows at a time where they share ``f2`` rows (``pair`` as for
    :func:`forward`), in blocks of ``XC3_SIZES[0]`` channels; the channels left over in pairs.
    With ``zero``, ``ga`` is uninitialised: each three-row task zeroes its rows before it adds to
    them (while they are in its cache, where a zero-filled buffer is written to memory and read
    back), and what no task owns is zeroed here first.  ``final`` (with ``zero``): nothing else
    adds to ``ga`` after this call, so from ``GRAD_STREAM_BYTES`` on, where the blocks of pixels
    start lines, whole blocks are written with streaming stores.
    """
    n3, runs = gradient_runs(dims[2], pair[0] > 0)
    if zero and final and _streamable(ga, w):
        zero = 2  # the driver checks the rest (blocks that tile the rows)
    if zero:
        ho, y0, sy, h = geo[0], geo[4], geo[5], dims[3]
        owned = {y0 + i * sy for i in range(ho)}
        _zero_rest(ga, dims, w, n3, [r for r in range(h) if r not in owned])
    if n3:
        getattr(xv, f"grad_f1_triple_c{XC3_SIZES[0]}")(
            g, g_strides, b, b_strides, bxo, ga, w, ax0, 0, n3, dims, geo, pair, scale, *_packing(dims[2]), zero
        )
    for k, lo, hi in runs:
        if pair[0] > 0:
            getattr(xv, f"grad_f1_pair_c{k}")(
                g, g_strides, b, b_strides, bxo, ga, w, ax0, lo, hi, dims, geo, pair, scale
            )
        else:
            getattr(xv, f"grad_f1_c{k}")(g, g_strides, b, b_strides, bxo, ga, w, ax0, lo, hi, dims, geo, scale)


def grad_f2(g, g_strides, a, a_strides, axo, gb, w, bx0, nz, dims, geo, scale, zero, final=False) -> None:
    """Adds the gradient with respect to ``f2`` to ``gb`` (flat NCHW), or with ``zero`` writes it.

    ``a``: ``f1`` as it is (NCHW, pixel 0 at column ``axo``), read only inside its rows; ``zero`` and
    ``final`` as for :func:`grad_f1` (the tasks own every row of ``f2``).
    """
    paired = geo[5] == 1 and geo[2] > 1 and geo[7] != 0  # unit row step, several displacement rows
    n3, runs = gradient_runs(dims[2], paired)
    if zero and final and _streamable(gb, w):
        zero = 2
    if zero:
        _zero_rest(gb, dims, w, n3, [])
    if n3:
        getattr(xv, f"grad_f2_triple_c{XC3_SIZES[0]}")(
            g, g_strides, a, a_strides, axo, gb, w, bx0, nz, 0, n3, dims, geo, scale, *_packing(dims[2]), zero
        )
    for k, lo, hi in runs:
        name = f"grad_f2_pair_c{k}" if paired else f"grad_f2_c{k}"
        getattr(xv, name)(g, g_strides, a, a_strides, axo, gb, w, bx0, nz, lo, hi, dims, geo, scale)


def channel_vectorised(cg: int, dxn: int, sy: int, sdx: int, itemsize: int) -> bool:
    """Whether the gradients of a one-tap grid run on the channel-vectorised sums.

    float32, ``cg`` channels per group a multiple of ``LANES`` up to ``CV_CHANNELS``, unit row and
    horizontal displacement steps, and at most ``XT_MAX`` displacements a row (one block).
    """
    return itemsize == 4 and cg % LANES == 0 and 0 < cg <= CV_CHANNELS and sy == 1 and sdx == 1 and 0 < dxn <= XT_MAX


def grad_f1_cv(g, g_strides, f2, ga, w, dims, geo, scale) -> None:
    """Writes the ``f1`` gradient into ``ga`` (flat NCHW) but the rows no output row reads.

    ``f2``: flat NCHW; ``geo = (ho, nx, dyn, dxn, x0, y0, sy, dx0, dy0, sdy, rev)``.  From
    ``GRAD_STREAM_BYTES`` on, where its rows start lines, ``ga`` is written with streaming stores.
    """
    driver = getattr(xv, f"grad_f1_cv_t{geo[3]}")
    driver(g, g_strides, f2, ga, w, dims, geo, scale, int(_streamable(ga, w)), numba.get_num_threads())


def grad_f2_cv(g, g_strides, f1, gb, w, dims, geo, scale) -> None:
    """Writes the ``f2`` gradient into ``gb`` (flat NCHW), every row; arguments as for :func:`grad_f1_cv`."""
    driver = getattr(xv, f"grad_f2_cv_t{geo[3]}")
    driver(g, g_strides, f1, gb, w, dims, geo, scale, int(_streamable(gb, w)), numba.get_num_threads())
