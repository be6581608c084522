"""Constant folding.

A node whose inputs are all constants is evaluated once, at compile time, with the
registry's reference kernel, and its outputs become constants. ``shape_only`` ops (Shape,
Size) are folded from the static shape of their input. Ops flagged ``no_fold`` are left.
Folding stops at outputs larger than ``MAX_FOLD_BYTES`` when they are bigger than the
inputs they replace (it would grow the model file, e.g. ConstantOfShape of a large shape).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ops.registry import get_op
from .manager import graph_pass

MAX_FOLD_BYTES = 64 << 20


def _foldable(n) -> bool:
    d = get_op(n.op)
    if "no_fold" in d.flags:
        return False
    if "shape_only" in d.flags:
        return True
    if not all(v is None or v.is_const for v in n.inputs):
        return False
    out_bytes = sum(o.nbytes for o in n.outputs)
    in_bytes = sum(v.nbytes for v in n.inputs if v is not None)
    return out_bytes <= max(MAX_FOLD_BYTES, in_bytes)


@graph_pass("fold_constants")
def fold_constants(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if not _foldable(n):
            continue
        d = get_op(n.op)
        args = [None if v is None else (v.const if v.is_const else np.zeros(v.shape, v.dtype)) for v in n.inputs]
        with np.errstate(all="ignore"):
            results = d.run(args, n.attrs)
        new_outs = []
        for o, r in zip(n.outputs, results):
            arr = np.require(np.asarray(r).astype(o.dtype, copy=False).reshape(o.shape), requirements="C")
            new_outs.append(arr)
        graph.remove_node(n)
        for o, arr in zip(n.outputs, new_outs):
            arr.flags.writeable = False
            o.const = arr  # the value keeps its name and users; it is now a constant
        changed = True
    if changed:
        graph.prune_values()
    return changed
