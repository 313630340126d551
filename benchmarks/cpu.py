"""Run the CPU suite (W1-W4 and whatever else is registered) and write docs-ready results.

    python benchmarks/cpu.py [--workloads W1,W2] [--repeat 5] [--out docs]

Writes ``<out>/benchmarks_cpu.md`` (the table with machine and versions), ``<out>/benchmarks_cpu.json``
and ``<out>/benchmarks_cpu.png`` (useful GFLOP/s per workload and implementation, matmul line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torchcorr.bench.harness import markdown, run_suite


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if not r["error"]]
    wids = sorted({r["workload"] for r in rows}, key=lambda s: int(s[1:]) if s[1:].isdigit() else 0)
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(impls), 1)
    for k, impl in enumerate(impls):
        ys = [next((r["gflops"] for r in rows if r["workload"] == w and r["impl"] == impl), 0.0) for w in wids]
        ax.bar([i + k * width for i in range(len(wids))], ys, width, label=impl)
    ax.axhline(report["matmul_gflops"], color="k", ls="--", lw=1, label="fp32 matmul")
    ax.axhline(0.3 * report["matmul_gflops"], color="grey", ls=":", lw=1, label="30% of matmul")
    if report.get("fma_gflops"):
        ax.axhline(report["fma_gflops"], color="r", ls="--", lw=1, label="FMA limit of the cores")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(wids))], wids)
    ax.set_yscale("log")
    ax.set_ylabel("useful GFLOP/s, forward + backward")
    ax.set_title(f"{report['env']['cpu']}, {report['env']['threads']} threads, float32")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", default="")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="docs")
    parser.add_argument("--from-json", default="", help="re-render an earlier JSON report instead of running")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
    else:
        ids = [s for s in args.workloads.split(",") if s] or None
        report = run_suite(workloads=ids, repeat=args.repeat)
    (out / "benchmarks_cpu.json").write_text(json.dumps(report, indent=1))
    (out / "benchmarks_cpu.md").write_text(markdown(report) + "\n")
    plot(report, out / "benchmarks_cpu.png")
    print(markdown(report))


if __name__ == "__main__":
    main()
