"""Pre-quantized models: fold ONNX QDQ patterns into npuc's integer ops.

A QDQ model (onnxruntime's ``quantize_static(quant_format=QDQ)``, tf2onnx, TensorRT-style
exporters) keeps its float ops and wraps each of them in DequantizeLinear (DQ) on the
inputs and QuantizeLinear (Q) on the output. :func:`fold_qdq` rewrites every such group
into the integer op that computes the same thing, keeping the model's scales and zero
points exactly (they become the new values' :class:`~npuc.ir.QuantParams`):

=========================================  ===============================================
pattern                                    becomes
=========================================  ===============================================
DQ(x) DQ(W const) [DQ(b int32 const)]      ``QConv``/``QGemm``: ``acc = Σ(x−z_x)(W−z_w[c])
→ Conv/Gemm/MatMul → [Relu|Clip] → Q(y)    + b[c]``, ``y = requantize(acc, M[c]) + z_y``
                                           with ``M[c] = s_x·s_w[c]/s_y``; the clamp and
                                           the Q's integer range give act_min/act_max
DQ(a) DQ(b) → MatMul → Q                   ``QMatMul`` (per-tensor)
DQ(a) DQ(b) → Add/Sub/Mul → [clamp] → Q    ``QAdd`` (one shift, two multipliers) / ``QMul``
DQ(x_i) → Concat → Q                       ``QConcat`` (each input requantized to y)
DQ → GlobalAveragePool/ReduceMean → Q      ``QMean`` with ``M = s_x/(s_y·count)``
DQ → AveragePool → Q                       ``QAvgPool`` (constant window count only)
DQ → Sigmoid/Tanh/... → Q                  ``QLut``: ``table[q] = Q(f(DQ(q)))``
DQ → PRelu/LeakyRelu → Q                   ``QPRelu``
DQ → Relu/Clip → Q                         integer ``Clip`` (same params) or ``Requantize``
DQ → MaxPool/Reshape/Transpose/... → Q     the same op on the integer tensor (plus a
                                           ``Requantize`` when the Q's params differ)
DQ(x) → Q(y)                               nothing (same params) or ``Requantize``
DQ(W_q const) → Transpose/Reshape/...      DQ(T(W_q)) (weights stored in another layout,
                                           tf2onnx); per-channel axes follow a Transpose
=========================================  ===============================================

Anything else stays as it is: a float op between its DQs and Qs runs in float, and the
QuantizeLinear of a float graph input and the DequantizeLinear of a graph output stay.

The fold only fires when the float op's output is read by Q nodes alone (all with the same
parameters), so no float reader loses precision. A Relu/Clip between the op and its Q becomes
the clamp ``[Q(a), Q(b)]``: Q is monotonic, so ``Q(clip(x, a, b)) = clip(Q(x), Q(a), Q(b))``
exactly (with ONNX's own rounding of the bounds). Biases: the int32 bias of a DQ whose scale
equals ``s_x·s_w`` (what quantizers write) is used as is; any other bias (another scale, a
float constant, ``beta ≠ 1``) is re-quantized to the accumulator scale.

Multipliers are computed in float32 the way onnxruntime computes its requantization scale,
``M = float32(float32(s_x·s_w)/s_y)``, then written as the Q31 fixed-point multiplier and
shift of :func:`npuc.quant.qparams.quantize_multiplier` (exact: a float32 has 24 mantissa
bits). npuc then rounds ``acc·M`` half up in exact integer arithmetic; onnxruntime rounds the
float32 product ``fl(acc·M)`` half to even. The two agree except when ``acc·M`` lies within
float32 rounding error of a half-integer, i.e. on a tiny fraction of elements, and then by
exactly one step.

The pass has to see the integer weights: the ONNX importer keeps DequantizeLinear of an
integer constant unfolded (see :mod:`npuc.frontends.onnx.conv_qoperator`), and
:func:`fold_qdq` must run before constant folding (see
:func:`npuc.quant.pipeline_prequant.prequantized_pipeline`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import NpucError
from ..ir import Graph, Node, QuantParams, Value
from ..ops.registry import get_op
from ..passes.fuse_activation import activation_spec
from ..passes.manager import graph_pass
from .qparams import QParams, QType, quantize_multiplier
from .quantize import PASSTHROUGH, _LUT_OPS

log = logging.getLogger(__name__)

#: data-movement ops exporters put between a weight's DequantizeLinear and its reader
_LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")

#: integer types npuc's integer kernels take for activations and outputs
ACT_DTYPES = (np.dtype("uint8"), np.dtype("int8"), np.dtype("int16"))
_INT32 = np.iinfo(np.int32)


# ---------------------------------------------------------------------------------- params
@dataclass(frozen=True)
class QP:
    """Quantization parameters read from a Q/DQ node (or a QLinear op's inputs)."""

    scale: np.ndarray          # float32, () or (C,)
    zero_point: np.ndarray     # int64, same shape
    dtype: np.dtype            # the integer type
    axis: int | None = None    # per-channel axis, None when per-tensor

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    @property
    def s(self) -> float:
        return float(self.scale.reshape(-1)[0])

    @property
    def z(self) -> int:
        return int(self.zero_point.reshape(-1)[0])

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    def same(self, other: "QP") -> bool:
        return (self.dtype == other.dtype and self.axis == other.axis
                and self.scale.shape == other.scale.shape and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def ir(self) -> QuantParams:
        return QuantParams(self.scale.copy(), self.zero_point.copy(), self.axis)

    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point, QType(str(self.dtype)), self.axis)


def make_qp(scale, zero_point, dtype, axis: int | None = None, rank: int | None = None) -> QP:
    """QP from ONNX-style inputs: a scale/zero point of one element is per-tensor."""
    s = np.asarray(scale, np.float32)
    z = np.zeros(s.shape, np.int64) if zero_point is None else np.asarray(zero_point).astype(np.int64)
    if s.size == 1:
        return QP(s.reshape(()), z.reshape(-1)[:1].reshape(()), np.dtype(dtype), None)
    if rank is not None and axis is not None:
        axis = axis % rank
    return QP(s.reshape(-1), np.broadcast_to(z.reshape(-1), (s.size,)).copy(), np.dtype(dtype), axis)


def real_multiplier(s_in, s_w, s_out) -> np.ndarray:
    """``float32(float32(s_in·s_w)/s_out)``: onnxruntime's requantization scale, per channel."""
    with np.errstate(all="ignore"):
        return (np.float32(s_in) * np.asarray(s_w, np.float32)) / np.float32(s_out)


def multiplier_attrs(real, per_channel: bool) -> tuple:
    """(multiplier, shift) attribute values for :func:`~npuc.quant.qparams.requantize`."""
    m, n = quantize_multiplier(np.asarray(real, np.float64))
    if per_channel:
        return np.atleast_1d(m).astype(np.int64).tolist(), np.atleast_1d(n).astype(np.int64).tolist()
    return int(np.asarray(m).reshape(-1)[0]), int(np.asarray(n).reshape(-1)[0])


def identity_multiplier() -> tuple[int, int]:
    """``M = 1`` exactly: ``m = 2^30, n = 30`` (``(acc·2^30 + 2^29) >> 30 == acc``)."""
    m, n = quantize_multiplier(1.0)
    return int(m), int(n)


def qadd_attrs(a: QP, b: QP, y: QP, sign: int = 1) -> dict:
    """QAdd multipliers: one shift for both inputs, the larger ratio gets a 30-bit mantissa."""
    ra = float(np.float32(a.s) / np.float32(y.s))
    rb = float(np.float32(b.s) / np.float32(y.s))
    big = max(ra, rb, 1e-30)
    shift = int(min(62, max(0, 30 - int(np.floor(np.log2(big))) - 1)))
    return {"a_zp": a.z, "b_zp": b.z, "y_zp": y.z, "a_mult": int(round(ra * 2.0 ** shift)),
            "b_mult": int(round(rb * 2.0 ** shift)) * sign, "shift": shift}


def lut_table(fn: Callable[[np.ndarray], np.ndarray], x: QP, y: QP) -> np.ndarray:
    """The QLut table of ``y = Q(fn(DQ(x)))``: 256 entries for 8-bit inputs, 513 knots
    (step 128, the last one extrapolated past qmax) for 16-bit ones."""
    if x.dtype.itemsize == 1:
        codes = np.arange(x.qmin, x.qmax + 1, dtype=np.int64)
    elif x.dtype == np.int16:
        codes = np.arange(513, dtype=np.int64) * 128 + x.qmin
    else:
        raise ValueError(f"no lookup table for {x.dtype} inputs")
    xs = ((codes - x.z) * np.float64(x.s)).astype(np.float32)
    with np.errstate(all="ignore"):
        ys = np.asarray(fn(xs), np.float32)
    q = np.rint(ys / np.float32(y.s)).astype(np.float64) + y.z
    return np.clip(np.nan_to_num(q, nan=y.z), y.qmin, y.qmax).astype(np.int32)


def bias_at_scale(bias_int, bias_qp: QP | None, acc_scale: np.ndarray, channels: int,
                  beta: float = 1.0) -> np.ndarray:
    """The int32 bias at the accumulator scale ``acc_scale`` (per channel).

    An integer bias already at that scale (float32-equal) is taken as is; otherwise it is
    dequantized (or taken as float when ``bias_qp`` is None) and rounded half to even."""
    acc_scale = np.broadcast_to(np.asarray(acc_scale, np.float32), (channels,))
    b = np.broadcast_to(np.asarray(bias_int).reshape(-1), (channels,)) if np.size(bias_int) in (1, channels) \
        else np.asarray(bias_int).reshape(-1)
    if bias_qp is not None:
        z = np.broadcast_to(bias_qp.zero_point.reshape(-1), (channels,)) if bias_qp.zero_point.size > 1 \
            else bias_qp.zero_point.reshape(())
        s = np.broadcast_to(bias_qp.scale.reshape(-1), (channels,)) if bias_qp.scale.size > 1 \
            else bias_qp.scale.reshape(())
        if beta == 1.0 and np.all(np.broadcast_to(s, (channels,)) == acc_scale):
            return np.clip(b.astype(np.int64) - z, _INT32.min, _INT32.max).astype(np.int32)
        bf = (b.astype(np.int64) - z).astype(np.float64) * s.astype(np.float64)
    else:
        bf = b.astype(np.float64)
    bf = bf * beta
    safe = np.where(acc_scale > 0, acc_scale.astype(np.float64), 1.0)
    return np.clip(np.rint(bf / safe), _INT32.min + 1, _INT32.max).astype(np.int32)


# ---------------------------------------------------------------------------------- matching
def _const(v: Value | None) -> np.ndarray | None:
    return None if v is None or v.const is None else v.const


def dq_params(n: Node) -> QP | None:
    """The parameters of a DequantizeLinear node, or None if they are not usable."""
    x = n.inputs[0]
    s = _const(n.input(1))
    zv = n.input(2)
    z = _const(zv)
    if s is None or (zv is not None and z is None) or n.attrs.get("block_size"):
        return None
    if x.dtype not in ACT_DTYPES and x.dtype != np.int32:
        return None
    return make_qp(s, z, x.dtype, int(n.attrs.get("axis", 1)), x.rank)


def q_params(n: Node) -> QP | None:
    """The parameters of a QuantizeLinear node (per-tensor, integer output), or None."""
    s = _const(n.input(1))
    zv = n.input(2)
    z = _const(zv)
    out = n.outputs[0]
    if s is None or (zv is not None and z is None) or n.attrs.get("block_size"):
        return None
    if out.dtype not in ACT_DTYPES:
        return None
    return make_qp(s, z, out.dtype, int(n.attrs.get("axis", 1)), out.rank)


@dataclass
class _In:
    """A float input produced by DequantizeLinear: the integer value and its params."""

    q: Value
    qp: QP
    dq: Node


def _dq_input(v: Value | None) -> _In | None:
    if v is None or v.producer is None or v.producer.op != "DequantizeLinear":
        return None
    qp = dq_params(v.producer)
    if qp is None:
        return None
    return _In(v.producer.inputs[0], qp, v.producer)


def _act_input(v: Value | None) -> _In | None:
    """A per-tensor 8/16-bit activation behind a DQ."""
    i = _dq_input(v)
    if i is None or not i.qp.per_tensor or i.qp.dtype not in ACT_DTYPES:
        return None
    return i


@dataclass
class _Out:
    """Where a float op's output goes: an optional clamp, then Q nodes with one set of params."""

    value: Value             # the float value the Qs read (after the clamp, if any)
    qs: list[Node]
    qp: QP
    clamp: Node | None
    spec: dict | None


def _q_output(graph: Graph, v: Value, *, allow_clamp: bool = True) -> _Out | None:
    clamp = spec = None
    final = v
    if allow_clamp and len(v.users) == 1 and not graph.is_output(v) and v.users[0].op in ("Relu", "Clip") \
            and v.users[0].inputs[0] is v:
        spec = activation_spec(v.users[0])
        if spec is not None:
            clamp = v.users[0]
            final = clamp.outputs[0]
    if graph.is_output(final) or not final.users:
        return None
    if any(u.op != "QuantizeLinear" or u.inputs[0] is not final for u in final.users):
        return None
    qps = [q_params(u) for u in final.users]
    if any(p is None or not p.per_tensor for p in qps) or any(not p.same(qps[0]) for p in qps[1:]):
        return None
    return _Out(final, list(final.users), qps[0], clamp, spec)


def clamp_codes(spec: dict | None, qp: QP) -> tuple[int, int]:
    """Integer bounds equal to ``Q(clamp(x))``: Q is monotonic, so ``Q(clip(x, a, b)) =
    clip(Q(x), Q(a), Q(b))`` exactly, with Q the ONNX QuantizeLinear of ``qp`` (float32
    division, round half to even). Relu is ``a = 0`` (code ``z``)."""
    lo, hi = qp.qmin, qp.qmax
    if spec is None:
        return lo, hi

    def q(v: float) -> int:
        return int(np.clip(np.rint(np.float32(v) / np.float32(qp.s)) + qp.z, qp.qmin, qp.qmax))

    if spec["op"] == "Relu":
        return max(lo, qp.z), hi
    if spec["op"] == "Clip":
        if spec.get("min") is not None:
            lo = max(lo, q(spec["min"]))
        if spec.get("max") is not None:
            hi = min(hi, q(spec["max"]))
        return lo, max(lo, hi)
    raise ValueError(f"activation {spec['op']} is not a clamp")


def _bounds(out: _Out) -> tuple[int, int]:
    return clamp_codes(out.spec, out.qp)


# ---------------------------------------------------------------------------------- rewriting
class _Rewriter:
    def __init__(self, graph: Graph):
        self.g = graph
        self.removed: set[int] = set()
        self.folded = 0

    def index(self, n: Node) -> int:
        return self.g.nodes.index(n)

    def node(self, op: str, inputs, attrs: dict, *, at: Node, name: str, out: str | None = None) -> Value:
        idx = self.index(at)
        n = self.g.make_node(op, list(inputs), name=self.g.unique_name(name), attrs=attrs,
                             outputs=[out or f"{name}_out"], index=idx)
        return n.outputs[0]

    def const(self, name: str, arr, qp: QP | None = None) -> Value:
        v = self.g.add_const(name, np.asarray(arr))
        if qp is not None:
            v.quant = qp.ir()
        return v

    def finish(self, anchor: Node, out: _Out, new: Value) -> None:
        """Readers of the Qs read ``new``; the float group goes away; ``new`` takes the name
        of the float tensor it stands for."""
        new.quant = out.qp.ir()
        name = out.value.name
        dqs = self.dq_producers(anchor)
        for q in out.qs:
            self.g.replace_all_uses(q.outputs[0], new)
        for n in [*out.qs] + ([out.clamp] if out.clamp is not None else []) + [anchor]:
            self.remove_if_dead(n)
        self.adopt_name(new, name)
        self.drop_dead_dq(dqs)
        self.folded += 1

    @staticmethod
    def dq_producers(n: Node) -> list[Node]:
        return [v.producer for v in n.inputs if v is not None and v.producer is not None
                and v.producer.op == "DequantizeLinear"]

    def remove_if_dead(self, n: Node) -> None:
        if n in self.g.nodes and not any(o.users or self.g.is_output(o) for o in n.outputs):
            self.g.remove_node(n)
            self.removed.add(id(n))

    def adopt_name(self, v: Value, name: str) -> None:
        """Rename ``v`` to ``name`` when that name is free or held by a dead value."""
        if v.name == name or self.g.is_output(v) or any(v is i for i in self.g.inputs):
            return
        cur = self.g.values.get(name)
        if cur is not None and (cur.producer is not None or cur.users or cur.const is not None
                                or self.g.is_output(cur) or any(cur is i for i in self.g.inputs)):
            return
        self.g.values.pop(name, None)
        self.g.rename(v, name)

    def drop_dead_dq(self, candidates: list[Node] | None = None) -> None:
        """Remove DequantizeLinear nodes nobody reads any more (among ``candidates``, or all)."""
        for n in list(self.g.nodes) if candidates is None else candidates:
            if n.op == "DequantizeLinear" and n in self.g.nodes and not n.outputs[0].users \
                    and not self.g.is_output(n.outputs[0]):
                self.g.remove_node(n)
                self.removed.add(id(n))

    # -------------------------------------------------------------------- Conv / Gemm
    def rw_Conv(self, n: Node) -> bool:
        x, w, b = _act_input(n.inputs[0]), _dq_input(n.inputs[1]), n.input(2)
        if x is None or w is None or w.q.const is None or w.qp.dtype not in ACT_DTYPES:
            return False
        if n.attrs.get("activation") is not None:
            return False
        m = w.q.shape[0]
        if not (w.qp.per_tensor or (w.qp.axis == 0 and w.qp.scale.size == m)):
            return False
        out = _q_output(self.g, n.outputs[0])
        if out is None:
            return False
        bias = self._bias(b, x.qp.s, w.qp.scale, m, 1.0)
        if bias is False:
            return False
        real = real_multiplier(x.qp.s, np.broadcast_to(w.qp.scale, (m,)), out.qp.s)
        mult, shift = multiplier_attrs(real, True)
        lo, hi = _bounds(out)
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
        bi = _dq_input(b)
        if bi is not None and bi.q.const is not None:
            return bias_at_scale(bi.q.const, bi.qp, acc_scale, channels, beta)
        if b.const is not None and b.dtype.kind == "f":
            c = b.const.reshape(-1)
            if c.size not in (1, channels):
                return False
            return bias_at_scale(np.broadcast_to(c, (channels,)), None, acc_scale, channels, beta)
        return False

    def rw_Gemm(self, n: Node) -> bool:
        a, bq = _act_input(n.inputs[0]), _dq_input(n.inputs[1])
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
        out = _q_output(self.g, n.outputs[0])
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

    def _qgemm(self, n: Node, a: _In, bmat: np.ndarray, bq: _In, nout: int, bias, alpha: float,
               out: _Out, a_value: Value | None = None) -> Value:
        sb = np.broadcast_to(bq.qp.scale, (nout,))
        real = real_multiplier(a.qp.s, sb, out.qp.s)
        if alpha != 1.0:
            real = (real * np.float32(alpha)).astype(np.float32)
        if np.any(real < 0):
            return False
        mult, shift = multiplier_attrs(real, True)
        lo, hi = _bounds(out)
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
        a = _act_input(n.inputs[0])
        if a is None:
            return False
        b = _dq_input(n.inputs[1])
        if b is None or b.qp.dtype not in ACT_DTYPES:
            return False
        out = _q_output(self.g, n.outputs[0])
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
        lo, hi = _bounds(out)
        y = self.node("QMatMul", [a.q, b.q], {"a_zp": a.qp.z, "b_zp": b.qp.z, "y_zp": out.qp.z,
                                              "multiplier": mult, "shift": shift, "act_min": lo, "act_max": hi,
                                              "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    # -------------------------------------------------------------------- elementwise
    def _binary(self, n: Node):
        a, b = _act_input(n.inputs[0]), _act_input(n.inputs[1])
        if a is None or b is None or n.attrs.get("activation") is not None:
            return None
        out = _q_output(self.g, n.outputs[0])
        if out is None:
            return None
        return a, b, out

    def rw_Add(self, n: Node, sign: int = 1) -> bool:
        m = self._binary(n)
        if m is None:
            return False
        a, b, out = m
        lo, hi = _bounds(out)
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
        lo, hi = _bounds(out)
        attrs = {"a_zp": a.qp.z, "b_zp": b.qp.z, "y_zp": out.qp.z, "multiplier": mult, "shift": shift,
                 "act_min": lo, "act_max": hi, "out_dtype": str(out.qp.dtype)}
        self.finish(n, out, self.node("QMul", [a.q, b.q], attrs, at=n, name=n.name))
        return True

    def rw_Concat(self, n: Node) -> bool:
        ins = [_act_input(v) for v in n.inputs]
        if any(i is None for i in ins):
            return False
        out = _q_output(self.g, n.outputs[0], allow_clamp=False)
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
        x = _act_input(n.inputs[0])
        if x is None:
            return False
        out = _q_output(self.g, n.outputs[0])
        if out is None:
            return False
        count = int(np.prod([x.q.shape[a] for a in axes]))
        mult, shift = multiplier_attrs(np.float32(x.qp.s) / (np.float32(out.qp.s) * np.float32(count)), False)
        lo, hi = _bounds(out)
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

        x = _act_input(n.inputs[0])
        if x is None:
            return False
        a = n.attrs
        geo = pool_node_geometry(x.q.shape, **a)
        if any(geo.extra) or (not a["count_include_pad"] and any(geo.pads)):
            return False
        out = _q_output(self.g, n.outputs[0])
        if out is None:
            return False
        count = int(np.prod(geo.kernel))
        mult, shift = multiplier_attrs(np.float32(x.qp.s) / (np.float32(out.qp.s) * np.float32(count)), False)
        lo, hi = _bounds(out)
        attrs = {k: a[k] for k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=x.qp.z, y_zp=out.qp.z, multiplier=mult, shift=shift, act_min=lo, act_max=hi,
                     out_dtype=str(out.qp.dtype))
        self.finish(n, out, self.node("QAvgPool", [x.q], attrs, at=n, name=n.name))
        return True

    # -------------------------------------------------------------------- unary
    def lut(self, n: Node) -> bool:
        x = _act_input(n.inputs[0])
        if x is None or x.qp.dtype == np.int32 or len(n.inputs) != 1:
            return False
        out = _q_output(self.g, n.outputs[0], allow_clamp=False)
        if out is None:
            return False
        d = get_op(n.op)
        table = lut_table(lambda v: d.run([v], n.attrs)[0], x.qp, out.qp)
        y = self.node("QLut", [x.q], {"table": table, "out_dtype": str(out.qp.dtype)}, at=n, name=n.name)
        self.finish(n, out, y)
        return True

    def _prelu(self, n: Node, alpha: np.ndarray) -> bool:
        x = _act_input(n.inputs[0])
        if x is None:
            return False
        out = _q_output(self.g, n.outputs[0], allow_clamp=False)
        if out is None:
            return False
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
        s = _const(slope)
        if s is None:
            si = _dq_input(slope)
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
        x = _act_input(n.inputs[0])
        if x is None:
            return False
        out = _q_output(self.g, n.outputs[0], allow_clamp=False)
        if out is None:
            return False
        lo, hi = clamp_codes(spec, out.qp)
        if x.qp.same(out.qp):
            y = self.node("Clip", [x.q, self.const(f"{n.name}_lo", np.array(lo, x.q.dtype)),
                                   self.const(f"{n.name}_hi", np.array(hi, x.q.dtype))], {}, at=n, name=n.name)
        else:
            y = self._requantize(x.q, x.qp, out.qp, at=n, name=n.name, lo=lo, hi=hi)
        self.finish(n, out, y)
        return True

    def _requantize(self, v: Value, src: QP, dst: QP, *, at: Node, name: str, lo=None, hi=None) -> Value:
        mult, shift = multiplier_attrs(np.float32(src.s) / np.float32(dst.s), False)
        return self.node("Requantize", [v], {"x_zp": src.z, "y_zp": dst.z, "multiplier": mult, "shift": shift,
                                             "act_min": dst.qmin if lo is None else lo,
                                             "act_max": dst.qmax if hi is None else hi,
                                             "out_dtype": str(dst.dtype)}, at=at, name=name)

    # -------------------------------------------------------------------- data movement
    def passthrough(self, n: Node) -> bool:
        x = _act_input(n.inputs[0])
        if x is None:
            return False
        if n.op == "Resize" and n.attrs.get("mode") != "nearest":
            return False
        pad_code = None
        for i, v in enumerate(n.inputs[1:], 1):
            if v is None:
                continue
            if n.op == "Pad" and i == 2:
                if v.const is None:
                    return False
                pv = float(v.const.reshape(-1)[0]) if v.const.size else 0.0
                pad_code = np.clip(np.rint(np.float32(pv) / np.float32(x.qp.s)) + x.qp.z, x.qp.qmin, x.qp.qmax)
            elif v.dtype.kind == "f" and v.const is None:
                return False
        outs = []
        for o in n.outputs:
            if o.dtype.kind != "f":
                if o.users or self.g.is_output(o):
                    return False  # e.g. MaxPool's indices are read
                outs.append(None)
                continue
            q = _q_output(self.g, o, allow_clamp=False)
            if q is None:
                return False
            outs.append(q)
        # checks done: rewrite
        ins: list[Value | None] = [x.q, *n.inputs[1:]]
        if n.op == "Pad" and n.attrs.get("mode", "constant") == "constant":
            code = x.qp.z if pad_code is None else pad_code
            ins = (ins + [None, None])[:max(3, len(ins))]
            ins[2] = self.const(f"{n.name}_padval", np.array(code, x.q.dtype))
        idx = self.index(n)
        nn = self.g.make_node(n.op, ins, name=self.g.unique_name(n.name), attrs=dict(n.attrs),
                              outputs=[f"{o.name}_q" for o in n.outputs], index=idx)
        for o, newv, q in zip(n.outputs, nn.outputs, outs):
            if q is None:
                continue
            newv.quant = x.qp.ir()
            y = newv if x.qp.same(q.qp) else self._requantize(newv, x.qp, q.qp, at=n, name=f"{n.name}_requant")
            self._finish_multi(n, q, y)
        dqs = self.dq_producers(n)
        self.remove_if_dead(n)
        for o, newv in zip(n.outputs, nn.outputs):
            self.adopt_name(newv, o.name)
        self.drop_dead_dq(dqs)
        self.folded += 1
        return True

    def _finish_multi(self, anchor: Node, out: _Out, new: Value) -> None:
        new.quant = out.qp.ir()
        for q in out.qs:
            self.g.replace_all_uses(q.outputs[0], new)
            self.remove_if_dead(q)

    # -------------------------------------------------------------------- DQ → Q
    def rw_QuantizeLinear(self, n: Node) -> bool:
        x = _act_input(n.inputs[0])
        qp = q_params(n)
        if x is None or qp is None or not qp.per_tensor:
            return False
        old = n.outputs[0]
        if x.qp.same(qp):
            if not self.g.can_replace(old, x.q):
                return False
            new = x.q
        else:
            new = self._requantize(x.q, x.qp, qp, at=n, name=f"{n.name}_requant")
            new.quant = qp.ir()
        self.g.replace_all_uses(old, new)
        dqs = self.dq_producers(n)
        self.g.remove_node(n)
        self.removed.add(id(n))
        self.drop_dead_dq(dqs)
        self.folded += 1
        return True

    # -------------------------------------------------------------------- constant weights
    def sink_weight_layout_ops(self) -> None:
        """``T(DQ(W_q))`` → ``DQ(T(W_q))`` for a constant integer ``W_q`` and a data-movement
        op ``T`` (Transpose, Reshape, ...), as exporters write for weights stored in another
        layout (tf2onnx): the integer op then sees the integer weights. Per-channel
        parameters follow their axis through a Transpose; other ops need per-tensor ones."""
        for n in list(self.g.nodes):
            if n.op not in _LAYOUT_OPS or n not in self.g.nodes or not n.inputs:
                continue
            src = _dq_input(n.inputs[0])
            if src is None or src.q.const is None or any(v is not None and v.const is None for v in n.inputs[1:]):
                continue
            axis = src.qp.axis
            if axis is not None:
                if n.op != "Transpose":
                    continue
                perm = n.attrs.get("perm") or list(reversed(range(src.q.rank)))
                axis = list(perm).index(axis)
            arr = get_op(n.op).run([src.q.const] + [None if v is None else v.const for v in n.inputs[1:]],
                                   n.attrs)[0]
            wq = self.const(f"{src.q.name}_{n.op.lower()}", np.ascontiguousarray(arr))
            dq = src.dq
            ins = [wq, dq.inputs[1]] + ([dq.inputs[2]] if dq.input(2) is not None else [])
            attrs = dict(dq.attrs)
            if axis is not None:
                attrs["axis"] = axis
            new = self.g.make_node("DequantizeLinear", ins, name=self.g.unique_name(f"{dq.name}_{n.op.lower()}"),
                                   attrs=attrs, outputs=[f"{n.outputs[0].name}_dq"], index=self.index(n))
            if not self.g.can_replace(n.outputs[0], new.outputs[0]):
                self.g.remove_node(new)
                continue
            qp = dq_params(new)
            if qp is not None:
                wq.quant = qp.ir()
            self.g.replace_all_uses(n.outputs[0], new.outputs[0])
            self.remove_if_dead(n)
            self.drop_dead_dq([dq])
            self.folded += 1

    # -------------------------------------------------------------------- driver
    def run(self) -> bool:
        annotate_quant(self.g)
        self.sink_weight_layout_ops()
        for n in list(self.g.nodes):
            if id(n) in self.removed or n not in self.g.nodes:
                continue
            fn = getattr(self, f"rw_{n.op}", None)
            if fn is None and n.op in PASSTHROUGH:
                fn = self.passthrough
            elif fn is None and n.op in _LUT_OPS:
                fn = self.lut
            if fn is None:
                continue
            try:
                done = fn(n)
            except (ValueError, TypeError, NpucError) as e:  # parameters the integer op cannot express
                log.debug("QDQ group at %s stays float: %s", n.name, e)
                done = False
            if not done and any(v is not None and v.producer is not None and v.producer.op == "DequantizeLinear"
                                for v in n.inputs):
                log.debug("QDQ: %s (%s) stays as it is", n.name, n.op)
        if self.folded:
            self.drop_dead_dq()
            self.g.prune_values()
        return self.folded > 0


def annotate_quant(graph: Graph) -> None:
    """Give integer values read by DQ or written by Q their :class:`QuantParams` (when
    they have none), and carry them through data-movement ops on integer tensors."""
    for n in graph.nodes:
        if n.op == "QuantizeLinear":
            qp = q_params(n)
            if qp is not None and n.outputs[0].quant is None:
                n.outputs[0].quant = qp.ir()
        elif n.op == "DequantizeLinear":
            qp = dq_params(n)
            x = n.inputs[0]
            if qp is not None and x.quant is None:
                x.quant = qp.ir()
    for n in graph.nodes:
        if n.op in PASSTHROUGH and n.inputs and n.inputs[0] is not None and n.inputs[0].quant is not None \
                and n.inputs[0].dtype.kind in "iu" and n.inputs[0].quant.axis is None:
            for o in n.outputs:
                if o.quant is None and o.dtype == n.inputs[0].dtype:
                    o.quant = n.inputs[0].quant


@graph_pass("fold_qdq")
def fold_qdq(graph: Graph) -> bool:
    """Rewrite DequantizeLinear → op → QuantizeLinear groups into integer ops (see the module
    docstring). Returns whether anything changed."""
    rw = _Rewriter(graph)
    changed = rw.run()
    if changed:
        log.info("fold_qdq: %d QDQ groups folded into integer ops", rw.folded)
    return changed
