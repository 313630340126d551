"""TorchScript: torch.jit.script and torch.jit.trace of every module, with save/load round trips."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import torchcorr
from torchcorr.compat import flownet2, mmcv, mxnet, spatial_correlation_sampler, tfa
from torchcorr.compat.corrtorch import CorrTorch

# TorchScript is deprecated upstream, and users still deploy with it: keep the notice out of the log
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


class TfaPair(nn.Module):
    """tfa's layer takes a list; this wrapper takes two (B, C, H, W) tensors."""

    def __init__(self, layer: tfa.CorrelationCost) -> None:
        super().__init__()
        self.layer = layer
        self.last = layer.data_format == "channels_last"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.last:
            return self.layer([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)])
        return self.layer([a, b])


def _modules() -> dict[str, nn.Module]:
    return {
        "corrtorch": CorrTorch(),
        "corrtorch_absdiff_k3": CorrTorch(pad_size=3, kernel_size=3, max_displacement=2, stride1=2, corr_multiply=0),
        "flownet2": flownet2.Correlation(pad_size=2, kernel_size=1, max_displacement=2, stride1=1, stride2=2),
        "sampler": spatial_correlation_sampler.SpatialCorrelationSampler(1, (3, 4), 2, 1, 1, 2),
        "mmcv": mmcv.Correlation(kernel_size=3, max_displacement=1, padding=1, dilation=2),
        "tfa_last": TfaPair(tfa.CorrelationCost(1, 2, 1, 1, 2, "channels_last")),
        "tfa_first": TfaPair(tfa.CorrelationCost(3, 2, 2, 1, 2, "channels_first")),
        "native": torchcorr.Correlation(
            2, groups=2, kernel_size=(3, 1), normalize="sqrt_channels", layout="channels_last"
        ),
        "native_absdiff_grid": torchcorr.Correlation(1, mode="absdiff", normalize=0.3, layout="grid"),
        "native_displacements": torchcorr.Correlation(displacements=(range(1), range(0, -4, -1)), normalize="none"),
    }


MODULES = _modules()


def _inputs(h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, h, w, generator=g), torch.randn(2, 4, h, w, generator=g)


def _round_trip(module):
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    buf.seek(0)
    return torch.jit.load(buf)


@pytest.mark.parametrize("name", list(MODULES))
def test_script_save_load(name):
    model = MODULES[name]
    scripted = torch.jit.script(model)
    loaded = _round_trip(scripted)
    for h, w in [(9, 11), (12, 7)]:
        a, b = _inputs(h, w)
        expected = model(a, b)
        torch.testing.assert_close(scripted(a, b), expected)
        torch.testing.assert_close(loaded(a, b), expected)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", list(MODULES))
def test_trace_save_load(name):
    model = MODULES[name]
    traced = torch.jit.trace(model, _inputs(9, 11))
    loaded = _round_trip(traced)
    a, b = _inputs(12, 7, seed=1)  # another size: the op computes its output size at run time
    torch.testing.assert_close(loaded(a, b), model(a, b))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_trace_functions():
    """The function faces trace (they cannot be scripted: use their module forms for that)."""

    def fn(a, b):
        x = mxnet.Correlation(a, b, kernel_size=3, max_displacement=2, stride1=2, stride2=2, pad_size=3)
        y = spatial_correlation_sampler.spatial_correlation_sample(a, b, patch_size=3)
        return x, y

    traced = _round_trip(torch.jit.trace(fn, _inputs(9, 11)))
    a, b = _inputs(10, 13, seed=2)
    for got, want in zip(traced(a, b), fn(a, b), strict=True):
        torch.testing.assert_close(got, want)


def test_scripted_gradients_match_eager():
    model = CorrTorch(pad_size=2, kernel_size=3, max_displacement=2)
    scripted = torch.jit.script(model)
    a, b = (t.double().requires_grad_() for t in _inputs(7, 8))
    ga = torch.autograd.grad(scripted(a, b).square().sum(), (a, b))
    gb = torch.autograd.grad(model(a, b).square().sum(), (a, b))
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("corrtorch", lambda a, b: (a, b[:, :, :5]), "must have the same shape"),
        ("corrtorch", lambda a, b: (a, b.double()), "same dtype"),
        ("sampler", lambda a, b: (a[0], b[0]), "4-D tensor"),
        ("native", lambda a, b: (a[:, :3], b[:, :3]), "groups must divide"),
        ("unpadded", lambda a, b: (a[:, :, :3], b[:, :, :3]), "does not fit"),
        ("native", lambda a, b: (a.long(), b.long()), "floating dtype"),
    ],
)
def test_scripted_errors_name_the_rule(name, args, message):
    model = CorrTorch(pad_size=0, max_displacement=2) if name == "unpadded" else MODULES[name]
    scripted = torch.jit.script(model)
    a, b = _inputs(9, 11)
    with pytest.raises(Exception, match=message):
        scripted(*args(a, b))


def _traced_only() -> dict[str, nn.Module]:
    """Volume and RAFT faces: traced (their modules have no scripted path yet)."""
    from tests.test_export import LocalLookup, RaftAllPairsStep, RaftLookupStep, Xcorr

    return {
        "cost_volume": torchcorr.CostVolume(2),
        "stereo": torchcorr.StereoCorrelation(4, kernel_size=3),
        "stereo_groupwise": torchcorr.GroupwiseCorrelation(3, 2),
        "stereo_concat": torchcorr.ConcatVolume(3),
        "raft_lookup_step": RaftLookupStep(),
        "raft_all_pairs_step": RaftAllPairsStep(),
        "raft_local_lookup": LocalLookup(),
        "xcorr2": Xcorr(),
    }


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", list(_traced_only()))
def test_trace_volumes_and_raft(name):
    model = _traced_only()[name]
    loaded = _round_trip(torch.jit.trace(model, _inputs(9, 11)))
    a, b = _inputs(12, 7, seed=3)
    torch.testing.assert_close(loaded(a, b), model(a, b))
