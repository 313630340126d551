"""The registered operators of the ``torchcorr`` namespace.

``torch.ops.torchcorr.correlation(f1, f2, geometry, groups, mode, scale, backend)``
    The core correlation: (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo), see :mod:`torchcorr._geometry`
    for the sixteen ``geometry`` integers.  ``mode`` is ``"product"`` or ``"absdiff"``;
    ``backend`` a backend name or ``"auto"``.
``torch.ops.torchcorr.correlation_backward(grad, f1, f2, ..., need_f1, need_f2)``
    Its gradients with respect to both inputs (an input whose gradient is not needed gets an
    empty tensor).  Registered with its own autograd formula, so double backward works.
``torch.ops.torchcorr.correlation_sign_weighted(f1, f2, h1, h2, geometry, groups, scale)``
    ``scale * sum_c sign+(f1 - f2s) * (h1 - h2s)`` per displacement: the derivative of the
    absolute-difference backward with respect to its incoming gradient.

Each op has a fake kernel (output shapes from the geometry alone, symbolic sizes welcome) and an
autograd registration, so ``torch.compile``, ``torch.export`` and ``torch.library.opcheck`` see
them.  The real kernels come from the backend the dispatcher picks.

Plain eager calls reach the same kernels through :data:`SHORTCUT` (see :mod:`torchcorr._shortcut`),
without the op's dispatch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _shortcut
from ._geometry import Geometry
from .backends import pure, select

__all__ = ["SHORTCUT", "correlation", "correlation_backward", "correlation_sign_weighted"]


def _out_shape(f1: Tensor, geometry: Geometry, groups: int) -> tuple:
    ho, wo = geometry.out_hw(f1.shape[2], f1.shape[3])
    return (f1.shape[0], groups, geometry.y.disp_count, geometry.x.disp_count, ho, wo)


# --------------------------------------------------------------------------------------------
# correlation
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("torchcorr::correlation", mutates_args=())
def correlation(
    f1: Tensor, f2: Tensor, geometry: list[int], groups: int, mode: str, scale: float, backend: str
) -> Tensor:
    """Core correlation; see the module docstring."""
    return _forward(f1, f2, geometry, groups, mode, scale, backend)


def _forward(f1, f2, geometry, groups, mode, scale, backend) -> Tensor:
    g = Geometry.from_list(geometry)
    return select(backend, f1, f2, g, groups, mode).forward(f1, f2, g, groups, mode, scale)


@correlation.register_fake
def _correlation_fake(f1, f2, geometry, groups, mode, scale, backend):
    return f1.new_empty(_out_shape(f1, Geometry.from_list(geometry), groups))


def _correlation_setup(ctx, inputs, output) -> None:
    f1, f2, geometry, groups, mode, scale, backend = inputs
    ctx.save_for_backward(f1, f2)
    ctx.params = (geometry, groups, mode, scale, backend)


def _correlation_bwd(ctx, grad):
    f1, f2 = ctx.saved_tensors
    need1, need2 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    g1, g2 = correlation_backward(grad, f1, f2, *ctx.params, need1, need2)
    return (g1 if need1 else None), (g2 if need2 else None), None, None, None, None, None


correlation.register_autograd(_correlation_bwd, setup_context=_correlation_setup)


# --------------------------------------------------------------------------------------------
# correlation_backward
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("torchcorr::correlation_backward", mutates_args=())
def correlation_backward(
    grad: Tensor,
    f1: Tensor,
    f2: Tensor,
    geometry: list[int],
    groups: int,
    mode: str,
    scale: float,
    backend: str,
    need_f1: bool,
    need_f2: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`correlation` with respect to ``f1`` and ``f2``."""
    g1, g2 = _backward(grad, f1, f2, geometry, groups, mode, scale, backend, need_f1, need_f2)
    empty = f1.new_empty(0)
    return (g1 if g1 is not None else empty), (g2 if g2 is not None else empty.clone())


def _backward(grad, f1, f2, geometry, groups, mode, scale, backend, need_f1, need_f2):
    g = Geometry.from_list(geometry)
    impl = select(backend, f1, f2, g, groups, mode)
    return impl.backward(grad.contiguous(), f1, f2, g, groups, mode, scale, need_f1, need_f2)


@correlation_backward.register_fake
def _correlation_backward_fake(grad, f1, f2, geometry, groups, mode, scale, backend, need_f1, need_f2):
    return (
        f1.new_empty(f1.shape if need_f1 else (0,)),
        f2.new_empty(f2.shape if need_f2 else (0,)),
    )


def _backward_setup(ctx, inputs, output) -> None:
    grad, f1, f2, geometry, groups, mode, scale, backend, need_f1, need_f2 = inputs
    ctx.save_for_backward(grad, f1, f2)
    ctx.params = (geometry, groups, mode, scale, backend)
    ctx.needs = (need_f1, need_f2)


def _backward_bwd(ctx, gg1, gg2):
    """Double backward.

    Product: the op is bilinear, so with cotangents ``gg1`` (of grad_f1) and ``gg2`` (of grad_f2)
    d/dgrad = corr(gg1, f2) + corr(f1, gg2), d/df1 = grad_f1 of corr(., gg2), d/df2 = grad_f2 of
    corr(gg1, .).  Absolute difference: the backward is piecewise constant in f1, f2 (zero
    derivative almost everywhere) and linear in grad.
    """
    grad, f1, f2 = ctx.saved_tensors
    geometry, groups, mode, scale, backend = ctx.params
    need1, need2 = ctx.needs
    has1 = need1 and gg1 is not None and gg1.numel() == f1.numel()
    has2 = need2 and gg2 is not None and gg2.numel() == f2.numel()
    h1 = gg1 if has1 else torch.zeros_like(f1)
    h2 = gg2 if has2 else torch.zeros_like(f2)
    d_grad = d_f1 = d_f2 = None
    if mode == "product":
        if ctx.needs_input_grad[0]:
            terms = []
            if has1:
                terms.append(correlation(h1, f2, geometry, groups, mode, scale, backend))
            if has2:
                terms.append(correlation(f1, h2, geometry, groups, mode, scale, backend))
            d_grad = sum(terms[1:], terms[0]) if terms else torch.zeros_like(grad)
        want1, want2 = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if want1 or want2:
            # grad_f1 of corr(f1, h2) is B1(grad, h2); grad_f2 of corr(h1, f2) is B2(grad, h1)
            a, b = correlation_backward(grad, h1, h2, geometry, groups, mode, scale, backend, want1, want2)
            d_f1 = a if want1 else None
            d_f2 = b if want2 else None
    else:
        if ctx.needs_input_grad[0]:
            d_grad = correlation_sign_weighted(f1, f2, h1, h2, geometry, groups, scale)
        if ctx.needs_input_grad[1]:
            d_f1 = torch.zeros_like(f1)
        if ctx.needs_input_grad[2]:
            d_f2 = torch.zeros_like(f2)
    return d_grad, d_f1, d_f2, None, None, None, None, None, None, None


correlation_backward.register_autograd(_backward_bwd, setup_context=_backward_setup)

#: :func:`correlation` for plain eager calls (:func:`torchcorr._shortcut.call`)
SHORTCUT = _shortcut.Route(_forward, _backward, correlation_backward)


# --------------------------------------------------------------------------------------------
# correlation_sign_weighted (absolute-difference double backward)
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("torchcorr::correlation_sign_weighted", mutates_args=())
def correlation_sign_weighted(
    f1: Tensor, f2: Tensor, h1: Tensor, h2: Tensor, geometry: list[int], groups: int, scale: float
) -> Tensor:
    """``scale * sum_c sign+(f1 - f2s) * (h1 - h2s)``, shaped like :func:`correlation`'s output."""
    return pure.sign_weighted(f1, f2, h1, h2, Geometry.from_list(geometry), groups, scale)


@correlation_sign_weighted.register_fake
def _sign_weighted_fake(f1, f2, h1, h2, geometry, groups, scale):
    return f1.new_empty(_out_shape(f1, Geometry.from_list(geometry), groups))


def _sign_weighted_setup(ctx, inputs, output) -> None:
    f1, f2, _h1, _h2, geometry, groups, scale = inputs
    ctx.save_for_backward(f1, f2)
    ctx.params = (geometry, groups, scale)


def _sign_weighted_bwd(ctx, grad):
    # linear in (h1, h2) with the absolute-difference backward as its adjoint; flat in (f1, f2)
    f1, f2 = ctx.saved_tensors
    geometry, groups, scale = ctx.params
    n = ctx.needs_input_grad
    d_h1, d_h2 = correlation_backward(grad, f1, f2, geometry, groups, "absdiff", scale, "torch", n[2], n[3])
    return (
        torch.zeros_like(f1) if n[0] else None,
        torch.zeros_like(f2) if n[1] else None,
        d_h1 if n[2] else None,
        d_h2 if n[3] else None,
        None,
        None,
        None,
    )


correlation_sign_weighted.register_autograd(_sign_weighted_bwd, setup_context=_sign_weighted_setup)
