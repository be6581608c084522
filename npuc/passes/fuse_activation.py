"""Fuse activations into the op that produces their input.

``act(op(x...))`` becomes ``op(x..., activation=act)`` when ``op`` is flagged
``epilogue`` in the registry, carries no activation yet, and is the activation's only
producer-reader pair (the op's output has that one reader and is not a graph output).
Fusable: every registry op flagged ``activation`` (Relu, LeakyRelu, Sigmoid, HardSigmoid,
HardSwish, Swish, Mish, Gelu, Tanh, Elu, ...), Clip with constant bounds (Relu6 and any
other), and PRelu with a constant slope that is per channel (broadcast against the
output). The runtime applies the activation in place in the kernel's epilogue.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops.epilogue import check_activation
from ..ops.registry import get_op, ops_with_flag
from .manager import graph_pass


def activation_spec(n: Node) -> dict | None:
    """The epilogue spec equivalent to node ``n``, or None when ``n`` cannot be fused."""
    if n.op == "Clip":
        lo, hi = n.input(1), n.input(2)
        if any(b is not None and (not b.is_const or b.const.size != 1) for b in (lo, hi)):
            return None
        spec = {"op": "Clip"}
        if lo is not None:
            spec["min"] = float(lo.const.reshape(()))
        if hi is not None:
            spec["max"] = float(hi.const.reshape(()))
        return spec
    if n.op == "PRelu":
        slope = n.inputs[1]
        if not slope.is_const:
            return None
        return {"op": "PRelu", "slope": np.array(slope.const)}
    if n.op in ops_with_flag("activation") and len(n.inputs) == 1:
        return {"op": n.op, **n.attrs}
    return None


#: activations integer kernels apply at requantization: clamps, and the two-slope ones
#: (PRelu/LeakyRelu: a second multiplier for negative accumulators)
INTEGER_EPILOGUES = ("Relu", "Clip", "PRelu", "LeakyRelu")


@graph_pass("fuse_activations")
def fuse_activations(graph: Graph) -> bool:
    return _fuse(graph, None)


@graph_pass("fuse_clamp_activations")
def fuse_clamp_activations(graph: Graph) -> bool:
    """Only what integer kernels apply at requantization (:data:`INTEGER_EPILOGUES`);
    quantized targets keep other activations as their own ops (lookup tables)."""
    return _fuse(graph, INTEGER_EPILOGUES)


def _fuse(graph: Graph, only) -> bool:
    """Fuse every activation whose op is in ``only`` (None: all)."""
    epilogue_ops = ops_with_flag("epilogue")
    changed = False
    for act in list(graph.nodes):
        if act not in graph.nodes:
            continue
        spec = activation_spec(act)
        if spec is None or (only is not None and spec["op"] not in only):
            continue
        x = act.inputs[0]
        prod = x.producer
        if prod is None or prod.op not in epilogue_ops or prod.attrs.get("activation") is not None:
            continue
        if len(x.users) != 1 or graph.is_output(x) or prod.outputs[0] is not x:
            continue
        if x.dtype.kind != "f" or act.outputs[0].shape != x.shape:
            continue  # e.g. a PRelu slope that broadcasts the output to a bigger shape
        out = act.outputs[0]
        if not graph.can_replace(out, x):
            continue
        prod.attrs["activation"] = check_activation(spec, prod.name)
        graph.remove_node(act)
        graph.replace_all_uses(out, x)
        changed = True
    if changed:
        graph.prune_values()
    return changed


_ = get_op  # registry access is through ops_with_flag
