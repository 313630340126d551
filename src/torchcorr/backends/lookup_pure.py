"""Pure-PyTorch kernels of the RAFT window lookup (``torchcorr::corr_lookup``): any device, any dtype.

One call handles one pyramid level.  For every pixel ``p = (y, x)`` of ``f1`` and its target
``c = coords[:, :, y, x]`` (level pixel units, x first), the op returns::

    out[b, (a + r)*K + (d + r), y, x] = bilinear(S_p, c_x + a, c_y + d),   a, d in [-r, r], K = 2r + 1
    S_p[Y, X] = scale * <f1[b, :, y, x], f2[b, :, Y, X]>                  (zero outside f2)

with ``a`` the horizontal offset (RAFT's order: horizontal is the slow index).  Sampling at
``c + (a, d)`` for integer offsets reads the four neighbours ``floor(c) + (a, d) + {0, 1}^2``, so
all ``K*K`` samples of a pixel use the same two fractions ``(fx, fy)`` and the ``(K+1)^2`` integer
neighbours ``floor(c) + (u, v)``, ``u, v in [-r, r+1]``.  The kernels compute the integer-offset
correlations ``G[u, v]`` and combine them with the bilinear weights; the backward takes the adjoint
of that combination (``g[u, v]``) and, for ``coords``, the derivative of the weights times ``G``.

``f2`` is zero-padded by ``2r + 2`` on every side and read as channel-last rows, so every neighbour
is a valid row (no masks) and the pattern "pixel p reads rows ``base[p] + v*Wp + u``" is a sparse
matrix ``S`` of shape ``(B*H*W, B*Hp*Wp)`` with ``(K+1)^2`` sorted entries per row.  Two strategies:

* **sparse** (the CPU, :data:`SPARSE_DEVICES`): ``G = sampled_addmm(S, f1_rows, f2_rows^T)``
  (only the pattern's entries of ``f1 f2^T``), ``grad_f1 = S(g) @ f2_rows`` and
  ``grad_f2 = S(g)^T @ f1_rows`` (the transpose built by one stable sort of the column indices);
* **gather** (any other device): one ``index_select`` of ``f2`` rows per neighbour, a channel dot
  product, ``addcmul_`` / ``index_add_`` in the backward.

Working memory is ``O(B*H*W*(K+1)^2)`` (the pattern, ``G``) plus a few input-sized buffers (the
padded rows, the gradients); never ``(B, C, K*K, H, W)`` nor ``(H*W)^2``.  float16 and bfloat16
features accumulate in float32.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .pure import accumulation_dtype

NAME = "torch"

__all__ = ["NAME", "backward", "bilinear_taps", "can_run", "combine", "forward"]


def can_run(f1: Tensor, f2: Tensor, coords: Tensor, radius: int) -> str | None:
    """The pure lookup runs everything; ``None`` means "yes"."""
    return None


def coordinate_dtype(coords: Tensor) -> torch.dtype:
    """float64 coordinates stay float64; every other floating dtype is read as float32."""
    return torch.float64 if coords.dtype == torch.float64 else torch.float32


def bilinear_taps(coords: Tensor, radius: int, h: int, w: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour indices and bilinear fractions of a window lookup on an ``h x w`` map.

    Args:
        coords: ``Tensor[B, 2, H, W]``, (x, y) positions in the map's pixel units.
        radius: window radius ``r``.
        h: map height.
        w: map width.
        dtype: dtype of the returned fractions.

    Returns:
        ``index`` ``Tensor[K+1, K+1, B*H*W]`` (int64): ``Y*w + X`` of the neighbour
        ``floor(c) + (u, v)`` clamped into the map, ``u`` (horizontal) the first axis;
        ``valid`` of the same shape (in ``dtype``): 1 where that neighbour lies inside the map;
        ``fractions`` ``Tensor[2, B*H*W]``: ``c - floor(c)`` for x and y.  Pixels run in
        ``(b, y, x)`` order.  Fractions carry the autograd graph of ``coords``.
    """
    c = coords.to(coordinate_dtype(coords)).movedim(1, 0).reshape(2, -1)
    base = torch.floor(c)
    # positions that are not finite read zero: their fractions are set to 0 and their taps lie outside
    fractions = torch.nan_to_num(c - base, nan=0.0, posinf=0.0, neginf=0.0).to(dtype)
    # clamp before the integer conversion: far-away, infinite and NaN positions stay outside
    # (a constant bound beyond any map: a size-dependent float would specialise symbolic sizes in torch.compile)
    outside = float(2**30)
    base = torch.nan_to_num(base.detach(), nan=-outside).clamp(-outside, outside).long()
    offsets = torch.arange(-radius, radius + 2, device=coords.device)
    xs = base[0][None, :] + offsets[:, None]  # (K+1, N)
    ys = base[1][None, :] + offsets[:, None]
    valid_x = (xs >= 0) & (xs < w)
    valid_y = (ys >= 0) & (ys < h)
    index = ys.clamp(0, max(h - 1, 0))[None, :, :] * w + xs.clamp(0, max(w - 1, 0))[:, None, :]
    valid = (valid_x[:, None, :] & valid_y[None, :, :]).to(dtype)
    return index, valid, fractions


def combine(grid: Tensor, fractions: Tensor) -> Tensor:
    """Bilinear samples from the integer-offset values: ``Tensor[K+1, K+1, N] -> Tensor[K, K, N]``."""
    fx, fy = fractions[0], fractions[1]
    gx, gy = 1 - fx, 1 - fy
    return grid[:-1, :-1] * (gx * gy) + grid[1:, :-1] * (fx * gy) + grid[:-1, 1:] * (gx * fy) + grid[1:, 1:] * (fx * fy)


# --------------------------------------------------------------------------------------------
# the op's kernels
# --------------------------------------------------------------------------------------------

#: Devices whose sparse CSR kernels (``sampled_addmm``, CSR x dense) the sparse strategy uses.  CUDA
#: has them too but is left to the gather loop (and the Triton lookup) until it has been measured there.
SPARSE_DEVICES: tuple[str, ...] = ("cpu",)


class _Taps:
    """Where the ``(K+1)^2`` integer neighbours of every pixel sit in the zero-padded ``f2`` rows.

    ``f2`` is padded by ``2r + 2`` zeros on every side (so no neighbour ever needs a validity
    mask) and flattened to rows ``(b, Y, X)``; ``base[p]`` is the row of ``floor(c_p) + (-r, -r)``,
    and the neighbour ``(u, v)`` (counted from ``-r``) is row ``base[p] + v*Wp + u``.
    """

    def __init__(self, coords: Tensor, radius: int, h2: int, w2: int, dtype: torch.dtype) -> None:
        b, _, h, w = coords.shape
        self.n = 2 * radius + 2
        self.pad = 2 * radius + 2
        self.hp, self.wp = h2 + 2 * self.pad, w2 + 2 * self.pad
        c = coords.to(coordinate_dtype(coords)).movedim(1, 0).reshape(2, -1)
        floor = torch.floor(c)
        self.fractions = torch.nan_to_num(c - floor, nan=0.0, posinf=0.0, neginf=0.0).to(dtype)
        # a window whose floor lies beyond these bounds is entirely outside: clamping keeps it there
        floor = torch.nan_to_num(floor, nan=-(radius + 2.0))
        x0 = floor[0].clamp(-(radius + 2), w2 + radius).long()
        y0 = floor[1].clamp(-(radius + 2), h2 + radius).long()
        batch = torch.arange(b, device=coords.device).repeat_interleave(h * w)
        self.base = (batch * self.hp + y0 + self.pad - radius) * self.wp + (x0 + self.pad - radius)
        self.rows = b * self.hp * self.wp
        steps = torch.arange(self.n, device=coords.device)
        #: row offsets of the neighbours, (v, u) with u fast: ascending, so each CSR row is sorted
        self.offsets = (steps[:, None] * self.wp + steps[None, :]).reshape(-1)

    def pad_rows(self, f2: Tensor, dtype: torch.dtype) -> Tensor:
        """``Tensor[B, C, h, w] -> Tensor[B*Hp*Wp, C]``, zero border, channels last."""
        p = self.pad
        padded = torch.nn.functional.pad(f2.to(dtype), (p, p, p, p))
        return padded.permute(0, 2, 3, 1).reshape(self.rows, f2.shape[1]).contiguous()

    def unpad_rows(self, rows: Tensor, f2: Tensor) -> Tensor:
        """Adjoint of :meth:`pad_rows` (crop the border), back to ``f2``'s shape and dtype."""
        b, c, h2, w2 = f2.shape
        p = self.pad
        grid = rows.reshape(b, self.hp, self.wp, c)[:, p : p + h2, p : p + w2]
        return grid.permute(0, 3, 1, 2).to(f2.dtype).contiguous()

    def csr(self, values: Tensor) -> Tensor:
        """The ``(B*H*W, B*Hp*Wp)`` matrix with ``values[p, v, u]`` at (p, neighbour (u, v) of p)."""
        npix = self.base.shape[0]
        k2 = self.n * self.n
        crow = torch.arange(0, npix * k2 + 1, k2, device=values.device)
        col = (self.base[:, None] + self.offsets[None, :]).reshape(-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(
                crow, col, values.reshape(-1), size=(npix, self.rows), check_invariants=False
            )

    def csr_transposed(self, values: Tensor) -> Tensor:
        """The transpose of :meth:`csr` as a CSR matrix ``(B*Hp*Wp, B*H*W)``, rows sorted."""
        npix = self.base.shape[0]
        k2 = self.n * self.n
        col = (self.base[:, None] + self.offsets[None, :]).reshape(-1)
        key = col.to(torch.int32) if self.rows < 2**31 else col
        order = torch.argsort(key, stable=True)
        counts = torch.bincount(col, minlength=self.rows)
        crow = torch.zeros(self.rows + 1, dtype=torch.long, device=col.device)
        torch.cumsum(counts, 0, out=crow[1:])
        pixel = torch.div(order, k2, rounding_mode="floor")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow, pixel, values.reshape(-1)[order], size=(self.rows, npix), check_invariants=False
            )

    def neighbour_rows(self, u: int, v: int) -> Tensor:
        """Row of neighbour ``(u, v)`` for every pixel (the gather strategy)."""
        return self.base + (v * self.wp + u)


def _rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``Tensor[B, C, H, W] -> Tensor[B*H*W, C]`` (channels last, contiguous, in ``dtype``)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).to(dtype).contiguous()


def use_sparse(device: torch.device) -> bool:
    """Whether the sparse strategy runs on this device (else one gather per neighbour)."""
    return device.type in SPARSE_DEVICES


def _integer_grid(taps: _Taps, rows1: Tensor, rows2: Tensor, sparse: bool) -> Tensor:
    """``G[u, v, p] = <f1[p], f2[floor(c_p) + (u - r, v - r)]>``: ``Tensor[K+1, K+1, B*H*W]``."""
    n, npix = taps.n, rows1.shape[0]
    if sparse:
        pattern = taps.csr(rows1.new_zeros((npix, n * n)))
        values = torch.sparse.sampled_addmm(pattern, rows1, rows2.t(), beta=0.0).values()
        return values.reshape(npix, n, n).permute(2, 1, 0)  # (p, v, u) -> (u, v, p)
    grid = rows1.new_empty((n, n, npix))
    for u in range(n):
        for v in range(n):
            torch.linalg.vecdot(rows1, rows2.index_select(0, taps.neighbour_rows(u, v)), out=grid[u, v])
    return grid


def forward(f1: Tensor, f2: Tensor, coords: Tensor, radius: int, scale: float) -> Tensor:
    """One level of the window lookup: ``Tensor[B, (2r+1)^2, H, W]`` (see the module docstring)."""
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    if b * h * w == 0 or h2 * w2 == 0 or c == 0:
        return f1.new_zeros((b, k * k, h, w))
    acc = accumulation_dtype(f1.dtype)
    with torch.no_grad():
        taps = _Taps(coords, radius, h2, w2, acc)
        grid = _integer_grid(taps, _rows(f1, acc), taps.pad_rows(f2, acc), use_sparse(f1.device))
        out = combine(grid, taps.fractions).mul_(scale)  # (K, K, N)
    return out.reshape(k * k, b, h, w).transpose(0, 1).to(f1.dtype).contiguous()


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
    """Gradients of :func:`forward` with respect to ``f1``, ``f2`` and ``coords`` (``None`` if not asked)."""
    b, c, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    acc = accumulation_dtype(f1.dtype)
    npix = b * h * w
    if npix == 0 or h2 * w2 == 0 or c == 0:
        return (
            torch.zeros_like(f1, memory_format=torch.contiguous_format) if need_f1 else None,
            torch.zeros_like(f2, memory_format=torch.contiguous_format) if need_f2 else None,
            torch.zeros_like(coords, memory_format=torch.contiguous_format) if need_coords else None,
        )
    g1 = g2 = gc = None
    sparse = use_sparse(f1.device)
    with torch.no_grad():
        taps = _Taps(coords, radius, h2, w2, acc)
        fx, fy = taps.fractions[0], taps.fractions[1]
        gx, gy = 1 - fx, 1 - fy
        go = grad.to(acc).transpose(0, 1).reshape(k, k, npix) * scale
        rows1 = _rows(f1, acc)
        rows2 = taps.pad_rows(f2, acc)
        if need_f1 or need_f2:
            # gradient of each integer-offset correlation G[u, v] (the adjoint of combine)
            ggrid = torch.zeros((k + 1, k + 1, npix), dtype=acc, device=f1.device)
            ggrid[:-1, :-1] += go * (gx * gy)
            ggrid[1:, :-1] += go * (fx * gy)
            ggrid[:-1, 1:] += go * (gx * fy)
            ggrid[1:, 1:] += go * (fx * fy)
            if sparse:
                values = ggrid.permute(2, 1, 0)  # (p, v, u), the CSR order
                if need_f1:
                    g1 = taps.csr(values.contiguous()) @ rows2
                if need_f2:
                    g2 = taps.csr_transposed(values.contiguous()) @ rows1
            else:
                g1 = torch.zeros_like(rows1) if need_f1 else None
                g2 = torch.zeros_like(rows2) if need_f2 else None
                for u in range(k + 1):
                    for v in range(k + 1):
                        idx = taps.neighbour_rows(u, v)
                        weight = ggrid[u, v].unsqueeze(1)
                        if g1 is not None:
                            g1.addcmul_(rows2.index_select(0, idx), weight)
                        if g2 is not None:
                            g2.index_add_(0, idx, rows1 * weight)
            if g1 is not None:
                g1 = g1.reshape(b, h, w, c).permute(0, 3, 1, 2).to(f1.dtype).contiguous()
            if g2 is not None:
                g2 = taps.unpad_rows(g2, f2)
        if need_coords:
            grid = _integer_grid(taps, rows1, rows2, sparse)
            # derivative of the bilinear weights with respect to the fractions
            dx = (grid[1:, :-1] - grid[:-1, :-1]) * gy + (grid[1:, 1:] - grid[:-1, 1:]) * fy
            dy = (grid[:-1, 1:] - grid[:-1, :-1]) * gx + (grid[1:, 1:] - grid[1:, :-1]) * fx
            gxy = torch.stack(((go * dx).sum((0, 1)), (go * dy).sum((0, 1))))  # (2, N)
            gc = gxy.reshape(2, b, h, w).transpose(0, 1).to(coords.dtype).contiguous()
    return g1, g2, gc
