"""The Triton tests run in their own process (``make test-triton``).

``TRITON_INTERPRET`` is read when a kernel is decorated, so it must be set before the kernels
are imported, and setting it inside a shared pytest process would send every other test's CPU
tensors through the (slow) interpreter.  These tests therefore run only where the process was
started with ``TRITON_INTERPRET=1`` or where a CUDA device is present; elsewhere they are
skipped with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    if _interpreting() or _cuda():
        return
    skip = pytest.mark.skip(reason="Triton tests run in their own process: make test-triton (TRITON_INTERPRET=1)")
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(skip)
