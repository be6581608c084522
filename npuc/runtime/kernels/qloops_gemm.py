"""Numba loop sources of the integer GEMM-based kernels: patch matrices (im2col, centering),
the requantizing epilogues, and the packed int16-pair / uint8-quad GEMM driving the
micro-kernels of :func:`npuc.runtime.kernels.qloops._make_mk`.

The loops are plain Python here; :func:`npuc.runtime.kernels.qloops.jit` compiles them (and
the helpers they call) on first use, so nothing in this module imports numba.
"""
from __future__ import annotations

import numpy as np

from .qloops_elementwise import _rq


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


def _mk(*args):  # replaced by the intrinsic of _make_mk(2) before any loop using it is compiled
    raise RuntimeError("qloops_gemm._mk is only callable from compiled loops")


def _mk4(*args):  # replaced by the intrinsic of _make_mk(4)
    raise RuntimeError("qloops_gemm._mk4 is only callable from compiled loops")
