"""Optical flow by coarse-to-fine local correlation on a real image warped by a known flow.

1. A real photograph from scikit-image (``astronaut`` by default) becomes frame 2; a smooth random
   flow ``f`` (a few bicubically upsampled random values plus a translation, fixed seed) defines
   frame 1 as frame 2 sampled at ``p + f(p)`` (``grid_sample``, bilinear), so ``f`` is exactly the
   flow from frame 1 to frame 2 wherever ``p + f(p)`` lies inside the image.
2. Both frames are turned into fixed features (normalised 5 x 5 patches by default) on an image pyramid.
3. From the coarsest level to the finest: upsample the flow found so far, warp frame 2's features
   by it, build a local cost volume of radius ``radius`` around every pixel with
   :func:`torchcorr.correlation` (``Tensor[B, 2r+1, 2r+1, H, W]``, window ``window x window``),
   take the best displacement (winner-take-all) with a parabola per axis for the sub-pixel part,
   add it to the flow and smooth the result with a 3 x 3 median.
4. The end-point error against the known flow (mean Euclidean distance in pixels, over the pixels
   whose flow stays inside the image) is printed next to that of a zero flow.

Example:
    >>> from torchcorr.demo.flow import FlowConfig, run  # doctest: +SKIP
    >>> run(FlowConfig(scale=4))["metrics"]["epe"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import torchcorr

from ._common import (
    FEATURES,
    Progress,
    backend_used,
    environment,
    features,
    parabola_offset,
    require,
    to_gray,
    write_json,
)

__all__ = [
    "FlowConfig",
    "estimate_flow",
    "flow_to_rgb",
    "local_wta",
    "run",
    "smooth_flow",
    "warp",
]

IMAGES = ("astronaut", "chelsea", "coffee", "camera")


@dataclass(frozen=True)
class FlowConfig:
    """Settings of the flow demo.

    Attributes:
        image: scikit-image sample (``astronaut``, ``chelsea``, ``coffee``, ``camera``).
        scale: shrink factor of the image before everything else.
        max_flow: largest flow magnitude of the synthetic motion, in working-scale pixels.
        levels: pyramid levels (each halves the size).
        radius: search radius of the local cost volume at every level, in pixels of that level.
        window: odd side of the correlation window.
        features: ``"census"``, ``"patch"`` or ``"gray"``.
        seed: seed of the synthetic flow.
        backend: torchcorr backend (``None``: the dispatcher's choice).
    """

    image: str = "astronaut"
    scale: int = 2
    max_flow: float = 10.0
    levels: int = 3
    radius: int = 3
    window: int = 7
    features: str = "patch"
    seed: int = 0
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.image not in IMAGES:
            raise ValueError(f"image must be one of {list(IMAGES)}, got {self.image!r}")
        for name, minimum in (("scale", 1), ("levels", 1), ("radius", 1), ("window", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.window % 2 == 0:
            raise ValueError(f"window must be odd, got {self.window}")
        if not (self.max_flow >= 0 and math.isfinite(self.max_flow)):
            raise ValueError(f"max_flow must be a finite number >= 0, got {self.max_flow!r}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {list(FEATURES)}, got {self.features!r}")

    @property
    def reach(self) -> int:
        """Largest flow the pyramid can find: ``radius * (2^levels - 1)`` pixels."""
        return self.radius * (2**self.levels - 1)


def load_image(name: str, scale: int) -> tuple[Tensor, Any]:
    """A scikit-image sample as ``Tensor[1, 1, H, W]`` grayscale in [0, 1] and as RGB for the figure.

    Height and width are cropped to a multiple of ``scale * 8`` and averaged over ``scale x scale`` blocks.
    """
    data = require("skimage.data")
    img = getattr(data, name)()
    unit = scale * 8
    h, w = img.shape[0] // unit * unit, img.shape[1] // unit * unit
    img = img[:h, :w]
    gray = to_gray(img)
    if scale > 1:
        gray = F.avg_pool2d(gray, scale)
        img = img[::scale, ::scale]
    return gray, img


def smooth_flow(h: int, w: int, max_flow: float, seed: int = 0) -> Tensor:
    """A smooth random flow ``Tensor[1, 2, H, W]`` (channel 0 horizontal, 1 vertical), ``|f| <= max_flow``.

    Random values on a 4 x 4 grid, upsampled bicubically, plus a random translation, scaled so
    that the largest magnitude is ``max_flow``.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 2, 4, 4, generator=gen)
    flow = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    flow = flow + torch.randn(1, 2, 1, 1, generator=gen)
    peak = flow.norm(dim=1).max().clamp_min(1e-6)
    return flow * (max_flow / peak)


def _grid(flow: Tensor) -> Tensor:
    """Sampling grid of ``p + flow(p)`` for ``grid_sample`` (align_corners=True)."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack((x, y), dim=-1)


def warp(image: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    """``image`` sampled at ``p + flow(p)``.

    ``Tensor[B, C, H, W]`` and ``Tensor[B, 2, H, W]`` (horizontal, vertical) -> ``Tensor[B, C, H, W]``.
    """
    return F.grid_sample(image, _grid(flow), mode="bilinear", padding_mode=padding_mode, align_corners=True)


def inside(flow: Tensor) -> Tensor:
    """``Tensor[B, H, W]`` bool: where ``p + flow(p)`` lies inside the image."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def local_wta(f1: Tensor, f2: Tensor, radius: int, window: int, backend: str | None = None) -> Tensor:
    """Best displacement of ``f2`` against ``f1`` within ``radius`` (winner-take-all, sub-pixel).

    The local cost volume ``V[b, ty, tx, y, x] = mean_{c, window} f1[b, c, y+u, x+v] *
    f2[b, c, y+u+ty-r, x+v+tx-r]`` (``Tensor[B, 2r+1, 2r+1, H, W]``) comes from
    :func:`torchcorr.correlation`; a parabola through the best score and its neighbours along
    each axis adds the sub-pixel part.

    Args:
        f1: ``Tensor[B, C, H, W]``.
        f2: ``Tensor[B, C, H, W]``.
        radius: search radius ``r`` in pixels.
        window: odd window side.
        backend: torchcorr backend.

    Returns:
        ``Tensor[B, 2, H, W]`` displacement (horizontal, vertical).

    Example:
        >>> import torch
        >>> f2 = torch.randn(1, 8, 16, 16)
        >>> f1 = torch.roll(f2, shifts=(-1, 2), dims=(2, 3))  # f1(p) = f2(p + (dy, dx)) with dy=1, dx=-2
        >>> local_wta(f1, f2, radius=3, window=3)[0, :, 8, 8].round().tolist()
        [-2.0, 1.0]
    """
    vol = torchcorr.correlation(
        f1, f2, max_displacement=radius, kernel_size=window, normalize="mean", layout="grid", backend=backend
    )
    d = vol.shape[1]
    best = vol.flatten(1, 2).argmax(1)
    by, bx = best // d, best % d
    flat = vol.flatten(1, 2)

    def score(iy: Tensor, ix: Tensor) -> Tensor:
        return flat.gather(1, (iy.clamp(0, d - 1) * d + ix.clamp(0, d - 1))[:, None])[:, 0]

    centre = score(by, bx)
    dx = parabola_offset(score(by, bx - 1), centre, score(by, bx + 1))
    dy = parabola_offset(score(by - 1, bx), centre, score(by + 1, bx))
    dx = torch.where((bx > 0) & (bx < d - 1), dx, 0.0)
    dy = torch.where((by > 0) & (by < d - 1), dy, 0.0)
    return torch.stack(((bx - radius).to(vol.dtype) + dx, (by - radius).to(vol.dtype) + dy), dim=1)


def median3(flow: Tensor) -> Tensor:
    """3 x 3 median of each channel, edges replicated."""
    b, c, h, w = flow.shape
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(padded.reshape(b * c, 1, h + 2, w + 2), 3)
    return patches.median(dim=1).values.reshape(b, c, h, w)


def estimate_flow(
    frame1: Tensor, frame2: Tensor, config: FlowConfig, progress: Progress | None = None
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Coarse-to-fine flow from ``frame1`` to ``frame2`` (``Tensor[1, 1, H, W]`` each).

    Returns:
        ``Tensor[1, 2, H, W]`` flow and the (H, W) of each level, coarse to fine.
    """
    pyr1, pyr2 = [frame1], [frame2]
    for _ in range(config.levels - 1):
        pyr1.append(F.avg_pool2d(pyr1[-1], 2))
        pyr2.append(F.avg_pool2d(pyr2[-1], 2))
    flow: Tensor | None = None
    sizes = []
    for level in reversed(range(config.levels)):
        label = f"level {config.levels - level}/{config.levels} ({pyr1[level].shape[-1]} x {pyr1[level].shape[-2]})"
        step = progress.step(label) if progress is not None else None
        if step is not None:
            step.__enter__()
        im1, im2 = pyr1[level], pyr2[level]
        h, w = im1.shape[-2:]
        sizes.append((h, w))
        if flow is None:
            flow = im1.new_zeros(1, 2, h, w)
        else:
            flow = 2 * F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        f1 = features(im1, config.features)
        f2 = warp(features(im2, config.features), flow)
        flow = median3(flow + local_wta(f1, f2, config.radius, config.window, config.backend))
        if step is not None:
            step.__exit__(None, None, None)
    assert flow is not None
    return flow, sizes


def flow_to_rgb(flow: Tensor, max_magnitude: float) -> Tensor:
    """Colour-code a flow ``Tensor[2, H, W]``: hue is the direction, saturation the magnitude.

    Returns:
        ``Tensor[H, W, 3]`` in [0, 1]; white is no motion, full colour ``max_magnitude`` or more.
    """
    colors = require("matplotlib.colors")
    u, v = flow[0], flow[1]
    hue = (torch.atan2(-v, -u) / (2 * math.pi) + 0.5) % 1.0
    sat = (torch.sqrt(u * u + v * v) / max(max_magnitude, 1e-6)).clamp(0, 1)
    hsv = torch.stack((hue, sat, torch.ones_like(hue)), dim=-1)
    return torch.as_tensor(colors.hsv_to_rgb(hsv.numpy()))


def _wheel(size: int = 101) -> Tensor:
    r = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(r, r, indexing="ij")
    rgb = flow_to_rgb(torch.stack((x, y)), 1.0)
    outside = (x * x + y * y) > 1
    rgb[outside] = 1.0
    return rgb


def figure(path: Path, image: Any, frame1: Tensor, est: Tensor, truth: Tensor, valid: Tensor, m: dict) -> None:
    """Frames, true and estimated flow (colour-coded), and the end-point-error map, as a PNG."""
    require("matplotlib")
    from matplotlib.figure import Figure

    peak = float(truth.norm(dim=1).max())
    err = (est - truth).norm(dim=1)[0]
    err = torch.where(valid[0], err, float("nan"))
    fig = Figure(figsize=(13, 8.2), layout="constrained")
    axes = fig.subplots(2, 3)
    axes[0, 0].imshow(image, cmap="gray" if getattr(image, "ndim", 3) == 2 else None)
    axes[0, 0].set_title("frame 2 (the photograph)", fontsize=10)
    axes[0, 1].imshow(frame1[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0, 1].set_title("frame 1 = frame 2 warped by the true flow", fontsize=10)
    axes[0, 2].imshow(_wheel().numpy(), extent=(-peak, peak, peak, -peak))
    axes[0, 2].set_title(f"colour key (x right, y down; full colour at {peak:.1f} px)", fontsize=10)
    axes[1, 0].imshow(flow_to_rgb(truth[0], peak).numpy())
    axes[1, 0].set_title("true flow", fontsize=10)
    axes[1, 1].imshow(flow_to_rgb(est[0], peak).numpy())
    axes[1, 1].set_title(f"torchcorr coarse-to-fine flow (EPE {m['epe']:.2f} px)", fontsize=10)
    im = axes[1, 2].imshow(err.numpy(), cmap="inferno", vmin=0, vmax=3)
    fig.colorbar(im, ax=axes[1, 2], shrink=0.85, label="end-point error (px)")
    axes[1, 2].set_title("end-point error (white: target outside the image)", fontsize=10)
    for ax in axes.flat:
        if ax is not axes[0, 2]:
            ax.set_axis_off()
    c = m["config"]
    fig.suptitle(
        f"{c['image']} at {m['resolution']}, flow up to {c['max_flow']:g} px, {c['levels']} levels, "
        f"radius {c['radius']}, "
        f"{c['window']}x{c['window']} window, {c['features']} features\n"
        f"EPE {m['epe']:.2f} px (zero flow: {m['epe_zero_flow']:.2f} px), {m['within_1px']:.1f}% of pixels within 1 px",
        fontsize=10,
    )
    fig.savefig(path, dpi=80)


def run(config: FlowConfig | None = None, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the flow demo; write ``flow.png`` and ``flow_metrics.json`` into ``out_dir`` if given.

    Returns:
        ``{"metrics": {...}, "flow": Tensor[1, 2, H, W], "truth": Tensor[1, 2, H, W]}``; the metrics
        hold ``epe`` (mean end-point error in px over pixels whose flow stays inside the image),
        ``epe_zero_flow`` (the same for a zero estimate), ``within_1px`` and ``within_3px``
        (percent of those pixels), the resolution, timings and versions.
    """
    config = config or FlowConfig()
    bar = Progress(config.levels + 2 + (out_dir is not None), "flow demo", enabled=progress)
    require("skimage.data")
    if out_dir is not None:
        require("matplotlib")  # fail before the work, not after it
    t_start = time.perf_counter()
    try:
        with bar.step("load and warp"):
            frame2, image = load_image(config.image, config.scale)
            _, _, h, w = frame2.shape
            truth = smooth_flow(h, w, config.max_flow, config.seed)
            frame1 = warp(frame2, truth)
        est, sizes = estimate_flow(frame1, frame2, config, bar)
        with bar.step("metrics"):
            valid = inside(truth)
            epe = (est - truth).norm(dim=1)[valid]
            zero = truth.norm(dim=1)[valid]
            metrics: dict[str, Any] = {
                "epe": float(epe.mean()),
                "epe_zero_flow": float(zero.mean()),
                "within_1px": 100.0 * float((epe <= 1).float().mean()),
                "within_3px": 100.0 * float((epe <= 3).float().mean()),
                "pixels": int(epe.numel()),
                "resolution": f"{w} x {h}",
                "levels": [f"{lw} x {lh}" for lh, lw in sizes],
                "reach": config.reach,
                "backend": backend_used(
                    frame1, frame2, config.backend, max_displacement=config.radius, kernel_size=config.window
                ),
                "config": dataclasses.asdict(config),
                "environment": environment(),
            }
        if out_dir is not None:
            with bar.step("figure"):
                out = Path(out_dir)
                out.mkdir(parents=True, exist_ok=True)
                figure(out / "flow.png", image, frame1, est, truth, valid, metrics)
    finally:
        bar.close()
    metrics["seconds"] = {k: round(v, 3) for k, v in bar.timings.items()}
    metrics["seconds_total"] = round(time.perf_counter() - t_start, 3)
    if out_dir is not None:
        write_json(Path(out_dir) / "flow_metrics.json", metrics)
    return {"metrics": metrics, "flow": est, "truth": truth}
