"""Timing and memory measurement for the workloads of :mod:`torchcorr.bench.workloads`.

* Times are medians of ``repeat`` runs (the first call, JIT compilation or loading from the disk
  cache included, is reported apart as ``first_ms``): forward (no autograd), forward + backward, and
  backward as their difference, each after a few untimed calls that bring the process's memory
  allocator to its steady state (:func:`_warm_up`).  The incoming gradient (ones) is made once
  by the first call and reused: making it is the next layer's work, not the op's.
* Useful GFLOP/s = the definition's flops (forward) x 3 (forward + backward) / time; the fraction of
  the machine's float32 matmul throughput is measured right around each row: three matmuls just
  before its timings and three just after (the shared machines this runs on change speed by up to
  1.5x from one minute to the next, which a matmul measured once for the whole suite would put into
  the ratio; interleaving one matmul between every two timings instead would evict the
  workload's data from the caches it runs in).  The suite also measures the matmul before and
  after, for the table's header.
* The fraction of the cores' float32 FMA limit (:func:`torchcorr.bench.peak.fma_gflops`, a
  register-only loop of vector FMAs on every thread, measured before and after the suite): how
  close to the hardware a row comes, whatever the matmul makes of the processor.  Not measured
  without numba.
* Peak extra memory: a child process (``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks go back to
  the system) builds the inputs and the incoming gradient, runs one forward + backward to warm up,
  resets the kernel's peak-RSS mark, runs forward + backward again, and reports the peak RSS above
  the RSS before that run.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from .workloads import Inputs, Workload, all_workloads

__all__ = ["Result", "environment", "matmul_gflops", "measure_memory", "run_suite", "time_workload"]


@dataclass
class Result:
    """One (workload, implementation) measurement."""

    workload: str
    impl: str
    first_ms: float
    fwd_ms: float
    both_ms: float
    bwd_ms: float
    gflops: float  # useful GFLOP/s of forward + backward
    matmul_pct: float  # gflops / the matmul GFLOP/s measured around this row's timings * 100
    fwd_gflops: float
    peak_mb: float | None = None
    budget_mb: float | None = None  # 2 x (inputs + output)
    error: str | None = None
    fma_pct: float | None = None  # gflops / the suite's FMA limit * 100 (None without numba)


def environment() -> dict[str, str]:
    """Machine and versions, printed with every table."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("numpy", "numba", "torchcorr"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "-"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "threads": str(torch.get_num_threads()),
        "os": f"{platform.system()} {platform.release()}",
        **versions,
    }


WARMUP_CALLS = 5
WARMUP_SECONDS = 1.0


def _warm_up(fn: Callable[[], object]) -> None:
    """Untimed calls until the process runs ``fn`` in its steady state.

    Up to :data:`WARMUP_CALLS` calls, fewer where they add up to :data:`WARMUP_SECONDS` (one at
    least).  glibc's heap grows over the first few steps of a new pattern of large allocations (W2:
    up to four forward + backward steps, each faulting in a fresh 7.3 MB gradient buffer, 1.4-2 ms
    apiece), which a training loop pays once, not at every step.
    """
    t0 = time.perf_counter()
    for _ in range(WARMUP_CALLS):
        fn()
        if time.perf_counter() - t0 > WARMUP_SECONDS:
            break


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def matmul_gflops(n: int = 2048, repeat: int = 7) -> float:
    """float32 matmul throughput of this machine now (median of ``repeat`` n x n products)."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b
    return 2.0 * n**3 / (_median_ms(lambda: a @ b, repeat) / 1e3) / 1e9


def _with_grad(x: Inputs) -> Inputs:
    return {
        k: (v.detach().requires_grad_() if not k.startswith("_") and v.is_floating_point() else v) for k, v in x.items()
    }


def time_workload(w: Workload, impl: str, quick: bool, repeat: int) -> Result:
    """Time one implementation of one workload (and the matmul right before and after it)."""
    fn = w.impls[impl]
    x = w.setup(quick)
    xg = _with_grad(x)
    leaves = [v for v in xg.values() if v.requires_grad]

    def fwd() -> None:
        with torch.no_grad():
            fn(x)

    # the incoming gradient is made once, outside the timings: in a network the next layer's
    # backward makes it, and its cost (filling a tensor the output's size) is not the op's
    gout: list[torch.Tensor] = []

    def both() -> None:
        for v in leaves:
            v.grad = None
        out = fn(xg)
        if not gout:
            gout.append(torch.ones_like(out))
        out.backward(gout[0])

    t0 = time.perf_counter()
    both()
    first = (time.perf_counter() - t0) * 1e3
    size = 1024 if quick else 2048
    before = matmul_gflops(size, 3)
    _warm_up(fwd)
    fwd_ms = _median_ms(fwd, repeat)
    _warm_up(both)
    both_ms = _median_ms(both, repeat)
    matmul = (before + matmul_gflops(size, 3)) / 2
    flops = w.flops(quick)
    gflops = 3 * flops / (both_ms / 1e3) / 1e9
    return Result(
        w.id,
        impl,
        first,
        fwd_ms,
        both_ms,
        max(both_ms - fwd_ms, 0.0),
        gflops,
        100.0 * gflops / matmul,
        flops / (fwd_ms / 1e3) / 1e9,
    )


_CHILD = r"""
import gc, json, sys, torch
from torchcorr.bench.workloads import all_workloads
from torchcorr.bench.harness import _with_grad
wid, impl, quick, threads = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
torch.set_num_threads(threads)
w = all_workloads()[wid]
x = _with_grad(w.setup(quick))
fn = w.impls[impl]
out = fn(x); gout = torch.ones_like(out); out.backward(gout)
inputs_mb = sum(v.numel() * v.element_size() for v in x.values()) / 2**20
output_mb = out.numel() * out.element_size() / 2**20
for v in x.values():
    v.grad = None
del out
gc.collect()
def rss(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = rss("VmRSS:")
out = fn(x); out.backward(gout)
peak = rss("VmHWM:")
print(json.dumps({"peak_mb": peak - base, "budget_mb": 2 * (inputs_mb + output_mb)}))
"""


def measure_memory(wid: str, impl: str, quick: bool) -> tuple[float | None, float | None]:
    """Peak extra memory (MiB) of one forward + backward, and the 2 x (inputs + output) budget."""
    if not sys.platform.startswith("linux"):
        return None, None
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, wid, impl, "1" if quick else "0", str(torch.get_num_threads())],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return None, None
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return data["peak_mb"], data["budget_mb"]


class _Progress:
    """tqdm when installed, else a one-line counter on stderr."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.n, self.enabled = total, 0, enabled
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, leave=False)
            except ImportError:
                pass

    def step(self, label: str) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description(label)
            self.bar.update(1)
        else:
            sys.stderr.write(f"\r[{self.n}/{self.total}] {label:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def run_suite(
    workloads: Iterable[str] | None = None,
    backends: Iterable[str] | None = None,
    baselines: bool = True,
    quick: bool = False,
    repeat: int = 5,
    memory: bool = True,
    progress: bool = True,
) -> dict:
    """Run the suite; returns ``{"env", "matmul_gflops", "fma_gflops", "results"}`` (JSON-ready)."""
    registry = all_workloads()
    ids = list(workloads) if workloads else list(registry)
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {list(registry)}")
    from ..backends import get_backend

    wanted = set(backends) if backends else None
    jobs = []
    for wid in ids:
        for impl in registry[wid].impls:
            if impl.startswith("torchcorr["):
                name = impl[len("torchcorr[") : -1]
                if (wanted is not None and name not in wanted) or get_backend(name) is None:
                    continue
            elif not baselines:
                continue
            jobs.append((wid, impl))
    from .peak import fma_gflops

    mm_before = matmul_gflops(1024 if quick else 2048)
    fma_before = fma_gflops()
    bar = _Progress(len(jobs), progress)
    results = []
    for wid, impl in jobs:
        bar.step(f"{wid} {impl}")
        try:
            r = time_workload(registry[wid], impl, quick, repeat)
            if memory:
                r.peak_mb, r.budget_mb = measure_memory(wid, impl, quick)
        except Exception as exc:  # a baseline that cannot run here: keep going
            r = Result(wid, impl, *([float("nan")] * 8), error=f"{type(exc).__name__}: {exc}")
        results.append(r)
        gc.collect()
    bar.close()
    mm_after = matmul_gflops(1024 if quick else 2048)
    matmul = (mm_before + mm_after) / 2  # the header's figure; each row's percentage is paired
    fma_after = fma_gflops()
    fma = None if fma_before is None or fma_after is None else (fma_before + fma_after) / 2
    for r in results:
        r.fma_pct = None if fma is None else 100.0 * r.gflops / fma
    return {
        "env": environment(),
        "matmul_gflops": matmul,
        "fma_gflops": fma,
        "quick": quick,
        "results": [asdict(r) for r in results],
    }


def markdown(report: dict) -> str:
    """The report as a markdown table with the machine and versions above it."""
    env = report["env"]
    lines = [
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['threads']} threads, {env['os']}.  ",
        "Versions: " + ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "numpy", "numba", "torchcorr")) + ".  ",
        f"float32 matmul in the same run: {report['matmul_gflops']:.0f} GFLOP/s (mean of before and after; "
        "each row's % is against the matmul measured right before and after that row)"
        + (" (quick sizes)" if report.get("quick") else ""),
        "",
        "| workload | implementation | forward ms | backward ms | fwd+bwd ms | useful GFLOP/s | % of matmul "
        "| % of FMA limit | peak extra MiB (budget) | first call ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fma = report.get("fma_gflops")
    if fma:
        lines.insert(
            2,
            f"float32 FMA limit of the cores in the same run: {fma:.0f} GFLOP/s (vector FMAs from registers "
            "on every thread, mean of before and after)  ",
        )
    refused: dict[str, str] = {}
    for r in report["results"]:
        if r["error"] and "cannot run this input" in r["error"]:  # e.g. a GPU backend on CPU inputs
            refused.setdefault(r["impl"], r["error"].split(": ", 1)[-1])
            continue
        if r["error"]:
            lines.append(f"| {r['workload']} | {r['impl']} | failed: {r['error'][:60]} | | | | | | | |")
            continue
        mem = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f} ({r['budget_mb']:.0f})"
        of_fma = "-" if r.get("fma_pct") is None else f"{r['fma_pct']:.1f}%"
        lines.append(
            f"| {r['workload']} | {r['impl']} | {r['fwd_ms']:.1f} | {r['bwd_ms']:.1f} | {r['both_ms']:.1f} "
            f"| {r['gflops']:.1f} | {r['matmul_pct']:.1f}% | {of_fma} | {mem} | {r['first_ms']:.0f} |"
        )
    for impl, why in refused.items():
        lines += ["", f"Not run here: {impl} ({why})."]
    return "\n".join(lines)
