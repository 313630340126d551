"""Drop-in for MXNet's ``mx.nd.Correlation`` (the FlowNet correlation, semantics.md section 1).

Differences from MXNet: none in values.  MXNet's own numpy test reference computes the output
size with floor; the operator (and this function) uses ceil.  Bad arguments raise ``ValueError``
or ``TypeError`` here, where MXNet may crash.
"""

from __future__ import annotations

from torch import Tensor

from ._flownet import flownet_correlation

__all__ = ["Correlation"]


def Correlation(
    data1: Tensor,
    data2: Tensor,
    kernel_size: int = 1,
    max_displacement: int = 1,
    stride1: int = 1,
    stride2: int = 1,
    pad_size: int = 0,
    is_multiply: bool = True,
    out: Tensor | None = None,
) -> Tensor:
    """FlowNet correlation with MXNet's signature and defaults.

    ``out[n, q, i, j] = 1/(k*k*C) * sum_c sum_{u,v} f1[n, c, cy+u, cx+v] * f2[n, c, cy+dy+u, cx+dx+v]``
    with ``q = qy * D + qx`` (vertical displacement slow), ``D = 2 * (max_displacement // stride2) + 1``,
    patch centres ``cy = i*stride1 + max_displacement + (k-1)/2 - pad_size``; zero outside.
    ``is_multiply=False`` uses ``|f1 - f2|``.

    Args:
        data1: ``Tensor[B, C, H, W]``.
        data2: ``Tensor[B, C, H, W]``, same shape, dtype and device.
        kernel_size: odd window size, >= 1.
        max_displacement: largest displacement in pixels, >= 0.
        stride1: output stride in ``data1``, >= 1.
        stride2: displacement step, >= 1.
        pad_size: zero padding of both inputs, >= 0.
        is_multiply: product (True) or absolute difference (False).
        out: optional tensor of the output's shape, dtype and device to write into (returned).

    Returns:
        ``Tensor[B, D*D, Ho, Wo]`` with ``Ho = ceil((H + 2*pad_size - 2*(max_displacement + (k-1)/2)) / stride1)``.

    Example:
        >>> import torch
        >>> from torchcorr.compat.mxnet import Correlation
        >>> x = torch.randn(1, 8, 10, 10)
        >>> Correlation(x, x, kernel_size=3, max_displacement=4, stride1=2, stride2=2, pad_size=5).shape
        torch.Size([1, 25, 5, 5])
    """
    result = flownet_correlation(
        data1,
        data2,
        pad_size=pad_size,
        kernel_size=kernel_size,
        max_displacement=max_displacement,
        stride1=stride1,
        stride2=stride2,
        is_multiply=bool(is_multiply),
    )
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if out.shape != result.shape or out.dtype != result.dtype or out.device != result.device:
        raise ValueError(
            f"out must have the output's shape {tuple(result.shape)}, dtype {result.dtype} and device "
            f"{result.device}, got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    out.copy_(result)  # autograd records the copy: gradients flow through ``out`` too
    return out
