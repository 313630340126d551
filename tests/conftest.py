import os

import pytest

# Buffers a backend promises to fill start as NaN, so an unwritten entry fails a comparison.
os.environ.setdefault("TORCHCORR_POISON", "1")


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    """Tests choose backends explicitly; a TORCHCORR_BACKEND from the shell must not leak in."""
    if os.environ.get("TORCHCORR_TEST_KEEP_BACKEND") != "1":
        monkeypatch.delenv("TORCHCORR_BACKEND", raising=False)
