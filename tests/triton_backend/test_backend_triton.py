"""The Triton backend against the float64 reference (CPU: Triton's interpreter; keep shapes tiny).

Run with ``make test-triton`` (``TRITON_INTERPRET=1 pytest -m triton tests/triton_backend``).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("triton", reason="triton is not installed")

import torchcorr
from torchcorr import backends
from torchcorr._geometry import AxisGeometry, Geometry
from torchcorr.backends import triton as tb

from ..reference.correlation import general_reference, general_reference_grad

launch = tb.launcher()

pytestmark = pytest.mark.triton

DEVICE = "cuda" if torch.cuda.is_available() and not launch.interpreted() else "cpu"


def reference(f1, f2, geometry, groups, mode, scale):
    """float64 loop reference (tests/reference/correlation.py) on the CPU."""
    out = general_reference(f1, f2, geometry.as_list(), groups, mode, scale)
    return torch.from_numpy(out)


def reference_grads(grad, f1, f2, geometry, groups, mode, scale):
    """float64 loop-reference gradients (grad_f1, grad_f2)."""
    g1, g2 = general_reference_grad(f1, f2, grad, geometry.as_list(), groups, mode, scale)
    return torch.from_numpy(g1), torch.from_numpy(g2)


TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def close(actual, expected, dtype):
    expected = expected.detach().to(torch.float64).cpu()
    actual = actual.detach().double().cpu()
    tol = TOL[dtype] * (1.0 + expected.abs().max().item() if expected.numel() else 1.0)
    torch.testing.assert_close(actual, expected, atol=tol, rtol=TOL[dtype])


def geo(y, x):
    return Geometry(AxisGeometry(*y), AxisGeometry(*x))


def features(b, c, h, w, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    f2 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)
    return f1.to(DEVICE), f2.to(DEVICE)


def test_kernel_scale_keeps_float64_scales_exact():
    """A compiled Triton kernel receives a Python float as float32: a float64 problem whose scale
    float32 cannot hold runs its kernels with 1 and scales the results after them (found on the
    first GPU run; the interpreter passes the float as it is, so only the rule is tested here)."""
    assert launch.kernel_scale(0.3, torch.float64) == (1.0, 0.3)
    assert launch.kernel_scale(1 / 3, torch.float64) == (1.0, 1 / 3)
    assert launch.kernel_scale(0.25, torch.float64) == (0.25, None)  # exact in float32
    assert launch.kernel_scale(0.3, torch.float32) == (0.3, None)  # float32 math anyway


# (pad_before, pad_after, stride, kernel_size, kernel_dilation, disp_start, disp_count, disp_step)
GEOMETRIES = {
    # FlowNet: pad = md, displacement step 2
    "flownet": geo((2, 2, 1, 1, 1, -2, 3, 2), (2, 2, 1, 1, 1, -2, 3, 2)),
    # window 3 with dilation 2, stride 2, negative pads, negative displacement step
    "window": geo((1, -1, 2, 3, 2, -1, 2, 1), (-1, 2, 1, 2, 1, 2, 3, -2)),
    # one-sided stereo, disparities 0, -1, -2, -3
    "stereo": geo((0, 0, 1, 1, 1, 0, 1, 1), (0, 0, 1, 1, 1, 0, 4, -1)),
}


def check_all(f1, f2, g, groups, mode, scale, dtype, path="auto"):
    out = launch.forward(f1, f2, g, groups, mode, scale, path=path)
    assert out.dtype == f1.dtype and out.device == f1.device
    close(out, reference(f1, f2, g, groups, mode, scale), dtype)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad = grad.to(dtype).to(DEVICE)
    g1, g2 = launch.backward(grad, f1, f2, g, groups, mode, scale)
    r1, r2 = reference_grads(grad, f1, f2, g, groups, mode, scale)
    close(g1, r1, dtype)
    close(g2, r2, dtype)


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("mode", ["product", "absdiff"])
def test_direct_float64(name, mode):
    g = GEOMETRIES[name]
    groups = 2 if name == "window" else 1
    f1, f2 = features(2, 4, 5, 6)
    check_all(f1, f2, g, groups, mode, 0.3, torch.float64, path="direct")


@st.composite
def axis(draw):
    k = draw(st.integers(1, 2))
    return AxisGeometry(
        pad_before=draw(st.integers(-1, 2)),
        pad_after=draw(st.integers(-1, 2)),
        stride=draw(st.integers(1, 2)),
        kernel_size=k,
        kernel_dilation=draw(st.integers(1, 2)),
        disp_start=draw(st.integers(-3, 3)),
        disp_count=draw(st.integers(1, 3)),
        disp_step=draw(st.sampled_from([-2, -1, 1, 3])),
    )


@settings(max_examples=10, deadline=None, derandomize=True)
@given(gy=axis(), gx=axis(), groups=st.sampled_from([1, 2]), mode=st.sampled_from(["product", "absdiff"]))
def test_hypothesis_geometries(gy, gx, groups, mode):
    g = Geometry(gy, gx)
    h, w = 4, 5
    ho, wo = g.out_hw(h, w)
    if ho < 1 or wo < 1:
        return
    f1, f2 = features(1, 2 * groups, h, w)
    check_all(f1, f2, g, groups, mode, 0.7, torch.float64, path="direct")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["product", "absdiff"])
def test_direct_low_precision(dtype, mode):
    f1, f2 = features(1, 3, 5, 6, dtype)
    check_all(f1, f2, GEOMETRIES["window"], 1, mode, 1.0, dtype, path="direct")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensor_core_forward(dtype):
    # one-tap window, 16+ channels per group: the tl.dot path (float32 forced to IEEE here)
    g = geo((1, 2, 1, 1, 1, -1, 3, 1), (2, 1, 2, 1, 1, 3, 3, -2))
    f1, f2 = features(1, 32, 4, 7, dtype)
    out = launch.forward(f1, f2, g, 2, "product", 0.25, path="dot")
    close(out, reference(f1, f2, g, 2, "product", 0.25), dtype)


def test_auto_path_uses_tensor_cores_for_half():
    g = GEOMETRIES["flownet"]
    f1, f2 = features(1, 16, 3, 5, torch.float16)
    before = launch.CALLS["corr_fwd_dot"]
    out = launch.forward(f1, f2, g, 1, "product", 1.0)
    assert launch.CALLS["corr_fwd_dot"] == before + 1
    close(out, reference(f1, f2, g, 1, "product", 1.0), torch.float16)
    # absolute difference and windows larger than one tap stay on the direct kernel
    assert launch.dot_plan(f1, g, 1, "absdiff") is None
    assert launch.dot_plan(f1, GEOMETRIES["window"], 1, "product") is None


def test_tf32_follows_torch():
    f1, _ = features(1, 16, 3, 5, torch.float32)
    g = GEOMETRIES["flownet"]
    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert launch.dot_plan(f1, g, 1, "product") is None
        torch.backends.cuda.matmul.allow_tf32 = True
        assert launch.dot_plan(f1, g, 1, "product")["PRECISION"] == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def test_every_output_written(monkeypatch):
    # outputs start as NaN: an entry a kernel forgets to write fails the comparison
    monkeypatch.setenv("TORCHCORR_POISON", "1")
    for path in ("direct", "dot"):
        f1, f2 = features(1, 16, 5, 6, torch.float32)
        g = GEOMETRIES["window"] if path == "direct" else GEOMETRIES["flownet"]
        out = launch.forward(f1, f2, g, 1, "product", 1.0, path=path)
        close(out, reference(f1, f2, g, 1, "product", 1.0), torch.float32)
    g1, g2 = launch.backward(torch.ones_like(out), f1, f2, g, 1, "product", 1.0)
    assert not (g1.isnan().any() or g2.isnan().any())


def test_non_contiguous_and_channels_last():
    g = GEOMETRIES["flownet"]
    f1, f2 = features(2, 3, 5, 6)
    f1 = f1.to(memory_format=torch.channels_last)
    f2 = torch.randn(2, 3, 6, 5, dtype=torch.float64, device=DEVICE).transpose(2, 3)
    assert not f2.is_contiguous()
    check_all(f1, f2, g, 1, "absdiff", 0.5, torch.float64, path="direct")


def test_empty_and_degenerate():
    g = GEOMETRIES["flownet"]
    f1, f2 = features(0, 3, 4, 4)
    out = launch.forward(f1, f2, g, 1, "product", 1.0)
    assert out.shape == (0, 1, 3, 3, *g.out_hw(4, 4))
    g1, g2 = launch.backward(out, f1, f2, g, 1, "product", 1.0)
    assert g1.shape == f1.shape and g2.shape == f2.shape
    # a 1 x 1 map: every displacement but zero reads outside
    f1, f2 = features(1, 2, 1, 1)
    check_all(f1, f2, g, 1, "absdiff", 1.0, torch.float64)


def test_backward_is_deterministic():
    g = GEOMETRIES["window"]
    f1, f2 = features(1, 4, 5, 6, torch.float32)
    out = launch.forward(f1, f2, g, 1, "product", 1.0)
    grad = torch.randn_like(out)
    first = launch.backward(grad, f1, f2, g, 1, "product", 1.0)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert backends.select("auto", f1, f2, g, 1, "product") is tb
        second = launch.backward(grad, f1, f2, g, 1, "product", 1.0)
    finally:
        torch.use_deterministic_algorithms(prev)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_public_op_and_autograd_through_triton():
    f1, f2 = features(1, 4, 5, 6)
    f1.requires_grad_(True)
    f2.requires_grad_(True)
    before = dict(launch.CALLS)
    out = torchcorr.correlation(f1, f2, max_displacement=1, kernel_size=3, backend="triton")
    out.square().sum().backward()
    assert launch.CALLS["corr_fwd"] > before["corr_fwd"]
    assert launch.CALLS["corr_bwd_f1"] > before["corr_bwd_f1"]
    assert launch.CALLS["corr_bwd_f2"] > before["corr_bwd_f2"]
    a, b = f1.detach().requires_grad_(True), f2.detach().requires_grad_(True)
    ref = torchcorr.correlation(a, b, max_displacement=1, kernel_size=3, backend="torch")
    ref.square().sum().backward()
    close(out, ref.detach(), torch.float64)
    close(f1.grad, a.grad, torch.float64)
    close(f2.grad, b.grad, torch.float64)


def test_opcheck():
    f1, f2 = features(1, 2, 3, 4)
    g = geo((1, 1, 1, 1, 1, -1, 2, 1), (0, 0, 1, 1, 1, 1, 2, -1))
    args = (f1.requires_grad_(True), f2.requires_grad_(True), g.as_list(), 1, "product", 0.5, "triton")
    torch.library.opcheck(
        torch.ops.torchcorr.correlation.default,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compat_layers_run_through_triton(monkeypatch):
    from torchcorr.compat import mxnet, spatial_correlation_sampler

    monkeypatch.setenv("TORCHCORR_BACKEND", "triton")
    f1, f2 = features(1, 3, 6, 6)
    f1.requires_grad_(True)
    before = dict(launch.CALLS)
    out = mxnet.Correlation(f1, f2, kernel_size=3, max_displacement=2, stride1=2, stride2=2, pad_size=3)
    out.sum().backward()
    assert launch.CALLS["corr_fwd"] == before["corr_fwd"] + 1
    assert launch.CALLS["corr_bwd_f1"] == before["corr_bwd_f1"] + 1
    monkeypatch.setenv("TORCHCORR_BACKEND", "torch")
    ref = mxnet.Correlation(f1, f2, kernel_size=3, max_displacement=2, stride1=2, stride2=2, pad_size=3)
    close(out, ref.detach(), torch.float64)

    monkeypatch.setenv("TORCHCORR_BACKEND", "triton")
    before = launch.CALLS["corr_fwd"]
    out = spatial_correlation_sampler.spatial_correlation_sample(f1.detach(), f2, patch_size=3, dilation_patch=2)
    assert launch.CALLS["corr_fwd"] == before + 1
    monkeypatch.setenv("TORCHCORR_BACKEND", "torch")
    ref = spatial_correlation_sampler.spatial_correlation_sample(f1.detach(), f2, patch_size=3, dilation_patch=2)
    close(out, ref, torch.float64)


def test_can_run_reasons(monkeypatch):
    g = GEOMETRIES["flownet"]
    f1, f2 = features(1, 2, 4, 4)
    assert tb.can_run(f1, f2, g, 1, "product") is None
    assert "dtype" in tb.can_run(f1.int(), f2.int(), g, 1, "product")
    assert "mode" in tb.can_run(f1, f2, g, 1, "sign")
    meta = f1.to("meta")
    assert "device" in tb.can_run(meta, meta, g, 1, "product")
    if DEVICE == "cpu":
        monkeypatch.delenv("TRITON_INTERPRET")
        reason = tb.can_run(f1, f2, g, 1, "product")
        assert "TRITON_INTERPRET" in reason
        # the dispatcher falls back to the pure backend and says why when asked for triton
        assert backends.select("auto", f1, f2, g, 1, "product") is not tb
        with pytest.raises(ValueError, match="TRITON_INTERPRET"):
            backends.select("triton", f1, f2, g, 1, "product")


def test_interpreter_flag_set_before_import():
    # the whole module relies on the kernels having been decorated for the right target
    assert launch.interpreted() == (os.environ.get("TRITON_INTERPRET") == "1")


def test_gpu_benchmark_script_smoke(capsys):
    # the GPU benchmark's code paths on tiny shapes through the interpreter
    import importlib.util
    from pathlib import Path

    if DEVICE != "cpu":
        pytest.skip("smoke mode is for the interpreter")
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical over two runs: True" in out
    assert "triton on-the-fly lookup forward" in out


def test_double_backward_through_triton():
    # the analytic double backward of the registered op calls the Triton kernels again
    g = geo((1, 1, 1, 1, 1, -1, 2, 1), (0, 1, 2, 2, 1, 1, 2, -1))
    results = {}
    for backend in ("triton", "torch"):
        f1, f2 = features(1, 2, 4, 5)
        f1.requires_grad_(True)
        f2.requires_grad_(True)
        out = torch.ops.torchcorr.correlation(f1, f2, g.as_list(), 1, "product", 0.5, backend)
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
        g1, g2 = torch.autograd.grad((out * weight).sum(), (f1, f2), create_graph=True)
        results[backend] = torch.autograd.grad((g1 * g1).sum() + (g2 * f1).sum(), (f1, f2))
    for a, b in zip(results["triton"], results["torch"], strict=True):
        close(a, b.detach(), torch.float64)


@pytest.mark.parametrize("mode", ["product", "absdiff"])
def test_eager_shortcut_runs_the_triton_kernels_like_the_op(mode):
    """Plain eager calls skip the registered op (torchcorr._shortcut) and reach the Triton kernels
    through the same forward and backward functions: values and gradients equal the op route's
    (also checked on an H100 at W1/W2 sizes, float32 and bfloat16; see docs/benchmarks_gpu.md)."""
    from torchcorr import _shortcut, ops

    g = geo((1, 1, 1, 1, 1, -1, 2, 1), (0, 1, 1, 1, 1, -1, 3, 1))
    args = (g.as_list(), 1, mode, 0.5, "triton")
    results = []
    for route in (torch.ops.torchcorr.correlation, lambda a, b, *p: _shortcut.call(ops.SHORTCUT, (a, b), p)):
        f1, f2 = (t.requires_grad_() for t in features(1, 3, 4, 5, dtype=torch.float32, seed=4))
        out = route(f1, f2, *args)
        weight = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
        results.append((out, *torch.autograd.grad(out, (f1, f2), weight)))
        assert ("Shortcut" in out.grad_fn.name()) == (route is not torch.ops.torchcorr.correlation)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_eager_shortcut_runs_the_triton_lookup_like_the_op():
    """The RAFT lookup's eager shortcut against its registered op, on the Triton lookup kernels."""
    from torchcorr import raft

    f1, f2 = features(1, 3, 4, 5, dtype=torch.float32, seed=5)
    coords = (torch.rand(1, 2, 4, 5, generator=torch.Generator().manual_seed(6)) * 4).to(DEVICE)
    results = []
    for route in (torch.ops.torchcorr.corr_lookup, raft._lookup):
        a, b, c = (t.detach().requires_grad_() for t in (f1, f2, coords))
        out = route(a, b, c, 1, 0.5, "triton")
        weight = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
        results.append((out, *torch.autograd.grad(out, (a, b, c), weight)))
        assert ("Shortcut" in out.grad_fn.name()) == (route is raft._lookup)
    for x, y in zip(*results, strict=True):
        assert torch.equal(x, y)
