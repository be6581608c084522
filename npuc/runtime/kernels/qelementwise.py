"""Integer elementwise kernels, bit-exact with :mod:`npuc.ops.quant`: QAdd, QMul, QConcat,
QPRelu, QLut, Requantize, QuantizeLinear, DequantizeLinear.

Each is one numba loop over flat views (see :mod:`npuc.runtime.kernels.qloops`) with its
parameters resolved at build time. Broadcasting binary ops (QAdd, QMul) run a flat loop when
both inputs have the output's shape and a 4-D loop over ``np.broadcast_to`` views otherwise
(any numpy broadcast up to rank 4: scalar, per-channel ``[1, C, 1, 1]``, trailing vectors...).
QConcat copies an input whose parameters equal the output's and requantizes the others
straight into their slice of the output. Quantize/DequantizeLinear handle per-tensor and
per-axis parameters as ``(outer, C, inner)`` loops.
"""
from __future__ import annotations

import numpy as np

from .base import Binding, Kernel, register_kernel
from .qcommon import is_int_code, ro, ro_inputs, scalar_rq, shift_ok
from .qloops import jit

_OUT = ("uint8", "int8", "int16", "int32")
_IDENTITY = (1 << 30, 30)      # m, n of the multiplier 1.0: requantize(d) = d


def _scalar(v) -> bool:
    return np.asarray(v).size == 1


def _int(v) -> int:
    return int(np.asarray(v).reshape(-1)[0])


def _bcast_ok(node) -> bool:
    a, b = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    if not (is_int_code(a.dtype) and is_int_code(b.dtype) and str(out.dtype) in _OUT and out.size):
        return False
    return (a.shape == b.shape == out.shape) or out.rank <= 4


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` are the same buffer (an in-place op): use the one-array loop variant."""
    return a.ctypes.data == b.ctypes.data and a.nbytes == b.nbytes


def _bcast_views(a: np.ndarray, b: np.ndarray, out: np.ndarray):
    """Flat views when all shapes agree, else 4-D broadcast views of a and b and a 4-D out."""
    if a.shape == b.shape == out.shape:
        return True, a.reshape(-1), b.reshape(-1), out.reshape(-1)
    pad = (1,) * (4 - out.ndim)
    shape4 = pad + out.shape

    def four(v):
        v = v.reshape((1,) * (4 - v.ndim) + v.shape)
        return np.broadcast_to(v, shape4)

    return False, four(a), four(b), out.reshape(shape4)


@register_kernel
class QAddKernel(Kernel):
    op, name = "QAdd", "qadd"
    inplace_input = 0

    def supports(self, node) -> bool:
        at = node.attrs
        n = np.asarray(at["shift"]).reshape(-1)
        return (_bcast_ok(node) and all(_scalar(at[k]) for k in ("a_zp", "b_zp", "y_zp", "a_mult", "b_mult", "shift"))
                and 0 <= int(n[0]) <= 63)

    def build(self, b: Binding):
        at = b.attrs
        flat, x, y, out = _bcast_views(*ro_inputs(b)[:2], b.outputs[0])
        n = _int(at["shift"])
        r = (1 << (n - 1)) if n > 0 else 0
        args = (_int(at["a_zp"]), _int(at["a_mult"]), _int(at["b_zp"]), _int(at["b_mult"]), r, n, _int(at["y_zp"]),
                _int(at["act_min"]), _int(at["act_max"]))
        if flat and _same(x, out):
            f = jit("qadd_flat_ip")

            def run():
                f(out, y, *args)
            return run
        f = jit("qadd_flat" if flat else "qadd_4d")

        def run():
            f(x, y, out, *args)
        return run


@register_kernel
class QMulKernel(Kernel):
    op, name = "QMul", "qmul"
    inplace_input = 0

    def supports(self, node) -> bool:
        at = node.attrs
        return (_bcast_ok(node) and all(_scalar(at[k]) for k in ("a_zp", "b_zp", "y_zp"))
                and scalar_rq(at["multiplier"], at["shift"]) is not None and shift_ok(at["shift"]))

    def build(self, b: Binding):
        at = b.attrs
        flat, x, y, out = _bcast_views(*ro_inputs(b)[:2], b.outputs[0])
        m, r, n = scalar_rq(at["multiplier"], at["shift"])
        args = (_int(at["a_zp"]), _int(at["b_zp"]), m, r, n, _int(at["y_zp"]), _int(at["act_min"]),
                _int(at["act_max"]))
        if flat and _same(x, out):
            f = jit("qmul_flat_ip")

            def run():
                f(out, y, *args)
            return run
        f = jit("qmul_flat" if flat else "qmul_4d")

        def run():
            f(x, y, out, *args)
        return run


# ---------------------------------------------------------------- QConcat / Requantize
@register_kernel
class QConcatKernel(Kernel):
    op, name = "QConcat", "qconcat"

    def supports(self, node) -> bool:
        at = node.attrs
        out = node.outputs[0]
        ins = [v for v in node.inputs if v is not None]
        if not (str(out.dtype) in _OUT and all(is_int_code(v.dtype) for v in ins)):
            return False
        k = len(node.inputs)
        if any(len(np.asarray(at[a]).reshape(-1)) != k for a in ("x_zps", "multipliers", "shifts")):
            return False
        return shift_ok(at["shifts"]) and len(ins) == k

    def build(self, b: Binding):
        at = b.attrs
        out = b.outputs[0]
        axis = int(at["axis"])
        axis = axis + out.ndim if axis < 0 else axis
        rows = int(np.prod(out.shape[:axis], dtype=np.int64))
        inner = int(np.prod(out.shape[axis + 1:], dtype=np.int64))
        lt = out.shape[axis] * inner
        info = np.iinfo(out.dtype)
        zps = np.asarray(at["x_zps"], np.int64).reshape(-1)
        ms = np.asarray(at["multipliers"], np.int64).reshape(-1)
        ns = np.asarray(at["shifts"], np.int64).reshape(-1)
        yz = _int(at.get("y_zp", 0))
        of = out.reshape(-1)
        copies, loops, pos = [], [], 0
        for x, z, m, n in zip(ro_inputs(b), zps, ms, ns):
            k = x.shape[axis]
            if k == 0:
                continue
            if (int(m), int(n)) == _IDENTITY and int(z) == yz and x.dtype == out.dtype:
                idx = (slice(None),) * axis + (slice(pos, pos + k),)
                copies.append((out[idx], x))
            else:
                r = (1 << (int(n) - 1)) if n > 0 else 0
                loops.append((x.reshape(-1), rows, k * inner, pos * inner, int(z), int(m), r, int(n)))
            pos += k
        f = jit("requant_rows")
        lo, hi = int(info.min), int(info.max)
        copy = np.copyto

        def run():
            for dst, src in copies:
                copy(dst, src)
            for xf, rr, ln, off, z, m, r, n in loops:
                f(xf, of, rr, ln, lt, off, z, m, r, n, yz, lo, hi)
        return run


@register_kernel
class RequantizeKernel(Kernel):
    op, name = "Requantize", "requantize"
    inplace_input = 0

    def supports(self, node) -> bool:
        at = node.attrs
        return (is_int_code(node.inputs[0].dtype) and str(node.outputs[0].dtype) in _OUT
                and _scalar(at.get("x_zp", 0)) and _scalar(at.get("y_zp", 0))
                and scalar_rq(at["multiplier"], at["shift"]) is not None and shift_ok(at["shift"]))

    def build(self, b: Binding):
        at = b.attrs
        x, out = ro(b.inputs[0]).reshape(-1), b.outputs[0].reshape(-1)
        m, r, n = scalar_rq(at["multiplier"], at["shift"])
        args = (_int(at.get("x_zp", 0)), m, r, n, _int(at.get("y_zp", 0)), _int(at["act_min"]), _int(at["act_max"]))
        size = x.size
        if _same(x, out):
            f = jit("requant_ip")

            def run():
                f(out, *args)
            return run
        f = jit("requant_rows")

        def run():
            f(x, out, 1, size, size, 0, *args)
        return run


# ---------------------------------------------------------------- QPRelu / QLut
def _ocI(shape, axis: int) -> tuple[int, int, int]:
    axis = axis + len(shape) if axis < 0 else axis
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(shape[axis]),
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


@register_kernel
class QPReluKernel(Kernel):
    op, name = "QPRelu", "qprelu"
    inplace_input = 0

    def supports(self, node) -> bool:
        at = node.attrs
        x = node.inputs[0]
        if not (is_int_code(x.dtype) and str(node.outputs[0].dtype) in _OUT and x.rank >= 1):
            return False
        nm = np.asarray(at["neg_mult"]).reshape(-1)
        if np.asarray(at["neg_shift"]).size != nm.size or not shift_ok(at["neg_shift"]):
            return False
        if nm.size > 1:
            ax = int(at.get("axis", 1))
            if not -x.rank <= ax < x.rank or x.shape[ax % x.rank] != nm.size:
                return False
        return (all(_scalar(at.get(k, 0)) for k in ("x_zp", "y_zp", "pos_mult", "pos_shift"))
                and shift_ok(at["pos_shift"]))

    def build(self, b: Binding):
        at = b.attrs
        x, out = ro(b.inputs[0]), b.outputs[0]
        nm = np.ascontiguousarray(np.asarray(at["neg_mult"], np.int64).reshape(-1))
        nn = np.ascontiguousarray(np.asarray(at["neg_shift"], np.int64).reshape(-1))
        nr = ro(np.where(nn > 0, np.left_shift(np.int64(1), np.maximum(nn - 1, 0)), 0).astype(np.int64))
        nm, nn = ro(nm), ro(nn)
        if nm.size > 1:
            o, c, i = _ocI(x.shape, int(at.get("axis", 1)))
        else:
            o, c, i = 1, 1, x.size
        pm, pr, pn = scalar_rq(at["pos_mult"], at["pos_shift"])
        info = np.iinfo(out.dtype)
        args = (o, c, i, _int(at.get("x_zp", 0)), pm, pr, pn, nm, nr, nn, _int(at.get("y_zp", 0)), int(info.min),
                int(info.max))
        xf, of = x.reshape(-1), out.reshape(-1)
        if _same(xf, of):
            f = jit("qprelu_ip")

            def run():
                f(of, *args)
            return run
        f = jit("qprelu")

        def run():
            f(xf, of, *args)
        return run


@register_kernel
class QLutKernel(Kernel):
    op, name = "QLut", "qlut"
    inplace_input = 0

    def supports(self, node) -> bool:
        x = node.inputs[0]
        if not (is_int_code(x.dtype) and str(node.outputs[0].dtype) in _OUT):
            return False
        t = np.asarray(node.attrs["table"]).reshape(-1)
        return t.size == (256 if x.dtype.itemsize == 1 else 513)

    def build(self, b: Binding):
        x, out = ro(b.inputs[0]), b.outputs[0]
        table = ro(np.ascontiguousarray(np.asarray(b.attrs["table"], np.int64).reshape(-1)))
        qmin = int(np.iinfo(x.dtype).min)
        xf, of = x.reshape(-1), out.reshape(-1)
        name = "qlut8" if x.dtype.itemsize == 1 else "qlut16"
        if _same(xf, of):
            f = jit(name + "_ip")

            def run():
                f(of, table, qmin)
            return run
        f = jit(name)

        def run():
            f(xf, of, table, qmin)
        return run


# ---------------------------------------------------------------- Quantize / Dequantize
def _qdq_ok(node) -> bool:
    x = node.inputs[0]
    s = node.inputs[1]
    z = node.inputs[2] if len(node.inputs) > 2 else None
    if int(node.attrs.get("block_size", 0) or 0) or not s.is_const or (z is not None and not z.is_const):
        return False
    if x.rank == 0 or x.size == 0:
        return False
    if s.size > 1:
        if s.rank != 1 or (z is not None and z.size != s.size):
            return False
        ax = int(node.attrs.get("axis", 1))
        if not -x.rank <= ax < x.rank or x.shape[ax % x.rank] != s.size:
            return False
    elif z is not None and z.size != 1:
        return False
    return True


def _qdq_layout(b: Binding, x_shape, nparams: int) -> tuple[int, int, int]:
    if nparams > 1:
        return _ocI(x_shape, int(b.attrs.get("axis", 1)))
    return 1, 1, int(np.prod(x_shape, dtype=np.int64))


_Q_OUT = ("uint8", "int8", "int16", "uint16", "int32")


@register_kernel
class QuantizeLinearKernel(Kernel):
    op, name = "QuantizeLinear", "quantize_linear"

    def supports(self, node) -> bool:
        x, s = node.inputs[0], node.inputs[1]
        return (x.dtype == np.float32 and s.dtype.kind == "f" and str(node.outputs[0].dtype) in _Q_OUT
                and _qdq_ok(node))

    def build(self, b: Binding):
        x, out = ro(b.inputs[0]), b.outputs[0]
        s = np.ascontiguousarray(np.asarray(b.inputs[1], np.float32).reshape(-1))
        z = b.inputs[2] if len(b.inputs) > 2 else None
        zf = ro(np.zeros(s.size, np.float64) if z is None
                else np.ascontiguousarray(np.asarray(z, np.int64).reshape(-1).astype(np.float64)))
        s = ro(s)
        o, c, i = _qdq_layout(b, x.shape, s.size)
        info = np.iinfo(out.dtype)
        lo, hi = float(info.min), float(info.max)
        xf, of = x.reshape(-1), out.reshape(-1)
        if out.dtype.itemsize <= 2:
            f = jit("quantize_lin16")
            zf, lo, hi = ro(zf.astype(np.float32)), np.float32(lo), np.float32(hi)
        else:
            f = jit("quantize_lin")

        def run():
            f(xf, of, o, c, i, s, zf, lo, hi)
        return run


@register_kernel
class DequantizeLinearKernel(Kernel):
    op, name = "DequantizeLinear", "dequantize_linear"

    def supports(self, node) -> bool:
        x, s = node.inputs[0], node.inputs[1]
        return (x.dtype.kind in "iu" and x.dtype.itemsize <= 4 and s.dtype == np.float32
                and node.outputs[0].dtype == np.float32 and _qdq_ok(node))

    def build(self, b: Binding):
        x, out = ro(b.inputs[0]), b.outputs[0]
        s = np.ascontiguousarray(np.asarray(b.inputs[1], np.float32).reshape(-1).astype(np.float64))
        z = b.inputs[2] if len(b.inputs) > 2 else None
        zi = ro(np.zeros(s.size, np.int64) if z is None else np.ascontiguousarray(np.asarray(z, np.int64).reshape(-1)))
        s = ro(s)
        o, c, i = _qdq_layout(b, x.shape, s.size)
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("dequantize_lin")

        def run():
            f(xf, of, o, c, i, s, zi)
        return run

