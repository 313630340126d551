"""RAFT all-pairs correlation, pyramid, lookups and the CorrBlock drop-ins against the float64 loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchcorr
from torchcorr import raft
from torchcorr.bench import raft as baseline
from torchcorr.compat.raft import AlternateCorrBlock, CorrBlock

from .reference import raft as ref

f64 = torch.float64
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def feats(b, c, h, w, seed=0, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g, dtype=dtype), torch.randn(b, c, h, w, generator=g, dtype=dtype)


def random_coords(b, h, w, seed=0, lo=-3.0, hi=None, dtype=f64):
    """Fractional positions, a few pixels beyond the map on every side."""
    g = torch.Generator().manual_seed(seed + 1000)
    hi = max(h, w) + 3.0 if hi is None else hi
    return (torch.rand(b, 2, h, w, generator=g, dtype=dtype) * (hi - lo) + lo).to(dtype)


def close(actual, expected, tol=1e-10):
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    torch.testing.assert_close(actual.detach().cpu(), expected, atol=tol, rtol=tol)


# --------------------------------------------------------------------------------------------
# all-pairs and pyramid
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(b=st.integers(1, 2), c=st.integers(1, 5), h=st.integers(1, 5), w=st.integers(1, 5))
def test_all_pairs_matches_reference(b, c, h, w):
    f1, f2 = feats(b, c, h, w)
    out = torchcorr.all_pairs(f1, f2)
    assert out.shape == (b, h, w, h, w)
    close(out, ref.all_pairs(f1, f2))


def test_all_pairs_noncontiguous_and_batch0():
    f1, f2 = feats(2, 3, 5, 7)
    nc1 = f1.to(memory_format=torch.channels_last)
    nc2 = f2.transpose(2, 3).contiguous().transpose(2, 3)
    close(torchcorr.all_pairs(nc1, nc2), ref.all_pairs(f1, f2))
    empty = torch.zeros(0, 3, 5, 7, dtype=f64)
    assert torchcorr.all_pairs(empty, empty).shape == (0, 5, 7, 5, 7)


@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (5, 3), (2, 2), (1, 6), (3, 1)])
def test_pyramid_matches_reference(hw):
    h, w = hw
    f1, f2 = feats(1, 3, h, w, seed=h * 10 + w)
    corr = torchcorr.all_pairs(f1, f2)
    levels = torchcorr.correlation_pyramid(corr, 4)
    expected = ref.pyramid(ref.all_pairs(f1, f2), 4)
    assert len(levels) == 4
    for got, exp in zip(levels, expected, strict=True):
        assert got.shape == exp.shape  # shrinks to 1 x 1 and to nothing where the map is small
        close(got, exp)
    assert levels[0] is corr


def test_pyramid_generic_rank_and_gradient():
    x = torch.randn(3, 7, 6, dtype=f64, requires_grad=True)
    levels = torchcorr.correlation_pyramid(x, 3)
    assert [tuple(t.shape) for t in levels] == [(3, 7, 6), (3, 3, 3), (3, 1, 1)]
    close(levels[2], ref.pyramid(x, 3)[2])
    assert torch.autograd.gradcheck(lambda t: torchcorr.correlation_pyramid(t, 3)[2], (x,))


# --------------------------------------------------------------------------------------------
# lookups
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    levels=st.integers(1, 4),
    radius=st.integers(0, 2),
    integer=st.booleans(),
)
def test_lookups_match_reference(b, h, w, levels, radius, integer):
    f1, f2 = feats(b, 3, h, w, seed=h + 7 * w)
    coords = random_coords(b, h, w, seed=b + h)
    if integer:
        coords = coords.round()
    expected = ref.raft_lookup(f1, f2, coords, levels, radius)
    via_volume = torchcorr.pyramid_lookup(
        torchcorr.correlation_pyramid(torchcorr.all_pairs(f1, f2), levels), coords, radius
    )
    on_the_fly = torchcorr.alternate_lookup(f1, f2, coords, levels, radius)
    k = 2 * radius + 1
    assert via_volume.shape == on_the_fly.shape == (b, levels * k * k, h, w)
    close(via_volume, expected)
    close(on_the_fly, expected)


def test_lookup_channel_order_is_horizontal_slow():
    # one bright pixel of f2 at (y, x) = (1, 3): only the offset (a, d) = (3 - 1, 1 - 1) sees it
    f1 = torch.ones(1, 1, 3, 5, dtype=f64)
    f2 = torch.zeros(1, 1, 3, 5, dtype=f64)
    f2[0, 0, 1, 3] = 1.0
    coords = torch.zeros(1, 2, 3, 5, dtype=f64)
    coords[:, 0], coords[:, 1] = 1.0, 1.0  # every pixel looks at (x, y) = (1, 1)
    out = torchcorr.alternate_lookup(f1, f2, coords, 1, 2)
    hot = (out[0, :, 0, 0] != 0).nonzero().flatten().tolist()
    assert hot == [(2 + 2) * 5 + (0 + 2)]  # a = +2 (horizontal) slow, d = 0 fast


@pytest.mark.parametrize("where", ["far", "inf", "nan", "edge"])
def test_lookup_outside_reads_zero(where):
    f1, f2 = feats(1, 4, 4, 5)
    # "edge": at level 1 the window (radius 2) around -6/2 ends just before -1, where the first tap would start
    value = {"far": 1e30, "inf": math.inf, "nan": math.nan, "edge": -6.0 - 1e-9}[where]
    coords = torch.full((1, 2, 4, 5), value, dtype=f64)
    for out in (
        torchcorr.alternate_lookup(f1, f2, coords, 2, 2),
        torchcorr.pyramid_lookup(torchcorr.correlation_pyramid(torchcorr.all_pairs(f1, f2), 2), coords, 2),
    ):
        assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("size2", [(5, 7), (3, 2), (1, 1), (0, 4), (9, 4)])
def test_local_lookup_any_f2_size(size2):
    f1, _ = feats(2, 3, 4, 5)
    f2 = torch.randn(2, 3, *size2, dtype=f64)
    coords = random_coords(2, 4, 5, lo=-2.0, hi=max(size2) + 2.0)
    out = torchcorr.local_lookup(f1, f2, coords, 1, scale=0.7)
    close(out, ref.window_lookup(f1, f2, coords, 1, 0.7))


def test_alternate_accepts_precomputed_levels():
    f1, f2 = feats(1, 4, 6, 9)
    coords = random_coords(1, 6, 9)
    levels = raft.feature_pyramid(f2, 3)
    torch.testing.assert_close(
        torchcorr.alternate_lookup(f1, levels, coords, radius=2), torchcorr.alternate_lookup(f1, f2, coords, 3, 2)
    )


def test_matches_raft_grid_sample_formulation():
    f1, f2 = feats(2, 5, 11, 13, dtype=torch.float32)
    coords = random_coords(2, 11, 13, dtype=torch.float32)
    expected = baseline.baseline_corr_block(f1, f2, coords, 3, 3)
    torch.testing.assert_close(CorrBlock(f1, f2, 3, 3)(coords), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(AlternateCorrBlock(f1, f2, 3, 3)(coords), expected, atol=1e-5, rtol=1e-5)


def test_gradients_match_raft_grid_sample_formulation():
    f1, f2, coords = _grad_inputs(b=2, c=4, h=8, w=9, seed=11)  # every level at least 2 x 2 (RAFT divides by w - 1)
    out = baseline.baseline_corr_block(f1, f2, coords, 3, 2)
    weights = torch.randn_like(out)
    expected = torch.autograd.grad(out, (f1, f2, coords), weights)
    got = torch.autograd.grad(AlternateCorrBlock(f1, f2, 3, 2)(coords), (f1, f2, coords), weights)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# CorrBlock / AlternateCorrBlock
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_blocks_agree(dtype):
    f1, f2 = feats(2, 24, 12, 16, seed=3, dtype=dtype)
    coords = random_coords(2, 12, 16, dtype=dtype)
    dense = CorrBlock(f1, f2)(coords)
    sparse = AlternateCorrBlock(f1, f2)(coords)
    assert dense.shape == sparse.shape == (2, 324, 12, 16)
    assert dense.dtype == sparse.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(sparse, dense, atol=tol, rtol=tol)


def test_blocks_gradients_agree():
    f1, f2 = feats(1, 5, 6, 7, seed=4)
    coords = random_coords(1, 6, 7)
    grads = []
    for block in (CorrBlock, AlternateCorrBlock):
        a, b, c = (t.clone().requires_grad_() for t in (f1, f2, coords))
        out = block(a, b, num_levels=3, radius=2)(c)
        grads.append(torch.autograd.grad(out, (a, b, c), torch.cos(torch.arange(out.numel(), dtype=f64)).view_as(out)))
    for g_dense, g_sparse in zip(*grads, strict=True):
        assert g_sparse.abs().sum() > 0
        torch.testing.assert_close(g_sparse, g_dense, atol=1e-11, rtol=1e-11)


def test_blocks_half_precision_returns_float32():
    f1, f2 = feats(1, 8, 6, 8, dtype=torch.float32)
    coords = random_coords(1, 6, 8, dtype=torch.float32)
    full = AlternateCorrBlock(f1, f2, 2, 2)(coords)
    for dtype in (torch.float16, torch.bfloat16):
        out = AlternateCorrBlock(f1.to(dtype), f2.to(dtype), 2, 2)(coords)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, full, atol=0.05, rtol=0.05)
        assert CorrBlock(f1.to(dtype), f2.to(dtype), 2, 2)(coords).dtype == torch.float32


def test_corr_block_raft_layouts():
    f1, f2 = feats(2, 3, 4, 6)
    block = CorrBlock(f1, f2, 3, 1)
    assert CorrBlock.corr(f1, f2).shape == (2, 4, 6, 1, 4, 6)
    assert [tuple(c.shape) for c in block.corr_pyramid] == [(48, 1, 4, 6), (48, 1, 2, 3), (48, 1, 1, 1)]


# --------------------------------------------------------------------------------------------
# gradients, op checks
# --------------------------------------------------------------------------------------------


def _grad_inputs(b=1, c=3, h=4, w=5, h2=None, w2=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, c, h, w, generator=g, dtype=f64, requires_grad=True)
    f2 = torch.randn(b, c, h2 or h, w2 or w, generator=g, dtype=f64, requires_grad=True)
    # fractional positions (never on integer grid lines, where bilinear sampling has a kink), some outside
    coords = (torch.rand(b, 2, h, w, generator=g, dtype=f64) * (max(h, w) + 4) - 2.5).requires_grad_()
    with torch.no_grad():
        coords += 0.05 * (coords.frac().abs() < 0.02)
    return f1, f2, coords


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_gradcheck_local_lookup(radius):
    # the full Jacobian on a tiny map, random projections (fast mode) on a larger one
    f1, f2, coords = _grad_inputs(c=2, h=2, w=3, h2=3, w2=4, seed=radius)
    fn = lambda a, b, c: torchcorr.local_lookup(a, b, c, radius)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f1, f2, coords))
    f1, f2, coords = _grad_inputs(b=2, h2=3, w2=6, seed=radius)
    assert torch.autograd.gradcheck(fn, (f1, f2, coords), fast_mode=True)


def test_gradcheck_alternate_and_pyramid_lookup():
    f1, f2, coords = _grad_inputs(b=2, c=2, h=4, w=4, seed=9)
    with torch.no_grad():
        coords.mul_(0.9).add_(0.013)  # keep the coarser levels' positions off integers too
    # fast mode (random projections of the Jacobian): the full one takes minutes at this size
    assert torch.autograd.gradcheck(
        lambda a, b, c: torchcorr.alternate_lookup(a, b, c, 3, 1), (f1, f2, coords), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda a, b, c: torchcorr.pyramid_lookup(torchcorr.correlation_pyramid(torchcorr.all_pairs(a, b), 3), c, 1),
        (f1, f2, coords),
        fast_mode=True,
    )


def test_gather_strategy_matches_sparse(monkeypatch):
    """The per-neighbour gather loop (devices without sparse CSR kernels) gives the same values and gradients."""
    from torchcorr.backends import lookup_pure

    f1, f2, coords = _grad_inputs(b=2, c=3, h=4, w=5, h2=3, w2=7, seed=2)
    results = []
    for devices in (lookup_pure.SPARSE_DEVICES, ()):
        monkeypatch.setattr(lookup_pure, "SPARSE_DEVICES", devices)
        out = torchcorr.local_lookup(f1, f2, coords, 2)
        results.append((out, *torch.autograd.grad(out, (f1, f2, coords), torch.ones_like(out))))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    fn = lambda a, b, c: torchcorr.local_lookup(a, b, c, 1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f1, f2, coords), fast_mode=True)


def test_partial_gradients():
    f1, f2, coords = _grad_inputs()
    f2.requires_grad_(False)
    out = torchcorr.local_lookup(f1, f2, coords, 1)
    g1, gc = torch.autograd.grad(out.sum(), (f1, coords))
    assert g1.shape == f1.shape and gc.shape == coords.shape
    coords.requires_grad_(False)
    (g1b,) = torch.autograd.grad(torchcorr.local_lookup(f1, f2, coords, 1).sum(), (f1,))
    torch.testing.assert_close(g1b, g1)


def test_opcheck():
    cases = []
    for requires_grad in (False, True):
        f1, f2, coords = _grad_inputs(b=2, c=3, h=3, w=4, h2=2, w2=5)
        cases.append([t.detach().requires_grad_(requires_grad) for t in (f1, f2, coords)])
    f1, f2, coords = _grad_inputs(b=1, c=2, h=3, w=3)
    cases.append([f1.float().detach(), f2.float().detach(), coords.float().detach().requires_grad_()])
    for f1, f2, coords in cases:
        torch.library.opcheck(torch.ops.torchcorr.corr_lookup.default, (f1, f2, coords, 1, 0.5, "auto"))


def test_eager_shortcut_gives_the_ops_results():
    """Plain eager lookups skip the registered op (torchcorr._shortcut): same values and gradients."""
    from torchcorr import raft

    f1, f2, coords = _grad_inputs(b=2, c=3, h=4, w=5, h2=3, w2=6)
    results = []
    for route in (torch.ops.torchcorr.corr_lookup, raft._lookup):
        a, b, c = (t.detach().requires_grad_() for t in (f1, f2, coords))
        out = route(a, b, c, 1, 0.5, "auto")
        seed = torch.Generator().manual_seed(3)
        results.append((out, *torch.autograd.grad(out, (a, b, c), torch.randn(out.shape, generator=seed, dtype=f64))))
        assert ("Shortcut" in out.grad_fn.name()) == (route is raft._lookup)
    for x, y in zip(*results, strict=True):
        assert torch.equal(x, y)


def test_batch_zero():
    f1 = torch.zeros(0, 3, 4, 5, dtype=f64, requires_grad=True)
    f2 = torch.zeros(0, 3, 4, 5, dtype=f64, requires_grad=True)
    coords = torch.zeros(0, 2, 4, 5, dtype=f64, requires_grad=True)
    out = torchcorr.alternate_lookup(f1, f2, coords, 2, 1)
    assert out.shape == (0, 18, 4, 5)
    out.sum().backward()
    assert f1.grad.shape == f1.shape and coords.grad.shape == coords.shape
    assert CorrBlock(f1, f2, 2, 1)(coords).shape == (0, 18, 4, 5)


def test_on_the_fly_never_allocates_the_volume():
    """No allocation anywhere near the (H*W)^2 volume (67 MB here), forward or backward."""
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(1, 8, 64, 64, generator=g, requires_grad=True)
    f2 = torch.randn(1, 8, 64, 64, generator=g, requires_grad=True)
    coords = (torch.rand(1, 2, 64, 64, generator=g) * 64).requires_grad_()
    with torch.profiler.profile(profile_memory=True) as prof:
        torchcorr.alternate_lookup(f1, f2, coords, 2, 2).sum().backward()
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < largest < 64 * 64 * 64 * 64 * 4 / 16
    assert f1.grad is not None and f2.grad is not None and coords.grad is not None


def test_noncontiguous_inputs():
    f1, f2 = feats(2, 4, 6, 7, seed=5)
    coords = random_coords(2, 6, 7)
    expected = torchcorr.alternate_lookup(f1, f2, coords, 2, 2)
    nc1 = f1.to(memory_format=torch.channels_last)
    nc2 = torch.stack([f2, f2], 2).flatten(1, 2)[:, ::2]  # strided channels
    ncc = coords.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert not (nc2.is_contiguous() or ncc.is_contiguous())
    torch.testing.assert_close(torchcorr.alternate_lookup(nc1, nc2, ncc, 2, 2), expected)
    torch.testing.assert_close(
        torchcorr.pyramid_lookup(torchcorr.correlation_pyramid(torchcorr.all_pairs(nc1, nc2), 2), ncc, 2), expected
    )


def test_any_channel_count_and_float32_coords_with_float64_features():
    f1, f2 = feats(1, 7, 5, 6)  # C not a multiple of 32
    coords = random_coords(1, 5, 6, dtype=torch.float32)
    out = torchcorr.alternate_lookup(f1, f2, coords, 2, 1)
    assert out.dtype == f64
    close(out, ref.raft_lookup(f1, f2, coords.double(), 2, 1))


def test_lookup_backend_dispatch(monkeypatch):
    f1, f2 = feats(1, 2, 3, 4)
    coords = random_coords(1, 3, 4)
    assert raft.lookup_backend_names()[-1] == "torch"
    torch.testing.assert_close(
        torchcorr.local_lookup(f1, f2, coords, 1, backend="torch"), torchcorr.local_lookup(f1, f2, coords, 1)
    )
    with pytest.raises(ValueError, match="backend must be one of"):
        torchcorr.local_lookup(f1, f2, coords, 1, backend="nope")
    monkeypatch.setenv(raft.LOOKUP_ENV_VAR, "nope")
    with pytest.raises(ValueError, match="backend must be one of"):
        torchcorr.alternate_lookup(f1, f2, coords, 1, 1)
    monkeypatch.delenv(raft.LOOKUP_ENV_VAR)
    monkeypatch.setattr(raft, "LOOKUP_PRIORITY", list(raft.LOOKUP_PRIORITY))
    raft.register_lookup_backend("missing", "torchcorr.backends.does_not_exist")
    assert raft.lookup_backend_names()[-2:] == ["missing", "torch"]
    torchcorr.local_lookup(f1, f2, coords, 1)  # auto falls through to the pure one
    with pytest.raises(ValueError, match="cannot import"):
        torchcorr.local_lookup(f1, f2, coords, 1, backend="missing")


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_errors():
    f1, f2 = feats(2, 3, 4, 5)
    coords = random_coords(2, 4, 5)
    with pytest.raises(ValueError, match=r"coords must have shape \(B, 2, H, W\)"):
        torchcorr.alternate_lookup(f1, f2, coords[:, :1], 2, 1)
    with pytest.raises(ValueError, match="coords must have shape"):
        CorrBlock(f1, f2)(coords.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="coords must have shape"):
        AlternateCorrBlock(f1, f2)(coords[:1])
    with pytest.raises(TypeError, match="coords must have a floating dtype"):
        torchcorr.local_lookup(f1, f2, coords.long(), 1)
    with pytest.raises(TypeError, match=r"coords must be a torch\.Tensor"):
        torchcorr.local_lookup(f1, f2, None, 1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        torchcorr.alternate_lookup(f1, f2, coords, 2, -1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        AlternateCorrBlock(f1, f2, radius=-1)
    with pytest.raises(TypeError, match="radius must be an int"):
        torchcorr.local_lookup(f1, f2, coords, 1.5)
    with pytest.raises(ValueError, match="num_levels must be >= 1"):
        torchcorr.alternate_lookup(f1, f2, coords, 0, 1)
    with pytest.raises(ValueError, match="num_levels must be >= 1"):
        CorrBlock(f1, f2, num_levels=0)
    with pytest.raises(ValueError, match="num_levels must be >= 1"):
        torchcorr.correlation_pyramid(torchcorr.all_pairs(f1, f2), 0)
    with pytest.raises(ValueError, match="same channel size"):
        torchcorr.all_pairs(f1, f2[:, :2])
    with pytest.raises(ValueError, match="fmap1 and fmap2 must have the same channel size"):
        AlternateCorrBlock(f1, f2[:, :2])
    with pytest.raises(ValueError, match="same height size"):
        CorrBlock(f1, f2[:, :, :3])
    with pytest.raises(ValueError, match="same batch and channel sizes"):
        torchcorr.local_lookup(f1, f2[:, :2], coords, 1)
    with pytest.raises(TypeError, match="same dtype"):
        torchcorr.alternate_lookup(f1, f2.float(), coords, 1, 1)
    with pytest.raises(ValueError, match="num_levels must equal"):
        torchcorr.alternate_lookup(f1, raft.feature_pyramid(f2, 2), coords, 3, 1)
    with pytest.raises(ValueError, match="at least one channel"):
        torchcorr.all_pairs(f1[:, :0], f2[:, :0])
    with pytest.raises(ValueError, match="pyramid"):
        torchcorr.pyramid_lookup([torch.zeros(2, 4, 5, 4)], coords, 1)
    with pytest.raises(TypeError, match="pyramid must be a non-empty list"):
        torchcorr.pyramid_lookup([], coords, 1)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        torchcorr.local_lookup(f1, f2, coords, 1, scale=math.nan)
