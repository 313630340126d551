"""Thin ``nn.Module`` wrappers around the native functions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import _script
from ._validation import check_int
from .backends import resolve
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
        geometry = native_geometry(**geometry_args)  # type: ignore[arg-type]
        check_options(mode, normalize, layout)
        check_int(groups, "groups", 1)
        if backend is not None:
            resolve(backend)
        # plain-typed copies for torch.jit.script
        self._geometry = geometry.as_list()
        self._kernel_area = geometry.kernel_area
        self._norm_kind = normalize if isinstance(normalize, str) else "factor"
        self._norm_factor = 0.0 if isinstance(normalize, str) else float(normalize)
        self._mode = mode
        self._groups = groups
        self._layout = layout
        self._backend = backend if backend else "auto"

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> the correlation in the configured layout."""
        if torch.jit.is_scripting():
            c = f1.shape[1] if f1.dim() == 4 else 1
            cpg = c // self._groups if c % self._groups == 0 else 1
            scale = _script.normalization_scale(self._norm_kind, self._norm_factor, cpg, self._kernel_area)
            out = _script.correlate(f1, f2, self._geometry, self._groups, self._mode, scale, self._backend, "f1", "f2")
            return _script.to_layout(out, self._layout, self._groups)
        return self._forward_eager(f1, f2)

    @torch.jit.unused
    def _forward_eager(self, f1: Tensor, f2: Tensor) -> Tensor:
        return correlation(f1, f2, **self.kwargs)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        defaults = Correlation.__init__.__kwdefaults__ or {}
        parts = [f"max_displacement={self.kwargs['max_displacement']}"]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items() if k != "max_displacement" and defaults.get(k) != v]
        return ", ".join(parts)
