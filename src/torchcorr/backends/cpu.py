"""The fast CPU backend: numba kernels, register-blocked over pixels and displacements.

Chosen automatically for CPU tensors when numba imports (``pip install torchcorr[cpu]``);
otherwise :func:`available` says why and the dispatcher falls back to the pure backend.

Two families of kernels:

* The product on a unit pixel step (``stride1 == 1``, and every window larger than one tap) runs on
  the pixel-vectorised path (:mod:`torchcorr.backends.cpu_xkernels`): vectors of ``LANES``
  consecutive output pixels (one vector register of float32: 16 with AVX-512, else 8), explicit
  SIMD written as LLVM IR (:mod:`._cpu_simd`), sums held in registers while the loop runs over
  channels (forward) or displacements (gradients), and three output rows sharing each load where
  they read the same rows of the other map.  The forward reads ``f2``'s
  rows laid out row-major and zero-padded (``(C, W')`` per row), so its channel loop walks memory
  with a short stride: each thread copies the rows it reads into a ring that stays in its cache
  (or, where the ring would be too large, ``f2`` is copied once into a ``(B, H, C, W')`` array
  first); it reads ``f1`` in place where every block of pixels lies inside its rows (else it copies
  it the same way), and writes a large result with streaming stores.  The gradients read the
  inputs and the incoming gradient as they are, with masked loads where a row ends inside a
  block, and start from uninitialised buffers whose rows each task zeroes before adding to them.
  With 16 or 32 channels per group (float32, a one-tap window, unit steps, at most nine
  horizontal displacements: PWC-Net's fine levels) the gradients vectorise over channels instead
  (see ``cpu_xkernels``), reading the other input from each thread's ring of channels-last rows.
  This is the path of FlowNetC, PWC-Net and the other workloads of the benchmarks.
* Everything else (the absolute difference, ``stride1 > 1``) runs on the channel-vectorised path
  (:mod:`torchcorr.backends.cpu_kernels`): per output row and vertical displacement, channels-last
  row buffers and blocks of pixels x displacements per pass over the channels.

A window larger than one tap is a box filter over one-tap products on both paths: the one-tap
correlation on every window position (a few displacement rows at a time, so the intermediate stays
about the size of the output), then a strided, dilated box sum (and, backward, its adjoint).

Every gradient element has one writer and a fixed order of summation: results do not depend on
the number of threads.

Memory beyond the output: the forward's padded copies (the threads' rings of ``f2`` rows, at most
1 MiB each, or a copy of ``f2``; a copy of ``f1`` where it cannot be read in place); the
channel-vectorised gradients' rings (``dyn`` rows of the other input per thread) and row
buffers; in the
backward of a window larger than one tap, the incoming gradient spread onto
the one-tap grid a chunk at a time (at most half the output's size; the pixel-vectorised gradients
read a one-tap gradient where it lies).

float32 and float64 run natively; float16 and bfloat16 are computed in float32 and cast back.
The first call of a process compiles the kernels it needs (numba; a few seconds per block shape,
then cached on disk in numba's cache directory); :func:`warmup` does it ahead of time.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._geometry import Geometry
from ._alloc import empty as _empty
from ._cpu_codegen import LANES as _LANES

NAME = "cpu"
_CPU = torch.device("cpu")

try:  # optional accelerator: never break import
    import numba as _numba  # noqa: F401

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in tests
    _IMPORT_ERROR = f"numba is not installed ({exc}); install torchcorr[cpu] for the fast CPU backend"

_kernels = None
_xkernels = None


def available() -> str | None:
    """``None`` when numba imports and the kernels load, else the reason."""
    global _kernels, _xkernels
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    if _kernels is None:
        try:
            from . import cpu_kernels, cpu_xkernels
        except Exception as exc:  # numba present but unusable (e.g. incompatible numpy)
            return f"the numba kernels do not load: {type(exc).__name__}: {exc}"
        _kernels = cpu_kernels
        _xkernels = cpu_xkernels
    return None


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def can_run(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str) -> str | None:
    """CPU tensors of a floating dtype, both modes, every geometry."""
    if f1.device.type != "cpu" or f2.device.type != "cpu":
        return f"tensors are on {f1.device.type}, the cpu backend runs on the CPU only"
    if f1.dtype not in _DTYPES:
        return f"dtype {f1.dtype} is not supported (float16, bfloat16, float32, float64)"
    if mode not in ("product", "absdiff"):
        return f"mode {mode!r} is not supported"
    return None


# --------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _flat(x: Tensor, acc: torch.dtype, hot: bool):
    """(flat numpy array, is_nhwc) without a copy where the memory already allows one.

    ``hot``: the array is read once per displacement row, so NCHW data is copied to NHWC.
    """
    x = x.detach()
    if x.dtype != acc:
        x = x.to(acc, memory_format=torch.channels_last if hot else torch.contiguous_format)
    nhwc = x.permute(0, 2, 3, 1)
    if nhwc.is_contiguous():
        return nhwc.numpy().reshape(-1), True
    if not hot and x.is_contiguous():
        return x.numpy().reshape(-1), False
    if hot:
        return nhwc.contiguous().numpy().reshape(-1), True
    return x.contiguous().numpy().reshape(-1), False


class _Grid:
    """The one-tap grid the kernels run on (output grid, or every window position for k > 1)."""

    def __init__(self, geometry: Geometry, h: int, w: int) -> None:
        gy, gx = geometry.y, geometry.x
        self.ho, self.wo = geometry.out_hw(h, w)
        self.unit = gy.kernel_size == 1 and gx.kernel_size == 1
        if self.unit:
            self.ny, self.sy, self.nx, self.sx = self.ho, gy.stride, self.wo, gx.stride
        else:
            self.ny = (self.ho - 1) * gy.stride + gy.span
            self.nx = (self.wo - 1) * gx.stride + gx.span
            self.sy = self.sx = 1
        self.y0, self.x0 = -gy.pad_before, -gx.pad_before
        self.dyn, self.dy0, self.sdy = gy.disp_count, gy.disp_start, gy.disp_step
        self.dxn = gx.disp_count
        self.rev = gx.disp_step < 0
        self.sdx = abs(gx.disp_step)
        self.dx0 = gx.disp_start + (gx.disp_count - 1) * gx.disp_step if self.rev else gx.disp_start
        # block shape: 4 pixels x 3 displacements sharing loads when a pixel step meets a
        # displacement step, else 1 pixel x 8 displacements
        if self.sdx % self.sx == 0:
            self.shape, self.m = 1, self.sdx // self.sx
        else:
            self.shape, self.m = 0, 1

    def params(self, ty0: int, count: int) -> tuple[int, ...]:
        """Grid tuple for displacement rows ``ty0 .. ty0 + count``."""
        return (
            self.ny,
            self.y0,
            self.sy,
            count,
            self.dy0 + ty0 * self.sdy,
            self.sdy,
            self.nx,
            self.x0,
            self.sx,
            self.dxn,
            self.dx0,
            self.sdx,
            self.rev,
        )

    def chunks(self, cap: float) -> list[tuple[int, int]]:
        """Displacement-row chunks for a window larger than one tap.

        The one-tap intermediate of a chunk stays within ``cap`` times the output's size; a
        one-tap window needs none and runs all rows at once.
        """
        if self.unit:
            return [(0, self.dyn)]
        per_row = max(self.ny * self.nx, 1)
        rows = max(1, int(cap * self.dyn * self.ho * self.wo) // per_row)
        return [(t, min(rows, self.dyn - t)) for t in range(0, self.dyn, rows)]


def _threads() -> None:
    """Runs numba's parallel loops on as many threads as torch uses (at most numba's pool).

    Starting numba's OpenMP pool sets OpenMP's thread count for the calling thread to the pool's
    size, and torch reads its own count from the same OpenMP runtime: without the restore below, a
    process that asked torch for fewer threads (``torch.set_num_threads``, ``OMP_NUM_THREADS``)
    would find that count raised to every core after its first call here (and torch.compile would
    recompile on the changed global state).
    """
    import numba

    torch_threads = torch.get_num_threads()
    n = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def _zero(acc: torch.dtype):
    import numpy as np

    return np.float64(0) if acc == torch.float64 else np.float32(0)


# --------------------------------------------------------------------------------------------
# the fast path: product mode on a unit pixel step (pixel-vectorised kernels, cpu_xkernels)
# --------------------------------------------------------------------------------------------


def _fast(grid: _Grid, mode: str) -> bool:
    """Whether the pixel-vectorised kernels take this problem.

    They cover the product on a unit pixel step (every one-tap grid of a window larger than one
    tap, and ``stride1 == 1``); the rest runs on the channel-vectorised kernels.
    """
    return mode == "product" and grid.sx == 1


def _rows(x: Tensor, acc: torch.dtype, first: int, count: int, width: int | None = None):
    """Columns ``first .. first + count`` of ``x`` as a contiguous ``(B, H, C, width)`` array.

    Column ``first`` lands at column 0; everything else (the map's outside included) is zero.

    Row-major with the channels of a row together: the forward's channel loop then walks memory
    with a short constant stride, where NCHW would jump a whole map per channel (a new page each
    time, which the hardware prefetchers do not follow).  Returns the tensor and its
    ``(batch, channel, row)`` strides.
    """
    b, c, h, w = x.shape
    width = count if width is None else width
    lo, hi = max(0, -first), min(count, w - first)
    rows = x.detach().permute(0, 2, 1, 3)
    if lo == 0 and hi == count and width == count:
        out = rows[..., first : first + count].to(acc).contiguous()
    else:  # zeros only where no column lands (one pass over the rest, not two)
        out = _empty((b, h, c, width), acc, _CPU)
        if hi > lo:
            out[..., :lo] = 0
            out[..., hi:] = 0
            out[..., lo:hi] = rows[..., first + lo : first + hi]
        else:
            out.zero_()
    return out, (h * c * width, width, c * width)


class _XProblem:
    """Arrays and integers of the pixel-vectorised kernels (see ``cpu_xkernels``) for one call.

    The forward reads ``f2``'s rows laid out by row and padded with zeros (from its threads' rings,
    or from a copy of all of ``f2``), and ``f1`` where it lies when its pixels allow (else a copy
    like ``f2``'s); the gradients read the inputs as they are (NCHW), masking what lies outside a
    row.
    """

    def __init__(self, f1: Tensor, f2: Tensor, grid: _Grid, groups: int, acc: torch.dtype) -> None:
        k = _xkernels
        b, c, h, w = f1.shape
        lanes = _LANES
        self.f1, self.f2, self.grid, self.acc = f1, f2, grid, acc
        self.gw = -(-grid.nx // lanes) * lanes  # pixels rounded up to whole blocks
        self.t_block = k.displacement_block(grid.dxn)
        self.dxn_pad = -(-grid.dxn // self.t_block) * self.t_block
        self.span = (grid.dxn - 1) * grid.sdx
        self.nz = grid.nx + self.span  # f2 columns a row of pixels reaches
        self.bw = self.gw + (self.dxn_pad - 1) * grid.sdx  # columns of an f2 row as the forward reads it
        self.w = w
        self.dims = (b, groups, c // groups, h)
        self.x0, self.bx0 = grid.x0, grid.x0 + grid.dx0
        self._a = self._b = None

    # the forward's arrays, made on first use
    def a(self):
        """``f1`` as the forward reads it: ``(array, strides, column of pixel 0)``.

        In place (NCHW) where every block of pixels lies inside the rows: the forward loads ``f1``
        once per block and channel and reuses it across displacements, so its channel steps cost
        little, and the copy is saved.  Otherwise a row-major copy padded to whole blocks.
        """
        if self._a is None:
            if self.x0 >= 0 and self.x0 + self.gw <= self.w:
                self._a = (*self.nchw(self.f1), self.x0)
            else:
                self._a = (*_rows(self.f1, self.acc, self.x0, self.grid.nx, width=self.gw), 0)
        return self._a

    def b(self):
        """``f2`` as the forward reads it: its reachable columns, row-major, zeros elsewhere."""
        if self._b is None:
            self._b = _rows(self.f2, self.acc, self.bx0, self.bw)
        return self._b

    def nchw(self, x: Tensor):
        """An input as the gradients read it: contiguous NCHW in the accumulation dtype."""
        x = x.detach().to(self.acc).contiguous()
        _, c, h, w = x.shape
        return x, (c * h * w, h * w, w)

    def geo(self, ty0: int, cnt: int) -> tuple:
        g = self.grid
        return (g.ny, g.nx, cnt, g.dxn, g.y0, g.sy, g.dy0 + ty0 * g.sdy, g.sdy, g.sdx, g.rev)

    def pair(self, cnt: int) -> tuple[int, int]:
        """Rows that share ``f2`` rows: ``(p, qq)``, or ``(0, 0)`` when no two rows do.

        Output rows ``i`` and ``i + p`` read the same ``f2`` row at vertical displacements ``ty``
        and ``ty + qq``.
        """
        g = self.grid
        if cnt > 1 and g.sdy != 0:
            p = abs(g.sdy) // math.gcd(g.sy, abs(g.sdy))
            if p < g.ny:
                return p, -(p * g.sy) // g.sdy
        return 0, 0

    @staticmethod
    def _arr(x: Tensor):
        return x.view(-1).numpy()

    def forward(self, out: Tensor, scale: float, ty0: int, cnt: int, final: bool = False) -> None:
        """Fills ``out`` (displacement rows ``ty0 .. ty0 + cnt``).

        ``final``: the caller returns ``out`` as it is (nothing reads it here), so a large one may
        be written with streaming stores.
        """
        a, a_strides, axo = self.a()
        geo, pair = self.geo(ty0, cnt), self.pair(cnt)
        rows = _xkernels.ring_rows(self.dims[2], self.bw, torch.finfo(self.acc).bits // 8, geo, pair)
        # each thread copies the rows of f2 it reads (ring), else the copy of all of f2
        b, b_strides = self.nchw(self.f2) if rows else self.b()
        _xkernels.forward(
            self._arr(a), a_strides, axo, self._arr(b), b_strides, 0, self._arr(out), self.dims,
            geo, pair, self.t_block, float(scale), (rows, self.bx0, self.bw, self.w), final,
        )  # fmt: skip

    def grad_f1(self, g: Tensor, g1: Tensor, scale: float, ty0: int, zero: int, final: bool = False) -> None:
        """``g``: a chunk ``(B, G, cnt, Dx, ny, nx)`` (contiguous) of the incoming gradient.

        ``zero``: ``g1`` is uninitialised; zero it (where the kernels' tasks do not, before they add).
        ``final``: no later chunk adds to ``g1``.
        """
        b, b_strides = self.nchw(self.f2)
        _xkernels.grad_f1(
            self._arr(g), self._strides(g), self._arr(b), b_strides, self.bx0, self._arr(g1), self.w,
            self.x0, self.dims, self.geo(ty0, g.shape[2]), self.pair(g.shape[2]), float(scale), zero, final,
        )  # fmt: skip

    def grad_f2(self, g: Tensor, g2: Tensor, scale: float, ty0: int, zero: int, final: bool = False) -> None:
        """``g``, ``zero`` and ``final`` as for :meth:`grad_f1`."""
        a, a_strides = self.nchw(self.f1)
        _xkernels.grad_f2(
            self._arr(g), self._strides(g), self._arr(a), a_strides, self.x0, self._arr(g2), self.w,
            self.bx0, self.nz, self.dims, self.geo(ty0, g.shape[2]), float(scale), zero, final,
        )  # fmt: skip

    def channel_vectorised(self) -> bool:
        """Whether the gradients run on the channel-vectorised sums (``cpu_xkernels.channel_vectorised``)."""
        g = self.grid
        itemsize = torch.finfo(self.acc).bits // 8
        return g.unit and _xkernels.channel_vectorised(self.dims[2], g.dxn, g.sy, g.sdx, itemsize)

    def _cv_geo(self) -> tuple:
        g = self.grid
        return (g.ny, g.nx, g.dyn, g.dxn, g.x0, g.y0, g.sy, g.dx0, g.dy0, g.sdy, g.rev)

    def grad_f1_cv(self, g: Tensor, g1: Tensor, scale: float) -> None:
        """The ``f1`` gradient on the channel-vectorised sums into uninitialised ``g1`` (every row)."""
        f2, _ = self.nchw(self.f2)
        args = (self._arr(g), self._strides(g), self._arr(f2), self._arr(g1), self.w, self.dims, self._cv_geo())
        _xkernels.grad_f1_cv(*args, float(scale))
        gr = self.grid
        owned = range(gr.y0, gr.y0 + gr.ny)  # the row step is one
        rows = [r for r in range(g1.shape[2]) if r not in owned]
        if rows:
            g1[:, :, rows] = 0

    def grad_f2_cv(self, g: Tensor, g2: Tensor, scale: float) -> None:
        """The ``f2`` gradient on the channel-vectorised sums into uninitialised ``g2``."""
        f1, _ = self.nchw(self.f1)
        args = (self._arr(g), self._strides(g), self._arr(f1), self._arr(g2), self.w, self.dims, self._cv_geo())
        _xkernels.grad_f2_cv(*args, float(scale))

    @staticmethod
    def _strides(g: Tensor) -> tuple[int, int, int, int]:
        """``(batch-group, displacement row, displacement, output row)`` strides of a chunk."""
        return (g.stride(1), g.stride(2), g.stride(3), g.stride(4))


def _grad_chunks(grid: _Grid) -> list[tuple[int, int]]:
    """Displacement-row chunks of the incoming gradient spread onto the one-tap grid.

    A chunk stays within half the output's size; chunks of equal size (the kernels sum over a
    chunk's rows: a short last one runs slowly).
    """
    per_row = max(grid.dxn * grid.ny * grid.nx, 1)
    rows = max(1, (grid.dyn * grid.dxn * grid.ho * grid.wo) // (2 * per_row))
    return _even(grid.dyn, rows)


def _even(n: int, most: int) -> list[tuple[int, int]]:
    """``n`` split into as few ``(start, count)`` pieces of at most ``most`` as possible, even sizes."""
    k = -(-n // most)
    edges = [n * j // k for j in range(k + 1)]
    return [(a, b - a) for a, b in itertools.pairwise(edges) if b > a]


def _box(u: Tensor, geometry: Geometry, ho: int, wo: int) -> Tensor:
    """Window sums over a one-tap volume ``(..., ny, nx)`` -> ``(..., ho, wo)`` (strided, dilated)."""
    gy, gx = geometry.y, geometry.x
    v = None
    for j in range(gx.kernel_size):
        s = u[..., j * gx.kernel_dilation :: gx.stride][..., :wo]
        v = s.clone() if v is None else v.add_(s)
    out = None
    for i in range(gy.kernel_size):
        s = v[..., i * gy.kernel_dilation :: gy.stride, :][..., :ho, :]
        out = s.clone() if out is None else out.add_(s)
    return out


def _box_adjoint(g: Tensor, geometry: Geometry, ny: int, nx: int) -> Tensor:
    """The adjoint of :func:`_box`: spreads ``(..., ho, wo)`` back onto the one-tap grid."""
    gy, gx = geometry.y, geometry.x
    ho, wo = g.shape[-2:]
    v = g.new_zeros((*g.shape[:-2], ny, wo))
    for i in range(gy.kernel_size):
        v[..., i * gy.kernel_dilation :: gy.stride, :][..., :ho, :] += g
    u = g.new_zeros((*g.shape[:-2], ny, nx))
    for j in range(gx.kernel_size):
        u[..., j * gx.kernel_dilation :: gx.stride][..., :wo] += v
    return u


def _xforward(f1: Tensor, f2: Tensor, geometry: Geometry, grid: _Grid, groups: int, scale: float, acc) -> Tensor:
    b = f1.shape[0]
    out = _empty((b, groups, grid.dyn, grid.dxn, grid.ho, grid.wo), acc, _CPU)
    prob = _XProblem(f1, f2, grid, groups, acc)
    if grid.unit:  # the output as it is, unless it must be converted to f1's dtype
        prob.forward(out, scale, 0, grid.dyn, final=acc == f1.dtype)
        return out
    for ty0, cnt in grid.chunks(1.25):  # all rows at once when that is about the output's size
        part = _empty((b, groups, cnt, grid.dxn, grid.ny, grid.nx), acc, _CPU)
        prob.forward(part, scale, ty0, cnt)
        out[:, :, ty0 : ty0 + cnt] = _box(part, geometry, grid.ho, grid.wo)
        del part
    return out


def _xbackward(gout, f1, f2, geometry, grid, groups, scale, acc, g1, g2) -> None:
    """Both gradients of the pixel-vectorised path, into uninitialised ``g1`` / ``g2``.

    They read the incoming gradient where it lies (the kernels mask what a block would read
    outside a row); a larger window first spreads it onto the one-tap grid, a chunk of
    displacement rows at a time.  With few channels per group, the channel-vectorised gradients
    instead (:meth:`_XProblem.channel_vectorised`).
    """
    prob = _XProblem(f1, f2, grid, groups, acc)
    if prob.channel_vectorised():
        g = gout.contiguous()
        if g1 is not None:
            prob.grad_f1_cv(g, g1, scale)
        if g2 is not None:
            prob.grad_f2_cv(g, g2, scale)
        return
    if grid.unit:
        chunks = iter([(0, gout.contiguous())])
    else:  # made one at a time, as the loop asks for them
        chunks = (
            (ty0, _box_adjoint(gout[:, :, ty0 : ty0 + cnt], geometry, grid.ny, grid.nx))
            for ty0, cnt in _grad_chunks(grid)
        )
    zero = 1  # the first chunk's kernels zero the (uninitialised) gradients
    for ty0, g in chunks:
        if g1 is not None:
            prob.grad_f1(g, g1, scale, ty0, zero, final=grid.unit)
        if g2 is not None:
            prob.grad_f2(g, g2, scale, ty0, zero, final=grid.unit)
        zero = 0
        del g  # before the next chunk is made


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


def forward(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str, scale: float) -> Tensor:
    """Correlation (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo)."""
    assert available() is None
    k = _kernels
    b, c, h, w = f1.shape
    acc = _acc(f1.dtype)
    grid = _Grid(geometry, h, w)
    gy, gx = geometry.y, geometry.x
    shape = (b, groups, gy.disp_count, gx.disp_count, grid.ho, grid.wo)
    if math.prod(shape) == 0:
        return f1.new_empty(shape)
    if c == 0:
        return f1.new_zeros(shape)
    _threads()
    if _fast(grid, mode):
        out = _xforward(f1, f2, geometry, grid, groups, scale, acc)
        return out if out.dtype == f1.dtype else out.to(f1.dtype)
    a, a_nhwc = _flat(f1, acc, hot=False)
    bb, b_nhwc = _flat(f2, acc, hot=True)
    dims = (b, c, h, w, groups)
    absdiff = mode == "absdiff"
    out = _empty(shape, acc, _CPU)
    if grid.unit:
        k.forward(
            a,
            a_nhwc,
            bb,
            b_nhwc,
            out.view(-1).numpy(),
            dims,
            grid.params(0, gy.disp_count),
            grid.shape,
            grid.m,
            absdiff,
            float(scale),
            _zero(acc),
        )
    else:
        weight = torch.ones((1, 1, gy.kernel_size, gx.kernel_size), dtype=acc)
        for ty0, cnt in grid.chunks(0.5):
            part = _empty((b, groups, cnt, gx.disp_count, grid.ny, grid.nx), acc, _CPU)
            k.forward(
                a,
                a_nhwc,
                bb,
                b_nhwc,
                part.view(-1).numpy(),
                dims,
                grid.params(ty0, cnt),
                grid.shape,
                grid.m,
                absdiff,
                float(scale),
                _zero(acc),
            )
            boxed = F.conv2d(
                part.view(-1, 1, grid.ny, grid.nx),
                weight,
                stride=(gy.stride, gx.stride),
                dilation=(gy.kernel_dilation, gx.kernel_dilation),
            )
            out[:, :, ty0 : ty0 + cnt] = boxed.view(b, groups, cnt, gx.disp_count, grid.ho, grid.wo)
    return out if out.dtype == f1.dtype else out.to(f1.dtype)


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------


def _uninitialised(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A gradient buffer whose kernels zero it themselves (the tests fill it with NaN instead)."""
    return torch.empty(shape, dtype=dtype)


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
    """Gradients of :func:`forward` with respect to ``f1`` and ``f2``.

    Absolute difference uses sign(f1 - f2) with sign(0) = +1 for ``f1`` and -1 for ``f2``.
    """
    assert available() is None
    k = _kernels
    b, c, h, w = f1.shape
    acc = _acc(f1.dtype)
    grid = _Grid(geometry, h, w)
    gy, gx = geometry.y, geometry.x
    fast = grad.numel() > 0 and c > 0 and (need_f1 or need_f2) and _fast(grid, mode)
    new = _uninitialised if fast else torch.zeros  # the fast path zeroes its gradients itself
    g1 = new((b, c, h, w), dtype=acc) if need_f1 else None
    g2 = new((b, c, h, w), dtype=acc) if need_f2 else None
    if fast:
        _threads()
        _xbackward(grad.detach().to(acc), f1, f2, geometry, grid, groups, scale, acc, g1, g2)
    elif grad.numel() > 0 and c > 0 and (need_f1 or need_f2):
        _threads()
        absdiff = mode == "absdiff"
        dims = (b, c, h, w, groups)
        gout = grad.detach().to(acc).contiguous()
        weight = torch.ones((1, 1, gy.kernel_size, gx.kernel_size), dtype=acc)
        z = _zero(acc)

        def one_tap(gchunk: Tensor, ty0: int, cnt: int) -> None:
            gflat = gchunk.reshape(-1).numpy()
            params = grid.params(ty0, cnt)
            if g1 is not None:
                a, a_nhwc = _flat(f1, acc, hot=False)
                bb, b_nhwc = _flat(f2, acc, hot=True)
                k.grad_f1(
                    gflat,
                    a,
                    a_nhwc,
                    bb,
                    b_nhwc,
                    g1.view(-1).numpy(),
                    dims,
                    params,
                    grid.shape,
                    grid.m,
                    absdiff,
                    float(scale),
                    z,
                )
                del a, bb
            if g2 is not None:
                a, a_nhwc = _flat(f1, acc, hot=True)
                bb, b_nhwc = _flat(f2, acc, hot=False)
                k.grad_f2(
                    gflat,
                    a,
                    a_nhwc,
                    bb,
                    b_nhwc,
                    g2.view(-1).numpy(),
                    dims,
                    params,
                    grid.shape,
                    grid.m,
                    absdiff,
                    float(scale),
                    z,
                )

        if grid.unit:
            one_tap(gout, 0, gy.disp_count)
        else:
            for ty0, cnt in grid.chunks(0.5):
                part = gout[:, :, ty0 : ty0 + cnt].reshape(-1, 1, grid.ho, grid.wo)
                spread = F.conv_transpose2d(
                    part, weight, stride=(gy.stride, gx.stride), dilation=(gy.kernel_dilation, gx.kernel_dilation)
                )
                # conv_transpose2d gives (Ho-1)*s + span = the window-position grid exactly
                one_tap(spread.contiguous(), ty0, cnt)
    grad_f1 = g1.to(f1.dtype) if g1 is not None else None
    grad_f2 = g2.to(f2.dtype) if g2 is not None else None
    return grad_f1, grad_f2


def warmup() -> float:
    """Compile (or load from numba's disk cache) the kernels of a small problem; returns the seconds.

    Block shapes a problem needs beyond those compile on its first call (a few seconds each).
    """
    import time

    if available() is not None:
        return 0.0
    t0 = time.perf_counter()
    x = torch.randn(1, 4, 6, 7)
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype).requires_grad_()
        for mode in ("product", "absdiff"):
            from .._geometry import AxisGeometry

            ax = AxisGeometry(1, 1, 1, 1, 1, -1, 3, 1)
            geo = Geometry(ax, ax)
            out = forward(xd, xd, geo, 1, mode, 1.0)
            backward(torch.ones_like(out), xd, xd, geo, 1, mode, 1.0)
    return time.perf_counter() - t0
