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


# --------------------------------------------------------------------------- windows
def qwindow_scratch(OH, OW, KH, KW, sh, sw, dh, dw):
    """Elements of ``buf`` and ``acc`` of :func:`qwindow` (as ``window_scratch`` of _numba)."""
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    L = (OH - 1) * wq + OW
    Lp = (L + 63) // 64 * 64
    return sh * sw * hq * wq + Lp, Lp


def qwindow(x, out, w, z, padv, buf, acc, N, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl, mode,
            bias, mult, rnd, shift, negm, negr, negn, has_neg, zp, lo, hi):
    """Sliding windows over integer NCHW ``x`` (flat), one channel at a time, into integer ``out``.

    As :func:`~npuc.runtime.kernels._numba.window2d`: per channel the padded input, minus the
    zero point ``z[0]`` (exact in ``buf``'s float type), is split by stride phase into
    ``sh·sw`` planes in ``buf`` (padding ``padv[0]``), so every window tap is one contiguous
    shifted read and the channel is one long vectorized loop per tap into ``acc``.

    ``mode`` 0: depthwise conv, ``acc = Σ w[c, t]·tap_t``, then ``requantize(acc + bias[c])``
    with the channel's multiplier (``neg*`` for negative accumulators when ``has_neg``);
    1: max (no requantization: ``out = acc``); 2: window sum then ``requantize`` (average pool
    with a constant count folded into the multiplier).
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
            for ri in range(sh):
                for rj in range(sw):
                    pb = (ri * sw + rj) * ps
                    off = rj - pl
                    lo_ = 0 if off >= 0 else (-off + sw - 1) // sw
                    hi_ = (W - off + sw - 1) // sw if W > off else 0
                    if hi_ > wq:
                        hi_ = wq
                    if lo_ > hi_:
                        lo_ = hi_
                    cnt = hi_ - lo_
                    for a in range(hq):
                        ih = a * sh + ri - pt
                        rb = max(pb + a * wq, 0)
                        if ih < 0 or ih >= H:
                            for t in range(wq):
                                buf[rb + t] = pv
                        else:
                            for t in range(lo_):
                                buf[rb + t] = pv
                            rl = max(rb + lo_, 0)
                            src = max((nc * H + ih) * W + lo_ * sw + off, 0)
                            if sw == 1:
                                for t in range(cnt):
                                    buf[rl + t] = x[src + t] - zv
                            else:
                                for t in range(cnt):
                                    buf[rl + t] = x[src + t * sw] - zv
                            re = max(rb + hi_, 0)
                            for t in range(wq - hi_):
                                buf[re + t] = pv
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
            if mode == 1:
                for oh in range(OH):
                    ab = max(oh * wq, 0)
                    ob = max((nc * OH + oh) * OW, 0)
                    for t in range(OW):
                        out[ob + t] = np.int64(acc[ab + t])
            else:
                b = bias[c]
                m = mult[c]
                rr = rnd[c]
                sft = shift[c]
                nm = negm[c]
                nr = negr[c]
                nn = negn[c]
                for oh in range(OH):
                    ab = max(oh * wq, 0)
                    ob = max((nc * OH + oh) * OW, 0)
                    if has_neg:
                        for t in range(OW):
                            v = np.int64(acc[ab + t]) + b
                            if v >= 0:
                                out[ob + t] = _rq(v, m, rr, sft, zp, lo, hi)
                            else:
                                out[ob + t] = _rq(v, nm, nr, nn, zp, lo, hi)
                    else:
                        for t in range(OW):
                            out[ob + t] = _rq(np.int64(acc[ab + t]) + b, m, rr, sft, zp, lo, hi)


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
            base = (o * C + c) * I
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


def dequantize_lin(x, out, O, C, I, s, z):
    """DequantizeLinear on flat ``(O, C, I)``: ``(x − z[c]) · s[c]`` in float64, stored to out."""
    for o in range(O):
        for c in range(C):
            sv = s[c]
            zv = z[c]
            base = (o * C + c) * I
            for i in range(I):
                out[base + i] = np.float64(np.int64(x[base + i]) - zv) * sv


# --------------------------------------------------------------------------- lazy jit
_SOURCES: dict[str, Callable] = {f.__name__: f for f in (
    center, qim2col, qepi_rows, qepi_cols, qepi_flat, qwindow, global_max_int, qadd_flat, qadd_4d, qmul_flat,
    qmul_4d, requant_rows, qmean, qprelu, qlut8, qlut16, quantize_lin, dequantize_lin)}
_HELPERS = ("_rq", "_tapoff")
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
        f = numba.njit(cache=True, nogil=True, error_model="numpy")(_SOURCES[name])
        _JITTED[name] = f
    return f
