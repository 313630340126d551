"""Drop-in for ``CorrTorch``, the pure-PyTorch FlowNet correlation many PWC-Net ports ship.

The original supports only ``kernel_size=1``, ``stride1=stride2=1`` and ``pad_size ==
max_displacement`` (it asserts so) and computes the channel mean of ``f1 * shifted f2``.  This
module accepts every FlowNet parameter (semantics.md section 1), gives the same values where the
original runs, and is exact in both gradients.  ``corr_multiply=0`` selects the absolute
difference.
"""

from __future__ import annotations

from torch import Tensor

from ._flownet import FlowNetCorrelationModule

__all__ = ["CorrTorch"]


class CorrTorch(FlowNetCorrelationModule):
    """FlowNet correlation with CorrTorch's signature and defaults (PWC-Net's 81 channels).

    Args:
        pad_size: zero padding of both inputs, >= 0.
        kernel_size: odd window size, >= 1.
        max_displacement: largest displacement in pixels, >= 0.
        stride1: output stride, >= 1.
        stride2: displacement step, >= 1.
        corr_multiply: non-zero for the product, 0 for the absolute difference.

    Shape:
        ``(B, C, H, W) x 2 -> (B, D*D, Ho, Wo)``, ``D = 2*(max_displacement // stride2) + 1``;
        with the defaults ``(B, 81, H, W)``.

    Example:
        >>> import torch
        >>> from torchcorr.compat.corrtorch import CorrTorch
        >>> CorrTorch()(torch.randn(2, 16, 9, 13), torch.randn(2, 16, 9, 13)).shape
        torch.Size([2, 81, 9, 13])
    """

    def __init__(
        self,
        pad_size: int = 4,
        kernel_size: int = 1,
        max_displacement: int = 4,
        stride1: int = 1,
        stride2: int = 1,
        corr_multiply: int = 1,
    ) -> None:
        super().__init__(pad_size, kernel_size, max_displacement, stride1, stride2, corr_multiply)

    input_names = ("in1", "in2")

    def forward(self, in1: Tensor, in2: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, D*D, Ho, Wo]``."""
        return self._correlate(in1, in2)
