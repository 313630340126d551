"""Every docstring example in the package runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import torchcorr

# modules whose import needs an optional dependency are listed with it, and skipped without it
OPTIONAL = {"torchcorr.backends.triton": "triton", "torchcorr.backends.cpu": "numba"}


def _modules() -> list[str]:
    names = [torchcorr.__name__]
    for info in pkgutil.walk_packages(torchcorr.__path__, prefix="torchcorr."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    for prefix, dependency in OPTIONAL.items():
        if name.startswith(prefix):
            pytest.importorskip(dependency)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
