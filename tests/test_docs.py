"""The documentation: the site builds with --strict, its examples run, its parameter mappings hold."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchcorr
from torchcorr.compat import corrtorch, mmcv, mxnet, spatial_correlation_sampler, tfa

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs is not installed (pip install 'torchcorr[docs]')",
)
def test_site_builds_strict(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "core" / "index.html").exists()


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]


_SHAPE = r"#\s*(?:torch\.Size\(\[)?\(?([\d, ]+)[\])]"


def _shape_comments(block: str) -> list[tuple[str, tuple[int, ...]]]:
    """Lines that claim a shape in a comment: ``name = ...  # (1, 81, 56, 128)``,
    ``expr.shape  # (1, 81, 56, 128)`` or ``print(expr.shape)  # torch.Size([1, 81, 56, 128])``.

    Returns the expression whose ``.shape`` is claimed and the shape.
    """
    out = []
    for line in block.splitlines():
        m = re.match(r"^(\w+) = .*" + _SHAPE, line) or re.match(r"^(?:print\()?(.+?)\.shape\)?\s*" + _SHAPE, line)
        if m:
            out.append((m.group(1), tuple(int(v) for v in m.group(2).split(",") if v.strip())))
    return out


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "docs/index.md",
        "docs/quickstart.md",
        "docs/guide/correlation.md",
        "docs/guide/local.md",
        "docs/guide/stereo.md",
    ],
)
def test_examples_run_and_shapes_hold(page):
    """Every python block of these pages runs, in order, in one namespace per page, and every
    ``name = ...  # (shape)`` comment states the shape ``name`` gets."""
    blocks = _python_blocks(ROOT / page)
    assert blocks, page
    namespace: dict = {}
    checked = 0
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
        for expr, shape in _shape_comments(block):
            assert tuple(eval(expr, namespace).shape) == shape, (page, expr)
            checked += 1
    assert checked, f"{page} states no shape"


# --------------------------------------------------------------------------------------------
# the parameter mappings of docs/numerics.md and docs/migrate/*.md
# --------------------------------------------------------------------------------------------

FLOWNET = [  # (pad, kernel, max_displacement, stride1, stride2)
    (4, 1, 4, 1, 1),
    (5, 3, 4, 2, 2),
    (20, 1, 20, 1, 2),
    (6, 3, 4, 1, 2),
    (3, 1, 4, 1, 1),  # pad < max_displacement: a negative native padding
]


@pytest.mark.parametrize(("pad", "k", "md", "s1", "s2"), FLOWNET)
def test_flownet_mapping(pad, k, md, s1, s2):
    torch.manual_seed(0)
    a, b = torch.randn(2, 2, 3, 11, 13, dtype=torch.float64).unbind(0)
    native = dict(max_displacement=md, displacement_stride=s2, kernel_size=k, stride=s1, padding=pad - md)
    for multiply, mode in ((True, "product"), (False, "absdiff")):
        ref = mxnet.Correlation(a, b, k, md, s1, s2, pad, is_multiply=multiply)
        torch.testing.assert_close(torchcorr.correlation(a, b, mode=mode, **native), ref, rtol=0, atol=1e-12)
    last = tfa.CorrelationCost(k, md, s1, s2, pad, "channels_last")([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)])
    torch.testing.assert_close(torchcorr.correlation(a, b, layout="channels_last", **native), last, rtol=0, atol=1e-12)


def test_corrtorch_defaults_are_pwc():
    a, b = torch.randn(2, 1, 8, 9, 10, dtype=torch.float64).unbind(0)
    torch.testing.assert_close(corrtorch.CorrTorch()(a, b), torchcorr.correlation(a, b, max_displacement=4))


@pytest.mark.parametrize(
    ("k", "patch", "s", "p", "dil", "dp"), [(1, 4, 1, 0, 1, 2), (3, 5, 2, 1, 2, 1), (3, 3, 1, -1, 1, 2)]
)
def test_sampler_mapping(k, patch, s, p, dil, dp):
    a, b = torch.randn(2, 2, 3, 11, 13, dtype=torch.float64).unbind(0)
    ref = spatial_correlation_sampler.spatial_correlation_sample(a, b, k, patch, s, p, dil, dp)
    lo = -((patch - 1) // 2) * dp
    rng = range(lo, (patch - (patch - 1) // 2) * dp, dp)
    assert len(rng) == patch
    out = torchcorr.correlation(
        a,
        b,
        displacements=(rng, rng),
        kernel_size=k,
        kernel_dilation=dil,
        stride=s,
        padding=p,
        normalize="none",
        layout="grid",
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("k", "m", "s", "p", "dil", "dp"), [(1, 2, 1, 0, 1, 1), (3, 1, 2, 1, 2, 2)])
def test_mmcv_mapping(k, m, s, p, dil, dp):
    a, b = torch.randn(2, 2, 3, 11, 13, dtype=torch.float64).unbind(0)
    ref = mmcv.Correlation(k, m, s, p, dil, dp)(a, b)
    out = torchcorr.correlation(
        a,
        b,
        max_displacement=m * dp,
        displacement_stride=dp,
        kernel_size=k,
        kernel_dilation=dil,
        stride=s,
        padding=p,
        normalize="none",
        layout="grid",
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_geometry_table():
    """The AxisGeometry rows of docs/numerics.md are what the faces build."""
    from torchcorr._geometry import AxisGeometry, flownet_axis, sampler_axis

    p, k, md, s1, s2 = 5, 3, 4, 2, 2
    r = md // s2
    assert flownet_axis(p, k, md, s1, s2) == AxisGeometry(p - md, p - md, s1, k, 1, -r * s2, 2 * r + 1, s2)
    k, patch, s, p, dil, dp = 3, 4, 2, 1, 2, 3
    assert sampler_axis(k, patch, s, p, dil, dp) == AxisGeometry(p, p, s, k, dil, -((patch - 1) // 2) * dp, patch, dp)
    a, b = torch.randn(2, 1, 4, 9, 17, dtype=torch.float64).unbind(0)
    geometry = torchcorr.Geometry(AxisGeometry(0, 0, 1, 1, 1, 0, 1, 1), AxisGeometry(1, 1, 1, 3, 1, 0, 6, -1))
    out = torchcorr.correlate(a, b, geometry, scale=1 / 12)
    assert out.shape == (1, 1, 1, 6, 9, 17)
    native = torchcorr.correlation(a, b, displacements=(range(0, 1), range(0, -6, -1)), kernel_size=(1, 3))
    torch.testing.assert_close(out.flatten(1, 3), native)
