"""The command line: every registered command answers --help; the demos run on small sizes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchcorr
from torchcorr.cli import COMMANDS, build_parser, main

SRC = Path(__file__).resolve().parents[1] / "src"


def _finite_numbers(data: dict, keys: list[str]) -> None:
    for k in keys:
        assert k in data, k
        assert isinstance(data[k], (int, float)) and math.isfinite(data[k]), (k, data[k])


# --------------------------------------------------------------------------------------------
# registry and --help
# --------------------------------------------------------------------------------------------


def test_every_command_has_help_text_and_a_module():
    parser = build_parser()
    assert set(COMMANDS) >= {"demo", "flow-demo"}
    for name, (module, help_text) in COMMANDS.items():
        assert module.startswith("torchcorr.cli."), name
        assert len(help_text) > 10, name
    assert parser.prog == "torchcorr"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: torchcorr {name}" in out
    assert len(out.splitlines()) > 5  # a description, not just the usage line


def test_no_command_prints_the_list(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_python_dash_m_entry_point():
    env = {"PYTHONPATH": str(SRC)}
    r = subprocess.run(
        [sys.executable, "-m", "torchcorr", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "demo" in r.stdout and "flow-demo" in r.stdout


# --------------------------------------------------------------------------------------------
# stereo demo
# --------------------------------------------------------------------------------------------


def test_stereo_demo_command(tmp_path, capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    rc = main(["demo", "--out", str(out), "--scale", "4", "--window", "5", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "bad-2.0" in printed and "EPE" in printed
    png = out / "stereo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    metrics = json.loads((out / "stereo_metrics.json").read_text())
    _finite_numbers(metrics, ["bad2_all", "epe_all", "bad2_consistent", "epe_consistent", "density"])
    assert metrics["resolution"] == "185 x 125"
    assert metrics["disparities"] == 16
    assert metrics["cost_volume_shape"] == [1, 16, 125, 185]
    assert metrics["backend"] in torchcorr.backends.resolve_names()
    # a sensible result even at 1/4 size (it is about 18 % there, 11 % at the default 1/2)
    assert metrics["bad2_all"] < 35
    assert metrics["bad2_consistent"] < metrics["bad2_all"]
    assert 0.5 < metrics["density"] <= 1


def test_stereo_demo_ncc_gray(tmp_path):
    pytest.importorskip("skimage")
    from torchcorr.demo.stereo import StereoConfig, run

    m = run(StereoConfig(scale=4, features="gray", ncc=True, window=7), progress=False)["metrics"]
    _finite_numbers(m, ["bad2_all", "epe_all", "bad2_consistent", "epe_consistent", "density"])
    assert m["bad2_consistent"] < 40


def test_stereo_demo_bad_arguments(capsys):
    assert main(["demo", "--window", "4", "--no-progress"]) == 2
    assert "window must be an odd int" in capsys.readouterr().out
    assert main(["demo", "--scale", "0", "--no-progress"]) == 2
    assert "scale must be an int >= 1" in capsys.readouterr().out


def test_stereo_building_blocks_on_a_known_shift():
    from torchcorr.demo._common import features
    from torchcorr.demo.stereo import cost_volume, fill_occlusions, left_right_check, winner_take_all

    torch.manual_seed(0)
    h, w, shift, d = 24, 48, 5, 9
    scene = torch.rand(1, 1, h, w + shift)
    left, right = scene[..., :w], scene[..., shift:]  # left pixel x shows right pixel x - shift
    fl, fr = features(left, "census"), features(right, "census")
    for ncc in (False, True):
        vl = cost_volume(fl, fr, d, window=3, ncc=ncc)
        vr = cost_volume(fl, fr, d, window=3, ncc=ncc, reference="right")
        assert vl.shape == (1, d, h, w)
        dl, dr = winner_take_all(vl), winner_take_all(vr)
        inner = (slice(None), slice(2, -2), slice(d + 1, w - 2))  # windows inside both images
        assert (dl[inner].round() == shift).all()
        assert (dl[inner] - shift).abs().max() < 0.2  # the parabola's bias on a peak that is not one
        ok = left_right_check(dl, dr, 1.0)
        assert ok[..., 2:-2, d + 1 : w - d - 1].all()  # where both views' windows stay inside
        assert not ok[..., : shift - 1].any()  # their match would lie left of the right image
    # the one-sided volumes: left[x] against right[x - d], right[x] against left[x + d]
    vl = cost_volume(fl, fr, d, window=1)
    vr = cost_volume(fl, fr, d, window=1, reference="right")
    for k in (0, 3, 8):
        expect = torch.zeros(1, h, w)
        expect[..., k:] = (fl[..., k:] * fr[..., : w - k]).mean(1)
        assert torch.allclose(vl[:, k], expect, atol=1e-6)
        expect = torch.zeros(1, h, w)
        expect[..., : w - k] = (fr[..., : w - k] * fl[..., k:]).mean(1)
        assert torch.allclose(vr[:, k], expect, atol=1e-6)
    # occlusion filling takes the background (smaller) neighbour on the scanline
    disp = torch.tensor([[[1.0, 9.0, 9.0, 3.0, 9.0]]])
    valid = torch.tensor([[[True, False, False, True, False]]])
    assert fill_occlusions(disp, valid).tolist() == [[[1.0, 1.0, 1.0, 3.0, 3.0]]]


def test_parabola_refinement_finds_the_vertex():
    from torchcorr.demo.stereo import winner_take_all

    d = torch.arange(7, dtype=torch.float64)
    for true in (2.0, 2.3, 3.49, 4.8):
        vol = -((d - true) ** 2)
        assert abs(float(winner_take_all(vol.view(1, 7, 1, 1))) - true) < 1e-9


# --------------------------------------------------------------------------------------------
# flow demo
# --------------------------------------------------------------------------------------------


def test_flow_demo_command(tmp_path, capsys):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    rc = main(["flow-demo", "--out", str(out), "--scale", "4", "--levels", "2", "--max-flow", "6", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "EPE" in printed
    png = out / "flow.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    m = json.loads((out / "flow_metrics.json").read_text())
    _finite_numbers(m, ["epe", "epe_zero_flow", "within_1px", "within_3px"])
    assert m["resolution"] == "128 x 128"
    assert m["levels"] == ["64 x 64", "128 x 128"]
    assert m["backend"] in torchcorr.backends.resolve_names()
    assert m["epe"] < 0.5 * m["epe_zero_flow"]


def test_flow_demo_bad_arguments(capsys):
    assert main(["flow-demo", "--levels", "0", "--no-progress"]) == 2
    assert "levels must be an int >= 1" in capsys.readouterr().out


def test_flow_building_blocks():
    from torchcorr.demo._common import features
    from torchcorr.demo.flow import flow_to_rgb, local_wta, smooth_flow, warp

    torch.manual_seed(0)
    img = torch.rand(1, 3, 20, 30)
    shift = torch.zeros(1, 2, 20, 30)
    shift[:, 0], shift[:, 1] = 2.0, -1.0
    moved = warp(img, shift)  # moved(p) = img(p + (2, -1))
    assert torch.allclose(moved[..., 3:-3, 3:-3], img[..., 2:-4, 5:-1], atol=1e-5)
    gray1, gray2 = moved.mean(1, keepdim=True), img.mean(1, keepdim=True)
    est = local_wta(features(gray1, "patch"), features(gray2, "patch"), radius=3, window=3)
    assert est.shape == (1, 2, 20, 30)
    inner = (slice(None), slice(None), slice(5, -5), slice(5, -5))
    assert (est[inner].round() == shift[inner]).all()
    assert (est[inner] - shift[inner]).abs().max() < 0.25
    f = smooth_flow(16, 24, 5.0, seed=3)
    assert f.shape == (1, 2, 16, 24)
    assert abs(float(f.norm(dim=1).max()) - 5.0) < 1e-4
    pytest.importorskip("matplotlib")
    rgb = flow_to_rgb(f[0], 5.0)
    assert rgb.shape == (16, 24, 3) and float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert torch.allclose(flow_to_rgb(torch.zeros(2, 2, 2), 1.0), torch.ones(2, 2, 3))


def test_progress_without_tqdm(monkeypatch, capsys):
    import builtins

    from torchcorr.demo._common import Progress

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    bar = Progress(2, "test")
    with bar.step("one"):
        pass
    with bar.step("two"):
        pass
    bar.close()
    err = capsys.readouterr().err
    assert "2/2" in err and "two" in err
    assert set(bar.timings) == {"one", "two"}


@pytest.mark.parametrize("command", ["demo", "flow-demo"])
def test_missing_demo_extra_is_a_clear_message(command, monkeypatch, capsys, tmp_path):
    import importlib

    from torchcorr.demo import _common

    real = importlib.import_module

    def no_skimage(name, *args, **kwargs):
        if name.startswith("skimage"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(_common.importlib, "import_module", no_skimage)
    assert main([command, "--out", str(tmp_path), "--no-progress"]) == 2
    out = capsys.readouterr().out
    assert "pip install 'torchcorr[demo]'" in out and "scikit-image" in out
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("reference", ["left", "right"])
def test_ncc_volume_against_a_loop(reference):
    """Zero-mean normalised correlation over the zero-padded window, borders included."""
    import torch.nn.functional as F

    from torchcorr.demo.stereo import cost_volume

    torch.manual_seed(1)
    k, d_count, pad = 3, 8, 10
    left, right = torch.randn(2, 1, 3, 9, 16, dtype=torch.float64).unbind(0)
    vol = cost_volume(left, right, d_count, window=k, ncc=True, reference=reference)
    lp, rp = F.pad(left, (pad, pad, 1, 1)), F.pad(right, (pad, pad, 1, 1))
    for y in (0, 4, 8):
        for x in (0, 1, 2, 7, 14, 15):
            for d in range(d_count):
                xs = x + pad - 1
                if reference == "left":
                    a, b = lp[0, :, y : y + k, xs : xs + k], rp[0, :, y : y + k, xs - d : xs - d + k]
                else:
                    a, b = rp[0, :, y : y + k, xs : xs + k], lp[0, :, y : y + k, xs + d : xs + d + k]
                a, b = a.flatten(), b.flatten()
                cov = (a * b).mean() - a.mean() * b.mean()
                expect = cov / torch.sqrt(a.var(unbiased=False) * b.var(unbiased=False) + 1e-6)
                assert abs(float(vol[0, d, y, x]) - float(expect)) < 1e-12, (y, x, d)
