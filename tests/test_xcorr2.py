"""xcorr2 against the float64 loop reference (semantics.md section 6), scipy and MATLAB's printed answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import torchcorr
from torchcorr.xcorr import _fft_is_cheaper, _next_fast_len

from .reference import xcorr as ref

DATA = Path(__file__).parent / "data"
METHODS = ("direct", "fft")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids waiting on a busy second core (CI runs on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.randn(*shape, generator=g, dtype=dtype)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _fits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return b.shape[-2] <= a.shape[-2] and b.shape[-1] <= a.shape[-1]


@settings(max_examples=40, deadline=None)
@given(
    ha=st.integers(1, 7),
    wa=st.integers(1, 7),
    hb=st.integers(1, 7),
    wb=st.integers(1, 7),
    mode=st.sampled_from(["full", "same", "valid"]),
    method=st.sampled_from(["auto", *METHODS]),
    cplx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_loop_reference(ha, wa, hb, wb, mode, method, cplx, seed):
    dtype = torch.complex128 if cplx else torch.float64
    a, b = _rand(ha, wa, seed=seed, dtype=dtype), _rand(hb, wb, seed=seed + 1, dtype=dtype)
    if mode == "valid" and not _fits(a, b):
        with pytest.raises(ValueError, match="valid"):
            torchcorr.xcorr2(a, b, mode, method=method)
        return
    out = torchcorr.xcorr2(a, b, mode, method=method)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref.xcorr2(a, b, mode), rtol=1e-10, atol=1e-10)


SHAPES = [
    ((5, 7), (3, 3)),  # odd
    ((6, 8), (4, 2)),  # even
    ((6, 7), (2, 5)),  # mixed
    ((1, 9), (1, 4)),  # 1 x N
    ((9, 1), (3, 1)),  # N x 1
    ((1, 1), (1, 1)),
    ((4, 9), (6, 3)),  # template taller than the image
    ((7, 3), (2, 5)),  # template wider than the image
    ((3, 4), (5, 6)),  # template larger in both axes
    ((12, 10), (12, 10)),  # template the size of the image
]


@pytest.mark.parametrize(("sa", "sb"), SHAPES)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_matches_scipy(sa, sb, mode, method, dtype):
    a, b = _rand(*sa, seed=1, dtype=dtype), _rand(*sb, seed=2, dtype=dtype)
    if mode == "valid" and not _fits(a, b):
        with pytest.raises(ValueError, match="template b to fit"):
            torchcorr.xcorr2(a, b, mode, method=method)
        return
    expected = scipy.signal.correlate2d(a.numpy(), b.numpy(), mode=mode)
    out = torchcorr.xcorr2(a, b, mode, method=method)
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_matlab_published_example():
    """The channel sum of xcorr2 over the 4-channel example equals MATLAB's printed 7 x 7 answer."""
    data = json.loads((DATA / "xcorr2_matlab_example.json").read_text())
    a = torch.tensor(data["inputs"], dtype=torch.float64).view(4, 5, 5)
    b = torch.tensor(data["filter"], dtype=torch.float64).view(4, 3, 3)
    matlab = torch.tensor(data["matlab_xcorr2_sum"], dtype=torch.float64).view(7, 7)
    for method in METHODS:
        out = torchcorr.xcorr2(a, b, method=method).sum(0)
        # printed to 4 decimals from 4-decimal inputs: equal after rounding
        torch.testing.assert_close(out.round(decimals=4), matlab, rtol=0, atol=1e-9)
        out32 = torchcorr.xcorr2(a.float(), b.float(), method=method).sum(0)
        assert (out32.double() - matlab).abs().max() <= 5e-5 + 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_channel_sum_is_conv2d(method):
    a, b = _rand(2, 3, 9, 11, seed=3), _rand(3, 4, 5, seed=4)
    out = torchcorr.xcorr2(a, b, method=method).sum(1)
    expected = F.conv2d(a, b.unsqueeze(0), padding=(3, 4))[:, 0]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("sa", "sb", "shape"),
    [
        ((2, 3, 6, 7), (3, 3, 2), (2, 3)),  # template per channel, shared over the batch
        ((6, 7), (4, 3, 2), (4,)),  # one image, four templates
        ((5, 6, 7), (3, 2), (5,)),  # five images, one template
        ((2, 1, 6, 7), (1, 3, 3, 2), (2, 3)),  # outer broadcast
        ((0, 6, 7), (3, 2), (0,)),  # empty batch
        ((2, 0, 6, 7), (3, 2), (2, 0)),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_broadcasting(sa, sb, shape, method):
    a, b = _rand(*sa, seed=5), _rand(*sb, seed=6)
    out = torchcorr.xcorr2(a, b, "same", method=method)
    assert out.shape == (*shape, 6, 7)
    a_full = a.expand(*shape, 6, 7).reshape(-1, 6, 7)
    b_full = b.expand(*shape, *sb[-2:]).reshape(-1, *sb[-2:])
    for n in range(a_full.shape[0]):
        torch.testing.assert_close(out.reshape(-1, 6, 7)[n], ref.xcorr2(a_full[n], b_full[n], "same"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1), (torch.complex64, 1e-5)]
)
def test_dtypes(method, dtype, tol):
    a, b = _rand(2, 9, 10, seed=7, dtype=dtype), _rand(4, 3, seed=8, dtype=dtype)
    out = torchcorr.xcorr2(a, b, method=method)
    assert out.dtype == dtype
    wide = torch.complex128 if dtype.is_complex else torch.float64
    expected = torch.stack([ref.xcorr2(a[n].to(wide), b.to(wide), "full") for n in range(2)])
    torch.testing.assert_close(out.to(wide), expected, rtol=tol, atol=tol * 4)


def test_mixed_dtypes_promote():
    a, b = _rand(5, 6, seed=9, dtype=torch.float32), _rand(2, 3, seed=10, dtype=torch.complex128)
    out = torchcorr.xcorr2(a, b)
    assert out.dtype == torch.complex128
    torch.testing.assert_close(out, ref.xcorr2(a.double(), b, "full"))


@pytest.mark.parametrize("method", METHODS)
def test_noncontiguous(method):
    big_a, big_b = _rand(3, 12, 14, seed=11), _rand(5, 8, 6, seed=12)
    a, b = big_a[:, ::2, 1::2].transpose(-1, -2), big_b[::2, ::2, ::2]
    assert not a.is_contiguous() and not b.is_contiguous()
    torch.testing.assert_close(
        torchcorr.xcorr2(a, b, "same", method=method), torchcorr.xcorr2(a.clone(), b.clone(), "same", method=method)
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradcheck(method, mode, dtype):
    a = _rand(2, 4, 5, seed=13, dtype=dtype).requires_grad_(True)
    b = _rand(2, 2, 3, seed=14, dtype=dtype).requires_grad_(True)

    def fn(x, y):
        return torchcorr.xcorr2(x, y, mode, method=method)

    # the full Jacobian once (direct, same, real); a random projection of it elsewhere
    slow = method == "direct" and mode == "same" and not dtype.is_complex
    assert torch.autograd.gradcheck(fn, (a, b), fast_mode=not slow)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradgradcheck(method, dtype):
    a = _rand(3, 4, seed=15, dtype=dtype).requires_grad_(True)
    b = _rand(2, 2, seed=16, dtype=dtype).requires_grad_(True)
    fn = lambda x, y: torchcorr.xcorr2(x, y, "same", method=method)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (a, b), fast_mode=dtype.is_complex)


def test_auto_method_choice():
    image, template = torch.empty(512, 512), torch.empty(64, 64)
    lead = ()
    rows = cols = (0, 575)
    assert _fft_is_cheaper(image, template, lead, rows, cols)  # W9
    assert not _fft_is_cheaper(image, torch.empty(3, 3), lead, (0, 514), (0, 514))
    assert not _fft_is_cheaper(torch.empty(16, 16), torch.empty(4, 4), lead, (0, 19), (0, 19))
    assert [_next_fast_len(n) for n in (1, 2, 7, 17, 575, 1025)] == [1, 2, 8, 18, 576, 1080]
    # both methods agree where auto switches
    a, b = _rand(40, 50, seed=15), _rand(24, 20, seed=16)
    torch.testing.assert_close(
        torchcorr.xcorr2(a, b, method="direct"), torchcorr.xcorr2(a, b, method="fft"), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "exc", "match"),
    [
        (torch.ones(4, 4, dtype=torch.long), torch.ones(2, 2), {}, TypeError, "a must have a floating"),
        (torch.ones(4, 4), torch.ones(2, 2, dtype=torch.int32), {}, TypeError, "b must have a floating"),
        ([[1.0]], torch.ones(2, 2), {}, TypeError, "a must be a torch.Tensor"),
        (torch.ones(4), torch.ones(2, 2), {}, ValueError, "at least 2 dimensions"),
        (torch.ones(0, 4), torch.ones(2, 2), {}, ValueError, "at least 1 x 1"),
        (torch.ones(4, 4), torch.ones(2, 0), {}, ValueError, "at least 1 x 1"),
        (torch.ones(4, 4), torch.ones(2, 2), {"mode": "circular"}, ValueError, "mode"),
        (torch.ones(4, 4), torch.ones(2, 2), {"method": "winograd"}, ValueError, "method"),
        (torch.ones(4, 4), torch.ones(5, 2), {"mode": "valid"}, ValueError, "valid"),
        (torch.ones(2, 4, 4), torch.ones(3, 2, 2), {}, ValueError, "broadcast"),
    ],
)
def test_errors(a, b, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        torchcorr.xcorr2(a, b, **kwargs)
