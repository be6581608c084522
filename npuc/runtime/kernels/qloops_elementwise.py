"""Numba loop sources of the integer elementwise kernels: the reference requantization
:func:`_rq`, add / multiply / requantize / mean / PReLU / lookup tables, (de)quantization,
and their in-place variants.

The loops are plain Python here; :func:`npuc.runtime.kernels.qloops.jit` compiles them (and
the helpers they call) on first use, so nothing in this module imports numba.
"""
from __future__ import annotations

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
