"""float64 loop reference of one level of the RAFT window lookup (semantics.md section 5).

``out[b, (a + r)*(2r+1) + (d + r), y, x]`` samples ``S[Y, X] = scale * <f1[b, :, y, x], f2[b, :, Y, X]>``
bilinearly (align_corners=True: pixel ``i`` at coordinate ``i``, zero outside ``f2``) at
``coords[b, :, y, x] + (a, d)`` with ``a`` the horizontal offset (the slow index).  Written with
scalar torch operations so that autograd gives the gradients to ``f1``, ``f2`` and ``coords``
(the floor is piecewise constant: coordinates get the derivative of the bilinear weights).
"""

from __future__ import annotations

import math

import torch


def window_lookup_reference(f1, f2, coords, radius, scale):
    """Tensor[B, C, H, W], Tensor[B, C, h, w], Tensor[B, 2, H, W] -> Tensor[B, (2r+1)^2, H, W] (float64)."""
    b_, _, h, w = f1.shape
    h2, w2 = f2.shape[-2:]
    zero = torch.zeros((), dtype=torch.float64)
    batches = []
    for b in range(b_):
        channels = []
        for a in range(-radius, radius + 1):
            for d in range(-radius, radius + 1):
                plane = []
                for y in range(h):
                    for x in range(w):
                        px = coords[b, 0, y, x] + a
                        py = coords[b, 1, y, x] + d
                        x0, y0 = math.floor(px.item()), math.floor(py.item())
                        fx, fy = px - x0, py - y0
                        value = zero
                        for xx, yy, weight in (
                            (x0, y0, (1 - fx) * (1 - fy)),
                            (x0 + 1, y0, fx * (1 - fy)),
                            (x0, y0 + 1, (1 - fx) * fy),
                            (x0 + 1, y0 + 1, fx * fy),
                        ):
                            if 0 <= xx < w2 and 0 <= yy < h2:
                                dot = (f1[b, :, y, x].double() * f2[b, :, yy, xx].double()).sum()
                                value = value + weight.double() * scale * dot
                        plane.append(value)
                channels.append(torch.stack(plane).reshape(h, w))
        batches.append(torch.stack(channels))
    return torch.stack(batches)
