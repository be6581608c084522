"""Integer pooling and reductions, bit-exact with :mod:`npuc.ops.quant` / :mod:`npuc.ops.nn`:

* ``qmean``: QMean (GlobalAveragePool, ReduceMean) over one block of axes, viewed as
  ``(outer, reduced, inner)``: int64 sums, ``− count · x_zp``, requantize.
* ``qavgpool``: QAvgPool on the stride-phase window loop of :func:`~.qloops.qwindow`
  (window sums of ``x − x_zp``; the padding and the ceil_mode overflow count as 0, i.e. the
  zero point, as in the reference), requantized with the count folded into the multiplier.
* ``maxpool_int`` / ``global_maxpool_int``: MaxPool / GlobalMaxPool on int8/uint8/int16
  tensors (the float kernels take float32 only); padding never wins.
* ``resize_nearest_int``: nearest-neighbour Resize of integer NCHW tensors through the
  float kernel's index plan (a broadcast copy or an index gather, both dtype-agnostic).
"""
from __future__ import annotations

import logging

import numpy as np

from ...ops.spatial import window_geometry
from .base import Binding, Kernel, Prepared, register_kernel
from .qcommon import F32_EXACT, F64_EXACT, carve, carve_bytes, code_amax, is_int_code, ro, scalar_rq, shift_ok
from .qloops import jit, qwindow_scratch

log = logging.getLogger(__name__)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
_OUT = ("uint8", "int8", "int16", "int32")


def _int(v) -> int:
    return int(np.asarray(v).reshape(-1)[0])


# ---------------------------------------------------------------- QMean
def _reduce_block(shape, axes) -> tuple[int, int, int] | None:
    """``(outer, reduced, inner)`` sizes when the reduced axes form one block once size-1
    axes are ignored, else None."""
    r = len(shape)
    red = {int(a) % r for a in axes}
    seq = [(i in red) for i, d in enumerate(shape) if d != 1]
    s = "".join("r" if f else "k" for f in seq)   # must match keep* reduce* keep*
    core = s.strip("k")
    if "k" in core:
        return None
    dims = [(d, i in red) for i, d in enumerate(shape) if d != 1]
    lead = len(s) - len(s.lstrip("k"))
    o = int(np.prod([d for d, _ in dims[:lead]], dtype=np.int64))
    rr = int(np.prod([d for d, _ in dims[lead:lead + len(core)]], dtype=np.int64))
    i = int(np.prod([d for d, _ in dims[lead + len(core):]], dtype=np.int64))
    return o, rr, i


@register_kernel
class QMeanKernel(Kernel):
    op, name = "QMean", "qmean"

    def supports(self, node) -> bool:
        x = node.inputs[0]
        at = node.attrs
        if not (is_int_code(x.dtype) and str(node.outputs[0].dtype) in _OUT and x.size and x.rank >= 1):
            return False
        if not all(np.asarray(at.get(k, 0)).size == 1 for k in ("x_zp", "y_zp")):
            return False
        return (scalar_rq(at["multiplier"], at["shift"]) is not None and shift_ok(at["shift"])
                and _reduce_block(x.shape, at["axes"]) is not None)

    def prepare(self, node) -> Prepared:
        _o, _r, i = _reduce_block(node.inputs[0].shape, node.attrs["axes"])
        return Prepared(scratch=8 * i if i > 1 else 0)

    def build(self, b: Binding):
        x, out = ro(b.inputs[0]), b.outputs[0]
        at = b.attrs
        o, rr, i = _reduce_block(x.shape, at["axes"])
        acc = b.scratch[:8 * i].view(np.int64) if i > 1 else np.zeros(1, np.int64)
        m, r, n = scalar_rq(at["multiplier"], at["shift"])
        args = (o, rr, i, _int(at.get("x_zp", 0)), m, r, n, _int(at.get("y_zp", 0)), _int(at["act_min"]),
                _int(at["act_max"]))
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("qmean")

        def run():
            f(xf, of, acc, *args)
        return run


# ---------------------------------------------------------------- window pools
def _pool_geometry(x_shape, a) -> tuple[list[int], tuple[int, int]]:
    geo = window_geometry(x_shape[2:], a["kernel_shape"], a.get("strides"), a.get("dilations"), a.get("pads"),
                          a.get("auto_pad") or "NOTSET", ceil_mode=bool(a.get("ceil_mode", 0)))
    if geo.ndim == 1:
        return [1, geo.kernel[0], 1, geo.strides[0], 1, geo.dilations[0], 0, geo.pads_begin[0]], (1, geo.out_shape[0])
    return ([geo.kernel[0], geo.kernel[1], geo.strides[0], geo.strides[1], geo.dilations[0], geo.dilations[1],
             geo.pads_begin[0], geo.pads_begin[1]], tuple(geo.out_shape))


def _as4d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]) if a.ndim == 3 else a


class _WindowInt(Kernel):
    mode = 1

    def _window_ok(self, node) -> bool:
        x = node.inputs[0]
        if not (is_int_code(x.dtype) and x.rank in (3, 4) and x.size):
            return False
        try:
            _pool_geometry(x.shape, node.attrs)
        except Exception:
            return False
        return True

    def precision(self, node) -> np.dtype:
        return F32

    def prepare(self, node) -> Prepared:
        g, (oh, ow) = _pool_geometry(node.inputs[0].shape, node.attrs)
        dt = self.precision(node)
        nbuf, nacc = qwindow_scratch(oh, ow, *g[:6])
        return Prepared(attrs={"qpool_geometry": g, "qpool_precision": dt.name},
                        scratch=carve_bytes([(dt, (nbuf,)), (dt, (nacc,)), (node.outputs[0].dtype, (nacc,))]))

    def params(self, b: Binding, c: int):
        raise NotImplementedError

    def build(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qpool_geometry"])
        dt = np.dtype(b.attrs["qpool_precision"])
        x, out = _as4d(ro(b.inputs[0])), _as4d(b.outputs[0])
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        nbuf, nacc = qwindow_scratch(oh, ow, kh, kw, sh, sw, dh, dw)
        buf, acc, stage = carve(b.scratch, [(dt, (nbuf,)), (dt, (nacc,)), (out.dtype, (nacc,))])
        z, padv, tail = self.params(b, c, dt)
        w = ro(np.zeros((1, 1), dt))
        xf, of = x.reshape(-1), out.reshape(-1)
        mode = self.mode
        f = jit("qwindow")

        def run():
            f(xf, of, w, z, padv, buf, acc, stage, n, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, mode, *tail)
        return run


@register_kernel
class QAvgPoolKernel(_WindowInt):
    op, name, mode = "QAvgPool", "qavgpool", 2

    def supports(self, node) -> bool:
        at = node.attrs
        if not (self._window_ok(node) and str(node.outputs[0].dtype) in _OUT):
            return False
        if not all(np.asarray(at.get(k, 0)).size == 1 for k in ("x_zp", "y_zp")):
            return False
        return scalar_rq(at["multiplier"], at["shift"]) is not None and shift_ok(at["shift"]) and \
            self._bound(node) <= F64_EXACT

    def _bound(self, node) -> float:
        g, _ = _pool_geometry(node.inputs[0].shape, node.attrs)
        return float(code_amax(node.inputs[0].dtype, node.attrs.get("x_zp", 0))) * g[0] * g[1]

    def precision(self, node) -> np.dtype:
        return F32 if self._bound(node) <= F32_EXACT else F64

    def params(self, b: Binding, c: int, dt):
        at = b.attrs
        m, r, n = scalar_rq(at["multiplier"], at["shift"])
        ones = np.ones(c, np.int64)
        mm, rr, nn = ro(ones * m), ro(ones * r), ro(ones * n)
        tail = (ro(np.zeros(c, np.int64)), mm, rr, nn, mm, rr, nn, False, _int(at.get("y_zp", 0)), _int(at["act_min"]),
                _int(at["act_max"]))
        return ro(np.array([_int(at.get("x_zp", 0))], dt)), ro(np.zeros(1, dt)), tail


@register_kernel
class MaxPoolInt(_WindowInt):
    op, name, mode = "MaxPool", "maxpool_int", 1

    def supports(self, node) -> bool:
        return (self._window_ok(node) and len(node.outputs) == 1 and node.outputs[0].dtype == node.inputs[0].dtype
                and int(node.attrs.get("storage_order", 0)) == 0)

    def params(self, b: Binding, c: int, dt):
        info = np.iinfo(b.inputs[0].dtype)
        one = ro(np.zeros(1, np.int64))
        tail = (one, one, one, one, one, one, one, False, 0, int(info.min), int(info.max))
        return ro(np.zeros(1, dt)), ro(np.array([info.min], dt)), tail


@register_kernel
class GlobalMaxPoolInt(Kernel):
    op, name = "GlobalMaxPool", "global_maxpool_int"

    def supports(self, node) -> bool:
        x = node.inputs[0]
        return is_int_code(x.dtype) and x.rank >= 3 and x.size > 0

    def build(self, b: Binding):
        x, out = ro(b.inputs[0]), b.outputs[0]
        r = x.shape[0] * x.shape[1]
        p = x.size // r
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("global_max_int")

        def run():
            f(xf, of, r, p)
        return run


# ---------------------------------------------------------------- Resize (nearest) on integers
try:
    from .tensor import Resize2dF32, _resize_kind, _resize_plan
except ImportError:  # the float module changed its helpers: integer Resize runs the reference
    log.debug("integer nearest Resize kernel disabled: tensor kernel helpers not found")
else:
    @register_kernel
    class ResizeNearestInt(Resize2dF32):
        op, name = "Resize", "resize_nearest_int"

        def supports(self, node) -> bool:
            x = node.inputs[0]
            if not (x.dtype.kind in "iu" and x.rank == 4 and x.size):
                return False
            if not all(v is None or v.is_const for v in node.inputs[1:]):
                return False
            scales = node.inputs[2].const if len(node.inputs) > 2 and node.inputs[2] is not None else None
            sizes = node.inputs[3].const if len(node.inputs) > 3 and node.inputs[3] is not None else None
            try:
                plan = _resize_plan(x.shape, node.attrs, scales, sizes)
            except Exception:
                return False
            return (plan is not None and tuple(plan[0]) == tuple(node.outputs[0].shape)
                    and _resize_kind(plan[1]) == "nearest")
