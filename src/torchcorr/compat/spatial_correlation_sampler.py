"""Drop-in for ``spatial_correlation_sampler`` (semantics.md section 2).

Same signature, defaults, output layout ``(B, PH, PW, Ho, Wo)`` and values (no normalisation,
zero outside, patch shift ``(p - (P-1)//2) * dilation_patch`` also for even patch sizes), on every
device and floating dtype, with exact gradients.  Bad arguments raise ``ValueError`` or
``TypeError`` where the original may crash.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import _script
from .._geometry import Geometry, pair, sampler_axis
from .._validation import check_int
from ..functional import correlate

__all__ = ["SpatialCorrelationSampler", "sampler_correlation", "spatial_correlation_sample"]

IntPair = int | Sequence[int]


def _checked_pairs(**params: IntPair) -> dict[str, tuple[int, int]]:
    minimum = {"padding": None}
    out = {}
    for name, value in params.items():
        p = pair(value, name)
        for v in p:
            check_int(v, name, minimum.get(name, 1))
        out[name] = p
    return out


def sampler_geometry(
    kernel_size: IntPair,
    patch_size: IntPair,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    dilation_patch: IntPair,
) -> Geometry:
    """Check the sampler arguments and build their :class:`Geometry`."""
    p = _checked_pairs(
        kernel_size=kernel_size,
        patch_size=patch_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        dilation_patch=dilation_patch,
    )
    axes = [
        sampler_axis(
            p["kernel_size"][a],
            p["patch_size"][a],
            p["stride"][a],
            p["padding"][a],
            p["dilation"][a],
            p["dilation_patch"][a],
        )
        for a in (0, 1)
    ]
    return Geometry(*axes)


def sampler_correlation(
    input1: Tensor,
    input2: Tensor,
    kernel_size: IntPair,
    patch_size: IntPair,
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    dilation_patch: IntPair,
    names: tuple[str, str] = ("input1", "input2"),
) -> Tensor:
    """The sampler correlation ``(B, C, H, W) x 2 -> (B, PH, PW, Ho, Wo)``, shared with mmcv."""
    geometry = sampler_geometry(kernel_size, patch_size, stride, padding, dilation, dilation_patch)
    return correlate(input1, input2, geometry, names=names).squeeze(1)


class _SamplerModule(nn.Module):
    """Shared forward of the sampler-geometry modules: eager face, or the op when scripted.

    Subclasses set ``self._geometry`` (the sixteen ints) and implement ``_forward_eager``.
    """

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, PH, PW, Ho, Wo]``."""
        if torch.jit.is_scripting():
            out = _script.correlate(input1, input2, self._geometry, 1, "product", 1.0, "auto", "input1", "input2")
            return out.squeeze(1)
        return self._forward_eager(input1, input2)

    @torch.jit.unused
    def _forward_eager(self, input1: Tensor, input2: Tensor) -> Tensor:
        raise NotImplementedError


def spatial_correlation_sample(
    input1: Tensor,
    input2: Tensor,
    kernel_size: IntPair = 1,
    patch_size: IntPair = 1,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    dilation_patch: IntPair = 1,
) -> Tensor:
    """Correlation with spatial-correlation-sampler's signature, defaults and layout.

    ``out[b, ph, pw, h, w] = sum_c sum_{u,v} f1[b, c, y, x] * f2[b, c, y + sy, x + sx]`` with
    ``y = h*stride - padding + u*dilation``, ``sy = (ph - (PH-1)//2) * dilation_patch`` (and the
    same along x); zero outside, no normalisation.

    Args:
        input1: ``Tensor[B, C, H, W]``.
        input2: ``Tensor[B, C, H, W]``.
        kernel_size: window size (int or (h, w)), >= 1.
        patch_size: displacements per axis (int or (h, w)), >= 1; even sizes allowed.
        stride: output stride, >= 1.
        padding: zero padding (negative crops).
        dilation: step between window taps, >= 1.
        dilation_patch: step between displacements, >= 1.

    Returns:
        ``Tensor[B, PH, PW, Ho, Wo]``, ``Ho = floor((H + 2*padding - ((k-1)*dilation + 1)) / stride) + 1``.

    Example:
        >>> import torch
        >>> x = torch.randn(1, 4, 10, 10)
        >>> spatial_correlation_sample(x, x, kernel_size=3, patch_size=4, stride=2, dilation=2).shape
        torch.Size([1, 4, 4, 3, 3])
    """
    return sampler_correlation(input1, input2, kernel_size, patch_size, stride, padding, dilation, dilation_patch)


class SpatialCorrelationSampler(_SamplerModule):
    """Module form of :func:`spatial_correlation_sample` (same arguments and defaults)."""

    def __init__(
        self,
        kernel_size: IntPair = 1,
        patch_size: IntPair = 1,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        dilation_patch: IntPair = 1,
    ) -> None:
        super().__init__()
        geometry = sampler_geometry(kernel_size, patch_size, stride, padding, dilation, dilation_patch)
        self.kernel_size = kernel_size
        self.patch_size = patch_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.dilation_patch = dilation_patch
        self._geometry = geometry.as_list()

    @torch.jit.unused
    def _forward_eager(self, input1: Tensor, input2: Tensor) -> Tensor:
        return spatial_correlation_sample(
            input1,
            input2,
            self.kernel_size,
            self.patch_size,
            self.stride,
            self.padding,
            self.dilation,
            self.dilation_patch,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, patch_size={self.patch_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, dilation_patch={self.dilation_patch}"
        )
