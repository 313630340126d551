"""The FlowNet / Caffe correlation (semantics.md section 1).

Shared by the compat layers that mirror it (MXNet, flownet2-pytorch, tensorflow-addons, CorrTorch).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _script
from .._geometry import Geometry, flownet_axis
from .._validation import check_int
from ..functional import correlate


def flownet_correlation(
    f1: Tensor,
    f2: Tensor,
    *,
    pad_size: int,
    kernel_size: int,
    max_displacement: int,
    stride1: int,
    stride2: int,
    is_multiply: bool,
    names: tuple[str, str] = ("data1", "data2"),
    param_names: dict[str, str] | None = None,
) -> Tensor:
    """FlowNet correlation ``(B, C, H, W) x 2 -> (B, (2r+1)^2, Ho, Wo)``, ``r = md // stride2``.

    ``Ho = ceil((H + 2*pad - 2*(md + (k-1)/2)) / stride1)``; the result is divided by ``k*k*C``.
    ``param_names`` renames the parameters in error messages to the caller's own spelling.
    """
    n = {
        "pad_size": "pad_size",
        "kernel_size": "kernel_size",
        "max_displacement": "max_displacement",
        "stride1": "stride1",
        "stride2": "stride2",
    }
    n.update(param_names or {})
    check_int(kernel_size, n["kernel_size"], 1, odd=True)
    check_int(max_displacement, n["max_displacement"], 0)
    check_int(stride1, n["stride1"], 1)
    check_int(stride2, n["stride2"], 1)
    check_int(pad_size, n["pad_size"], 0)
    axis = flownet_axis(pad_size, kernel_size, max_displacement, stride1, stride2)
    geometry = Geometry(axis, axis)

    def too_small(ho: int, wo: int) -> str:
        h, w = f1.shape[2], f1.shape[3]
        return (
            f"a {2 * max_displacement + 1}-pixel displacement window with kernel {kernel_size} does not fit "
            f"a {h} x {w} map padded by {pad_size}: the output would be {ho} x {wo}; "
            f"need height and width + 2*{n['pad_size']} >= 2*{n['max_displacement']} + {n['kernel_size']}"
        )

    c = f1.shape[1] if isinstance(f1, Tensor) and f1.dim() == 4 else 1
    out = correlate(
        f1,
        f2,
        geometry,
        mode="product" if is_multiply else "absdiff",
        scale=1.0 / (kernel_size * kernel_size * max(c, 1)),
        too_small=too_small,
        names=names,
    )
    return out.flatten(1, 3)


class FlowNetCorrelationModule(nn.Module):
    """Base of the FlowNet-style modules: stores and checks the six FlowNet parameters.

    ``corr_multiply`` non-zero selects the product, 0 the absolute difference.
    """

    input_names: tuple[str, str] = ("input1", "input2")

    def __init__(
        self, pad_size: int, kernel_size: int, max_displacement: int, stride1: int, stride2: int, corr_multiply: int
    ) -> None:
        super().__init__()
        check_int(kernel_size, "kernel_size", 1, odd=True)
        check_int(pad_size, "pad_size", 0)
        check_int(max_displacement, "max_displacement", 0)
        check_int(stride1, "stride1", 1)
        check_int(stride2, "stride2", 1)
        self.pad_size = pad_size
        self.kernel_size = kernel_size
        self.max_displacement = max_displacement
        self.stride1 = stride1
        self.stride2 = stride2
        self.corr_multiply = corr_multiply
        # for torch.jit.script: the geometry as the op takes it, and the input names as two strings
        axis = flownet_axis(pad_size, kernel_size, max_displacement, stride1, stride2)
        self._geometry = Geometry(axis, axis).as_list()
        self._mode = "product" if corr_multiply else "absdiff"
        self._name1, self._name2 = self.input_names

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, D*D, Ho, Wo]``."""
        return self._correlate(input1, input2)

    def _correlate(self, input1: Tensor, input2: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            scale = 1.0 / (self.kernel_size * self.kernel_size * max(input1.shape[1], 1))
            out = _script.correlate(
                input1, input2, self._geometry, 1, self._mode, scale, "auto", self._name1, self._name2
            )
            return out.flatten(1, 3)
        return self._correlate_eager(input1, input2)

    @torch.jit.unused
    def _correlate_eager(self, input1: Tensor, input2: Tensor) -> Tensor:
        return flownet_correlation(
            input1,
            input2,
            pad_size=self.pad_size,
            kernel_size=self.kernel_size,
            max_displacement=self.max_displacement,
            stride1=self.stride1,
            stride2=self.stride2,
            is_multiply=bool(self.corr_multiply),
            names=self.input_names,
        )

    def extra_repr(self) -> str:
        return (
            f"pad_size={self.pad_size}, kernel_size={self.kernel_size}, max_displacement={self.max_displacement}, "
            f"stride1={self.stride1}, stride2={self.stride2}, corr_multiply={self.corr_multiply}"
        )
