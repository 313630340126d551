"""Benchmarks W7-W9 (workloads.md): stereo volumes and xcorr2 against the formulations networks ship.

    python benchmarks/volumes.py                 # W7, W8, W9: time, throughput, peak memory
    python benchmarks/volumes.py W8 --quick      # one workload, shorter runs
    python benchmarks/volumes.py --crossover     # xcorr2 direct vs FFT timings (FFT_COST_FACTOR)

The same workloads are registered in the package harness (``python -m torchcorr bench --workloads
W7,W8,W9``, one row per backend); this script adds forward-only peak memory, the PSMNet concat
volume and the xcorr2 crossover table.  Baselines (``torchcorr.bench.volumes``):

* W7, DispNetC: a Python loop over disparities that multiplies the left features with the right
  ones shifted by ``d`` and writes the channel mean into a pre-allocated (B, D, H, W) volume.
* W8, GwcNet: the same loop with a group-wise mean, filling a (B, G, D, H, W) volume.
* W9, template matching: ``F.conv2d`` with ``padding = template - 1``.
* PSM (extra): PSMNet's concatenation volume by slice assignment.

Times are medians (``torch.utils.benchmark``); "both" is one forward plus one backward of the sum
of the output weighted by a fixed random tensor.  Useful GFLOP/s count 2 x the multiply-adds the
definition needs (forward 1x, backward 2x), not the work a method wastes.  Peak extra memory is the
growth of the resident set during one forward and backward (the kernel's high-water mark ``VmHWM``,
reset just before), measured in a child process started with ``MALLOC_MMAP_THRESHOLD_=65536`` so
freed blocks go back to the system.  The output gradient is allocated before the measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils import benchmark

import torchcorr
from torchcorr.bench.volumes import conv2d_xcorr, dispnetc_loop, gwcnet_loop, psmnet_loop, stereo_macs
from torchcorr.xcorr import _fft_is_cheaper, _next_fast_len, xcorr2

# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    description: str
    make_inputs: Callable[[], tuple[torch.Tensor, ...]]
    impls: dict[str, Callable[..., torch.Tensor]]
    baseline: str
    macs: int  # multiply-adds of one forward that the definition needs
    out_shape: tuple[int, ...]
    slow: tuple[str, ...] = ()  # implementations timed with a single run


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


WORKLOADS = {
    "W7": Workload(
        "W7",
        "DispNetC 1-D correlation, one-sided: B=2 C=256 48x96 D=40 -> (2, 40, 48, 96)",
        lambda: (_randn(2, 256, 48, 96, seed=0), _randn(2, 256, 48, 96, seed=1)),
        {
            "torchcorr.stereo_correlation": lambda a, b: torchcorr.stereo_correlation(a, b, 40),
            "DispNetC shift loop": lambda a, b: dispnetc_loop(a, b, 40),
        },
        "DispNetC shift loop",
        stereo_macs(2, 256, 48, 96, 40),
        (2, 40, 48, 96),
    ),
    "W8": Workload(
        "W8",
        "GwcNet group-wise correlation: B=1 C=320 64x128 G=40 D=48 -> (1, 40, 48, 64, 128)",
        lambda: (_randn(1, 320, 64, 128, seed=2), _randn(1, 320, 64, 128, seed=3)),
        {
            "torchcorr.groupwise_correlation": lambda a, b: torchcorr.groupwise_correlation(a, b, 48, 40),
            "GwcNet disparity loop": lambda a, b: gwcnet_loop(a, b, 48, 40),
        },
        "GwcNet disparity loop",
        stereo_macs(1, 320, 64, 128, 48),
        (1, 40, 48, 64, 128),
    ),
    "W9": Workload(
        "W9",
        "template matching, xcorr2 'full': 512x512 image, 64x64 template -> (575, 575)",
        lambda: (_randn(512, 512, seed=4), _randn(64, 64, seed=5)),
        {
            "torchcorr.xcorr2 (auto: fft)": lambda a, b: xcorr2(a, b),
            "F.conv2d": conv2d_xcorr,
        },
        "F.conv2d",
        512 * 512 * 64 * 64,
        (575, 575),
        slow=("F.conv2d",),
    ),
    "PSM": Workload(
        "PSM",
        "PSMNet concat volume (not a workloads.md id): B=1 C=32 64x128 D=48 -> (1, 64, 48, 64, 128)",
        lambda: (_randn(1, 32, 64, 128, seed=6), _randn(1, 32, 64, 128, seed=7)),
        {
            "torchcorr.concat_volume": lambda a, b: torchcorr.concat_volume(a, b, 48),
            "PSMNet slice-assignment loop": lambda a, b: psmnet_loop(a, b, 48),
        },
        "PSMNet slice-assignment loop",
        0,
        (1, 64, 48, 64, 128),
        slow=("PSMNet slice-assignment loop",),
    ),
}


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


def _median_seconds(fn: Callable[[], object], min_run_time: float, single: bool) -> float:
    if single:
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _fwd_bwd(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], weight: torch.Tensor) -> None:
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    torch.autograd.backward(out, weight)


def time_workload(wl: Workload, min_run_time: float, quick: bool) -> dict[str, dict[str, float]]:
    inputs = wl.make_inputs()
    rows: dict[str, dict[str, float]] = {}
    reference = None
    for name, fn in wl.impls.items():
        single = name in wl.slow
        with torch.no_grad():
            out = fn(*inputs)
        if reference is None:
            reference = out
        err = (out - reference).abs().max().item() / max(reference.abs().max().item(), 1e-30)
        weight = _randn(*out.shape, seed=9)
        fwd = _median_seconds(lambda fn=fn: fn(*inputs), min_run_time, single)
        if quick and single:
            both = float("nan")
        else:
            both = _median_seconds(lambda fn=fn, w=weight: _fwd_bwd(fn, inputs, w), min_run_time, single)
        rows[name] = {"fwd": fwd, "bwd": both - fwd, "both": both, "max_rel_diff": err}
    return rows


def child_peak(workload: str, impl: str, backward: bool) -> float:
    """Peak extra resident memory (MiB) of one forward (and backward), in this process."""
    wl = WORKLOADS[workload]
    inputs = wl.make_inputs()
    fn = wl.impls[impl]
    with torch.no_grad():  # warm up code paths on a small slice, so lazy initialisation is not counted
        fn(*[t[..., :8, :8] if wl.name == "W9" else t[:, :, :2, :] for t in inputs])
    leaves = [t.detach().requires_grad_(backward) for t in inputs]
    weight = torch.ones(wl.out_shape) if backward else None
    _reset_peak()
    base = _status_mib("VmRSS")
    if backward:
        torch.autograd.backward(fn(*leaves), weight)
    else:
        with torch.no_grad():
            fn(*leaves)
    return _status_mib("VmHWM") - base


def _reset_peak() -> None:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_peak(workload: str, impl: str, backward: bool) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--child", workload, impl, "1" if backward else "0"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def matmul_gflops(min_run_time: float) -> float:
    a, b = _randn(2048, 2048, seed=7), _randn(2048, 2048, seed=8)
    t = _median_seconds(lambda: a @ b, min_run_time, False)
    return 2 * 2048**3 / t / 1e9


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load {load:.1f}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, torchcorr {torchcorr.__version__}"
    )


# --------------------------------------------------------------------------------------------
# xcorr2 crossover
# --------------------------------------------------------------------------------------------


def crossover(min_run_time: float) -> None:
    """Direct and FFT timings of xcorr2 'full' over a grid of square sizes."""
    print("| image | template | direct ms | fft ms | direct/fft | macs / (3 n log2 n) | auto |")
    print("|---|---|---|---|---|---|---|")
    for h in (32, 64, 128, 256, 512):
        for k in (4, 6, 8, 11, 16, 23, 32):
            ho = h + k - 1
            if k > h or ho * ho * k * k > 3e8:
                continue
            a, b = _randn(h, h, seed=h), _randn(k, k, seed=k)
            td = _median_seconds(lambda a=a, b=b: xcorr2(a, b, method="direct"), min_run_time, False)
            tf = _median_seconds(lambda a=a, b=b: xcorr2(a, b, method="fft"), min_run_time, False)
            area = _next_fast_len(ho) ** 2
            ratio = ho * ho * k * k / (3 * area * math.log2(area))
            auto = "fft" if _fft_is_cheaper(a, b, (), (0, ho), (0, ho)) else "direct"
            print(f"| {h} | {k} | {td * 1e3:.3f} | {tf * 1e3:.3f} | {td / tf:.2f} | {ratio:.2f} | {auto} |")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS), help="W7 W8 W9 PSM (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs; no backward for single-run baselines")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--crossover", action="store_true", help="xcorr2 direct vs FFT timings only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        workload, impl, backward = args.child
        print(child_peak(workload, impl, backward == "1"))
        return 0
    min_run_time = 0.3 if args.quick else 1.0
    print(machine())
    if args.crossover:
        crossover(min_run_time)
        return 0
    peak_mm = matmul_gflops(min_run_time)
    print(f"fp32 matmul 2048^3: {peak_mm:.1f} GFLOP/s")
    results = {"machine": machine(), "matmul_gflops": peak_mm, "workloads": {}}
    for key in args.workloads:
        wl = WORKLOADS[key]
        rows = time_workload(wl, min_run_time, args.quick)
        print(f"\n{wl.name}: {wl.description}")
        print(
            "| implementation | fwd ms | bwd ms | fwd+bwd ms | useful GFLOP/s (fwd+bwd) | % of matmul "
            "| peak extra MiB fwd | peak extra MiB fwd+bwd | max rel diff |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            gflops = 6 * wl.macs / r["both"] / 1e9 if not math.isnan(r["both"]) else float("nan")
            if args.no_memory:
                m_fwd = m_both = float("nan")
            else:
                m_fwd = measure_peak(key, name, False)
                m_both = float("nan") if (args.quick and name in wl.slow) else measure_peak(key, name, True)
            r.update(gflops=gflops, mem_fwd=m_fwd, mem_both=m_both)
            print(
                f"| {name} | {r['fwd'] * 1e3:.1f} | {r['bwd'] * 1e3:.1f} | {r['both'] * 1e3:.1f} | {gflops:.2f} "
                f"| {100 * gflops / peak_mm:.1f}% | {m_fwd:.0f} | {m_both:.0f} | {r['max_rel_diff']:.1e} |"
            )
        ours = next(iter(rows))
        base = rows[wl.baseline]
        ratios = []
        for k in ("fwd", "both"):
            if not math.isnan(base[k]):
                ratios.append(f"{k} time {base[k] / rows[ours][k]:.1f}x")
        for k in ("mem_fwd", "mem_both"):
            if not math.isnan(base[k]) and rows[ours][k] > 0:
                ratios.append(f"{k.replace('mem_', 'memory ')} {base[k] / rows[ours][k]:.1f}x")
        print(f"{wl.baseline} / {ours}: " + ", ".join(ratios))
        results["workloads"][key] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
