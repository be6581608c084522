"""The quantize pass's bookkeeping: :class:`QuantizerBase`, the base of the per-op handlers
(:mod:`.quantize_linear`, :mod:`.quantize_elementwise`) and of
:class:`~npuc.quant.quantize.Quantizer`.

It builds the new graph and gives each float value of the source graph, on demand, a float
twin (:meth:`QuantizerBase.as_float`, inserting a DequantizeLinear) or a quantized twin in
some precision (:meth:`QuantizerBase.as_q`, inserting a QuantizeLinear or a Requantize), with
parameters from the calibrated ranges. A handler raises :class:`_Fallback` to leave its node
in float.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import NpucError
from ..ir import Graph, Node, QuantParams, Value
from .qparams import QParams, QType, activation_bounds, choose_qparams, is_clamp_activation, quantize, \
    quantize_multiplier

if TYPE_CHECKING:
    from .quantize import QuantConfig


class _Fallback(Exception):
    """Raised by a handler: this node stays in float."""


def _ir_qp(qp: QParams) -> QuantParams:
    return QuantParams(np.asarray(qp.scale, np.float32), np.asarray(qp.zero_point, np.int64), qp.axis)


def _from_ir(v: Value) -> QParams:
    q = v.quant
    return QParams(np.asarray(q.scale, np.float32), np.asarray(q.zero_point, np.int64), QType(str(v.dtype)), q.axis)


def _scalar(qp: QParams) -> tuple[float, int]:
    return float(np.asarray(qp.scale).reshape(-1)[0]), int(np.asarray(qp.zero_point).reshape(-1)[0])


class QuantizerBase:
    """Source graph, ranges and options in; the new graph and the value twins (module
    docstring); the helpers every handler uses."""

    def __init__(self, graph: Graph, ranges: Mapping[str, tuple[float, float]], config: QuantConfig):
        self.src = graph
        self.ranges = ranges
        self.cfg = config
        self.g = Graph(graph.name)
        self.g.metadata = dict(graph.metadata)
        self.g.metadata["quantized"] = config.act_type
        self.float_of: dict[int, Value] = {}   # src value id -> float value in the new graph
        self.q_of: dict[int, Value] = {}       # src value id -> quantized value in the new graph
        self.int_ops = 0
        self.float_ops: list[str] = []

    # ------------------------------------------------------------------ precision
    def precision(self, v: Value) -> str:
        return self.cfg.overrides.get(v.name, self.cfg.act_type)

    def qtype(self, prec: str) -> QType:
        return QType(prec)

    def symmetric(self, qt: QType) -> bool:
        return qt in (QType.INT16,) or (qt == QType.INT8 and self.cfg.act_symmetric)

    def qparams_for(self, v: Value, prec: str) -> QParams:
        qt = self.qtype(prec)
        if v.is_const:
            c = v.const.astype(np.float64)
            lo, hi = (float(c.min()), float(c.max())) if c.size else (0.0, 0.0)
        else:
            if v.name not in self.ranges:
                raise NpucError(f"tensor {v.name!r} has no calibrated range: calibrate with --dataset or give "
                                f"its range in --quant-scheme")
            lo, hi = self.ranges[v.name]
        return choose_qparams(lo, hi, qt, symmetric=self.symmetric(qt))

    # ------------------------------------------------------------------ value access
    def fresh(self, base: str) -> str:
        return self.g.unique_name(base)

    def add(self, op: str, inputs, attrs=None, *, out_name: str, name: str | None = None) -> Value:
        n = self.g.make_node(op, inputs, attrs=attrs or {}, name=self.fresh(name or f"{out_name}/{op}"),
                             outputs=[out_name])
        return n.outputs[0]

    def const(self, name: str, arr) -> Value:
        return self.g.add_const(name, np.asarray(arr))

    def as_float(self, v: Value) -> Value:
        if v.is_const:
            return self.float_const(v)
        f = self.float_of.get(id(v))
        if f is not None:
            return f
        q = self.q_of[id(v)]
        qp = _from_ir(q)
        s = self.const(f"{v.name}_scale", np.asarray(qp.scale, np.float32))
        z = self.const(f"{v.name}_zp", np.asarray(qp.zero_point, q.dtype))
        attrs = {"axis": qp.axis} if qp.axis is not None else {}
        f = self.add("DequantizeLinear", [q, s, z], attrs, out_name=self.fresh(f"{v.name}_dq"))
        self.float_of[id(v)] = f
        return f

    def float_const(self, v: Value) -> Value:
        key = id(v)
        if key not in self.float_of:
            self.float_of[key] = self.g.add_const(v.name, v.const)
        return self.float_of[key]

    def as_q(self, v: Value, prec: str) -> Value:
        """The value quantized in precision ``prec`` (inserting Quantize/Requantize)."""
        qt = self.qtype(prec)
        q = self.q_of.get(id(v))
        if q is not None and q.dtype == qt.dtype:
            return q
        if v.is_const:
            qp = self.qparams_for(v, prec)
            arr = quantize(v.const, qp)
            c = self.g.add_const(f"{v.name}_q", arr)
            c.quant = _ir_qp(qp)
            return c
        if q is not None:  # another integer type: requantize
            src = _from_ir(q)
            dst = self.qparams_for(v, prec)
            ss, sz = _scalar(src)
            ds, dz = _scalar(dst)
            m, n = quantize_multiplier(ss / ds)
            out = self.add("Requantize", [q], {"x_zp": sz, "y_zp": dz, "multiplier": int(m), "shift": int(n),
                                               "act_min": qt.qmin, "act_max": qt.qmax, "out_dtype": qt.value},
                           out_name=self.fresh(f"{v.name}_{prec}"))
            out.quant = _ir_qp(dst)
            return out
        f = self.float_of[id(v)]
        qp = self.qparams_for(v, prec)
        s = self.const(f"{v.name}_scale", np.asarray(qp.scale, np.float32))
        z = self.const(f"{v.name}_zp", np.asarray(qp.zero_point, qt.dtype))
        out = self.add("QuantizeLinear", [f, s, z], out_name=self.fresh(f"{v.name}_q"))
        out.quant = _ir_qp(qp)
        self.q_of[id(v)] = out
        return out

    def set_q(self, src: Value, qv: Value, qp: QParams) -> None:
        qv.quant = _ir_qp(qp)
        self.q_of[id(src)] = qv

    # ------------------------------------------------------------------ helpers
    def out_qparams(self, n: Node) -> tuple[str, QType, QParams]:
        out = n.outputs[0]
        prec = self.precision(out)
        qt = self.qtype(prec)
        return prec, qt, self.qparams_for(out, prec)

    def clamp_bounds(self, act, qp: QParams) -> tuple[int, int]:
        if act and act["op"] in ("PRelu", "LeakyRelu"):
            return qp.qtype.qmin, qp.qtype.qmax
        if not is_clamp_activation(act):
            raise _Fallback(f"activation {act['op']} is not a clamp")
        return activation_bounds(act, qp)
