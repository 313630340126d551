"""Full 2-D cross-correlation with MATLAB ``xcorr2`` / ``scipy.signal.correlate2d`` semantics.

For ``a`` of ``(Ha, Wa)`` and ``b`` of ``(Hb, Wb)`` (semantics.md section 6)::

    full[i, j] = sum_{u, v} a[u, v] * conj(b[u - i + Hb - 1, v - j + Wb - 1])

Two exact methods, both composites of standard differentiable aten ops (so autograd, double
backward, ``torch.compile`` and export need no registration):

* ``"direct"``: ``torch.nn.functional.conv2d`` (already a cross-correlation), batched over the
  leading dimensions as a batch, as output channels, or as groups.
* ``"fft"``: the linear convolution of ``a`` with ``conj(flip(b))`` through real (or complex) FFTs
  of a 5-smooth size just large enough that the circular wrap-around misses the requested crop.

``method="auto"`` compares the multiply-adds of the direct sum with a measured multiple of the FFT's
``n log2 n`` (see :data:`FFT_COST_FACTOR`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _composite

__all__ = ["FFT_COST_FACTOR", "xcorr2"]

XcorrMode = Literal["full", "same", "valid"]
XcorrMethod = Literal["auto", "direct", "fft"]

_MODES = ("full", "same", "valid")
_METHODS = ("auto", "direct", "fft")

#: ``method="auto"`` takes the FFT when ``direct multiply-adds > FFT_COST_FACTOR * sum over the
#: transforms of n*log2(n)`` (``n`` the padded transform area).  Measured on a 2-core x86 CPU with
#: torch 2.13 (``python benchmarks/volumes.py --crossover`` prints the timings): the two methods
#: break even between 0.5 and 2 (images 32 to 512 pixels, templates 4 to 23), and the direct path
#: falls off a cliff for templates of 32 or more (``conv2d`` leaves its fast kernels).  The
#: optimum is flat, so a factor within 2x of it costs little.
FFT_COST_FACTOR = 1.0

#: Templates with fewer taps than this (8 x 8) always take the direct path.
_MIN_FFT_TAPS = 64


def _next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (sizes pocketFFT and cuFFT transform fastest).

    >>> [_next_fast_len(n) for n in (1, 7, 11, 575, 1025)]
    [1, 8, 12, 576, 1080]
    """
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _crop(mode: str, na: int, nb: int) -> tuple[int, int]:
    """First index into the full correlation and output length, along one axis."""
    if mode == "full":
        return 0, na + nb - 1
    if mode == "same":
        return nb // 2, na
    return nb - 1, na - nb + 1


def _check(a: object, b: object, mode: object, method: object) -> torch.dtype:
    for t, name in ((a, "a"), (b, "b")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not (t.is_floating_point() or t.is_complex()):
            raise TypeError(f"{name} must have a floating or complex dtype, got {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got shape {tuple(t.shape)}")
        if t.shape[-1] == 0 or t.shape[-2] == 0:
            raise ValueError(f"{name} must be at least 1 x 1 in its last two dimensions, got shape {tuple(t.shape)}")
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    if mode == "valid" and (b.shape[-2] > a.shape[-2] or b.shape[-1] > a.shape[-1]):
        raise ValueError(
            f"mode='valid' needs the template b to fit inside a in both of the last two dimensions, got a "
            f"{tuple(a.shape[-2:])} and b {tuple(b.shape[-2:])}; use mode='full' or 'same'"
        )
    return torch.promote_types(a.dtype, b.dtype)


def _direct(a: Tensor, b: Tensor, lead: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int]) -> Tensor:
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    (i0, ni), (j0, nj) = rows, cols
    # rows/columns of zeros before and after a so that conv2d's output is exactly the crop
    pads = (wb - 1 - j0, j0 + nj - wa, hb - 1 - i0, i0 + ni - ha)
    weight = b.conj().resolve_conj() if b.is_complex() else b
    n = math.prod(lead)
    a_lead, b_lead = math.prod(a.shape[:-2]), math.prod(b.shape[:-2])
    if b_lead == 1:  # one template: the leading dimensions are the batch
        x, w, groups = a.expand(*lead, ha, wa).reshape(n, 1, ha, wa), weight.reshape(1, 1, hb, wb), 1
    elif a_lead == 1:  # one image: the templates are output channels
        x, w, groups = a.reshape(1, 1, ha, wa), weight.reshape(b_lead, 1, hb, wb), 1
    else:  # one template per image: a grouped convolution
        x = a.expand(*lead, ha, wa).reshape(1, n, ha, wa)
        w = weight.expand(*lead, hb, wb).reshape(n, 1, hb, wb)
        groups = n
    if pads[0] == pads[1] and pads[2] == pads[3] and min(pads) >= 0:
        out = F.conv2d(x, w, padding=(pads[2], pads[0]), groups=groups)
    else:
        out = F.conv2d(F.pad(x, pads), w, groups=groups)
    return out.reshape(*lead, ni, nj)


def _fft(a: Tensor, b: Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> Tensor:
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    (i0, ni), (j0, nj) = rows, cols
    # the wrap-around of a circular convolution of size n lands below index ha + hb - 1 - n
    size = (
        _next_fast_len(max(ha + hb - 1 - i0, i0 + ni)),
        _next_fast_len(max(wa + wb - 1 - j0, j0 + nj)),
    )
    g = b.flip(-2, -1)
    if a.is_complex():
        spec = torch.fft.fft2(a, s=size) * torch.fft.fft2(g.conj(), s=size)
        full = torch.fft.ifft2(spec, s=size)
    else:
        spec = torch.fft.rfft2(a, s=size) * torch.fft.rfft2(g, s=size)
        full = torch.fft.irfft2(spec, s=size)
    return full[..., i0 : i0 + ni, j0 : j0 + nj]


def _fft_is_cheaper(a: Tensor, b: Tensor, lead: tuple[int, ...], rows: tuple[int, int], cols: tuple[int, int]) -> bool:
    """Cost model of ``method="auto"`` (see :data:`FFT_COST_FACTOR`)."""
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    if hb * wb < _MIN_FFT_TAPS:
        return False
    n_out = math.prod(lead)
    direct = n_out * rows[1] * cols[1] * hb * wb
    area = _next_fast_len(ha + hb - 1) * _next_fast_len(wa + wb - 1)
    transforms = math.prod(a.shape[:-2]) + math.prod(b.shape[:-2]) + n_out
    fft = transforms * area * math.log2(max(area, 2))
    return direct > FFT_COST_FACTOR * fft


def xcorr2(a: Tensor, b: Tensor, mode: XcorrMode = "full", *, method: XcorrMethod = "auto") -> Tensor:
    """Two-dimensional cross-correlation of ``a`` with the template ``b`` (MATLAB ``xcorr2``).

    On the last two dimensions, broadcasting over the leading ones::

        full[..., i, j] = sum_{u, v} a[..., u, v] * conj(b[..., u - i + Hb - 1, v - j + Wb - 1])

    ``i = Hb - 1, j = Wb - 1`` is the zero shift.  Output sizes per axis (rows shown):

    * ``"full"``: ``Ha + Hb - 1`` (MATLAB ``xcorr2``);
    * ``"same"``: ``Ha``, rows ``Hb//2 .. Hb//2 + Ha - 1`` of the full result (``scipy.signal.correlate2d``'s
      crop, which for even templates differs from ``convolve2d``'s);
    * ``"valid"``: ``Ha - Hb + 1``, only where the template fits inside ``a`` (else a ValueError).

    Summing the result over a channel dimension gives ``F.conv2d(a, b, padding=(Hb-1, Wb-1))``.

    Args:
        a: image, ``Tensor[..., Ha, Wa]``, real floating or complex.
        b: template, ``Tensor[..., Hb, Wb]``, its leading dimensions broadcast against ``a``'s; its
            complex conjugate is used.  Mixed dtypes are promoted (``torch.promote_types``).
        mode: ``"full"``, ``"same"`` or ``"valid"``.
        method: ``"direct"`` (``conv2d``), ``"fft"``, or ``"auto"``: the FFT when the template is
            large enough for it to be faster on a CPU (64 x 64 over 512 x 512 is, 3 x 3 is not).
            Both are exact up to floating-point round-off (the FFT's error scales with the largest
            entries, the direct sum's with each entry's own terms).

    Returns:
        ``Tensor[*broadcast(a[..., :-2], b[..., :-2]), Ho, Wo]`` of the promoted dtype.

    Example:
        >>> import torch, torchcorr
        >>> image, template = torch.randn(512, 512), torch.randn(64, 64)
        >>> torchcorr.xcorr2(image, template).shape
        torch.Size([575, 575])
        >>> torchcorr.xcorr2(torch.randn(3, 10, 12), torch.randn(3, 4, 4), "valid").shape
        torch.Size([3, 7, 9])
    """
    dtype = _check(a, b, mode, method)
    try:
        lead = tuple(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except RuntimeError as exc:
        raise ValueError(
            f"the leading dimensions of a {tuple(a.shape[:-2])} and b {tuple(b.shape[:-2])} do not broadcast"
        ) from exc
    rows = _crop(mode, a.shape[-2], b.shape[-2])
    cols = _crop(mode, a.shape[-1], b.shape[-1])
    a, b = a.to(dtype), b.to(dtype)
    if math.prod(lead) == 0:  # nothing to compute; keep the result attached to the graph
        return (a[..., :1, :1] * b[..., :1, :1]).expand(*lead, rows[1], cols[1])
    # under torch.export / ONNX export "auto" takes conv2d: no size-dependent choice, standard operators
    use_fft = method == "fft" or (
        method == "auto" and not _composite.active() and _fft_is_cheaper(a, b, lead, rows, cols)
    )
    if not use_fft:
        return _direct(a, b, lead, rows, cols)
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    out = _fft(a.to(work), b.to(work), rows, cols)
    return out.expand(*lead, rows[1], cols[1]).to(dtype)
