"""Numba loop sources of the integer window kernels: the stride-phase window loop
(:func:`qwindow`, pools and small convolutions), the depthwise convolutions
(:func:`qdepthwise_vnni`, :func:`qdepthwise_cl`) and the global max.

The loops are plain Python here; :func:`npuc.runtime.kernels.qloops.jit` compiles them (and
the helpers they call) on first use, so nothing in this module imports numba.
"""
from __future__ import annotations

import numpy as np

from .qloops_elementwise import _rq


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


def _dwk(*args):  # replaced by the intrinsic of _make_dwk()
    raise RuntimeError("qloops_window._dwk is only callable from compiled loops")


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
