"""Pieces the demos share: optional imports, a progress bar, fixed features, sub-pixel refinement."""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FEATURES",
    "Progress",
    "features",
    "parabola_offset",
    "require",
    "to_gray",
    "write_json",
]

#: names accepted by :func:`features`
FEATURES = ("census", "patch", "gray")


def require(module: str) -> ModuleType:
    """Import an optional dependency of the demos, or fail with the install line that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"skimage": "scikit-image"}.get(module.split(".")[0], module.split(".")[0])
        raise ImportError(
            f"the torchcorr demos need {package}: pip install 'torchcorr[demo]' (or pip install {package})"
        ) from exc


class Progress:
    """A progress bar over named steps: tqdm when it is installed, else one plain line on stderr.

    Args:
        total: number of steps.
        desc: label in front of the bar.
        enabled: ``False`` prints nothing.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self.timings: dict[str, float] = {}
        self._bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, unit="step", leave=True, file=sys.stderr)

    def _plain(self, label: str) -> None:
        width = 24
        filled = round(width * self.done / max(self.total, 1))
        line = f"\r{self.desc}: [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {label:<28}"
        sys.stderr.write(line)
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def step(self, label: str) -> _Step:
        """Context manager around one step: times it and advances the bar when it ends."""
        return _Step(self, label)

    def _advance(self, label: str, seconds: float) -> None:
        self.timings[label] = self.timings.get(label, 0.0) + seconds
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(label)
            self._bar.update(1)
        else:
            self._plain(label)

    def close(self) -> None:
        """Close the bar (tqdm) or end the line."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.done < self.total:
            sys.stderr.write("\n")


class _Step:
    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.label = progress, label

    def __enter__(self) -> _Step:
        self.t0 = time.perf_counter()
        if self.progress.enabled and self.progress._bar is not None:
            self.progress._bar.set_postfix_str(self.label)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.progress._advance(self.label, time.perf_counter() - self.t0)


def iterate(items: list[Any], progress: Progress, label: str) -> Iterator[Any]:
    """Yield ``items``, one progress step each, labelled ``label`` and the item's index."""
    for i, item in enumerate(items):
        with progress.step(f"{label} {i + 1}/{len(items)}"):
            yield item


def to_gray(image: Any) -> Tensor:
    """An (H, W, 3) or (H, W) uint8/float image -> ``Tensor[1, 1, H, W]`` float32 in [0, 1]."""
    t = torch.as_tensor(image)
    scale = 255.0 if t.dtype == torch.uint8 else 1.0
    t = t.float() / scale
    if t.dim() == 3:
        weights = torch.tensor([0.299, 0.587, 0.114])
        t = (t[..., :3] * weights).sum(-1)
    return t[None, None].contiguous()


def _neighbourhood(gray: Tensor, radius: int) -> Tensor:
    """Every pixel's (2r+1)^2 neighbourhood as channels: ``Tensor[B, (2r+1)^2, H, W]`` (edges replicated)."""
    h, w = gray.shape[-2:]
    padded = F.pad(gray, (radius,) * 4, mode="replicate")
    k = 2 * radius + 1
    return torch.cat([padded[:, :, a : a + h, b : b + w] for a in range(k) for b in range(k)], dim=1)


def features(gray: Tensor, kind: str = "census", radius: int = 2, softness: float = 0.02) -> Tensor:
    """Fixed (not learned) per-pixel features of a grayscale image ``Tensor[B, 1, H, W]``.

    * ``"census"``: a soft census transform, ``tanh((I(p + o) - I(p)) / softness)`` for every
      offset ``o != 0`` of a ``(2*radius+1)^2`` neighbourhood -> ``(2r+1)^2 - 1`` channels.  With
      ``softness -> 0`` the channel mean of a product of two such vectors is ``1 - 2 * Hamming / C``,
      the census matching score.
    * ``"patch"``: the neighbourhood minus its mean, scaled to unit length -> ``(2r+1)^2`` channels
      (the product of two is their normalised cross-correlation).
    * ``"gray"``: the intensity itself, 1 channel (brightness-biased under a plain product: use it
      with ``ncc``).

    Returns:
        ``Tensor[B, C, H, W]`` float32.
    """
    if kind == "gray":
        return gray
    nb = _neighbourhood(gray, radius)
    if kind == "census":
        centre = (2 * radius + 1) ** 2 // 2
        keep = [i for i in range(nb.shape[1]) if i != centre]
        return torch.tanh((nb[:, keep] - gray) / softness)
    if kind == "patch":
        nb = nb - nb.mean(1, keepdim=True)
        return nb / (nb.norm(dim=1, keepdim=True) + 1e-3)
    raise ValueError(f"features must be one of {list(FEATURES)}, got {kind!r}")


def parabola_offset(minus: Tensor, centre: Tensor, plus: Tensor) -> Tensor:
    """Sub-pixel offset of a parabola's vertex through three equally spaced scores, in [-0.5, 0.5].

    ``(minus - plus) / (2 * (minus - 2*centre + plus))``; 0 where the three are collinear or the
    centre is not a maximum.

    Example:
        >>> import torch
        >>> parabola_offset(torch.tensor(0.0), torch.tensor(3.0), torch.tensor(2.0)).item()
        0.25
    """
    denom = minus - 2 * centre + plus
    ok = denom < 0
    offset = torch.where(ok, (minus - plus) / (2 * torch.where(ok, denom, -torch.ones_like(denom))), 0.0)
    return offset.clamp(-0.5, 0.5)


def backend_used(f1: Tensor, f2: Tensor, backend: str | None, **geometry: Any) -> str:
    """Name of the backend the dispatcher picks for a :func:`torchcorr.correlation` call with these arguments."""
    from torchcorr import backends
    from torchcorr.functional import native_geometry

    module = backends.select(backends.resolve(backend), f1, f2, native_geometry(**geometry), 1, "product")
    return str(module.NAME)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (non-finite floats become ``null``)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path.write_text(json.dumps(clean(data), indent=2) + "\n")


def environment() -> dict[str, str | int]:
    """Versions and threads, printed beside every figure the demos report."""
    import platform

    import torchcorr

    return {
        "torchcorr": torchcorr.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }
