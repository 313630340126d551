"""Float64 loop reference for the full 2-D cross-correlation (semantics.md section 6)."""

from __future__ import annotations

import torch
from torch import Tensor


def xcorr2_full(a: Tensor, b: Tensor) -> Tensor:
    """full[i, j] = sum_{u,v} a[u, v] * conj(b[u - i + Hb - 1, v - j + Wb - 1]) for 2-D a, b.

    Output (Ha + Hb - 1, Wa + Wb - 1), complex128 if either input is complex, else float64.
    """
    cplx = a.is_complex() or b.is_complex()
    dt = torch.complex128 if cplx else torch.float64
    ha, wa = a.shape
    hb, wb = b.shape
    a, b = a.to(dt).tolist(), b.to(dt).tolist()
    out = torch.zeros(ha + hb - 1, wa + wb - 1, dtype=dt)
    for i in range(ha + hb - 1):
        for j in range(wa + wb - 1):
            s = 0j if cplx else 0.0
            for u in range(ha):
                for v in range(wa):
                    p, q = u - i + hb - 1, v - j + wb - 1
                    if 0 <= p < hb and 0 <= q < wb:
                        bv = b[p][q]
                        s += a[u][v] * (bv.conjugate() if cplx else bv)
            out[i, j] = s
    return out


def xcorr2(a: Tensor, b: Tensor, mode: str) -> Tensor:
    """The section 6 crops of :func:`xcorr2_full`: full, same (scipy's crop) or valid."""
    full = xcorr2_full(a, b)
    ha, wa = a.shape
    hb, wb = b.shape
    if mode == "full":
        return full
    if mode == "same":
        return full[hb // 2 : hb // 2 + ha, wb // 2 : wb // 2 + wa]
    if mode == "valid":
        return full[hb - 1 : ha, wb - 1 : wa]
    raise ValueError(mode)
