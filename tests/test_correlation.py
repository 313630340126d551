"""The core correlation and the native API against the float64 loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchcorr
from torchcorr import AxisGeometry, Geometry, _shortcut
from torchcorr.compat.mxnet import Correlation as mx_correlation

from .reference.correlation import (
    flownet_reference,
    flownet_reference_grad,
    general_reference,
    general_reference_grad,
)

HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: comparison tolerances against a float64 reference, keyed by dtype: (rtol, atol)
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 2e-3),
    torch.bfloat16: (2e-2, 1.5e-2),
}


def _close(actual: torch.Tensor, expected: np.ndarray, dtype=torch.float64) -> None:
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(actual.detach().double().cpu().numpy(), expected, rtol=rtol, atol=atol)


def _rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------------------------------------
# worked sizes of semantics.md section 1
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "k", "md", "s1", "s2", "p", "expected"),
    [
        (10, 10, 1, 4, 1, 1, 4, (2, 81, 10, 10)),
        (10, 10, 3, 4, 2, 2, 5, (2, 25, 5, 5)),
        (11, 11, 3, 4, 2, 2, 5, (2, 25, 6, 6)),
        (48, 64, 1, 20, 1, 2, 20, (2, 441, 48, 64)),
    ],
)
def test_worked_sizes(h, w, k, md, s1, s2, p, expected):
    x = torch.randn(2, 3, h, w)
    out = mx_correlation(x, x, kernel_size=k, max_displacement=md, stride1=s1, stride2=s2, pad_size=p)
    assert tuple(out.shape) == expected


def test_worked_example_k3_s2():
    """H=W=10, k=3, md=4, s1=s2=2, p=5: centres at 0,2,4,6,8, displacements -4..4 step 2, 1/(9C)."""
    f1, f2 = _rand(1, 2, 10, 10, seed=1), _rand(1, 2, 10, 10, seed=2)
    out = mx_correlation(f1, f2, kernel_size=3, max_displacement=4, stride1=2, stride2=2, pad_size=5)
    # output (i=1, j=2) at displacement (dy, dx) = (-2, 4): centre (2, 4)
    q = 1 * 5 + 4
    expected = 0.0
    for u in (-1, 0, 1):
        for v in (-1, 0, 1):
            y, x = 2 + u, 4 + v
            y2, x2 = y - 2, x + 4
            if 0 <= y < 10 and 0 <= x < 10 and 0 <= y2 < 10 and 0 <= x2 < 10:
                expected += float((f1[0, :, y, x] * f2[0, :, y2, x2]).sum())
    assert out[0, q, 1, 2].item() == pytest.approx(expected / 18, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# FlowNet semantics through the native API, hypothesis over every parameter
# ------------------------------------------------------------------------------------------------


@st.composite
def flownet_cases(draw):
    k = draw(st.sampled_from([1, 3, 5]))
    md = draw(st.integers(0, 3))
    s1 = draw(st.integers(1, 3))
    s2 = draw(st.integers(1, 3))
    p = draw(st.integers(0, md + (k - 1) // 2 + 2))
    kr = (k - 1) // 2
    min_size = max(1, 2 * (md + kr) - 2 * p + 1)
    h = draw(st.integers(min_size, min_size + 5))
    w = draw(st.integers(min_size, min_size + 5))
    b = draw(st.integers(0, 2))
    c = draw(st.integers(1, 3))
    mult = draw(st.booleans())
    return dict(b=b, c=c, h=h, w=w, k=k, md=md, s1=s1, s2=s2, p=p, mult=mult)


@HYP
@given(flownet_cases(), st.integers(0, 2**16))
def test_native_matches_flownet_reference(case, seed):
    f1 = _rand(case["b"], case["c"], case["h"], case["w"], seed=seed)
    f2 = _rand(case["b"], case["c"], case["h"], case["w"], seed=seed + 1)
    k, md, s1, s2, p = case["k"], case["md"], case["s1"], case["s2"], case["p"]
    expected = flownet_reference(f1, f2, p, k, md, s1, s2, case["mult"])
    # native windows start at i*stride - padding; FlowNet's start at i*stride1 + md - pad
    f1.requires_grad_()
    f2.requires_grad_()
    out = torchcorr.correlation(
        f1,
        f2,
        max_displacement=md,
        displacement_stride=s2,
        kernel_size=k,
        stride=s1,
        padding=p - md,
        mode="product" if case["mult"] else "absdiff",
    )
    assert out.shape == expected.shape
    _close(out, expected)
    grad = _rand(*out.shape, seed=seed + 2)
    if out.numel():
        out.backward(grad)
        e1, e2 = flownet_reference_grad(f1, f2, grad, p, k, md, s1, s2, case["mult"])
        _close(f1.grad, e1)
        _close(f2.grad, e2)


# ------------------------------------------------------------------------------------------------
# the general geometry: asymmetric and one-axis grids, negative steps, groups, dilation, cropping
# ------------------------------------------------------------------------------------------------


@st.composite
def axis_geometries(draw):
    k = draw(st.integers(1, 3))
    kd = draw(st.integers(1, 2))
    s = draw(st.integers(1, 3))
    pb = draw(st.integers(-2, 3))
    pa = draw(st.integers(-2, 3))
    count = draw(st.integers(1, 4))
    step = draw(st.sampled_from([-2, -1, 1, 2, 3]))
    start = draw(st.integers(-4, 4))
    return AxisGeometry(pb, pa, s, k, kd, start, count, step)


@st.composite
def general_cases(draw):
    gy = draw(axis_geometries())
    gx = draw(axis_geometries())
    min_h = max(1, gy.span - gy.pad_before - gy.pad_after)
    min_w = max(1, gx.span - gx.pad_before - gx.pad_after)
    h = draw(st.integers(min_h, min_h + 4))
    w = draw(st.integers(min_w, min_w + 4))
    groups = draw(st.sampled_from([1, 2]))
    c = groups * draw(st.integers(1, 2))
    b = draw(st.integers(0, 2))
    mode = draw(st.sampled_from(["product", "absdiff"]))
    scale = draw(st.sampled_from([1.0, 0.5, 1 / 3]))
    return Geometry(gy, gx), b, c, h, w, groups, mode, scale


@HYP
@given(general_cases(), st.integers(0, 2**16))
def test_core_matches_general_reference(case, seed):
    geometry, b, c, h, w, groups, mode, scale = case
    f1 = _rand(b, c, h, w, seed=seed).requires_grad_()
    f2 = _rand(b, c, h, w, seed=seed + 1).requires_grad_()
    out = torchcorr.correlate(f1, f2, geometry, groups=groups, mode=mode, scale=scale, backend="torch")
    expected = general_reference(f1, f2, geometry.as_list(), groups, mode, scale)
    assert out.shape == expected.shape
    _close(out, expected)
    if out.numel():
        grad = _rand(*out.shape, seed=seed + 2)
        out.backward(grad)
        e1, e2 = general_reference_grad(f1, f2, grad, geometry.as_list(), groups, mode, scale)
        _close(f1.grad, e1)
        _close(f2.grad, e2)


# ------------------------------------------------------------------------------------------------
# dtypes, memory layouts, edge shapes
# ------------------------------------------------------------------------------------------------

GEOMS = {
    "pwc": dict(max_displacement=2),
    "flownet_k3_s2": dict(max_displacement=4, displacement_stride=2, kernel_size=3, stride=2, padding=1),
    "asym_dilated": dict(
        displacements=(range(-1, 2), range(0, -4, -1)), kernel_size=(3, 1), kernel_dilation=2, padding=(2, 0)
    ),
}


def _native_reference(f1, f2, kw, mode="product"):
    """Reference for the native API via the general reference (its documented mapping)."""
    from torchcorr.functional import native_geometry, normalization_scale

    geo_kw = {k: v for k, v in kw.items() if k not in ("groups",)}
    geometry = native_geometry(**geo_kw)
    groups = kw.get("groups", 1)
    scale = normalization_scale("mean", f1.shape[1] // groups, geometry.kernel_area)
    ref = general_reference(f1, f2, geometry.as_list(), groups, mode, scale)
    return ref.reshape(ref.shape[0], groups, -1, *ref.shape[-2:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(GEOMS))
@pytest.mark.parametrize("mode", ["product", "absdiff"])
def test_dtypes(dtype, name, mode):
    kw = GEOMS[name]
    f1, f2 = _rand(2, 8, 9, 11, seed=3), _rand(2, 8, 9, 11, seed=4)
    a, b = f1.to(dtype), f2.to(dtype)
    out = torchcorr.correlation(a, b, mode=mode, **kw)
    assert out.dtype == dtype
    # the reference sees the same rounded inputs
    expected = _native_reference(a.double(), b.double(), kw, mode)[:, 0]
    _close(out, expected, dtype)
    # gradients come back in the input dtype
    a.requires_grad_()
    b.requires_grad_()
    torchcorr.correlation(a, b, mode=mode, **kw).sum().backward()
    assert a.grad.dtype == dtype and b.grad.dtype == dtype
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("name", list(GEOMS))
def test_noncontiguous_and_channels_last(name):
    kw = GEOMS[name]
    base1, base2 = _rand(2, 6, 11, 9, seed=5), _rand(2, 6, 11, 9, seed=6)
    expected = torchcorr.correlation(base1, base2, **kw)
    variants = {
        "channels_last": (
            base1.to(memory_format=torch.channels_last),
            base2.to(memory_format=torch.channels_last),
        ),
        "transposed": (
            base1.transpose(2, 3).contiguous().transpose(2, 3),
            base2.transpose(2, 3).contiguous().transpose(2, 3),
        ),
        "strided": (
            torch.repeat_interleave(base1, 2, dim=1)[:, ::2],
            torch.repeat_interleave(base2, 2, dim=1)[:, ::2],
        ),
    }
    for label, (a, b) in variants.items():
        assert not a.is_contiguous() or label == "never"
        a = a.detach().requires_grad_()
        b = b.detach().requires_grad_()
        out = torchcorr.correlation(a, b, **kw)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12, msg=label)
        out.backward(torch.ones_like(out))
        r1, r2 = base1.detach().clone().requires_grad_(), base2.detach().clone().requires_grad_()
        torchcorr.correlation(r1, r2, **kw).backward(torch.ones_like(out))
        torch.testing.assert_close(a.grad, r1.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b.grad, r2.grad, rtol=1e-12, atol=1e-12)


def test_batch_zero_and_tiny_maps():
    f = torch.randn(0, 4, 5, 5, requires_grad=True)
    out = torchcorr.correlation(f, f, max_displacement=2)
    assert out.shape == (0, 25, 5, 5)
    out.sum().backward()
    assert f.grad.shape == f.shape
    # a 1x1 map: only the zero displacement reads inside
    a, b = _rand(1, 3, 1, 1, seed=7), _rand(1, 3, 1, 1, seed=8)
    out = torchcorr.correlation(a, b, max_displacement=1)
    assert out.shape == (1, 9, 1, 1)
    expected = torch.zeros(9, dtype=torch.float64)
    expected[4] = (a * b).mean()
    torch.testing.assert_close(out.flatten(), expected)
    # maps smaller than the displacement: every off-map read is zero
    a, b = _rand(2, 2, 2, 3, seed=9), _rand(2, 2, 2, 3, seed=10)
    out = torchcorr.correlation(a, b, max_displacement=5)
    ref = _native_reference(a, b, dict(max_displacement=5))[:, 0]
    _close(out, ref)


def test_zero_channels():
    f = torch.randn(2, 0, 4, 4)
    out = torchcorr.correlation(f, f, max_displacement=1)
    assert out.shape == (2, 9, 4, 4)
    assert (out == 0).all()


def test_layouts_and_groups():
    f1, f2 = _rand(2, 6, 7, 8, seed=11), _rand(2, 6, 7, 8, seed=12)
    flat = torchcorr.correlation(f1, f2, max_displacement=(1, 2))
    grid = torchcorr.correlation(f1, f2, max_displacement=(1, 2), layout="grid")
    last = torchcorr.correlation(f1, f2, max_displacement=(1, 2), layout="channels_last")
    assert flat.shape == (2, 15, 7, 8) and grid.shape == (2, 3, 5, 7, 8) and last.shape == (2, 7, 8, 15)
    torch.testing.assert_close(grid.flatten(1, 2), flat)
    torch.testing.assert_close(last.permute(0, 3, 1, 2), flat)
    grouped = torchcorr.correlation(f1, f2, max_displacement=1, groups=3)
    assert grouped.shape == (2, 3, 9, 7, 8)
    # each group is the correlation of its own channels, normalised by its own channel count
    for g in range(3):
        part = torchcorr.correlation(f1[:, 2 * g : 2 * g + 2], f2[:, 2 * g : 2 * g + 2], max_displacement=1)
        torch.testing.assert_close(grouped[:, g], part)


@pytest.mark.parametrize(
    ("normalize", "factor"),
    [("mean", 1 / (9 * 4)), ("channels", 1 / 4), ("sqrt_channels", 1 / 2), ("none", 1.0), (0.25, 0.25)],
)
def test_normalisation(normalize, factor):
    f1, f2 = _rand(1, 4, 6, 6, seed=13), _rand(1, 4, 6, 6, seed=14)
    out = torchcorr.correlation(f1, f2, max_displacement=1, kernel_size=3, normalize=normalize)
    raw = torchcorr.correlation(f1, f2, max_displacement=1, kernel_size=3, normalize="none")
    torch.testing.assert_close(out, raw * factor)


def test_nan_and_inf_propagate_where_read():
    f1, f2 = _rand(1, 2, 7, 7, seed=15), _rand(1, 2, 7, 7, seed=16)
    f1[0, 1, 3, 3] = float("nan")
    out = torchcorr.correlation(f1, f2, max_displacement=1)
    # output (i, j) reads f1 only at (i, j): exactly the outputs at (3, 3) are NaN
    nan = torch.isnan(out)
    assert nan[0, :, 3, 3].all()
    nan[0, :, 3, 3] = False
    assert not nan.any()
    # f2 at (3, 3) is read by output (3 - dy, 3 - dx) for each displacement
    f1, f2 = _rand(1, 2, 7, 7, seed=15), _rand(1, 2, 7, 7, seed=16)
    f2[0, 0, 3, 3] = float("inf")
    out = torchcorr.correlation(f1, f2, max_displacement=1, mode="absdiff")
    for q in range(9):
        dy, dx = q // 3 - 1, q % 3 - 1
        assert torch.isinf(out[0, q, 3 - dy, 3 - dx])
        assert torch.isfinite(out[0, q]).sum() == 48


def test_absdiff_sign_convention_at_ties():
    """sign(0) = +1 for the first input and -1 for the second (MXNet's convention)."""
    f = _rand(1, 3, 5, 5, seed=17)
    a, b = f.clone().requires_grad_(), f.clone().requires_grad_()
    out = torchcorr.correlation(a, b, max_displacement=0, mode="absdiff", normalize="none")
    out.sum().backward()
    assert (a.grad == 1).all() and (b.grad == -1).all()


# ------------------------------------------------------------------------------------------------
# gradcheck, gradgradcheck, opcheck
# ------------------------------------------------------------------------------------------------

GRAD_CASES = [
    dict(max_displacement=1),
    dict(max_displacement=2, displacement_stride=2, kernel_size=3, stride=2, padding=0),
    dict(displacements=(range(0, 1), range(0, -3, -1)), kernel_size=(1, 3), padding=(0, -1), groups=2),
    dict(max_displacement=(1, 0), kernel_size=3, kernel_dilation=2, stride=(1, 2), padding=3),
]


@pytest.mark.parametrize("mode", ["product", "absdiff"])
@pytest.mark.parametrize("kw", GRAD_CASES)
def test_gradcheck_and_gradgradcheck(kw, mode):
    f1 = _rand(1, 2, 5, 6, seed=18).requires_grad_()
    f2 = _rand(1, 2, 5, 6, seed=19).requires_grad_()

    def fn(a, b):
        return torchcorr.correlation(a, b, mode=mode, **kw)

    assert torch.autograd.gradcheck(fn, (f1, f2))
    # second derivatives: the full Jacobian is costly; fast mode checks random projections of it
    assert torch.autograd.gradgradcheck(fn, (f1, f2), fast_mode=True)


def test_double_backward_matches_autograd_of_reference_formula():
    """Hessian-vector products of the product mode against autograd through a plain shift formula."""
    f1 = _rand(1, 3, 5, 6, seed=20).requires_grad_()
    f2 = _rand(1, 3, 5, 6, seed=21).requires_grad_()
    v = _rand(1, 9, 5, 6, seed=22)

    def naive(a, b):
        bp = torch.nn.functional.pad(b, (1, 1, 1, 1))
        return torch.stack([(a * bp[:, :, dy : dy + 5, dx : dx + 6]).mean(1) for dy in range(3) for dx in range(3)], 1)

    outs = []
    for fn in (lambda a, b: torchcorr.correlation(a, b, max_displacement=1), naive):
        g1, g2 = torch.autograd.grad((fn(f1, f2) * v).sum(), (f1, f2), create_graph=True)
        outs.append(torch.autograd.grad((g1 * g1).sum() + (g2 * f1).sum(), (f1, f2)))
    for x, y in zip(*outs, strict=True):
        torch.testing.assert_close(x, y)


OPCHECK_CASES = [
    (Geometry(AxisGeometry(1, 1, 1, 1, 1, -1, 3, 1), AxisGeometry(1, 1, 1, 1, 1, -1, 3, 1)), 1, "product"),
    (Geometry(AxisGeometry(0, 1, 2, 3, 1, -2, 3, 2), AxisGeometry(-1, 0, 1, 1, 1, 0, 3, -1)), 2, "absdiff"),
]


@pytest.mark.parametrize(("geometry", "groups", "mode"), OPCHECK_CASES)
def test_opcheck(geometry, groups, mode):
    f1 = _rand(2, 4, 6, 7, seed=23).requires_grad_()
    f2 = _rand(2, 4, 6, 7, seed=24).requires_grad_()
    args = (f1, f2, geometry.as_list(), groups, mode, 0.5, "torch")
    torch.library.opcheck(torch.ops.torchcorr.correlation.default, args)
    out = torch.ops.torchcorr.correlation(*args)
    grad = torch.randn_like(out, dtype=torch.float64).requires_grad_()
    torch.library.opcheck(
        torch.ops.torchcorr.correlation_backward.default,
        (grad, f1, f2, geometry.as_list(), groups, mode, 0.5, "torch", True, True),
    )
    torch.library.opcheck(
        torch.ops.torchcorr.correlation_sign_weighted.default,
        (
            f1,
            f2,
            _rand(2, 4, 6, 7, seed=25).requires_grad_(),
            _rand(2, 4, 6, 7, seed=26),
            geometry.as_list(),
            groups,
            0.5,
        ),
    )


# ------------------------------------------------------------------------------------------------
# the eager shortcut around the registered op
# ------------------------------------------------------------------------------------------------


def _both_routes(f1, f2, geometry, groups, mode, backend):
    """Forward and both gradients through the registered op and through the eager shortcut."""
    results = []
    args = (geometry.as_list(), groups, mode, 0.25, backend)
    routes = (torch.ops.torchcorr.correlation, lambda a, b, *p: _shortcut.call(torchcorr.ops.SHORTCUT, (a, b), p))
    for route in routes:
        a, b = f1.detach().requires_grad_(), f2.detach().requires_grad_()
        out = route(a, b, *args)
        g1, g2 = torch.autograd.grad(out, (a, b), torch.ones_like(out))
        results.append((out, g1, g2, out.grad_fn.name()))
    return results


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize(("geometry", "groups", "mode"), OPCHECK_CASES)
def test_eager_shortcut_gives_the_ops_results(geometry, groups, mode, backend):
    f1, f2 = _rand(2, 4, 6, 7, seed=27), _rand(2, 4, 6, 7, seed=28)
    (o1, a1, b1, name1), (o2, a2, b2, name2) = _both_routes(f1, f2, geometry, groups, mode, backend)
    assert "torchcorr" in name1 and "Shortcut" in name2  # each route is the one asked for
    for x, y in ((o1, o2), (a1, a2), (b1, b2)):
        assert torch.equal(x, y)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_eager_shortcut_taken_only_where_nothing_watches():
    from torch.utils._python_dispatch import TorchDispatchMode

    f = torch.randn(1, 2, 5, 6, requires_grad=True)
    assert _shortcut.usable(f, f)
    out = torchcorr.correlate(f, f, Geometry(*(AxisGeometry(1, 1, 1, 1, 1, -1, 3, 1),) * 2))
    assert "Shortcut" in out.grad_fn.name()

    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Spy():  # a dispatch mode (fake tensors, FLOP counters, ...) sees the registered op
        assert not _shortcut.usable(f, f)
        torchcorr.correlation(f, f, max_displacement=1, backend="torch")
    assert any("torchcorr.correlation" in name for name in seen)
    with torch.device("cpu"):  # a __torch_function__ mode
        assert not _shortcut.usable(f, f)

    class Sub(torch.Tensor):
        pass

    assert not _shortcut.usable(f.detach().as_subclass(Sub), f)
    traced = torch.jit.trace(lambda a, b: torchcorr.correlation(a, b, max_displacement=1), (f.detach(), f.detach()))
    assert "torchcorr::correlation" in str(traced.graph)


# ------------------------------------------------------------------------------------------------
# dispatcher and module
# ------------------------------------------------------------------------------------------------


def test_backend_choice(monkeypatch):
    f = torch.randn(1, 2, 5, 5)
    ref = torchcorr.correlation(f, f, max_displacement=1, backend="torch")
    monkeypatch.setenv("TORCHCORR_BACKEND", "torch")
    torch.testing.assert_close(torchcorr.correlation(f, f, max_displacement=1), ref)
    monkeypatch.setenv("TORCHCORR_BACKEND", "no-such-backend")
    with pytest.raises(ValueError, match="backend must be one of"):
        torchcorr.correlation(f, f, max_displacement=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        torchcorr.correlation(f, f, max_displacement=1, backend="cuda-magic")
    report = {r.name: r for r in torchcorr.backend_report()}
    assert report["torch"].available


def test_module_matches_function_and_repr():
    layer = torchcorr.Correlation(3, kernel_size=3, mode="absdiff")
    f1, f2 = torch.randn(1, 4, 8, 9), torch.randn(1, 4, 8, 9)
    torch.testing.assert_close(
        layer(f1, f2), torchcorr.correlation(f1, f2, max_displacement=3, kernel_size=3, mode="absdiff")
    )
    text = repr(layer)
    assert "max_displacement=3" in text and "kernel_size=3" in text and "absdiff" in text
