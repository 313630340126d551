"""Command line: ``python -m torchcorr <command>`` (also the ``torchcorr`` console script).

Each command is a module of this package with ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``.  :data:`COMMANDS` maps command names to those modules; they are imported
only when their command runs, so a missing optional dependency of one never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("torchcorr.cli.demo", "stereo matching on real data (Middlebury motorcycle): metrics and figure"),
    "flow-demo": ("torchcorr.cli.flow_demo", "optical flow on a warped photograph: coarse-to-fine local cost volumes"),
    "bench": ("torchcorr.cli.bench", "benchmark the workloads (time, GFLOP/s, % of matmul, memory)"),
    "info": ("torchcorr.cli.info", "versions, platform, backends (available or why not), optional packages"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="torchcorr", description="Correlation and cost-volume operators for PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_path, help_text) in COMMANDS.items():
        module = importlib.import_module(module_path)
        # argparse %-formats help strings: a literal % must be doubled
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m torchcorr`` and the ``torchcorr`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
