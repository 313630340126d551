"""Versions, platform, threads, every backend (available here or why not) and the optional packages."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

#: optional packages torchcorr uses when they are installed, with what for
OPTIONAL = {
    "numba": "fast CPU backend",
    "triton": "GPU kernels",
    "onnx": "ONNX export",
    "onnxruntime": "running exported ONNX models",
    "onnxscript": "ONNX export (torch.onnx dynamo exporter, torchcorr.onnx)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``torchcorr info``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # installed without metadata (a source checkout on the path)
        module = importlib.import_module(name)
    except Exception:
        return None
    return str(getattr(module, "__version__", "unknown version"))


def collect() -> dict[str, Any]:
    """Everything ``torchcorr info`` prints, as a dictionary."""
    import torch

    import torchcorr

    cuda = torch.cuda.is_available()
    report = {
        "torchcorr": torchcorr.__version__,
        "location": os.path.dirname(torchcorr.__file__),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": {
            "available": cuda,
            "version": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        },
        "backend_env": os.environ.get("TORCHCORR_BACKEND") or None,
        "backends": [
            {"name": b.name, "available": b.available, "reason": b.reason} for b in torchcorr.backend_report()
        ],
        "optional": {name: _package_version(name) for name in OPTIONAL},
    }
    return report


def format_text(report: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    cuda = report["cuda"]
    if cuda["available"]:
        gpu = f"CUDA {cuda['version']}: " + ", ".join(cuda["devices"])
    else:
        gpu = "CUDA not available" + (f" (torch built with CUDA {cuda['version']})" if cuda["version"] else "")
    lines = [
        f"torchcorr   {report['torchcorr']} ({report['location']})",
        f"torch       {report['torch']}",
        f"python      {report['python']}",
        f"platform    {report['platform']} ({report['machine']})",
        f"threads     {report['threads']}",
        f"gpu         {gpu}",
        "",
        "backends (in dispatch order)"
        + (f", TORCHCORR_BACKEND={report['backend_env']}" if report["backend_env"] else ""),
    ]
    width = max((len(b["name"]) for b in report["backends"]), default=0)
    for b in report["backends"]:
        state = "available" if b["available"] else f"not available: {b['reason'] or 'no reason given'}"
        lines.append(f"  {b['name']:<{width}}  {state}")
    lines += ["", "optional packages"]
    width = max(len(n) for n in OPTIONAL)
    for name, purpose in OPTIONAL.items():
        version = report["optional"].get(name)
        lines.append(f"  {name:<{width}}  {version or 'not installed':<14}  {purpose}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0
