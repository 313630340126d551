"""Benchmarks that ship with the package: ``python -m torchcorr bench``.

:mod:`.workloads` holds the registry of workloads (see its docstring to add one), :mod:`.harness`
times them and measures peak memory in a child process.
"""
