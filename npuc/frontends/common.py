"""Graph building shared by the frontends: :func:`add_op_or_fold`."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import NpucError, ShapeError
from ..ir import Graph, Node, Value
from ..ops.registry import get_op


def add_op_or_fold(graph: Graph, op: str, inputs: list[Value | None], attrs: dict[str, Any], node_name: str,
                   output_names: Sequence[str] | Callable[[int], Sequence[str]], num_outputs: int | None, *,
                   unique_node_name: bool = False) -> list[Value]:
    """Add registry op ``op`` to ``graph`` and return its outputs; fold on construction.

    When the op can be evaluated now (all its inputs constant, or it reads only their shapes,
    and it is not ``no_fold``) its results are added as constants instead of a node, so that
    exporters' Shape→Gather→Concat→Reshape chains become constants that shape inference can
    read. Trailing absent inputs are dropped; ``attrs`` get their defaults.

    ``output_names``: the outputs' names (each made unique in the graph), or a function from
    the number of outputs to those names. The node is named ``node_name``, made unique in the
    graph (after the outputs) when ``unique_node_name``.
    """
    opdef = get_op(op)
    full = opdef.normalize_attrs(attrs, node_name)
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    types = opdef.infer_types(inputs, full, node_name, num_outputs=num_outputs)
    foldable = "no_fold" not in opdef.flags and (
        all(v is None or v.is_const for v in inputs) or "shape_only" in opdef.flags)
    names = output_names(len(types)) if callable(output_names) else output_names
    if foldable:
        try:
            with np.errstate(all="ignore"):
                arrays = opdef.run([None if v is None else (v.const if v.is_const else np.zeros(v.shape, v.dtype))
                                    for v in inputs], full)
        except NpucError:
            raise
        except Exception as e:  # the reference kernel rejected these constant inputs
            raise ShapeError(f"node {node_name!r} ({op}): cannot evaluate on its constant inputs: {e}") from e
        outs = []
        for name, arr, (dt, shp) in zip(names, arrays, types):
            arr = np.require(np.asarray(arr).astype(dt, copy=False).reshape(shp), requirements="C")
            arr.flags.writeable = False
            outs.append(graph.add_value(graph.unique_name(name), dt, shp, arr))
        return outs
    outs = [Value(graph.unique_name(name), dt, shp) for name, (dt, shp) in zip(names, types)]
    for v in outs:
        graph.values[v.name] = v
    graph.add_node(Node(op, graph.unique_name(node_name) if unique_node_name else node_name, inputs, outs, full))
    return outs
