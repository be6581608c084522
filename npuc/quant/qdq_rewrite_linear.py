"""QDQ fold of the linear ops: ``DQ(x) DQ(W) [DQ(b)] → Conv/Gemm/MatMul → [clamp] → Q(y)``
becomes ``QConv``/``QGemm`` (constant weights, per-channel or per-tensor) or ``QMatMul``
(two activations, per-tensor). See :mod:`npuc.quant.qdq` for the math.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, Value
from .qdq_editor import QDQEditor
from .qdq_match import DQInput, QOutput, act_input, dq_input, output_bounds, q_output
from .qdq_params import ACT_DTYPES, QP, bias_at_scale, multiplier_attrs, real_multiplier


class LinearRewrites(QDQEditor):
    """``rw_Conv``, ``rw_Gemm``, ``rw_MatMul``: each returns whether it folded the group."""

    def rw_Conv(self, n: Node) -> bool:
        x, w, b = act_input(n.inputs[0]), dq_input(n.inputs[1]), n.input(2)
        if x is None or w is None or w.q.const is None or w.qp.dtype not in ACT_DTYPES:
            return False
        if n.attrs.get("activation") is not None:
            return False
        m = w.q.shape[0]
        if not (w.qp.per_tensor or (w.qp.axis == 0 and w.qp.scale.size == m)):
            return False
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return False
        bias = self._bias(b, x.qp.s, w.qp.scale, m, 1.0)
        if bias is False:
            return False
        real = real_multiplier(x.qp.s, np.broadcast_to(w.qp.scale, (m,)), out.qp.s)
        mult, shift = multiplier_attrs(real, True)
        lo, hi = output_bounds(out)
        attrs = {k: n.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=x.qp.z, w_zp=w.qp.zero_point.tolist() if not w.qp.per_tensor else w.qp.z,
                     y_zp=out.qp.z, multiplier=mult, shift=shift, act_min=lo, act_max=hi,
                     out_dtype=str(out.qp.dtype))
        wv = w.q
        if wv.quant is None:
            wv.quant = w.qp.ir()
        bv = self.const(f"{n.name}_bias_q", bias)
        y = self.node("QConv", [x.q, wv, bv], attrs, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    def _bias(self, b: Value | None, s_x: float, s_w: np.ndarray, channels: int, beta: float):
        acc_scale = np.float32(s_x) * np.broadcast_to(np.asarray(s_w, np.float32), (channels,))
        if b is None:
            return np.zeros(channels, np.int32)
        bi = dq_input(b)
        if bi is not None and bi.q.const is not None:
            return bias_at_scale(bi.q.const, bi.qp, acc_scale, channels, beta)
        if b.const is not None and b.dtype.kind == "f":
            c = b.const.reshape(-1)
            if c.size not in (1, channels):
                return False
            return bias_at_scale(np.broadcast_to(c, (channels,)), None, acc_scale, channels, beta)
        return False

    def rw_Gemm(self, n: Node) -> bool:
        a, bq = act_input(n.inputs[0]), dq_input(n.inputs[1])
        if a is None or bq is None or bq.q.const is None or n.attrs.get("transA") or a.q.rank != 2:
            return False
        if bq.qp.dtype not in ACT_DTYPES or n.attrs.get("activation") is not None:
            return False
        trans_b = bool(n.attrs.get("transB"))
        bmat = bq.q.const.T if trans_b else bq.q.const
        nout = bmat.shape[1]
        col_axis = 0 if trans_b else 1
        if not (bq.qp.per_tensor or (bq.qp.axis == col_axis and bq.qp.scale.size == nout)):
            return False
        c = n.input(2)
        if c is not None and c.shape not in ((nout,), (1, nout), (1,), ()):
            return False
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return False
        alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
        bias = self._bias(c, a.qp.s, bq.qp.scale, nout, beta)
        if bias is False:
            return False
        y = self._qgemm(n, a, bmat, bq, nout, bias, alpha, out)
        if y is False:
            return False
        self.finish(n, out, y)
        return True

    def _qgemm(self, n: Node, a: DQInput, bmat: np.ndarray, bq: DQInput, nout: int, bias, alpha: float,
               out: QOutput, a_value: Value | None = None) -> Value:
        sb = np.broadcast_to(bq.qp.scale, (nout,))
        real = real_multiplier(a.qp.s, sb, out.qp.s)
        if alpha != 1.0:
            real = (real * np.float32(alpha)).astype(np.float32)
        if np.any(real < 0):
            return False
        mult, shift = multiplier_attrs(real, True)
        lo, hi = output_bounds(out)
        bqp = QP(bq.qp.scale, bq.qp.zero_point, bq.qp.dtype, None if bq.qp.per_tensor else 1)
        if bmat is bq.q.const:
            bv = bq.q
            if bv.quant is None:
                bv.quant = bqp.ir()
        else:
            bv = self.const(f"{bq.q.name}_kn", np.ascontiguousarray(bmat), bqp)
        cv = self.const(f"{n.name}_bias_q", bias)
        attrs = {"a_zp": a.qp.z, "b_zp": bq.qp.zero_point.tolist() if not bq.qp.per_tensor else bq.qp.z,
                 "y_zp": out.qp.z, "multiplier": mult, "shift": shift, "act_min": lo, "act_max": hi,
                 "out_dtype": str(out.qp.dtype)}
        y = self.node("QGemm", [a_value if a_value is not None else a.q, bv, cv], attrs, at=n, name=n.name)
        return y

    def rw_MatMul(self, n: Node) -> bool:
        a = act_input(n.inputs[0])
        if a is None:
            return False
        b = dq_input(n.inputs[1])
        if b is None or b.qp.dtype not in ACT_DTYPES:
            return False
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return False
        if b.q.const is not None and b.q.rank == 2 and a.q.rank >= 2:
            nout = b.q.shape[1]
            if not (b.qp.per_tensor or (b.qp.axis == 1 and b.qp.scale.size == nout)):
                return False
            bias = np.zeros(nout, np.int32)
            a2 = None
            if a.q.rank != 2:
                shp = self.const(f"{n.name}_a2d", np.array([-1, a.q.shape[-1]], np.int64))
                a2 = self.node("Reshape", [a.q, shp], {}, at=n, name=f"{n.name}_flat")
                a2.quant = a.qp.ir()
            y = self._qgemm(n, a, b.q.const, b, nout, bias, 1.0, out, a_value=a2)
            if y is False:
                return False
            if a.q.rank != 2:
                y.quant = out.qp.ir()
                shp = self.const(f"{n.name}_yshape", np.array(n.outputs[0].shape, np.int64))
                y = self.node("Reshape", [y, shp], {}, at=n, name=f"{n.name}_unflat")
            self.finish(n, out, y)
            return True
        if not b.qp.per_tensor:
            return False
        mult, shift = multiplier_attrs(real_multiplier(a.qp.s, b.qp.s, out.qp.s), False)
        lo, hi = output_bounds(out)
        y = self.node("QMatMul", [a.q, b.q], {"a_zp": a.qp.z, "b_zp": b.qp.z, "y_zp": out.qp.z,
                                              "multiplier": mult, "shift": shift, "act_min": lo, "act_max": hi,
                                              "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True
