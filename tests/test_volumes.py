"""Local cost volume and stereo volumes against the float64 loop references of semantics.md 3-4."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchcorr

from .reference import stereo as ref

SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids waiting on a busy second core (CI runs on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(b: int, c: int, h: int, w: int, seed: int, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, h, w, generator=g, dtype=dtype), torch.randn(b, c, h, w, generator=g, dtype=dtype))


def _disparities(d: int, two_sided: bool, step: int) -> list[int]:
    first = -(d - 1) if two_sided else 0
    return [k * step for k in range(first, d)]


# --------------------------------------------------------------------------------------------
# local cost volume
# --------------------------------------------------------------------------------------------

_SCALES = {"channels": lambda c: 1 / c, "mean": lambda c: 1 / c, "sqrt_channels": lambda c: 1 / math.sqrt(c)}


@SETTINGS
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 4),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    ry=st.integers(0, 3),
    rx=st.integers(0, 3),
    dy=st.integers(1, 2),
    dx=st.integers(1, 2),
    normalize=st.sampled_from(["channels", "mean", "sqrt_channels", "none", 0.5]),
    seed=st.integers(0, 2**16),
)
def test_cost_volume_matches_reference(b, c, h, w, ry, rx, dy, dx, normalize, seed):
    f1, f2 = _pair(b, c, h, w, seed)
    out = torchcorr.cost_volume(f1, f2, (ry, rx), dilation=(dy, dx), normalize=normalize)
    scale = normalize if isinstance(normalize, float) else _SCALES.get(normalize, lambda c: 1.0)(c)
    expected = ref.local_cost_volume(f1, f2, ry, rx, dy, dx, scale)
    assert out.shape == (b, (2 * ry + 1) * (2 * rx + 1), h, w)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_cost_volume_square_radius_and_dtype():
    f1, f2 = _pair(2, 8, 7, 9, 0, torch.float32)
    out = torchcorr.cost_volume(f1, f2, 2)
    assert out.shape == (2, 25, 7, 9) and out.dtype == torch.float32
    expected = ref.local_cost_volume(f1, f2, 2, 2, 1, 1, 1 / 8)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_cost_volume_layouts():
    f1, f2 = _pair(2, 5, 6, 7, 1)
    base = torchcorr.cost_volume(f1, f2, (1, 2))
    h1, h2 = f1.permute(0, 2, 3, 1).contiguous(), f2.permute(0, 2, 3, 1).contiguous()
    last = torchcorr.cost_volume(h1, h2, (1, 2), layout="channels_last")
    assert last.shape == (2, 6, 7, 15)
    torch.testing.assert_close(last, base.permute(0, 2, 3, 1))
    mixed = torchcorr.cost_volume(h1, h2, (1, 2), layout="channels_last", output_layout="channels_first")
    torch.testing.assert_close(mixed, base)
    grid = torchcorr.cost_volume(f1, f2, (1, 2), output_layout="grid")
    assert grid.shape == (2, 3, 5, 6, 7)
    torch.testing.assert_close(grid.flatten(1, 2), base)
    to_last = torchcorr.cost_volume(f1, f2, (1, 2), output_layout="channels_last")
    torch.testing.assert_close(to_last, base.permute(0, 2, 3, 1))


def test_cost_volume_noncontiguous_and_channels_last_memory():
    f1, f2 = _pair(2, 6, 8, 10, 2)
    base = torchcorr.cost_volume(f1, f2, 2)
    cl = torchcorr.cost_volume(
        f1.contiguous(memory_format=torch.channels_last), f2.contiguous(memory_format=torch.channels_last), 2
    )
    torch.testing.assert_close(cl, base)
    t1, t2 = f1.transpose(2, 3).contiguous().transpose(2, 3), f2[:, :, :, :].clone()
    assert not t1.is_contiguous()
    torch.testing.assert_close(torchcorr.cost_volume(t1, t2, 2), base)
    s1, s2 = _pair(2, 12, 8, 10, 2)
    out = torchcorr.cost_volume(s1[:, ::2], s2[:, ::2], 1)
    torch.testing.assert_close(out, torchcorr.cost_volume(s1[:, ::2].contiguous(), s2[:, ::2].contiguous(), 1))


def test_cost_volume_equals_flownet_section3():
    """Section 3 is section 1 with pad = md = r, k = 1, s1 = s2 = 1 (and stride2 = dilation)."""
    f1, f2 = _pair(1, 4, 9, 11, 3)
    out = torchcorr.cost_volume(f1, f2, 2, dilation=2)
    fn = torchcorr.correlation(f1, f2, max_displacement=4, displacement_stride=2, padding=0, normalize="mean")
    torch.testing.assert_close(out, fn)


def test_cost_volume_batch_zero_and_tiny():
    f1, f2 = _pair(0, 3, 5, 5, 0)
    assert torchcorr.cost_volume(f1, f2, 1).shape == (0, 9, 5, 5)
    f1, f2 = _pair(1, 3, 1, 1, 0)
    out = torchcorr.cost_volume(f1, f2, 3)
    assert out.shape == (1, 49, 1, 1)
    assert out[0, 24, 0, 0] == pytest.approx((f1 * f2).mean().item())
    assert out.abs().sum() == out[0, 24].abs().sum()


def test_cost_volume_gradcheck():
    f1, f2 = _pair(1, 3, 4, 5, 4)
    f1.requires_grad_(True)
    f2.requires_grad_(True)

    def fn(a, b):
        return torchcorr.cost_volume(a, b, (1, 2), dilation=(2, 1))

    assert torch.autograd.gradcheck(fn, (f1, f2))
    assert torch.autograd.gradgradcheck(fn, (f1, f2))
    h1, h2 = (t.detach().permute(0, 2, 3, 1).requires_grad_(True) for t in (f1, f2))
    assert torch.autograd.gradcheck(lambda a, b: torchcorr.cost_volume(a, b, 1, layout="channels_last"), (h1, h2))


def test_cost_volume_module():
    layer = torchcorr.CostVolume(4)
    f1, f2 = _pair(1, 32, 6, 7, 5, torch.float32)
    torch.testing.assert_close(layer(f1, f2), torchcorr.cost_volume(f1, f2, 4))
    assert "radius=4" in repr(layer)
    layer = torchcorr.CostVolume((1, 2), layout="channels_last", normalize="none")
    assert layer(f1.permute(0, 2, 3, 1), f2.permute(0, 2, 3, 1)).shape == (1, 6, 7, 15)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"radius": -1}, ValueError, "radius"),
        ({"radius": 1.5}, TypeError, "radius"),
        ({"radius": 1, "dilation": 0}, ValueError, "dilation"),
        ({"radius": 1, "normalize": "bogus"}, ValueError, "normalize"),
        ({"radius": 1, "layout": "NCHW"}, ValueError, "layout"),
        ({"radius": 1, "output_layout": "flat"}, ValueError, "output_layout"),
    ],
)
def test_cost_volume_errors(kwargs, exc, match):
    f1, f2 = _pair(1, 2, 4, 4, 0)
    with pytest.raises(exc, match=match):
        torchcorr.cost_volume(f1, f2, **kwargs)
    with pytest.raises(exc, match=match):
        torchcorr.CostVolume(**kwargs)


def test_cost_volume_input_errors():
    f1, f2 = _pair(1, 2, 4, 4, 0)
    with pytest.raises(ValueError, match="same"):
        torchcorr.cost_volume(f1, f2[:, :1], 1)
    with pytest.raises(TypeError, match="dtype"):
        torchcorr.cost_volume(f1, f2.float(), 1)
    with pytest.raises(TypeError, match="floating"):
        torchcorr.cost_volume(f1.long(), f2.long(), 1)
    with pytest.raises(ValueError, match="4-D"):
        torchcorr.cost_volume(f1[0], f2[0], 1)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        torchcorr.cost_volume(f1[0], f2[0], 1, layout="channels_last")
    with pytest.raises(ValueError, match="width"):  # named in (B, C, H, W) terms after the permute
        torchcorr.cost_volume(f1, f2[:, :, :1], 1, layout="channels_last")
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        torchcorr.cost_volume(f1.tolist(), f2, 1, layout="channels_last")


# --------------------------------------------------------------------------------------------
# stereo: DispNetC and GwcNet
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 4),
    w=st.integers(1, 7),
    d=st.integers(1, 9),
    two_sided=st.booleans(),
    reference=st.sampled_from(["left", "right"]),
    step=st.integers(1, 3),
    k=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_stereo_correlation_matches_reference(b, c, h, w, d, two_sided, reference, step, k, seed):
    left, right = _pair(b, c, h, w, seed)
    out = torchcorr.stereo_correlation(
        left, right, d, two_sided=two_sided, reference=reference, disparity_step=step, kernel_size=k
    )
    disp = _disparities(d, two_sided, step)
    assert out.shape == (b, len(disp), h, w)
    torch.testing.assert_close(out, ref.dispnetc(left, right, disp, reference, k), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    b=st.integers(1, 2),
    groups=st.integers(1, 3),
    per_group=st.integers(1, 3),
    h=st.integers(1, 3),
    w=st.integers(1, 7),
    d=st.integers(1, 9),
    two_sided=st.booleans(),
    reference=st.sampled_from(["left", "right"]),
    step=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_groupwise_matches_reference(b, groups, per_group, h, w, d, two_sided, reference, step, seed):
    left, right = _pair(b, groups * per_group, h, w, seed)
    out = torchcorr.groupwise_correlation(
        left, right, d, groups, two_sided=two_sided, reference=reference, disparity_step=step
    )
    disp = _disparities(d, two_sided, step)
    assert out.shape == (b, groups, len(disp), h, w)
    torch.testing.assert_close(out, ref.groupwise(left, right, disp, groups, reference), rtol=1e-12, atol=1e-12)


def test_dispnetc_one_sided_definition_spelled_out():
    """V[n, d, y, x] = mean_c L[y, x] * R[y, x - d], zero where x - d < 0 (semantics.md section 4)."""
    left, right = _pair(2, 5, 3, 8, 7)
    out = torchcorr.stereo_correlation(left, right, 4)
    for d in range(4):
        expected = torch.zeros_like(out[:, d])
        expected[..., d:] = (left[..., d:] * right[..., : 8 - d]).mean(1)
        torch.testing.assert_close(out[:, d], expected)


def test_stereo_float32_and_normalize():
    left, right = _pair(1, 16, 4, 9, 8, torch.float32)
    out = torchcorr.stereo_correlation(left, right, 5, normalize="none")
    expected = ref.dispnetc(left, right, list(range(5))) * 16
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    gw = torchcorr.groupwise_correlation(left, right, 5, 4, normalize="sqrt_channels")
    expected = ref.groupwise(left, right, list(range(5)), 4) * 2  # mean * (C/G) / sqrt(C/G), C/G = 4
    torch.testing.assert_close(gw.double(), expected, rtol=1e-5, atol=1e-5)


def test_groupwise_one_group_is_dispnetc():
    left, right = _pair(2, 6, 4, 10, 9)
    gw = torchcorr.groupwise_correlation(left, right, 6, 1, disparity_step=2)
    torch.testing.assert_close(gw[:, 0], torchcorr.stereo_correlation(left, right, 6, disparity_step=2))


def test_disparity_larger_than_width():
    left, right = _pair(1, 2, 3, 4, 10)
    out = torchcorr.stereo_correlation(left, right, 7)
    assert out.shape == (1, 7, 3, 4)
    assert torch.all(out[:, 4:] == 0)
    gw = torchcorr.groupwise_correlation(left, right, 7, 2, reference="right", two_sided=True)
    torch.testing.assert_close(gw, ref.groupwise(left, right, list(range(-6, 7)), 2, "right"))
    cv = torchcorr.concat_volume(left, right, 7)
    assert torch.all(cv[:, :, 4:] == 0)


def test_stereo_noncontiguous_and_channels_last():
    left, right = _pair(2, 8, 5, 12, 11)
    base = torchcorr.groupwise_correlation(left, right, 6, 4)
    cl = torchcorr.groupwise_correlation(
        left.contiguous(memory_format=torch.channels_last), right.contiguous(memory_format=torch.channels_last), 6, 4
    )
    torch.testing.assert_close(cl, base)
    big_l, big_r = _pair(2, 8, 10, 24, 11)
    view_l, view_r = big_l[:, :, ::2, ::2], big_r[:, :, ::2, ::2]
    assert not view_l.is_contiguous()
    torch.testing.assert_close(
        torchcorr.stereo_correlation(view_l, view_r, 5), torchcorr.stereo_correlation(view_l.clone(), view_r.clone(), 5)
    )
    cv = torchcorr.concat_volume(view_l, view_r, 5)
    torch.testing.assert_close(cv, torchcorr.concat_volume(view_l.clone(), view_r.clone(), 5))


def test_stereo_batch_zero():
    left, right = _pair(0, 4, 3, 5, 0)
    assert torchcorr.stereo_correlation(left, right, 3).shape == (0, 3, 3, 5)
    assert torchcorr.groupwise_correlation(left, right, 3, 2).shape == (0, 2, 3, 3, 5)
    assert torchcorr.concat_volume(left, right, 3).shape == (0, 8, 3, 3, 5)


def test_stereo_gradcheck():
    left, right = _pair(1, 4, 3, 6, 12)
    left.requires_grad_(True)
    right.requires_grad_(True)
    for reference in ("left", "right"):

        def stereo(a, b, reference=reference):
            return torchcorr.stereo_correlation(a, b, 4, reference=reference, disparity_step=2)

        def groupwise(a, b, reference=reference):
            return torchcorr.groupwise_correlation(a, b, 3, 2, reference=reference, two_sided=True)

        def concat(a, b, reference=reference):
            return torchcorr.concat_volume(a, b, 4, reference=reference)

        for fn in (stereo, groupwise, concat):
            assert torch.autograd.gradcheck(fn, (left, right), fast_mode=reference == "right")
        assert torch.autograd.gradgradcheck(groupwise, (left, right), fast_mode=True)
        assert torch.autograd.gradgradcheck(concat, (left, right), fast_mode=True)


def test_stereo_modules():
    left, right = _pair(1, 8, 4, 10, 13, torch.float32)
    m = torchcorr.StereoCorrelation(5, reference="right")
    torch.testing.assert_close(m(left, right), torchcorr.stereo_correlation(left, right, 5, reference="right"))
    assert "max_disparity=5" in repr(m) and "'right'" in repr(m)
    g = torchcorr.GroupwiseCorrelation(5, 4)
    torch.testing.assert_close(g(left, right), torchcorr.groupwise_correlation(left, right, 5, 4))
    assert "groups=4" in repr(g)
    c = torchcorr.ConcatVolume(5, disparity_step=2)
    torch.testing.assert_close(c(left, right), torchcorr.concat_volume(left, right, 5, disparity_step=2))
    with pytest.raises(ValueError, match="groups must divide"):
        torchcorr.GroupwiseCorrelation(5, 3)(left, right)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda a, r: torchcorr.groupwise_correlation(a, r, 4, 3), ValueError, "groups must divide"),
        (lambda a, r: torchcorr.groupwise_correlation(a, r, 4, 0), ValueError, "groups"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 0), ValueError, "max_disparity"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 2.0), TypeError, "max_disparity"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 4, reference="center"), ValueError, "reference"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 4, disparity_step=0), ValueError, "disparity_step"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 4, kernel_size=2), ValueError, "kernel_size"),
        (lambda a, r: torchcorr.stereo_correlation(a, r, 4, two_sided=1), TypeError, "two_sided"),
        (lambda a, r: torchcorr.stereo_correlation(a, r[:, :, :2], 4), ValueError, "height"),
        (lambda a, r: torchcorr.concat_volume(a, r[:, :2], 4), ValueError, "channel"),
        (lambda a, r: torchcorr.concat_volume(a, r.float(), 4), TypeError, "dtype"),
        (lambda a, r: torchcorr.concat_volume(a, r, -1), ValueError, "max_disparity"),
        (lambda a, r: torchcorr.StereoCorrelation(4, normalize="avg"), ValueError, "normalize"),
    ],
)
def test_stereo_errors(call, exc, match):
    left, right = _pair(1, 4, 3, 6, 0)
    with pytest.raises(exc, match=match):
        call(left, right)


# --------------------------------------------------------------------------------------------
# concat volume
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 3),
    w=st.integers(1, 7),
    d=st.integers(1, 9),
    two_sided=st.booleans(),
    reference=st.sampled_from(["left", "right"]),
    step=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_concat_matches_reference(b, c, h, w, d, two_sided, reference, step, seed):
    left, right = _pair(b, c, h, w, seed)
    out = torchcorr.concat_volume(left, right, d, two_sided=two_sided, reference=reference, disparity_step=step)
    disp = _disparities(d, two_sided, step)
    assert out.shape == (b, 2 * c, len(disp), h, w)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref.concat(left, right, disp, reference), rtol=0, atol=0)


def test_concat_is_psmnet_loop():
    """The loop PSMNet ships, written out: both halves zero where x < d."""
    left, right = _pair(2, 3, 4, 9, 14, torch.float32)
    d_count = 5
    expected = left.new_zeros(2, 6, d_count, 4, 9)
    for d in range(d_count):
        if d > 0:
            expected[:, :3, d, :, d:] = left[:, :, :, d:]
            expected[:, 3:, d, :, d:] = right[:, :, :, :-d]
        else:
            expected[:, :3, d] = left
            expected[:, 3:, d] = right
    torch.testing.assert_close(torchcorr.concat_volume(left, right, d_count), expected, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# benchmark baselines (the formulations networks ship) agree with the volumes
# --------------------------------------------------------------------------------------------


def test_bench_baselines_agree():
    from torchcorr.bench import volumes as bench
    from torchcorr.bench.workloads import all_workloads

    left, right = _pair(2, 8, 4, 12, 20)
    for d in (5, 15):  # 15: disparities beyond the width
        torch.testing.assert_close(bench.dispnetc_loop(left, right, d), torchcorr.stereo_correlation(left, right, d))
        torch.testing.assert_close(
            bench.gwcnet_loop(left, right, d, 4), torchcorr.groupwise_correlation(left, right, d, 4)
        )
        torch.testing.assert_close(bench.psmnet_loop(left, right, d), torchcorr.concat_volume(left, right, d))
    a, b = left[0, 0], right[0, 0, :3, :5]
    torch.testing.assert_close(bench.conv2d_xcorr(a, b), torchcorr.xcorr2(a, b))
    registry = all_workloads()
    for wid in ("W7", "W8", "W9"):
        w = registry[wid]
        x = w.setup(True)
        outs = [fn(x) for name, fn in w.impls.items() if name == "torchcorr[torch]" or "torchcorr[" not in name]
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0], rtol=1e-4, atol=1e-4)


def _backends() -> list[str]:
    from torchcorr.backends import get_backend, resolve_names

    return [name for name in resolve_names() if get_backend(name) is not None]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_backend(backend, dtype):
    from torchcorr.backends import get_backend
    from torchcorr.volumes import stereo_geometry

    left, right = _pair(2, 6, 5, 9, 21, dtype)
    reason = get_backend(backend).can_run(left, right, stereo_geometry(4), 1, "product")
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    out = torchcorr.stereo_correlation(left, right, 4, reference="right", two_sided=True, backend=backend)
    torch.testing.assert_close(out.double(), ref.dispnetc(left, right, list(range(-3, 4)), "right"), **tol)
    out = torchcorr.groupwise_correlation(left, right, 11, 3, disparity_step=2, backend=backend)
    torch.testing.assert_close(out.double(), ref.groupwise(left, right, list(range(0, 22, 2)), 3), **tol)
    out = torchcorr.cost_volume(left, right, (1, 2), dilation=(2, 1), backend=backend)
    torch.testing.assert_close(out.double(), ref.local_cost_volume(left, right, 1, 2, 2, 1, 1 / 6), **tol)
