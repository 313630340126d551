"""Output allocation shared by the backends.

Backends allocate every buffer whose entries they promise to write with :func:`empty`.  With
``TORCHCORR_POISON=1`` (the test suite sets it) the buffer is filled with NaN first, so an entry a
kernel forgets to write shows up as NaN instead of passing silently with leftover memory.
"""

from __future__ import annotations

import os

import torch

POISON_VAR = "TORCHCORR_POISON"


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty``, NaN-filled when ``TORCHCORR_POISON=1``."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if os.environ.get(POISON_VAR) == "1" and out.is_floating_point():
        out.fill_(float("nan"))
    return out
