"""Drop-in for tensorflow-addons' ``CorrelationCost`` layer (the FlowNet correlation).

Called on ``[input_a, input_b]``; ``data_format`` ``"channels_first"`` (B, C, H, W) or
``"channels_last"`` (B, H, W, C), output in the same format.  Differences from tensorflow-addons,
each a bug there (semantics.md section 1): its CPU kernel shifts the output spatially against its
GPU kernel when ``stride_1 > 1`` and ``pad > 0`` (here both devices give the values of the
definition); its ``compute_output_shape`` is wrong for ``stride_1 > 1`` (here it uses the ceil
formula); it runs only in float32 (here every floating dtype).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import _script
from .._geometry import Geometry, flownet_axis, flownet_output_size
from .._validation import check_int
from ._flownet import flownet_correlation

__all__ = ["CorrelationCost"]

_FORMATS = ("channels_first", "channels_last")
_NAMES = {"pad_size": "pad", "stride1": "stride_1", "stride2": "stride_2"}


class CorrelationCost(nn.Module):
    """FlowNet correlation with tensorflow-addons' signature, called on a pair of inputs.

    Args:
        kernel_size: odd window size, >= 1.
        max_displacement: largest displacement in pixels, >= 0.
        stride_1: output stride, >= 1.
        stride_2: displacement step, >= 1.
        pad: zero padding of both inputs, >= 0.
        data_format: ``"channels_first"`` or ``"channels_last"``.

    Shape:
        channels_first ``[(B, C, H, W)] * 2 -> (B, D*D, Ho, Wo)``; channels_last
        ``[(B, H, W, C)] * 2 -> (B, Ho, Wo, D*D)``, ``D = 2*(max_displacement // stride_2) + 1``,
        ``Ho = ceil((H + 2*pad - 2*(max_displacement + (k-1)/2)) / stride_1)``.

    Example:
        >>> import torch
        >>> from torchcorr.compat.tfa import CorrelationCost
        >>> layer = CorrelationCost(1, 4, 1, 1, 4, "channels_last")
        >>> a = torch.randn(2, 12, 16, 32)
        >>> layer([a, a]).shape
        torch.Size([2, 12, 16, 81])
    """

    def __init__(
        self, kernel_size: int, max_displacement: int, stride_1: int, stride_2: int, pad: int, data_format: str
    ) -> None:
        super().__init__()
        check_int(kernel_size, "kernel_size", 1, odd=True)
        check_int(max_displacement, "max_displacement", 0)
        check_int(stride_1, "stride_1", 1)
        check_int(stride_2, "stride_2", 1)
        check_int(pad, "pad", 0)
        if data_format not in _FORMATS:
            raise ValueError(f"data_format must be one of {list(_FORMATS)}, got {data_format!r}")
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.stride_1 = stride_1
        self.stride_2 = stride_2
        self.pad = pad
        self.data_format = data_format
        axis = flownet_axis(pad, kernel_size, max_displacement, stride_1, stride_2)
        self._geometry = Geometry(axis, axis).as_list()  # for torch.jit.script

    def forward(self, inputs: list[Tensor]) -> Tensor:
        """``[input_a, input_b]`` -> the correlation in ``data_format``."""
        if torch.jit.is_scripting():
            if len(inputs) != 2:
                raise TypeError("CorrelationCost must be called on a list [input_a, input_b] of two tensors")
            a, b = inputs[0], inputs[1]
            last = self.data_format == "channels_last"
            if last:
                _script.check_pair(a, b, "input_a", "input_b")
                a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
            scale = 1.0 / (self.kernel_size * self.kernel_size * max(a.shape[1], 1))
            out = _script.correlate(a, b, self._geometry, 1, "product", scale, "auto", "input_a", "input_b")
            out = out.flatten(1, 3)
            return out.permute(0, 2, 3, 1) if last else out
        return self._forward_eager(inputs)

    @torch.jit.unused
    def _forward_eager(self, inputs: Sequence[Tensor]) -> Tensor:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise TypeError("CorrelationCost must be called on a list [input_a, input_b] of two tensors")
        a, b = inputs
        last = self.data_format == "channels_last"
        if last:
            for t, n in ((a, "input_a"), (b, "input_b")):
                if isinstance(t, Tensor) and t.dim() != 4:
                    raise ValueError(f"{n} must be a 4-D tensor (B, H, W, C), got shape {tuple(t.shape)}")
            a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
        out = flownet_correlation(
            a,
            b,
            pad_size=self.pad,
            kernel_size=self.kernel_size,
            max_displacement=self.max_displacement,
            stride1=self.stride_1,
            stride2=self.stride_2,
            is_multiply=True,
            names=("input_a", "input_b"),
            param_names=_NAMES,
        )
        return out.permute(0, 2, 3, 1) if last else out

    def compute_output_shape(self, input_shape: Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
        """Output shape for ``[shape_a, shape_b]`` (the ceil formula, right for every stride)."""
        shape = tuple(input_shape[0])
        if self.data_format == "channels_last":
            b, h, w, _ = shape
        else:
            b, _, h, w = shape
        d = 2 * (self.max_displacement // self.stride_2) + 1
        ho, wo = (
            flownet_output_size(n, self.pad, self.kernel_size, self.max_displacement, self.stride_1) for n in (h, w)
        )
        return (b, ho, wo, d * d) if self.data_format == "channels_last" else (b, d * d, ho, wo)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, max_displacement={self.max_displacement}, stride_1={self.stride_1}, "
            f"stride_2={self.stride_2}, pad={self.pad}, data_format={self.data_format!r}"
        )
