"""Benchmark workloads: the real configurations of ``shared/spec/workloads.md``, one setup factory each.

A :class:`Workload` holds an id (``"W1"``), a title, the useful floating-point operations of one
forward pass (2 x the multiply-adds the definition needs; the backward counts twice that), a setup
factory and named implementations.

* ``setup(quick) -> dict`` builds the inputs (float32, CPU).  ``quick=True`` gives tiny sizes for
  smoke tests; the flops then come from ``flops(quick)``.
* ``impls`` maps a name to a function ``inputs -> Tensor`` (the forward; the harness calls
  ``.backward`` on its result).  Names ``"torchcorr[<backend>]"`` are ours per backend (the harness
  keeps those whose backend the user asked for); anything else is a baseline, e.g. the naive
  shift-and-multiply loop or ``spatial-correlation-sampler`` when it is importable.

How another family adds its workloads (W5-W9): in a module of this package (``raft.py``, say),
build :class:`Workload` objects and call :func:`register` on each at import time, then add the
module name to :data:`FAMILIES` below.  For example::

    from .workloads import Workload, register, ours

    def _setup(quick):
        c, h, w = (8, 12, 16) if quick else (256, 55, 128)
        return {"f1": torch.randn(1, c, h, w), "f2": torch.randn(1, c, h, w)}

    register(Workload(
        id="W5", title="RAFT lookup", flops=lambda quick: ...,
        setup=_setup,
        impls={**ours(lambda x, backend: my_op(x["f1"], x["f2"], backend=backend)),
               "reference loop": lambda x: ...},
    ))

Every tensor in the dict that is a floating tensor gets ``requires_grad`` for the backward timing;
name a tensor with a leading underscore to keep it out of that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FAMILIES", "REGISTRY", "Workload", "all_workloads", "ours", "register", "shift_loop"]

Inputs = dict[str, Tensor]


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration."""

    id: str
    title: str
    flops: Callable[[bool], float]
    setup: Callable[[bool], Inputs]
    impls: dict[str, Callable[[Inputs], Tensor]] = field(default_factory=dict)
    params: str = ""


#: workload id -> workload, in registration order
REGISTRY: dict[str, Workload] = {}

#: modules of this package that register workloads when imported
FAMILIES: list[str] = ["torchcorr.bench.workloads", "torchcorr.bench.raft", "torchcorr.bench.volumes"]


def register(workload: Workload) -> Workload:
    """Add (or replace) a workload in :data:`REGISTRY`."""
    REGISTRY[workload.id] = workload
    return workload


def all_workloads() -> dict[str, Workload]:
    """Import every family in :data:`FAMILIES` and return the registry."""
    for name in FAMILIES:
        try:
            importlib.import_module(name)
        except ImportError:  # a family whose module has not landed yet
            continue
    return REGISTRY


def ours(fn: Callable[[Inputs, str], Tensor]) -> dict[str, Callable[[Inputs], Tensor]]:
    """One implementation per torchcorr backend: ``torchcorr[cpu]``, ``torchcorr[torch]``, ..."""
    from ..backends import resolve_names

    return {f"torchcorr[{name}]": (lambda x, _n=name: fn(x, _n)) for name in resolve_names()}


# --------------------------------------------------------------------------------------------
# FlowNet correlation (W1-W4)
# --------------------------------------------------------------------------------------------


def shift_loop(
    f1: Tensor, f2: Tensor, pad: int, kernel_size: int, max_displacement: int, stride1: int, stride2: int
) -> Tensor:
    """The naive pure-PyTorch shift-and-multiply loop (the baseline users write), FlowNet semantics.

    Builds every displacement's product map and stacks them: (B, D*D, Ho, Wo), mean over channels
    and window.
    """
    h, w = f1.shape[2], f1.shape[3]
    kr = (kernel_size - 1) // 2
    border = max_displacement + kr
    ho = -(-(h + 2 * pad - 2 * border) // stride1)
    wo = -(-(w + 2 * pad - 2 * border) // stride1)
    p1 = F.pad(f1, (pad, pad, pad, pad))
    p2 = F.pad(f2, (pad, pad, pad, pad))
    r = max_displacement // stride2
    maps = []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ys, xs = max_displacement, max_displacement
            a = p1[:, :, ys : ys + (ho - 1) * stride1 + kernel_size, xs : xs + (wo - 1) * stride1 + kernel_size]
            y2, x2 = ys + dy * stride2, xs + dx * stride2
            bb = p2[:, :, y2 : y2 + a.shape[2], x2 : x2 + a.shape[3]]
            prod = (a * bb).mean(1, keepdim=True)
            if kernel_size > 1:
                prod = F.avg_pool2d(prod, kernel_size, stride=stride1)
            else:
                prod = prod[:, :, ::stride1, ::stride1]
            maps.append(prod)
    return torch.cat(maps, 1)


def _flownet(
    wid: str, title: str, b: int, c: int, h: int, w: int, k: int, md: int, s1: int, s2: int, pad: int
) -> Workload:
    def sizes(quick: bool) -> tuple[int, int, int, int, int, int]:
        if quick:
            return 1, max(4, c // 32), max(2 * md + k + 2, h // 8), max(2 * md + k + 2, w // 8), md, pad
        return b, c, h, w, md, pad

    def setup(quick: bool) -> Inputs:
        bb, cc, hh, ww, _, _ = sizes(quick)
        g = torch.Generator().manual_seed(0)
        return {"f1": torch.randn(bb, cc, hh, ww, generator=g), "f2": torch.randn(bb, cc, hh, ww, generator=g)}

    def flops(quick: bool) -> float:
        from .._geometry import flownet_output_size

        bb, cc, hh, ww, m, p = sizes(quick)
        d = 2 * (m // s2) + 1
        ho = flownet_output_size(hh, p, k, m, s1)
        wo = flownet_output_size(ww, p, k, m, s1)
        return 2.0 * bb * d * d * ho * wo * cc * k * k

    def run_ours(x: Inputs, backend: str) -> Tensor:
        from .._geometry import Geometry, flownet_axis
        from ..functional import correlate

        axis = flownet_axis(pad, k, md, s1, s2)
        scale = 1.0 / (k * k * x["f1"].shape[1])
        return correlate(x["f1"], x["f2"], Geometry(axis, axis), scale=scale, backend=backend).flatten(1, 3)

    impls: dict[str, Callable[[Inputs], Tensor]] = {
        **ours(run_ours),
        "shift loop": lambda x: shift_loop(x["f1"], x["f2"], pad, k, md, s1, s2),
    }
    try:  # optional comparison, never a dependency
        from spatial_correlation_sampler import spatial_correlation_sample

        def run_sampler(x: Inputs) -> Tensor:
            out = spatial_correlation_sample(
                x["f1"],
                x["f2"],
                kernel_size=k,
                patch_size=2 * (md // s2) + 1,
                stride=s1,
                padding=pad - md,
                dilation_patch=s2,
            )
            return out.flatten(1, 2) / (k * k * x["f1"].shape[1])

        impls["spatial-correlation-sampler"] = run_sampler
    except ImportError:
        pass
    params = f"B={b} C={c} {h}x{w} k={k} md={md} s1={s1} s2={s2} pad={pad}"
    return Workload(wid, title, flops, setup, impls, params)


register(_flownet("W1", "FlowNetC", 2, 256, 48, 64, 1, 20, 1, 2, 20))
register(_flownet("W2", "PWC-Net, fine level", 2, 32, 112, 256, 1, 4, 1, 1, 4))
register(_flownet("W3", "PWC-Net, coarse level", 4, 128, 28, 64, 1, 4, 1, 1, 4))
register(_flownet("W4", "patch comparison", 2, 64, 64, 64, 3, 4, 1, 1, 5))
