"""Cost volumes of flow and stereo networks, each a mapping onto the core correlation.

* :func:`cost_volume`: the local cost volume of PWC-Net (and of the forum request
  ``corr(fmap1, fmap2, search_range)``), ``(B, (2ry+1)*(2rx+1), H, W)`` or channels-last.
* :func:`stereo_correlation`: DispNetC's 1-D correlation along the epipolar line,
  ``(B, D, H, W)`` (one-sided) or ``(B, 2D-1, H, W)`` (two-sided).
* :func:`groupwise_correlation`: GwcNet's group-wise correlation, ``(B, G, D, H, W)``.
* :func:`concat_volume`: PSMNet's concatenation volume, ``(B, 2C, D, H, W)`` (not a correlation:
  built from indexing, output-sized memory).

Disparities (semantics.md section 4).  With the left image as reference, disparity ``d`` compares
``left[..., y, x]`` with ``right[..., y, x - d]``; with the right image as reference it compares
``right[..., y, x]`` with ``left[..., y, x + d]``.  Features read outside the image count as zero.
``max_disparity`` is the number of disparities of a one-sided volume (GwcNet's and PSMNet's
``maxdisp``): ``d = k * disparity_step`` for ``k`` in ``[0, max_disparity)``.  A two-sided volume
takes ``k`` in ``(-max_disparity, max_disparity)``, in ascending order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ._geometry import AxisGeometry, Geometry, pair
from ._validation import check_feature_pair, check_groups, check_int
from .functional import correlate, normalization_scale

__all__ = [
    "ConcatVolume",
    "CostVolume",
    "GroupwiseCorrelation",
    "StereoCorrelation",
    "concat_volume",
    "cost_volume",
    "groupwise_correlation",
    "stereo_correlation",
]

InputLayout = Literal["channels_first", "channels_last"]
OutputLayout = Literal["channels_first", "channels_last", "grid"]
Reference = Literal["left", "right"]

_INPUT_LAYOUTS = ("channels_first", "channels_last")
_OUTPUT_LAYOUTS = ("channels_first", "channels_last", "grid")
_REFERENCES = ("left", "right")


# --------------------------------------------------------------------------------------------
# local cost volume (semantics.md section 3)
# --------------------------------------------------------------------------------------------


def _check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def cost_volume_geometry(radius: int | Sequence[int], dilation: int | Sequence[int] = 1) -> Geometry:
    """The core geometry of :func:`cost_volume`: one-tap window, output the size of the input.

    >>> g = cost_volume_geometry((1, 2), dilation=2)
    >>> g.y.displacements, g.x.displacements, g.out_hw(7, 9)
    ([-2, 0, 2], [-4, -2, 0, 2, 4], (7, 9))
    """
    r = pair(radius, "radius")
    dil = pair(dilation, "dilation")
    axes = []
    for ra, da in zip(r, dil, strict=True):
        check_int(ra, "radius", 0)
        check_int(da, "dilation", 1)
        axes.append(AxisGeometry(0, 0, 1, 1, 1, -ra * da, 2 * ra + 1, da))
    return Geometry(*axes)


def cost_volume(
    f1: Tensor,
    f2: Tensor,
    radius: int | Sequence[int],
    *,
    dilation: int | Sequence[int] = 1,
    normalize: str | float = "channels",
    layout: InputLayout = "channels_first",
    output_layout: OutputLayout | None = None,
    backend: str | None = None,
) -> Tensor:
    """Local cost volume: ``f1`` at each pixel against ``f2`` in a window around it (PWC-Net).

    ::

        out[b, q, y, x] = scale * sum_c f1[b, c, y, x] * f2[b, c, y + dy, x + dx]
        dy = (q // (2*rx + 1) - ry) * dilation_y,   dx = (q % (2*rx + 1) - rx) * dilation_x

    ``f2`` read outside the map counts as zero; the vertical displacement is the slow index (FlowNet
    and PWC-Net order).  This is the FlowNet correlation with ``pad = max_displacement = r``,
    ``kernel_size = 1``, ``stride1 = 1`` and ``stride2 = dilation`` (semantics.md section 3).

    Args:
        f1: reference features, ``Tensor[B, C, H, W]`` (or ``Tensor[B, H, W, C]`` with
            ``layout="channels_last"``), any floating dtype.
        f2: features to search, same shape, dtype and device.
        radius: search radius in displacement steps, an int or a ``(ry, rx)`` pair, >= 0.
        dilation: pixels between neighbouring displacements (int or pair), >= 1.
        normalize: ``"channels"`` (``1/C``, PWC-Net and FlowNet; ``"mean"`` is the same here),
            ``"sqrt_channels"`` (``1/sqrt(C)``, RAFT), ``"none"`` or a float factor.
        layout: ``"channels_first"`` (``B, C, H, W``) or ``"channels_last"`` (``B, H, W, C``) inputs.
        output_layout: ``"channels_first"`` -> ``Tensor[B, (2ry+1)*(2rx+1), H, W]``,
            ``"channels_last"`` -> ``Tensor[B, H, W, (2ry+1)*(2rx+1)]`` (a view),
            ``"grid"`` -> ``Tensor[B, 2ry+1, 2rx+1, H, W]``; ``None`` follows ``layout``.
        backend: core backend, see :func:`torchcorr.correlation`.

    Returns:
        The cost volume, same spatial size and dtype as the inputs.

    Example:
        >>> import torch, torchcorr
        >>> f1, f2 = torch.randn(2, 1, 16, 24, 32).unbind(0)
        >>> torchcorr.cost_volume(f1, f2, 4).shape
        torch.Size([1, 81, 24, 32])
        >>> h1, h2 = torch.randn(2, 1, 24, 32, 16).unbind(0)
        >>> torchcorr.cost_volume(h1, h2, (1, 3), layout="channels_last").shape
        torch.Size([1, 24, 32, 21])
    """
    geometry = cost_volume_geometry(radius, dilation)
    layout = _check_choice(layout, "layout", _INPUT_LAYOUTS)  # type: ignore[assignment]
    out_layout = layout if output_layout is None else _check_choice(output_layout, "output_layout", _OUTPUT_LAYOUTS)
    if layout == "channels_last":
        for t, name in ((f1, "f1"), (f2, "f2")):
            if isinstance(t, Tensor) and t.dim() != 4:
                raise ValueError(f"{name} must be a 4-D tensor (B, H, W, C), got shape {tuple(t.shape)}")
        if isinstance(f1, Tensor) and isinstance(f2, Tensor):
            f1, f2 = f1.permute(0, 3, 1, 2), f2.permute(0, 3, 1, 2)
    check_feature_pair(f1, f2)
    scale = normalization_scale(normalize, f1.shape[1], 1)
    out = correlate(f1, f2, geometry, scale=scale, backend=backend).squeeze(1)  # (B, Dy, Dx, H, W)
    if out_layout == "grid":
        return out
    out = out.flatten(1, 2)
    return out.movedim(1, -1) if out_layout == "channels_last" else out


# --------------------------------------------------------------------------------------------
# stereo (semantics.md section 4)
# --------------------------------------------------------------------------------------------


def _disparity_range(max_disparity: int, two_sided: bool, disparity_step: int) -> range:
    """Disparities of the volume in output order, in pixels."""
    check_int(max_disparity, "max_disparity", 1)
    check_int(disparity_step, "disparity_step", 1)
    if not isinstance(two_sided, bool):
        raise TypeError(f"two_sided must be a bool, got {type(two_sided).__name__}")
    first = -(max_disparity - 1) if two_sided else 0
    return range(first * disparity_step, max_disparity * disparity_step, disparity_step)


def stereo_geometry(
    max_disparity: int,
    *,
    two_sided: bool = False,
    reference: Reference = "left",
    disparity_step: int = 1,
    kernel_size: int | Sequence[int] = 1,
) -> Geometry:
    """The core geometry of the stereo correlations (reference image as ``f1``).

    Left reference: ``f2`` (right) is displaced by ``-d``; right reference: by ``+d``.

    >>> stereo_geometry(4, disparity_step=2).x.displacements
    [0, -2, -4, -6]
    >>> stereo_geometry(3, two_sided=True, reference="right").x.displacements
    [-2, -1, 0, 1, 2]
    """
    disparities = _disparity_range(max_disparity, two_sided, disparity_step)
    _check_choice(reference, "reference", _REFERENCES)
    ky, kx = pair(kernel_size, "kernel_size")
    check_int(ky, "kernel_size", 1, odd=True)
    check_int(kx, "kernel_size", 1, odd=True)
    sign = -1 if reference == "left" else 1
    y = AxisGeometry(ky // 2, ky // 2, 1, ky, 1, 0, 1, 1)
    x = AxisGeometry(kx // 2, kx // 2, 1, kx, 1, sign * disparities.start, len(disparities), sign * disparities.step)
    return Geometry(y, x)


def _stereo(
    left: Tensor,
    right: Tensor,
    max_disparity: int,
    groups: int,
    two_sided: bool,
    reference: str,
    disparity_step: int,
    kernel_size: int | Sequence[int],
    normalize: str | float,
    backend: str | None,
) -> Tensor:
    """(B, G, D, H, W) stereo correlation through the core."""
    geometry = stereo_geometry(
        max_disparity,
        two_sided=two_sided,
        reference=reference,  # type: ignore[arg-type]
        disparity_step=disparity_step,
        kernel_size=kernel_size,
    )
    check_feature_pair(left, right, ("left", "right"))
    channels = left.shape[1]
    groups = check_groups(groups, channels)
    scale = normalization_scale(normalize, channels // groups, geometry.kernel_area)
    f1, f2 = (left, right) if reference == "left" else (right, left)
    names = ("left", "right") if reference == "left" else ("right", "left")
    out = correlate(f1, f2, geometry, groups=groups, scale=scale, backend=backend, names=names)
    return out.squeeze(2)  # (B, G, D, H, W)


def stereo_correlation(
    left: Tensor,
    right: Tensor,
    max_disparity: int,
    *,
    two_sided: bool = False,
    reference: Reference = "left",
    disparity_step: int = 1,
    kernel_size: int | Sequence[int] = 1,
    normalize: str | float = "mean",
    backend: str | None = None,
) -> Tensor:
    """DispNetC's 1-D correlation: the reference image against the other one shifted along x.

    ::

        left reference:   out[b, k, y, x] = scale * sum_c left[b, c, y, x] * right[b, c, y, x - d_k]
        right reference:  out[b, k, y, x] = scale * sum_c right[b, c, y, x] * left[b, c, y, x + d_k]

    with ``d_k = k * disparity_step``, ``k`` in ``[0, max_disparity)`` (one-sided) or in
    ``(-max_disparity, max_disparity)`` ascending (two-sided), zero where the other image is read
    outside ``[0, W)``.  A ``kernel_size`` larger than 1 sums a centred window of products.

    Args:
        left: left features, ``Tensor[B, C, H, W]``, any floating dtype.
        right: right features, same shape, dtype and device.
        max_disparity: number of one-sided disparities ``D`` (>= 1); may exceed the width.
        two_sided: also search negative disparities: ``2*D - 1`` channels.
        reference: ``"left"`` or ``"right"``: the image whose pixel grid the volume lives on.
        disparity_step: pixels between neighbouring disparities, >= 1.
        kernel_size: odd comparison window (int or ``(h, w)``), centred; 1 in DispNetC.
        normalize: ``"mean"`` (``1/(C*k*k)``, DispNetC's mean over channels), ``"channels"``,
            ``"sqrt_channels"``, ``"none"`` or a float factor.
        backend: core backend, see :func:`torchcorr.correlation`.

    Returns:
        ``Tensor[B, D, H, W]`` (one-sided) or ``Tensor[B, 2D-1, H, W]`` (two-sided).

    Example:
        >>> import torch, torchcorr
        >>> left, right = torch.randn(2, 2, 64, 24, 48).unbind(0)
        >>> torchcorr.stereo_correlation(left, right, 40).shape
        torch.Size([2, 40, 24, 48])
        >>> torchcorr.stereo_correlation(left, right, 5, two_sided=True).shape
        torch.Size([2, 9, 24, 48])
    """
    out = _stereo(left, right, max_disparity, 1, two_sided, reference, disparity_step, kernel_size, normalize, backend)
    return out.squeeze(1)


def groupwise_correlation(
    left: Tensor,
    right: Tensor,
    max_disparity: int,
    groups: int,
    *,
    two_sided: bool = False,
    reference: Reference = "left",
    disparity_step: int = 1,
    normalize: str | float = "mean",
    backend: str | None = None,
) -> Tensor:
    """GwcNet's group-wise correlation volume.

    Channels split into ``groups`` contiguous groups of ``C/G``; each group gives the mean of the
    products over its own channels::

        out[b, g, k, y, x] = 1/(C/G) * sum_{c in group g} left[b, c, y, x] * right[b, c, y, x - d_k]

    (left reference; see :func:`stereo_correlation` for ``d_k``, the right reference and the
    zeros outside).

    Args:
        left: left features, ``Tensor[B, C, H, W]``.
        right: right features, same shape, dtype and device.
        max_disparity: number of disparities ``D`` (GwcNet: ``maxdisp // 4``), >= 1.
        groups: number of groups ``G``; must divide ``C``.
        two_sided: also search negative disparities (``2D - 1`` of them).
        reference: ``"left"`` or ``"right"``.
        disparity_step: pixels between neighbouring disparities, >= 1.
        normalize: ``"mean"`` (mean over the channels of a group, GwcNet), ``"sqrt_channels"``,
            ``"none"`` or a float factor.
        backend: core backend, see :func:`torchcorr.correlation`.

    Returns:
        ``Tensor[B, G, D, H, W]`` (``2D - 1`` disparities when two-sided).

    Example:
        >>> import torch, torchcorr
        >>> left, right = torch.randn(2, 1, 320, 16, 32).unbind(0)
        >>> torchcorr.groupwise_correlation(left, right, 12, 40).shape
        torch.Size([1, 40, 12, 16, 32])
    """
    return _stereo(left, right, max_disparity, groups, two_sided, reference, disparity_step, 1, normalize, backend)


def concat_volume(
    left: Tensor,
    right: Tensor,
    max_disparity: int,
    *,
    two_sided: bool = False,
    reference: Reference = "left",
    disparity_step: int = 1,
) -> Tensor:
    """PSMNet's concatenation volume: reference and shifted features stacked, per disparity.

    ::

        left reference:   out[b, :C, k, y, x] = left[b, :, y, x]
                          out[b, C:, k, y, x] = right[b, :, y, x - d_k]

    both halves zero where ``x - d_k`` falls outside ``[0, W)``; with the right reference the first
    half is ``right[b, :, y, x]`` and the second ``left[b, :, y, x + d_k]`` (see
    :func:`stereo_correlation` for ``d_k``).  Built with one gather from the (input-sized) stacked
    features, so the only large allocation is the output itself, forward and backward.

    Args:
        left: left features, ``Tensor[B, C, H, W]``, any dtype.
        right: right features, same shape, dtype and device.
        max_disparity: number of disparities ``D`` (PSMNet: ``maxdisp // 4``), >= 1.
        two_sided: also search negative disparities (``2D - 1`` of them).
        reference: ``"left"`` or ``"right"``.
        disparity_step: pixels between neighbouring disparities, >= 1.

    Returns:
        ``Tensor[B, 2C, D, H, W]`` (``2D - 1`` disparities when two-sided), contiguous.

    Example:
        >>> import torch, torchcorr
        >>> left, right = torch.randn(2, 1, 32, 16, 32).unbind(0)
        >>> torchcorr.concat_volume(left, right, 12).shape
        torch.Size([1, 64, 12, 16, 32])
    """
    disparities = _disparity_range(max_disparity, two_sided, disparity_step)
    _check_choice(reference, "reference", _REFERENCES)
    check_feature_pair(left, right, ("left", "right"))
    b, c, h, w = left.shape
    ref, other = (left, right) if reference == "left" else (right, left)
    sign = -1 if reference == "left" else 1
    device = left.device
    # (B, 2, C, H, W + 1): the last column is the zero every read outside the image goes to
    source = torch.nn.functional.pad(torch.stack((ref, other), 1), (0, 1))
    d = torch.tensor(list(disparities), dtype=torch.long, device=device).view(-1, 1)
    x = torch.arange(w, device=device).view(1, -1)
    shifted = x + sign * d  # (D, W)
    inside = (shifted >= 0) & (shifted < w)
    zero = torch.full_like(shifted, w)
    columns = torch.stack((torch.where(inside, x, zero), torch.where(inside, shifted, zero)))  # (2, D, W)
    out = source[
        :,
        torch.arange(2, device=device).view(2, 1, 1, 1, 1),
        torch.arange(c, device=device).view(1, c, 1, 1, 1),
        torch.arange(h, device=device).view(1, 1, 1, h, 1),
        columns.view(2, 1, len(disparities), 1, w),
    ]  # (B, 2, C, D, H, W)
    return out.reshape(b, 2 * c, len(disparities), h, w)


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------


class CostVolume(nn.Module):
    """Module form of :func:`cost_volume` (PWC-Net: ``CostVolume(4)`` followed by LeakyReLU(0.1)).

    Example:
        >>> import torch, torchcorr
        >>> layer = torchcorr.CostVolume(4)
        >>> layer(torch.randn(1, 32, 20, 28), torch.randn(1, 32, 20, 28)).shape
        torch.Size([1, 81, 20, 28])
    """

    def __init__(
        self,
        radius: int | Sequence[int] = 4,
        *,
        dilation: int | Sequence[int] = 1,
        normalize: str | float = "channels",
        layout: InputLayout = "channels_first",
        output_layout: OutputLayout | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        cost_volume_geometry(radius, dilation)
        normalization_scale(normalize, 1, 1)
        _check_choice(layout, "layout", _INPUT_LAYOUTS)
        if output_layout is not None:
            _check_choice(output_layout, "output_layout", _OUTPUT_LAYOUTS)
        self.radius, self.dilation, self.normalize = radius, dilation, normalize
        self.layout, self.output_layout, self.backend = layout, output_layout, backend

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        """Two feature maps -> the cost volume in the configured layout."""
        return cost_volume(
            f1,
            f2,
            self.radius,
            dilation=self.dilation,
            normalize=self.normalize,
            layout=self.layout,  # type: ignore[arg-type]
            output_layout=self.output_layout,  # type: ignore[arg-type]
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"radius={self.radius}, dilation={self.dilation}, normalize={self.normalize!r}, "
            f"layout={self.layout!r}, output_layout={self.output_layout!r}"
        )


class _StereoModule(nn.Module):
    def __init__(
        self, max_disparity: int, two_sided: bool, reference: str, disparity_step: int, kernel_size: int = 1
    ) -> None:
        super().__init__()
        stereo_geometry(
            max_disparity,
            two_sided=two_sided,
            reference=reference,  # type: ignore[arg-type]
            disparity_step=disparity_step,
            kernel_size=kernel_size,
        )
        self.max_disparity, self.two_sided = max_disparity, two_sided
        self.reference, self.disparity_step = reference, disparity_step

    def extra_repr(self) -> str:
        return (
            f"max_disparity={self.max_disparity}, two_sided={self.two_sided}, reference={self.reference!r}, "
            f"disparity_step={self.disparity_step}"
        )


class StereoCorrelation(_StereoModule):
    """Module form of :func:`stereo_correlation` (DispNetC: ``StereoCorrelation(40)``).

    Example:
        >>> import torch, torchcorr
        >>> layer = torchcorr.StereoCorrelation(40)
        >>> layer(torch.randn(1, 64, 12, 48), torch.randn(1, 64, 12, 48)).shape
        torch.Size([1, 40, 12, 48])
    """

    def __init__(
        self,
        max_disparity: int,
        *,
        two_sided: bool = False,
        reference: Reference = "left",
        disparity_step: int = 1,
        kernel_size: int | Sequence[int] = 1,
        normalize: str | float = "mean",
        backend: str | None = None,
    ) -> None:
        super().__init__(max_disparity, two_sided, reference, disparity_step, kernel_size)  # type: ignore[arg-type]
        normalization_scale(normalize, 1, 1)
        self.kernel_size, self.normalize, self.backend = kernel_size, normalize, backend

    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, D, H, W]``."""
        return stereo_correlation(
            left,
            right,
            self.max_disparity,
            two_sided=self.two_sided,
            reference=self.reference,  # type: ignore[arg-type]
            disparity_step=self.disparity_step,
            kernel_size=self.kernel_size,
            normalize=self.normalize,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, normalize={self.normalize!r}"


class GroupwiseCorrelation(_StereoModule):
    """Module form of :func:`groupwise_correlation` (GwcNet: ``GroupwiseCorrelation(48, 40)``).

    Example:
        >>> import torch, torchcorr
        >>> layer = torchcorr.GroupwiseCorrelation(12, groups=8)
        >>> layer(torch.randn(1, 64, 8, 32), torch.randn(1, 64, 8, 32)).shape
        torch.Size([1, 8, 12, 8, 32])
    """

    def __init__(
        self,
        max_disparity: int,
        groups: int,
        *,
        two_sided: bool = False,
        reference: Reference = "left",
        disparity_step: int = 1,
        normalize: str | float = "mean",
        backend: str | None = None,
    ) -> None:
        super().__init__(max_disparity, two_sided, reference, disparity_step)
        check_int(groups, "groups", 1)
        normalization_scale(normalize, 1, 1)
        self.groups, self.normalize, self.backend = groups, normalize, backend

    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, G, D, H, W]``."""
        return groupwise_correlation(
            left,
            right,
            self.max_disparity,
            self.groups,
            two_sided=self.two_sided,
            reference=self.reference,  # type: ignore[arg-type]
            disparity_step=self.disparity_step,
            normalize=self.normalize,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, groups={self.groups}, normalize={self.normalize!r}"


class ConcatVolume(_StereoModule):
    """Module form of :func:`concat_volume` (PSMNet: ``ConcatVolume(48)``).

    Example:
        >>> import torch, torchcorr
        >>> layer = torchcorr.ConcatVolume(12)
        >>> layer(torch.randn(1, 32, 8, 32), torch.randn(1, 32, 8, 32)).shape
        torch.Size([1, 64, 12, 8, 32])
    """

    def __init__(
        self, max_disparity: int, *, two_sided: bool = False, reference: Reference = "left", disparity_step: int = 1
    ) -> None:
        super().__init__(max_disparity, two_sided, reference, disparity_step)

    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        """``Tensor[B, C, H, W]`` x 2 -> ``Tensor[B, 2C, D, H, W]``."""
        return concat_volume(
            left,
            right,
            self.max_disparity,
            two_sided=self.two_sided,
            reference=self.reference,  # type: ignore[arg-type]
            disparity_step=self.disparity_step,
        )
