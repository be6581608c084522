"""QDQ fold of the elementwise and reduction ops: binary (``QAdd``/``QMul``), ``QConcat``,
means (``QMean``, ``QAvgPool``), lookup tables (``QLut``), ``QPRelu``, and Relu/Clip as an
integer ``Clip`` or a ``Requantize``. See :mod:`npuc.quant.qdq` for the patterns.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node
from ..ops.registry import get_op
from ..passes.fuse_activation import activation_spec
from .qdq_editor import QDQEditor
from .qdq_match import act_input, clamp_codes, const_of, dq_input, output_bounds, q_output
from .qdq_params import lut_table, multiplier_attrs, qadd_attrs, real_multiplier
from .qparams import quantize_multiplier


class ElementwiseRewrites(QDQEditor):
    """``rw_<op>`` for Add, Sub, Mul, Concat, GlobalAveragePool, ReduceMean, AveragePool,
    LeakyRelu, PRelu, Relu, Clip, and :meth:`lut` for the table ops; each returns whether it
    folded the group."""

    def _binary(self, n: Node):
        a, b = act_input(n.inputs[0]), act_input(n.inputs[1])
        if a is None or b is None or n.attrs.get("activation") is not None:
            return None
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return None
        return a, b, out

    def rw_Add(self, n: Node, sign: int = 1) -> bool:
        m = self._binary(n)
        if m is None:
            return False
        a, b, out = m
        lo, hi = output_bounds(out)
        attrs = {**qadd_attrs(a.qp, b.qp, out.qp, sign), "act_min": lo, "act_max": hi,
                 "out_dtype": str(out.qp.dtype)}
        self.finish(n, out, self.node("QAdd", [a.q, b.q], attrs, at=n, name=n.name))
        return True

    def rw_Sub(self, n: Node) -> bool:
        return self.rw_Add(n, -1)

    def rw_Mul(self, n: Node) -> bool:
        m = self._binary(n)
        if m is None:
            return False
        a, b, out = m
        mult, shift = multiplier_attrs(real_multiplier(a.qp.s, b.qp.s, out.qp.s), False)
        lo, hi = output_bounds(out)
        attrs = {"a_zp": a.qp.z, "b_zp": b.qp.z, "y_zp": out.qp.z, "multiplier": mult, "shift": shift,
                 "act_min": lo, "act_max": hi, "out_dtype": str(out.qp.dtype)}
        self.finish(n, out, self.node("QMul", [a.q, b.q], attrs, at=n, name=n.name))
        return True

    def rw_Concat(self, n: Node) -> bool:
        ins = [act_input(v) for v in n.inputs]
        if any(i is None for i in ins):
            return False
        out = q_output(self.g, n.outputs[0], allow_clamp=False)
        if out is None:
            return False
        zps, ms, ss = [], [], []
        for i in ins:
            m, s = multiplier_attrs(np.float32(i.qp.s) / np.float32(out.qp.s), False)
            zps.append(i.qp.z)
            ms.append(m)
            ss.append(s)
        y = self.node("QConcat", [i.q for i in ins], {"axis": n.attrs["axis"], "x_zps": zps, "multipliers": ms,
                                                     "shifts": ss, "y_zp": out.qp.z,
                                                     "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    # -------------------------------------------------------------------- means
    def _qmean(self, n: Node, axes: list[int], keepdims: int) -> bool:
        x = act_input(n.inputs[0])
        if x is None:
            return False
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return False
        count = int(np.prod([x.q.shape[a] for a in axes]))
        mult, shift = multiplier_attrs(np.float32(x.qp.s) / (np.float32(out.qp.s) * np.float32(count)), False)
        lo, hi = output_bounds(out)
        y = self.node("QMean", [x.q], {"axes": axes, "keepdims": keepdims, "x_zp": x.qp.z, "y_zp": out.qp.z,
                                       "multiplier": mult, "shift": shift, "act_min": lo, "act_max": hi,
                                       "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    def rw_GlobalAveragePool(self, n: Node) -> bool:
        return self._qmean(n, list(range(2, n.inputs[0].rank)), 1)

    def rw_ReduceMean(self, n: Node) -> bool:
        ax = n.input(1)
        r = n.inputs[0].rank
        if ax is None:
            if n.attrs.get("noop_with_empty_axes"):
                return False
            axes = list(range(r))
        elif ax.const is None:
            return False
        else:
            axes = sorted({int(a) % r for a in ax.const.reshape(-1)})
        return self._qmean(n, axes, int(n.attrs.get("keepdims", 1)))

    def rw_AveragePool(self, n: Node) -> bool:
        from ..ops.nn import pool_node_geometry

        x = act_input(n.inputs[0])
        if x is None:
            return False
        a = n.attrs
        geo = pool_node_geometry(x.q.shape, **a)
        if any(geo.extra) or (not a["count_include_pad"] and any(geo.pads)):
            return False
        out = q_output(self.g, n.outputs[0])
        if out is None:
            return False
        count = int(np.prod(geo.kernel))
        mult, shift = multiplier_attrs(np.float32(x.qp.s) / (np.float32(out.qp.s) * np.float32(count)), False)
        lo, hi = output_bounds(out)
        attrs = {k: a[k] for k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=x.qp.z, y_zp=out.qp.z, multiplier=mult, shift=shift, act_min=lo, act_max=hi,
                     out_dtype=str(out.qp.dtype))
        self.finish(n, out, self.node("QAvgPool", [x.q], attrs, at=n, name=n.name))
        return True

    # -------------------------------------------------------------------- unary
    def _unary(self, n: Node):
        """``(input, output)`` of a unary op between a DQ'd activation and Q nodes (no clamp
        in between), or None."""
        x = act_input(n.inputs[0])
        if x is None:
            return None
        out = q_output(self.g, n.outputs[0], allow_clamp=False)
        if out is None:
            return None
        return x, out

    def lut(self, n: Node) -> bool:
        m = self._unary(n) if len(n.inputs) == 1 else None
        if m is None:
            return False
        x, out = m
        d = get_op(n.op)
        table = lut_table(lambda v: d.run([v], n.attrs)[0], x.qp, out.qp)
        y = self.node("QLut", [x.q], {"table": table, "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    def _prelu(self, n: Node, alpha: np.ndarray) -> bool:
        m = self._unary(n)
        if m is None:
            return False
        x, out = m
        r = np.float32(x.qp.s) / np.float32(out.qp.s)
        pm, ps = multiplier_attrs(r, False)
        nm, ns = quantize_multiplier(np.abs(alpha.astype(np.float64)) * np.float64(r))
        nm = np.where(alpha < 0, -nm, nm)
        many = alpha.size > 1
        y = self.node("QPRelu", [x.q], {"x_zp": x.qp.z, "y_zp": out.qp.z, "pos_mult": pm, "pos_shift": ps,
                                        "neg_mult": np.atleast_1d(nm).tolist() if many else int(nm.reshape(-1)[0]),
                                        "neg_shift": np.atleast_1d(ns).tolist() if many else int(ns.reshape(-1)[0]),
                                        "axis": 1, "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    def rw_LeakyRelu(self, n: Node) -> bool:
        return self._prelu(n, np.array([float(n.attrs["alpha"])]))

    def rw_PRelu(self, n: Node) -> bool:
        x, slope = n.inputs[0], n.inputs[1]
        s = const_of(slope)
        if s is None:
            si = dq_input(slope)
            if si is None or si.q.const is None:
                return False
            s = get_op("DequantizeLinear").run([si.q.const, si.dq.inputs[1].const] + (
                [si.dq.inputs[2].const] if si.dq.input(2) is not None else []), si.dq.attrs)[0]
        s = np.asarray(s, np.float64)
        if s.size == 1:
            return self._prelu(n, s.reshape(-1))
        if x.rank < 2:
            return False
        full = np.broadcast_to(s, x.shape)
        per_c = np.moveaxis(full, 1, 0).reshape(x.shape[1], -1)
        if not np.all(per_c == per_c[:, :1]) or full.shape != x.shape:
            return False
        return self._prelu(n, per_c[:, 0].copy())

    def rw_Relu(self, n: Node) -> bool:
        return self._clamp(n, {"op": "Relu"})

    def rw_Clip(self, n: Node) -> bool:
        spec = activation_spec(n)
        return spec is not None and self._clamp(n, spec)

    def _clamp(self, n: Node, spec: dict) -> bool:
        m = self._unary(n)
        if m is None:
            return False
        x, out = m
        lo, hi = clamp_codes(spec, out.qp)
        if x.qp.same(out.qp):
            y = self.node("Clip", [x.q, self.const(f"{n.name}_lo", np.array(lo, x.q.dtype)),
                                   self.const(f"{n.name}_hi", np.array(hi, x.q.dtype))], {}, at=n, name=n.name)
        else:
            y = self._requantize(x.q, x.qp, out.qp, at=n, name=n.name, lo=lo, hi=hi)
        self.finish(n, out, y)
        return True
