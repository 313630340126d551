"""Argument checks shared by every face: each failure names the parameter and the rule."""

from __future__ import annotations

from torch import Tensor

_DIMS = ("batch", "channel", "height", "width")


def check_int(value: object, name: str, minimum: int | None = None, odd: bool = False) -> int:
    """An int (not a bool) that is at least ``minimum`` and, if asked, odd."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if odd and value % 2 == 0:
        raise ValueError(f"{name} must be odd (the window is centred on each pixel), got {value}")
    return value


def check_feature_pair(f1: object, f2: object, names: tuple[str, str] = ("f1", "f2"), rank: int = 4) -> None:
    """Two floating tensors of one rank, shape, dtype and device."""
    a, b = names
    for t, n in ((f1, a), (f2, b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{n} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{n} must have a floating dtype (float16, bfloat16, float32, float64), got {t.dtype}")
        if t.dim() != rank:
            raise ValueError(f"{n} must be a {rank}-D tensor (B, C, H, W), got shape {tuple(t.shape)}")
    assert isinstance(f1, Tensor) and isinstance(f2, Tensor)
    if f1.dtype != f2.dtype:
        raise TypeError(f"{a} and {b} must have the same dtype, got {f1.dtype} and {f2.dtype}")
    if f1.device != f2.device:
        raise ValueError(f"{a} and {b} must be on the same device, got {f1.device} and {f2.device}")
    if rank == 4:
        for i, dim in enumerate(_DIMS):
            if f1.shape[i] != f2.shape[i]:
                raise ValueError(
                    f"{a} and {b} must have the same {dim} size, got {f1.shape[i]} and {f2.shape[i]}"
                    f" (shapes {tuple(f1.shape)} and {tuple(f2.shape)})"
                )
    elif f1.shape != f2.shape:
        raise ValueError(f"{a} and {b} must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")


def check_groups(groups: object, channels: int) -> int:
    """A group count that divides the channel count."""
    g = check_int(groups, "groups", minimum=1)
    if channels % g != 0:
        raise ValueError(f"groups must divide the channel count: {channels} channels cannot split into {g} groups")
    return g
