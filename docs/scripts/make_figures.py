"""Regenerate the pictures in docs/img: python docs/scripts/make_figures.py (needs the demo extra).

The demo figures are the output of ``python -m torchcorr demo`` and ``flow-demo`` at their defaults;
the cost-volume pictures show slices of the volumes those demos build.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from matplotlib.figure import Figure

import torchcorr
from torchcorr.cli import main
from torchcorr.demo._common import features
from torchcorr.demo.flow import load_image
from torchcorr.demo.stereo import cost_volume, load_motorcycle

IMG = Path(__file__).resolve().parents[1] / "img"


def demo_figures() -> None:
    """The two demo figures at the demos' defaults."""
    with tempfile.TemporaryDirectory() as tmp:
        assert main(["demo", "--out", tmp, "--no-progress"]) == 0
        assert main(["flow-demo", "--out", tmp, "--no-progress"]) == 0
        shutil.copy(Path(tmp) / "stereo.png", IMG / "stereo_demo.png")
        shutil.copy(Path(tmp) / "flow.png", IMG / "flow_demo.png")


def stereo_volume() -> None:
    """Slices and per-pixel columns of the stereo demo's cost volume."""
    data = load_motorcycle(2)
    fl, fr = features(data["left"], "census"), features(data["right"], "census")
    vol = cost_volume(fl, fr, 32, window=5)  # (1, 32, 250, 370)
    fig = Figure(figsize=(12, 5.6), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, d in zip(axes[0], (8, 16, 24), strict=True):
        im = ax.imshow(vol[0, d].numpy(), cmap="viridis", vmin=-0.2, vmax=1)
        ax.set_title(f"V[0, d={d}]: where the image matches at disparity {d}", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[0, 2], shrink=0.8, label="score")
    axes[1, 0].imshow(data["left"][0, 0].numpy(), cmap="gray")
    points = [(120, 250, "tab:red"), (60, 100, "tab:blue"), (220, 200, "tab:orange")]
    for y, x, c in points:
        axes[1, 0].plot([x], [y], "o", color=c)
    axes[1, 0].set_title("left image (1/2 scale)", fontsize=9)
    axes[1, 0].set_axis_off()
    gs = axes[1, 1].get_gridspec()
    axes[1, 1].remove()
    axes[1, 2].remove()
    ax = fig.add_subplot(gs[1, 1:])
    for y, x, c in points:
        ax.plot(range(32), vol[0, :, y, x].numpy(), "-o", ms=3, color=c, label=f"pixel (y={y}, x={x})")
        gt = data["gt"][2 * y, 2 * x] / 2
        if torch.isfinite(gt):
            ax.axvline(float(gt), color=c, ls="--", lw=1)
    ax.set_xlabel("disparity d (pixels at 1/2 scale); dashed: ground truth")
    ax.set_ylabel("V[0, d, y, x]")
    ax.legend(fontsize=8)
    ax.set_title("one column of the volume per pixel: winner-take-all picks its maximum", fontsize=9)
    fig.suptitle(
        "1-D cost volume V = torchcorr.correlation(L, R, displacements=(range(0, 1), range(0, -32, -1)), "
        "kernel_size=5): shape (1, 32, 250, 370)",
        fontsize=10,
    )
    fig.savefig(IMG / "stereo_volume.png", dpi=80)


def local_volume() -> None:
    """The (2r+1) x (2r+1) scores of two pixels of a local cost volume."""
    gray, _ = load_image("astronaut", 2)
    shifted = torch.roll(gray, shifts=(2, -3), dims=(2, 3))  # frame 2 = frame 1 moved by (dy, dx) = (2, -3)
    f1, f2 = features(gray, "patch"), features(shifted, "patch")
    r = 4
    vol = torchcorr.correlation(f1, f2, max_displacement=r, kernel_size=7, layout="grid")  # (1, 9, 9, 256, 256)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(gray[0, 0].numpy(), cmap="gray")
    pts = [(100, 90, "tab:red"), (200, 60, "tab:orange")]
    for y, x, c in pts:
        axes[0].plot([x], [y], "o", color=c)
    axes[0].set_title("frame 1 (frame 2: moved by dy=2, dx=-3)", fontsize=9)
    axes[0].set_axis_off()
    for ax, (y, x, c) in zip(axes[1:], pts, strict=True):
        im = ax.imshow(vol[0, :, :, y, x].numpy(), cmap="viridis", extent=(-r - 0.5, r + 0.5, r + 0.5, -r - 0.5))
        ax.set_title(f"vol[0, :, :, {y}, {x}] (pixel marked {c.split(':')[1]})", fontsize=9)
        ax.set_xlabel("dx")
        ax.set_ylabel("dy")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "local cost volume torchcorr.correlation(f1, f2, max_displacement=4, kernel_size=7, layout='grid'): "
        "(1, 9, 9, 256, 256); the peak sits at the motion",
        fontsize=10,
    )
    fig.savefig(IMG / "local_volume.png", dpi=80)


if __name__ == "__main__":
    IMG.mkdir(exist_ok=True)
    demo_figures()
    stereo_volume()
    local_volume()
    print("wrote", sorted(p.name for p in IMG.glob("*.png")))
