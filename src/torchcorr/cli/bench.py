"""Benchmark the workloads of shared/spec/workloads.md: time, useful GFLOP/s, % of matmul and FMA limit, memory.

Forward, backward and both, for each torchcorr backend and the baselines (the naive
shift-and-multiply loop; spatial-correlation-sampler when installed).  Machine and versions are
printed with the table.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``torchcorr bench``."""
    parser.add_argument("--workloads", default="", help="comma-separated ids, e.g. W1,W2 (default: all)")
    parser.add_argument("--backends", default="", help="comma-separated torchcorr backends (default: all available)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the shift loop and other baselines")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median; default 5)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--json", default="", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _split(text: str) -> list[str] | None:
    items = [s.strip() for s in text.split(",") if s.strip()]
    return items or None


def run(args: argparse.Namespace) -> int:
    """Run the suite and print the table."""
    from torchcorr.bench.harness import markdown, run_suite

    if args.repeat < 1:
        sys.stderr.write("--repeat must be >= 1\n")
        return 2
    try:
        report = run_suite(
            workloads=_split(args.workloads),
            backends=_split(args.backends),
            baselines=not args.no_baselines,
            quick=args.quick,
            repeat=args.repeat,
            memory=not args.no_memory,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    print(markdown(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0
