"""Float32 Gemm and MatMul kernels: BLAS through ``np.matmul(..., out=)``.

* ``gemm_f32``: ``Y = alpha · A' · B' + beta · C``. A constant B is packed at compile time
  as ``alpha · B'`` — a contiguous ``(K, N)`` matrix — and a constant C as ``beta · C``, so
  a run is one ``np.matmul(A', Bp, out=Y)`` plus an in-place bias/activation pass. A
  transposed A is a transposed view (BLAS reads it with its transpose flag, no copy). A
  fused ``activation`` attribute (see :func:`~npuc.runtime.kernels._numba.parse_activation`)
  is applied in the same pass as the bias.
* ``matmul_f32``: ``np.matmul(A, B, out=Y)`` (numpy's batching and broadcasting are
  ONNX's), then the fused activation if any (not PRelu: that one stays a reference op).
"""
from __future__ import annotations

import numpy as np

from ._numba import ACT_NONE, ACT_PRELU, jit, parse_activation, ro
from .base import Binding, Kernel, Prepared, register_kernel

F32 = np.dtype(np.float32)


@register_kernel
class GemmF32(Kernel):
    op, name = "Gemm", "gemm_f32"
    handles_activation = True

    def supports(self, node) -> bool:
        a, b = node.inputs[0], node.inputs[1]
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if not (a.dtype == F32 and b.dtype == F32 and node.outputs[0].dtype == F32):
            return False
        act = parse_activation(node.attrs)
        if act is None or act[0] == ACT_PRELU:
            return False
        if c is not None and c.dtype != F32:
            return False
        if c is not None and not c.is_const and float(node.attrs.get("beta", 1.0)) != 1.0:
            return False
        return True

    def prepare(self, node) -> Prepared:
        a = node.attrs
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        b, c = node.inputs[1], (node.inputs[2] if len(node.inputs) > 2 else None)
        packed = {}
        attrs = {"fused_activation": list(parse_activation(a)), "b_packed": 0, "c_packed": 0}
        if b.is_const:
            bm = b.const.T if int(a.get("transB", 0)) else b.const
            packed[1] = np.ascontiguousarray(bm.astype(np.float64) * alpha if alpha != 1.0 else bm, F32)
            attrs["b_packed"] = 1
        if c is not None and c.is_const:
            cm = np.asarray(c.const, np.float64) * beta if beta != 1.0 else np.asarray(c.const)
            cm = np.asarray(cm, F32)
            while cm.ndim < 2:
                cm = cm.reshape((1,) + cm.shape)
            packed[2] = np.ascontiguousarray(cm)
            attrs["c_packed"] = 1
        return Prepared(packed=packed, attrs=attrs)

    def build(self, b: Binding):
        at = b.attrs
        am, bm = b.inputs[0], b.inputs[1]
        c = b.inputs[2] if len(b.inputs) > 2 else None
        out = b.outputs[0]
        if int(at.get("transA", 0)):
            am = am.T
        alpha = F32.type(1.0)
        if not int(at.get("b_packed", 0)):
            if int(at.get("transB", 0)):
                bm = bm.T
            alpha = F32.type(at.get("alpha", 1.0))
        beta = float(at.get("beta", 1.0))
        has_bias = c is not None and (beta != 0.0 or int(at.get("c_packed", 0)))
        m, n = out.shape
        const_c = has_bias and int(at.get("c_packed", 0))
        if has_bias:
            cc = c if c.ndim == 2 else c.reshape((1,) * (2 - c.ndim) + c.shape)
            bias2 = np.broadcast_to(cc, (m, n))
            full = ro(np.ascontiguousarray(bias2, F32).reshape(-1)) if const_c else ro(np.zeros(1, F32))
        else:
            bias2, full = None, ro(np.zeros(1, F32))
        act, a0, a1 = (int(v) if i == 0 else float(v) for i, v in enumerate(at["fused_activation"]))
        flat = out.reshape(-1)
        mm = np.matmul
        scale = alpha != 1.0
        dyn_c = has_bias and not const_c           # C computed at run time: numpy broadcast add
        need_ep = const_c or act != ACT_NONE
        ep = jit("add_act") if need_ep else None
        add = np.add

        def run():
            mm(am, bm, out=out)
            if scale:
                np.multiply(out, alpha, out=out)
            if dyn_c:
                add(out, bias2, out=out)
            if need_ep:
                ep(flat, full, const_c, act, a0, a1)
        return run


@register_kernel
class MatMulF32(Kernel):
    op, name = "MatMul", "matmul_f32"
    handles_activation = True

    def supports(self, node) -> bool:
        act = parse_activation(node.attrs)
        return (all(v.dtype == F32 for v in node.inputs) and node.outputs[0].dtype == F32
                and act is not None and act[0] != ACT_PRELU)

    def build(self, b: Binding):
        am, bm = b.inputs
        out = b.outputs[0]
        mm = np.matmul
        act, a0, a1 = parse_activation(b.attrs)
        if act == ACT_NONE:
            def run():
                mm(am, bm, out=out)
            return run
        ep = jit("add_act")
        flat, dummy = out.reshape(-1), ro(np.zeros(1, F32))

        def run():
            mm(am, bm, out=out)
            ep(flat, dummy, False, act, a0, a1)
        return run
