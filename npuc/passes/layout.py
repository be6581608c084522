"""Layout clean-up: transposes and reshapes.

* ``merge_transposes``: Transpose(p2) ∘ Transpose(p1) = Transpose(p1[p2]) (output axis i
  reads input axis p1[p2[i]]); an identity permutation disappears.
* ``collapse_reshapes``: a chain of view ops (Reshape, Flatten, Squeeze, Unsqueeze) is one
  Reshape from the chain's input to the chain's final shape.
* ``push_transposes_down``: Transpose(p) followed by an op that commutes with it is
  swapped, so transposes that undo each other meet and cancel:
  - unary elementwise f:      f(Tp(x)) = Tp(f(x))
  - binary elementwise g:     g(Tp(x), c) = Tp(g(x, c')) with c' = T(p⁻¹)(c as rank-r)
                              g(Tp(x), Tp(y)) = Tp(g(x, y))
  - Concat along axis a:      Concat_a(Tp(x_i)) = Tp(Concat_{p[a]}(x_i))
  - Pad with pads P:          Pad(Tp(x), P) = Tp(Pad(x, P∘p⁻¹))
  A transpose is moved only when it has one reader, so nothing is duplicated.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from ..ops.registry import get_op, ops_with_flag
from .manager import graph_pass


def _perm(n: Node) -> list[int]:
    p = n.attrs.get("perm")
    return list(p) if p is not None else list(range(n.inputs[0].rank))[::-1]


def _single_reader(graph: Graph, v: Value) -> Node | None:
    if len(v.users) != 1 or graph.is_output(v):
        return None
    return v.users[0]


@graph_pass("merge_transposes")
def merge_transposes(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if n not in graph.nodes or n.op != "Transpose":
            continue
        x = n.inputs[0]
        p = _perm(n)
        if p == list(range(len(p))) and graph.can_replace(n.outputs[0], x):
            graph.replace_all_uses(n.outputs[0], x)
            graph.remove_node(n)
            changed = True
            continue
        prod = x.producer
        if prod is not None and prod.op == "Transpose":
            p1 = _perm(prod)
            merged = [p1[i] for i in p]
            graph.set_input(n, 0, prod.inputs[0])
            n.attrs["perm"] = merged
            changed = True
    if changed:
        from .cleanup import dead_code_elimination

        dead_code_elimination(graph)
        graph.prune_values()
    return changed


_VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


@graph_pass("collapse_reshapes")
def collapse_reshapes(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if n not in graph.nodes or n.op not in _VIEW_OPS:
            continue
        src = n.inputs[0]
        prod = src.producer
        if prod is None or prod.op not in _VIEW_OPS:
            if n.op != "Reshape":
                continue
            # a lone Reshape whose shape input has -1/0 entries: make it explicit
            shp = n.inputs[1].const if n.inputs[1] is not None else None
            if shp is not None and (np.any(shp <= 0)):
                graph.set_input(n, 1, graph.add_const(f"{n.name}_shape", np.array(n.outputs[0].shape, np.int64)))
                n.attrs["allowzero"] = 0
                changed = True
            continue
        origin = prod.inputs[0]
        shape = graph.add_const(f"{n.name}_shape", np.array(n.outputs[0].shape, np.int64))
        new = Node("Reshape", graph.unique_name(f"{n.name}_collapsed"), [origin, shape], [],
                   get_op("Reshape").normalize_attrs({}, n.name))
        out = n.outputs[0]
        graph.remove_node(n)
        new.outputs = [out]
        graph.add_node(new, index=graph.nodes.index(prod) + 1 if prod in graph.nodes else None)
        changed = True
    if changed:
        graph.toposort()
        from .cleanup import dead_code_elimination

        dead_code_elimination(graph)
    return changed


def _inverse(p: list[int]) -> list[int]:
    inv = [0] * len(p)
    for i, a in enumerate(p):
        inv[a] = i
    return inv


def _insert_transpose_after(graph: Graph, node: Node, perm: list[int]) -> None:
    """Make ``node`` produce the un-transposed result and add Transpose(perm) after it."""
    out = node.outputs[0]
    inner_shape = tuple(out.shape[i] for i in _inverse(perm))
    inner = Value(graph.unique_name(f"{out.name}_pre_t"), out.dtype, inner_shape)
    graph.values[inner.name] = inner
    node.outputs[0] = inner
    inner.producer = node
    out.producer = None
    t = Node("Transpose", graph.unique_name(f"{node.name}_t"), [inner], [out], {"perm": list(perm)})
    graph.add_node(t, index=graph.nodes.index(node) + 1)


@graph_pass("push_transposes_down")
def push_transposes_down(graph: Graph) -> bool:
    unary = ops_with_flag("unary") & ops_with_flag("elementwise")
    binary = (ops_with_flag("elementwise") - unary) - {"Where", "PRelu"}
    changed = False
    for t in list(graph.nodes):
        if t not in graph.nodes or t.op != "Transpose":
            continue
        p = _perm(t)
        y = t.outputs[0]
        u = _single_reader(graph, y)
        if u is None or len(u.outputs) != 1:
            continue
        x = t.inputs[0]
        if u.op in unary and u.inputs[0] is y and all(v is None or v.is_const for v in u.inputs[1:]):
            graph.set_input(u, 0, x)
        elif u.op in binary and len(u.inputs) == 2:
            other_i = 1 if u.inputs[0] is y else 0
            other = u.inputs[other_i]
            if other is y:
                continue
            r = len(p)
            if other.is_const and other.rank <= r:
                c = other.const.reshape((1,) * (r - other.rank) + other.shape)
                c2 = np.ascontiguousarray(np.transpose(c, _inverse(p)))
                graph.set_input(u, other_i, graph.add_const(f"{other.name}_t", c2))
            elif other.producer is not None and other.producer.op == "Transpose" and _perm(other.producer) == p \
                    and _single_reader(graph, other) is u:
                graph.set_input(u, other_i, other.producer.inputs[0])
            else:
                continue
            graph.set_input(u, 1 - other_i, x)
        elif u.op == "Concat":
            ins = u.inputs
            if not all(v.producer is not None and v.producer.op == "Transpose" and _perm(v.producer) == p
                       and _single_reader(graph, v) is u for v in ins):
                continue
            for i, v in enumerate(list(ins)):
                graph.set_input(u, i, v.producer.inputs[0])
            axis = u.attrs["axis"] % len(p)
            u.attrs["axis"] = p[axis]
        elif u.op == "Pad" and u.inputs[0] is y and u.inputs[1] is not None and u.inputs[1].is_const \
                and (len(u.inputs) < 4 or u.inputs[3] is None):
            pads = u.inputs[1].const.reshape(2, -1)
            inv = _inverse(p)
            new = np.concatenate([pads[0][inv], pads[1][inv]]).astype(np.int64)
            graph.set_input(u, 1, graph.add_const(f"{u.name}_pads_t", new))
            graph.set_input(u, 0, x)
        else:
            continue
        _insert_transpose_after(graph, u, p)
        changed = True
    if changed:
        from .cleanup import dead_code_elimination

        dead_code_elimination(graph)
        graph.prune_values()
    return changed
