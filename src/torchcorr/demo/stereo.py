"""Stereo matching on the Middlebury "motorcycle" pair with a 1-D correlation cost volume.

The pipeline, each step a few lines on top of :func:`torchcorr.stereo_correlation` (itself a thin
face of :func:`torchcorr.correlation`):

1. load the rectified pair and its ground-truth disparity (``skimage.data.stereo_motorcycle()``,
   500 x 741, shipped with scikit-image, no download) and shrink it by ``scale`` (area average);
2. fixed per-pixel features (a soft census transform by default, see
   :func:`torchcorr.demo._common.features`);
3. a one-sided horizontal cost volume (:func:`cost_volume`) over the whole disparity range, summed
   over a ``window x window`` box: ``V[b, d, y, x] = mean_{c, window} L[b, c, y, x] * R[b, c, y, x - d]``,
   ``Tensor[B, D, H, W]``, optionally zero-mean normalised over the window (``ncc``);
4. winner-take-all over ``d`` with a parabola through the best score and its neighbours for the
   sub-pixel part;
5. the same for the right view, and a left-right consistency check that marks pixels whose two
   disparities disagree by more than ``lr_threshold`` (occlusions, mismatches);
6. the rejected pixels filled from their scanline's nearer-background neighbour, and the result
   compared with the ground truth at full resolution: bad-2.0 (percent of pixels with ground truth
   that are off by more than 2 px) and end-point error, over every such pixel and over the pixels
   that pass the check.

Ground-truth convention (checked on the data): the pixel ``(y, x)`` of the left image shows the same
point as ``(y, x - disp[y, x])`` of the right one; pixels without ground truth hold ``inf``
(scikit-image's docstring says NaN; both are treated as missing).

Example:
    >>> from torchcorr.demo.stereo import StereoConfig, run  # doctest: +SKIP
    >>> result = run(StereoConfig(scale=4), out_dir="torchcorr-demo")  # doctest: +SKIP
    >>> print(result["metrics"]["bad2_all"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
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
    "StereoConfig",
    "cost_volume",
    "evaluate",
    "fill_occlusions",
    "left_right_check",
    "load_motorcycle",
    "run",
    "winner_take_all",
]

#: full-resolution disparity search range (the ground truth of the pair spans 7.2 .. 59.9 px)
FULL_MAX_DISPARITY = 64


@dataclass(frozen=True)
class StereoConfig:
    """Settings of the stereo demo.

    Attributes:
        scale: shrink factor of the 500 x 741 pair (1, 2, 4, ...); disparities shrink with it.
        max_disparity: search range in full-resolution pixels (``D = ceil(max_disparity / scale)``).
        window: side of the square window the correlation sums over (odd).
        features: ``"census"``, ``"patch"`` or ``"gray"``.
        ncc: zero-mean normalised correlation over the window instead of the plain mean product.
        lr_threshold: largest left-right disagreement (pixels at the working scale) a pixel keeps.
        backend: torchcorr backend (``None``: the dispatcher's choice).
    """

    scale: int = 2
    max_disparity: int = FULL_MAX_DISPARITY
    window: int = 5
    features: str = "census"
    ncc: bool = False
    lr_threshold: float = 1.0
    backend: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale must be an int >= 1, got {self.scale!r}")
        if not isinstance(self.max_disparity, int) or self.max_disparity < self.scale:
            raise ValueError(f"max_disparity must be an int >= scale ({self.scale}), got {self.max_disparity!r}")
        if not isinstance(self.window, int) or self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd int >= 1, got {self.window!r}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {list(FEATURES)}, got {self.features!r}")
        if not self.lr_threshold > 0:
            raise ValueError(f"lr_threshold must be > 0, got {self.lr_threshold!r}")

    @property
    def disparities(self) -> int:
        """Number of disparities searched at the working scale."""
        return -(-self.max_disparity // self.scale)


def load_motorcycle(scale: int = 1) -> dict[str, Any]:
    """The Middlebury motorcycle pair from scikit-image, shrunk by ``scale``.

    Both images are cropped to a multiple of ``scale`` and averaged over ``scale x scale`` blocks.

    Returns:
        ``left``, ``right``: ``Tensor[1, 1, H/scale, W/scale]`` grayscale in [0, 1];
        ``left_rgb``: the cropped full-resolution left image (uint8 array, for the figure);
        ``gt``: ``Tensor[H, W]`` full-resolution disparity, NaN where unknown; ``scale``.
    """
    data = require("skimage.data")
    left, right, disp = data.stereo_motorcycle()
    h, w = disp.shape[0] // scale * scale, disp.shape[1] // scale * scale
    left, right, disp = left[:h, :w], right[:h, :w], disp[:h, :w]
    gt = torch.as_tensor(disp, dtype=torch.float32).clone()
    gt[~torch.isfinite(gt)] = float("nan")
    lg, rg = to_gray(left), to_gray(right)
    if scale > 1:
        lg, rg = F.avg_pool2d(lg, scale), F.avg_pool2d(rg, scale)
    return {"left": lg, "right": rg, "left_rgb": left, "gt": gt, "scale": scale}


def cost_volume(
    left: Tensor,
    right: Tensor,
    disparities: int,
    *,
    reference: str = "left",
    window: int = 5,
    ncc: bool = False,
    backend: str | None = None,
) -> Tensor:
    """Matching scores of a one-sided horizontal search (higher is better), on :func:`torchcorr.stereo_correlation`.

    ``reference="left"``: ``V[b, d, y, x] = mean_{c, window} left[b, c, y+u, x+v] * right[b, c, y+u, x+v-d]``;
    ``reference="right"``: ``V[b, d, y, x] = mean_{c, window} right[b, c, y+u, x+v] * left[b, c, y+u, x+v+d]``;
    ``d`` in ``[0, disparities)``, zero where the other image is read outside the map.  With ``ncc``
    the window (over all channels) is made zero-mean and unit-variance on both sides:
    ``(E[ab] - E[a]E[b]) / sqrt(Var a * Var b)``, the other image's window statistics shifted by
    the same one-channel stereo correlation (against ones).

    Args:
        left: ``Tensor[B, C, H, W]`` features of the left image.
        right: ``Tensor[B, C, H, W]`` features of the right image.
        disparities: number of disparities ``D``.
        reference: ``"left"`` or ``"right"``: the image whose pixels the volume belongs to.
        window: odd window side.
        ncc: zero-mean normalised correlation.
        backend: torchcorr backend.

    Returns:
        ``Tensor[B, D, H, W]``.

    Example:
        >>> import torch
        >>> left, right = torch.randn(2, 1, 8, 12, 20).unbind(0)
        >>> cost_volume(left, right, 6, window=3).shape
        torch.Size([1, 6, 12, 20])
        >>> v = cost_volume(left, right, 6, window=3, ncc=True)
        >>> bool(v.abs().max() <= 1 + 1e-4)  # a correlation coefficient
        True
    """
    volume = torchcorr.stereo_correlation(
        left, right, disparities, reference=reference, kernel_size=window, normalize="mean", backend=backend
    )
    if not ncc:
        return volume
    pad = window // 2
    w = left.shape[-1]

    def window_mean(x: Tensor, extend: int = 0) -> Tensor:
        """Mean over channels and window, zeros outside (as the core), for centres ``-extend .. W-1+extend``."""
        x = F.pad(x.mean(1, keepdim=True), (extend, extend, 0, 0))
        return F.avg_pool2d(x, window, stride=1, padding=pad, count_include_pad=True)

    def shifted(stat: Tensor) -> Tensor:
        """A window statistic of the other image at the matched centre, ``x - d`` or ``x + d``.

        ``stat`` covers centres ``-pad .. W-1+pad`` (a window centred up to ``pad`` outside still
        overlaps the image); the one-channel stereo correlation against ones reads it shifted,
        zero beyond, and the crop returns the centres ``0 .. W-1``.
        """
        ones = torch.ones_like(stat)
        pair = (ones, stat) if reference == "left" else (stat, ones)
        out = torchcorr.stereo_correlation(*pair, disparities, reference=reference, normalize="none", backend=backend)
        return out[..., pad : pad + w]

    ref, other = (left, right) if reference == "left" else (right, left)
    mu_ref = window_mean(ref)
    var_ref = (window_mean(ref * ref) - mu_ref**2).clamp_min(0)
    mu_other = window_mean(other, pad)
    var_other = (window_mean(other * other, pad) - mu_other**2).clamp_min(0)
    cov = volume - mu_ref * shifted(mu_other)
    return cov / torch.sqrt(var_ref * shifted(var_other) + 1e-6)


def winner_take_all(volume: Tensor) -> Tensor:
    """Best disparity per pixel with a parabola fit for the sub-pixel part.

    Args:
        volume: ``Tensor[B, D, H, W]`` scores, higher is better.

    Returns:
        ``Tensor[B, H, W]`` disparities in ``[0, D-1]`` (float).

    Example:
        >>> import torch
        >>> d = torch.arange(8.0)
        >>> scores = -((d - 3.25) ** 2)  # a parabola with its vertex at 3.25
        >>> winner_take_all(scores.view(1, 8, 1, 1)).item()
        3.25
    """
    d = volume.shape[1]
    best = volume.argmax(1, keepdim=True)
    if d < 3:
        return best.squeeze(1).to(volume.dtype)
    inner = best.clamp(1, d - 2)
    minus, centre, plus = (volume.gather(1, inner + k) for k in (-1, 0, 1))
    offset = parabola_offset(minus, centre, plus)
    offset = torch.where(best == inner, offset, 0.0)
    return (best.to(volume.dtype) + offset).squeeze(1)


def left_right_check(disp_left: Tensor, disp_right: Tensor, threshold: float = 1.0) -> Tensor:
    """Pixels of the left view whose match in the right view points back to them.

    Left pixel ``x`` with disparity ``d`` lands on right pixel ``round(x - d)``; it passes when
    that pixel exists and its right-view disparity differs from ``d`` by at most ``threshold``.

    Args:
        disp_left: ``Tensor[B, H, W]`` left-view disparities.
        disp_right: ``Tensor[B, H, W]`` right-view disparities.
        threshold: largest disagreement kept, in pixels.

    Returns:
        ``Tensor[B, H, W]`` bool.

    Example:
        >>> import torch
        >>> left = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 3.0]]])
        >>> right = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0]]])
        >>> left_right_check(left, right, threshold=0.5).tolist()
        [[[False, True, True, True, False]]]

        Pixel 0 points outside the right image; pixel 4 lands on right pixel 1, which points back to pixel 2.
    """
    w = disp_left.shape[-1]
    x = torch.arange(w, device=disp_left.device, dtype=disp_left.dtype)
    target = torch.round(x - disp_left).long()
    inside = target >= 0
    back = disp_right.gather(-1, target.clamp(0, w - 1))
    return inside & ((disp_left - back).abs() <= threshold)


def fill_occlusions(disp: Tensor, valid: Tensor) -> Tensor:
    """Fill rejected pixels from the nearest kept pixel on their scanline, the farther one.

    Occluded pixels belong to the background, so of the nearest kept pixel to the left and to
    the right the one with the smaller disparity is taken; a scanline with no kept pixel becomes 0.

    Args:
        disp: ``Tensor[B, H, W]``.
        valid: ``Tensor[B, H, W]`` bool.

    Returns:
        ``Tensor[B, H, W]``.

    Example:
        >>> import torch
        >>> disp = torch.tensor([[[5.0, 0.0, 0.0, 2.0]]])
        >>> fill_occlusions(disp, disp > 0).tolist()
        [[[5.0, 2.0, 2.0, 2.0]]]
    """
    w = disp.shape[-1]
    idx = torch.arange(w, device=disp.device).expand_as(disp)
    left_idx = torch.where(valid, idx, -1).cummax(-1).values
    right_idx = torch.where(valid, idx, w).flip(-1).cummin(-1).values.flip(-1)
    inf = torch.full_like(disp, float("inf"))
    from_left = torch.where(left_idx >= 0, disp.gather(-1, left_idx.clamp(0, w - 1)), inf)
    from_right = torch.where(right_idx < w, disp.gather(-1, right_idx.clamp(0, w - 1)), inf)
    filled = torch.minimum(from_left, from_right)
    filled = torch.where(torch.isfinite(filled), filled, 0.0)
    return torch.where(valid, disp, filled)


def upsample_disparity(disp: Tensor, scale: int) -> Tensor:
    """``Tensor[H, W]`` at the working scale -> full resolution (bilinear, values times ``scale``)."""
    if scale == 1:
        return disp
    up = F.interpolate(disp[None, None], scale_factor=scale, mode="bilinear", align_corners=False)
    return up[0, 0] * scale


def evaluate(disp_full: Tensor, gt: Tensor, mask: Tensor | None = None, threshold: float = 2.0) -> dict[str, float]:
    """bad-``threshold`` (percent) and end-point error over the pixels with ground truth (and ``mask``).

    Args:
        disp_full: ``Tensor[H, W]`` estimated disparity at the ground truth's resolution.
        gt: ``Tensor[H, W]`` ground truth, NaN or inf where unknown.
        mask: optional ``Tensor[H, W]`` bool restricting the pixels.
        threshold: error in pixels above which a pixel is bad.

    Returns:
        ``{"bad": percent, "epe": mean absolute error, "pixels": count}``.
    """
    keep = torch.isfinite(gt)
    if mask is not None:
        keep = keep & mask
    err = (disp_full - gt)[keep].abs()
    n = int(err.numel())
    if n == 0:
        return {"bad": float("nan"), "epe": float("nan"), "pixels": 0}
    return {"bad": 100.0 * float((err > threshold).float().mean()), "epe": float(err.mean()), "pixels": n}


def figure(path: Path, left_rgb: Any, disp: Tensor, gt: Tensor, valid: Tensor, metrics: dict[str, Any]) -> None:
    """Left image, our disparity, the ground truth and the error map, with colour bars, as a PNG."""
    require("matplotlib")
    from matplotlib.figure import Figure

    err = (disp - gt).abs()
    vmax = float(torch.nan_to_num(gt, nan=0.0).max())
    fig = Figure(figsize=(12, 8.4), layout="constrained")
    axes = fig.subplots(2, 2)
    panels = [
        (left_rgb, "left image", None),
        (disp.numpy(), f"torchcorr disparity (bad-2.0 {metrics['bad2_all']:.1f}%)", ("magma", 0.0, vmax)),
        (gt.numpy(), "ground truth (white: unknown)", ("magma", 0.0, vmax)),
        (err.numpy(), f"|error| px (EPE {metrics['epe_all']:.2f}, grey: rejected by L-R check)", ("inferno", 0.0, 8.0)),
    ]
    for ax, (img, title, cmap) in zip(axes.flat, panels, strict=True):
        if cmap is None:
            ax.imshow(img)
        else:
            name, lo, hi = cmap
            im = ax.imshow(img, cmap=name, vmin=lo, vmax=hi, interpolation="nearest")
            fig.colorbar(im, ax=ax, shrink=0.85, label="pixels")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    rejected = (~valid).float().numpy()
    overlay = torch.zeros(*rejected.shape, 4)
    overlay[..., :3] = 0.6
    overlay[..., 3] = torch.as_tensor(rejected) * 0.75
    axes[1, 1].imshow(overlay.numpy(), interpolation="nearest")
    s = metrics["config"]
    fig.suptitle(
        f"Middlebury motorcycle, {metrics['resolution']} (1/{s['scale']}), {metrics['disparities']} disparities, "
        f"{s['window']}x{s['window']} window, {s['features']} features{', NCC' if s['ncc'] else ''}\n"
        f"bad-2.0 {metrics['bad2_all']:.1f}% of all pixels with ground truth, "
        f"{metrics['bad2_consistent']:.1f}% of the {100 * metrics['density']:.0f}% that pass the L-R check",
        fontsize=10,
    )
    fig.savefig(path, dpi=80)


def run(config: StereoConfig | None = None, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the stereo demo; write ``stereo.png`` and ``stereo_metrics.json`` into ``out_dir`` if given.

    Returns:
        ``{"metrics": {...}, "disparity": Tensor[H, W] (full resolution), "valid": Tensor[H, W] bool}``;
        the metrics hold ``bad2_all``, ``epe_all`` (every pixel with ground truth, rejected pixels
        filled), ``bad2_consistent``, ``epe_consistent`` (pixels that pass the left-right check),
        ``density`` (their share), the resolution, timings and versions.
    """
    config = config or StereoConfig()
    steps = 8 if out_dir is not None else 7
    bar = Progress(steps, "stereo demo", enabled=progress)
    require("skimage.data")
    if out_dir is not None:
        require("matplotlib")  # fail before the work, not after it
    t_start = time.perf_counter()
    try:
        with bar.step("load images"):
            data = load_motorcycle(config.scale)
        with bar.step("features"):
            fl = features(data["left"], config.features)
            fr = features(data["right"], config.features)
        d = config.disparities
        kw = dict(window=config.window, ncc=config.ncc, backend=config.backend)
        with bar.step("cost volume (left)"):
            vol_left = cost_volume(fl, fr, d, reference="left", **kw)  # type: ignore[arg-type]
        with bar.step("cost volume (right)"):
            vol_right = cost_volume(fl, fr, d, reference="right", **kw)  # type: ignore[arg-type]
        with bar.step("winner-take-all"):
            disp_left = winner_take_all(vol_left)
            disp_right = winner_take_all(vol_right)
        with bar.step("left-right check"):
            valid = left_right_check(disp_left, disp_right, config.lr_threshold)
            filled = fill_occlusions(disp_left, valid)
        with bar.step("metrics"):
            gt = data["gt"]
            s = config.scale
            full = upsample_disparity(filled[0], s)
            valid_full = valid[0].repeat_interleave(s, 0).repeat_interleave(s, 1)
            every = evaluate(full, gt)
            consistent = evaluate(full, gt, valid_full)
            h, w = data["left"].shape[-2:]
            metrics: dict[str, Any] = {
                "bad2_all": every["bad"],
                "epe_all": every["epe"],
                "bad2_consistent": consistent["bad"],
                "epe_consistent": consistent["epe"],
                "density": consistent["pixels"] / max(every["pixels"], 1),
                "pixels_with_ground_truth": every["pixels"],
                "resolution": f"{w} x {h}",
                "full_resolution": f"{gt.shape[1]} x {gt.shape[0]}",
                "disparities": d,
                "cost_volume_shape": list(vol_left.shape),
                "backend": backend_used(
                    fl, fr, config.backend, displacements=(range(0, 1), range(0, -d, -1)), kernel_size=config.window
                ),  # the geometry stereo_correlation builds
                "config": dataclasses.asdict(config),
                "environment": environment(),
            }
        if out_dir is not None:
            with bar.step("figure"):
                out = Path(out_dir)
                out.mkdir(parents=True, exist_ok=True)
                figure(out / "stereo.png", data["left_rgb"], full, gt, valid_full, metrics)
    finally:
        bar.close()
    metrics["seconds"] = {k: round(v, 3) for k, v in bar.timings.items()}
    metrics["seconds_total"] = round(time.perf_counter() - t_start, 3)
    if out_dir is not None:
        write_json(Path(out_dir) / "stereo_metrics.json", metrics)
    return {"metrics": metrics, "disparity": full, "valid": valid_full}
