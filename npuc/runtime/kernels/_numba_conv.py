"""Numba loops of the float convolutions and windowed ops: im2col (plain and space-to-depth),
the stride-phase window loop (pools, small and depthwise convolutions), channels-last
depthwise, and the Winograd input / output transforms.

Plain Python; :func:`npuc.runtime.kernels._numba.jit` compiles a loop (and the helpers it
calls) on first use, with the conventions described in :mod:`npuc.runtime.kernels._numba`.
"""
from __future__ import annotations

import math

import numpy as np

from ._numba_act import act_row


def im2col(x, col, C, H, W, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW):
    """``col[(c·KH + i)·KW + j, oh·OW + ow] = x_pad[c, oh·sh + i·dh, ow·sw + j·dw]`` for one
    image ``x (C, H, W)``; padding reads as 0. ``x`` and ``col`` are passed flat (1-D), so
    every row segment is a plain contiguous copy."""
    z = np.float32(0)
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
                            col[base + t] = z
                    else:
                        for t in range(lo):
                            col[base + t] = z
                        db = max(base + lo, 0)
                        src = max((c * H + ih) * W + lo * sw + off, 0)
                        if sw == 1:
                            for t in range(n):
                                col[db + t] = x[src + t]
                        elif sw == 2:
                            for t in range(n):
                                col[db + t] = x[src + 2 * t]
                        else:
                            for t in range(n):
                                col[db + t] = x[src + t * sw]
                        eb = max(base + hi, 0)
                        for t in range(OW - hi):
                            col[eb + t] = z


def im2col_s2d(x, col, buf, C, H, W, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW):
    """:func:`im2col` for strided convs: each channel is first split by stride phase into
    padded planes (:func:`_s2d_fill`, ``buf`` sized by :func:`window_scratch`), so every
    row segment of ``col`` is a contiguous copy from one plane."""
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    ps = hq * wq
    P = OH * OW
    z = np.float32(0)
    for c in range(C):
        _s2d_fill(x, buf, c, H, W, sh, sw, pt, pl, hq, wq, ps, z)
        for i in range(KH):
            for j in range(KW):
                r = (c * KH + i) * KW + j
                src0 = _tap(i, j, sh, sw, dh, dw, ps, wq)
                for oh in range(OH):
                    dst = max(r * P + oh * OW, 0)
                    src = max(src0 + oh * wq, 0)
                    for t in range(OW):
                        col[dst + t] = buf[src + t]


_BLOCK = 64   # the long loops run a multiple of this many iterations (LLVM's VF × unroll)


def window_scratch(OH, OW, KH, KW, sh, sw, dh, dw):
    """Float32 elements of the two scratch arrays ``buf`` and ``acc`` of :func:`window2d`."""
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    L = (OH - 1) * wq + OW
    Lp = (L + _BLOCK - 1) // _BLOCK * _BLOCK
    return sh * sw * hq * wq + Lp, Lp


def _tap(i, j, sh, sw, dh, dw, ps, wq):
    """Offset in ``buf`` of tap (i, j) for output 0 (see :func:`window2d`)."""
    p = ((i * dh) % sh) * sw + (j * dw) % sw
    return max(p * ps + ((i * dh) // sh) * wq + (j * dw) // sw, 0)


def _fill_s2(x, buf, nc, H, W, sh, pt, pl, hq, wq, ps, padv):
    """The space-to-depth fill of :func:`window2d` for column stride 2: both column phases
    of an input row in one loop (a de-interleave the vectorizer handles well)."""
    # columns b where both 2b - pl and 2b + 1 - pl lie inside the input row
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
                    buf[r0 + t] = padv
                    buf[r1 + t] = padv
                continue
            row = (nc * H + ih) * W
            for b in range(wq):
                if b == lo:
                    break
                iw = 2 * b - pl
                buf[r0 + b] = x[row + iw] if iw >= 0 and iw < W else padv
                iw += 1
                buf[r1 + b] = x[row + iw] if iw >= 0 and iw < W else padv
            src = max(row + 2 * lo - pl, 0)
            d0 = max(r0 + lo, 0)
            d1 = max(r1 + lo, 0)
            for t in range(hi - lo):
                buf[d0 + t] = x[src + 2 * t]
                buf[d1 + t] = x[src + 2 * t + 1]
            for b in range(hi, wq):
                iw = 2 * b - pl
                buf[r0 + b] = x[row + iw] if iw >= 0 and iw < W else padv
                iw += 1
                buf[r1 + b] = x[row + iw] if iw >= 0 and iw < W else padv


def _s2d_fill(x, buf, nc, H, W, sh, sw, pt, pl, hq, wq, ps, padv):
    """Space to depth of channel ``nc`` of flat ``x``, padded with ``padv``:
    ``buf[(ri·sw + rj)·ps + a·wq + b] = x_pad[a·sh + ri, b·sw + rj]`` for ``a < hq``, ``b < wq``
    (``x_pad`` row ``pt`` / column ``pl`` is input row / column 0)."""
    if sw == 2:
        _fill_s2(x, buf, nc, H, W, sh, pt, pl, hq, wq, ps, padv)
    else:
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
                            buf[rb + t] = padv
                    else:
                        for t in range(lo):
                            buf[rb + t] = padv
                        rl = max(rb + lo, 0)
                        src = max((nc * H + ih) * W + lo * sw + off, 0)
                        if sw == 1:
                            for t in range(cnt):
                                buf[rl + t] = x[src + t]
                        else:
                            for t in range(cnt):
                                buf[rl + t] = x[src + t * sw]
                        re = max(rb + hi, 0)
                        for t in range(wq - hi):
                            buf[re + t] = padv


def window2d(x, out, w, bias, inv, buf, acc, N, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl,
             mode, act, a0, a1, slope):
    """Sliding-window ops on one channel at a time; ``x (N·C·H·W)`` and ``out (N·C·OH·OW)`` flat.

    ``mode`` 0: depthwise conv, ``out = act(bias[c] + Σ_ij w[c, i·KW + j]·x_pad[...])``
    (PRelu's slope per channel in ``slope``);
    1: max pool (padding and the ceil_mode overflow are -inf); 2: average pool,
    ``Σ x_pad · inv[oh·OW + ow]`` (padding is 0, ``inv`` the reciprocal window counts).

    Per channel, the padded input is split by stride phase ("space to depth") into
    ``sh·sw`` planes of ``Hq × Wq`` in ``buf``: ``plane[ri, rj][a, b] = x_pad[a·sh + ri, b·sw + rj]``.
    Tap ``(i, j)`` of output ``(oh, ow)`` is then ``plane[(i·dh) % sh, (j·dw) % sw]`` at
    ``(oh + i·dh // sh, ow + j·dw // sw)``: with ``q = oh·Wq + ow`` every tap is one
    contiguous shifted read, so one long vectorizable loop over ``q`` (rounded up to whole
    vector blocks) computes the channel into ``acc``; columns ``ow ≥ OW`` are computed and
    dropped when the valid ones are copied out.
    """
    hq = OH + ((KH - 1) * dh) // sh
    wq = OW + ((KW - 1) * dw) // sw
    ps = hq * wq
    L = (OH - 1) * wq + OW
    L = (L + 63) // 64 * 64
    padv = np.float32(-math.inf) if mode == 1 else np.float32(0)
    for i in range(sh * sw * ps, buf.shape[0]):
        buf[i] = padv
    for n in range(N):
        for c in range(C):
            nc = n * C + c
            _s2d_fill(x, buf, nc, H, W, sh, sw, pt, pl, hq, wq, ps, padv)
            if KH == 3 and KW == 3 and mode != 2:
                o0 = _tap(0, 0, sh, sw, dh, dw, ps, wq)
                o1 = _tap(0, 1, sh, sw, dh, dw, ps, wq)
                o2 = _tap(0, 2, sh, sw, dh, dw, ps, wq)
                o3 = _tap(1, 0, sh, sw, dh, dw, ps, wq)
                o4 = _tap(1, 1, sh, sw, dh, dw, ps, wq)
                o5 = _tap(1, 2, sh, sw, dh, dw, ps, wq)
                o6 = _tap(2, 0, sh, sw, dh, dw, ps, wq)
                o7 = _tap(2, 1, sh, sw, dh, dw, ps, wq)
                o8 = _tap(2, 2, sh, sw, dh, dw, ps, wq)
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
                        m = buf[o0 + q]
                        v = buf[o1 + q]
                        m = v if v > m else m
                        v = buf[o2 + q]
                        m = v if v > m else m
                        v = buf[o3 + q]
                        m = v if v > m else m
                        v = buf[o4 + q]
                        m = v if v > m else m
                        v = buf[o5 + q]
                        m = v if v > m else m
                        v = buf[o6 + q]
                        m = v if v > m else m
                        v = buf[o7 + q]
                        m = v if v > m else m
                        v = buf[o8 + q]
                        acc[q] = v if v > m else m
            else:
                for t in range(KH * KW):
                    ot = _tap(t // KW, t % KW, sh, sw, dh, dw, ps, wq)
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
                                m = acc[q]
                                acc[q] = v if v > m else m
                    else:
                        if t == 0:
                            for q in range(L):
                                acc[q] = buf[ot + q]
                        else:
                            for q in range(L):
                                acc[q] += buf[ot + q]
            if mode == 0:
                b = bias[c]
                for q in range(L):
                    acc[q] += b
                if act == 9:
                    act_row(acc, 0, L, 3, float(slope[c % slope.shape[0]]), 0.0)
                elif act != 0:
                    act_row(acc, 0, L, act, a0, a1)
            for oh in range(OH):
                ab = max(oh * wq, 0)
                ob = max((nc * OH + oh) * OW, 0)
                if mode == 2:
                    ib = max(oh * OW, 0)
                    for t in range(OW):
                        out[ob + t] = acc[ab + t] * inv[ib + t]
                else:
                    for t in range(OW):
                        out[ob + t] = acc[ab + t]


def depthwise_cl(x, out, w, bias, xt, ot, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl, act, a0, a1, slope):
    """Depthwise conv of one image on small feature maps, vectorized across channels: the
    input is transposed to channels-last ``xt (H·W, C)``, each output pixel accumulates
    ``w[tap, :] · xt[pixel, :]`` over its in-bounds taps into ``ot (OH·OW, C)``, which is
    transposed back into ``out (C, OH, OW)`` (flat), then the activation per channel."""
    HW = H * W
    for c in range(C):
        xb = max(c * HW, 0)
        for p in range(HW):
            xt[p * C + c] = x[xb + p]
    for oh in range(OH):
        for ow in range(OW):
            ob = max((oh * OW + ow) * C, 0)
            for c in range(C):
                ot[ob + c] = bias[c]
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
    for c in range(C):
        obase = max(c * P, 0)
        for p in range(P):
            out[obase + p] = ot[p * C + c]
        if act == 9:
            act_row(out, obase, P, 3, float(slope[c % slope.shape[0]]), 0.0)
        elif act != 0:
            act_row(out, obase, P, act, a0, a1)


def winograd_in(x, pad, V, ks, C, H, W, pt, pl, TH, TW):
    """Winograd F(2×2, 3×3) input transform of one image ``x (C·H·W)`` (flat):
    ``V[k, c, t] = (Bᵀ d B)[k // 4, k % 4]`` for the 4×4 input tile ``d`` of output tile
    ``t = th·TW + tw`` (rows ``2·th − pt ..``, columns ``2·tw − pl ..``; outside reads 0).
    ``pad`` holds one zero-padded channel plane ``(2·TH + 2) × (2·TW + 2)``; ``V[k]`` starts
    at ``k·ks`` (``ks ≥ C·T``, padded so the 16 store streams do not alias in the cache);
    ``Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]``."""
    Hp = 2 * TH + 2
    Wp = 2 * TW + 2
    T = TH * TW
    z = np.float32(0)
    for c in range(C):
        # the padded plane: rows/cols outside the input are zero
        for r in range(Hp):
            ih = r - pt
            rb = max(r * Wp, 0)
            if ih < 0 or ih >= H:
                for t in range(Wp):
                    pad[rb + t] = z
                continue
            lo = pl if pl < Wp else Wp
            for t in range(lo):
                pad[rb + t] = z
            n = W if W < Wp - lo else Wp - lo
            if n < 0:
                n = 0
            src = max((c * H + ih) * W, 0)
            dst = max(rb + lo, 0)
            for t in range(n):
                pad[dst + t] = x[src + t]
            e = max(rb + lo + n, 0)
            for t in range(Wp - lo - n):
                pad[e + t] = z
        cb = c * T
        for th in range(TH):
            r0 = max(2 * th * Wp, 0)
            r1 = r0 + Wp
            r2 = r1 + Wp
            r3 = r2 + Wp
            ob = max(cb + th * TW, 0)
            for tw in range(TW):
                q = 2 * tw
                # horizontal: h_j = d_i B (per input row i)
                a0 = pad[r0 + q] - pad[r0 + q + 2]
                a1 = pad[r0 + q + 1] + pad[r0 + q + 2]
                a2 = pad[r0 + q + 2] - pad[r0 + q + 1]
                a3 = pad[r0 + q + 1] - pad[r0 + q + 3]
                b0 = pad[r1 + q] - pad[r1 + q + 2]
                b1 = pad[r1 + q + 1] + pad[r1 + q + 2]
                b2 = pad[r1 + q + 2] - pad[r1 + q + 1]
                b3 = pad[r1 + q + 1] - pad[r1 + q + 3]
                c0 = pad[r2 + q] - pad[r2 + q + 2]
                c1 = pad[r2 + q + 1] + pad[r2 + q + 2]
                c2 = pad[r2 + q + 2] - pad[r2 + q + 1]
                c3 = pad[r2 + q + 1] - pad[r2 + q + 3]
                d0 = pad[r3 + q] - pad[r3 + q + 2]
                d1 = pad[r3 + q + 1] + pad[r3 + q + 2]
                d2 = pad[r3 + q + 2] - pad[r3 + q + 1]
                d3 = pad[r3 + q + 1] - pad[r3 + q + 3]
                o = ob + tw
                # vertical: Bᵀ (rows a, b, c, d)
                V[o] = a0 - c0
                V[o + ks] = a1 - c1
                V[o + 2 * ks] = a2 - c2
                V[o + 3 * ks] = a3 - c3
                V[o + 4 * ks] = b0 + c0
                V[o + 5 * ks] = b1 + c1
                V[o + 6 * ks] = b2 + c2
                V[o + 7 * ks] = b3 + c3
                V[o + 8 * ks] = c0 - b0
                V[o + 9 * ks] = c1 - b1
                V[o + 10 * ks] = c2 - b2
                V[o + 11 * ks] = c3 - b3
                V[o + 12 * ks] = b0 - d0
                V[o + 13 * ks] = b1 - d1
                V[o + 14 * ks] = b2 - d2
                V[o + 15 * ks] = b3 - d3


def _wino_row(Mt, ks, out, i0, ob, TW, full, bv, r):
    """One output row of a tile row: ``r = 0`` uses tile rows 0..2 (``m0 + m1 + m2``),
    ``r = 1`` tile rows 1..3 (``m1 − m2 − m3``); columns likewise (see :func:`winograd_out`)."""
    s = 4 if r == 1 else 0
    i0 = max(i0, 0)
    ob = max(ob, 0)
    k0 = max(s * ks, 0)
    k1 = max((s + 1) * ks, 0)
    k2 = max((s + 2) * ks, 0)
    k3 = max((s + 3) * ks, 0)
    c0 = max(4 * ks, 0)
    c1 = max(8 * ks, 0)
    sg = np.float32(1) if r == 0 else np.float32(-1)
    for tw in range(full):
        i = i0 + tw
        v0 = Mt[i + k0] + Mt[i + k0 + c0] * sg + Mt[i + k0 + c1] * sg
        v1 = Mt[i + k1] + Mt[i + k1 + c0] * sg + Mt[i + k1 + c1] * sg
        v2 = Mt[i + k2] + Mt[i + k2 + c0] * sg + Mt[i + k2 + c1] * sg
        v3 = Mt[i + k3] + Mt[i + k3 + c0] * sg + Mt[i + k3 + c1] * sg
        out[ob + 2 * tw] = v0 + v1 + v2 + bv
        out[ob + 2 * tw + 1] = v1 - v2 - v3 + bv
    if full < TW:
        i = i0 + full
        v0 = Mt[i + k0] + Mt[i + k0 + c0] * sg + Mt[i + k0 + c1] * sg
        v1 = Mt[i + k1] + Mt[i + k1 + c0] * sg + Mt[i + k1 + c1] * sg
        v2 = Mt[i + k2] + Mt[i + k2 + c0] * sg + Mt[i + k2 + c1] * sg
        out[ob + 2 * full] = v0 + v1 + v2 + bv


def winograd_out(Mt, ks, out, bias, M, OH, OW, TH, TW, act, a0, a1, slope):
    """Winograd F(2×2, 3×3) output transform into one image ``out (M·OH·OW)`` (flat):
    ``Y = Aᵀ m A`` of the 16 products ``Mt[k·ks + m·T + t]``,
    ``Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]``, plus the bias, then the activation."""
    T = TH * TW
    full = OW // 2
    for m in range(M):
        bv = bias[m]
        for th in range(TH):
            ib = m * T + th * TW
            oy = 2 * th
            rb0 = (m * OH + oy) * OW
            _wino_row(Mt, ks, out, ib, rb0, TW, full, bv, 0)
            if oy + 1 < OH:
                _wino_row(Mt, ks, out, ib, rb0 + OW, TW, full, bv, 1)
        if act == 9:
            act_row(out, m * OH * OW, OH * OW, 3, float(slope[m % slope.shape[0]]), 0.0)
        elif act != 0:
            act_row(out, m * OH * OW, OH * OW, act, a0, a1)
