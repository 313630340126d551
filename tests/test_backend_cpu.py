"""The numba CPU backend against the float64 loop reference and the pure backend."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchcorr import backends
from torchcorr._geometry import AxisGeometry, Geometry, flownet_axis
from torchcorr.backends import pure

from .reference.correlation import general_reference, general_reference_grad

cpu = pytest.importorskip("torchcorr.backends.cpu")
if cpu.available() is not None:  # numba missing: the fallback tests below still run
    HAVE = False
else:
    HAVE = True
needs_numba = pytest.mark.skipif(not HAVE, reason="numba is not installed")

HYP = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def axis(draw):
    k = draw(st.integers(1, 3))
    return AxisGeometry(
        pad_before=draw(st.integers(-1, 3)),
        pad_after=draw(st.integers(-1, 3)),
        stride=draw(st.integers(1, 3)),
        kernel_size=k,
        kernel_dilation=draw(st.integers(1, 2)),
        disp_start=draw(st.integers(-3, 3)),
        disp_count=draw(st.integers(1, 5)),
        disp_step=draw(st.sampled_from([-2, -1, 1, 2, 3])),
    )


@st.composite
def problem(draw):
    gy, gx = draw(axis()), draw(axis())
    groups = draw(st.sampled_from([1, 2]))
    c = groups * draw(st.integers(1, 5))
    h = draw(st.integers(max(1, gy.span - gy.pad_before - gy.pad_after), 8))
    w = draw(st.integers(max(1, gx.span - gx.pad_before - gx.pad_after), 9))
    b = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["product", "absdiff"]))
    return Geometry(gy, gx), groups, (b, c, h, w), mode


def _inputs(shape, dtype=torch.float64, seed=0, ties=False):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(*shape, generator=g, dtype=torch.float64)
    f2 = torch.randn(*shape, generator=g, dtype=torch.float64)
    if ties:  # equal values exercise the sign(0) convention of the absolute difference
        f1, f2 = f1.round(), f2.round()
    return f1.to(dtype), f2.to(dtype)


@needs_numba
@HYP
@given(problem(), st.booleans())
def test_against_reference_float64(prob, ties):
    geometry, groups, shape, mode = prob
    f1, f2 = _inputs(shape, ties=ties)
    out = cpu.forward(f1, f2, geometry, groups, mode, 0.7)
    ref = general_reference(f1, f2, geometry.as_list(), groups, mode, 0.7)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g1, g2 = cpu.backward(grad, f1, f2, geometry, groups, mode, 0.7)
    r1, r2 = general_reference_grad(f1, f2, grad, geometry.as_list(), groups, mode, 0.7)
    np.testing.assert_allclose(g1.numpy(), r1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), r2, rtol=1e-10, atol=1e-12)


@needs_numba
@HYP
@given(problem())
def test_float32_matches_pure(prob):
    geometry, groups, shape, mode = prob
    f1, f2 = _inputs(shape, torch.float32, seed=3)
    out = cpu.forward(f1, f2, geometry, groups, mode, 1.0)
    torch.testing.assert_close(out, pure.forward(f1, f2, geometry, groups, mode, 1.0), rtol=1e-5, atol=1e-5)
    grad = torch.randn(out.shape)
    a1, b1 = cpu.backward(grad, f1, f2, geometry, groups, mode, 1.0)
    a2, b2 = pure.backward(grad, f1, f2, geometry, groups, mode, 1.0)
    torch.testing.assert_close(a1, a2, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(b1, b2, rtol=1e-5, atol=1e-4)


def _assert_product_matches_reference(f1, f2, geometry, groups=1, scale=1.0, inputs=None):
    """Forward and both gradients of the cpu backend's product against the float64 loops.

    ``inputs``: other tensors to run the backend on (the reference always reads ``f1``, ``f2``).
    """
    a, b = inputs if inputs is not None else (f1, f2)
    out = cpu.forward(a, b, geometry, groups, "product", scale)
    ref = general_reference(f1, f2, geometry.as_list(), groups, "product", scale)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    r1, r2 = general_reference_grad(f1, f2, grad, geometry.as_list(), groups, "product", scale)
    g1, g2 = cpu.backward(grad, a, b, geometry, groups, "product", scale)
    np.testing.assert_allclose(g1.numpy(), r1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), r2, rtol=1e-10, atol=1e-12)
    return grad, r1, r2


@st.composite
def fast_problem(draw):
    """Product-mode problems on the pixel-vectorised path (a unit pixel step: stride 1, or a window
    larger than one tap), wide enough for whole pixel blocks, a ragged last block, paired rows and
    every channel block size."""
    k = draw(st.integers(1, 3))

    def axis_(horizontal):
        return AxisGeometry(
            pad_before=draw(st.integers(-1, 4)),
            pad_after=draw(st.integers(-1, 4)),
            stride=1 if (k == 1 and horizontal) else draw(st.integers(1, 2)),
            kernel_size=k,
            kernel_dilation=draw(st.integers(1, 2)),
            disp_start=draw(st.integers(-4, 2)),
            disp_count=draw(st.integers(1, 11)),
            disp_step=draw(st.sampled_from([-2, -1, 1, 2, 3])),
        )

    gy, gx = axis_(False), axis_(True)
    groups = draw(st.sampled_from([1, 2, 3]))
    c = groups * draw(st.one_of(st.integers(1, 11), st.sampled_from([12, 14, 27])))  # blocks 12/8/4/2/1
    h = draw(st.integers(max(1, gy.span - gy.pad_before - gy.pad_after), 9))
    w = draw(st.integers(max(8, gx.span - gx.pad_before - gx.pad_after), 27))
    return Geometry(gy, gx), groups, (draw(st.integers(1, 2)), c, h, w)


@needs_numba
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fast_problem(),
    st.sampled_from([0, 1, 2, 3]),
    st.booleans(),
    st.sampled_from([-1, 0, 1, 2]),
    st.sampled_from([2, 3]),
    st.booleans(),
)
def test_fast_path_against_reference(prob, packed, ahead, ring, rows, stream):
    """``packed``: the three-row gradients read the incoming gradient from copies packed that many
    blocks of pixels at a time (as they do from ``PACK_CHANNELS`` channels per group), or where it
    lies (0); ``ahead``: packing prefetches the next copy's lines (as up to ``PREFETCH_CHANNELS``);
    ``ring``: rows of ``f2`` in each forward thread's ring (0: the caller's copy of all of ``f2``; 1
    or 2: fewer than a task reads, so rows are copied again; -1: as ``ring_rows`` chooses);
    ``rows``: output rows per forward block where rows share ``f2`` rows; ``stream``: the forward
    writes with streaming stores whatever the output's size, where its rows hold whole blocks."""
    geometry, groups, shape = prob
    f1, f2 = _inputs(shape, seed=5)
    xk = cpu._xkernels
    saved = xk.PACK_CHANNELS, xk.PACK_BLOCKS, xk.PREFETCH_CHANNELS, xk.ring_rows, xk.FORWARD_ROWS, xk.STREAM_BYTES
    xk.FORWARD_ROWS = rows
    xk.STREAM_BYTES = 0 if stream else 1 << 62
    xk.PACK_CHANNELS = 0 if packed else 10**9
    xk.PACK_BLOCKS = max(packed, 1)
    xk.PREFETCH_CHANNELS = 10**9 if ahead else -1
    if ring >= 0:
        xk.ring_rows = lambda *a: ring
    uninitialised = cpu._uninitialised
    # the kernels must zero every element of the gradients they are handed uninitialised
    cpu._uninitialised = lambda shape, dtype: torch.full(shape, float("nan"), dtype=dtype)
    try:
        grad, r1, r2 = _assert_product_matches_reference(f1, f2, geometry, groups, 0.3)
        # one gradient alone takes other routes through the backward
        only1, none2 = cpu.backward(grad, f1, f2, geometry, groups, "product", 0.3, need_f2=False)
        none1, only2 = cpu.backward(grad, f1, f2, geometry, groups, "product", 0.3, need_f1=False)
    finally:
        xk.PACK_CHANNELS, xk.PACK_BLOCKS, xk.PREFETCH_CHANNELS, xk.ring_rows, xk.FORWARD_ROWS, xk.STREAM_BYTES = saved
        cpu._uninitialised = uninitialised
    assert none1 is None and none2 is None
    np.testing.assert_allclose(only1.numpy(), r1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(only2.numpy(), r2, rtol=1e-10, atol=1e-12)


def _spy_drivers(monkeypatch, template: str, arg: int) -> list:
    """``(gradient, argument arg)`` of every call of the two gradient drivers ``template.format(grad=...)``."""
    xk = cpu._xkernels
    seen = []
    for grad in ("f1", "f2"):
        name = template.format(grad=grad)
        real = getattr(xk.xv, name)
        monkeypatch.setattr(xk.xv, name, lambda *a, _g=grad, _r=real: seen.append((_g, a[arg])) or _r(*a))
    return seen


@needs_numba
@pytest.mark.parametrize(
    "geometry, groups, shape, streamed",
    [
        (Geometry(flownet_axis(4, 1, 4, 1, 1), flownet_axis(4, 1, 4, 1, 1)), 1, (2, 32, 11, 32), ["f1", "f2"]),
        (Geometry(flownet_axis(2, 1, 2, 1, 2), flownet_axis(2, 1, 2, 1, 2)), 2, (1, 44, 10, 48), ["f1", "f2"]),
        # rows no output row reads (row stride 2); the f2 gradient then runs one row at a time
        (
            Geometry(AxisGeometry(0, 0, 2, 1, 1, -2, 3, 2), AxisGeometry(0, 0, 1, 1, 1, -3, 7, 1)),
            1,
            (1, 16, 13, 16),
            ["f1"],
        ),
    ],
)
def test_gradient_streaming_stores(monkeypatch, geometry, groups, shape, streamed):
    """Where a gradient's blocks tile its rows, nothing is zeroed first: a whole block writes its
    sums with streaming stores, or (where it reads masked displacements) stores its first sum and
    adds the masked ones: every element still right (NaN-filled buffers), and both drivers were
    asked to stream."""
    xk = cpu._xkernels
    monkeypatch.setattr(xk, "GRAD_STREAM_BYTES", 0)
    monkeypatch.setattr(xk, "PACK_CHANNELS", 0)
    monkeypatch.setattr(cpu, "_uninitialised", lambda shape, dtype: torch.full(shape, float("nan"), dtype=dtype))
    zeros = _spy_drivers(monkeypatch, f"grad_{{grad}}_triple_c{xk.XC3_SIZES[0]}", -1)
    f1, f2 = _inputs(shape, seed=3)
    _assert_product_matches_reference(f1, f2, geometry, groups, 0.7)
    assert sorted(zeros) == [(grad, 2) for grad in streamed]


@st.composite
def cv_problem(draw):
    """float32 product problems on the channel-vectorised gradients: one-tap windows, unit pixel
    steps, horizontal displacement steps of +-1, 1, 3 or 9 (``XT_MAX``) horizontal displacements and
    16 or 32 channels per group; pads and displacements that leave output pixels or whole rows
    reading outside the maps, rows of the map that no output row reads, ragged last blocks."""

    def axis_(horizontal):
        return AxisGeometry(
            pad_before=draw(st.integers(-2, 5)),
            pad_after=draw(st.integers(-2, 5)),
            stride=1,
            kernel_size=1,
            kernel_dilation=1,
            disp_start=draw(st.integers(-6, 4)),
            # each horizontal count compiles drivers of its own (seconds each): 1, fewer and more than
            # a block's pixels; the code for every count comes from one template
            disp_count=draw(st.sampled_from([1, 3, 9]) if horizontal else st.integers(1, 9)),
            disp_step=draw(st.sampled_from([-1, 1] if horizontal else [-3, -1, 1, 2])),
        )

    gy, gx = axis_(False), axis_(True)
    groups = draw(st.sampled_from([1, 2]))
    c = groups * draw(st.sampled_from([16, 32]))
    h = draw(st.integers(max(1, 1 - gy.pad_before - gy.pad_after), 9))
    # rows of whole vectors too, where the gradients may take streaming stores
    w = draw(st.integers(max(1, 1 - gx.pad_before - gx.pad_after), 41) | st.sampled_from([16, 32, 48]))
    return Geometry(gy, gx), groups, (draw(st.integers(1, 2)), c, h, w)


def _spy_cv(monkeypatch) -> list[str]:
    calls = []
    for name in ("grad_f1_cv", "grad_f2_cv"):
        real = getattr(cpu._xkernels, name)
        monkeypatch.setattr(cpu._xkernels, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    return calls


@needs_numba
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(cv_problem(), st.sampled_from(["contiguous", "channels_last"]), st.booleans())
def test_channel_vectorised_gradients_against_reference(monkeypatch, prob, layout, stream):
    """Both gradients, and each alone, against the float64 loops (at float32's precision), every
    element written (NaN-filled buffers), on the channel-vectorised path; with ``stream``, every
    gradient whose rows start lines takes streaming stores."""
    geometry, groups, shape = prob
    monkeypatch.setattr(cpu._xkernels, "GRAD_STREAM_BYTES", 0 if stream else 1 << 62)
    f1, f2 = _inputs(shape, seed=7)
    dims = (shape[0], groups, geometry.y.disp_count, geometry.x.disp_count, *geometry.out_hw(*shape[2:]))
    grad = torch.randn(dims, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    r1, r2 = general_reference_grad(f1, f2, grad, geometry.as_list(), groups, "product", 0.3)
    a, b, g = f1.float(), f2.float(), grad.float()
    if layout == "channels_last":
        a, b = a.to(memory_format=torch.channels_last), b.to(memory_format=torch.channels_last)
    monkeypatch.setattr(cpu, "_uninitialised", lambda shape, dtype: torch.full(shape, float("nan"), dtype=dtype))
    calls = _spy_cv(monkeypatch)
    g1, g2 = cpu.backward(g, a, b, geometry, groups, "product", 0.3)
    only1, none2 = cpu.backward(g, a, b, geometry, groups, "product", 0.3, need_f2=False)
    none1, only2 = cpu.backward(g, a, b, geometry, groups, "product", 0.3, need_f1=False)
    assert none1 is None and none2 is None
    assert sorted(calls) == ["grad_f1_cv", "grad_f1_cv", "grad_f2_cv", "grad_f2_cv"]
    tol = 1e-5 * (1 + float(np.abs(r1).max()) + float(np.abs(r2).max()))
    for x, ref in ((g1, r1), (only1, r1), (g2, r2), (only2, r2)):
        np.testing.assert_allclose(x.double().numpy(), ref, rtol=1e-5, atol=tol)


@needs_numba
@pytest.mark.parametrize("shape, geo", [((2, 32, 7, 32), (4, 1, 4, 1, 1)), ((1, 16, 5, 48), (2, 1, 1, 1, 1))])
def test_channel_vectorised_gradients_stream(monkeypatch, shape, geo):
    """Gradients whose rows start lines, from ``GRAD_STREAM_BYTES`` on, are written with streaming
    stores (both drivers asked to), every element right (NaN-filled buffers)."""
    xk = cpu._xkernels
    monkeypatch.setattr(xk, "GRAD_STREAM_BYTES", 0)
    monkeypatch.setattr(cpu, "_uninitialised", lambda shape, dtype: torch.full(shape, float("nan"), dtype=dtype))
    geometry = _flownet(*geo)
    streams = _spy_drivers(monkeypatch, f"grad_{{grad}}_cv_t{geometry.x.disp_count}", -2)
    f1, f2 = _inputs(shape, seed=5)
    a, b = f1.float(), f2.float()
    out = cpu.forward(a, b, geometry, 1, "product", 0.5)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    r1, r2 = general_reference_grad(f1, f2, grad, geometry.as_list(), 1, "product", 0.5)
    g1, g2 = cpu.backward(grad.float(), a, b, geometry, 1, "product", 0.5)
    assert sorted(streams) == [("f1", 1), ("f2", 1)]
    tol = 1e-5 * (1 + float(np.abs(r1).max()) + float(np.abs(r2).max()))
    np.testing.assert_allclose(g1.double().numpy(), r1, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(g2.double().numpy(), r2, rtol=1e-5, atol=tol)


@needs_numba
@pytest.mark.parametrize(
    "dtype, c, geo, taken",
    [
        (torch.float32, 32, (4, 1, 4, 1, 1), True),  # W2's shape of problem
        (torch.float32, 16, (1, 1, 1, 1, 1), True),  # three displacements a row
        (torch.float64, 32, (4, 1, 4, 1, 1), False),  # the sums are float32 kernels
        (torch.float32, 64, (4, 1, 4, 1, 1), False),  # more channels: the pixel-vectorised sums win
        (torch.float32, 20, (4, 1, 4, 1, 1), False),  # not whole vectors of channels (of 8 or 16)
        (torch.float32, 32, (5, 1, 5, 1, 1), False),  # 11 displacements a row
        (torch.float32, 32, (4, 1, 4, 1, 2), False),  # displacement step 2
        (torch.float32, 32, (5, 3, 4, 1, 1), False),  # a 3 x 3 window
    ],
)
def test_channel_vectorised_gradients_are_chosen(monkeypatch, dtype, c, geo, taken):
    calls = _spy_cv(monkeypatch)
    f1, f2 = _inputs((1, c, 6, 20), dtype)
    geometry = _flownet(*geo)
    out = cpu.forward(f1, f2, geometry, 1, "product", 1.0)
    cpu.backward(torch.ones_like(out), f1, f2, geometry, 1, "product", 1.0)
    assert calls == (["grad_f1_cv", "grad_f2_cv"] if taken else [])


@needs_numba
def test_fast_path_is_taken_for_the_product_on_a_unit_step(monkeypatch):
    calls = []
    for name in ("forward", "grad_f1", "grad_f2"):
        real = getattr(cpu._xkernels, name)
        monkeypatch.setattr(cpu._xkernels, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    f1, f2 = _inputs((1, 9, 6, 19), torch.float32)
    unit, strided = _flownet(4, 1, 4, 1, 1), _flownet(4, 1, 4, 2, 1)
    out = cpu.forward(f1, f2, unit, 1, "product", 1.0)
    cpu.backward(torch.ones_like(out), f1, f2, unit, 1, "product", 1.0)
    assert set(calls) == {"forward", "grad_f1", "grad_f2"}
    calls.clear()
    for geometry, mode in ((unit, "absdiff"), (strided, "product")):  # the channel-vectorised kernels
        out = cpu.forward(f1, f2, geometry, 1, mode, 1.0)
        cpu.backward(torch.ones_like(out), f1, f2, geometry, 1, mode, 1.0)
    assert calls == []


@needs_numba
@pytest.mark.parametrize("triple", ["packed", "in place", False])
@pytest.mark.parametrize("geo", [(4, 1, 4, 1, 1), (6, 1, 6, 1, 2)])
def test_fast_path_gradients_three_rows_and_two(monkeypatch, triple, geo):
    """The gradients run three rows at a time on blocks of 8 channels (reading the incoming
    gradient from packed copies, or where it lies) and pairs on the channels left over
    (19 = 16 + 3), or pairs throughout: each against the reference, on a map whose height leaves a
    last group of one row."""
    from torchcorr.backends import _cpu_xvec

    calls = []
    for name in ("grad_f1_triple_c8", "grad_f2_triple_c8"):
        real = getattr(_cpu_xvec, name)
        monkeypatch.setattr(_cpu_xvec, name, lambda *a, _n=name, _r=real: calls.append((_n, a[-3] > 0)) or _r(*a))
    monkeypatch.setattr(cpu._xkernels, "TRIPLE", bool(triple))
    monkeypatch.setattr(cpu._xkernels, "PACK_CHANNELS", 0 if triple == "packed" else 10**9)
    f1, f2 = _inputs((2, 19, 7, 21))
    _assert_product_matches_reference(f1, f2, _flownet(*geo))
    packed = triple == "packed"
    assert sorted(calls) == ([("grad_f1_triple_c8", packed), ("grad_f2_triple_c8", packed)] if triple else [])


@needs_numba
@pytest.mark.parametrize("rows", [2, 3])
@pytest.mark.parametrize("geo", [(4, 1, 4, 1, 1), (6, 1, 4, 1, 1), (6, 1, 6, 1, 2)])
@pytest.mark.parametrize("height", [7, 8])
def test_fast_path_forward_rows(monkeypatch, rows, geo, height):
    """The forward runs two or three output rows per block where they read the same ``f2`` rows,
    and fewer at the displacement rows only some of them reach, in tasks the last of which holds
    one or two rows (heights 7 and 8); with a padding wider than the displacements (6 against 4),
    the first and last output rows lie outside ``f1``."""
    xk = cpu._xkernels
    used = []
    real = xk.forward_rows
    monkeypatch.setattr(xk, "forward_rows", lambda pair: used.append(real(pair)) or used[-1])
    monkeypatch.setattr(xk, "FORWARD_ROWS", rows)
    f1, f2 = _inputs((2, 3, height, 21))
    _assert_product_matches_reference(f1, f2, _flownet(*geo))
    assert used and set(used) == {rows}


@needs_numba
@pytest.mark.parametrize("width", [32, 33])
def test_fast_path_forward_streams_whole_rows(monkeypatch, width):
    """From ``STREAM_BYTES`` on (here always) the forward writes its result with streaming stores
    where every output row holds whole blocks of pixels (32 columns), else with plain ones (33);
    the results match the reference either way."""
    from torchcorr.backends import _cpu_xvec

    xk = cpu._xkernels
    monkeypatch.setattr(xk, "STREAM_BYTES", 0)
    streams = []
    real = _cpu_xvec.forward_r3t5
    monkeypatch.setattr(_cpu_xvec, "forward_r3t5", lambda *a: streams.append(a[-2]) or real(*a))
    f1, f2 = _inputs((2, 3, 7, width))
    ahead = _flownet(2, 1, 2, 1, 1)  # output rows as wide as the map
    x = ahead.x
    backwards = Geometry(ahead.y, AxisGeometry(x.pad_before, x.pad_after, 1, 1, 1, -x.disp_start, 5, -1))
    for geometry in (ahead, backwards):  # the second writes its displacements in reverse order
        _assert_product_matches_reference(f1, f2, geometry)
    assert streams == [int(width % cpu._LANES == 0)] * 2


@needs_numba
def test_fast_path_ignores_values_nothing_reads():
    """Columns and rows that no output reads may hold NaN or Inf: they must not leak into the
    result or the gradients (the kernels read padded blocks around the pixels they use)."""
    geometry = Geometry(AxisGeometry(-2, -1, 1, 1, 1, -1, 3, 1), AxisGeometry(-3, -2, 1, 1, 1, -2, 5, 1))
    f1, f2 = _inputs((2, 5, 9, 23))
    a, b = f1.clone(), f2.clone()
    a[..., :3] = float("nan")  # f1 columns 0-2 and the last two lie outside every window
    a[..., -2:] = float("inf")
    a[:, :, :2] = float("nan")
    b[..., 0] = float("nan")  # f2 column 0: displacement -2 from column 3 reaches column 1 at least
    _assert_product_matches_reference(f1, f2, geometry, inputs=(a, b))


@needs_numba
def test_fast_path_gradient_reads_stay_in_their_rows():
    """The gradients read the incoming gradient where it lies, shifted by every displacement:
    an Inf at either end of a row must reach only the gradient elements that depend on it (a read
    running into the neighbouring row would meet a padding zero of f1: NaN).  The output is
    narrower than the maps, so such a read would land on real f2 columns."""
    geometry = _flownet(1, 1, 3, 1, 1)  # output pixel x reads f1 column x + 2
    f1, f2 = _inputs((1, 3, 9, 21))
    out = cpu.forward(f1, f2, geometry, 1, "product", 1.0)
    nx = out.shape[-1]
    grad = torch.ones(out.shape, dtype=torch.float64)
    grad[0, 0, 3, 2, 3, 0] = float("inf")  # displacement (0, -1), row start
    grad[0, 0, 3, 4, 2, nx - 1] = float("-inf")  # displacement (0, 1), row end
    r1, r2 = general_reference_grad(f1, f2, grad, geometry.as_list(), 1, "product", 1.0)
    g1, g2 = cpu.backward(grad, f1, f2, geometry, 1, "product", 1.0)
    assert np.isinf(r2).any() and not np.isnan(r1).any() and not np.isnan(r2).any()
    np.testing.assert_allclose(g1.numpy(), r1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), r2, rtol=1e-10, atol=1e-12)


@needs_numba
@pytest.mark.parametrize("ring", [True, False])
@pytest.mark.parametrize("width", [34, 33])
def test_fast_path_forward_reads_f1_in_place(monkeypatch, width, ring):
    """Where every block of pixels lies inside the rows of ``f1`` the forward reads it where it lies
    (no copy): the last block is ragged, and the columns its unused lanes read (after the last
    pixel's column) hold NaN, which must not reach the result.  One column narrower, the last
    block would leave the row: the forward copies ``f1`` instead.  ``f2`` goes through the same
    copy unless the threads copy its rows into their rings."""
    if not ring:
        monkeypatch.setattr(cpu._xkernels, "RING_BYTES", 0)
    axis = AxisGeometry(-2, -2, 1, 1, 1, -2, 5, 1)  # pixel x reads f1 column x + 2: 30 or 29 pixels
    geometry = Geometry(AxisGeometry(1, 1, 1, 1, 1, -1, 3, 1), axis)
    f1, f2 = _inputs((2, 5, 6, width))
    a = f1.clone()
    a[..., :2] = float("nan")  # before the first pixel's column
    a[..., 32:] = float("nan")  # after the last one's
    copies = []
    real = cpu._rows
    monkeypatch.setattr(cpu, "_rows", lambda x, *r, **k: copies.append(x) or real(x, *r, **k))
    _assert_product_matches_reference(f1, f2, geometry, inputs=(a, f2))
    in_place = width - 2 >= -(-(width - 4) // cpu._LANES) * cpu._LANES
    assert any(x is a for x in copies) != in_place
    assert any(x is f2 for x in copies) != ring


@needs_numba
@pytest.mark.parametrize("step", [-1, 2])
def test_fast_path_displacements_past_the_map(step):
    """One displacement row, many horizontal ones on a narrow map (a stereo volume): most blocks
    of the f2 gradient meet the incoming gradient's rows only at some displacements."""
    geometry = Geometry(AxisGeometry(0, 0, 1, 1, 1, 0, 1, 1), AxisGeometry(0, 0, 1, 1, 1, 0, 30, step))
    f1, f2 = _inputs((2, 9, 5, 21))
    _assert_product_matches_reference(f1, f2, geometry)


@needs_numba
def test_fast_path_backward_in_chunks():
    """A window larger than one tap: the backward spreads the incoming gradient onto the one-tap
    grid in several chunks of displacement rows."""
    geometry = _flownet(9, 5, 4, 1, 1)
    f1, f2 = _inputs((1, 10, 7, 9))
    grid = cpu._Grid(geometry, 7, 9)
    assert len(cpu._grad_chunks(grid)) > 1
    _assert_product_matches_reference(f1, f2, geometry)


def _flownet(pad, k, md, s1, s2):
    from torchcorr._geometry import flownet_axis

    a = flownet_axis(pad, k, md, s1, s2)
    return Geometry(a, a)


@needs_numba
@pytest.mark.parametrize("mode", ["product", "absdiff"])
@pytest.mark.parametrize("geo", [(4, 1, 4, 1, 1), (6, 1, 6, 1, 2), (5, 3, 4, 1, 1), (5, 3, 4, 2, 2)])
def test_gradcheck_through_op(mode, geo):
    geometry = _flownet(*geo)
    f1, f2 = _inputs((1, 3, 7, 8))
    f1.requires_grad_()
    f2.requires_grad_()

    def fn(a, b):
        return torch.ops.torchcorr.correlation(a, b, geometry.as_list(), 1, mode, 0.5, "cpu")

    if mode == "absdiff":  # kinks: keep inputs away from ties
        f2 = (f2.detach() + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(fn, (f1, f2), eps=1e-6, atol=1e-6, fast_mode=True)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_upcasts(dtype):
    geometry = _flownet(3, 1, 3, 1, 1)
    f1, f2 = _inputs((2, 8, 6, 7), dtype)
    out = cpu.forward(f1, f2, geometry, 1, "product", 1 / 8)
    assert out.dtype == dtype
    ref = general_reference(f1, f2, geometry.as_list(), 1, "product", 1 / 8)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.5e-2, torch.float32: 1e-5}[dtype]
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=tol, atol=tol)
    g1, g2 = cpu.backward(torch.ones_like(out), f1, f2, geometry, 1, "product", 1 / 8)
    assert g1.dtype == dtype and g2.dtype == dtype


@needs_numba
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_memory_layouts(layout):
    geometry = _flownet(3, 1, 3, 1, 2)
    f1, f2 = _inputs((2, 6, 9, 10))
    if layout == "channels_last":
        a, b = f1.to(memory_format=torch.channels_last), f2.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        a, b = f1.transpose(2, 3).contiguous().transpose(2, 3), f2.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        big1, big2 = torch.cat([f1, f1], 1), torch.cat([f2, f2], 1)
        a, b = big1[:, ::2], big2[:, ::2]
        f1, f2 = a.contiguous(), b.contiguous()
    for mode in ("product", "absdiff"):
        out = cpu.forward(a, b, geometry, 2, mode, 1.0)
        np.testing.assert_allclose(out.numpy(), general_reference(f1, f2, geometry.as_list(), 2, mode), atol=1e-12)
        g = torch.randn(out.shape, dtype=torch.float64)
        g1, g2 = cpu.backward(g, a, b, geometry, 2, mode, 1.0)
        r1, r2 = general_reference_grad(f1, f2, g, geometry.as_list(), 2, mode)
        np.testing.assert_allclose(g1.numpy(), r1, atol=1e-12)
        np.testing.assert_allclose(g2.numpy(), r2, atol=1e-12)
        assert g1.is_contiguous() and g2.is_contiguous()


@needs_numba
def test_empty_batch_and_channels():
    geometry = _flownet(2, 1, 2, 1, 1)
    for shape in ((0, 3, 5, 5), (2, 0, 5, 5)):
        f1, f2 = _inputs(shape)
        out = cpu.forward(f1, f2, geometry, 1, "product", 1.0)
        assert out.shape == (shape[0], 1, 5, 5, 5, 5)
        assert not out.isnan().any() and (out == 0).all()
        g1, g2 = cpu.backward(out, f1, f2, geometry, 1, "product", 1.0)
        assert g1.shape == shape and g2.shape == shape


@needs_numba
def test_deterministic_across_threads():
    geometry = _flownet(4, 1, 4, 1, 1)
    f1, f2 = _inputs((2, 16, 12, 20), torch.float32)
    old = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out = cpu.forward(f1, f2, geometry, 1, "product", 1.0)
            results.append((out, *cpu.backward(torch.ones_like(out), f1, f2, geometry, 1, "product", 1.0)))
    finally:
        torch.set_num_threads(old)
    for x, y in zip(*results, strict=True):
        assert torch.equal(x, y)


@needs_numba
def test_keeps_torch_thread_count():
    """Starting numba's pool (here larger than torch's count) leaves torch's thread count alone.

    In a fresh process: numba's OpenMP pool sets OpenMP's count to its own size when it starts, and
    torch reads its count from the same runtime.
    """
    code = (
        "import torch, numba\n"
        "from torchcorr.backends import cpu\n"
        "from torchcorr._geometry import Geometry, flownet_axis\n"
        "ax = flownet_axis(2, 1, 1, 1, 1)\n"
        "geometry = Geometry(ax, ax)\n"
        "a = torch.randn(1, 4, 6, 7, requires_grad=True)\n"
        "out = cpu.forward(a, a, geometry, 1, 'product', 1.0)\n"
        "cpu.backward(torch.ones_like(out), a, a, geometry, 1, 'product', 1.0)\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1"]


@needs_numba
def test_dispatcher_picks_cpu_for_cpu_tensors():
    f1, f2 = _inputs((1, 2, 5, 5), torch.float32)
    module = backends.select("auto", f1, f2, _flownet(1, 1, 1, 1, 1), 1, "product")
    assert module.NAME == "cpu"
    meta = torch.empty(1, 2, 5, 5, device="meta")
    assert "CPU only" in cpu.can_run(meta, meta, _flownet(1, 1, 1, 1, 1), 1, "product")


def test_missing_numba_falls_back(monkeypatch):
    """Without numba, import works, available() gives a reason and the dispatcher uses the pure backend."""
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    monkeypatch.delitem(sys.modules, "torchcorr.backends.cpu_kernels", raising=False)
    monkeypatch.delitem(sys.modules, "torchcorr.backends._cpu_micro", raising=False)
    for name in ("cpu_xkernels", "_cpu_xvec", "_cpu_simd"):
        monkeypatch.delitem(sys.modules, f"torchcorr.backends.{name}", raising=False)
    fresh = importlib.reload(cpu)
    try:
        reason = fresh.available()
        assert reason is not None and "numba" in reason
        monkeypatch.setattr(backends, "_loaded", {})
        monkeypatch.setattr(backends, "_import_errors", {})
        f1, f2 = _inputs((1, 2, 5, 5), torch.float32)
        module = backends.select("auto", f1, f2, _flownet(1, 1, 1, 1, 1), 1, "product")
        assert module.NAME == "torch"
        assert "numba" in {i.name: i.reason for i in backends.backend_report()}["cpu"]
        with pytest.raises(ValueError, match="numba"):
            backends.select("cpu", f1, f2, _flownet(1, 1, 1, 1, 1), 1, "product")
    finally:
        monkeypatch.undo()
        importlib.reload(cpu)


def test_generated_microkernels_up_to_date():
    from pathlib import Path

    from torchcorr.backends import _cpu_codegen

    assert Path(_cpu_codegen.TARGET).read_text() == _cpu_codegen.source()
    assert Path(_cpu_codegen.XTARGET).read_text() == _cpu_codegen.xsource()


def test_bench_quick_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torchcorr",
            "bench",
            "--quick",
            "--workloads",
            "W3",
            "--repeat",
            "1",
            "--no-memory",
            "--no-progress",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "% of matmul" in proc.stdout and "% of FMA limit" in proc.stdout and "torch " in proc.stdout
    report = json.loads(out.read_text())
    if HAVE:  # the FMA limit is measured with the CPU backend's SIMD helpers
        assert report["fma_gflops"] > 0 and "float32 FMA limit of the cores" in proc.stdout
        assert all(r["fma_pct"] is not None for r in report["results"] if not r["error"])


def test_fma_limit_needs_numba(monkeypatch):
    """With numba importable the limit is a positive rate; without it, not measured (None)."""
    from torchcorr.bench import peak

    if HAVE:
        assert peak.fma_gflops(repeat=1, trips=1000) > 0
    monkeypatch.setattr(peak, "_KERNEL", None)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    assert peak.fma_gflops() is None


def test_bench_warm_up_is_bounded(monkeypatch):
    from torchcorr.bench import harness

    calls = []
    harness._warm_up(lambda: calls.append(1))
    assert len(calls) == harness.WARMUP_CALLS  # quick calls: all of them
    clock = iter(range(0, 100, 3))  # every call takes 3 s of a fake clock
    monkeypatch.setattr(harness.time, "perf_counter", lambda: float(next(clock)))
    calls.clear()
    harness._warm_up(lambda: calls.append(1))
    assert len(calls) == 1  # a slow call: one is enough
