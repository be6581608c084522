"""Numba loops of the integer kernels, compiled lazily and cached on disk (like
:mod:`npuc.runtime.kernels._numba`, whose conventions they follow: flat C-contiguous arrays,
Python ints as int64, no ``parallel=True``).

Every loop requantizes with the one rule of :func:`npuc.quant.qparams.requantize`:

    y = clamp(z + ((v · m + r) >> n), lo, hi),   r = 2^(n−1) if n > 0 else 0

in int64 (``>>`` on signed ints is numba's arithmetic shift), so they are bit-exact with the
registry's reference kernels. ``r`` is precomputed per channel at build time.

Exact integer arithmetic in floating point: the GEMM-based kernels hand integer-valued
float32 (or float64) arrays to BLAS; the loops here convert integer codes to float on the
way in (``x − x_zp``, exact) and integer-valued float sums back to int64 on the way out
(``np.int64(v)``, exact because the caller chose the precision so that every partial sum is
an integer below 2^24 in float32, 2^53 in float64).

Layout: the loop sources live in :mod:`.qloops_gemm` (patch matrices, epilogues, packed
GEMM), :mod:`.qloops_window` (window loop, depthwise, global max) and
:mod:`.qloops_elementwise` (``_rq`` and the elementwise loops); this module holds the
hand-written LLVM micro-kernels (:func:`_make_mk`, :func:`_make_dwk`) and :func:`jit`, and
re-exports every loop so ``qloops.<name>`` keeps working.
"""
from __future__ import annotations

from typing import Callable

from . import qloops_elementwise, qloops_gemm, qloops_window
# every loop stays importable as qloops.<name>
from .qloops_elementwise import (dequantize_lin, qadd_4d, qadd_flat, qadd_flat_ip, qlut8,  # noqa: F401
                                 qlut8_ip, qlut16, qlut16_ip, qmean, qmul_4d, qmul_flat, qmul_flat_ip, qprelu,
                                 qprelu_ip, quantize_lin, quantize_lin16, requant_ip, requant_rows)
from .qloops_gemm import (MR, NR, NRW, center, center_pairs, center_quads, qepi_cols, qepi_flat,  # noqa: F401
                          qepi_rows, qgemm_pairs, qgemm_quads, qim2col, qim2col_planes)
from .qloops_window import (global_max_int, qdepthwise_cl, qdepthwise_vnni, qwindow,  # noqa: F401
                            qwindow_scratch)


# --------------------------------------------------------------------------- micro-kernels (LLVM intrinsics)
def host_has_vnni() -> bool:
    """AVX-512 VNNI on the machine numba compiles for (``vpdpbusd`` on zmm registers).

    Reads ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` like numba does, and otherwise asks
    llvmlite for the host's features, without importing numba (compiling a model does not)."""
    import os

    name = os.environ.get("NUMBA_CPU_NAME")
    if name and name != "host":
        feats = os.environ.get("NUMBA_CPU_FEATURES", "")
        return "+avx512vnni" in feats and "+avx512bw" in feats
    try:
        import llvmlite.binding as llb

        f = llb.get_host_cpu_features()
    except Exception:   # noqa: BLE001 - unknown host: the portable path
        return False
    return bool(f.get("avx512vnni", False) and f.get("avx512bw", False) and f.get("avx512f", False))


def _make_mk(group: int):
    """The micro-kernel ``mk(w, woff, ldw, x, xoff, ldx, kg, c, coff, ldc)`` as a numba
    intrinsic: ``c[coff + r·ldc + q] = Σ_k<kg dot(w[woff + r·ldw + k], x[xoff + k·ldx + q])``
    for r < MR, q < NRW, where each int32 holds ``group`` codes and ``dot`` is the sum of
    their products: int16 pairs (``lo·lo + hi·hi``) or quads (uint8 x × int8 w). The MR × NR
    accumulators (16 int32 lanes each) stay in registers.

    pairs: generic LLVM vector IR (sign-extend, multiply, add even and odd lanes), which LLVM
    selects as ``vpdpwssd`` on AVX-512 VNNI and ``pmaddwd`` + add elsewhere. quads: the
    ``vpdpbusd`` intrinsic when :func:`host_has_vnni`, else the same generic IR pattern
    (correct everywhere, slow: LLVM does not fuse it)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    use_vnni = group == 4 and host_has_vnni()

    @intrinsic
    def mk(typingctx, w, woff, ldw, x, xoff, ldx, kg, c, coff, ldc):
        sig = types.void(w, woff, ldw, x, xoff, ldx, kg, c, coff, ldc)

        def codegen(context, builder, signature, args):
            wv_, woffv, ldwv, xv_, xoffv, ldxv, kgv, cv, coffv, ldcv = args
            st = signature.args
            wp = context.make_array(st[0])(context, builder, wv_).data
            xp = context.make_array(st[3])(context, builder, xv_).data
            cp = context.make_array(st[7])(context, builder, cv).data
            i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
            v16 = ir.VectorType(i32, 16)
            wide = ir.VectorType(i32, 16 * group)
            narrow = ir.VectorType(i16 if group == 2 else i8, 16 * group)
            lanes = [ir.Constant(v16, [group * i + j for i in range(16)]) for j in range(group)]
            if use_vnni:
                fnty = ir.FunctionType(v16, [v16, v16, v16])
                try:
                    vnni = builder.module.get_global("llvm.x86.avx512.vpdpbusd.512")
                except KeyError:
                    vnni = ir.Function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")

            def dot(acc, xa, wb):
                if use_vnni:
                    return builder.call(vnni, [acc, xa, wb])
                ext = builder.zext if group == 4 else builder.sext   # quads: x is uint8
                pa = ext(builder.bitcast(xa, narrow), wide)
                pb = builder.sext(builder.bitcast(wb, narrow), wide)
                prod = builder.mul(pa, pb)
                parts = [builder.shuffle_vector(prod, prod, lanes[j]) for j in range(group)]
                tot = parts[0]
                for q in parts[1:]:
                    tot = builder.add(tot, q)
                return builder.add(acc, tot)

            with builder.goto_block(builder.function.entry_basic_block):
                accs = [[builder.alloca(v16) for _ in range(NR)] for _ in range(MR)]
            zero = ir.Constant(v16, None)
            for row in accs:
                for a in row:
                    builder.store(zero, a)
            with cgutils.for_range(builder, kgv) as loop:
                k = loop.index
                xrow = builder.gep(xp, [builder.add(xoffv, builder.mul(k, ldxv))])
                xs = [builder.load(builder.bitcast(builder.gep(xrow, [ir.Constant(i64, 16 * j)]), v16.as_pointer()),
                                   align=4) for j in range(NR)]
                for r in range(MR):
                    wi = builder.add(builder.add(woffv, builder.mul(ir.Constant(i64, r), ldwv)), k)
                    wsc = builder.load(builder.gep(wp, [wi]))
                    wb = builder.insert_element(ir.Constant(v16, ir.Undefined), wsc, ir.Constant(i32, 0))
                    wb = builder.shuffle_vector(wb, ir.Constant(v16, ir.Undefined), ir.Constant(v16, None))
                    for j in range(NR):
                        builder.store(dot(builder.load(accs[r][j]), xs[j], wb), accs[r][j])
            for r in range(MR):
                crow = builder.gep(cp, [builder.add(coffv, builder.mul(ir.Constant(i64, r), ldcv))])
                for j in range(NR):
                    ptr = builder.bitcast(builder.gep(crow, [ir.Constant(i64, 16 * j)]), v16.as_pointer())
                    builder.store(builder.load(accs[r][j]), ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


def _make_dwk():
    """``_dwk(plane, acc, wq, wb, pb, ab, q0, s, Wp, KH, ntq)``: outputs ``q0 .. q0 + 16·G − 1``
    of the row starting at plane byte ``pb`` (``G = 4 / s`` phases of 16 int32 lanes: lane l of
    phase r is output ``q0 + r + l·G``, reading the int32 at byte ``pb + s·q + i·Wp + 4t``) of
    :func:`qdepthwise_vnni` — one ``vpdpbusd`` per phase, kernel row and tap quad — then the
    phases are interleaved back into output order and stored at ``acc[ab + q0:]``. Generic IR
    (correct, slow) without AVX-512 VNNI. ``s`` is 1, 2 or 4 (a branch per value)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    use_vnni = host_has_vnni()

    @intrinsic
    def dwk(typingctx, plane, acc, wq, wb, pb, ab, q0, s, wp, kh, ntq):
        sig = types.void(plane, acc, wq, wb, pb, ab, q0, s, wp, kh, ntq)

        def codegen(context, builder, signature, args):
            planev, accv, wqv, wbv, pbv, abv, q0v, sv, wpv, khv, ntqv = args
            st = signature.args
            pp = context.make_array(st[0])(context, builder, planev).data
            ap = context.make_array(st[1])(context, builder, accv).data
            wpp = context.make_array(st[2])(context, builder, wqv).data
            i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
            v16 = ir.VectorType(i32, 16)
            b64, w64 = ir.VectorType(i8, 64), ir.VectorType(i32, 64)
            lanes = [ir.Constant(v16, [4 * i + j for i in range(16)]) for j in range(4)]
            if use_vnni:
                fnty = ir.FunctionType(v16, [v16, v16, v16])
                try:
                    vnni = builder.module.get_global("llvm.x86.avx512.vpdpbusd.512")
                except KeyError:
                    vnni = ir.Function(builder.module, fnty, "llvm.x86.avx512.vpdpbusd.512")

            def dot(a, xa, wb_):
                if use_vnni:
                    return builder.call(vnni, [a, xa, wb_])
                pa = builder.zext(builder.bitcast(xa, b64), w64)
                pb = builder.sext(builder.bitcast(wb_, b64), w64)
                prod = builder.mul(pa, pb)
                parts = [builder.shuffle_vector(prod, prod, lanes[j]) for j in range(4)]
                return builder.add(a, builder.add(builder.add(parts[0], parts[1]), builder.add(parts[2], parts[3])))

            def interleave(a, b, n):
                mask = ir.Constant(ir.VectorType(i32, 2 * n), [v for k in range(n) for v in (k, n + k)])
                return builder.shuffle_vector(a, b, mask)

            def body(G, sval):
                with builder.goto_block(builder.function.entry_basic_block):
                    accs = [builder.alloca(v16) for _ in range(G)]
                for a in accs:
                    builder.store(ir.Constant(v16, None), a)
                base = builder.add(pbv, builder.mul(q0v, ir.Constant(i64, sval)))
                with cgutils.for_range(builder, khv) as li:
                    rowb = builder.add(base, builder.mul(li.index, wpv))
                    with cgutils.for_range(builder, ntqv) as lt:
                        widx = builder.add(wbv, builder.add(builder.mul(li.index, ntqv), lt.index))
                        wsc = builder.load(builder.gep(wpp, [widx]))
                        wb_ = builder.insert_element(ir.Constant(v16, ir.Undefined), wsc, ir.Constant(i32, 0))
                        wb_ = builder.shuffle_vector(wb_, ir.Constant(v16, ir.Undefined), ir.Constant(v16, None))
                        tb = builder.add(rowb, builder.mul(lt.index, ir.Constant(i64, 4)))
                        for r in range(G):
                            ptr = builder.gep(pp, [builder.add(tb, ir.Constant(i64, r * sval))])
                            xv = builder.load(builder.bitcast(ptr, v16.as_pointer()), align=1)
                            builder.store(dot(builder.load(accs[r]), xv, wb_), accs[r])
                ph = [builder.load(a) for a in accs]
                if G == 4:
                    vals = interleave(interleave(ph[0], ph[2], 16), interleave(ph[1], ph[3], 16), 32)
                    vt = ir.VectorType(i32, 64)
                elif G == 2:
                    vals = interleave(ph[0], ph[1], 16)
                    vt = ir.VectorType(i32, 32)
                else:
                    vals, vt = ph[0], v16
                dst = builder.bitcast(builder.gep(ap, [builder.add(abv, q0v)]), vt.as_pointer())
                builder.store(vals, dst, align=4)

            is1 = builder.icmp_signed("==", sv, ir.Constant(i64, 1))
            with builder.if_else(is1) as (then1, other1):
                with then1:
                    body(4, 1)
                with other1:
                    is2 = builder.icmp_signed("==", sv, ir.Constant(i64, 2))
                    with builder.if_else(is2) as (then2, other2):
                        with then2:
                            body(2, 2)
                        with other2:
                            body(1, 4)
            return context.get_dummy_value()

        return sig, codegen

    return dwk


# --------------------------------------------------------------------------- lazy jit
_SOURCES: dict[str, Callable] = {f.__name__: f for f in (
    center, qim2col, center_pairs, qgemm_pairs, center_quads, qim2col_planes, qgemm_quads,
    qdepthwise_cl, qdepthwise_vnni, qepi_rows, qepi_cols, qepi_flat, qwindow, global_max_int, qadd_flat, qadd_4d, qmul_flat,
    qmul_4d, requant_rows, qmean, qprelu, qlut8, qlut16, quantize_lin, quantize_lin16, dequantize_lin, qadd_flat_ip,
    qmul_flat_ip, requant_ip, qprelu_ip, qlut8_ip, qlut16_ip)}
_HELPERS = ("_rq", "_tapoff", "_qfill", "_tile_epilogue")
_JITTED: dict[str, Callable] = {}
_LOOP_MODULES = (qloops_gemm, qloops_window, qloops_elementwise)
_installed = False   #: helpers jitted and intrinsics installed in the loop modules


def _install_helpers() -> None:
    """Jit the helpers and build the micro-kernel intrinsics, then put them in place of the
    Python stand-ins in every loop module (numba resolves a loop's globals in its module)."""
    global _installed
    import numba

    compiled: dict[str, object] = {}
    for mod in _LOOP_MODULES:
        for h in _HELPERS:
            f = vars(mod).get(h)
            if f is not None and h not in compiled:
                compiled[h] = f if hasattr(f, "py_func") else numba.njit(cache=True, nogil=True, inline="always")(f)
    compiled.update(_mk=_make_mk(2), _mk4=_make_mk(4), _dwk=_make_dwk())
    for mod in _LOOP_MODULES:
        g = vars(mod)
        for h, f in compiled.items():
            if h in g:
                g[h] = f
    _installed = True


def jit(name: str) -> Callable:
    """The compiled loop ``name`` (compiled, or loaded from numba's disk cache, on first use)."""
    f = _JITTED.get(name)
    if f is None:
        import numba

        if not _installed:
            _install_helpers()
        f = numba.njit(cache=True, nogil=True, error_model="numpy")(_SOURCES[name])
        _JITTED[name] = f
    return f
