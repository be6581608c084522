"""The quantize pass: a float graph plus calibrated ranges → an integer graph.

Walks the (optimized, calibrated) float graph in order and rebuilds it. Each float value
gets, on demand, a quantized twin (same name, integer dtype, :class:`QuantParams`) or stays
float. An op with an integer implementation for its layer's precision becomes its integer
op (see :mod:`npuc.ops.quant`); any other op runs in float between a DequantizeLinear and a
QuantizeLinear, which the pass inserts only at those edges. Data-movement ops (reshape,
transpose, pooling by max, slicing, padding...) run unchanged on integer tensors and keep
their input's parameters.

Precision per layer comes from :class:`QuantConfig`: activations uint8 / int8 / int16 or
float, weights int8 / uint8, per channel (default) or per tensor; ``overrides`` maps a value
name (the op's output) to another precision ("float", "int16", ...), which is how mixed
precision and user-edited schemes work.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..errors import NpucError, OptionError
from ..ir import Graph, Node, QuantParams, Value
from ..ops.registry import get_op, ops_with_flag
from .qparams import (QParams, QType, activation_bounds, choose_qparams, dequantize, is_clamp_activation,
                      quantize, quantize_bias, quantize_multiplier)

log = logging.getLogger(__name__)

FLOAT = "float"
PRECISIONS = ("uint8", "int8", "int16", FLOAT)

#: ops that move or select data: run unchanged on integer tensors, output params = input params
PASSTHROUGH = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout", "MaxPool",
    "GlobalMaxPool", "Slice", "Split", "Gather", "GatherElements", "DepthToSpace", "SpaceToDepth",
    "Expand", "Tile", "ReduceMax", "ReduceMin", "Pad", "Resize",
})


@dataclass(frozen=True)
class QuantConfig:
    act_type: str = "uint8"              # default activation precision
    act_symmetric: bool = False          # int8 activations: symmetric (zp 0) or asymmetric
    weight_type: str = "int8"
    per_channel: bool = True
    overrides: Mapping[str, str] = field(default_factory=dict)   # value name -> precision
    float_outputs: bool = True           # dequantize graph outputs back to float
    weight_range_search: bool = False    # per-channel MSE-optimal clipping of weights (measured: no gain)

    def __post_init__(self):
        if self.act_type not in PRECISIONS:
            raise OptionError(f"unknown activation type {self.act_type!r}; choose one of {', '.join(PRECISIONS)}")
        if self.weight_type not in ("int8", "uint8"):
            raise OptionError(f"unknown weight type {self.weight_type!r}; choose int8 or uint8")
        for k, v in self.overrides.items():
            if v not in PRECISIONS:
                raise OptionError(f"precision of {k!r}: {v!r} is not one of {', '.join(PRECISIONS)}")


def _ir_qp(qp: QParams) -> QuantParams:
    return QuantParams(np.asarray(qp.scale, np.float32), np.asarray(qp.zero_point, np.int64), qp.axis)


def _from_ir(v: Value) -> QParams:
    q = v.quant
    return QParams(np.asarray(q.scale, np.float32), np.asarray(q.zero_point, np.int64), QType(str(v.dtype)), q.axis)


def _scalar(qp: QParams) -> tuple[float, int]:
    return float(np.asarray(qp.scale).reshape(-1)[0]), int(np.asarray(qp.zero_point).reshape(-1)[0])


class Quantizer:
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

    # ------------------------------------------------------------------ driver
    def run(self) -> Graph:
        for v in self.src.inputs:
            f = self.g.add_input(v.name, v.dtype, v.shape)
            self.float_of[id(v)] = f
        for n in self.src.nodes:
            handler = getattr(self, f"q_{n.op}", None)
            done = False
            if handler is not None and self.precision(n.outputs[0]) != FLOAT and all(
                    v is None or v.dtype.kind == "f" or v.is_const for v in n.inputs[:1]):
                try:
                    done = handler(n)
                except _Fallback as e:
                    log.debug("%s stays float: %s", n.name, e)
                    done = False
            if not done:
                self.float_node(n)
            else:
                self.int_ops += 1
        outs = []
        for v in self.src.outputs:
            if self.cfg.float_outputs or id(v) not in self.q_of:
                o = self.as_float(v)
            else:
                o = self.q_of[id(v)]
            if o.name != v.name:
                if o.producer is not None and not any(o is x for x in self.g.inputs) and \
                        not any(o is x for x in outs):
                    self.g.rename(o, v.name)
                else:
                    o = self.add("Identity", [o], out_name=v.name)
            outs.append(o)
        self.g.outputs = outs
        self.g.prune_values()
        return self.g

    def float_node(self, n: Node) -> None:
        ins = [None if v is None else self.as_float(v) for v in n.inputs]
        node = self.g.make_node(n.op, ins, attrs=dict(n.attrs), name=self.fresh(n.name),
                                outputs=[self.fresh(o.name) for o in n.outputs])
        for o, no in zip(n.outputs, node.outputs):
            if no.name != o.name and o.name not in self.g.values:
                self.g.rename(no, o.name)
            self.float_of[id(o)] = no
        self.float_ops.append(n.name)

    # ------------------------------------------------------------------ helpers
    def out_qparams(self, n: Node) -> tuple[str, QType, QParams]:
        out = n.outputs[0]
        prec = self.precision(out)
        qt = self.qtype(prec)
        return prec, qt, self.qparams_for(out, prec)

    def weight_qparams(self, w: np.ndarray, axis: int | None) -> QParams:
        return weight_qparams(w, axis if self.cfg.per_channel else None, QType(self.cfg.weight_type),
                              search=self.cfg.weight_range_search)

    def requant_params(self, real) -> tuple[list[int], list[int]]:
        m, n = quantize_multiplier(np.asarray(real, np.float64))
        return np.atleast_1d(m).astype(np.int64).tolist(), np.atleast_1d(n).astype(np.int64).tolist()

    def clamp_bounds(self, act, qp: QParams) -> tuple[int, int]:
        if act and act["op"] in ("PRelu", "LeakyRelu"):
            return qp.qtype.qmin, qp.qtype.qmax
        if not is_clamp_activation(act):
            raise _Fallback(f"activation {act['op']} is not a clamp")
        return activation_bounds(act, qp)

    def negative_params(self, act, real: np.ndarray, channels: int) -> dict:
        """neg_multiplier/neg_shift for a fused PRelu/LeakyRelu (M_neg = α · M)."""
        if not act or act["op"] not in ("PRelu", "LeakyRelu"):
            return {}
        if act["op"] == "LeakyRelu":
            alpha = np.full(channels, float(act.get("alpha", 0.01)))
        else:
            slope = np.asarray(act["slope"], np.float64)
            if slope.size == 1:
                alpha = np.full(channels, float(slope.reshape(-1)[0]))
            else:
                sq = slope.reshape(-1) if slope.ndim <= 1 else slope.reshape(slope.shape[-3] if slope.ndim >= 3
                                                                             else -1, -1)[:, 0]
                if sq.size != channels:
                    raise _Fallback("PRelu slope is not per channel")
                alpha = sq
        m, n = quantize_multiplier(np.abs(alpha) * np.broadcast_to(real, (channels,)))
        m = np.where(alpha < 0, -m, m)
        return {"neg_multiplier": np.atleast_1d(m).astype(np.int64).tolist(),
                "neg_shift": np.atleast_1d(n).astype(np.int64).tolist()}

    # ------------------------------------------------------------------ integer ops
    def q_Conv(self, n: Node) -> bool:
        x, w = n.inputs[0], n.inputs[1]
        b = n.input(2)
        if not w.is_const or (b is not None and not b.is_const) or x.rank != 4:
            raise _Fallback("weights must be constant, 2-D conv")
        prec, qt, qy = self.out_qparams(n)
        xq = self.as_q(x, prec)
        qx = _from_ir(xq)
        sx, zx = _scalar(qx)
        wf = w.const.astype(np.float64)
        qw = self.weight_qparams(wf, 0)
        wq = quantize(wf, qw, narrow=qw.qtype.signed)
        sw = np.broadcast_to(qw.scale.astype(np.float64), (wf.shape[0],))
        zw = np.broadcast_to(qw.zero_point, (wf.shape[0],))
        bias = quantize_bias(b.const if b is not None else np.zeros(wf.shape[0]), sx, sw)
        sy, zy = _scalar(qy)
        mult, shift = self.requant_params(sx * sw / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        attrs = {k: n.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=zx, w_zp=zw.tolist() if qw.axis is not None else int(zw[0]), y_zp=zy,
                     multiplier=mult, shift=shift, act_min=lo, act_max=hi, out_dtype=qt.value,
                     **self.negative_params(n.attrs.get("activation"), sx * sw / sy, wf.shape[0]))
        wv = self.g.add_const(f"{w.name}_q", wq)
        wv.quant = _ir_qp(qw)
        bv = self.g.add_const(f"{n.name}_bias_q", bias)
        y = self.add("QConv", [xq, wv, bv], attrs, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_Gemm(self, n: Node) -> bool:
        a, b = n.inputs[0], n.inputs[1]
        c = n.input(2)
        if n.attrs["transA"] or not b.is_const or (c is not None and not c.is_const) or a.rank != 2:
            raise _Fallback("Gemm needs constant B and C, no transA")
        bf = b.const.astype(np.float64)
        if n.attrs["transB"]:
            bf = bf.T
        bf = bf * float(n.attrs["alpha"])
        nout = bf.shape[1]
        bias_f = np.zeros(nout)
        if c is not None:
            cb = np.broadcast_to(c.const.astype(np.float64) * float(n.attrs["beta"]), n.outputs[0].shape)
            if not np.all(cb == cb[:1]):
                raise _Fallback("C varies per row")
            bias_f = cb[0]
        return self._qgemm(n, a, bf, bias_f)

    def _qgemm(self, n: Node, a: Value, bf: np.ndarray, bias_f: np.ndarray) -> bool:
        prec, qt, qy = self.out_qparams(n)
        aq = self.as_q(a, prec)
        sa, za = _scalar(_from_ir(aq))
        qb = self.weight_qparams(bf, 1)
        bq = quantize(bf, qb, narrow=qb.qtype.signed)
        nout = bf.shape[1]
        sb = np.broadcast_to(qb.scale.astype(np.float64), (nout,))
        zb = np.broadcast_to(qb.zero_point, (nout,))
        bias = quantize_bias(bias_f, sa, sb)
        sy, zy = _scalar(qy)
        mult, shift = self.requant_params(sa * sb / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        bv = self.g.add_const(f"{n.name}_B_q", bq)
        bv.quant = _ir_qp(qb)
        cv = self.g.add_const(f"{n.name}_bias_q", bias)
        y = self.add("QGemm", [aq, bv, cv], {"a_zp": za, "b_zp": zb.tolist() if qb.axis is not None else int(zb[0]),
                                             "y_zp": zy, "multiplier": mult, "shift": shift, "act_min": lo,
                                             "act_max": hi, "out_dtype": qt.value,
                                             **self.negative_params(n.attrs.get("activation"), sa * sb / sy, nout)},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_MatMul(self, n: Node) -> bool:
        a, b = n.inputs
        if b.is_const and b.rank == 2 and a.rank == 2:
            return self._qgemm(n, a, b.const.astype(np.float64), np.zeros(b.shape[1]))
        if a.is_const:
            raise _Fallback("constant left operand")
        prec, qt, qy = self.out_qparams(n)
        if n.attrs.get("activation") and not is_clamp_activation(n.attrs["activation"]):
            raise _Fallback("non-clamp activation")
        aq, bq = self.as_q(a, prec), self.as_q(b, prec)
        sa, za = _scalar(_from_ir(aq))
        sb, zb = _scalar(_from_ir(bq))
        sy, zy = _scalar(qy)
        m, s = quantize_multiplier(sa * sb / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        y = self.add("QMatMul", [aq, bq], {"a_zp": za, "b_zp": zb, "y_zp": zy, "multiplier": int(m),
                                            "shift": int(s), "act_min": lo, "act_max": hi, "out_dtype": qt.value},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

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
        ra, rb = sa / sy, sb / sy
        # one shift for both: the larger multiplier gets a 30-bit mantissa
        big = max(ra, rb, 1e-30)
        shift = int(min(62, max(0, 30 - int(np.floor(np.log2(big))) - 1)))
        am = int(round(ra * 2.0 ** shift))
        bm = int(round(rb * 2.0 ** shift)) * sign
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
                                      "neg_mult": np.atleast_1d(nm).tolist() if alpha.size > 1 else int(nm),
                                      "neg_shift": np.atleast_1d(ns).tolist() if alpha.size > 1 else int(ns),
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
        qx = _from_ir(xq)
        if qt.bits == 8:
            codes = np.arange(qt.qmin, qt.qmax + 1)
        else:
            codes = np.clip(np.arange(513) * 128 + qt.qmin, qt.qmin, qt.qmax + 1)  # 513 knots
        xs = dequantize(np.minimum(codes, qt.qmax).astype(qt.dtype), qx).astype(np.float64)
        if qt.bits != 8:
            # the last knot sits one step past qmax: extrapolate its input linearly
            s, z = _scalar(qx)
            xs = (codes - z) * s
        with np.errstate(all="ignore"):
            ys = fn(xs.astype(np.float32))
        table = quantize(ys, qy).astype(np.int64)
        y = self.add("QLut", [xq], {"table": table.astype(np.int32), "out_dtype": qt.value},
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


def weight_qparams(w: np.ndarray, axis: int | None, qt: QType, *, search: bool = True) -> QParams:
    """Weight scales: the clipping range per channel (or tensor) that minimizes the squared
    rounding + clipping error of the weights, searched over [0.5, 1] × the absolute range
    (1 = min/max, always a candidate; a clipped range wins only when it is better)."""
    sym = qt.signed
    if axis is None:
        lo, hi = np.array(float(w.min())), np.array(float(w.max()))
        wc = w.reshape(1, -1)
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        lo, hi = w.min(axis=red), w.max(axis=red)
        wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    best = choose_qparams(lo, hi, qt, symmetric=sym, narrow=sym, axis=axis)
    if not search:
        return best
    lo_v, hi_v = np.atleast_1d(lo).astype(np.float64), np.atleast_1d(hi).astype(np.float64)

    def err(qp):
        s = np.atleast_1d(qp.scale).astype(np.float64)[:, None]
        z = np.atleast_1d(qp.zero_point).astype(np.float64)[:, None]
        qmin = qt.qmin + (1 if sym else 0)
        q = np.clip(np.rint(wc / s) + z, qmin, qt.qmax)
        return ((q - z) * s - wc) ** 2

    best_err = err(best).sum(axis=1)
    best_scale = np.atleast_1d(best.scale).copy()
    best_zp = np.atleast_1d(best.zero_point).copy()
    for r in np.linspace(0.5, 0.99, 50):
        qp = choose_qparams(lo_v * r, hi_v * r, qt, symmetric=sym, narrow=sym, axis=0)
        e = err(qp).sum(axis=1)
        better = e < best_err
        if np.any(better):
            best_err = np.where(better, e, best_err)
            best_scale = np.where(better, np.atleast_1d(qp.scale), best_scale)
            best_zp = np.where(better, np.atleast_1d(qp.zero_point), best_zp)
    if axis is None:
        return QParams(best_scale.reshape(()).astype(np.float32), best_zp.reshape(()), qt, None)
    return QParams(best_scale.astype(np.float32), best_zp.astype(np.int64), qt, axis)


class _Fallback(Exception):
    """Raised by a handler: this node stays in float."""


_LUT_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish", "Gelu", "Mish", "Elu", "Selu", "Celu",
            "Softplus", "Softsign", "Exp", "Erf", "Sqrt", "Reciprocal", "Neg", "Abs", "ThresholdedRelu")


def _make_lut_handler(op: str):
    def handler(self: Quantizer, n: Node) -> bool:
        d = get_op(op)
        return self.lut(n, lambda x: d.run([x], n.attrs)[0])

    return handler


for _op in _LUT_OPS:
    setattr(Quantizer, f"q_{_op}", _make_lut_handler(_op))
for _op in PASSTHROUGH:
    setattr(Quantizer, f"q_{_op}", Quantizer.passthrough)


def quantize_graph(graph: Graph, ranges: Mapping[str, tuple[float, float]], config: QuantConfig) -> Graph:
    """Return the integer version of ``graph`` (which is left unchanged)."""
    q = Quantizer(graph, ranges, config)
    out = q.run()
    log.info("quantized %d ops to integer, %d stay float", q.int_ops, len(q.float_ops))
    out.metadata["float_ops"] = len(q.float_ops)
    return out


_ = ops_with_flag
