"""QDQ fold of data movement: ops that move or select data run unchanged on the integer
tensor (:meth:`MovementRewrites.passthrough`), ``DQ → Q`` pairs vanish or become a
``Requantize``, and layout ops on constant weights sink below their DequantizeLinear.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, Value
from ..ops.registry import get_op
from .qdq_editor import QDQEditor
from .qdq_match import QOutput, act_input, dq_input, dq_params, q_output, q_params

#: data-movement ops exporters put between a weight's DequantizeLinear and its reader
_LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity")


class MovementRewrites(QDQEditor):
    """:meth:`passthrough`, ``rw_QuantizeLinear`` and :meth:`sink_weight_layout_ops`."""

    def passthrough(self, n: Node) -> bool:
        x = act_input(n.inputs[0])
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
            q = q_output(self.g, o, allow_clamp=False)
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

    def _finish_multi(self, anchor: Node, out: QOutput, new: Value) -> None:
        new.quant = out.qp.ir()
        for q in out.qs:
            self.g.replace_all_uses(q.outputs[0], new)
            self.remove_if_dead(q)

    # -------------------------------------------------------------------- DQ → Q
    def rw_QuantizeLinear(self, n: Node) -> bool:
        x = act_input(n.inputs[0])
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
            src = dq_input(n.inputs[0])
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
