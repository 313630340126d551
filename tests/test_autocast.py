"""The autocast policy (torchcorr._autocast): lower precision in, float32 accumulation, autocast dtype out."""

from __future__ import annotations

import pytest
import torch

import torchcorr
from torchcorr._geometry import Geometry, flownet_axis
from torchcorr.compat.corrtorch import CorrTorch
from torchcorr.compat.mmcv import Correlation as MmcvCorrelation

GEOMETRY = Geometry(flownet_axis(2, 1, 2, 1, 1), flownet_axis(2, 1, 2, 1, 1)).as_list()


def _inputs(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 8, 7, 9, generator=g, dtype=dtype), torch.randn(2, 8, 7, 9, generator=g, dtype=dtype)


def _faces():
    return {
        "native": lambda a, b: torchcorr.correlation(a, b, max_displacement=2),
        "corrtorch": CorrTorch(pad_size=2, max_displacement=2),
        "mmcv": MmcvCorrelation(kernel_size=3, max_displacement=1, padding=1),
        "op": lambda a, b: torch.ops.torchcorr.correlation(a, b, GEOMETRY, 1, "product", 0.125, "auto"),
    }


@pytest.mark.parametrize("name", list(_faces()))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_runs_in_autocast_dtype(name, dtype):
    face = _faces()[name]
    a, b = _inputs()
    with torch.autocast("cpu", dtype=dtype):
        out = face(a, b)
    assert out.dtype == dtype
    # the same as running the op on inputs rounded to the autocast dtype (float32 accumulation) ...
    expected = face(a.to(dtype), b.to(dtype))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # ... and close to float32 (input rounding: about 2**-8 relative per factor for bfloat16)
    ref = face(a, b)
    assert (out.float() - ref).abs().max() <= 3e-2 * ref.abs().max()


def test_accumulates_in_float32():
    """Many channels of ones: a bfloat16 accumulator would stop counting at 256."""
    a = torch.ones(1, 1024, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torchcorr.correlation(a, a, max_displacement=0, normalize="none")
    assert out.dtype == torch.bfloat16
    assert out[0, 0, 1, 1].item() == 1024.0


def test_mixed_dtypes_meet_under_autocast():
    """A bfloat16 feature map from an autocast conv meets a float32 one: both become bfloat16."""
    a, b = _inputs()
    conv = torch.nn.Conv2d(8, 8, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = conv(a)
        assert x.dtype == torch.bfloat16
        out = torchcorr.correlation(x, b, max_displacement=1)
    assert out.dtype == torch.bfloat16
    with pytest.raises(TypeError, match="same dtype"):  # outside autocast the rule holds
        torchcorr.correlation(x, b, max_displacement=1)


def test_float64_is_not_cast_and_off_means_off():
    a, b = _inputs(dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torchcorr.correlation(a, b, max_displacement=1).dtype == torch.float64
    a, b = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert torchcorr.correlation(a, b, max_displacement=1).dtype == torch.float32
    # CUDA autocast does not touch CPU tensors
    if torch.cuda.is_available():
        with torch.autocast("cuda", dtype=torch.float16):
            assert torchcorr.correlation(a, b, max_displacement=1).dtype == torch.float32


def test_gradients_come_back_in_input_dtype():
    a, b = (t.requires_grad_() for t in _inputs())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = CorrTorch(pad_size=2, max_displacement=2)(a, b)
    out.float().square().sum().backward()
    assert a.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    a32, b32 = (t.detach().clone().requires_grad_() for t in (a, b))
    CorrTorch(pad_size=2, max_displacement=2)(a32, b32).square().sum().backward()
    torch.testing.assert_close(a.grad, a32.grad, rtol=5e-2, atol=5e-2)


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_scripted_module_and_compile_follow_the_policy():
    a, b = _inputs()
    scripted = torch.jit.script(CorrTorch(pad_size=2, max_displacement=2))
    compiled = torch.compile(_faces()["native"], backend="aot_eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert scripted(a, b).dtype == torch.bfloat16
        assert compiled(a, b).dtype == torch.bfloat16
