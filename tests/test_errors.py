"""Bad input gets a ValueError or TypeError that names the parameter and the rule."""

from __future__ import annotations

import pytest
import torch

import torchcorr
from torchcorr.compat import corrtorch, flownet2, mmcv, mxnet, tfa
from torchcorr.compat import spatial_correlation_sampler as scs

X = torch.randn(1, 3, 10, 12)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (dict(stride=0), ValueError, "stride must be >= 1"),
        (dict(stride=-1), ValueError, "stride must be >= 1"),
        (dict(displacement_stride=0), ValueError, "displacement_stride must be >= 1"),
        (dict(max_displacement=-1), ValueError, "max_displacement must be >= 0"),
        (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
        (dict(kernel_dilation=0), ValueError, "kernel_dilation must be >= 1"),
        (dict(kernel_size=2.0), TypeError, "kernel_size must be an int"),
        (dict(stride=(1, 2, 3)), TypeError, "stride must be an int or a pair"),
        (dict(max_displacement=True), TypeError, "max_displacement must be an int"),
        (dict(mode="dot"), ValueError, "mode must be one of"),
        (dict(normalize="max"), ValueError, "normalize must be one of"),
        (dict(layout="nhwc"), ValueError, "layout must be one of"),
        (dict(groups=2), ValueError, "groups must divide the channel count"),
        (dict(groups=0), ValueError, "groups must be >= 1"),
        (dict(displacements=(range(0), range(3))), ValueError, "must not be empty"),
        (dict(displacements=([0], range(3))), TypeError, "range objects"),
        (dict(kernel_size=5, padding=-3), ValueError, "does not fit a 10 x 12 map"),
    ],
)
def test_native_argument_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        torchcorr.correlation(X, X, **kwargs)


@pytest.mark.parametrize(
    ("a", "b", "exc", "pattern"),
    [
        (X, torch.randn(2, 3, 10, 12), ValueError, "same batch size"),
        (X, torch.randn(1, 4, 10, 12), ValueError, "same channel size"),
        (X, torch.randn(1, 3, 11, 12), ValueError, "same height size"),
        (X, torch.randn(1, 3, 10, 13), ValueError, "same width size"),
        (X, X.double(), TypeError, "same dtype"),
        (X.long(), X.long(), TypeError, "floating dtype"),
        (X[0], X[0], ValueError, "4-D tensor"),
        (X, X.numpy(), TypeError, "must be a torch.Tensor"),
        (X, X.to("meta"), ValueError, "same device"),
    ],
)
def test_input_errors(a, b, exc, pattern):
    with pytest.raises(exc, match=pattern):
        torchcorr.correlation(a, b, max_displacement=1)


def test_flownet_window_does_not_fit_message():
    with pytest.raises(
        ValueError, match="a 41-pixel displacement window with kernel 3 does not fit a 10 x 12 map padded by 2"
    ):
        mxnet.Correlation(X, X, kernel_size=3, max_displacement=20, pad_size=2)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(kernel_size=2), "kernel_size must be odd"),
        (dict(kernel_size=0), "kernel_size must be >= 1"),
        (dict(stride1=0), "stride1 must be >= 1"),
        (dict(stride2=0), "stride2 must be >= 1"),
        (dict(max_displacement=-2), "max_displacement must be >= 0"),
        (dict(pad_size=-1), "pad_size must be >= 0"),
    ],
)
def test_mxnet_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        mxnet.Correlation(X, X, **kwargs)


def test_flownet2_default_kernel_is_a_clear_error():
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        flownet2.Correlation()
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        corrtorch.CorrTorch(kernel_size=4)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(kernel_size=0), "kernel_size must be >= 1"),
        (dict(patch_size=0), "patch_size must be >= 1"),
        (dict(stride=0), "stride must be >= 1"),
        (dict(dilation=0), "dilation must be >= 1"),
        (dict(dilation_patch=0), "dilation_patch must be >= 1"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size must be an int or a pair"),
    ],
)
def test_sampler_errors(kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        scs.SpatialCorrelationSampler(**kwargs)
    with pytest.raises((ValueError, TypeError), match=pattern):
        scs.spatial_correlation_sample(X, X, **kwargs)


def test_mmcv_and_tfa_errors():
    with pytest.raises(ValueError, match="max_displacement must be >= 0"):
        mmcv.Correlation(max_displacement=-1)
    with pytest.raises(ValueError, match="data_format must be one of"):
        tfa.CorrelationCost(1, 1, 1, 1, 1, "NCHW")
    with pytest.raises(ValueError, match="stride_1 must be >= 1"):
        tfa.CorrelationCost(1, 1, 0, 1, 1, "channels_first")
    with pytest.raises(TypeError, match="list"):
        tfa.CorrelationCost(1, 1, 1, 1, 1, "channels_first")(X)
    with pytest.raises(ValueError, match=r"\+ 2\*pad >= 2\*max_displacement"):
        tfa.CorrelationCost(3, 20, 1, 1, 2, "channels_first")([X, X])


def test_module_rejects_bad_arguments_at_construction():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        torchcorr.Correlation(4, stride=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        torchcorr.Correlation(4, mode="cosine")


def test_geometry_errors():
    with pytest.raises(ValueError, match="displacement step must be non-zero"):
        torchcorr.AxisGeometry(0, 0, 1, 1, 1, 0, 3, 0)
    with pytest.raises(ValueError, match="16 integers"):
        torchcorr.Geometry.from_list([0] * 15)
    with pytest.raises(TypeError, match="must be an int"):
        torchcorr.AxisGeometry(0, 0, 1.5, 1, 1, 0, 3, 1)
