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
"""
from __future__ import annotations

from typing import Callable

import numpy as np


# --------------------------------------------------------------------------- helpers
def _rq(v, m, r, n, zp, lo, hi):
    """The reference requantization of one int64 value."""
    y = ((v * m + r) >> n) + zp
    if y < lo:
        y = lo
    if y > hi:
        y = hi
    return y


# --------------------------------------------------------------------------- conv / gemm
def center(x, out, z):
    """``out[i] = x[i] − z[0]`` (integer codes to integer-valued float; ``z`` has out's dtype)."""
    zv = z[0]
    for i in range(x.shape[0]):
        out[i] = x[i] - zv


def qim2col(x, col, z, C, H, W, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW):
    """:func:`~npuc.runtime.kernels._numba.im2col` of ``x − z[0]`` (padding reads as 0, i.e.
    as the zero point): ``col[(c·KH + i)·KW + j, oh·OW + ow] = x_pad[c, oh·sh + i·dh, ow·sw + j·dw] − z``."""
    zv = z[0]
    zero = zv - zv
    P = OH * OW
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                r = (c * KH + i) * KW + j
                off = j * dw - pl
                lo = 0 if off >= 0 else (-off + sw - 1) // sw
                hi = (W - off + sw - 1) // sw if W > off else 0
                if hi > OW:
                    hi = OW
                if lo > hi:
                    lo = hi
                n = hi - lo
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    base = max(r * P + oh * OW, 0)
                    if ih < 0 or ih >= H:
                        for t in range(OW):
                            col[base + t] = zero
                    else:
                        for t in range(lo):
                            col[base + t] = zero
                        db = max(base + lo, 0)
                        src = max((c * H + ih) * W + lo * sw + off, 0)
                        if sw == 1:
                            for t in range(n):
                                col[db + t] = x[src + t] - zv
                        else:
                            for t in range(n):
                                col[db + t] = x[src + t * sw] - zv
                        eb = max(base + hi, 0)
                        for t in range(OW - hi):
                            col[eb + t] = zero


def qepi_rows(acc, J, M, P, bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi, out):
    """GEMM epilogue, one channel per row: ``acc`` holds ``J`` integer-valued float partial
    results ``(J, M, P)`` (flat); ``out[r, p] = requantize(Σ_j acc[j, r, p] + bias[r])`` with
    the channel's multiplier (``neg*`` for negative accumulators when ``has_neg``)."""
    MP = M * P
    for r in range(M):
        b = bias[r]
        m = mult[r]
        rr = rnd[r]
        n = shift[r]
        nm = negm[r]
        nr = negr[r]
        nn = negn[r]
        base = r * P
        if J == 1:
            if has_neg:
                for p in range(P):
                    v = np.int64(acc[base + p]) + b
                    if v >= 0:
                        out[base + p] = _rq(v, m, rr, n, zp, lo, hi)
                    else:
                        out[base + p] = _rq(v, nm, nr, nn, zp, lo, hi)
            else:
                for p in range(P):
                    v = np.int64(acc[base + p]) + b
                    out[base + p] = _rq(v, m, rr, n, zp, lo, hi)
        else:
            for p in range(P):
                v = np.int64(acc[base + p]) + b
                for j in range(1, J):
                    v += np.int64(acc[j * MP + base + p])
                if has_neg and v < 0:
                    out[base + p] = _rq(v, nm, nr, nn, zp, lo, hi)
                else:
                    out[base + p] = _rq(v, m, rr, n, zp, lo, hi)


def qepi_cols(acc, J, R, N, bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi, out):
    """Like :func:`qepi_rows` with one channel per column of ``(R, N)``."""
    RN = R * N
    for i in range(R):
        base = i * N
        for c in range(N):
            v = np.int64(acc[base + c]) + bias[c]
            for j in range(1, J):
                v += np.int64(acc[j * RN + base + c])
            if has_neg and v < 0:
                out[base + c] = _rq(v, negm[c], negr[c], negn[c], zp, lo, hi)
            else:
                out[base + c] = _rq(v, mult[c], rnd[c], shift[c], zp, lo, hi)


def qepi_flat(acc, J, L, m, r, n, zp, lo, hi, out):
    """Per-tensor epilogue of ``J`` partial results of length ``L`` (QMatMul)."""
    for i in range(L):
        v = np.int64(acc[i])
        for j in range(1, J):
            v += np.int64(acc[j * L + i])
        out[i] = _rq(v, m, r, n, zp, lo, hi)


# --------------------------------------------------------------------------- packed integer GEMM
# Two packed layouts of the patch matrix and the weights, both "G codes of consecutive k in
# one int32":
#   pairs (G = 2): int16 x − x_zp and w − w_zp; dot2 = lo·lo + hi·hi (pmaddwd / vpdpwssd);
#   quads (G = 4): uint8 codes x (int8 + 128) and int8 w − w_zp; dot4 = Σ of 4 u8·s8 products
#                  (vpdpbusd, AVX-512 VNNI); the zero point enters as a per-channel bias
#                  correction −x_zp·Σ_k w'.
# The reduction index is ordered (kernel row, kernel column, channel) with the channels padded
# to a multiple of G, so an int32 holds G consecutive channels of one tap and the patch
# matrix rows are shifted copies of the repacked input planes (:func:`qim2col_planes`).

#: micro-kernel block: MR weight rows × NRW pixels (NRW = 16·NR, NR vectors of 16 int32 lanes)
MR, NR = 6, 4
NRW = 16 * NR


def center_pairs(x, col, z, C, P, Pp):
    """``x (C, P) − z`` as int16 in the pair layout ``col[(c >> 1)·Pp + p, c & 1]`` (flat int16,
    rows of ``2·Pp``): channels 2k and 2k+1 of a pixel are one int32."""
    for c2 in range(C // 2):
        a = max(2 * c2 * P, 0)
        b = a + P
        o = max(2 * c2 * Pp, 0)
        for p in range(P):
            col[o + 2 * p] = x[a + p] - z
            col[o + 2 * p + 1] = x[b + p] - z
    if C % 2:
        a = max((C - 1) * P, 0)
        o = max((C // 2) * 2 * Pp, 0)
        for p in range(P):
            col[o + 2 * p] = x[a + p] - z
            col[o + 2 * p + 1] = 0


def center_quads(x, col, z, C, P, Pp):
    """``x (C, P) − z`` (z = 0 for uint8 codes, −128 for int8: uint8 codes) in the quad layout
    ``col[(c >> 2)·Pp + p, c & 3]`` (flat uint8, rows of ``4·Pp``); missing channels of the
    last quad are 0 (their weights are 0)."""
    C4 = (C + 3) // 4
    for c4 in range(C4):
        o = max(4 * c4 * Pp, 0)
        if 4 * c4 + 3 < C:
            a = max(4 * c4 * P, 0)
            b = a + P
            d = b + P
            e = d + P
            for p in range(P):
                col[o + 4 * p] = x[a + p] - z
                col[o + 4 * p + 1] = x[b + p] - z
                col[o + 4 * p + 2] = x[d + p] - z
                col[o + 4 * p + 3] = x[e + p] - z
        else:
            for j in range(4):
                c = 4 * c4 + j
                a = max(c * P, 0)
                if c < C:
                    for p in range(P):
                        col[o + 4 * p + j] = x[a + p] - z
                else:
                    for p in range(P):
                        col[o + 4 * p + j] = 0


def qim2col_planes(x4, col, padv, C4, H, W, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, Pp):
    """The packed patch matrix from ``x4 (C4, H, W)``, the input with 4 (quads) or 2 (pairs)
    channels per int32 (:func:`center_quads` / :func:`center_pairs` with ``Pp = H·W``): the
    reduction index is ordered (i, j, channel), so row ``(i·KW + j)·C4 + c4`` of
    ``col (K4, Pp)`` is plane ``c4`` of ``x4`` shifted by tap (i, j) — an int32 copy per output
    row, padding ``padv`` (the zero point in every code of the int32)."""
    for i in range(KH):
        for j in range(KW):
            off = j * dw - pl
            lo = 0 if off >= 0 else (-off + sw - 1) // sw
            hi = (W - off + sw - 1) // sw if W > off else 0
            if hi > OW:
                hi = OW
            if lo > hi:
                lo = hi
            n = hi - lo
            for c4 in range(C4):
                rb = max(((i * KW + j) * C4 + c4) * Pp, 0)
                for oh in range(OH):
                    ih = oh * sh - pt + i * dh
                    base = max(rb + oh * OW, 0)
                    if ih < 0 or ih >= H:
                        for t in range(OW):
                            col[base + t] = padv
                    else:
                        for t in range(lo):
                            col[base + t] = padv
                        db = max(base + lo, 0)
                        src = max((c4 * H + ih) * W + lo * sw + off, 0)
                        if sw == 1:
                            for t in range(n):
                                col[db + t] = x4[src + t]
                        elif sw == 2:
                            for t in range(n):
                                col[db + t] = x4[src + 2 * t]
                        else:
                            for t in range(n):
                                col[db + t] = x4[src + t * sw]
                        eb = max(base + hi, 0)
                        for t in range(OW - hi):
                            col[eb + t] = padv


def _tile_epilogue(ctile, PT, ps, valid, Mg, P, out, ooff, c0, bias, mult, rnd, shift, negm, negr, negn, has_neg,
                   zp, lo, hi):
    """Requantize the ``valid`` columns of the int32 tile ``ctile (Mgp, PT)`` into output rows
    ``c0 + r`` (columns from ``ps``) of the flat ``out``."""
    for r in range(Mg):
        ch = c0 + r
        b = bias[ch]
        m = mult[ch]
        rr = rnd[ch]
        n = shift[ch]
        tb = max(r * PT, 0)
        ob = max(ooff + r * P + ps, 0)
        if has_neg:
            nm = negm[ch]
            nr = negr[ch]
            nn = negn[ch]
            for p in range(valid):
                v = np.int64(ctile[tb + p]) + b
                if v >= 0:
                    out[ob + p] = _rq(v, m, rr, n, zp, lo, hi)
                else:
                    out[ob + p] = _rq(v, nm, nr, nn, zp, lo, hi)
        else:
            for p in range(valid):
                out[ob + p] = _rq(np.int64(ctile[tb + p]) + b, m, rr, n, zp, lo, hi)


def qgemm_pairs(w2, woff, K2, col2, Pp, PT, ctile, Mg, Mgp, P, out, ooff, c0, bias, mult, rnd, shift,
                negm, negr, negn, has_neg, zp, lo, hi):
    """``out[c0 + r, p] = requantize(Σ_k w[r, k]·col[k, p] + bias)`` for one group: int16 pairs
    (``w2`` rows of K2 int32 from ``woff``; ``col2 (K2, Pp)`` int32), int32 accumulators from the
    :func:`_mk` micro-kernel (``vpdpwssd`` / ``pmaddwd``), one pixel tile of ``PT`` columns at
    a time into ``ctile (Mgp, PT)``, requantized while the tile is in cache."""
    for ps in range(0, Pp, PT):
        pe = min(ps + PT, Pp)
        for m0 in range(0, Mgp, MR):
            for p0 in range(ps, pe, NRW):
                _mk(w2, woff + m0 * K2, K2, col2, p0, Pp, K2, ctile, m0 * PT + p0 - ps, PT)
        _tile_epilogue(ctile, PT, ps, min(pe, P) - ps, Mg, P, out, ooff, c0, bias, mult, rnd, shift, negm, negr,
                       negn, has_neg, zp, lo, hi)


def qgemm_quads(w4, woff, K4, col4, Pp, PT, ctile, Mg, Mgp, P, out, ooff, c0, bias, mult, rnd, shift,
                negm, negr, negn, has_neg, zp, lo, hi):
    """:func:`qgemm_pairs` on the quad layout with the :func:`_mk4` micro-kernel (``vpdpbusd``)."""
    for ps in range(0, Pp, PT):
        pe = min(ps + PT, Pp)
        for m0 in range(0, Mgp, MR):
            for p0 in range(ps, pe, NRW):
                _mk4(w4, woff + m0 * K4, K4, col4, p0, Pp, K4, ctile, m0 * PT + p0 - ps, PT)
        _tile_epilogue(ctile, PT, ps, min(pe, P) - ps, Mg, P, out, ooff, c0, bias, mult, rnd, shift, negm, negr,
                       negn, has_neg, zp, lo, hi)


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


def _mk(*args):  # replaced by the intrinsic of _make_mk(2) before any loop using it is compiled
    raise RuntimeError("qloops._mk is only callable from compiled loops")


def _mk4(*args):  # replaced by the intrinsic of _make_mk(4)
    raise RuntimeError("qloops._mk4 is only callable from compiled loops")


# --------------------------------------------------------------------------- windows
def qwindow_scratch(OH, OW, KH, KW, sh, sw, dh, dw):
    """Elements of ``buf`` and ``acc`` of :func:`qwindow` (as ``window_scratch`` of _numba)."""
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    L = (OH - 1) * wq + OW
    Lp = (L + 63) // 64 * 64
    return sh * sw * hq * wq + Lp, Lp


def _qfill(x, buf, nc, H, W, sh, sw, pt, pl, hq, wq, ps, pv, zv):
    """Space to depth of channel ``nc`` of flat ``x`` minus ``zv``, padded with ``pv``:
    ``buf[(ri·sw + rj)·ps + a·wq + b] = x_pad[a·sh + ri, b·sw + rj] − zv`` (as window2d);
    column stride 2 de-interleaves both column phases of a row in one loop."""
    if sw == 2:
        lo = (pl + 1) // 2
        hi = (W + pl) // 2
        if hi > wq:
            hi = wq
        if lo > hi:
            lo = hi
        for ri in range(sh):
            p0 = (ri * 2) * ps
            p1 = p0 + ps
            for a in range(hq):
                ih = a * sh + ri - pt
                r0 = max(p0 + a * wq, 0)
                r1 = max(p1 + a * wq, 0)
                if ih < 0 or ih >= H:
                    for t in range(wq):
                        buf[r0 + t] = pv
                        buf[r1 + t] = pv
                    continue
                row = max((nc * H + ih) * W, 0)
                for b in range(lo):
                    iw = 2 * b - pl
                    buf[r0 + b] = x[row + iw] - zv if iw >= 0 and iw < W else pv
                    iw += 1
                    buf[r1 + b] = x[row + iw] - zv if iw >= 0 and iw < W else pv
                src = max(row + 2 * lo - pl, 0)
                d0 = max(r0 + lo, 0)
                d1 = max(r1 + lo, 0)
                for t in range(hi - lo):
                    buf[d0 + t] = x[src + 2 * t] - zv
                    buf[d1 + t] = x[src + 2 * t + 1] - zv
                for b in range(hi, wq):
                    iw = 2 * b - pl
                    buf[r0 + b] = x[row + iw] - zv if iw >= 0 and iw < W else pv
                    iw += 1
                    buf[r1 + b] = x[row + iw] - zv if iw >= 0 and iw < W else pv
        return
    for ri in range(sh):
        for rj in range(sw):
            pb = (ri * sw + rj) * ps
            off = rj - pl
            lo = 0 if off >= 0 else (-off + sw - 1) // sw
            hi = (W - off + sw - 1) // sw if W > off else 0
            if hi > wq:
                hi = wq
            if lo > hi:
                lo = hi
            cnt = hi - lo
            for a in range(hq):
                ih = a * sh + ri - pt
                rb = max(pb + a * wq, 0)
                if ih < 0 or ih >= H:
                    for t in range(wq):
                        buf[rb + t] = pv
                else:
                    for t in range(lo):
                        buf[rb + t] = pv
                    rl = max(rb + lo, 0)
                    src = max((nc * H + ih) * W + lo * sw + off, 0)
                    if sw == 1:
                        for t in range(cnt):
                            buf[rl + t] = x[src + t] - zv
                    else:
                        for t in range(cnt):
                            buf[rl + t] = x[src + t * sw] - zv
                    re = max(rb + hi, 0)
                    for t in range(wq - hi):
                        buf[re + t] = pv


def qwindow(x, out, w, z, padv, buf, acc, stage, N, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl, mode,
            bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi):
    """Sliding windows over integer NCHW ``x`` (flat), one channel at a time, into integer ``out``.

    As :func:`~npuc.runtime.kernels._numba.window2d`: per channel the padded input, minus the
    zero point ``z[0]`` (exact in ``buf``'s float type), is split by stride phase into
    ``sh·sw`` planes in ``buf`` (padding ``padv[0]``), so every window tap is one contiguous
    shifted read and the channel is one long vectorized loop per tap into ``acc``.

    ``mode`` 0: depthwise conv, ``acc = Σ w[c, t]·tap_t``, then ``requantize(acc + bias[c])``
    with the channel's multiplier (``neg*`` for negative accumulators when ``has_neg``);
    1: max (no requantization: ``out = acc``); 2: window sum then ``requantize`` (average pool
    with a constant count folded into the multiplier). ``stage`` (out's dtype, as long as
    ``acc``) holds a channel's integer results before the valid columns are copied out.
    """
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    ps = hq * wq
    L = (OH - 1) * wq + OW
    L = (L + 63) // 64 * 64
    pv = padv[0]
    zv = z[0]
    for i in range(sh * sw * ps, buf.shape[0]):
        buf[i] = pv
    for n in range(N):
        for c in range(C):
            nc = n * C + c
            _qfill(x, buf, nc, H, W, sh, sw, pt, pl, hq, wq, ps, pv, zv)
            if KH == 3 and KW == 3 and mode != 2:
                o0 = _tapoff(0, 0, sh, sw, dh, dw, ps, wq)
                o1 = _tapoff(0, 1, sh, sw, dh, dw, ps, wq)
                o2 = _tapoff(0, 2, sh, sw, dh, dw, ps, wq)
                o3 = _tapoff(1, 0, sh, sw, dh, dw, ps, wq)
                o4 = _tapoff(1, 1, sh, sw, dh, dw, ps, wq)
                o5 = _tapoff(1, 2, sh, sw, dh, dw, ps, wq)
                o6 = _tapoff(2, 0, sh, sw, dh, dw, ps, wq)
                o7 = _tapoff(2, 1, sh, sw, dh, dw, ps, wq)
                o8 = _tapoff(2, 2, sh, sw, dh, dw, ps, wq)
                if mode == 0:
                    w0 = w[c, 0]
                    w1 = w[c, 1]
                    w2 = w[c, 2]
                    w3 = w[c, 3]
                    w4 = w[c, 4]
                    w5 = w[c, 5]
                    w6 = w[c, 6]
                    w7 = w[c, 7]
                    w8 = w[c, 8]
                    for q in range(L):
                        acc[q] = (w0 * buf[o0 + q] + w1 * buf[o1 + q] + w2 * buf[o2 + q]
                                  + w3 * buf[o3 + q] + w4 * buf[o4 + q] + w5 * buf[o5 + q]
                                  + w6 * buf[o6 + q] + w7 * buf[o7 + q] + w8 * buf[o8 + q])
                else:
                    for q in range(L):
                        m_ = buf[o0 + q]
                        v = buf[o1 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o2 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o3 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o4 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o5 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o6 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o7 + q]
                        m_ = v if v > m_ else m_
                        v = buf[o8 + q]
                        acc[q] = v if v > m_ else m_
            else:
                for t in range(KH * KW):
                    ot = _tapoff(t // KW, t % KW, sh, sw, dh, dw, ps, wq)
                    if mode == 0:
                        wv = w[c, t]
                        if t == 0:
                            for q in range(L):
                                acc[q] = wv * buf[ot + q]
                        else:
                            for q in range(L):
                                acc[q] += wv * buf[ot + q]
                    elif mode == 1:
                        if t == 0:
                            for q in range(L):
                                acc[q] = buf[ot + q]
                        else:
                            for q in range(L):
                                v = buf[ot + q]
                                m_ = acc[q]
                                acc[q] = v if v > m_ else m_
                    else:
                        if t == 0:
                            for q in range(L):
                                acc[q] = buf[ot + q]
                        else:
                            for q in range(L):
                                acc[q] += buf[ot + q]
            # requantize the whole channel (long vectorized loop, junk columns included) into
            # ``stage``, then copy the valid columns of each output row
            if mode == 1:
                for q in range(L):
                    stage[q] = np.int64(acc[q])
            else:
                b = bias[c]
                m = mult[c]
                rr = rnd[c]
                sft = shift[c]
                if has_neg:
                    nm = negm[c]
                    nr = negr[c]
                    nn = negn[c]
                    for q in range(L):
                        v = np.int64(acc[q]) + b
                        if v >= 0:
                            stage[q] = _rq(v, m, rr, sft, zp, lo, hi)
                        else:
                            stage[q] = _rq(v, nm, nr, nn, zp, lo, hi)
                else:
                    for q in range(L):
                        stage[q] = _rq(np.int64(acc[q]) + b, m, rr, sft, zp, lo, hi)
            for oh in range(OH):
                ab = max(oh * wq, 0)
                ob = max((nc * OH + oh) * OW, 0)
                for t in range(OW):
                    out[ob + t] = stage[ab + t]


def qdepthwise_vnni(x, out, plane, acc, stage, wq, z, zu, N, C, H, W, OH, OW, KH, ntq, s, pt, pl, Wp, Hp, Wo,
                    nrows, gpr, bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi):
    """Depthwise conv (stride ``s`` in 1, 2, 4 both ways, no dilation) on uint8 codes with
    ``vpdpbusd``: per channel, the input (``x − z`` as uint8 codes, the zero point ``zu`` as
    padding) is laid out as a byte plane ``(Hp, Wp)``; output ``(oh, ow)`` reads, for kernel
    row ``i`` and tap quad ``t``, the 4 bytes at ``(oh·s + i)·Wp + s·ow + 4t`` — one int32 —
    against the weight quad ``wq[c, i·ntq + t]`` (int8 taps ``4t .. 4t+3`` of the row,
    zero-padded). :func:`_dwk` does ``16·(4/s)`` consecutive outputs of a row per call, in
    registers, into ``acc`` rows of pitch ``Wo`` (stride 1: one flat row over the whole plane,
    ``Wo = Wp``, columns ``ow ≥ OW`` junk; else ``nrows = OH`` rows of ``gpr`` calls). Then
    ``acc + bias[c]`` (the bias already holds ``−zu·Σ w``) is requantized into ``stage`` and
    the valid columns are copied to ``out``."""
    L = OH * Wo
    for n in range(N):
        for c in range(C):
            nc = n * C + c
            # the byte plane
            for r in range(Hp):
                ih = r - pt
                rb = max(r * Wp, 0)
                if ih < 0 or ih >= H:
                    for t in range(Wp):
                        plane[rb + t] = zu
                else:
                    src = max((nc * H + ih) * W, 0)
                    lo_ = min(pl, Wp)
                    for t in range(lo_):
                        plane[rb + t] = zu
                    cnt = min(W, Wp - lo_)
                    d = max(rb + lo_, 0)
                    for t in range(cnt):
                        plane[d + t] = x[src + t] - z
                    e = max(rb + lo_ + cnt, 0)
                    for t in range(Wp - lo_ - cnt):
                        plane[e + t] = zu
            wb = max(c * KH * ntq, 0)
            gw = 64 // s
            for orow in range(nrows):
                pb = orow * s * Wp
                ab = orow * Wo
                for g in range(gpr):
                    _dwk(plane, acc, wq, wb, pb, ab, g * gw, s, Wp, KH, ntq)
            b = bias[c]
            m = mult[c]
            rr = rnd[c]
            sft = shift[c]
            if has_neg:
                nm = negm[c]
                nr = negr[c]
                nn = negn[c]
                for q in range(L):
                    v = np.int64(acc[q]) + b
                    if v >= 0:
                        stage[q] = _rq(v, m, rr, sft, zp, lo, hi)
                    else:
                        stage[q] = _rq(v, nm, nr, nn, zp, lo, hi)
            else:
                for q in range(L):
                    stage[q] = _rq(np.int64(acc[q]) + b, m, rr, sft, zp, lo, hi)
            for oh in range(OH):
                ab = max(oh * Wo, 0)
                ob = max((nc * OH + oh) * OW, 0)
                for t in range(OW):
                    out[ob + t] = stage[ab + t]


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


def _dwk(*args):  # replaced by the intrinsic of _make_dwk()
    raise RuntimeError("qloops._dwk is only callable from compiled loops")


def qdepthwise_cl(x, out, w, z, xt, ot, stage, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl,
                  bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi):
    """Depthwise conv of one image on a small feature map, vectorized across channels:
    ``xt (H·W, C) = x − z`` channels-last, each output pixel accumulates
    ``w[tap, :] · xt[pixel, :]`` over its in-bounds taps (padding is the zero point: skipped)
    into ``ot (OH·OW, C)``, requantized per channel into ``stage (OH·OW, C)`` and transposed
    into ``out (C, OH, OW)`` (all flat)."""
    HW = H * W
    zv = z[0]
    for c in range(C):
        xb = max(c * HW, 0)
        for p in range(HW):
            xt[p * C + c] = x[xb + p] - zv
    zero = zv - zv
    for oh in range(OH):
        for ow in range(OW):
            ob = max((oh * OW + ow) * C, 0)
            for c in range(C):
                ot[ob + c] = zero
            for i in range(KH):
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= H:
                    continue
                for j in range(KW):
                    iw = ow * sw - pl + j * dw
                    if iw < 0 or iw >= W:
                        continue
                    xb = max((ih * W + iw) * C, 0)
                    wb = max((i * KW + j) * C, 0)
                    for c in range(C):
                        ot[ob + c] += w[wb + c] * xt[xb + c]
    P = OH * OW
    for p in range(P):
        ob = max(p * C, 0)
        if has_neg:
            for c in range(C):
                v = np.int64(ot[ob + c]) + bias[c]
                if v >= 0:
                    stage[ob + c] = _rq(v, mult[c], rnd[c], shift[c], zp, lo, hi)
                else:
                    stage[ob + c] = _rq(v, negm[c], negr[c], negn[c], zp, lo, hi)
        else:
            for c in range(C):
                stage[ob + c] = _rq(np.int64(ot[ob + c]) + bias[c], mult[c], rnd[c], shift[c], zp, lo, hi)
    for c in range(C):
        obase = max(c * P, 0)
        for p in range(P):
            out[obase + p] = stage[p * C + c]


def _tapoff(i, j, sh, sw, dh, dw, ps, wq):
    p = ((i * dh) % sh) * sw + (j * dw) % sw
    return max(p * ps + ((i * dh) // sh) * wq + (j * dw) // sw, 0)


def global_max_int(x, out, R, P):
    """``out[r] = max(x[r·P:(r+1)·P])`` on flat integer arrays."""
    for r in range(R):
        base = r * P
        m = x[base]
        for p in range(1, P):
            v = x[base + p]
            m = v if v > m else m
        out[r] = m


# --------------------------------------------------------------------------- elementwise
def qadd_flat(a, b, out, az, am, bz, bm, r, n, zp, lo, hi):
    """QAdd on same-shape flat arrays: ``clamp(zp + (((a−az)·am + (b−bz)·bm + r) >> n))``."""
    for i in range(out.shape[0]):
        s = (np.int64(a[i]) - az) * am + (np.int64(b[i]) - bz) * bm
        y = ((s + r) >> n) + zp
        y = lo if y < lo else y
        out[i] = hi if y > hi else y


def qadd_4d(a, b, out, az, am, bz, bm, r, n, zp, lo, hi):
    """QAdd with numpy broadcasting: ``a``, ``b`` are 4-D views broadcast to ``out``'s shape."""
    d0, d1, d2, d3 = out.shape
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                for i3 in range(d3):
                    s = (np.int64(a[i0, i1, i2, i3]) - az) * am + (np.int64(b[i0, i1, i2, i3]) - bz) * bm
                    y = ((s + r) >> n) + zp
                    y = lo if y < lo else y
                    out[i0, i1, i2, i3] = hi if y > hi else y


def qmul_flat(a, b, out, az, bz, m, r, n, zp, lo, hi):
    for i in range(out.shape[0]):
        out[i] = _rq((np.int64(a[i]) - az) * (np.int64(b[i]) - bz), m, r, n, zp, lo, hi)


def qmul_4d(a, b, out, az, bz, m, r, n, zp, lo, hi):
    d0, d1, d2, d3 = out.shape
    for i0 in range(d0):
        for i1 in range(d1):
            for i2 in range(d2):
                for i3 in range(d3):
                    out[i0, i1, i2, i3] = _rq((np.int64(a[i0, i1, i2, i3]) - az) * (np.int64(b[i0, i1, i2, i3]) - bz),
                                              m, r, n, zp, lo, hi)


def requant_rows(x, out, R, L, LT, off, xz, m, r, n, zp, lo, hi):
    """``out[i, off + j] = requantize(x[i, j] − xz)`` for ``x (R, L)``, ``out (R, LT)`` (flat):
    Requantize (R = 1) and each input of a QConcat into its slice of the output."""
    for i in range(R):
        xb = i * L
        ob = i * LT + off
        for j in range(L):
            out[ob + j] = _rq(np.int64(x[xb + j]) - xz, m, r, n, zp, lo, hi)


def qmean(x, out, acc, O, R, I, xz, m, r, n, zp, lo, hi):
    """``out[o, i] = requantize(Σ_k (x[o, k, i] − xz))`` for flat ``x (O, R, I)``; ``acc`` is
    int64 scratch of length I (used when I > 1)."""
    corr = np.int64(R) * xz
    for o in range(O):
        if I == 1:
            s = np.int64(0)
            base = o * R
            for k in range(R):
                s += np.int64(x[base + k])
            out[o] = _rq(s - corr, m, r, n, zp, lo, hi)
        else:
            for i in range(I):
                acc[i] = 0
            for k in range(R):
                base = (o * R + k) * I
                for i in range(I):
                    acc[i] += np.int64(x[base + i])
            for i in range(I):
                out[o * I + i] = _rq(acc[i] - corr, m, r, n, zp, lo, hi)


def qprelu(x, out, O, C, I, xz, pm, pr, pn, negm, negr, negn, zp, lo, hi):
    """QPRelu on flat ``(O, C, I)``: ``d = x − xz``; ``requantize(d, pos)`` for d ≥ 0, else
    with channel c's negative multiplier (``negm`` of length C, or 1 for a scalar slope)."""
    nc = negm.shape[0]
    for o in range(O):
        for c in range(C):
            k = c % nc
            nm = negm[k]
            nr = negr[k]
            nn = negn[k]
            base = max((o * C + c) * I, 0)
            for i in range(I):
                d = np.int64(x[base + i]) - xz
                if d >= 0:
                    out[base + i] = _rq(d, pm, pr, pn, zp, lo, hi)
                else:
                    out[base + i] = _rq(d, nm, nr, nn, zp, lo, hi)


def qlut8(x, out, table, qmin):
    for i in range(x.shape[0]):
        out[i] = table[np.int64(x[i]) - qmin]


def qlut16(x, out, table, qmin):
    last = table.shape[0] - 1
    for i in range(x.shape[0]):
        u = np.int64(x[i]) - qmin
        k = u >> 7
        f = u & 127
        lo = table[k]
        k1 = k + 1 if k + 1 < last else last
        hi = table[k1]
        out[i] = lo + (((hi - lo) * f + 64) >> 7)


def quantize_lin(x, out, O, C, I, s, z, lo, hi):
    """QuantizeLinear on flat ``(O, C, I)``: ``clamp(rint(x / s[c]) + z[c])`` with the float32
    division and round-half-even of the reference, then the float64 add; NaN gives 0."""
    for o in range(O):
        for c in range(C):
            sv = s[c]
            zv = z[c]
            base = (o * C + c) * I
            for i in range(I):
                q = np.float64(np.rint(x[base + i] / sv)) + zv
                if q < lo:
                    q = lo
                if q > hi:
                    q = hi
                if q != q:
                    q = 0.0
                out[base + i] = np.int64(q)


def quantize_lin16(x, out, O, C, I, s, z, lo, hi):
    """:func:`quantize_lin` for outputs of at most 16 bits, in float32 (vectorizes): the add of
    the (small integer) zero point is exact below 2^24, and any sum at or beyond 2^24 is
    clamped to the same bound as the reference's float64 sum; ``z``, ``lo``, ``hi`` float32."""
    zero = lo - lo
    for o in range(O):
        for c in range(C):
            sv = s[c]
            zv = z[c]
            base = max((o * C + c) * I, 0)
            for i in range(I):
                q = np.rint(x[base + i] / sv) + zv
                q = lo if q < lo else q
                q = hi if q > hi else q
                q = q if q == q else zero
                out[base + i] = np.int32(q)


def dequantize_lin(x, out, O, C, I, s, z):
    """DequantizeLinear on flat ``(O, C, I)``: ``(x − z[c]) · s[c]`` in float64, stored to out."""
    for o in range(O):
        for c in range(C):
            sv = s[c]
            zv = z[c]
            base = (o * C + c) * I
            for i in range(I):
                out[base + i] = np.float64(np.int64(x[base + i]) - zv) * sv


# In-place variants (the output is the first input's buffer): with two array arguments that
# overlap, LLVM's runtime alias check fails and the scalar loop runs; these read and write one
# array, which vectorizes.
def qadd_flat_ip(a, b, az, am, bz, bm, r, n, zp, lo, hi):
    for i in range(a.shape[0]):
        s = (np.int64(a[i]) - az) * am + (np.int64(b[i]) - bz) * bm
        y = ((s + r) >> n) + zp
        y = lo if y < lo else y
        a[i] = hi if y > hi else y


def qmul_flat_ip(a, b, az, bz, m, r, n, zp, lo, hi):
    for i in range(a.shape[0]):
        a[i] = _rq((np.int64(a[i]) - az) * (np.int64(b[i]) - bz), m, r, n, zp, lo, hi)


def requant_ip(x, xz, m, r, n, zp, lo, hi):
    for i in range(x.shape[0]):
        x[i] = _rq(np.int64(x[i]) - xz, m, r, n, zp, lo, hi)


def qprelu_ip(x, O, C, I, xz, pm, pr, pn, negm, negr, negn, zp, lo, hi):
    nc = negm.shape[0]
    for o in range(O):
        for c in range(C):
            k = c % nc
            nm = negm[k]
            nr = negr[k]
            nn = negn[k]
            base = max((o * C + c) * I, 0)
            for i in range(I):
                d = np.int64(x[base + i]) - xz
                if d >= 0:
                    x[base + i] = _rq(d, pm, pr, pn, zp, lo, hi)
                else:
                    x[base + i] = _rq(d, nm, nr, nn, zp, lo, hi)


def qlut8_ip(x, table, qmin):
    for i in range(x.shape[0]):
        x[i] = table[np.int64(x[i]) - qmin]


def qlut16_ip(x, table, qmin):
    last = table.shape[0] - 1
    for i in range(x.shape[0]):
        u = np.int64(x[i]) - qmin
        k = u >> 7
        f = u & 127
        lo = table[k]
        k1 = k + 1 if k + 1 < last else last
        hi = table[k1]
        x[i] = lo + (((hi - lo) * f + 64) >> 7)


# --------------------------------------------------------------------------- lazy jit
_SOURCES: dict[str, Callable] = {f.__name__: f for f in (
    center, qim2col, center_pairs, qgemm_pairs, center_quads, qim2col_planes, qgemm_quads,
    qdepthwise_cl, qdepthwise_vnni, qepi_rows, qepi_cols, qepi_flat, qwindow, global_max_int, qadd_flat, qadd_4d, qmul_flat,
    qmul_4d, requant_rows, qmean, qprelu, qlut8, qlut16, quantize_lin, quantize_lin16, dequantize_lin, qadd_flat_ip,
    qmul_flat_ip, requant_ip, qprelu_ip, qlut8_ip, qlut16_ip)}
_HELPERS = ("_rq", "_tapoff", "_qfill", "_tile_epilogue")
_JITTED: dict[str, Callable] = {}


def jit(name: str) -> Callable:
    """The compiled loop ``name`` (compiled, or loaded from numba's disk cache, on first use)."""
    f = _JITTED.get(name)
    if f is None:
        import numba

        g = globals()
        for h in _HELPERS:
            if not hasattr(g[h], "py_func"):
                g[h] = numba.njit(cache=True, nogil=True, inline="always")(g[h])
        if not hasattr(g["_mk"], "_defn"):
            g["_mk"] = _make_mk(2)
            g["_mk4"] = _make_mk(4)
            g["_dwk"] = _make_dwk()
        f = numba.njit(cache=True, nogil=True, error_model="numpy")(_SOURCES[name])
        _JITTED[name] = f
    return f
