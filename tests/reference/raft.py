"""Float64 loop references for RAFT's all-pairs correlation, pyramid and lookup (semantics.md section 5).

Written from the spec with plain loops over pixels, offsets and channels, on numpy float64 arrays.
Keep the sizes small: these are slow on purpose.
"""

from __future__ import annotations

import math

import numpy as np


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)


def dot(f1: np.ndarray, f2: np.ndarray, b: int, y1: int, x1: int, y2: int, x2: int) -> float:
    """Channel dot product of f1 at (y1, x1) and f2 at (y2, x2) in batch entry b."""
    s = 0.0
    for c in range(f1.shape[1]):
        s += f1[b, c, y1, x1] * f2[b, c, y2, x2]
    return s


def all_pairs(f1, f2) -> np.ndarray:
    """corr[b, y1, x1, y2, x2] = <f1[b, :, y1, x1], f2[b, :, y2, x2]> / sqrt(C)."""
    f1, f2 = _np(f1), _np(f2)
    bsz, c, h, w = f1.shape
    out = np.zeros((bsz, h, w, h, w))
    for b in range(bsz):
        for y1 in range(h):
            for x1 in range(w):
                for y2 in range(h):
                    for x2 in range(w):
                        out[b, y1, x1, y2, x2] = dot(f1, f2, b, y1, x1, y2, x2) / math.sqrt(c)
    return out


def pool(level: np.ndarray) -> np.ndarray:
    """2x2 average, stride 2, floor, over the last two dimensions."""
    h, w = level.shape[-2:]
    out = np.zeros((*level.shape[:-2], h // 2, w // 2))
    for i in range(h // 2):
        for j in range(w // 2):
            out[..., i, j] = (
                level[..., 2 * i, 2 * j]
                + level[..., 2 * i, 2 * j + 1]
                + level[..., 2 * i + 1, 2 * j]
                + level[..., 2 * i + 1, 2 * j + 1]
            ) / 4.0
    return out


def pyramid(corr, num_levels: int) -> list[np.ndarray]:
    """Level 0 is corr; level l+1 is pool(level l)."""
    levels = [_np(corr)]
    for _ in range(num_levels - 1):
        levels.append(pool(levels[-1]))
    return levels


def bilinear(img: np.ndarray, x: float, y: float) -> float:
    """Bilinear sample of a 2-D map at (x, y), pixel i at coordinate i (align_corners=True), zero outside."""
    h, w = img.shape
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    value = 0.0
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            xx, yy = x0 + dx, y0 + dy
            if 0 <= xx < w and 0 <= yy < h:
                value += wx * wy * img[yy, xx]
    return value


def lookup(levels: list[np.ndarray], coords, radius: int) -> np.ndarray:
    """(B, L*(2r+1)^2, H, W): level l sampled at coords / 2^l + (a, d), a horizontal and the slow index."""
    coords = _np(coords)
    bsz, h, w = levels[0].shape[:3]
    k = 2 * radius + 1
    out = np.zeros((bsz, len(levels) * k * k, h, w))
    for b in range(bsz):
        for y in range(h):
            for x in range(w):
                cx, cy = coords[b, 0, y, x], coords[b, 1, y, x]
                for lvl, level in enumerate(levels):
                    for a in range(-radius, radius + 1):
                        for d in range(-radius, radius + 1):
                            q = lvl * k * k + (a + radius) * k + (d + radius)
                            out[b, q, y, x] = bilinear(level[b, y, x], cx / 2**lvl + a, cy / 2**lvl + d)
    return out


def window_lookup(f1, f2, coords, radius: int, scale: float) -> np.ndarray:
    """One level straight from features: the volume scale*<f1(p), f2(q)> (f2 of any size) sampled around coords."""
    f1, f2, coords = _np(f1), _np(f2), _np(coords)
    bsz, _, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    k = 2 * radius + 1
    out = np.zeros((bsz, k * k, h, w))
    for b in range(bsz):
        for y in range(h):
            for x in range(w):
                volume = np.zeros((h2, w2))
                for yy in range(h2):
                    for xx in range(w2):
                        volume[yy, xx] = scale * dot(f1, f2, b, y, x, yy, xx)
                cx, cy = coords[b, 0, y, x], coords[b, 1, y, x]
                for a in range(-radius, radius + 1):
                    for d in range(-radius, radius + 1):
                        out[b, (a + radius) * k + (d + radius), y, x] = bilinear(volume, cx + a, cy + d)
    return out


def raft_lookup(f1, f2, coords, num_levels: int, radius: int) -> np.ndarray:
    """all_pairs -> pyramid -> lookup."""
    return lookup(pyramid(all_pairs(f1, f2), num_levels), coords, radius)
