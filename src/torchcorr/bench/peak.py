"""The cores' float32 FMA limit, measured: a register-only loop of vector FMAs on every thread.

The matmul the benchmarks divide by is torch's (MKL on x86), whose share of the FMA units' rate
depends on the processor: on the AMD Zen 5 host of the fourteenth session it ran at about 40% of
this limit.  The fraction of the limit says how close a kernel comes to the hardware whatever the
matmul does on a host.  Needs numba (the explicit-SIMD helpers of the CPU backend); without it the
limit is not measured.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["fma_gflops"]

_KERNEL = None
#: independent accumulators (vector registers) and FMAs on each per loop trip: enough chains to
#: cover the FMA latency on two pipes, few enough to stay in registers on AVX2's sixteen
_CHAINS, _DEPTH = 12, 8


def _build():
    """The parallel numba function ``run(x, trips, threads)``; None without numba."""
    try:
        import numba
        import numpy as np
        from numba.core import cgutils
        from numba.extending import intrinsic

        from ..backends._cpu_simd import LANES, _const, _Emit
    except ImportError:
        return None

    @intrinsic
    def fma_loop(typingctx, x, trips):
        """``_CHAINS`` vector accumulators, each advanced by ``_DEPTH`` FMAs per trip; their sum's lane 0."""
        sig = x.dtype(x, trips)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            vty = e.vector_type(0)
            a = e.load(e.data(0), _const(0), vty, e.item_size(0))
            b = e.load(e.data(0), _const(LANES), vty, e.item_size(0))
            slots = e.accumulators(_CHAINS, vty)
            fma = e.fma(vty)
            with cgutils.for_range(builder, e.int64(1)):
                acc = [builder.load(s) for s in slots]
                for _ in range(_DEPTH):
                    acc = [builder.call(fma, [a, b, v]) for v in acc]
                for s, v in zip(slots, acc, strict=True):
                    builder.store(v, s)
            total = builder.load(slots[0])
            for s in slots[1:]:
                total = builder.fadd(total, builder.load(s))
            return builder.extract_element(total, _const(0))

        return sig, codegen

    @numba.njit(parallel=True, cache=True, nogil=True)
    def run(x, trips, threads):
        out = np.zeros(threads, x.dtype)  # one result per thread, so that none of the work is dropped
        for t in numba.prange(threads):
            out[t] = fma_loop(x, trips)
        return out

    return run, LANES


def fma_gflops(repeat: int = 5, trips: int = 400_000) -> float | None:
    """float32 FMA throughput of every thread now (GFLOP/s; median of ``repeat``), or None without numba."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build() or False
    if not _KERNEL:
        return None
    import numba
    import numpy as np

    from ..backends import cpu

    run, lanes = _KERNEL
    cpu._threads()  # as many threads as torch uses
    threads = numba.get_num_threads()
    x = np.full(2 * lanes, 1e-8, np.float32)
    run(x, 10, threads)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(x, trips, threads)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * threads * trips * _DEPTH * _CHAINS * lanes
    return flops / statistics.median(times) / 1e9
