"""Pattern matching for the QDQ fold (:mod:`npuc.quant.qdq`): the parameters of Q and DQ
nodes, the DequantizeLinear behind an op's input (:func:`dq_input`, :func:`act_input`),
the QuantizeLinear nodes (and optional clamp) after its output (:func:`q_output`), and
:func:`annotate_quant`.

An output matches only when it is read by Q nodes alone, all with the same parameters, so
no float reader loses precision. A Relu/Clip between the op and its Q becomes the clamp
``[Q(a), Q(b)]`` (:func:`clamp_codes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Node, Value
from ..passes.fuse_activation import activation_spec
from .qdq_params import ACT_DTYPES, QP, make_qp
from .quantize import PASSTHROUGH


def const_of(v: Value | None) -> np.ndarray | None:
    """The constant array of ``v``, or None (also for an absent input)."""
    return None if v is None or v.const is None else v.const


def dq_params(n: Node) -> QP | None:
    """The parameters of a DequantizeLinear node, or None if they are not usable."""
    x = n.inputs[0]
    s = const_of(n.input(1))
    zv = n.input(2)
    z = const_of(zv)
    if s is None or (zv is not None and z is None) or n.attrs.get("block_size"):
        return None
    if x.dtype not in ACT_DTYPES and x.dtype != np.int32:
        return None
    return make_qp(s, z, x.dtype, int(n.attrs.get("axis", 1)), x.rank)


def q_params(n: Node) -> QP | None:
    """The parameters of a QuantizeLinear node (per-tensor, integer output), or None."""
    s = const_of(n.input(1))
    zv = n.input(2)
    z = const_of(zv)
    out = n.outputs[0]
    if s is None or (zv is not None and z is None) or n.attrs.get("block_size"):
        return None
    if out.dtype not in ACT_DTYPES:
        return None
    return make_qp(s, z, out.dtype, int(n.attrs.get("axis", 1)), out.rank)


@dataclass
class DQInput:
    """A float input produced by DequantizeLinear: the integer value and its params."""

    q: Value
    qp: QP
    dq: Node


def dq_input(v: Value | None) -> DQInput | None:
    """``v`` as the output of a DequantizeLinear with usable parameters, or None."""
    if v is None or v.producer is None or v.producer.op != "DequantizeLinear":
        return None
    qp = dq_params(v.producer)
    if qp is None:
        return None
    return DQInput(v.producer.inputs[0], qp, v.producer)


def act_input(v: Value | None) -> DQInput | None:
    """A per-tensor 8/16-bit activation behind a DQ."""
    i = dq_input(v)
    if i is None or not i.qp.per_tensor or i.qp.dtype not in ACT_DTYPES:
        return None
    return i


@dataclass
class QOutput:
    """Where a float op's output goes: an optional clamp, then Q nodes with one set of params."""

    value: Value             # the float value the Qs read (after the clamp, if any)
    qs: list[Node]
    qp: QP
    clamp: Node | None
    spec: dict | None


def q_output(graph: Graph, v: Value, *, allow_clamp: bool = True) -> QOutput | None:
    """``v`` read (after one Relu/Clip, when ``allow_clamp``) by QuantizeLinear nodes only,
    all with the same per-tensor parameters; None otherwise."""
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
    return QOutput(final, list(final.users), qps[0], clamp, spec)


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


def output_bounds(out: QOutput) -> tuple[int, int]:
    """The integer clamp of ``out``: its Q's range, narrowed by its Relu/Clip if any."""
    return clamp_codes(out.spec, out.qp)


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
