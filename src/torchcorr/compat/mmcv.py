"""Drop-in for ``mmcv.ops.Correlation``.

The sampler correlation (semantics.md section 2) with ``patch_size = 2 * max_displacement + 1``,
so ``max_displacement`` counts steps of ``dilation_patch``.  Output ``(B, P, P, Ho, Wo)``, no
normalisation.  Runs on every device and floating dtype (mmcv's operator needs its compiled
extension).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._geometry import pair
from .._validation import check_int
from .spatial_correlation_sampler import _SamplerModule, sampler_correlation, sampler_geometry

__all__ = ["Correlation"]


class Correlation(_SamplerModule):
    """Correlation with mmcv's signature and defaults.

    Args:
        kernel_size: window size (int or (h, w)), >= 1.
        max_displacement: displacement radius in steps of ``dilation_patch`` (int or (h, w)), >= 0.
        stride: output stride, >= 1.
        padding: zero padding (negative crops).
        dilation: step between window taps, >= 1.
        dilation_patch: step between displacements, >= 1.

    Shape:
        ``(B, C, H, W) x 2 -> (B, P, P, Ho, Wo)``, ``P = 2*max_displacement + 1``,
        ``Ho = floor((H + 2*padding - ((k-1)*dilation + 1)) / stride) + 1``.

    Example:
        >>> import torch
        >>> from torchcorr.compat.mmcv import Correlation
        >>> Correlation(max_displacement=2)(torch.randn(1, 4, 6, 7), torch.randn(1, 4, 6, 7)).shape
        torch.Size([1, 5, 5, 6, 7])
    """

    def __init__(
        self,
        kernel_size: int | Sequence[int] = 1,
        max_displacement: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        dilation_patch: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        for v in pair(max_displacement, "max_displacement"):
            check_int(v, "max_displacement", 0)
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.dilation_patch = dilation_patch
        self._patch = tuple(2 * m + 1 for m in pair(max_displacement, "max_displacement"))
        self._geometry = sampler_geometry(kernel_size, self._patch, stride, padding, dilation, dilation_patch).as_list()

    @torch.jit.unused
    def _forward_eager(self, input1: Tensor, input2: Tensor) -> Tensor:
        return sampler_correlation(
            input1,
            input2,
            self.kernel_size,
            self._patch,
            self.stride,
            self.padding,
            self.dilation,
            self.dilation_patch,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, max_displacement={self.max_displacement}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, dilation_patch={self.dilation_patch}"
        )
