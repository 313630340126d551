"""The eager shortcut: a registered op's kernels called without the op's dispatch.

Every registered op of the ``torchcorr`` namespace (:mod:`torchcorr.ops`, the RAFT lookup) is what
``torch.compile``, ``torch.export``, ``torch.jit.trace``, ``torch.func`` transforms, fake tensors and
dispatch modes must see.  A plain eager call needs none of that, and going through a Python custom
op's dispatch (its autograd wrapper, argument checks, the redispatch to the kernel, the same again
for the backward op) costs about 0.2 ms per forward + backward on the CPU: as much as the kernels of
a small pyramid level, and 48 times per RAFT step's lookups.  Where :func:`usable` finds nothing
watching, the faces call :func:`call` instead: an ``autograd.Function`` around the same functions
the op runs, with the same results.  A backward that builds a graph (``create_graph=True``) goes
through the registered backward op, which carries the double backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Route", "call", "usable"]

_PLAIN = (Tensor, torch.nn.Parameter)


class Route(NamedTuple):
    """What the shortcut runs for one op.

    ``forward(*tensors, *params)``: the op's forward.  ``backward(grad, *tensors, *params,
    *needs)``: its backward, one gradient (or ``None``) per tensor; ``backward_op``: the same as a
    registered op, used when the backward must itself be differentiable.
    """

    forward: Callable[..., Tensor]
    backward: Callable[..., tuple]
    backward_op: Callable[..., tuple]


def _stack_empty(name: str) -> bool:
    """Whether the mode stack ``torch._C.<name>`` measures is empty (unknown: not empty)."""
    length = getattr(torch._C, name, None)
    return length is not None and length() == 0


def usable(*tensors: Tensor) -> bool:
    """Whether a call may skip the registered op: nothing is tracing, transforming or watching it.

    ``False`` under ``torch.compile`` / ``torch.export`` (they must see the op), ``torch.jit``
    tracing, ``torch.func`` transforms, any dispatch or ``__torch_function__`` mode (fake tensors,
    FLOP counters, ``with torch.device(...)``), and for tensor subclasses.
    """
    functorch = getattr(torch._C, "_are_functorch_transforms_active", None)
    return (
        all(type(t) in _PLAIN for t in tensors)
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and functorch is not None
        and not functorch()
        and _stack_empty("_len_torch_dispatch_stack")
        and _stack_empty("_len_torch_function_stack")
    )


class _Shortcut(torch.autograd.Function):
    """A registered op's forward and backward, run directly (see the module docstring)."""

    @staticmethod
    def forward(ctx, route: Route, n: int, *args):
        ctx.route, ctx.params = route, args[n:]
        ctx.save_for_backward(*args[:n])
        return route.forward(*args)

    @staticmethod
    def backward(ctx, grad):
        tensors = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[2 : 2 + len(tensors)])
        run = ctx.route.backward_op if torch.is_grad_enabled() else ctx.route.backward
        grads = run(grad, *tensors, *ctx.params, *needs)
        kept = (g if need else None for g, need in zip(grads, needs, strict=True))
        return (None, None, *kept, *(None,) * len(ctx.params))


def call(route: Route, tensors: tuple[Tensor, ...], params: tuple) -> Tensor:
    """``route.forward(*tensors, *params)``, differentiable in ``tensors`` (only where :func:`usable`)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Shortcut.apply(route, len(tensors), *tensors, *params)
    return route.forward(*tensors, *params)
