"""Drop-ins for RAFT's ``CorrBlock`` and ``AlternateCorrBlock`` (``core/corr.py`` of the RAFT repository).

Both are built from two feature maps and then called with ``coords`` ``Tensor[B, 2, H, W]`` (x
then y, absolute pixel positions, RAFT's ``coords1``) to return ``Tensor[B, L*(2r+1)^2, H, W]``:
for each level ``l`` the ``(2r+1)^2`` correlations around ``coords / 2**l``, horizontal offset as
the slow index (semantics.md section 5).

* :class:`CorrBlock` builds the all-pairs volume and its pyramid once, like RAFT's.
* :class:`AlternateCorrBlock` keeps only ``f1`` and the pooled ``f2`` levels and computes each
  window on the fly (:func:`torchcorr.alternate_lookup`).  Unlike RAFT's CUDA extension it runs on
  any device, needs no compilation, accepts any channel count (the original wants a multiple of
  32) and passes gradients to ``coords`` as well as to both feature maps.  Its values equal
  :class:`CorrBlock`'s to rounding.

Where these differ from RAFT's code:

* Output dtype: RAFT's ``CorrBlock`` ends with ``.float()``.  Here float16 and bfloat16 inputs
  also give float32, but float64 stays float64 (so gradients can be checked in float64).
* Levels that pool down to a single row or column: RAFT's sampler divides by ``W - 1 = 0`` there;
  here the level is sampled as defined (bilinear, zero outside).  Levels that pool to nothing
  (RAFT's ``avg_pool2d`` raises) read zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_feature_pair, check_int
from ..raft import _check_f1, all_pairs, alternate_lookup, correlation_pyramid, feature_pyramid, pyramid_lookup

__all__ = ["AlternateCorrBlock", "CorrBlock"]


def _raft_dtype(out: Tensor) -> Tensor:
    """RAFT hands its lookups to the update block in float32; float64 is kept."""
    return out if out.dtype in (torch.float32, torch.float64) else out.float()


class CorrBlock:
    """RAFT's all-pairs correlation block.

    Args:
        fmap1: features of the first frame, ``Tensor[B, C, H, W]``.
        fmap2: features of the second frame, same shape.
        num_levels: pyramid levels, >= 1.
        radius: lookup radius, >= 0.

    Shape:
        ``block(coords)``: ``Tensor[B, 2, H, W] -> Tensor[B, num_levels*(2r+1)^2, H, W]``;
        memory ``B*(H*W)^2*(1 + 1/4 + ...)`` values for the pyramid.

    Example:
        >>> import torch
        >>> from torchcorr.compat.raft import CorrBlock
        >>> f1, f2 = torch.randn(2, 1, 32, 24, 32).unbind(0)
        >>> CorrBlock(f1, f2)(torch.rand(1, 2, 24, 32) * 24).shape
        torch.Size([1, 324, 24, 32])
    """

    def __init__(self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 4) -> None:
        self.num_levels = check_int(num_levels, "num_levels", 1)
        self.radius = check_int(radius, "radius", 0)
        check_feature_pair(fmap1, fmap2, ("fmap1", "fmap2"))
        self.pyramid = correlation_pyramid(all_pairs(fmap1, fmap2), num_levels)

    @property
    def corr_pyramid(self) -> list[Tensor]:
        """The levels in RAFT's own layout, ``Tensor[B*H*W, 1, h_l, w_l]`` (views)."""
        return [c.reshape(-1, 1, *c.shape[-2:]) for c in self.pyramid]

    @staticmethod
    def corr(fmap1: Tensor, fmap2: Tensor) -> Tensor:
        """All-pairs correlation in RAFT's layout ``Tensor[B, H, W, 1, H, W]``, scaled by ``1/sqrt(C)``."""
        return all_pairs(fmap1, fmap2).unsqueeze(3)

    def __call__(self, coords: Tensor) -> Tensor:
        """``Tensor[B, 2, H, W]`` (x, y) -> ``Tensor[B, num_levels*(2r+1)^2, H, W]``."""
        return _raft_dtype(pyramid_lookup(self.pyramid, coords, self.radius))


class AlternateCorrBlock:
    """RAFT's memory-efficient correlation block, computed on the fly in PyTorch (any device).

    Args:
        fmap1: features of the first frame, ``Tensor[B, C, H, W]``.
        fmap2: features of the second frame, same shape.
        num_levels: pyramid levels, >= 1.
        radius: lookup radius, >= 0.
        backend: lookup implementation (``torchcorr.raft.lookup_backend_names()``), default ``"auto"``.

    Shape:
        ``block(coords)``: ``Tensor[B, 2, H, W] -> Tensor[B, num_levels*(2r+1)^2, H, W]``;
        memory ``O(B*H*W*num_levels*(2r+1)^2)`` plus input-sized buffers.

    Example:
        >>> import torch
        >>> from torchcorr.compat.raft import AlternateCorrBlock
        >>> f1, f2 = torch.randn(2, 1, 32, 24, 32).unbind(0)
        >>> AlternateCorrBlock(f1, f2)(torch.rand(1, 2, 24, 32) * 24).shape
        torch.Size([1, 324, 24, 32])
    """

    def __init__(
        self, fmap1: Tensor, fmap2: Tensor, num_levels: int = 4, radius: int = 4, backend: str | None = None
    ) -> None:
        self.num_levels = check_int(num_levels, "num_levels", 1)
        self.radius = check_int(radius, "radius", 0)
        self.backend = backend
        check_feature_pair(fmap1, fmap2, ("fmap1", "fmap2"))
        _check_f1(fmap1)
        self.fmap1 = fmap1
        self.fmap2_pyramid = feature_pyramid(fmap2, num_levels)

    def __call__(self, coords: Tensor) -> Tensor:
        """``Tensor[B, 2, H, W]`` (x, y) -> ``Tensor[B, num_levels*(2r+1)^2, H, W]``."""
        levels = self.fmap2_pyramid
        out = alternate_lookup(self.fmap1, levels, coords, self.num_levels, self.radius, backend=self.backend)
        return _raft_dtype(out)
