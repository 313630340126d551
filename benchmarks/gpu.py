"""GPU benchmark of the Triton kernels against the pure backend (and spatial-correlation-sampler's CUDA kernels).

Workloads W1, W2 (FlowNet correlation) and W5 (RAFT lookup, 4 levels, r=4) from
``shared/spec/workloads.md``; forward, backward and both, timed side by side in one run with CUDA
events after a warm-up (the first call, which includes Triton's JIT compile, is reported apart).
Prints the machine and versions, each time, useful GFLOP/s (2 x the multiply-adds the definition
needs), the minimum DRAM traffic over the time, and the fraction of the H100 roofline used in
``docs/gpu.md``.  Exits 0 with a message where no GPU is present.

    python benchmarks/gpu.py [--dtype float32|float16|bfloat16] [--repeat N] [--only W1,W2,W5]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import torch
import torch.nn.functional as F

#: H100 SXM figures the roofline in docs/gpu.md uses (dense, no sparsity).
PEAK_BYTES = 3.0e12
PEAK_FP32 = 60e12
PEAK_TC = {"float32": 400e12, "float16": 800e12, "bfloat16": 800e12}

#: "cuda", or "cpu" for ``--smoke`` (tiny shapes through Triton's interpreter, to check this script)
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def machine() -> str:
    import triton

    if DEVICE != "cuda":
        return f"CPU smoke run (Triton interpreter), torch {torch.__version__}, triton {triton.__version__}"
    props = torch.cuda.get_device_properties(0)
    return (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
        f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"triton {triton.__version__}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}"
    )


def cuda_time(fn, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs (CUDA events)."""
    times = []
    for _ in range(repeat):
        if DEVICE != "cuda":
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def first_call(fn) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def row(name: str, seconds: float, flops: float, nbytes: float, first: float | None = None) -> None:
    """One timing line: time, useful GFLOP/s, minimum traffic over time, fractions of the H100 peaks."""
    extra = f"  first call (JIT) {first * 1e3:8.1f} ms" if first is not None else ""
    print(
        f"  {name:<40s} {seconds * 1e6:10.1f} us  {flops / seconds / 1e9:8.1f} GFLOP/s "
        f"({100 * flops / seconds / PEAK_FP32:5.1f}% fp32 peak)  {nbytes / seconds / 1e9:7.1f} GB/s "
        f"({100 * nbytes / seconds / PEAK_BYTES:5.1f}% DRAM){extra}"
    )


# --------------------------------------------------------------------------------------------
# W1, W2: FlowNet correlation
# --------------------------------------------------------------------------------------------


def flownet_case(name, b, c, h, w, md, s2, dtype, repeat, sampler):
    from torchcorr._geometry import Geometry, flownet_axis
    from torchcorr.backends import pure
    from torchcorr.backends import triton as tb

    launch = tb.launcher()
    axis = flownet_axis(md, 1, md, 1, s2)
    g = Geometry(axis, axis)
    f1 = torch.randn(b, c, h, w, device=DEVICE, dtype=dtype)
    f2 = torch.randn_like(f1)
    d = axis.disp_count
    ho, wo = g.out_hw(h, w)
    macs = b * d * d * ho * wo * c
    elem = f1.element_size()
    io_fwd = (2 * f1.numel() + b * d * d * ho * wo) * elem
    io_bwd = (2 * f1.numel() + b * d * d * ho * wo + 2 * f1.numel()) * elem
    scale = 1.0 / c
    grad = torch.randn((b, 1, d, d, ho, wo), device=DEVICE, dtype=dtype)
    print(f"{name}: B={b} C={c} {h}x{w} md={md} s2={s2} -> ({b}, {d * d}, {ho}, {wo}), {dtype}")
    plan = launch.dot_plan(f1, g, 1, "product")
    print(f"  Triton forward path: {'tensor cores ' + str(plan) if plan else 'direct (CUDA cores)'}")

    def tri_fwd():
        return launch.forward(f1, f2, g, 1, "product", scale)

    def tri_bwd():
        return launch.backward(grad, f1, f2, g, 1, "product", scale)

    def pure_fwd():
        return pure.forward(f1, f2, g, 1, "product", scale)

    def pure_bwd():
        return pure.backward(grad, f1, f2, g, 1, "product", scale)

    first = first_call(tri_fwd)
    t_tri_f = cuda_time(tri_fwd, repeat)
    first_b = first_call(tri_bwd)
    t_tri_b = cuda_time(tri_bwd, repeat)
    pure_fwd()
    t_pure_f = cuda_time(pure_fwd, repeat)
    pure_bwd()
    t_pure_b = cuda_time(pure_bwd, repeat)
    row("triton forward", t_tri_f, 2 * macs, io_fwd, first)
    row("triton backward (both inputs)", t_tri_b, 4 * macs, io_bwd, first_b)
    row("pure forward", t_pure_f, 2 * macs, io_fwd)
    row("pure backward", t_pure_b, 4 * macs, io_bwd)
    print(f"  speed-up triton / pure: forward {t_pure_f / t_tri_f:.2f}x, backward {t_pure_b / t_tri_b:.2f}x")
    ref = pure_fwd().float()
    err = (tri_fwd().float() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    print(f"  max relative difference triton vs pure: {err:.2e}")
    g1, _ = tri_bwd()
    g1b, _ = tri_bwd()
    print(f"  backward bit-identical over two runs: {torch.equal(g1, g1b)}")
    if sampler is not None and dtype == torch.float32:
        k = 2 * (md // s2) + 1

        def smp_fwd():
            return sampler(f1, f2, kernel_size=1, patch_size=k, stride=1, padding=0, dilation_patch=s2)

        smp_fwd()
        t_smp = cuda_time(smp_fwd, repeat)
        row("spatial-correlation-sampler forward", t_smp, 2 * macs, io_fwd)
        print(f"  speed-up triton / sampler: forward {t_smp / t_tri_f:.2f}x")


# --------------------------------------------------------------------------------------------
# W5: RAFT lookup, 4 levels, r=4
# --------------------------------------------------------------------------------------------


def raft_case(dtype, repeat, shape=(1, 256, 55, 128, 4, 4)):
    from torchcorr.backends.triton import lookup as tlook

    b, c, h, w, levels, r = shape
    k = 2 * r + 1
    f1 = torch.randn(b, c, h, w, device=DEVICE, dtype=dtype)
    f2 = torch.randn_like(f1)
    ys, xs = torch.meshgrid(torch.arange(h, device=DEVICE), torch.arange(w, device=DEVICE), indexing="ij")
    flow = torch.randn(b, 2, h, w, device=DEVICE) * 4
    coords = torch.stack((xs, ys)).float()[None] + flow
    pyramid = [f2]
    for _ in range(levels - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2, 2))
    scale = 1.0 / math.sqrt(c)
    n = b * h * w
    macs = sum(n * (k + 1) ** 2 * c for _ in range(levels))  # neighbour dot products
    elem = f1.element_size()
    io = (levels * f1.numel() + sum(p.numel() for p in pyramid) + n * levels * k * k) * elem
    print(f"W5: RAFT lookup B={b} C={c} {h}x{w}, {levels} levels, r={r} -> ({b}, {levels * k * k}, {h}, {w}), {dtype}")

    def tri_fwd():
        return torch.cat([tlook.forward(f1, p, coords / 2**i, r, scale) for i, p in enumerate(pyramid)], 1)

    grad = torch.randn(b, k * k, h, w, device=DEVICE, dtype=dtype)

    def tri_bwd():
        return [tlook.backward(grad, f1, p, coords / 2**i, r, scale, True, True, True) for i, p in enumerate(pyramid)]

    def all_pairs_path():
        corr = torch.matmul(f1.flatten(2).transpose(1, 2), f2.flatten(2)).view(n, 1, h, w) * scale
        out = []
        for i in range(levels):
            grid = coords.permute(0, 2, 3, 1).reshape(n, 1, 1, 2) / 2**i
            delta = torch.stack(torch.meshgrid(*(torch.arange(-r, r + 1, device=DEVICE),) * 2, indexing="ij"), -1)
            pts = grid + delta.view(1, k, k, 2).to(grid.dtype)
            hh, ww = corr.shape[-2:]
            norm = torch.stack((2 * pts[..., 0] / max(ww - 1, 1) - 1, 2 * pts[..., 1] / max(hh - 1, 1) - 1), -1)
            out.append(F.grid_sample(corr, norm.to(corr.dtype), align_corners=True).view(b, h, w, -1))
            corr = F.avg_pool2d(corr, 2, 2)
        return torch.cat(out, -1)

    first = first_call(tri_fwd)
    t_f = cuda_time(tri_fwd, repeat)
    first_b = first_call(tri_bwd)
    t_b = cuda_time(tri_bwd, repeat)
    all_pairs_path()
    t_ap = cuda_time(all_pairs_path, repeat)
    row("triton on-the-fly lookup forward", t_f, 2 * macs, io, first)
    row("triton lookup backward (f1, f2, coords)", t_b, 4 * macs, 2 * io, first_b)
    ap_flops = 2 * n * n * c
    ap_bytes = (2 * n * n * 4 / 3 + 2 * f1.numel()) * elem  # volume levels written and read once
    row("all-pairs + pyramid + grid_sample", t_ap, ap_flops, ap_bytes)
    print(f"  speed-up on-the-fly / all-pairs forward: {t_ap / t_f:.2f}x")
    try:
        from torchcorr.backends import lookup_pure
    except ImportError:
        print("  (pure lookup backend not in this tree: skipped)")
        return

    def pure_fwd():
        return torch.cat([lookup_pure.forward(f1, p, coords / 2**i, r, scale) for i, p in enumerate(pyramid)], 1)

    pure_fwd()
    t_p = cuda_time(pure_fwd, repeat)
    row("pure on-the-fly lookup forward", t_p, 2 * macs, io)
    print(f"  speed-up triton / pure lookup forward: {t_p / t_f:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--only", default="W1,W2,W5")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (needs TRITON_INTERPRET=1)")
    args = parser.parse_args(argv)
    global DEVICE
    if args.smoke:
        DEVICE, args.repeat = "cpu", 1
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here; nothing to measure (the Triton kernels are tested on the CPU")
        print("through TRITON_INTERPRET=1 by `make test-triton`).")
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("benchmarks/gpu.py: triton is not installed (pip install 'torchcorr[triton]'); nothing to measure.")
        return 0
    dtype = getattr(torch, args.dtype)
    print(machine())
    print(f"roofline figures: {PEAK_BYTES / 1e12:.1f} TB/s, {PEAK_FP32 / 1e12:.0f} TFLOP/s fp32 (CUDA cores)")
    try:
        from spatial_correlation_sampler import spatial_correlation_sample as sampler
    except ImportError:
        sampler = None
        print("spatial-correlation-sampler: not importable (its CUDA build is optional here): skipped")
    wanted = set(args.only.split(","))
    torch.manual_seed(0)
    if args.smoke:
        flownet_case("W1 (smoke)", 1, 16, 3, 5, 2, 2, dtype, 1, None)
        raft_case(dtype, 1, (1, 4, 4, 6, 2, 1))
        return 0
    if "W1" in wanted:
        flownet_case("W1 FlowNetC", 2, 256, 48, 64, 20, 2, dtype, args.repeat, sampler)
    if "W2" in wanted:
        flownet_case("W2 PWC-Net fine", 2, 32, 112, 256, 4, 1, dtype, args.repeat, sampler)
    if "W5" in wanted:
        raft_case(dtype, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
