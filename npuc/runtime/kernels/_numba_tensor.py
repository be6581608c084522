"""Numba loops of whole-tensor float ops: global average / max, softmax (and log-softmax),
bilinear resize, 2-D gather and per-channel scale + shift.

Plain Python; :func:`npuc.runtime.kernels._numba.jit` compiles a loop (and the helpers it
calls) on first use, with the conventions described in :mod:`npuc.runtime.kernels._numba`.
"""
from __future__ import annotations

import math


def global_avg(x, out):
    """``out[r] = mean(x[r, :])`` for a 2-D ``x (N·C, H·W)`` (float64 accumulation)."""
    R, P = x.shape
    for r in range(R):
        s = 0.0
        xr = x[r]
        for p in range(P):
            s += xr[p]
        out[r] = s / P


def global_max(x, out):
    R, P = x.shape
    for r in range(R):
        xr = x[r]
        m = xr[0]
        for p in range(1, P):
            v = xr[p]
            if v > m or v != v:
                m = v
        out[r] = m


def softmax(x, out, log):
    """Softmax (or LogSoftmax) along axis 1 of ``x (O, L, I)``; ``out`` may be ``x``."""
    O, L, I = x.shape
    for o in range(O):
        xo = x[o]
        oo = out[o]
        for i in range(I):
            m = xo[0, i]
            for t in range(1, L):
                if xo[t, i] > m:
                    m = xo[t, i]
            s = 0.0
            if log:
                for t in range(L):
                    s += math.exp(xo[t, i] - m)
                ls = math.log(s)
                for t in range(L):
                    oo[t, i] = xo[t, i] - m - ls
            else:
                for t in range(L):
                    e = math.exp(xo[t, i] - m)
                    oo[t, i] = e
                    s += e
                inv = 1.0 / s
                for t in range(L):
                    oo[t, i] = oo[t, i] * inv


def softmax_last(x, out, log):
    """Softmax (or LogSoftmax) along the last axis of 2-D ``x (O, L)``; ``out`` may be ``x``."""
    O, L = x.shape
    for o in range(O):
        xo = x[o]
        oo = out[o]
        m = xo[0]
        for t in range(1, L):
            if xo[t] > m:
                m = xo[t]
        s = 0.0
        if log:
            for t in range(L):
                s += math.exp(xo[t] - m)
            ls = math.log(s)
            for t in range(L):
                oo[t] = xo[t] - m - ls
        else:
            for t in range(L):
                e = math.exp(xo[t] - m)
                oo[t] = e
                s += e
            inv = 1.0 / s
            for t in range(L):
                oo[t] = oo[t] * inv


def resize_linear2d(x, out, R, H, W, OH, OW, y0, y1, fy, x0, x1, fx):
    """Separable 2-tap interpolation of flat ``x (R, H, W)`` into flat ``out (R, OH, OW)``:
    row ``a`` blends input rows ``y0[a]`` and ``y1[a]`` with weights ``1 - fy[a]``, ``fy[a]``;
    column ``b`` likewise with ``x0, x1, fx``."""
    for r in range(R):
        xb = r * H * W
        for a in range(OH):
            ra = max(xb + y0[a] * W, 0)
            rb = max(xb + y1[a] * W, 0)
            gy = fy[a]
            ob = max((r * OH + a) * OW, 0)
            for b in range(OW):
                i0 = x0[b]
                i1 = x1[b]
                gx = fx[b]
                top = x[ra + i0] + (x[ra + i1] - x[ra + i0]) * gx
                bot = x[rb + i0] + (x[rb + i1] - x[rb + i0]) * gx
                out[ob + b] = top + (bot - top) * gy


def gather2d(x, out, R, H, W, OH, OW, iy, ix):
    """``out[r, a, b] = x[r, iy[a], ix[b]]`` on flat arrays (nearest-neighbour resize)."""
    for r in range(R):
        xb = r * H * W
        for a in range(OH):
            src = max(xb + iy[a] * W, 0)
            ob = max((r * OH + a) * OW, 0)
            for b in range(OW):
                out[ob + b] = x[src + ix[b]]


def scale_shift(x, out, a, b, C, P):
    """``out[n, c, p] = x[n, c, p]·a[c] + b[c]`` on flat arrays (BatchNormalization); ``out``
    may be ``x``."""
    R = x.shape[0] // P if P > 0 else 0
    for r in range(R):
        c = r % C
        av = a[c]
        bv = b[c]
        base = max(r * P, 0)
        for i in range(P):
            out[base + i] = x[base + i] * av + bv
