"""Interchangeable implementations of the core correlation, and the dispatcher that picks one.

A backend is a module-like object with

* ``NAME``: the name users pass as ``backend=`` or ``TORCHCORR_BACKEND``;
* ``available() -> str | None``: ``None`` if its optional dependencies import, else why not;
* ``can_run(f1, f2, geometry, groups, mode) -> str | None``: ``None`` if it handles this input,
  else a one-line reason;
* ``forward(f1, f2, geometry, groups, mode, scale) -> Tensor`` of shape (B, G, Dy, Dx, Ho, Wo);
* ``backward(grad, f1, f2, geometry, groups, mode, scale, need_f1, need_f2) -> (Tensor | None, Tensor | None)``.

The dispatcher walks :data:`PRIORITY` and takes the first backend that is available and can run
the input.  ``backend="name"`` (or the environment variable ``TORCHCORR_BACKEND``) asks for one
backend; if it cannot run the input, the error gives its reason.  ``"auto"`` is the default.

Backends register themselves with :func:`register`; optional ones are imported lazily and guarded,
so a missing accelerator never breaks ``import torchcorr``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import Tensor

from .._geometry import Geometry

__all__ = ["PRIORITY", "BackendInfo", "backend_report", "get_backend", "register", "resolve", "select"]

ENV_VAR = "TORCHCORR_BACKEND"

#: Backend names in the order the dispatcher tries them, with the module that implements each.
PRIORITY: list[tuple[str, str]] = [
    ("triton", "torchcorr.backends.triton"),
    ("cpu", "torchcorr.backends.cpu"),
    ("torch", "torchcorr.backends.pure"),
]

_loaded: dict[str, ModuleType | None] = {}
_import_errors: dict[str, str] = {}


def register(name: str, module_path: str, before: str | None = None) -> None:
    """Add a backend to the priority list (before ``before``, else just ahead of the pure one)."""
    names = [n for n, _ in PRIORITY]
    if name in names:
        return
    index = names.index(before) if before in names else len(PRIORITY) - 1
    PRIORITY.insert(index, (name, module_path))


def get_backend(name: str) -> ModuleType | None:
    """The backend module, or ``None`` (with the reason kept for reports) if it does not import."""
    if name not in _loaded:
        path = dict(PRIORITY).get(name)
        if path is None:
            raise ValueError(f"backend must be one of {resolve_names()} or 'auto', got {name!r}")
        try:
            module = importlib.import_module(path)
            reason = module.available() if hasattr(module, "available") else None
        except ImportError as exc:  # optional dependency missing or module not written yet
            module, reason = None, f"cannot import {path}: {exc}"
        if reason is not None:
            _import_errors[name] = reason
            module = None
        _loaded[name] = module
    return _loaded[name]


def resolve_names() -> list[str]:
    """All backend names, in priority order."""
    return [n for n, _ in PRIORITY]


def resolve(backend: str | None) -> str:
    """The effective backend request: the argument, else ``TORCHCORR_BACKEND``, else ``"auto"``."""
    if backend is None or backend == "":
        backend = os.environ.get(ENV_VAR, "") or "auto"
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto" and backend not in resolve_names():
        raise ValueError(f"backend must be one of {resolve_names()} or 'auto', got {backend!r}")
    return backend


def _reason(name: str, args: tuple[Any, ...]) -> str | None:
    module = get_backend(name)
    if module is None:
        return _import_errors.get(name, "not available")
    return module.can_run(*args)


def select(backend: str, f1: Tensor, f2: Tensor, geometry: Geometry, groups: int, mode: str) -> ModuleType:
    """The backend module that will run this input (see the module docstring for the rules)."""
    args = (f1, f2, geometry, groups, mode)
    if backend != "auto":
        reason = _reason(backend, args)
        if reason is not None:
            raise ValueError(f"backend {backend!r} cannot run this input: {reason}")
        module = get_backend(backend)
        assert module is not None
        return module
    reasons = []
    for name in resolve_names():
        reason = _reason(name, args)
        if reason is None:
            module = get_backend(name)
            assert module is not None
            return module
        reasons.append(f"{name}: {reason}")
    raise RuntimeError("no backend can run this input:\n  " + "\n  ".join(reasons))


@dataclass(frozen=True)
class BackendInfo:
    """One line of :func:`backend_report`."""

    name: str
    available: bool
    reason: str | None


def backend_report() -> list[BackendInfo]:
    """Every backend, whether it imports here and, if not, why."""
    out = []
    for name in resolve_names():
        module = get_backend(name)
        out.append(BackendInfo(name, module is not None, None if module else _import_errors.get(name)))
    return out
