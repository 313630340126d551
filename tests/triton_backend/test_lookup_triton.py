"""The Triton RAFT window lookup against the float64 loop reference (CPU: Triton's interpreter).

Run with ``make test-triton``.  Shapes stay tiny: the interpreter runs every program in Python.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")

from torchcorr.backends.triton import launcher
from torchcorr.backends.triton import lookup as tl_lookup

from ..reference.raft import raft_lookup, window_lookup
from ..reference.raft_window import window_lookup_reference

pytestmark = pytest.mark.triton

DEVICE = "cuda" if torch.cuda.is_available() and not launcher().interpreted() else "cpu"
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def close(actual, expected, dtype):
    expected = expected.detach().double().cpu()
    actual = actual.detach().double().cpu()
    tol = TOL[dtype] * (1.0 + (expected.abs().max().item() if expected.numel() else 0.0))
    torch.testing.assert_close(actual, expected, atol=tol, rtol=TOL[dtype])


def inputs(b, c, h, w, h2, w2, dtype=torch.float64, seed=0, spread=1.5):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    f2 = torch.randn(b, c, h2, w2, generator=g, dtype=torch.float64)
    # targets around the map, some outside it (spread pixels beyond every edge)
    cx = torch.rand(b, h, w, generator=g, dtype=torch.float64) * (w2 - 1 + 2 * spread) - spread
    cy = torch.rand(b, h, w, generator=g, dtype=torch.float64) * (h2 - 1 + 2 * spread) - spread
    coords = torch.stack((cx, cy), 1)
    return f1.to(dtype), f2.to(dtype), coords


def expected(f1, f2, coords, radius, scale, grad):
    a = f1.detach().double().requires_grad_(True)
    b = f2.detach().double().requires_grad_(True)
    c = coords.detach().double().requires_grad_(True)
    out = window_lookup_reference(a, b, c, radius, scale)
    grads = torch.autograd.grad(out, (a, b, c), grad.double())
    return out, grads


def run(f1, f2, coords, radius, scale, dtype, needs=(True, True, True)):
    f1, f2, coords = f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE)
    out = tl_lookup.forward(f1, f2, coords, radius, scale)
    assert out.dtype == f1.dtype and out.shape == (f1.shape[0], (2 * radius + 1) ** 2, *f1.shape[2:])
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref_out, ref_grads = expected(f1.cpu(), f2.cpu(), coords.cpu(), radius, scale, grad)
    close(out, torch.from_numpy(window_lookup(f1, f2, coords, radius, scale)), dtype)
    close(ref_out, torch.from_numpy(window_lookup(f1, f2, coords, radius, scale)), torch.float64)
    got = tl_lookup.backward(grad.to(dtype).to(DEVICE), f1, f2, coords, radius, scale, *needs)
    for need, g, r in zip(needs, got, ref_grads, strict=True):
        if need:
            close(g, r, dtype if g.dtype != coords.dtype else coords.dtype)
        else:
            assert g is None
    return got


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_lookup_float64(radius):
    # f2 of another size than f1: a pooled pyramid level
    f1, f2, coords = inputs(2, 3, 3, 4, 4, 3)
    run(f1, f2, coords, radius, 0.6, torch.float64)


def test_lookup_non_contiguous_and_partial_gradients():
    f1, f2, coords = inputs(1, 2, 3, 3, 3, 4, seed=3)
    f1 = f1.to(memory_format=torch.channels_last)
    coords = coords.transpose(2, 3).contiguous().transpose(2, 3)
    f2 = f2[:, :, :, :]
    run(f1, f2, coords, 1, 1.0, torch.float64, needs=(False, True, False))
    run(f1, f2, coords, 1, 1.0, torch.float64, needs=(True, False, True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lookup_low_precision(dtype):
    f1, f2, coords = inputs(1, 4, 3, 3, 3, 3, dtype=dtype, seed=1)
    coords = coords.float()
    # compare against the reference on the rounded inputs
    out = tl_lookup.forward(f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE), 1, 0.5)
    ref = window_lookup_reference(f1.double(), f2.double(), coords.double(), 1, 0.5)
    close(out, ref, dtype)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    got = tl_lookup.backward(grad.to(DEVICE), f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE), 1, 0.5, True, True, True)
    _, ref_grads = expected(f1, f2, coords, 1, 0.5, grad.double())
    close(got[0], ref_grads[0], dtype)
    close(got[1], ref_grads[1], dtype)
    assert got[2].dtype == torch.float32
    close(got[2], ref_grads[2], dtype)  # coordinate gradients carry the features' rounding


def test_lookup_backward_deterministic():
    f1, f2, coords = inputs(1, 4, 4, 4, 2, 2, dtype=torch.float32, seed=4, spread=0.5)
    f1, f2, coords = f1.to(DEVICE), f2.to(DEVICE), coords.float().to(DEVICE)
    grad = torch.randn(1, 9, 4, 4, device=DEVICE)
    # a 2 x 2 level read by every pixel: many (pixel, neighbour) pairs per f2 pixel
    first = tl_lookup.backward(grad, f1, f2, coords, 1, 1.0, True, True, True)
    second = tl_lookup.backward(grad, f1, f2, coords, 1, 1.0, True, True, True)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_lookup_degenerate():
    f1, f2, coords = inputs(1, 2, 2, 2, 1, 1)
    run(f1, f2, coords, 1, 1.0, torch.float64)
    f1, f2, coords = inputs(0, 2, 2, 2, 2, 2)
    assert tl_lookup.forward(f1, f2, coords, 1, 1.0).shape == (0, 9, 2, 2)
    g = tl_lookup.backward(torch.zeros(0, 9, 2, 2, dtype=torch.float64), f1, f2, coords, 1, 1.0, True, True, True)
    assert [t.shape for t in g] == [f1.shape, f2.shape, coords.shape]


def test_lookup_can_run_reasons(monkeypatch):
    f1, f2, coords = inputs(1, 2, 2, 2, 2, 2)
    on = [t.to(DEVICE) for t in (f1, f2, coords)]
    assert tl_lookup.can_run(*on, 4) is None
    assert "radius" in tl_lookup.can_run(*on, 16)
    assert "dtype" in tl_lookup.can_run(on[0].int(), on[1].int(), on[2], 1)
    if DEVICE == "cpu":
        monkeypatch.delenv("TRITON_INTERPRET")
        assert "TRITON_INTERPRET" in tl_lookup.can_run(f1, f2, coords, 1)


def test_lookup_counts_calls():
    f1, f2, coords = inputs(1, 2, 2, 2, 2, 2)
    before = dict(tl_lookup.CALLS)
    out = tl_lookup.forward(f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE), 1, 1.0)
    tl_lookup.backward(torch.ones_like(out), f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE), 1, 1.0, True, True, True)
    assert tl_lookup.CALLS["lookup_fwd"] == before["lookup_fwd"] + 1
    assert tl_lookup.CALLS["lookup_bwd_pixel"] == before["lookup_bwd_pixel"] + 1
    assert tl_lookup.CALLS["lookup_bwd_f2"] == before["lookup_bwd_f2"] + 1


def test_registered_op_and_raft_faces_run_through_triton(monkeypatch):
    import torchcorr
    from torchcorr.compat.raft import AlternateCorrBlock

    f1, f2, _ = inputs(1, 4, 4, 6, 4, 6, seed=7)
    g = torch.Generator().manual_seed(8)
    coords = torch.rand(1, 2, 4, 6, generator=g, dtype=torch.float64) * 7 - 1
    f1, f2, coords = f1.to(DEVICE), f2.to(DEVICE), coords.to(DEVICE)
    f1.requires_grad_(True)
    f2.requires_grad_(True)
    coords.requires_grad_(True)
    before = dict(tl_lookup.CALLS)
    out = torchcorr.alternate_lookup(f1, f2, coords, num_levels=2, radius=1, backend="triton")
    assert tl_lookup.CALLS["lookup_fwd"] == before["lookup_fwd"] + 2
    expect = raft_lookup(f1.detach(), f2.detach(), coords.detach(), 2, 1)
    close(out, torch.from_numpy(expect), torch.float64)
    out.square().sum().backward()
    assert tl_lookup.CALLS["lookup_bwd_pixel"] == before["lookup_bwd_pixel"] + 2
    assert tl_lookup.CALLS["lookup_bwd_f2"] == before["lookup_bwd_f2"] + 2
    a, b, c = (t.detach().requires_grad_(True) for t in (f1, f2, coords))
    torchcorr.alternate_lookup(a, b, c, num_levels=2, radius=1, backend="torch").square().sum().backward()
    for got, ref in ((f1.grad, a.grad), (f2.grad, b.grad), (coords.grad, c.grad)):
        close(got, ref, torch.float64)
    # the RAFT drop-in picks the Triton lookup from the environment
    monkeypatch.setenv("TORCHCORR_LOOKUP_BACKEND", "triton")
    before = tl_lookup.CALLS["lookup_fwd"]
    block = AlternateCorrBlock(f1.detach(), f2.detach(), num_levels=2, radius=1)
    close(block(coords.detach()), torch.from_numpy(expect), torch.float64)
    assert tl_lookup.CALLS["lookup_fwd"] == before + 2


def test_lookup_opcheck():
    f1, f2, coords = inputs(1, 2, 2, 3, 2, 3, seed=9)
    args = (
        f1.to(DEVICE).requires_grad_(True),
        f2.to(DEVICE).requires_grad_(True),
        coords.to(DEVICE).requires_grad_(True),
        1,
        0.5,
        "triton",
    )
    torch.library.opcheck(
        torch.ops.torchcorr.corr_lookup.default,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
