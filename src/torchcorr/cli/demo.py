"""A FlowNetC-sized correlation: prints its shape and timing.

Builds the FlowNetC cost volume (2 x 256 x 48 x 64 features, 441 displacements).  A placeholder
until the real-data stereo demo lands.
"""

from __future__ import annotations

import argparse
import time

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``torchcorr demo``."""
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (default 3)")


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    import torchcorr
    from torchcorr.compat.mxnet import Correlation

    torch.manual_seed(0)
    f1 = torch.randn(2, 256, 48, 64)
    f2 = torch.randn(2, 256, 48, 64)
    kw = dict(kernel_size=1, max_displacement=20, stride1=1, stride2=2, pad_size=20)
    out = Correlation(f1, f2, **kw)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        Correlation(f1, f2, **kw)
        times.append(time.perf_counter() - t0)
    print(f"torchcorr {torchcorr.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"FlowNetC correlation {tuple(f1.shape)} x 2 -> {tuple(out.shape)}")
    print(f"forward: best {min(times) * 1e3:.1f} ms of {args.repeat}")
    return 0
