"""W5 / W6: time and peak extra memory of RAFT's correlation lookup, on the fly against all-pairs.

Implementations measured (float32, CPU, one lookup at random flow, as in ``workloads.md``):

* ``alternate``: ``torchcorr.compat.raft.AlternateCorrBlock`` (the ``torchcorr::corr_lookup`` op),
  never builds the ``(H*W)^2`` volume;
* ``corrblock``: ``torchcorr.compat.raft.CorrBlock`` (all-pairs volume, pyramid, gather lookup);
* ``baseline``: the straightforward formulation RAFT ships (matmul all-pairs, ``avg_pool2d``
  pyramid, ``grid_sample`` lookup), from :mod:`torchcorr.bench.raft`.

Each (workload, implementation) runs in its own child process with ``MALLOC_MMAP_THRESHOLD_=65536``
so that freed buffers go back to the system and the resident set tracks live memory.  The child
builds the inputs, runs one warm-up forward+backward, then resets the peak-RSS counter
(``/proc/self/clear_refs``) and measures the peak resident set of one forward+backward above the
resident set just before it ("extra").  Times are the best of ``--repeat`` runs, forward alone
(no autograd) and forward+backward.  An all-pairs implementation whose estimated need exceeds
``--max-gb`` is not run; its computed size is printed instead.

Usage::

    PYTHONPATH=src python benchmarks/raft_memory.py                 # W5 and W6
    PYTHONPATH=src python benchmarks/raft_memory.py --workload W6 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # measure this checkout, not an installed copy

#: id -> (B, C, H, W, levels, radius), from workloads.md
WORKLOADS = {
    "W5": (1, 256, 55, 128, 4, 4),
    "W6": (1, 256, 136, 240, 4, 4),
}
IMPLS = ("alternate", "corrblock", "baseline")
GB = 1e9


def all_pairs_bytes(b: int, h: int, w: int, levels: int, itemsize: int = 4) -> tuple[int, int]:
    """Bytes of the level-0 volume and of the whole pyramid."""
    volume = b * (h * w) ** 2 * itemsize
    pyramid = sum(b * h * w * (h >> lvl) * (w >> lvl) * itemsize for lvl in range(levels))
    return volume, pyramid


def estimated_need(impl: str, workload: str) -> float:
    """A lower bound of the peak bytes of one forward+backward (the pyramid and its gradient)."""
    b, _, h, w, levels, _ = WORKLOADS[workload]
    if impl == "alternate":
        return 0.0
    return 2.0 * all_pairs_bytes(b, h, w, levels)[1]


# --------------------------------------------------------------------------------------------
# child
# --------------------------------------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(workload: str, impl: str, repeat: int) -> dict:
    import torch

    from torchcorr.bench.raft import baseline_corr_block
    from torchcorr.compat.raft import AlternateCorrBlock, CorrBlock

    b, c, h, w, levels, radius = WORKLOADS[workload]
    gen = torch.Generator().manual_seed(0)
    f1 = torch.randn(b, c, h, w, generator=gen)
    f2 = torch.randn(b, c, h, w, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    flow = 4.0 * torch.randn(b, 2, h, w, generator=gen)  # random flow, a few pixels
    coords = torch.stack((xs, ys))[None] + flow

    def run(a, bb, cc):
        if impl == "alternate":
            return AlternateCorrBlock(a, bb, levels, radius)(cc)
        if impl == "corrblock":
            return CorrBlock(a, bb, levels, radius)(cc)
        return baseline_corr_block(a, bb, cc, levels, radius)

    leaves = [t.clone().requires_grad_() for t in (f1, f2, coords)]
    weight = torch.randn(b, levels * (2 * radius + 1) ** 2, h, w, generator=gen)

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        out = run(*leaves)
        out.backward(weight)
        return out

    fwd_bwd()  # warm-up (thread pools, allocator)
    for t in leaves:
        t.grad = None
    rss_before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    fwd_bwd()
    peak = _status("VmHWM")
    extra = peak - rss_before

    best_fwd = best_both = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.no_grad():
            run(f1, f2, coords)
        best_fwd = min(best_fwd, time.perf_counter() - start)
        start = time.perf_counter()
        fwd_bwd()
        best_both = min(best_both, time.perf_counter() - start)
    return {"extra_bytes": extra, "forward_s": best_fwd, "forward_backward_s": best_both}


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------


def machine() -> str:
    import torch

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, load average {load:.1f} at start"
    )


def measure(workload: str, impl: str, repeat: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--child", workload, impl, "--repeat", str(repeat)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {workload}/{impl} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip all-pairs runs estimated above this")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.repeat)))
        return 0

    print(f"machine: {machine()}")
    for workload in args.workload:
        b, c, h, w, levels, radius = WORKLOADS[workload]
        volume, pyramid = all_pairs_bytes(b, h, w, levels)
        print(
            f"\n{workload}: B={b} C={c} {h}x{w}, {levels} levels, r={radius} -> ({b}, {levels * (2 * radius + 1) ** 2},"
            f" {h}, {w}); all-pairs volume {volume / GB:.2f} GB, pyramid {pyramid / GB:.2f} GB (float32)"
        )
        results = {}
        for impl in args.impl:
            need = estimated_need(impl, workload)
            if need > args.max_gb * GB:
                print(f"  {impl:10s} not run: needs at least {need / GB:.1f} GB (pyramid and its gradient)")
                continue
            results[impl] = r = measure(workload, impl, args.repeat)
            print(
                f"  {impl:10s} forward {r['forward_s']:8.3f} s   forward+backward {r['forward_backward_s']:8.3f} s"
                f"   peak extra memory {r['extra_bytes'] / 1e6:9.1f} MB"
            )
        if "alternate" in results:
            ours = results["alternate"]
            for other in ("baseline", "corrblock"):
                if other in results:
                    r = results[other]
                    print(
                        f"  alternate vs {other}: time forward x{r['forward_s'] / ours['forward_s']:.2f},"
                        f" forward+backward x{r['forward_backward_s'] / ours['forward_backward_s']:.2f} faster;"
                        f" memory /{r['extra_bytes'] / max(ours['extra_bytes'], 1):.1f}"
                    )
            if "baseline" not in results:
                print(
                    f"  alternate peak extra {ours['extra_bytes'] / GB:.3f} GB against the all-pairs pyramid's"
                    f" {pyramid / GB:.2f} GB (x{pyramid / max(ours['extra_bytes'], 1):.0f}, before its gradient)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
