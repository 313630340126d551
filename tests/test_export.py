"""torch.compile, torch.export and ONNX (onnxruntime) for every public face of torchcorr.

Each case is a small module around one face; the expected values are the eager outputs (the
eager op is checked against the float64 references elsewhere).  Shapes are tiny and cases few:
compilation dominates the run time.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch._dynamo.testing
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import torchcorr
from torchcorr.compat import flownet2, mmcv, mxnet, spatial_correlation_sampler, tfa
from torchcorr.compat.corrtorch import CorrTorch

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs onnx, onnxruntime and onnxscript (the export extra)")


class PWCBlock(nn.Module):
    """PWC-Net: correlation md=4 (81 channels, scale 1/C) then LeakyReLU(0.1)."""

    def __init__(self) -> None:
        super().__init__()
        self.corr = torchcorr.Correlation(max_displacement=4)

    def forward(self, a, b):
        return F.leaky_relu(self.corr(a, b), 0.1)


class FlowNetCBlock(nn.Module):
    """FlowNetC-like: absolute difference, kernel 3, strided output and displacements."""

    def forward(self, a, b):
        return mxnet.Correlation(
            a, b, kernel_size=3, max_displacement=2, stride1=2, stride2=2, pad_size=3, is_multiply=False
        )


class NativeFunction(nn.Module):
    def forward(self, a, b):
        return torchcorr.correlation(
            a,
            b,
            max_displacement=(1, 2),
            kernel_size=(3, 1),
            stride=(2, 1),
            groups=2,
            normalize="sqrt_channels",
            layout="channels_last",
        )


class Sampler(nn.Module):
    def forward(self, a, b):
        return spatial_correlation_sampler.spatial_correlation_sample(
            a, b, kernel_size=1, patch_size=(3, 4), stride=2, padding=1, dilation_patch=2
        )


class TfaCost(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = tfa.CorrelationCost(1, 2, 1, 1, 2, "channels_last")

    def forward(self, a, b):
        # inputs arrive (B, C, H, W); the layer is used channels_last as in TF models
        return self.layer([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)])


def _target_coords(f1: torch.Tensor) -> torch.Tensor:
    """RAFT's coords1 = coords0 + flow, with a flow derived from the features (x then y)."""
    h, w = f1.shape[2], f1.shape[3]
    ys = torch.arange(h, dtype=f1.dtype, device=f1.device).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, dtype=f1.dtype, device=f1.device).view(1, 1, w).expand(1, h, w)
    return torch.cat((xs, ys)).unsqueeze(0) + 2.5 * torch.tanh(f1[:, :2])


class RaftLookupStep(nn.Module):
    """One RAFT iteration's correlation lookup, on the fly (2 levels, radius 1)."""

    def forward(self, f1, f2):
        return torchcorr.alternate_lookup(f1, f2, _target_coords(f1), num_levels=2, radius=1)


class RaftAllPairsStep(nn.Module):
    """RAFT's all-pairs CorrBlock lookup (2 levels, radius 1)."""

    def forward(self, f1, f2):
        from torchcorr.compat.raft import CorrBlock

        return CorrBlock(f1, f2, num_levels=2, radius=1)(_target_coords(f1))


class LocalLookup(nn.Module):
    def forward(self, f1, f2):
        return torchcorr.local_lookup(f1, f2, _target_coords(f1), radius=1, scale=0.5)


class Xcorr(nn.Module):
    def forward(self, a, b):
        return torchcorr.xcorr2(a, b[..., :3, :4], "same")


def _cases() -> dict[str, nn.Module]:
    return {
        "pwc": PWCBlock(),
        "flownetc_absdiff_k3": FlowNetCBlock(),
        "native_function": NativeFunction(),
        "flownet2": flownet2.Correlation(pad_size=2, kernel_size=1, max_displacement=2, stride1=1, stride2=2),
        "corrtorch": CorrTorch(pad_size=2, max_displacement=2),
        "sampler_function": Sampler(),
        "sampler_module": spatial_correlation_sampler.SpatialCorrelationSampler(
            kernel_size=3, patch_size=3, dilation=2, padding=2
        ),
        "mmcv": mmcv.Correlation(kernel_size=3, max_displacement=1, padding=1),
        "tfa": TfaCost(),
        "cost_volume": torchcorr.CostVolume(2, layout="channels_first", output_layout="channels_last"),
        "stereo": torchcorr.StereoCorrelation(4, kernel_size=3),
        "stereo_groupwise": torchcorr.GroupwiseCorrelation(3, 2, two_sided=True, reference="right"),
        "stereo_concat": torchcorr.ConcatVolume(3, disparity_step=2),
        "raft_lookup_step": RaftLookupStep(),
        "raft_all_pairs_step": RaftAllPairsStep(),
        "raft_local_lookup": LocalLookup(),
        "xcorr2": Xcorr(),
    }


CASES = _cases()
SIZES = [(9, 11), (12, 7)]  # an export/compile size, and another one with other parities


def _inputs(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, 4, h, w, generator=g)
    b = torch.randn(2, 4, h, w, generator=g)
    return a, b


# --------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_compile_fullgraph_dynamic_no_recompile(name):
    """fullgraph (no graph break), one compilation for repeated calls and for new H, W."""
    torch._dynamo.reset()
    model = CASES[name]
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for h, w in [SIZES[0], SIZES[0], SIZES[1]]:
            a, b = _inputs(h, w)
            for t in (a, b):
                torch._dynamo.mark_dynamic(t, 2)
                torch._dynamo.mark_dynamic(t, 3)
            torch.testing.assert_close(compiled(a, b), model(a, b))
    assert counter.frame_count == 1


def test_compile_dynamic_true_inductor_forward_backward():
    """Real code generation (inductor), dynamic=True, gradients through the op's autograd formula."""
    torch._dynamo.reset()
    model = FlowNetCBlock()
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for h, w in SIZES:
            a, b = (t.requires_grad_() for t in _inputs(h, w))
            out = compiled(a, b)
            (out * out).sum().backward()
            a0, b0 = (t.detach().clone().requires_grad_() for t in (a, b))
            ref = model(a0, b0)
            (ref * ref).sum().backward()
            torch.testing.assert_close(out, ref)
            torch.testing.assert_close(a.grad, a0.grad)
            torch.testing.assert_close(b.grad, b0.grad)
    assert counter.frame_count == 1


# faces built from other ops: the concatenation volume, the all-pairs product, xcorr2's FFT or loop
_NO_CUSTOM_OP = {"stereo_concat", "raft_all_pairs_step", "xcorr2"}


@pytest.mark.parametrize("name", [n for n in CASES if n not in _NO_CUSTOM_OP])
def test_compile_traces_the_registered_op(name):
    """torch.compile sees the torchcorr op (fast kernels), not the composite that export traces.

    Up to torch 2.11 at least, TorchDynamo answered ``torch.compiler.is_exporting()`` with ``True``
    under torch.compile too (pytorch/pytorch#176347), which sent compiled models down the composite.
    """
    torch._dynamo.reset()
    backend = torch._dynamo.testing.EagerAndRecordGraphs()
    torch.compile(CASES[name], backend=backend, fullgraph=True)(*_inputs(*SIZES[0]))
    targets = {str(n.target) for gm in backend.graphs for n in gm.graph.nodes if n.op == "call_function"}
    assert any(t.startswith("torchcorr.") for t in targets), targets


# --------------------------------------------------------------------------------------------
# torch.export
# --------------------------------------------------------------------------------------------


def _dynamic_hw():
    h, w = Dim("h", min=7, max=512), Dim("w", min=7, max=512)
    return ({2: h, 3: w}, {2: h, 3: w})


@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_dynamic_hw(name):
    model = CASES[name]
    ep = torch.export.export(model, _inputs(*SIZES[0]), dynamic_shapes=_dynamic_hw())
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("torchcorr" in t for t in targets), targets  # the composite path: aten ops only
    for h, w in SIZES:
        a, b = _inputs(h, w, seed=1)
        torch.testing.assert_close(ep.module()(a, b), model(a, b))


def test_torch_export_keep_custom_ops():
    """Inside keep_custom_ops() the registered op stays in the graph and the program still runs."""
    model = PWCBlock()
    with torchcorr.keep_custom_ops():
        ep = torch.export.export(model, _inputs(*SIZES[0]), dynamic_shapes=_dynamic_hw())
    assert any("torchcorr.correlation" in str(n.target) for n in ep.graph.nodes)
    a, b = _inputs(*SIZES[1], seed=2)
    torch.testing.assert_close(ep.module()(a, b), model(a, b))


def test_composite_switch_only_under_export():
    from torchcorr import _composite

    assert not _composite.active()
    with torchcorr.keep_custom_ops():
        assert not _composite.active()


def test_composite_switch_reads_the_export_flag(monkeypatch):
    """The switch follows the flag torch.export sets, and falls back to is_exporting() without it."""
    from torchcorr import _composite

    monkeypatch.setattr(torch.compiler, "_is_exporting_flag", True, raising=False)
    assert _composite.active()
    with torchcorr.keep_custom_ops():
        assert not _composite.active()
    monkeypatch.delattr(torch.compiler, "_is_exporting_flag", raising=False)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert _composite.active()
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: False)
    assert not _composite.active()


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def _onnx_check(program, model, sizes, rtol=1e-5, atol=1e-5):
    import onnxruntime as ort

    proto = program.model_proto
    domains = {n.domain for n in proto.graph.node} | {f.domain for f in proto.functions}
    assert domains <= {"", "ai.onnx"}, domains
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for h, w in sizes:
        a, b = _inputs(h, w, seed=3)
        (out,) = session.run(None, {names[0]: a.numpy(), names[1]: b.numpy()})
        torch.testing.assert_close(torch.from_numpy(out), model(a, b), rtol=rtol, atol=atol)


@needs_onnx
@pytest.mark.parametrize("name", ["pwc", "flownetc_absdiff_k3", "native_function", "raft_lookup_step", "stereo"])
def test_onnx_dynamo_export_standard_ops(name):
    model = CASES[name].eval()
    program = torch.onnx.export(model, _inputs(*SIZES[0]), dynamo=True, dynamic_shapes=_dynamic_hw(), verbose=False)
    _onnx_check(program, model, SIZES)


class DirectOp(nn.Module):
    """A user graph that calls the registered op itself."""

    def __init__(self, geometry, groups, mode, scale) -> None:
        super().__init__()
        self.args = (geometry, groups, mode, scale)

    def forward(self, a, b):
        geometry, groups, mode, scale = self.args
        return torch.ops.torchcorr.correlation(a, b, geometry, groups, mode, scale, "auto")


class DirectLookup(nn.Module):
    def forward(self, a, b):
        return torch.ops.torchcorr.corr_lookup(a, b[..., ::2, ::2], _target_coords(a) / 2, 1, 0.5, "auto")


def _direct_cases():
    from torchcorr._geometry import AxisGeometry, Geometry, flownet_axis

    fn = flownet_axis(3, 3, 2, 2, 2)
    odd = AxisGeometry(-1, 2, 1, 2, 2, 3, 3, -2)  # crop before, even window, backwards displacements
    return {
        "raft_corr_lookup": DirectLookup(),
        "flownet_k3_absdiff_groups": DirectOp(Geometry(fn, fn).as_list(), 2, "absdiff", 1 / 18),
        "mixed_axes_product": DirectOp(Geometry(odd, flownet_axis(2, 1, 2, 1, 1)).as_list(), 1, "product", 0.5),
    }


@needs_onnx
@pytest.mark.parametrize("name", list(_direct_cases()))
def test_onnx_translation_table(name):
    import torchcorr.onnx

    model = _direct_cases()[name].eval()
    program = torch.onnx.export(
        model,
        _inputs(*SIZES[0]),
        dynamo=True,
        dynamic_shapes=_dynamic_hw(),
        custom_translation_table=torchcorr.onnx.onnx_translation_table(),
        verbose=False,
    )
    _onnx_check(program, model, SIZES)


@needs_onnx
def test_onnx_translation_table_with_keep_custom_ops():
    """A face exported with its op kept, translated by the table."""
    import torchcorr.onnx

    model = FlowNetCBlock().eval()
    with torchcorr.keep_custom_ops():
        program = torch.onnx.export(
            model,
            _inputs(*SIZES[0]),
            dynamo=True,
            dynamic_shapes=_dynamic_hw(),
            custom_translation_table=torchcorr.onnx.onnx_translation_table(),
            verbose=False,
        )
    _onnx_check(program, model, SIZES)
