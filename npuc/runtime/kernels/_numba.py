"""Numba loop kernels shared by the float kernels, compiled lazily and cached on disk.

The functions below are plain Python; :func:`jit` compiles one with
``numba.njit(cache=True, nogil=True)`` the first time a kernel is *built* (at load time),
so ``import npuc`` and compiling a model never import numba. The on-disk cache
(``__pycache__`` beside this file, or numba's user cache dir when that is read-only) makes
every later process load the machine code instead of compiling it.

Conventions, chosen so each function compiles to few specializations:

* arrays are float32 and C-contiguous (the arena views are), 4-D ``(N, C, H, W)`` for
  the spatial kernels (1-D spatial ops are run with ``H = 1``);
* integers are passed as Python ints (int64), floats as Python floats (float64);
* ``act, a0, a1`` is a fused activation epilogue (codes ``ACT_*`` from
  :func:`parse_activation`, applied by :func:`act_row`).

No function uses ``parallel=True``: numba would start a thread pool of its own beside
OpenBLAS's. The runtime is single-threaded per op; BLAS may use its own threads.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

ACT_NONE, ACT_RELU, ACT_CLIP, ACT_LEAKY, ACT_SIGMOID, ACT_HARDSIGMOID, ACT_HARDSWISH, ACT_TANH, ACT_SWISH = range(9)

def parse_activation(attrs: dict[str, Any]) -> tuple[int, float, float] | None:
    """The fused activation of a node from its ``activation`` attribute, as ``(act, a0, a1)``.

    The attribute is ``{"op": NAME, **params}`` (see :mod:`npuc.ops.epilogue`; a bare name
    is accepted too); absent or None means no activation. Fused here: Relu, Clip
    (``min``/``max``, either may be absent), LeakyRelu (``alpha``), Sigmoid, HardSigmoid
    (``alpha``, ``beta``), HardSwish, Tanh, Swish (``alpha``). Anything else returns None:
    the kernel then declines the node.
    """
    a = attrs.get("activation")
    if a is None:
        return ACT_NONE, 0.0, 0.0
    if isinstance(a, str):
        a = {"op": a}
    if not isinstance(a, dict):
        return None
    name = a.get("op")

    def num(key, default):
        v = a.get(key)
        return float(default if v is None else np.asarray(v).reshape(-1)[0])

    if name == "Relu":
        return ACT_RELU, 0.0, 0.0
    if name == "Clip":
        return ACT_CLIP, num("min", -np.inf), num("max", np.inf)
    if name == "LeakyRelu":
        return ACT_LEAKY, num("alpha", 0.01), 0.0
    if name == "Sigmoid":
        return ACT_SIGMOID, 0.0, 0.0
    if name == "HardSigmoid":
        return ACT_HARDSIGMOID, num("alpha", 0.2), num("beta", 0.5)
    if name == "HardSwish":
        return ACT_HARDSWISH, 0.0, 0.0
    if name == "Tanh":
        return ACT_TANH, 0.0, 0.0
    if name == "Swish":
        return ACT_SWISH, num("alpha", 1.0), 0.0
    return None


def act_row(arr, start, n, act, a0, a1):
    """Apply activation ``act`` in place on ``arr[start:start + n]`` (1-D float32)."""
    row = arr[max(start, 0):]
    if act == 1:
        z = np.float32(0)
        for i in range(n):
            v = row[i]
            row[i] = z if v < z else v
    elif act == 2:
        lo = np.float32(a0)
        hi = np.float32(a1)
        for i in range(n):
            v = row[i]
            v = lo if v < lo else v
            row[i] = hi if v > hi else v
    elif act == 3:
        al = np.float32(a0)
        for i in range(n):
            v = row[i]
            row[i] = v if v >= 0 else v * al
    elif act == 4:
        for i in range(n):
            v = row[i]
            if v >= 0:
                row[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                row[i] = e / (1.0 + e)
    elif act == 5:
        al = np.float32(a0)
        be = np.float32(a1)
        for i in range(n):
            v = row[i] * al + be
            row[i] = min(max(v, np.float32(0)), np.float32(1))
    elif act == 6:
        for i in range(n):
            v = row[i]
            t = v / np.float32(6) + np.float32(0.5)
            row[i] = v * min(max(t, np.float32(0)), np.float32(1))
    elif act == 7:
        for i in range(n):
            row[i] = math.tanh(row[i])
    elif act == 8:
        for i in range(n):
            v = row[i]
            u = a0 * v
            if u >= 0:
                s = 1.0 / (1.0 + math.exp(-u))
            else:
                e = math.exp(u)
                s = e / (1.0 + e)
            row[i] = v * s


# --------------------------------------------------------------------------- loops
def epilogue(out, P, bias, has_bias, act, a0, a1):
    """Rows of ``P`` elements of the flat ``out``: ``row r = act(row r + bias[r % len(bias)])``
    in place (conv: ``out (N, M, P)`` with a bias per channel)."""
    R = out.shape[0] // P
    nb = bias.shape[0]
    for r in range(R):
        base = max(r * P, 0)
        if has_bias:
            bv = bias[r % nb]
            for i in range(P):
                out[base + i] += bv
        if act != 0:
            act_row(out, base, P, act, a0, a1)


def add_act(out, other, has_other, act, a0, a1):
    """``out = act(out + other)`` elementwise in place on flat arrays of the same length."""
    n = out.shape[0]
    if has_other:
        for i in range(n):
            out[i] += other[i]
    if act != 0:
        act_row(out, 0, n, act, a0, a1)


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
                        else:
                            for t in range(n):
                                col[db + t] = x[src + t * sw]
                        eb = max(base + hi, 0)
                        for t in range(OW - hi):
                            col[eb + t] = z


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


def window2d(x, out, w, bias, inv, buf, acc, N, C, H, W, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl,
             mode, act, a0, a1):
    """Sliding-window ops on one channel at a time; ``x (N·C·H·W)`` and ``out (N·C·OH·OW)`` flat.

    ``mode`` 0: depthwise conv, ``out = act(bias[c] + Σ_ij w[c, i·KW + j]·x_pad[...])``;
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
            # space to depth with padding
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
                if act != 0:
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


# --------------------------------------------------------------------------- lazy jit
_SOURCES: dict[str, Callable] = {f.__name__: f for f in (
    epilogue, add_act, im2col, window2d, global_avg, global_max, softmax,
    softmax_last, resize_linear2d, gather2d, scale_shift)}
_HELPERS = {"_tap": ("always", _tap), "act_row": ("never", act_row)}
_JITTED: dict[str, Callable] = {}


def _jit_helpers():
    import numba

    g = globals()
    for name, (inline, f) in _HELPERS.items():
        if not hasattr(g[name], "py_func"):
            g[name] = numba.njit(cache=True, nogil=True, inline=inline)(f)


def jit(name: str) -> Callable:
    """The compiled version of the loop kernel ``name`` (compiled or loaded from the disk
    cache on first use)."""
    f = _JITTED.get(name)
    if f is None:
        import numba

        _jit_helpers()
        f = numba.njit(cache=True, nogil=True, error_model="numpy")(_SOURCES[name])
        _JITTED[name] = f
    return f
