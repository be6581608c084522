"""Clean-up passes: dead-code elimination and identity elimination.

* DCE removes nodes none of whose outputs reach a graph output.
* Identity elimination removes ops that pass their input through unchanged at inference
  time (Identity, Dropout, and no-op casts/reshapes/transposes), rewiring readers to the
  input. A graph output keeps its public name: when the op's input is itself a graph
  input or output, the op stays.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .manager import graph_pass


@graph_pass("dce")
def dead_code_elimination(graph: Graph) -> bool:
    live: set[int] = {id(v) for v in graph.outputs}
    keep: list[Node] = []
    for n in reversed(graph.nodes):
        if any(id(o) in live for o in n.outputs):
            keep.append(n)
            live.update(id(v) for v in n.inputs if v is not None)
    if len(keep) == len(graph.nodes):
        return False
    kept = set(map(id, keep))
    for n in list(graph.nodes):
        if id(n) not in kept:
            graph.remove_node(n)
    graph.prune_values()
    return True


def _is_passthrough(n: Node) -> bool:
    if n.op in ("Identity", "Dropout"):
        return len(n.outputs) == 1 or all(not o.users for o in n.outputs[1:])
    x = n.inputs[0] if n.inputs else None
    if x is None:
        return False
    out = n.outputs[0]
    if out.dtype != x.dtype or out.shape != x.shape:
        return False
    if n.op in ("Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"):
        return True
    if n.op == "Transpose":
        perm = n.attrs.get("perm")
        if perm is None:
            return x.rank <= 1
        return list(perm) == list(range(x.rank))
    if n.op == "Pad":
        pads = n.inputs[1].const if len(n.inputs) > 1 and n.inputs[1] is not None else None
        return pads is not None and not np.any(pads)
    return False


@graph_pass("eliminate_identity")
def eliminate_identity(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if not _is_passthrough(n):
            continue
        x, out = n.inputs[0], n.outputs[0]
        if not graph.can_replace(out, x):
            continue
        graph.replace_all_uses(out, x)
        graph.remove_node(n)
        changed = True
    if changed:
        graph.prune_values()
    return changed
