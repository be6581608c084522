"""Float32 Conv kernels (1-D and 2-D, NCHW, any batch), in preference order:

* ``conv_depthwise_cl`` (group = C = M, output ≤ 64 pixels, e.g. 7×7): weights packed
  ``(KH·KW, C)``; vectorized across channels through a channels-last copy in scratch.
* ``conv_depthwise`` (group = C = M): weights packed ``(C, KH·KW)``; a numba kernel that
  splits each zero-padded channel by stride phase into its scratch, then computes the
  channel as one long vectorized loop per tap set (any kernel size, stride, dilation,
  padding; 3×3 unrolled), bias and activation fused.
* ``conv_1x1`` (1×1 kernel, stride 1, no padding, group 1): one GEMM on the input itself,
  ``Y[n] (M, H·W) = W (M, C) · X[n] (C, H·W)`` — ``np.matmul(W, X, out=Y)``, no im2col.
* ``conv_winograd`` (3×3, stride 1, dilation 1, group 1, ≥ 16 channels in and out):
  Winograd F(2×2, 3×3), 16 GEMMs on transformed tiles (2.25× fewer multiplications).
* ``conv_im2col`` (everything else, groups included): weights packed
  ``(G, M/G, C/G·KH·KW)``; per image, numba im2col into the op's scratch
  ``(C·KH·KW, OH·OW)`` then one ``np.matmul(W[g], col[g], out=Y[n, g])`` per group.

The bias and the fused activation (the ``activation`` attribute a fusion pass may set, see
:func:`npuc.runtime.kernels._numba.parse_activation`) are applied in place in one pass
over the output; Sigmoid, Swish and Tanh then run on numpy's SIMD float32 ufuncs (Swish
with a temporary in the op's scratch), which beat scalar ``exp`` in numba loops. Padding and output sizes come from :func:`npuc.ops.spatial.window_geometry`;
the resolved geometry is stored with the op (``conv_geometry`` = kh, kw, sh, sw, dh, dw,
pad top, pad left) so the kernel never re-derives it.
"""
from __future__ import annotations

import numpy as np

from ...ops.spatial import window_geometry
from ._numba import (ACT_NONE, ACT_SIGMOID, ACT_SWISH, ACT_TANH, jit, parse_activation, prelu_slope, ro,
                     window_scratch)
from .base import Binding, Kernel, Prepared, register_kernel

F32 = np.dtype(np.float32)


def _geometry(node):
    x, w = node.inputs[0], node.inputs[1]
    a = node.attrs
    geo = window_geometry(x.shape[2:], a.get("kernel_shape") or w.shape[2:], a.get("strides"),
                          a.get("dilations"), a.get("pads"), a.get("auto_pad") or "NOTSET")
    if len(geo.in_shape) == 1:   # 1-D conv runs as 2-D with H = 1
        return [1, geo.kernel[0], 1, geo.strides[0], 1, geo.dilations[0], 0, geo.pads_begin[0]], geo
    return [geo.kernel[0], geo.kernel[1], geo.strides[0], geo.strides[1], geo.dilations[0], geo.dilations[1],
            geo.pads_begin[0], geo.pads_begin[1]], geo


def _conv_ok(node) -> bool:
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return False
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    return (x.dtype == F32 and w.dtype == F32 and node.outputs[0].dtype == F32 and x.rank in (3, 4)
            and w.is_const and (bias is None or (bias.is_const and bias.dtype == F32))
            and parse_activation(node.attrs) is not None
            and prelu_slope(node.attrs, node.outputs[0].shape) is not None)


def _as4d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]) if a.ndim == 3 else a


def _bias(b: Binding, m: int) -> tuple[np.ndarray, bool]:
    bias = b.inputs[2] if len(b.inputs) > 2 else None
    if bias is None:
        return ro(np.zeros(m, F32)), False
    return ro(np.ascontiguousarray(bias, F32).reshape(m)), True


def _window_buffers(scratch: np.ndarray, oh, ow, kh, kw, sh, sw, dh, dw):
    """The ``buf`` and ``acc`` float32 views of :func:`~._numba.window2d` in ``scratch``."""
    nbuf, nacc = window_scratch(oh, ow, kh, kw, sh, sw, dh, dw)
    nbuf_al = (nbuf + 15) // 16 * 16          # keep acc 64-byte aligned
    sc = scratch[:4 * (nbuf_al + nacc)].view(F32)
    return sc[:nbuf], sc[nbuf_al:nbuf_al + nacc]


def window_scratch_bytes(oh, ow, kh, kw, sh, sw, dh, dw) -> int:
    return 4 * sum(window_scratch(oh, ow, kh, kw, sh, sw, dh, dw)) + 64


_NUMPY_ACTS = (ACT_SIGMOID, ACT_SWISH, ACT_TANH)


def _act_scratch_bytes(node) -> int:
    """Extra scratch for an activation computed with numpy ufuncs (Swish needs σ(αx))."""
    act = parse_activation(node.attrs)
    return (node.outputs[0].nbytes + 63) // 64 * 64 if act and act[0] == ACT_SWISH else 0


def _numpy_act(b: Binding, offset: int):
    """For transcendental activations: ``(run, True)`` with ``run`` applying it to the output
    with numpy's SIMD float32 ufuncs (much faster than scalar exp in numba loops), else
    ``(None, False)``; ``offset`` is where the Swish temporary starts in the op's scratch."""
    act, a0, _a1 = _act(b)
    if act not in _NUMPY_ACTS:
        return None, False
    out = b.outputs[0]
    one = F32.type(1)
    if act == ACT_TANH:
        def run():
            np.tanh(out, out=out)
    elif act == ACT_SIGMOID:
        def run():
            with np.errstate(over="ignore"):
                np.negative(out, out=out)
                np.exp(out, out=out)
                np.add(out, one, out=out)
                np.reciprocal(out, out=out)
    else:   # Swish: x · σ(αx) = x / (1 + e^(−αx))
        tmp = b.scratch[offset:offset + out.nbytes].view(F32).reshape(out.shape)
        neg_alpha = F32.type(-a0)

        def run():
            with np.errstate(over="ignore"):
                np.multiply(out, neg_alpha, out=tmp)
                np.exp(tmp, out=tmp)
                np.add(tmp, one, out=tmp)
                np.divide(out, tmp, out=out)
    return run, True


def _chain(f, g):
    if g is None:
        return f

    def run():
        f()
        g()
    return run


def _loop_act(b: Binding):
    """The activation the numba loops apply (none when :func:`_numpy_act` does it)."""
    act, a0, a1 = _act(b)
    return (ACT_NONE, 0.0, 0.0) if act in _NUMPY_ACTS else (act, a0, a1)


def _act(b: Binding):
    act = b.attrs.get("fused_activation")
    if act is None:
        act = parse_activation(b.attrs) or (ACT_NONE, 0.0, 0.0)
    return int(act[0]), float(act[1]), float(act[2])


def _epilogue(out3: np.ndarray, b: Binding):
    """A closure applying bias + activation in place on ``out3 (N, M, P)``, or None."""
    bias, has_bias = _bias(b, out3.shape[1])
    act, a0, a1 = _loop_act(b)
    if not has_bias and act == ACT_NONE:
        return None
    ep = jit("epilogue")
    flat, p = out3.reshape(-1), out3.shape[2]
    slope = ro(prelu_slope(b.attrs, b.outputs[0].shape))

    def run():
        ep(flat, p, bias, has_bias, act, a0, a1, slope)
    return run


class _ConvBase(Kernel):
    op = "Conv"
    handles_activation = True  # bias + activation in one in-place epilogue

    def _prepared(self, node, packed_w: np.ndarray) -> Prepared:
        g, _geo = _geometry(node)
        act = parse_activation(node.attrs)
        packed = {1: np.ascontiguousarray(packed_w, F32)}
        base = (self.scratch_bytes(node) + 63) // 64 * 64
        extra = _act_scratch_bytes(node)
        return Prepared(packed=packed, attrs={"conv_geometry": g, "fused_activation": list(act),
                                              "act_scratch_offset": base},
                        scratch=base + extra if extra else self.scratch_bytes(node))

    def build(self, b: Binding):
        run = self.build_core(b)
        post, _ = _numpy_act(b, int(b.attrs.get("act_scratch_offset", 0)))
        return _chain(run, post)

    def scratch_bytes(self, node) -> int:
        return 0


def _depthwise_ok(node) -> bool:
    if not _conv_ok(node):
        return False
    c, m = node.inputs[0].shape[1], node.inputs[1].shape[0]
    return int(node.attrs.get("group", 1)) == c == m and c > 1


@register_kernel
class ConvDepthwiseCL(_ConvBase):
    """Depthwise conv on small outputs (≤ 64 pixels, e.g. 7×7): per-plane loops are too short
    to vectorize there, so the image is transposed to channels-last in scratch and the loops
    run across channels (:func:`~._numba.depthwise_cl`); weights packed ``(KH·KW, C)``."""

    name = "conv_depthwise_cl"
    MAX_PIXELS = 64

    def supports(self, node) -> bool:
        return (_depthwise_ok(node) and node.inputs[0].rank == 4
                and int(np.prod(node.outputs[0].shape[2:])) <= self.MAX_PIXELS)

    def scratch_bytes(self, node) -> int:
        x, y = node.inputs[0], node.outputs[0]
        return 4 * (_align16(int(np.prod(x.shape[1:]))) + int(np.prod(y.shape[1:])))

    def prepare(self, node) -> Prepared:
        w = node.inputs[1].const
        return self._prepared(node, w.reshape(w.shape[0], -1).T)

    def build_core(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["conv_geometry"])
        x, out = b.inputs[0], b.outputs[0]
        w = ro(b.inputs[1].reshape(-1))
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        nx = _align16(c * h * wd)
        sc = b.scratch[:4 * (nx + c * oh * ow)].view(F32)
        xt, ot = sc[:c * h * wd], sc[nx:nx + c * oh * ow]
        bias, _ = _bias(b, c)
        act, a0, a1 = _loop_act(b)
        slope = ro(prelu_slope(b.attrs, out.shape))
        images = [(x[i].reshape(-1), out[i].reshape(-1)) for i in range(n)]
        f = jit("depthwise_cl")

        def run():
            for xi, oi in images:
                f(xi, oi, w, bias, xt, ot, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, act, a0, a1, slope)
        return run


@register_kernel
class ConvDepthwise(_ConvBase):
    name = "conv_depthwise"

    def supports(self, node) -> bool:
        return _depthwise_ok(node)

    def scratch_bytes(self, node) -> int:
        (kh, kw, sh, sw, dh, dw, _pt, _pl), geo = _geometry(node)
        oh, ow = (1, geo.out_shape[0]) if geo.ndim == 1 else geo.out_shape
        return window_scratch_bytes(oh, ow, kh, kw, sh, sw, dh, dw)

    def prepare(self, node) -> Prepared:
        w = node.inputs[1].const
        return self._prepared(node, w.reshape(w.shape[0], -1))

    def build_core(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["conv_geometry"])
        x, out = _as4d(b.inputs[0]), _as4d(b.outputs[0])
        w = b.inputs[1]
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        bias, _ = _bias(b, c)
        buf, acc = _window_buffers(b.scratch, oh, ow, kh, kw, sh, sw, dh, dw)
        act, a0, a1 = _loop_act(b)
        xf, of = x.reshape(-1), out.reshape(-1)
        inv = ro(np.zeros(1, F32))
        slope = ro(prelu_slope(b.attrs, b.outputs[0].shape))
        w = ro(w)
        f = jit("window2d")

        def run():
            f(xf, of, w, bias, inv, buf, acc, n, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, 0, act, a0, a1,
              slope)
        return run


@register_kernel
class Conv1x1(_ConvBase):
    name = "conv_1x1"

    def supports(self, node) -> bool:
        if not _conv_ok(node) or int(node.attrs.get("group", 1)) != 1:
            return False
        g, geo = _geometry(node)
        kh, kw, sh, sw = g[:4]
        return kh == kw == sh == sw == 1 and not any(geo.pads_begin) and not any(geo.pads_end)

    def prepare(self, node) -> Prepared:
        w = node.inputs[1].const
        return self._prepared(node, w.reshape(w.shape[0], w.shape[1]))

    def build_core(self, b: Binding):
        x, out, w = b.inputs[0], b.outputs[0], b.inputs[1]
        n, c = x.shape[:2]
        m = out.shape[1]
        x3 = x.reshape(n, c, -1)
        out3 = out.reshape(n, m, -1)
        ep = _epilogue(out3, b)
        mm = np.matmul
        if n == 1:
            x2, o2 = x3[0], out3[0]
            if ep is None:
                def run():
                    mm(w, x2, out=o2)
            else:
                def run():
                    mm(w, x2, out=o2)
                    ep()
        else:
            def run():
                mm(w, x3, out=out3)
                if ep is not None:
                    ep()
        return run


_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)


def _winograd_sizes(c: int, m: int, oh: int, ow: int) -> tuple[int, int, int, int, int]:
    """Tiles (TH, TW), padded plane size, and the batch strides of V and M (float32
    elements), each padded by 16 so the 16 transform streams fall in different cache sets."""
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    t = th * tw
    npad = (2 * th + 2) * (2 * tw + 2)
    return th, tw, npad, c * t + 16, m * t + 16


def _align16(n: int) -> int:
    return (n + 15) // 16 * 16


def _planes_bytes(oh, ow, kh, kw, sh, sw, dh, dw) -> int:
    """Scratch for the stride-phase planes of one channel (strided im2col only)."""
    if sh == 1 and sw == 1:
        return 0
    return 4 * window_scratch(oh, ow, kh, kw, sh, sw, dh, dw)[0]


@register_kernel
class ConvWinograd(_ConvBase):
    """3×3, stride 1, dilation 1, group 1: Winograd F(2×2, 3×3) — 16 GEMMs of
    ``U[k] (M, C) · V[k] (C, tiles)`` with 2.25× fewer multiplications than im2col.
    ``U = G g Gᵀ`` is packed at compile time as ``(16, M, C)``; numba does the input and
    output transforms (:func:`~._numba.winograd_in`, :func:`~._numba.winograd_out`)."""

    name = "conv_winograd"
    MIN_CHANNELS = 16
    MIN_TILES = 36   # below this (≈ 12×12 outputs) the 16 small GEMMs lose to one im2col GEMM

    def supports(self, node) -> bool:
        if not _conv_ok(node) or int(node.attrs.get("group", 1)) != 1 or node.inputs[0].rank != 4:
            return False
        try:
            g, _ = _geometry(node)
        except Exception:
            return False
        kh, kw, sh, sw, dh, dw = g[:6]
        c, m = node.inputs[0].shape[1], node.outputs[0].shape[1]
        oh, ow = node.outputs[0].shape[2:]
        return ((kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and c >= self.MIN_CHANNELS
                and m >= self.MIN_CHANNELS and ((oh + 1) // 2) * ((ow + 1) // 2) >= self.MIN_TILES)

    def scratch_bytes(self, node) -> int:
        c, (m, oh, ow) = node.inputs[0].shape[1], node.outputs[0].shape[1:]
        _, _, npad, ksv, ksm = _winograd_sizes(c, m, oh, ow)
        return 4 * (_align16(npad) + 16 * ksv + 16 * ksm)

    def prepare(self, node) -> Prepared:
        w = np.asarray(node.inputs[1].const, np.float64)                 # (M, C, 3, 3)
        u = np.einsum("ai,mcij,bj->abmc", _G, w, _G)                      # (4, 4, M, C)
        return self._prepared(node, u.reshape(16, w.shape[0], w.shape[1]))

    def build_core(self, b: Binding):
        _kh, _kw, _sh, _sw, _dh, _dw, pt, pl = (int(v) for v in b.attrs["conv_geometry"])
        x, out, u = b.inputs[0], b.outputs[0], b.inputs[1]
        n, c, h, wd = x.shape
        m, oh, ow = out.shape[1:]
        th, tw, npad, ksv, ksm = _winograd_sizes(c, m, oh, ow)
        t = th * tw
        p0 = _align16(npad)
        sc = b.scratch[:4 * (p0 + 16 * ksv + 16 * ksm)].view(F32)
        pad, v, mt = sc[:npad], sc[p0:p0 + 16 * ksv], sc[p0 + 16 * ksv:p0 + 16 * ksv + 16 * ksm]
        v3 = np.lib.stride_tricks.as_strided(v, (16, c, t), (4 * ksv, 4 * t, 4))
        mt3 = np.lib.stride_tricks.as_strided(mt, (16, m, t), (4 * ksm, 4 * t, 4))
        bias, _ = _bias(b, m)
        act, a0, a1 = _loop_act(b)
        slope = ro(prelu_slope(b.attrs, out.shape))
        images = [(x[i].reshape(-1), out[i].reshape(-1)) for i in range(n)]
        fin, fout = jit("winograd_in"), jit("winograd_out")
        mm = np.matmul

        def run():
            for xi, oi in images:
                fin(xi, pad, v, ksv, c, h, wd, pt, pl, th, tw)
                mm(u, v3, out=mt3)
                fout(mt, ksm, oi, bias, m, oh, ow, th, tw, act, a0, a1, slope)
        return run


@register_kernel
class ConvIm2col(_ConvBase):
    name = "conv_im2col"

    def supports(self, node) -> bool:
        if not _conv_ok(node):
            return False
        try:
            _geometry(node)
        except Exception:
            return False
        return True

    def scratch_bytes(self, node) -> int:
        g, geo = _geometry(node)
        c = node.inputs[0].shape[1]
        k = g[0] * g[1]
        p = int(np.prod(geo.out_shape))
        oh, ow = (1, geo.out_shape[0]) if geo.ndim == 1 else geo.out_shape
        return _align16(c * k * p) * 4 + _planes_bytes(oh, ow, *g[:6])

    def prepare(self, node) -> Prepared:
        w = node.inputs[1].const
        grp = int(node.attrs.get("group", 1))
        m = w.shape[0]
        return self._prepared(node, w.reshape(grp, m // grp, -1))

    def build_core(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["conv_geometry"])
        x, out, w = _as4d(b.inputs[0]), _as4d(b.outputs[0]), b.inputs[1]
        n, c = x.shape[:2]
        m, oh, ow = out.shape[1:]
        grp, mg, kg = w.shape
        p = oh * ow
        rows = c * kh * kw
        col = b.scratch[:rows * p * 4].view(F32).reshape(rows, p)
        planes = _planes_bytes(oh, ow, kh, kw, sh, sw, dh, dw)
        buf = b.scratch[_align16(rows * p) * 4:_align16(rows * p) * 4 + planes].view(F32) if planes else None
        out3 = out.reshape(n, m, p)
        images = []
        h, wd = x.shape[2:]
        for i in range(n):
            gemms = [(w[g], col[g * kg:(g + 1) * kg], out3[i, g * mg:(g + 1) * mg]) for g in range(grp)]
            images.append((x[i].reshape(-1), gemms))
        colf = col.reshape(-1)
        ep = _epilogue(out3, b)
        mm = np.matmul
        if buf is None:
            f = jit("im2col")

            def fill(xi):
                f(xi, colf, c, h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)
        else:
            f = jit("im2col_s2d")

            def fill(xi):
                f(xi, colf, buf, c, h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)

        def run():
            for xi, gemms in images:
                fill(xi)
                for wg, cg, og in gemms:
                    mm(wg, cg, out=og)
            if ep is not None:
                ep()
        return run
