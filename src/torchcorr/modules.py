"""Thin ``nn.Module`` wrappers around the native functions."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._validation import check_int
from .functional import Layout, Mode, Normalize, check_options, correlation, native_geometry

__all__ = ["Correlation"]

_GEOMETRY_ARGS = (
    "max_displacement",
    "displacement_stride",
    "displacements",
    "kernel_size",
    "kernel_dilation",
    "stride",
    "padding",
)


class Correlation(nn.Module):
    """Module form of :func:`torchcorr.correlation`; the arguments are the same.

    Example:
        >>> import torch, torchcorr
        >>> layer = torchcorr.Correlation(max_displacement=4)
        >>> layer(torch.randn(1, 16, 12, 20), torch.randn(1, 16, 12, 20)).shape
        torch.Size([1, 81, 12, 20])
    """

    def __init__(
        self,
        max_displacement: int | Sequence[int] = 4,
        *,
        displacement_stride: int | Sequence[int] = 1,
        displacements: tuple[range, range] | None = None,
        kernel_size: int | Sequence[int] = 1,
        kernel_dilation: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | None = None,
        mode: Mode = "product",
        normalize: Normalize | float = "mean",
        groups: int = 1,
        layout: Layout = "flat",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.kwargs = dict(
            max_displacement=max_displacement,
            displacement_stride=displacement_stride,
            displacements=displacements,
            kernel_size=kernel_size,
            kernel_dilation=kernel_dilation,
            stride=stride,
            padding=padding,
            mode=mode,
            normalize=normalize,
            groups=groups,
            layout=layout,
            backend=backend,
        )
        geometry_args = {k: self.kwargs[k] for k in _GEOMETRY_ARGS}
        native_geometry(**geometry_args)  # type: ignore[arg-type]
        check_options(mode, normalize, layout)
        check_int(groups, "groups", 1)

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> the correlation in the configured layout."""
        return correlation(f1, f2, **self.kwargs)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        defaults = Correlation.__init__.__kwdefaults__ or {}
        parts = [f"max_displacement={self.kwargs['max_displacement']}"]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items() if k != "max_displacement" and defaults.get(k) != v]
        return ", ".join(parts)
