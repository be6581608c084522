"""Graph editing for the QDQ fold: :class:`QDQEditor`, the base of the per-op rewrite
classes (:mod:`.qdq_rewrite_linear`, :mod:`.qdq_rewrite_elementwise`,
:mod:`.qdq_rewrite_movement`), adds the integer nodes and removes a folded group.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .qdq_match import QOutput
from .qdq_params import QP, multiplier_attrs


class QDQEditor:
    """Adds nodes and constants to ``graph`` and retires the float groups they replace;
    ``folded`` counts the groups, ``removed`` holds the ids of the nodes removed."""

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

    def finish(self, anchor: Node, out: QOutput, new: Value) -> None:
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

    def _requantize(self, v: Value, src: QP, dst: QP, *, at: Node, name: str, lo=None, hi=None) -> Value:
        mult, shift = multiplier_attrs(np.float32(src.s) / np.float32(dst.s), False)
        return self.node("Requantize", [v], {"x_zp": src.z, "y_zp": dst.z, "multiplier": mult, "shift": shift,
                                             "act_min": dst.qmin if lo is None else lo,
                                             "act_max": dst.qmax if hi is None else hi,
                                             "out_dtype": str(dst.dtype)}, at=at, name=name)
