"""ONNX converters for the older-opset forms of reduction ops.

The registry holds the latest forms (see :mod:`npuc.ops.reduce`); these converters move
attributes that later opsets turned into inputs:

* ``Reduce*`` ``axes`` attribute → constant int64 input (ReduceSum until opset 12, the others
  until opset 17). Opsets before 18 have no ``noop_with_empty_axes``: absent axes reduce all.
* ``TopK`` ``k`` attribute (opset < 10) → constant int64 ``K`` input.

ArgMax/ArgMin (select_last_index appears at 12 with a default that matches older
behaviour), CumSum and Einsum map 1:1.
"""
from __future__ import annotations

import numpy as np

from .context import ConvertContext, converter


def _axes_attr_to_input(ctx: ConvertContext):
    attrs = dict(ctx.attrs)
    axes = attrs.pop("axes", None)
    if len(ctx.inputs) > 1 and ctx.input(1) is not None:
        raise ctx.error("takes its axes as an attribute in this opset, but the node also has an axes input")
    inputs = [ctx.input(0)]
    if axes is not None:
        inputs.append(ctx.const(np.asarray(axes, np.int64).reshape(-1), "axes"))
    return ctx.emit(ctx.op_type, inputs, attrs)


converter("ReduceSum", until=12)(_axes_attr_to_input)
for _op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"):
    converter(_op, until=17)(_axes_attr_to_input)


@converter("TopK", until=9)
def topk_v1(ctx: ConvertContext):
    attrs = dict(ctx.attrs)
    if "k" not in attrs:
        raise ctx.error("attribute 'k' is required in this opset")
    k = int(attrs.pop("k"))
    return ctx.emit("TopK", [ctx.input(0), ctx.const(np.array([k], np.int64), "k")], attrs)
