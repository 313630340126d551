"""Float64 loop references for the local and stereo cost volumes (semantics.md sections 3 and 4).

Plain loops over every output entry, written from the definitions; slow and obviously right.
Disparities are passed explicitly as a list, in output order.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _at(f: list, n: int, c: int, y: int, x: int) -> float:
    """f[n][c][y][x] of a nested list (B, C, H, W), zero outside the map."""
    if 0 <= y < len(f[n][c]) and 0 <= x < len(f[n][c][y]):
        return f[n][c][y][x]
    return 0.0


def local_cost_volume(f1: Tensor, f2: Tensor, ry: int, rx: int, dy_step: int, dx_step: int, scale: float) -> Tensor:
    """Section 3: out[n, q, y, x] = scale * sum_c f1[n,c,y,x] * f2[n,c,y+dy,x+dx], vertical shift slow.

    dy = (q // (2rx+1) - ry) * dy_step, dx = (q % (2rx+1) - rx) * dx_step; output (B, (2ry+1)(2rx+1), H, W).
    """
    b, c, h, w = f1.shape
    f1, f2 = f1.double().tolist(), f2.double().tolist()
    dw = 2 * rx + 1
    out = torch.zeros(b, (2 * ry + 1) * dw, h, w, dtype=torch.float64)
    for n in range(b):
        for q in range(out.shape[1]):
            dy = (q // dw - ry) * dy_step
            dx = (q % dw - rx) * dx_step
            for y in range(h):
                for x in range(w):
                    s = 0.0
                    for ch in range(c):
                        s += f1[n][ch][y][x] * _at(f2, n, ch, y + dy, x + dx)
                    out[n, q, y, x] = scale * s
    return out


def groupwise(
    left: Tensor, right: Tensor, disparities: list[int], groups: int, reference: str = "left", k: int = 1
) -> Tensor:
    """Section 4, GwcNet (and DispNetC for groups=1): mean over the channels of each group.

    Left reference:  V[n,g,i,y,x] = mean_{c in g} L[n,c,y,x] * R[n,c,y,x-d_i]
    Right reference: V[n,g,i,y,x] = mean_{c in g} R[n,c,y,x] * L[n,c,y,x+d_i]
    Zero outside.  A window k > 1 (odd) sums the products over a centred k x k window and divides
    by k*k as well.  Output (B, G, D, H, W).
    """
    b, c, h, w = left.shape
    left, right = left.double().tolist(), right.double().tolist()
    cg = c // groups
    kr = (k - 1) // 2
    out = torch.zeros(b, groups, len(disparities), h, w, dtype=torch.float64)
    for n in range(b):
        for g in range(groups):
            for i, d in enumerate(disparities):
                for y in range(h):
                    for x in range(w):
                        s = 0.0
                        for ch in range(g * cg, (g + 1) * cg):
                            for u in range(-kr, kr + 1):
                                for v in range(-kr, kr + 1):
                                    if reference == "left":
                                        s += _at(left, n, ch, y + u, x + v) * _at(right, n, ch, y + u, x + v - d)
                                    else:
                                        s += _at(right, n, ch, y + u, x + v) * _at(left, n, ch, y + u, x + v + d)
                        out[n, g, i, y, x] = s / (cg * k * k)
    return out


def dispnetc(left: Tensor, right: Tensor, disparities: list[int], reference: str = "left", k: int = 1) -> Tensor:
    """Section 4, DispNetC 1-D correlation: the mean over all channels, output (B, D, H, W)."""
    return groupwise(left, right, disparities, 1, reference, k)[:, 0]


def concat(left: Tensor, right: Tensor, disparities: list[int], reference: str = "left") -> Tensor:
    """Section 4, PSMNet concat volume (B, 2C, D, H, W).

    Left reference: V[:, :C, i, y, x] = L[:, :, y, x], V[:, C:, i, y, x] = R[:, :, y, x - d_i], both zero
    where x - d_i is outside [0, W).  Right reference: R[y, x] and L[y, x + d_i], zero where x + d_i is outside.
    """
    b, c, h, w = left.shape
    left, right = left.double().tolist(), right.double().tolist()
    ref, other = (left, right) if reference == "left" else (right, left)
    out = torch.zeros(b, 2 * c, len(disparities), h, w, dtype=torch.float64)
    for n in range(b):
        for i, d in enumerate(disparities):
            for y in range(h):
                for x in range(w):
                    xs = x - d if reference == "left" else x + d
                    if not 0 <= xs < w:
                        continue
                    for ch in range(c):
                        out[n, ch, i, y, x] = ref[n][ch][y][x]
                        out[n, c + ch, i, y, x] = other[n][ch][y][xs]
    return out
