"""Float64 loop references for semantics.md sections 1-3, written from the spec alone.

Each function takes array-likes (tensors or numpy arrays), works in float64 numpy with plain loops
over output positions, displacements and window taps, and returns numpy arrays.  "Zero outside" is
implemented literally: a read outside the map returns a zero vector.  The gradient references
accumulate the derivative of each term of the defining sum into the position it read.

These functions are the contract the implementation is checked against: never edit them to match
an implementation.
"""

from __future__ import annotations

import math

import numpy as np


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


class _Reader:
    """``read(n, y, x)`` -> the (C,) feature vector of map ``f`` at (y, x), zeros outside."""

    def __init__(self, f: np.ndarray) -> None:
        self.f = f
        self.h, self.w = f.shape[2], f.shape[3]

    def inside(self, y: int, x: int) -> bool:
        return 0 <= y < self.h and 0 <= x < self.w

    def read(self, n: int, y: int, x: int) -> np.ndarray:
        if self.inside(y, x):
            return self.f[n, :, y, x]
        return np.zeros(self.f.shape[1])


def _sign_plus(d: np.ndarray) -> np.ndarray:
    """sign with sign(0) = +1 (MXNet's convention for the first input)."""
    return np.where(d >= 0, 1.0, -1.0)


# ------------------------------------------------------------------------------------------------
# Section 1: FlowNet / Caffe / MXNet / tensorflow-addons
# ------------------------------------------------------------------------------------------------


def flownet_terms(shape, pad, kernel_size, max_displacement, stride1, stride2):
    """Yield every term of section 1's sum as (q, i, j, (y1, x1), (y2, x2)), plus the sizes.

    Returns (Hout, Wout, D, generator factory).
    """
    _, _, h, w = shape
    kr = (kernel_size - 1) // 2
    border = max_displacement + kr
    r = max_displacement // stride2
    d = 2 * r + 1
    hout = math.ceil((h + 2 * pad - 2 * border) / stride1)
    wout = math.ceil((w + 2 * pad - 2 * border) / stride1)

    def terms():
        for q in range(d * d):
            qy, qx = q // d, q % d
            dy, dx = (qy - r) * stride2, (qx - r) * stride2
            for i in range(hout):
                for j in range(wout):
                    cy, cx = i * stride1 + border - pad, j * stride1 + border - pad
                    for u in range(-kr, kr + 1):
                        for v in range(-kr, kr + 1):
                            yield q, i, j, (cy + u, cx + v), (cy + dy + u, cx + dx + v)

    return hout, wout, d, terms


def flownet_reference(f1, f2, pad, kernel_size, max_displacement, stride1, stride2, is_multiply=True):
    """Section 1 forward: (B, C, H, W) x 2 -> (B, D*D, Hout, Wout)."""
    a, b = _f64(f1), _f64(f2)
    bsz, c = a.shape[0], a.shape[1]
    hout, wout, d, terms = flownet_terms(a.shape, pad, kernel_size, max_displacement, stride1, stride2)
    out = np.zeros((bsz, d * d, max(hout, 0), max(wout, 0)))
    r1, r2 = _Reader(a), _Reader(b)
    norm = 1.0 / (kernel_size * kernel_size * c) if c else 0.0
    for n in range(bsz):
        for q, i, j, (y1, x1), (y2, x2) in terms():
            v1, v2 = r1.read(n, y1, x1), r2.read(n, y2, x2)
            term = np.sum(v1 * v2) if is_multiply else np.sum(np.abs(v1 - v2))
            out[n, q, i, j] += term * norm
    return out


def flownet_reference_grad(f1, f2, grad, pad, kernel_size, max_displacement, stride1, stride2, is_multiply=True):
    """Section 1 gradients (grad_f1, grad_f2) for an output gradient ``grad``."""
    a, b, g = _f64(f1), _f64(f2), _f64(grad)
    bsz, c = a.shape[0], a.shape[1]
    _, _, _, terms = flownet_terms(a.shape, pad, kernel_size, max_displacement, stride1, stride2)
    g1, g2 = np.zeros_like(a), np.zeros_like(b)
    r1, r2 = _Reader(a), _Reader(b)
    norm = 1.0 / (kernel_size * kernel_size * c) if c else 0.0
    for n in range(bsz):
        for q, i, j, (y1, x1), (y2, x2) in terms():
            v1, v2 = r1.read(n, y1, x1), r2.read(n, y2, x2)
            weight = g[n, q, i, j] * norm
            if is_multiply:
                d1, d2 = v2, v1
            else:
                s = _sign_plus(v1 - v2)
                d1, d2 = s, -s
            if r1.inside(y1, x1):
                g1[n, :, y1, x1] += weight * d1
            if r2.inside(y2, x2):
                g2[n, :, y2, x2] += weight * d2
    return g1, g2


# ------------------------------------------------------------------------------------------------
# Section 2: spatial-correlation-sampler / mmcv
# ------------------------------------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def sampler_terms(shape, kernel_size, patch_size, stride, padding, dilation, dilation_patch):
    _, _, h, w = shape
    (kh, kw), (ph_, pw_), (sh, sw) = _pair(kernel_size), _pair(patch_size), _pair(stride)
    (pdh, pdw), (dh, dw), (dph, dpw) = _pair(padding), _pair(dilation), _pair(dilation_patch)
    hout = (h + 2 * pdh - ((kh - 1) * dh + 1)) // sh + 1
    wout = (w + 2 * pdw - ((kw - 1) * dw + 1)) // sw + 1

    def terms():
        for ph in range(ph_):
            for pw in range(pw_):
                sy, sx = (ph - (ph_ - 1) // 2) * dph, (pw - (pw_ - 1) // 2) * dpw
                for i in range(hout):
                    for j in range(wout):
                        top, left = i * sh - pdh, j * sw - pdw
                        for u in range(kh):
                            for v in range(kw):
                                y, x = top + u * dh, left + v * dw
                                yield ph, pw, i, j, (y, x), (y + sy, x + sx)

    return hout, wout, (ph_, pw_), terms


def sampler_reference(f1, f2, kernel_size=1, patch_size=1, stride=1, padding=0, dilation=1, dilation_patch=1):
    """Section 2 forward: (B, C, H, W) x 2 -> (B, PH, PW, Hout, Wout), no normalisation."""
    a, b = _f64(f1), _f64(f2)
    hout, wout, (ph_, pw_), terms = sampler_terms(
        a.shape, kernel_size, patch_size, stride, padding, dilation, dilation_patch
    )
    out = np.zeros((a.shape[0], ph_, pw_, hout, wout))
    r1, r2 = _Reader(a), _Reader(b)
    for n in range(a.shape[0]):
        for ph, pw, i, j, (y1, x1), (y2, x2) in terms():
            out[n, ph, pw, i, j] += np.sum(r1.read(n, y1, x1) * r2.read(n, y2, x2))
    return out


def sampler_reference_grad(
    f1, f2, grad, kernel_size=1, patch_size=1, stride=1, padding=0, dilation=1, dilation_patch=1
):
    """Section 2 gradients (grad_f1, grad_f2)."""
    a, b, g = _f64(f1), _f64(f2), _f64(grad)
    _, _, _, terms = sampler_terms(a.shape, kernel_size, patch_size, stride, padding, dilation, dilation_patch)
    g1, g2 = np.zeros_like(a), np.zeros_like(b)
    r1, r2 = _Reader(a), _Reader(b)
    for n in range(a.shape[0]):
        for ph, pw, i, j, (y1, x1), (y2, x2) in terms():
            weight = g[n, ph, pw, i, j]
            if r1.inside(y1, x1):
                g1[n, :, y1, x1] += weight * r2.read(n, y2, x2)
            if r2.inside(y2, x2):
                g2[n, :, y2, x2] += weight * r1.read(n, y1, x1)
    return g1, g2


# ------------------------------------------------------------------------------------------------
# The general geometry (the core op's own definition, in _geometry.py's docstring)
# ------------------------------------------------------------------------------------------------


def general_terms(shape, geometry):
    """Terms of the core definition: (ty, tx, i, j, (y1, x1), (y2, x2)).

    ``geometry`` is a sequence of 16 ints, per axis (pad_before, pad_after, stride, kernel_size,
    kernel_dilation, disp_start, disp_count, disp_step), vertical axis first.
    """
    _, _, h, w = shape
    gy, gx = list(geometry[:8]), list(geometry[8:])

    def size(n, g):
        pb, pa, s, k, kd = g[:5]
        return (n + pb + pa - ((k - 1) * kd + 1)) // s + 1

    hout, wout = size(h, gy), size(w, gx)

    def terms():
        for ty in range(gy[6]):
            for tx in range(gx[6]):
                dy, dx = gy[5] + ty * gy[7], gx[5] + tx * gx[7]
                for i in range(hout):
                    for j in range(wout):
                        for u in range(gy[3]):
                            for v in range(gx[3]):
                                y = -gy[0] + i * gy[2] + u * gy[4]
                                x = -gx[0] + j * gx[2] + v * gx[4]
                                yield ty, tx, i, j, (y, x), (y + dy, x + dx)

    return hout, wout, (gy[6], gx[6]), terms


def general_reference(f1, f2, geometry, groups=1, mode="product", scale=1.0):
    """Core op forward: (B, C, H, W) x 2 -> (B, G, Dy, Dx, Hout, Wout)."""
    a, b = _f64(f1), _f64(f2)
    bsz, c = a.shape[0], a.shape[1]
    cg = c // groups
    hout, wout, (dy_, dx_), terms = general_terms(a.shape, list(geometry))
    out = np.zeros((bsz, groups, dy_, dx_, hout, wout))
    r1, r2 = _Reader(a), _Reader(b)
    for n in range(bsz):
        for ty, tx, i, j, (y1, x1), (y2, x2) in terms():
            v1, v2 = r1.read(n, y1, x1), r2.read(n, y2, x2)
            for g in range(groups):
                s1, s2 = v1[g * cg : (g + 1) * cg], v2[g * cg : (g + 1) * cg]
                term = np.sum(s1 * s2) if mode == "product" else np.sum(np.abs(s1 - s2))
                out[n, g, ty, tx, i, j] += scale * term
    return out


def general_reference_grad(f1, f2, grad, geometry, groups=1, mode="product", scale=1.0):
    """Core op gradients (grad_f1, grad_f2)."""
    a, b, gr = _f64(f1), _f64(f2), _f64(grad)
    bsz, c = a.shape[0], a.shape[1]
    cg = c // groups
    _, _, _, terms = general_terms(a.shape, list(geometry))
    g1, g2 = np.zeros_like(a), np.zeros_like(b)
    r1, r2 = _Reader(a), _Reader(b)
    for n in range(bsz):
        for ty, tx, i, j, (y1, x1), (y2, x2) in terms():
            v1, v2 = r1.read(n, y1, x1), r2.read(n, y2, x2)
            for g in range(groups):
                sl = slice(g * cg, (g + 1) * cg)
                weight = scale * gr[n, g, ty, tx, i, j]
                if mode == "product":
                    d1, d2 = v2[sl], v1[sl]
                else:
                    s = _sign_plus(v1[sl] - v2[sl])
                    d1, d2 = s, -s
                if r1.inside(y1, x1):
                    g1[n, sl, y1, x1] += weight * d1
                if r2.inside(y2, x2):
                    g2[n, sl, y2, x2] += weight * d2
    return g1, g2
