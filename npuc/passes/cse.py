"""Common-subexpression elimination.

Two nodes are the same computation when they run the same op with equal attributes on the
same input values (constants compared by content). The later one is removed and its
readers read the earlier one's outputs. Ops flagged ``no_fold`` (random) are never merged.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..ir import Graph
from ..ops.registry import get_op
from .manager import graph_pass


def _const_key(a: np.ndarray) -> tuple:
    return (str(a.dtype), a.shape, hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest())


def _attr_key(x):
    if isinstance(x, np.ndarray):
        return ("nd",) + _const_key(x)
    if isinstance(x, dict):
        return tuple(sorted((k, _attr_key(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_attr_key(v) for v in x)
    return x


def node_key(n) -> tuple:
    ins = []
    for v in n.inputs:
        if v is None:
            ins.append(None)
        elif v.is_const:
            ins.append(("c",) + _const_key(v.const))
        else:
            ins.append(("v", id(v)))
    return (n.op, tuple(ins), _attr_key(n.attrs), len(n.outputs))


@graph_pass("cse")
def eliminate_common_subexpressions(graph: Graph) -> bool:
    seen: dict[tuple, object] = {}
    changed = False
    for n in list(graph.nodes):
        if "no_fold" in get_op(n.op).flags:
            continue
        key = node_key(n)
        prev = seen.get(key)
        if prev is None:
            seen[key] = n
            continue
        if not all(graph.can_replace(o, p) for o, p in zip(n.outputs, prev.outputs)):
            continue
        if any(graph.is_output(o) for o in n.outputs):
            continue  # keep distinct public outputs distinct
        for o, p in zip(n.outputs, prev.outputs):
            graph.replace_all_uses(o, p)
        graph.remove_node(n)
        changed = True
    if changed:
        graph.prune_values()
    return changed
