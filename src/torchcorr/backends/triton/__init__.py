"""The Triton backend: GPU kernels compiled just in time by Triton, nothing to build.

Runs CUDA tensors in float32, float16, bfloat16 (float32 accumulation) and float64, every
geometry of the core op (window size and dilation, strides, any padding including negative,
displacement grids with negative steps) and groups, for the product and the absolute
difference.  The forward uses tensor cores (``tl.dot``) for the product with a one-tap window in
float16/bfloat16, and in float32 where PyTorch allows TF32
(``torch.backends.cuda.matmul.allow_tf32``); otherwise a direct kernel on CUDA cores.  The
backward is a gather (each program owns a tile of the gradient; no atomics), so it is
deterministic: two runs give bit-identical gradients, and
``torch.use_deterministic_algorithms(True)`` needs no fallback.

CPU tensors run only through Triton's interpreter, when ``TRITON_INTERPRET=1`` was set before
the kernels were first used (slow; meant for tests).

Importing this module does not import Triton: :func:`available` only looks for it, and the
kernels are imported on first use, so a CPU-only process never pays for Triton.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch
from torch import Tensor

from ..._geometry import Geometry

NAME = "triton"

_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_launch: ModuleType | None = None
_launch_error: str | None = None


def available() -> str | None:
    """``None`` if Triton is installed, else why not."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton; it ships with PyTorch's CUDA wheels on Linux)"
    return None


def interpret_requested() -> bool:
    """True if ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def launcher() -> ModuleType:
    """The launch module (imports Triton and the kernels on first call); RuntimeError if it cannot."""
    global _launch, _launch_error
    if _launch is None and _launch_error is None:
        try:
            _launch = importlib.import_module(__name__ + ".launch")
        except Exception as exc:  # a broken Triton install must not break the other backends
            _launch_error = f"importing the Triton kernels failed: {type(exc).__name__}: {exc}"
    if _launch is None:
        raise RuntimeError(_launch_error)
    return _launch


def can_run(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str) -> str | None:
    """``None`` if the Triton kernels handle this input, else the reason they do not."""
    if f1.device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
    elif f1.device.type == "cpu":
        if not interpret_requested():
            return "CPU tensors run through Triton only in its interpreter (set TRITON_INTERPRET=1)"
    else:
        return f"device {f1.device.type!r} is not supported (CUDA only)"
    if f1.dtype not in _DTYPES:
        return f"dtype {f1.dtype} is not supported (float32, float16, bfloat16, float64)"
    if f2.dtype != f1.dtype or f2.device != f1.device:
        return "f1 and f2 differ in dtype or device"
    if mode not in ("product", "absdiff"):
        return f"mode {mode!r} is not supported"
    if f1.dim() != 4:
        return "inputs must be (B, C, H, W)"
    _, c, h, w = f1.shape
    ho, wo = geometry.out_hw(h, w)
    per_item = max(c * h * w, groups * geometry.y.disp_count * geometry.x.disp_count * max(ho, 0) * max(wo, 0))
    if per_item >= 2**31:
        return "one batch item exceeds 2**31 elements (32-bit indexing inside a batch item)"
    try:
        module = launcher()
    except RuntimeError as exc:
        return str(exc)
    if f1.device.type == "cpu" and not module.interpreted():
        return "the Triton kernels were compiled for the GPU before TRITON_INTERPRET=1 was set"
    return None


def forward(f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str, scale: float) -> Tensor:
    """Correlation (B, C, H, W) x 2 -> (B, G, Dy, Dx, Ho, Wo)."""
    return launcher().forward(f1, f2, geometry, groups, mode, scale)


def backward(
    grad: Tensor,
    f1: Tensor,
    f2: Tensor,
    geometry: Geometry,
    groups: int,
    mode: str,
    scale: float,
    need_f1: bool = True,
    need_f2: bool = True,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`forward` (deterministic: no atomics)."""
    return launcher().backward(grad, f1, f2, geometry, groups, mode, scale, need_f1, need_f2)
