"""The drop-in layers against the float64 references of semantics.md, forward and both gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchcorr.compat import corrtorch, flownet2, mmcv, mxnet, tfa
from torchcorr.compat import spatial_correlation_sampler as scs

from .reference.correlation import (
    flownet_reference,
    flownet_reference_grad,
    sampler_reference,
    sampler_reference_grad,
)

HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _check(out, f1, f2, ref_fwd, ref_grad, seed, rtol=1e-10, atol=1e-12):
    """Forward and both gradients of ``out`` against float64 references."""
    np.testing.assert_allclose(out.detach().double().numpy(), ref_fwd, rtol=rtol, atol=atol)
    if out.numel() == 0:
        return
    grad = _rand(*out.shape, seed=seed)
    g1, g2 = torch.autograd.grad(out, (f1, f2), grad.to(out.dtype))
    e1, e2 = ref_grad(grad)
    np.testing.assert_allclose(g1.double().numpy(), e1, rtol=rtol, atol=atol)
    np.testing.assert_allclose(g2.double().numpy(), e2, rtol=rtol, atol=atol)


@st.composite
def flownet_params(draw):
    k = draw(st.sampled_from([1, 3]))
    md = draw(st.integers(0, 3))
    s1 = draw(st.integers(1, 3))
    s2 = draw(st.integers(1, 3))
    p = draw(st.integers(0, md + 2))
    min_size = max(1, 2 * (md + (k - 1) // 2) - 2 * p + 1)
    h = draw(st.integers(min_size, min_size + 4))
    w = draw(st.integers(min_size, min_size + 4))
    return dict(k=k, md=md, s1=s1, s2=s2, p=p, h=h, w=w, mult=draw(st.booleans()), b=draw(st.integers(1, 2)))


# ------------------------------------------------------------------------------------------------
# MXNet, flownet2, CorrTorch, tensorflow-addons: the FlowNet correlation
# ------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flownet_params(), st.integers(0, 2**16))
def test_mxnet_matches_reference(c, seed):
    f1 = _rand(c["b"], 3, c["h"], c["w"], seed=seed).requires_grad_()
    f2 = _rand(c["b"], 3, c["h"], c["w"], seed=seed + 1).requires_grad_()
    args = (c["p"], c["k"], c["md"], c["s1"], c["s2"], c["mult"])
    out = mxnet.Correlation(
        f1,
        f2,
        kernel_size=c["k"],
        max_displacement=c["md"],
        stride1=c["s1"],
        stride2=c["s2"],
        pad_size=c["p"],
        is_multiply=c["mult"],
    )
    _check(out, f1, f2, flownet_reference(f1, f2, *args), lambda g: flownet_reference_grad(f1, f2, g, *args), seed)


def test_mxnet_out_argument():
    f1, f2 = _rand(1, 2, 6, 6, seed=1), _rand(1, 2, 6, 6, seed=2)
    buf = torch.full((1, 9, 6, 6), float("nan"), dtype=torch.float64)
    res = mxnet.Correlation(f1, f2, max_displacement=1, pad_size=1, out=buf)
    assert res is buf
    np.testing.assert_allclose(buf.numpy(), flownet_reference(f1, f2, 1, 1, 1, 1, 1), rtol=1e-12)
    with pytest.raises(ValueError, match="out must have the output's shape"):
        mxnet.Correlation(f1, f2, max_displacement=1, pad_size=1, out=torch.empty(1, 8, 6, 6, dtype=torch.float64))


@HYP
@given(flownet_params(), st.integers(0, 2**16))
def test_flownet2_matches_reference_including_k3_and_absdiff(c, seed):
    """flownet2-pytorch shifts k > 1 windows, ignores corr_multiply and has a wrong backward: not here."""
    f1 = _rand(c["b"], 2, c["h"], c["w"], seed=seed).requires_grad_()
    f2 = _rand(c["b"], 2, c["h"], c["w"], seed=seed + 1).requires_grad_()
    layer = flownet2.Correlation(c["p"], c["k"], c["md"], c["s1"], c["s2"], corr_multiply=int(c["mult"]))
    args = (c["p"], c["k"], c["md"], c["s1"], c["s2"], c["mult"])
    out = layer(f1, f2)
    _check(out, f1, f2, flownet_reference(f1, f2, *args), lambda g: flownet_reference_grad(f1, f2, g, *args), seed)


def test_corrtorch_matches_the_original_formula_and_extends_it():
    """Where CorrTorch runs (k=1, strides 1, pad == md) it is the channel mean of f1 * shifted f2."""
    f1, f2 = _rand(2, 5, 7, 9, seed=3), _rand(2, 5, 7, 9, seed=4)
    md = 3
    padded = torch.nn.functional.pad(f2, (md,) * 4)
    original = torch.stack(
        [(f1 * padded[:, :, dy : dy + 7, dx : dx + 9]).mean(1) for dy in range(2 * md + 1) for dx in range(2 * md + 1)],
        1,
    )
    out = corrtorch.CorrTorch(pad_size=md, max_displacement=md)(f1, f2)
    torch.testing.assert_close(out, original, rtol=1e-12, atol=1e-12)
    # parameters the original refuses
    f1, f2 = f1.requires_grad_(), f2.requires_grad_()
    out = corrtorch.CorrTorch(pad_size=5, kernel_size=3, max_displacement=4, stride1=2, stride2=2)(f1, f2)
    args = (5, 3, 4, 2, 2, True)
    _check(out, f1, f2, flownet_reference(f1, f2, *args), lambda g: flownet_reference_grad(f1, f2, g, *args), 5)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_tfa_formats_dtypes_and_stride_bug_fixed(data_format, dtype):
    """With stride_1 > 1 and pad > 0 tfa's CPU kernel is shifted; ours follows the definition."""
    f1, f2 = _rand(2, 4, 9, 10, seed=6), _rand(2, 4, 9, 10, seed=7)
    a, b = f1.to(dtype), f2.to(dtype)
    layer = tfa.CorrelationCost(
        kernel_size=3, max_displacement=2, stride_1=2, stride_2=1, pad=3, data_format=data_format
    )
    last = data_format == "channels_last"
    inputs = [a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)] if last else [a, b]
    out = layer(inputs)
    expected = flownet_reference(a.double(), b.double(), 3, 3, 2, 2, 1)
    if last:
        expected = expected.transpose(0, 2, 3, 1)
    assert out.dtype == dtype
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}[dtype]
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)
    shape_in = [tuple(inputs[0].shape)] * 2
    assert layer.compute_output_shape(shape_in) == tuple(out.shape)


def test_tfa_gradients():
    f1 = _rand(1, 3, 8, 8, seed=8).requires_grad_()
    f2 = _rand(1, 3, 8, 8, seed=9).requires_grad_()
    layer = tfa.CorrelationCost(1, 3, 2, 1, 3, "channels_last")
    out = layer([f1.permute(0, 2, 3, 1), f2.permute(0, 2, 3, 1)])
    args = (3, 1, 3, 2, 1, True)
    ref = flownet_reference(f1, f2, *args).transpose(0, 2, 3, 1)
    _check(
        out,
        f1,
        f2,
        ref,
        lambda g: flownet_reference_grad(f1, f2, g.permute(0, 3, 1, 2), *args),
        10,
    )


# ------------------------------------------------------------------------------------------------
# spatial-correlation-sampler and mmcv: the sampler geometry
# ------------------------------------------------------------------------------------------------


@st.composite
def sampler_params(draw):
    def pair(lo, hi):
        return draw(st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi))))

    k, patch, s = pair(1, 3), pair(1, 4), pair(1, 3)
    pad, dil, dp = pair(-1, 2), pair(1, 2), pair(1, 2)

    def two(v):
        return (v, v) if isinstance(v, int) else v

    spans = [(two(k)[a] - 1) * two(dil)[a] + 1 - 2 * two(pad)[a] for a in (0, 1)]
    h = draw(st.integers(max(1, spans[0]), max(1, spans[0]) + 4))
    w = draw(st.integers(max(1, spans[1]), max(1, spans[1]) + 4))
    return dict(k=k, patch=patch, s=s, pad=pad, dil=dil, dp=dp, h=h, w=w)


@HYP
@given(sampler_params(), st.integers(0, 2**16))
def test_sampler_matches_reference(c, seed):
    f1 = _rand(2, 3, c["h"], c["w"], seed=seed).requires_grad_()
    f2 = _rand(2, 3, c["h"], c["w"], seed=seed + 1).requires_grad_()
    args = (c["k"], c["patch"], c["s"], c["pad"], c["dil"], c["dp"])
    out = scs.spatial_correlation_sample(f1, f2, *args)
    _check(out, f1, f2, sampler_reference(f1, f2, *args), lambda g: sampler_reference_grad(f1, f2, g, *args), seed)
    module_out = scs.SpatialCorrelationSampler(*args)(f1, f2)
    torch.testing.assert_close(module_out, out)


def test_sampler_even_patch_convention():
    """Even patch sizes shift by (p - (P-1)//2) * dp: P=4 gives shifts -1, 0, 1, 2."""
    f1, f2 = _rand(1, 2, 6, 6, seed=11), _rand(1, 2, 6, 6, seed=12)
    out = scs.spatial_correlation_sample(f1, f2, patch_size=4)
    assert out.shape == (1, 4, 4, 6, 6)
    shifted = (f1[0, :, 2, 2] * f2[0, :, 2 + 2, 2 - 1]).sum()
    assert out[0, 3, 0, 2, 2].item() == pytest.approx(shifted.item(), rel=1e-12)


@HYP
@given(sampler_params(), st.integers(0, 2**16))
def test_mmcv_matches_sampler_reference(c, seed):
    md = tuple((p - 1) // 2 for p in ((c["patch"],) * 2 if isinstance(c["patch"], int) else c["patch"]))
    f1 = _rand(1, 2, c["h"], c["w"], seed=seed).requires_grad_()
    f2 = _rand(1, 2, c["h"], c["w"], seed=seed + 1).requires_grad_()
    layer = mmcv.Correlation(c["k"], md, c["s"], c["pad"], c["dil"], c["dp"])
    patch = tuple(2 * m + 1 for m in md)
    args = (c["k"], patch, c["s"], c["pad"], c["dil"], c["dp"])
    out = layer(f1, f2)
    _check(out, f1, f2, sampler_reference(f1, f2, *args), lambda g: sampler_reference_grad(f1, f2, g, *args), seed)


def test_flownet_equals_sampler_mapping():
    """semantics.md section 2: sampler(k, 2*(md//s2)+1, s1, p-md, 1, s2) / (k*k*C) == FlowNet (p >= md)."""
    f1, f2 = _rand(2, 4, 11, 13, seed=13), _rand(2, 4, 11, 13, seed=14)
    k, md, s1, s2, p = 3, 4, 2, 2, 5
    fl = mxnet.Correlation(f1, f2, kernel_size=k, max_displacement=md, stride1=s1, stride2=s2, pad_size=p)
    sm = scs.spatial_correlation_sample(f1, f2, k, 2 * (md // s2) + 1, s1, p - md, 1, s2)
    torch.testing.assert_close(fl, sm.flatten(1, 2) / (k * k * 4))


def test_modules_repr():
    assert "corr_multiply=1" in repr(flownet2.Correlation(kernel_size=1))
    assert "max_displacement=4" in repr(corrtorch.CorrTorch())
    assert "patch_size=3" in repr(scs.SpatialCorrelationSampler(patch_size=3))
    assert "dilation_patch=1" in repr(mmcv.Correlation())
    assert "channels_last" in repr(tfa.CorrelationCost(1, 1, 1, 1, 1, "channels_last"))
