"""The one geometry every correlation in torchcorr is expressed in.

A correlation compares a window of ``f1`` around each output position with windows of ``f2``
displaced by each entry of a displacement grid.  Per spatial axis the whole computation is fixed
by eight integers (an :class:`AxisGeometry`); a :class:`Geometry` holds one per axis.

For one axis of length ``n`` (``H`` or ``W``)::

    span     = (kernel_size - 1) * kernel_dilation + 1
    out_size = floor((n + pad_before + pad_after - span) / stride) + 1
    window   = positions  -pad_before + o * stride + u * kernel_dilation,  u in [0, kernel_size)
    shift    = disp_start + t * disp_step,                                t in [0, disp_count)

``f1`` is read at ``window`` and ``f2`` at ``window + shift``; reads outside ``[0, n)`` count as
zero.  A negative pad crops.  Because the output size is a function of ``n`` and of integers that do
not depend on ``n``, it stays symbolic under ``torch.compile`` and ``torch.export``.

Every peer's output-size formula is a special case, written below as a small function with the
worked examples of ``semantics.md`` as doctests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AxisGeometry",
    "Geometry",
    "flownet_axis",
    "flownet_output_size",
    "pair",
    "sampler_axis",
    "sampler_output_size",
]


@dataclass(frozen=True)
class AxisGeometry:
    """The correlation geometry along one spatial axis.

    Attributes:
        pad_before: zero positions added before the map (negative: positions cropped).
        pad_after: zero positions added after the map (negative: positions cropped).
        stride: step between consecutive output positions (>= 1).
        kernel_size: taps of the comparison window (>= 1).
        kernel_dilation: step between window taps (>= 1).
        disp_start: first displacement of ``f2`` against ``f1``, in pixels.
        disp_count: number of displacements (>= 1).
        disp_step: step between displacements, in pixels (non-zero; negative runs backwards).
    """

    pad_before: int
    pad_after: int
    stride: int
    kernel_size: int
    kernel_dilation: int
    disp_start: int
    disp_count: int
    disp_step: int

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"AxisGeometry.{name} must be an int, got {type(value).__name__}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        if self.kernel_dilation < 1:
            raise ValueError(f"kernel_dilation must be >= 1, got {self.kernel_dilation}")
        if self.disp_count < 1:
            raise ValueError(f"the displacement count must be >= 1, got {self.disp_count}")
        if self.disp_step == 0:
            raise ValueError("the displacement step must be non-zero")

    @property
    def span(self) -> int:
        """Extent of the comparison window, in pixels."""
        return (self.kernel_size - 1) * self.kernel_dilation + 1

    @property
    def disp_min(self) -> int:
        """Smallest displacement of the grid."""
        return min(self.disp_start, self.disp_start + (self.disp_count - 1) * self.disp_step)

    @property
    def disp_max(self) -> int:
        """Largest displacement of the grid."""
        return max(self.disp_start, self.disp_start + (self.disp_count - 1) * self.disp_step)

    @property
    def displacements(self) -> list[int]:
        """All displacements, in output order."""
        return [self.disp_start + t * self.disp_step for t in range(self.disp_count)]

    def out_size(self, n: int) -> int:
        """Output length for an input of length ``n`` (may be < 1: the caller must check)."""
        return (n + self.pad_before + self.pad_after - self.span) // self.stride + 1

    def as_tuple(self) -> tuple[int, ...]:
        """The eight integers in field order (the form the registered ops take)."""
        return (
            self.pad_before,
            self.pad_after,
            self.stride,
            self.kernel_size,
            self.kernel_dilation,
            self.disp_start,
            self.disp_count,
            self.disp_step,
        )


@dataclass(frozen=True)
class Geometry:
    """Correlation geometry of both spatial axes.

    Attributes:
        y: vertical axis (height).
        x: horizontal axis (width).
    """

    y: AxisGeometry
    x: AxisGeometry

    def as_list(self) -> list[int]:
        """Sixteen integers, vertical axis first: the ``geometry`` argument of the ops."""
        return [*self.y.as_tuple(), *self.x.as_tuple()]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> Geometry:
        """Inverse of :meth:`as_list`.

        The ops rebuild their geometry from this list at every forward and backward; a process
        sees few distinct ones, so those of plain ints are kept (validated once).
        """
        if len(values) != 16:
            raise ValueError(f"geometry must hold 16 integers, got {len(values)}")
        key = tuple(values)
        if all(type(a) is int for a in key):
            return _from_ints(key)
        v = [int(a) for a in key]
        return cls(AxisGeometry(*v[:8]), AxisGeometry(*v[8:]))

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output (height, width) for an input of (h, w)."""
        return self.y.out_size(h), self.x.out_size(w)

    @property
    def kernel_area(self) -> int:
        """Number of window taps (``ky * kx``)."""
        return self.y.kernel_size * self.x.kernel_size


@functools.lru_cache(maxsize=256)
def _from_ints(values: tuple[int, ...]) -> Geometry:
    return Geometry(AxisGeometry(*values[:8]), AxisGeometry(*values[8:]))


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Normalise an int or an (h, w) pair of ints; a clear TypeError otherwise.

    >>> pair(3, "kernel_size")
    (3, 3)
    >>> pair((1, 2), "stride")
    (1, 2)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got a bool")
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        a, b = value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
            return a, b
    raise TypeError(f"{name} must be an int or a pair (h, w) of ints, got {value!r}")


# --------------------------------------------------------------------------------------------
# FlowNet / Caffe / MXNet / tensorflow-addons (semantics.md section 1)
# --------------------------------------------------------------------------------------------


def flownet_output_size(n: int, pad: int, kernel_size: int, max_displacement: int, stride1: int) -> int:
    """FlowNet output length: ``ceil((n + 2*pad - 2*(max_displacement + (k-1)/2)) / stride1)``.

    May be < 1; callers turn that into a clear error.

    >>> flownet_output_size(10, 4, 1, 4, 1)
    10
    >>> flownet_output_size(10, 5, 3, 4, 2)
    5
    >>> flownet_output_size(11, 5, 3, 4, 2)
    6
    """
    border = max_displacement + (kernel_size - 1) // 2
    return math.ceil((n + 2 * pad - 2 * border) / stride1)


def flownet_axis(pad: int, kernel_size: int, max_displacement: int, stride1: int, stride2: int) -> AxisGeometry:
    """One axis of the FlowNet correlation as an :class:`AxisGeometry`.

    The patch centre of output ``i`` is ``i*stride1 + max_displacement + kr - pad`` (``kr`` the
    kernel radius), so the window starts at ``i*stride1 + max_displacement - pad``: a symmetric pad
    of ``pad - max_displacement``.  Since ``ceil(a / s) == floor((a - 1) / s) + 1``, FlowNet's
    ceil-based size equals the floor-based size of that padding.  Displacements run over
    ``-r*stride2 .. r*stride2`` with ``r = max_displacement // stride2``.

    >>> a = flownet_axis(5, 3, 4, 2, 2)
    >>> a.out_size(10), a.displacements
    (5, [-4, -2, 0, 2, 4])
    >>> flownet_axis(20, 1, 20, 1, 2).disp_count
    21
    """
    radius = max_displacement // stride2
    return AxisGeometry(
        pad_before=pad - max_displacement,
        pad_after=pad - max_displacement,
        stride=stride1,
        kernel_size=kernel_size,
        kernel_dilation=1,
        disp_start=-radius * stride2,
        disp_count=2 * radius + 1,
        disp_step=stride2,
    )


# --------------------------------------------------------------------------------------------
# spatial-correlation-sampler / mmcv (semantics.md section 2)
# --------------------------------------------------------------------------------------------


def sampler_output_size(n: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """Sampler output length: ``floor((n + 2*padding - ((k-1)*dilation + 1)) / stride) + 1``.

    >>> sampler_output_size(10, 1, 1, 0, 1)
    10
    >>> sampler_output_size(10, 3, 2, 0, 2)
    3
    """
    return (n + 2 * padding - ((kernel_size - 1) * dilation + 1)) // stride + 1


def sampler_axis(
    kernel_size: int, patch_size: int, stride: int, padding: int, dilation: int, dilation_patch: int
) -> AxisGeometry:
    """One axis of the sampler correlation as an :class:`AxisGeometry`.

    Patch index ``p`` shifts by ``(p - (patch_size - 1) // 2) * dilation_patch`` (also for even
    patch sizes).

    >>> sampler_axis(1, 4, 1, 0, 1, 2).displacements
    [-2, 0, 2, 4]
    """
    return AxisGeometry(
        pad_before=padding,
        pad_after=padding,
        stride=stride,
        kernel_size=kernel_size,
        kernel_dilation=dilation,
        disp_start=-((patch_size - 1) // 2) * dilation_patch,
        disp_count=patch_size,
        disp_step=dilation_patch,
    )
