"""Fold Pad into the padding of the Conv / pool that reads it.

``Conv(Pad(x, P, 0), pads=Q)`` = ``Conv(x, pads=Q + P_spatial)`` when the Pad is a
constant-mode pad by zero of the spatial axes only (N and C pads are 0, all pads ≥ 0)
and the conv uses explicit pads (auto_pad NOTSET or VALID). AveragePool folds the same
way when it counts padding (count_include_pad=1) and MaxPool when the pad value is −∞
(the value its own padding has). The Pad must have that one reader.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from .manager import graph_pass


def _pad_parts(pad_node):
    if pad_node.attrs.get("mode", "constant") != "constant":
        return None
    pads_v = pad_node.input(1)
    if pads_v is None or not pads_v.is_const:
        return None
    axes_v = pad_node.input(3)
    x = pad_node.inputs[0]
    r = x.rank
    pads = pads_v.const.astype(np.int64)
    if axes_v is not None:
        if not axes_v.is_const:
            return None
        full = np.zeros(2 * r, np.int64)
        axes = [int(a) % r for a in axes_v.const]
        k = len(axes)
        for i, a in enumerate(axes):
            full[a] = pads[i]
            full[a + r] = pads[i + k]
        pads = full
    if np.any(pads < 0) or r < 3 or np.any(pads[[0, 1, r, r + 1]] != 0):
        return None
    value_v = pad_node.input(2)
    value = 0.0
    if value_v is not None:
        if not value_v.is_const:
            return None
        value = float(value_v.const.reshape(-1)[0]) if value_v.const.size else 0.0
    return pads[2:r].tolist(), pads[r + 2:].tolist(), value


@graph_pass("fold_pad")
def fold_pad(graph: Graph) -> bool:
    changed = False
    for pad in list(graph.nodes):
        if pad not in graph.nodes or pad.op != "Pad":
            continue
        y = pad.outputs[0]
        if len(y.users) != 1 or graph.is_output(y):
            continue
        user = y.users[0]
        if user.inputs[0] is not y or user.op not in ("Conv", "AveragePool", "MaxPool"):
            continue
        parts = _pad_parts(pad)
        if parts is None:
            continue
        begin, end, value = parts
        if user.op == "Conv" and value != 0.0:
            continue
        if user.op == "AveragePool" and (value != 0.0 or not user.attrs.get("count_include_pad")):
            continue
        if user.op == "MaxPool" and value != -np.inf:
            continue
        if user.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            continue
        nsp = len(begin)
        old = user.attrs.get("pads") or [0] * (2 * nsp)
        user.attrs["pads"] = [int(old[i]) + begin[i] for i in range(nsp)] + \
                             [int(old[nsp + i]) + end[i] for i in range(nsp)]
        user.attrs["auto_pad"] = "NOTSET"
        graph.set_input(user, 0, pad.inputs[0])
        graph.remove_node(pad)
        changed = True
    if changed:
        graph.prune_values()
    return changed
