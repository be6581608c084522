"""Float32 pooling kernels (1-D and 2-D, NCHW), on the sliding-window loop of the depthwise
conv (:func:`npuc.runtime.kernels._numba.window2d`: per channel, the padded input split by
stride phase in scratch, then one long vectorized loop per window tap).

* ``maxpool_f32``: MaxPool with pads, strides, dilations, ceil_mode (the overflow of the
  last window and the padding never win); only the Y output (no Indices).
* ``avgpool_f32``: AveragePool; the divisor counts the window's positions inside the input,
  or with ``count_include_pad`` inside the explicitly padded input — never the ceil_mode
  overflow (as :mod:`npuc.ops.nn` and onnxruntime define it).
* ``global_avgpool_f32`` / ``global_maxpool_f32``: one reduction per (n, c), any rank.

The geometry comes from :func:`npuc.ops.spatial.window_geometry` and is stored with the op as
``pool_geometry`` = kh, kw, sh, sw, dh, dw, pad top, pad left, padded height end, padded
width end.
"""
from __future__ import annotations

import numpy as np

from ...ops.spatial import window_geometry
from ._numba import jit, ro
from .conv import _window_buffers, window_scratch_bytes
from .base import Binding, Kernel, Prepared, register_kernel

F32 = np.dtype(np.float32)


def _geometry(node) -> list[int]:
    x = node.inputs[0]
    a = node.attrs
    geo = window_geometry(x.shape[2:], a["kernel_shape"], a.get("strides"), a.get("dilations"), a.get("pads"),
                          a.get("auto_pad") or "NOTSET", ceil_mode=bool(a.get("ceil_mode", 0)))
    if geo.ndim == 1:
        return [1, geo.kernel[0], 1, geo.strides[0], 1, geo.dilations[0], 0, geo.pads_begin[0],
                1, geo.in_shape[0] + geo.pads_end[0]]
    return [geo.kernel[0], geo.kernel[1], geo.strides[0], geo.strides[1], geo.dilations[0], geo.dilations[1],
            geo.pads_begin[0], geo.pads_begin[1], geo.in_shape[0] + geo.pads_end[0],
            geo.in_shape[1] + geo.pads_end[1]]


def _as4d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]) if a.ndim == 3 else a


def _inv_counts(oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, h, w, he, we, include_pad) -> np.ndarray:
    """Reciprocal of the number of counted window positions per output, flat ``(OH·OW,)``."""
    def counts(o, k, s, d, p, n, end):
        pos = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
        lo, hi = (-p, end) if include_pad else (0, n)
        return ((pos >= lo) & (pos < hi)).sum(axis=1)
    cnt = np.multiply.outer(counts(oh, kh, sh, dh, pt, h, he), counts(ow, kw, sw, dw, pl, w, we))
    with np.errstate(divide="ignore"):
        return np.ascontiguousarray((1.0 / cnt).reshape(-1), F32)


class _Pool(Kernel):
    mode = 1

    def supports(self, node) -> bool:
        x = node.inputs[0]
        if not (x.dtype == F32 and x.rank in (3, 4) and len(node.outputs) == 1):
            return False
        try:
            _geometry(node)
        except Exception:
            return False
        return True

    def prepare(self, node) -> Prepared:
        g = _geometry(node)
        out = node.outputs[0].shape
        oh, ow = (1, out[2]) if len(out) == 3 else out[2:]
        return Prepared(attrs={"pool_geometry": g}, scratch=window_scratch_bytes(oh, ow, *g[:6]))

    def build(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl, he, we = (int(v) for v in b.attrs["pool_geometry"])
        x, out = _as4d(b.inputs[0]), _as4d(b.outputs[0])
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        buf, acc = _window_buffers(b.scratch, oh, ow, kh, kw, sh, sw, dh, dw)
        if self.mode == 2:
            inv = ro(_inv_counts(oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, h, wd, he, we,
                                 bool(int(b.attrs.get("count_include_pad", 0)))))
        else:
            inv = ro(np.zeros(1, F32))
        xf, of = x.reshape(-1), out.reshape(-1)
        w, bias = ro(np.zeros((1, 1), F32)), ro(np.zeros(1, F32))
        mode = self.mode
        f = jit("window2d")

        def run():
            f(xf, of, w, bias, inv, buf, acc, n, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, mode, 0, 0.0, 0.0,
              bias)
        return run


@register_kernel
class MaxPoolF32(_Pool):
    op, name, mode = "MaxPool", "maxpool_f32", 1

    def supports(self, node) -> bool:
        return super().supports(node) and int(node.attrs.get("storage_order", 0)) == 0


@register_kernel
class AvgPoolF32(_Pool):
    op, name, mode = "AveragePool", "avgpool_f32", 2


class _Global(Kernel):
    fn = ""

    def supports(self, node) -> bool:
        x = node.inputs[0]
        return x.dtype == F32 and x.rank >= 3 and x.size > 0

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        r = x.shape[0] * x.shape[1]
        x2, o1 = x.reshape(r, -1), out.reshape(r)
        f = jit(self.fn)

        def run():
            f(x2, o1)
        return run


@register_kernel
class GlobalAvgPoolF32(_Global):
    op, name, fn = "GlobalAveragePool", "global_avgpool_f32", "global_avg"


@register_kernel
class GlobalMaxPoolF32(_Global):
    op, name, fn = "GlobalMaxPool", "global_maxpool_f32", "global_max"
