"""Explicit-SIMD inner kernels of the CPU backend's fast path, written as LLVM IR through numba.

Imported only when numba imports.  Each kernel is a numba ``intrinsic``: it emits one loop whose
body loads vectors of ``LANES`` consecutive pixels and accumulates them with ``llvm.fma`` into
accumulators that live in registers (allocas that LLVM promotes).  Writing the vectors out by hand
rather than leaving it to LLVM's loop vectoriser matters: the vectoriser gave up on the same loops
whenever the code around them changed (a short-circuit ``and``, an address chosen by a branch, a
small block fully unrolled first), silently falling back to scalar code 5-10x slower.

Indices are 64-bit integers used with wrapping arithmetic, so a negative stride is fine.  The
caller guarantees that every unmasked vector read lies inside its array.

* ``xfwd_r{R}t{T}(A, ia, acs, B, ib, bcs, bst, C, D, d, dst, scale, nt)``: for rows ``r < R`` and
  displacements ``t < T``, ``D[d[r] + t*dst + l] = scale * sum_{c<C} A[ia[r] + c*acs + l] *
  B[ib + c*bcs + t*bst + l]`` (``ia``, ``d``: tuples of ``R`` offsets): ``R`` rows of ``f1`` share
  each load of an ``f2`` row.  With ``nt`` non-zero the stores are streaming ones, and every
  ``D[d[r] + t*dst]`` must start a 64-byte line, or a vector where a vector is shorter (``xsfence``
  before another thread reads).
* ``xsfence()``: orders the streaming stores made so far before every later store.
* ``xsum_c{K}(G, g0, gsi, gsk, ni, nk, X, x0, xcs, xsi, xsk, D, d0, dcs, scale, add)``: for channels
  ``j < K``, ``s_j = sum_{i<ni, k<nk} G[g0 + i*gsi + k*gsk + l] * X[x0 + j*xcs + i*xsi + k*xsk + l]``
  and ``D[d0 + j*dcs + l] = scale * s_j`` (``+=`` when ``add``): both gradients are this sum.
* ``xsum2_c{K}(G, g0, gd, ..., D, d0, dd, dcs, scale, add)``: two such sums that share each load of
  ``X``, the second reading ``G`` ``gd`` further on and writing ``D`` ``dd`` further on (two rows of
  a gradient that meet the same rows of the other input); ``xsum3_c{K}``: three, the third ``2*gd``
  and ``2*dd`` further on.
* ``xsum3p_c{K}``: ``xsum3_c{K}`` without the prefetch of ``G`` (for a packed copy of it that
  streams from L1, where the hint only costs load slots: with it the packed gradients gained
  5-15% less over the unpacked ones, measured in one process each way); instead, each row ``i``
  prefetches the lines of ``X`` that row ``i + X_AHEAD`` reads.
* ``xsumm_c{K}``, ``xsum2m_c{K}``, ``xsum3m_c{K}``: the same over ``k0 <= k < k1`` (in place of ``nk``; ``k`` is the
  outer loop), every load of ``G`` and ``X`` masked to the lanes ``max(k*mst - mz, flo) <= l <
  min(k*mst - mz + mn, fhi)`` (arguments ``mz, mst, mn, flo, fhi`` last): nothing outside the mask is
  read, so the operands need no padding where a row ends.
* ``xpack(P, d0, dk, db, S, s0, sk, nk, nb, lo, hi, wst, ahead)``: for ``k < nk`` and ``b < nb``,
  the vector ``P[d0 + k*dk + b*db + l] = S[s0 + k*sk + b*LANES + l]`` in the lanes ``lo + k*wst <=
  b*LANES + l < hi + k*wst`` and zero in the others (nothing else is read): the gradients' packing
  of the incoming gradient, one row of displacements of ``nb`` blocks.  With ``ahead`` non-zero,
  each ``k`` also prefetches into L2 (``G_LOCALITY``) the lines of the ``nb`` blocks that follow.

* ``xcg[m]_v{V}t{T}(G, g0, gsi, gst, ni, X, x0, xr, xsz, D, d0, dsp, scale, jz, jlo, jhi)``:
  the channel-vectorised gradient sums, over channels-last operands, of ``P`` pixels x ``V``
  vectors of channels (``P = CG_PIXELS`` for ``V = 2``, twice that for ``V = 1``):
  ``D[d0 + p*dsp + v*LANES + l] = scale * sum_{i<ni} sum_{z, u: z - u = p} G[g0 + i*gsi + u*gst
  + z] * X[x0 + xr[i] + z*xsz + v*LANES + l]`` for ``p < P``, ``v < V``, ``u < T`` (``xr``: where
  each row of ``X`` starts, an int64 array; ``z < P + T - 1`` walks the ``X`` columns the block
  reads, each loaded once for every pixel it meets; each ``G`` term is one scalar broadcast to a
  vector).  With ``m``, the ``G`` term is zero (and not read) unless ``jlo <= jz + z < jhi``
  (``G``'s pixel, where it is ``X``'s: the ``f2`` gradient); ``jz, jlo, jhi`` are unused without
  ``m``.  Both gradients are this sum (``G``'s strides make the difference).
* ``xtile(S, s0, ss, D, d0, ds)``: ``D[d0 + c*ds + r] = S[s0 + r*ss + c]`` for ``r, c < LANES``:
  a ``LANES x LANES`` tile transposed in registers (``log2(LANES)`` rounds of two-vector shuffles).
  ``xtile_nt``: the same with streaming stores (each ``D[d0 + c*ds]`` must start a 64-byte line, or
  a vector where a vector is shorter; ``xsfence`` before another thread reads).

The forward and the unmasked sums (but ``xsum3p``) also prefetch the streaming operand ``AHEAD``
elements further along its row (the next block's line).
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._cpu_codegen import CG_PIXELS, LANES, XC3_SIZES, XC_SIZES, XR_SIZES, XT_MAX, cg_kernels, sum_kernels

__all__ = ["CG_PIXELS", "LANES", "XC3_SIZES", "XC_SIZES", "XR_SIZES", "XT_MAX"]  # and the kernels, added below

_I64 = ir.IntType(64)

#: How far ahead along a row the kernels prefetch the operand that streams through them (elements;
#: two cache lines of float32): the next block's line of ``f2`` in the forward, of the incoming
#: gradient in the unmasked sums.  A block's loads of these jump a whole map per displacement or
#: channel, a pattern the hardware prefetchers lose track of; on W2 (rows of 256 pixels) the hint
#: made the forward kernel 15% faster and both gradients about 10% (measured side by side in one
#: process), and on W1 and W3 it changed nothing measurable.
AHEAD = 32

#: The cache level the gradients' prefetch of the incoming gradient aims at (``llvm.prefetch``
#: locality: 3 = every level, ``prefetcht0``; 2 = L2 and beyond, ``prefetcht1``).  The 81 planes of
#: the incoming gradient that a block reads fall on a few L1 sets, where a prefetched line mostly
#: evicts a line still in use before its own turn comes: aimed at L2 instead, both gradients ran
#: 3-8% faster on W1, W2 and W3 (four alternating runs; locality 1 the same, 0 twice as slow).  The
#: forward's prefetch of ``f2`` showed no difference and stays at 3.
G_LOCALITY = 2

#: Rows of ``u`` ahead at which the packed three-row sums prefetch the other input (into L1; 0: no
#: hint).  Each row of ``u`` moves a block's reads of ``X`` to new lines, one or two per channel,
#: a row of the map further on: about 16 lines at once that the hardware prefetchers do not see
#: coming.  Alternating in one process against no hint, W2's gradients ran 1-27% faster (most in
#: the slow minutes, when those lines come from L3), W1 and W3 even; two rows ahead was no better.
X_AHEAD = 1

#: How far ahead along its row (elements) the channel-vectorised gradient sums prefetch the
#: incoming gradient: a block reads one short run of each of its ``dyn x dxn`` planes, far more
#: streams than the hardware prefetchers follow.  On W2, alternating in one process: 32 to 256
#: within the noise of each other, and against no hint 4% faster for the ``f2`` gradient and even
#: for the ``f1`` gradient (measured in the prototype, before the ``f1`` gradient packed its rows).
CG_AHEAD = 64


def _const(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


class _Emit:
    """Helpers bound to one codegen call."""

    def __init__(self, context, builder, sig, args):
        self.context, self.builder = context, builder
        self.sig, self.args = sig, args

    def data(self, k: int):
        """Data pointer of array argument ``k``."""
        ty = self.sig.args[k]
        return self.context.make_array(ty)(self.context, self.builder, self.args[k]).data

    def int64(self, k: int):
        return self.context.cast(self.builder, self.args[k], self.sig.args[k], types.int64)

    def scalar(self, k: int, dtype):
        """Argument ``k`` cast to the arrays' element type."""
        return self.context.cast(self.builder, self.args[k], self.sig.args[k], dtype)

    def vector_type(self, k: int) -> ir.VectorType:
        return ir.VectorType(self.context.get_value_type(self.sig.args[k].dtype), LANES)

    def item_size(self, k: int) -> int:
        return self.context.get_abi_sizeof(self.context.get_value_type(self.sig.args[k].dtype))

    def load(self, data, index, vty, align):
        ptr = self.builder.bitcast(self.builder.gep(data, [index]), vty.as_pointer())
        return self.builder.load(ptr, align=align)

    def store(self, value, data, index, vty, align):
        ptr = self.builder.bitcast(self.builder.gep(data, [index]), vty.as_pointer())
        self.builder.store(value, ptr, align=align)

    def store_nt(self, value, data, index, vty, align):
        """A non-temporal (streaming) store of a whole vector to ``data[index]``, ``align`` bytes aligned.

        The line goes to memory without being read first or kept in the caches; the caller runs
        :func:`xsfence` before another thread reads it.
        """
        ptr = self.builder.bitcast(self.builder.gep(data, [index]), vty.as_pointer())
        st = self.builder.store(value, ptr, align=align)
        st.set_metadata("nontemporal", self.builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))

    def store_or_add(self, add, value, data, index, vty, align):
        """``data[index:] = value``, or ``+= value`` where the boolean ``add`` holds."""
        with self.builder.if_else(add) as (then, otherwise):
            with then:
                self.store(self.builder.fadd(value, self.load(data, index, vty, align)), data, index, vty, align)
            with otherwise:
                self.store(value, data, index, vty, align)

    def store_add_or_stream(self, mode, value, data, index, vty, align):
        """As :meth:`store_or_add` for ``mode`` 0 (store) and 1 (add); 2: a streaming store.

        With 2, ``data[index]`` must start a 64-byte line (or a vector, where that is shorter).
        """
        b = self.builder
        with b.if_else(b.icmp_signed("==", mode, _const(2))) as (streaming, other):
            with streaming:
                self.store_nt(value, data, index, vty, min(64, LANES * align))
            with other:
                self.store_or_add(b.icmp_signed("!=", mode, _const(0)), value, data, index, vty, align)

    def prefetch(self, data, index, locality=3):
        """A hint to bring ``data[index]``'s cache line in (``llvm.prefetch`` of a read).

        ``locality`` 3 keeps the line in every level, 2 from L2 on.
        """
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        ptr = self.builder.bitcast(self.builder.gep(data, [index]), i8p)
        fn = cgutils.get_or_insert_function(
            self.builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        self.builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])

    def masked_load(self, data, index, vty, align, mask):
        """A vector load of the lanes where ``mask`` holds, zeros elsewhere (nothing else is read)."""
        ptr = self.builder.gep(data, [index])
        fnty = ir.FunctionType(vty, [ptr.type, ir.IntType(32), mask.type, vty])
        name = f"llvm.masked.load.v{LANES}{self._elem(vty)}.p0"
        fn = cgutils.get_or_insert_function(self.builder.module, fnty, name)
        return self.builder.call(fn, [ptr, ir.Constant(ir.IntType(32), align), mask, ir.Constant(vty, None)])

    def lane_range(self, lo, hi):
        """The lane mask ``lo <= lane < hi`` (64-bit scalars).

        Made as a bit pattern in a scalar register (``(1 << hi) - (1 << lo)`` with both clamped to
        ``0 .. LANES``) and moved into a mask register: two broadcasts and two vector compares per
        mask kept port 5, which the FMAs and the mask moves share, busy for about four cycles per
        vector, and made the gradients' packing twice as slow as its loads and stores.
        """
        b = self.builder
        zero, lanes = _const(0), _const(LANES)

        def clamp(v):
            v = b.select(b.icmp_signed("<", v, zero), zero, v)
            return b.select(b.icmp_signed(">", v, lanes), lanes, v)

        one = _const(1)
        lo_bits = b.shl(one, clamp(lo))
        hi_bits = b.shl(one, clamp(hi))
        bits = b.select(b.icmp_signed(">", hi_bits, lo_bits), b.sub(hi_bits, lo_bits), zero)
        return b.bitcast(b.trunc(bits, ir.IntType(LANES)), ir.VectorType(ir.IntType(1), LANES))

    @staticmethod
    def _elem(vty) -> str:
        return "f64" if isinstance(vty.element, ir.DoubleType) else "f32"

    def splat(self, value, vty):
        """A vector of ``LANES`` copies of a scalar of the element type."""
        vec = ir.Constant(vty, None)
        for lane in range(LANES):
            vec = self.builder.insert_element(vec, value, _const(lane))
        return vec

    def accumulators(self, n: int, vty):
        """``n`` zeroed vector slots (allocas in the entry block, zeroed here)."""
        slots = [cgutils.alloca_once(self.builder, vty) for _ in range(n)]
        for s in slots:
            self.builder.store(ir.Constant(vty, None), s)
        return slots

    def fma(self, vty):
        """``llvm.fma`` on vectors (llvmlite does not name vector intrinsics itself)."""
        fnty = ir.FunctionType(vty, [vty, vty, vty])
        return cgutils.get_or_insert_function(self.builder.module, fnty, f"llvm.fma.v{LANES}{self._elem(vty)}")


def _fwd(rows: int, disps: int):
    def kernel(typingctx, A, ia, acs, B, ib, bcs, bst, C, D, d, dst, scale, nt):
        sig = types.void(A, ia, acs, B, ib, bcs, bst, C, D, d, dst, scale, nt)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            vty, align = e.vector_type(0), e.item_size(0)
            a, b, out = e.data(0), e.data(3), e.data(8)
            ia_ = cgutils.unpack_tuple(builder, args[1], rows)
            dr = cgutils.unpack_tuple(builder, args[9], rows)
            acs_, ib_, bcs_, bst_, c_ = e.int64(2), e.int64(4), e.int64(5), e.int64(6), e.int64(7)
            dst_ = e.int64(10)
            sv = e.splat(e.scalar(11, signature.args[0].dtype), vty)
            ibt = [builder.add(ib_, builder.mul(bst_, _const(t))) for t in range(disps)]
            slots = e.accumulators(rows * disps, vty)
            fma = e.fma(vty)
            with cgutils.for_range(builder, c_) as loop:
                c = loop.index
                av = [e.load(a, builder.add(ia_[r], builder.mul(c, acs_)), vty, align) for r in range(rows)]
                pb = builder.mul(c, bcs_)
                e.prefetch(b, builder.add(builder.add(ibt[0], pb), _const(AHEAD)))
                for t in range(disps):
                    bv = e.load(b, builder.add(ibt[t], pb), vty, align)
                    for r in range(rows):
                        s = slots[r * disps + t]
                        builder.store(builder.call(fma, [av[r], bv, builder.load(s)]), s)
            values = [builder.fmul(builder.load(s), sv) for s in slots]
            at = [builder.add(dr[r], builder.mul(dst_, _const(t))) for r in range(rows) for t in range(disps)]
            with builder.if_else(builder.icmp_signed("!=", e.int64(12), _const(0))) as (streaming, plain):
                with streaming:  # each block starts a line, or a vector where that is shorter
                    for value, index in zip(values, at, strict=True):
                        e.store_nt(value, out, index, vty, min(64, LANES * align))
                with plain:
                    for value, index in zip(values, at, strict=True):
                        e.store(value, out, index, vty, align)
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = f"xfwd_r{rows}t{disps}"
    return intrinsic(kernel)


def _sum(name: str, channels: int, streams: int, masked: bool, packed: bool = False):
    names = ["G", "g0", "gd", "gsi", "gsk", "ni", "nk", "X", "x0", "xcs", "xsi", "xsk"]
    names += ["D", "d0", "dd", "dcs", "scale", "add"]
    if streams == 1:
        names = [n for n in names if n not in ("gd", "dd")]
    if masked:
        names[names.index("nk")] = "k0"
        names.insert(names.index("k0") + 1, "k1")
        names += ["mz", "mst", "mn", "flo", "fhi"]

    def kernel(typingctx, *argtys):
        sig = types.void(*argtys)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            at = {n: k for k, n in enumerate(names)}
            vty, align = e.vector_type(0), e.item_size(0)
            g, x, out = e.data(at["G"]), e.data(at["X"]), e.data(at["D"])
            v = {n: e.int64(at[n]) for n in names if n not in ("G", "X", "D", "scale")}
            sv = e.splat(e.scalar(at["scale"], signature.args[0].dtype), vty)
            add_ = builder.icmp_signed("!=", v["add"], _const(0))
            xc = [builder.mul(v["xcs"], _const(j)) for j in range(channels)]
            # stream r reads G r*gd further on and writes D r*dd further on
            gofs = [_const(0)] + [builder.mul(v["gd"], _const(r)) for r in range(1, streams)]
            dofs = [_const(0)] + [builder.mul(v["dd"], _const(r)) for r in range(1, streams)]
            slots = e.accumulators(streams * channels, vty)
            fma = e.fma(vty)

            def body(i, k, mask):
                pg = builder.add(builder.add(v["g0"], builder.mul(i, v["gsi"])), builder.mul(k, v["gsk"]))
                if mask is None:
                    gv = [e.load(g, builder.add(pg, gofs[r]), vty, align) for r in range(streams)]
                    if not packed:
                        for r in range(streams):
                            e.prefetch(g, builder.add(builder.add(pg, gofs[r]), _const(AHEAD)), G_LOCALITY)
                else:
                    gv = [e.masked_load(g, builder.add(pg, gofs[r]), vty, align, mask) for r in range(streams)]
                px = builder.add(builder.add(v["x0"], builder.mul(i, v["xsi"])), builder.mul(k, v["xsk"]))
                for j in range(channels):
                    if mask is None:
                        xv = e.load(x, builder.add(px, xc[j]), vty, align)
                    else:
                        xv = e.masked_load(x, builder.add(px, xc[j]), vty, align, mask)
                    for r in range(streams):
                        s = slots[r * channels + j]
                        builder.store(builder.call(fma, [gv[r], xv, builder.load(s)]), s)

            if masked:
                # displacement k outer: its lane mask is made once
                with cgutils.for_range_slice(builder, v["k0"], v["k1"], _const(1)) as (k, _):
                    lo = builder.sub(builder.mul(k, v["mst"]), v["mz"])
                    hi = builder.add(lo, v["mn"])
                    lo = builder.select(builder.icmp_signed(">", lo, v["flo"]), lo, v["flo"])
                    hi = builder.select(builder.icmp_signed("<", hi, v["fhi"]), hi, v["fhi"])
                    mask = e.lane_range(lo, hi)
                    with cgutils.for_range(builder, v["ni"]) as inner:
                        body(inner.index, k, mask)
            else:
                with cgutils.for_range(builder, v["ni"]) as outer:
                    if packed and X_AHEAD:
                        # the lines of X the row X_AHEAD rows on reads, for every channel
                        span = builder.mul(builder.sub(v["nk"], _const(1)), v["xsk"])
                        neg = builder.icmp_signed("<", span, _const(0))
                        row = builder.add(v["x0"], builder.mul(builder.add(outer.index, _const(X_AHEAD)), v["xsi"]))
                        lo = builder.add(row, builder.select(neg, span, _const(0)))
                        hi = builder.add(builder.add(row, builder.select(neg, _const(0), span)), _const(LANES - 1))
                        nl = builder.add(builder.sdiv(builder.sub(hi, lo), _const(LANES)), _const(1))
                        with cgutils.for_range(builder, nl) as ln:
                            at_ = builder.add(lo, builder.mul(ln.index, _const(LANES)))
                            for j in range(channels):
                                e.prefetch(x, builder.add(at_, xc[j]), 3)
                        for j in range(channels):
                            e.prefetch(x, builder.add(hi, xc[j]), 3)
                    with cgutils.for_range(builder, v["nk"]) as inner:
                        body(outer.index, inner.index, None)
            for r in range(streams):
                for j in range(channels):
                    index = builder.add(builder.add(v["d0"], dofs[r]), builder.mul(v["dcs"], _const(j)))
                    value = builder.fmul(builder.load(slots[r * channels + j]), sv)
                    if packed:
                        e.store_add_or_stream(v["add"], value, out, index, vty, align)
                    else:
                        e.store_or_add(add_, value, out, index, vty, align)
            return context.get_dummy_value()

        return sig, codegen

    # numba reads an intrinsic's parameters from its signature: spell them out
    params = ", ".join(["typingctx", *names])
    scope: dict = {"kernel": kernel}
    exec(f"def {name}({params}):\n    return kernel(typingctx, {', '.join(names)})", scope)
    return intrinsic(scope[name])


for _r in XR_SIZES:
    for _t in range(1, XT_MAX + 1):
        globals()[f"xfwd_r{_r}t{_t}"] = _fwd(_r, _t)
        __all__.append(f"xfwd_r{_r}t{_t}")
for _name, _k, _s, _m, _p in sum_kernels():
    globals()[_name] = _sum(_name, _k, _s, _m, _p)
    __all__.append(_name)


def _pack():
    def kernel(typingctx, P, d0, dk, db, S, s0, sk, nk, nb, lo, hi, wst, ahead):
        sig = types.void(P, d0, dk, db, S, s0, sk, nk, nb, lo, hi, wst, ahead)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            vty, align = e.vector_type(0), e.item_size(0)
            dst, src = e.data(0), e.data(4)
            d0_, dk_, db_, s0_, sk_, nk_, nb_ = (e.int64(i) for i in (1, 2, 3, 5, 6, 7, 8))
            lo_, hi_, wst_ = e.int64(9), e.int64(10), e.int64(11)
            ahead_ = builder.icmp_signed("!=", e.int64(12), _const(0))
            lanes = _const(LANES)
            zero = _const(0)

            def copy(masked: bool) -> None:
                # block b outer, displacement k inner: each block's vectors go to P one after another
                with cgutils.for_range(builder, nb_) as bl:
                    o = builder.mul(bl.index, lanes)
                    s_b = builder.add(s0_, o)
                    d_b = builder.add(d0_, builder.mul(bl.index, db_))
                    with cgutils.for_range(builder, nk_) as kl:
                        k = kl.index
                        at = builder.add(s_b, builder.mul(k, sk_))
                        if masked:
                            shift = builder.sub(builder.mul(k, wst_), o)  # block b's lanes of the window
                            mask = e.lane_range(builder.add(lo_, shift), builder.add(hi_, shift))
                            value = e.masked_load(src, at, vty, align, mask)
                        else:
                            value = e.load(src, at, vty, align)
                        e.store(value, dst, builder.add(d_b, builder.mul(k, dk_)), vty, align)

            # every lane of every block inside the window at every k (most of a row): plain loads
            last = builder.mul(builder.sub(nk_, _const(1)), wst_)
            pos = builder.icmp_signed(">", last, zero)
            lo_all = builder.add(lo_, builder.select(pos, last, zero))
            hi_all = builder.add(hi_, builder.select(pos, zero, last))
            inside = builder.and_(
                builder.icmp_signed("<=", lo_all, zero), builder.icmp_signed(">=", hi_all, builder.mul(nb_, lanes))
            )
            with builder.if_else(inside, likely=True) as (plain, masked):
                with plain:
                    copy(False)
                with masked:
                    copy(True)
            with builder.if_then(ahead_):
                # the next copy's span (nb blocks on) at every k, whose start need not be a line's
                with cgutils.for_range(builder, nk_) as kl:
                    nxt = builder.add(builder.add(s0_, builder.mul(kl.index, sk_)), builder.mul(nb_, lanes))
                    with cgutils.for_range(builder, nb_) as bl:
                        e.prefetch(src, builder.add(nxt, builder.mul(bl.index, lanes)), G_LOCALITY)
                    e.prefetch(src, builder.sub(builder.add(nxt, builder.mul(nb_, lanes)), _const(1)), G_LOCALITY)
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = "xpack"
    return intrinsic(kernel)


xpack = _pack()
__all__.append("xpack")


def _cgsum(name: str, pixels: int, vectors: int, disps: int, masked: bool):
    def kernel(typingctx, G, g0, gsi, gst, ni, X, x0, xr, xsz, D, d0, dsp, scale, jz, jlo, jhi):
        sig = types.void(G, g0, gsi, gst, ni, X, x0, xr, xsz, D, d0, dsp, scale, jz, jlo, jhi)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            vty, align = e.vector_type(0), e.item_size(0)
            g, x, xr, out = e.data(0), e.data(5), e.data(7), e.data(9)
            g0_, gsi_, gst_, ni_, x0_, xsz_, d0_, dsp_ = (e.int64(k) for k in (1, 2, 3, 4, 6, 8, 10, 11))
            sv = e.splat(e.scalar(12, signature.args[0].dtype), vty)
            slots = e.accumulators(pixels * vectors, vty)
            fma = e.fma(vty)
            gu = [builder.mul(gst_, _const(u)) for u in range(disps)]
            ok = []
            if masked:  # which columns of G's rows lie inside them: fixed for the whole loop
                jz_, jlo_, jhi_ = e.int64(13), e.int64(14), e.int64(15)
                for z in range(pixels + disps - 1):
                    j = builder.add(jz_, _const(z))
                    ok.append(builder.and_(builder.icmp_signed(">=", j, jlo_), builder.icmp_signed("<", j, jhi_)))
            zero = ir.Constant(vty.element, 0)
            with cgutils.for_range(builder, ni_) as loop:
                gb = builder.add(g0_, builder.mul(loop.index, gsi_))
                xb = builder.add(x0_, builder.load(builder.gep(xr, [loop.index])))  # row i of X
                acc = [builder.load(s) for s in slots]
                if not masked:  # the lines of G the block after next reads, one per displacement
                    for u in range(disps):
                        e.prefetch(g, builder.add(builder.add(gb, gu[u]), _const(CG_AHEAD)), G_LOCALITY)
                for z in range(pixels + disps - 1):
                    xz = builder.add(xb, builder.mul(xsz_, _const(z)))
                    xv = [e.load(x, builder.add(xz, _const(v * LANES)), vty, align) for v in range(vectors)]
                    for u in range(disps):
                        p = z - u
                        if not 0 <= p < pixels:
                            continue
                        at = builder.add(builder.add(gb, gu[u]), _const(z))
                        if masked:
                            at = builder.select(ok[z], at, _const(0))  # G[0] exists: the load is always safe
                            gs = builder.select(ok[z], builder.load(builder.gep(g, [at])), zero)
                        else:
                            gs = builder.load(builder.gep(g, [at]))
                        gv = e.splat(gs, vty)
                        for v in range(vectors):
                            acc[p * vectors + v] = builder.call(fma, [gv, xv[v], acc[p * vectors + v]])
                for s, a in zip(slots, acc, strict=True):
                    builder.store(a, s)
            for p in range(pixels):
                for v in range(vectors):
                    at = builder.add(builder.add(d0_, builder.mul(dsp_, _const(p))), _const(v * LANES))
                    e.store(builder.fmul(builder.load(slots[p * vectors + v]), sv), out, at, vty, align)
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = name
    return intrinsic(kernel)


for _name, _p, _v, _t, _m in cg_kernels():
    globals()[_name] = _cgsum(_name, _p, _v, _t, _m)
    __all__.append(_name)


def _transposed(builder, rows: list) -> list:
    """The ``LANES`` vectors of the transpose of the ``LANES x LANES`` matrix whose rows are ``rows``.

    Round ``b`` swaps bit ``b`` of the row index with bit ``b`` of the lane index: each output
    vector is one shuffle of two input vectors.
    """
    n = len(rows)
    i32 = ir.IntType(32)
    m, b = list(rows), 1
    while b < n:
        new = list(m)
        for r in range(n):
            if r & b:
                continue
            lo = [c if not c & b else n + (c ^ b) for c in range(n)]
            hi = [c ^ b if not c & b else n + c for c in range(n)]
            new[r] = builder.shuffle_vector(m[r], m[r | b], ir.Constant(ir.VectorType(i32, n), lo))
            new[r | b] = builder.shuffle_vector(m[r], m[r | b], ir.Constant(ir.VectorType(i32, n), hi))
        m, b = new, b << 1
    return m


def _tile(name: str, streaming: bool):
    """``xtile`` (plain stores) or ``xtile_nt`` (streaming stores)."""

    def kernel(typingctx, S, s0, ss, D, d0, ds):
        sig = types.void(S, s0, ss, D, d0, ds)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            vty, align = e.vector_type(0), e.item_size(0)
            src, dst = e.data(0), e.data(3)
            s0_, ss_, d0_, ds_ = e.int64(1), e.int64(2), e.int64(4), e.int64(5)
            rows = [e.load(src, builder.add(s0_, builder.mul(ss_, _const(r))), vty, align) for r in range(LANES)]
            for c, col in enumerate(_transposed(builder, rows)):
                at = builder.add(d0_, builder.mul(ds_, _const(c)))
                if streaming:
                    e.store_nt(col, dst, at, vty, min(64, LANES * align))
                else:
                    e.store(col, dst, at, vty, align)
            return context.get_dummy_value()

        return sig, codegen

    kernel.__name__ = kernel.__qualname__ = name
    return intrinsic(kernel)


xtile = _tile("xtile", False)
xtile_nt = _tile("xtile_nt", True)
__all__ += ["xtile", "xtile_nt"]


@intrinsic
def xprefetch(typingctx, A, i):
    """A hint to bring the cache line of ``A[i]`` into L2 (``G_LOCALITY``)."""
    sig = types.void(A, i)

    def codegen(context, builder, signature, args):
        e = _Emit(context, builder, signature, args)
        e.prefetch(e.data(0), e.int64(1), G_LOCALITY)
        return context.get_dummy_value()

    return sig, codegen


__all__.append("xprefetch")


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def xsfence(typingctx):
    """Makes the streaming stores so far seen by every thread before later stores.

    ``sfence`` on x86; elsewhere a full fence (the intrinsic exists on x86 only).
    """

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.sfence"), [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


__all__.append("xsfence")
