"""The IR: :class:`Value`, :class:`Node` and :class:`Graph`.

Invariants (checked by :func:`npuc.ir.verify.verify`):

* SSA: every value is produced by exactly one node, or is a graph input, or is a constant.
* ``Graph.nodes`` is in topological order: a node comes after the producers of its inputs.
* Every value has a dtype and a fully static shape (a tuple of non-negative ints).
* Constants carry their data in ``Value.const`` (a numpy array of that dtype and shape).
* Optional inputs that are absent are ``None`` in ``Node.inputs``.
* ``Value.users`` lists the nodes that read the value (once per node, even if it is read
  by several input slots); graph outputs are not users.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import GraphError
from .dtypes import to_dtype


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization parameters: x ≈ scale · (q − zero_point).

    ``axis`` is None for per-tensor parameters, else the channel axis of per-channel ones
    (then ``scale``/``zero_point`` are 1-D arrays of that axis' length).
    """

    scale: Any
    zero_point: Any
    axis: int | None = None


class Value:
    """A typed tensor in the graph: produced by one node, a graph input, or a constant."""

    __slots__ = ("name", "dtype", "shape", "const", "producer", "users", "quant")

    def __init__(self, name: str, dtype, shape, const: np.ndarray | None = None):
        self.name = name
        self.dtype = to_dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.const = const
        self.producer: Node | None = None
        self.users: list[Node] = []
        self.quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        kind = "const " if self.is_const else ""
        return f"<{kind}Value {self.name!r} {self.dtype}{list(self.shape)}>"


class Node:
    """One op application. ``attrs`` holds every attribute of the op (defaults filled in)."""

    __slots__ = ("op", "name", "inputs", "outputs", "attrs")

    def __init__(self, op: str, name: str, inputs: list[Value | None], outputs: list[Value],
                 attrs: dict[str, Any] | None = None):
        self.op = op
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def __repr__(self) -> str:
        return f"<Node {self.op} {self.name!r}>"


class Graph:
    """A dataflow graph in topological order, with named inputs, outputs and constants."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.values: dict[str, Value] = {}
        self.metadata: dict[str, Any] = {}
        self._counter = itertools.count()

    # -- naming -----------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        base = base or "v"
        if base not in self.values:
            return base
        while True:
            cand = f"{base}_{next(self._counter)}"
            if cand not in self.values:
                return cand

    # -- construction -----------------------------------------------------------------
    def add_value(self, name: str, dtype, shape, const: np.ndarray | None = None) -> Value:
        if name in self.values:
            raise GraphError(f"value {name!r} defined twice")
        v = Value(name, dtype, shape, const)
        self.values[name] = v
        return v

    def add_input(self, name: str, dtype, shape) -> Value:
        v = self.add_value(name, dtype, shape)
        self.inputs.append(v)
        return v

    def add_const(self, name: str, array, dtype=None) -> Value:
        arr = np.asarray(array, dtype=dtype)
        arr = np.require(arr, requirements="C")
        arr.flags.writeable = False
        return self.add_value(self.unique_name(name), arr.dtype, arr.shape, arr)

    def add_node(self, node: Node, index: int | None = None) -> Node:
        """Insert ``node`` (at ``index``, default: end) and register it as user/producer."""
        for o in node.outputs:
            if o.name not in self.values:
                self.values[o.name] = o
            if o.producer is not None and o.producer is not node:
                raise GraphError(f"value {o.name!r} already produced by {o.producer.name!r}")
            o.producer = node
        for i in node.inputs:
            if i is not None and node not in i.users:
                i.users.append(node)
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    def make_node(self, op: str, inputs: list[Value | None], *, name: str | None = None,
                  attrs: dict[str, Any] | None = None, outputs: list[str] | None = None,
                  index: int | None = None, num_outputs: int | None = None) -> Node:
        """Create a node of registry op ``op``, infer its output types, and insert it."""
        from ..ops.registry import get_op  # local: ops import ir

        opdef = get_op(op)
        name = name or self.unique_name(op.lower())
        full_attrs = opdef.normalize_attrs(attrs or {}, node_name=name)
        types = opdef.infer_types(inputs, full_attrs, node_name=name, num_outputs=num_outputs)
        if outputs is None:
            outputs = [f"{name}_out{i}" if len(types) > 1 else f"{name}_out" for i in range(len(types))]
        outs = []
        for oname, (dt, shp) in zip(outputs, types):
            outs.append(Value(self.unique_name(oname), dt, shp))
        node = Node(op, name, inputs, outs, full_attrs)
        return self.add_node(node, index)

    # -- mutation ---------------------------------------------------------------------
    def remove_node(self, node: Node) -> None:
        self.nodes.remove(node)
        for i in node.inputs:
            if i is not None and node in i.users:
                i.users.remove(node)
        for o in node.outputs:
            if o.producer is node:
                o.producer = None

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new`` instead."""
        if old is new:
            return
        for user in list(old.users):
            user.inputs = [new if x is old else x for x in user.inputs]
            if user not in new.users:
                new.users.append(user)
        old.users = []
        if any(x is old for x in self.outputs):
            # keep the output's public name so the model's signature is unchanged
            if not self.can_replace(old, new):
                raise GraphError(f"cannot replace graph output {old.name!r} by {new.name!r}")
            self.outputs = [new if x is old else x for x in self.outputs]
            self.rename(new, old.name)

    def can_replace(self, old: Value, new: Value) -> bool:
        """Whether ``replace_all_uses(old, new)`` keeps the graph's public signature."""
        if not any(x is old for x in self.outputs):
            return True
        return not (any(x is new for x in self.inputs) or any(x is new for x in self.outputs))

    def rename(self, v: Value, name: str) -> None:
        if v.name == name:
            return
        cur = self.values.get(name)
        if cur is not None and cur is not v:
            cur_new = self.unique_name(name + "_old")
            self.values.pop(name)
            cur.name = cur_new
            self.values[cur_new] = cur
        self.values.pop(v.name, None)
        v.name = name
        self.values[name] = v

    def set_input(self, node: Node, index: int, value: Value | None) -> None:
        old = node.inputs[index]
        node.inputs[index] = value
        if old is not None and old not in node.inputs and node in old.users:
            old.users.remove(node)
        if value is not None and node not in value.users:
            value.users.append(node)

    def prune_values(self) -> None:
        """Drop values no node, input or output refers to."""
        live: set[str] = {v.name for v in self.inputs} | {v.name for v in self.outputs}
        for n in self.nodes:
            live.update(v.name for v in n.inputs if v is not None)
            live.update(v.name for v in n.outputs)
        self.values = {k: v for k, v in self.values.items() if k in live}

    def toposort(self) -> None:
        """Reorder nodes topologically (stable: keeps the current order where it can)."""
        order = {id(n): i for i, n in enumerate(self.nodes)}
        indeg = {}
        for n in self.nodes:
            indeg[id(n)] = len({id(i.producer) for i in n.inputs
                                if i is not None and i.producer is not None and id(i.producer) in order})
        import heapq

        ready = [(order[id(n)], n) for n in self.nodes if indeg[id(n)] == 0]
        heapq.heapify(ready)
        out: list[Node] = []
        seen = set()
        while ready:
            _, n = heapq.heappop(ready)
            out.append(n)
            seen.add(id(n))
            for o in n.outputs:
                for u in o.users:
                    if id(u) not in order or id(u) in seen:
                        continue
                    preds = {id(i.producer) for i in u.inputs
                             if i is not None and i.producer is not None and id(i.producer) in order}
                    if all(p in seen for p in preds) and not any(r[1] is u for r in ready):
                        heapq.heappush(ready, (order[id(u)], u))
        if len(out) != len(self.nodes):
            raise GraphError(f"graph {self.name!r} has a cycle")
        self.nodes = out

    # -- queries ----------------------------------------------------------------------
    def constants(self) -> Iterator[Value]:
        seen = set()
        for n in self.nodes:
            for v in n.inputs:
                if v is not None and v.is_const and v.name not in seen:
                    seen.add(v.name)
                    yield v
        for v in self.outputs:
            if v.is_const and v.name not in seen:
                seen.add(v.name)
                yield v

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def consumers(self, v: Value) -> list[Node]:
        return list(v.users)

    def is_output(self, v: Value) -> bool:
        return any(v is o for o in self.outputs)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes>"


def iter_values(nodes: Iterable[Node]) -> Iterator[Value]:
    for n in nodes:
        for v in n.inputs:
            if v is not None:
                yield v
        yield from n.outputs
