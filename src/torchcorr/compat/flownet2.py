"""Drop-in for flownet2-pytorch's ``Correlation`` module (the FlowNet correlation).

Differences from flownet2-pytorch, each a bug there (semantics.md section 1):

* for ``kernel_size > 1`` its window is shifted by ``-(k-1)/2``; here it is centred;
* its backward is right only for ``kernel_size == 1`` and ``stride1 == 1``; here it is exact;
* it ignores ``corr_multiply``; here ``corr_multiply=0`` selects the absolute difference;
* its default ``kernel_size=0`` divides by zero; here it is a ``ValueError``.
"""

from __future__ import annotations

from ._flownet import FlowNetCorrelationModule

__all__ = ["Correlation"]


class Correlation(FlowNetCorrelationModule):
    """FlowNet correlation with flownet2-pytorch's signature and defaults.

    Args:
        pad_size: zero padding of both inputs, >= 0.
        kernel_size: odd window size, >= 1 (the original's default 0 is rejected).
        max_displacement: largest displacement in pixels, >= 0.
        stride1: output stride, >= 1.
        stride2: displacement step, >= 1.
        corr_multiply: non-zero for the product, 0 for the absolute difference.

    Shape:
        ``(B, C, H, W) x 2 -> (B, D*D, Ho, Wo)``, ``D = 2*(max_displacement // stride2) + 1``,
        ``Ho = ceil((H + 2*pad_size - 2*(max_displacement + (kernel_size-1)/2)) / stride1)``.

    Example:
        >>> import torch
        >>> from torchcorr.compat.flownet2 import Correlation
        >>> layer = Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1, stride2=2)
        >>> layer(torch.randn(1, 8, 24, 32), torch.randn(1, 8, 24, 32)).shape
        torch.Size([1, 441, 24, 32])
    """

    def __init__(
        self,
        pad_size: int = 0,
        kernel_size: int = 0,
        max_displacement: int = 0,
        stride1: int = 1,
        stride2: int = 2,
        corr_multiply: int = 1,
    ) -> None:
        super().__init__(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply)
