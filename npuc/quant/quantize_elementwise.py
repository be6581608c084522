"""Quantize-pass handlers of the other integer ops: binary (``QAdd``/``QMul``), ``QConcat``,
means (``QMean``, ``QAvgPool``), ``QPRelu``, clamps (an integer ``Clip``), lookup tables
(``QLut``), and :meth:`ElementwiseHandlers.passthrough` for ops that move data unchanged.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import Node
from .qparams import activation_bounds, add_multipliers, lut_table, quantize, quantize_multiplier
from .quantize_values import QuantizerBase, _Fallback, _from_ir, _scalar


class ElementwiseHandlers(QuantizerBase):
    """``q_<op>`` handlers: the node as its integer op (True), or :class:`_Fallback` to leave
    it in float. :meth:`lut` and :meth:`passthrough` serve the ops listed in
    :data:`~npuc.quant.quantize.PASSTHROUGH` and the table ops."""

    def _binary_inputs(self, n: Node, prec: str):
        a, b = n.inputs
        if a.is_const and b.is_const:
            raise _Fallback("constant operands")
        return self.as_q(a, prec), self.as_q(b, prec)

    def q_Add(self, n: Node, sign: int = 1) -> bool:
        prec, qt, qy = self.out_qparams(n)
        aq, bq = self._binary_inputs(n, prec)
        sa, za = _scalar(_from_ir(aq))
        sb, zb = _scalar(_from_ir(bq))
        sy, zy = _scalar(qy)
        am, bm, shift = add_multipliers(sa / sy, sb / sy, sign)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        y = self.add("QAdd", [aq, bq], {"a_zp": za, "b_zp": zb, "y_zp": zy, "a_mult": am, "b_mult": bm,
                                         "shift": shift, "act_min": lo, "act_max": hi, "out_dtype": qt.value},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_Sub(self, n: Node) -> bool:
        return self.q_Add(n, sign=-1)

    def q_Mul(self, n: Node) -> bool:
        prec, qt, qy = self.out_qparams(n)
        aq, bq = self._binary_inputs(n, prec)
        sa, za = _scalar(_from_ir(aq))
        sb, zb = _scalar(_from_ir(bq))
        sy, zy = _scalar(qy)
        m, s = quantize_multiplier(sa * sb / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        y = self.add("QMul", [aq, bq], {"a_zp": za, "b_zp": zb, "y_zp": zy, "multiplier": int(m), "shift": int(s),
                                         "act_min": lo, "act_max": hi, "out_dtype": qt.value},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_Concat(self, n: Node) -> bool:
        prec, qt, qy = self.out_qparams(n)
        ins = [self.as_q(v, prec) for v in n.inputs]
        sy, zy = _scalar(qy)
        zps, ms, ss = [], [], []
        for q in ins:
            s, z = _scalar(_from_ir(q))
            m, sh = quantize_multiplier(s / sy)
            zps.append(z)
            ms.append(int(m))
            ss.append(int(sh))
        y = self.add("QConcat", ins, {"axis": n.attrs["axis"], "x_zps": zps, "multipliers": ms, "shifts": ss,
                                      "y_zp": zy, "out_dtype": qt.value}, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def _qmean(self, n: Node, axes: list[int], keepdims: int) -> bool:
        prec, qt, qy = self.out_qparams(n)
        xq = self.as_q(n.inputs[0], prec)
        sx, zx = _scalar(_from_ir(xq))
        sy, zy = _scalar(qy)
        count = int(np.prod([n.inputs[0].shape[a] for a in axes]))
        m, s = quantize_multiplier(sx / (sy * count))
        y = self.add("QMean", [xq], {"axes": axes, "keepdims": keepdims, "x_zp": zx, "y_zp": zy,
                                     "multiplier": int(m), "shift": int(s), "act_min": qt.qmin, "act_max": qt.qmax,
                                     "out_dtype": qt.value}, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_GlobalAveragePool(self, n: Node) -> bool:
        return self._qmean(n, list(range(2, n.inputs[0].rank)), 1)

    def q_ReduceMean(self, n: Node) -> bool:
        ax = n.input(1)
        r = n.inputs[0].rank
        if ax is None or not ax.is_const:
            if n.attrs.get("noop_with_empty_axes"):
                raise _Fallback("no axes")
            axes = list(range(r))
        else:
            axes = sorted(int(a) % r for a in ax.const.reshape(-1))
        return self._qmean(n, axes, int(n.attrs["keepdims"]))

    def q_AveragePool(self, n: Node) -> bool:
        from ..ops.nn import pool_node_geometry

        a = n.attrs
        geo = pool_node_geometry(n.inputs[0].shape, **a)
        if any(geo.extra) or (not a["count_include_pad"] and any(geo.pads)):
            raise _Fallback("window count varies")
        prec, qt, qy = self.out_qparams(n)
        xq = self.as_q(n.inputs[0], prec)
        sx, zx = _scalar(_from_ir(xq))
        sy, zy = _scalar(qy)
        m, s = quantize_multiplier(sx / (sy * int(np.prod(geo.kernel))))
        attrs = {k: a[k] for k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=zx, y_zp=zy, multiplier=int(m), shift=int(s), act_min=qt.qmin, act_max=qt.qmax,
                     out_dtype=qt.value)
        y = self.add("QAvgPool", [xq], attrs, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def _prelu(self, n: Node, alpha: np.ndarray) -> bool:
        prec, qt, qy = self.out_qparams(n)
        x = n.inputs[0]
        xq = self.as_q(x, prec)
        sx, zx = _scalar(_from_ir(xq))
        sy, zy = _scalar(qy)
        pm, ps = quantize_multiplier(sx / sy)
        nm, ns = quantize_multiplier(np.abs(alpha.astype(np.float64)) * sx / sy)
        nm = np.where(alpha < 0, -nm, nm)  # a negative slope: a negative multiplier
        y = self.add("QPRelu", [xq], {"x_zp": zx, "y_zp": zy, "pos_mult": int(pm), "pos_shift": int(ps),
                                      "neg_mult": np.atleast_1d(nm).tolist() if alpha.size > 1 else _one(nm),
                                      "neg_shift": np.atleast_1d(ns).tolist() if alpha.size > 1 else _one(ns),
                                      "axis": 1, "out_dtype": qt.value}, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_PRelu(self, n: Node) -> bool:
        slope = n.inputs[1]
        x = n.inputs[0]
        if not slope.is_const:
            raise _Fallback("slope not constant")
        s = slope.const
        if s.size == 1:
            return self._prelu(n, s.reshape(-1))
        full = np.broadcast_to(s, x.shape)
        if x.rank < 2:
            raise _Fallback("rank")
        per_c = np.moveaxis(full, 1, 0).reshape(x.shape[1], -1)
        if not np.all(per_c == per_c[:, :1]):
            raise _Fallback("slope not per channel")
        return self._prelu(n, per_c[:, 0].copy())

    def q_LeakyRelu(self, n: Node) -> bool:
        return self._prelu(n, np.array([float(n.attrs["alpha"])]))

    def q_Relu(self, n: Node) -> bool:
        return self._clamp(n, {"op": "Relu"})

    def q_Clip(self, n: Node) -> bool:
        from ..passes.fuse_activation import activation_spec

        spec = activation_spec(n)
        if spec is None:
            raise _Fallback("bounds not constant")
        return self._clamp(n, spec)

    def _clamp(self, n: Node, spec: dict) -> bool:
        # output in the input's parameters: a clamp of the integer codes
        x = n.inputs[0]
        prec = self.precision(n.outputs[0])
        xq = self.as_q(x, prec)
        qp = _from_ir(xq)
        lo, hi = activation_bounds(spec, qp)
        y = self.add("Clip", [xq, self.const(f"{n.name}_lo", np.array(lo, xq.dtype)),
                              self.const(f"{n.name}_hi", np.array(hi, xq.dtype))],
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qp)
        return True

    def lut(self, n: Node, fn: Callable[[np.ndarray], np.ndarray]) -> bool:
        prec, qt, qy = self.out_qparams(n)
        xq = self.as_q(n.inputs[0], prec)
        table = lut_table(fn, _from_ir(xq), qy)
        y = self.add("QLut", [xq], {"table": table, "out_dtype": qt.value},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def passthrough(self, n: Node) -> bool:
        x = n.inputs[0]
        prec = self.precision(n.outputs[0])
        xq = self.as_q(x, prec)
        qp = _from_ir(xq)
        if qp.axis is not None:
            raise _Fallback("per-channel activation")
        ins = [xq]
        for i, v in enumerate(n.inputs[1:], 1):
            if v is None:
                ins.append(None)
            elif n.op == "Pad" and i == 2:
                pad_val = float(v.const.reshape(-1)[0]) if v.is_const and v.const.size else 0.0
                ins.append(self.const(f"{n.name}_padval", quantize(np.array(pad_val, np.float32), qp)))
            elif v.is_const:
                ins.append(self.g.add_const(v.name, v.const))
            else:
                raise _Fallback("non-constant side input")
        if n.op == "Pad" and len(ins) < 3 and n.attrs.get("mode", "constant") == "constant":
            ins += [self.const(f"{n.name}_padval", quantize(np.array(0.0, np.float32), qp))]
        if n.op == "Resize" and n.attrs.get("mode") != "nearest":
            raise _Fallback("linear resize")
        node = self.g.make_node(n.op, ins, attrs=dict(n.attrs), name=self.fresh(n.name),
                                outputs=[o.name for o in n.outputs])
        for o, no in zip(n.outputs, node.outputs):
            if o.dtype.kind != "f":  # e.g. MaxPool indices
                self.float_of[id(o)] = no
                continue
            self.set_q(o, no, qp)
        return True


def _one(a) -> int:
    """The int of a one-element array of any shape (``int()`` wants 0-d arrays on numpy 2)."""
    return int(np.asarray(a).reshape(-1)[0])
