"""Converters for Constant, Identity-like ops and older-opset forms of elementwise ops."""
from __future__ import annotations

import numpy as np

from .context import ConvertContext, converter


@converter("Constant")
def constant(ctx: ConvertContext):
    a = ctx.attrs
    if "value" in a:
        arr = np.asarray(a["value"])
    elif "value_float" in a:
        arr = np.array(a["value_float"], np.float32)
    elif "value_floats" in a:
        arr = np.array(a["value_floats"], np.float32)
    elif "value_int" in a:
        arr = np.array(a["value_int"], np.int64)
    elif "value_ints" in a:
        arr = np.array(a["value_ints"], np.int64)
    else:
        raise ctx.error(f"Constant with attributes {sorted(a)} is not supported (sparse or string values)")
    if arr.dtype.kind in "USO":
        raise ctx.error("string constants are not supported")
    v = ctx.graph.add_const(ctx.output_names[0], arr)
    return [v]


@converter("Clip", until=10)
def clip_v6(ctx: ConvertContext):
    x = ctx.input(0)
    lo = ctx.attrs.get("min", -3.4028234663852886e38)
    hi = ctx.attrs.get("max", 3.4028234663852886e38)
    return ctx.emit("Clip", [x, ctx.const(np.array(lo, x.dtype), "min"), ctx.const(np.array(hi, x.dtype), "max")])


def _drop_legacy_broadcast(ctx: ConvertContext):
    """Opset < 7 binary ops had broadcast/axis attributes; opset ≥ 7 broadcasts numpy-style."""
    attrs = {k: v for k, v in ctx.attrs.items() if k not in ("broadcast", "axis", "consumed_inputs")}
    return ctx.emit(ctx.op_type, ctx.inputs, attrs)


for _op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
            "Equal", "Less", "Greater", "And", "Or", "Xor", "Gemm"):
    converter(_op, until=6)(_drop_legacy_broadcast)


@converter("PRelu", until=6)
def prelu_v6(ctx: ConvertContext):
    """Opset < 7: a 1-D slope of length C applies per channel (axis 1), not to the last axis."""
    x, slope = ctx.input(0), ctx.input(1)
    attrs = {k: v for k, v in ctx.attrs.items() if k not in ("consumed_inputs",)}
    if (slope is not None and slope.rank == 1 and x.rank > 2 and slope.shape[0] == x.shape[1]
            and slope.shape[0] != 1):
        shape = np.array([slope.shape[0]] + [1] * (x.rank - 2), np.int64)
        slope = ctx.emit("Reshape", [slope, ctx.const(shape, "slope_shape")],
                         outputs=[f"{ctx.name or 'prelu'}_slope"], num_outputs=1)[0]
    return ctx.emit("PRelu", [x, slope], attrs)


@converter("DFT", since=17, until=19)
def dft_v17(ctx: ConvertContext):
    """Opset 17..19: ``axis`` is an attribute (default 1); opset 20 made it input 2."""
    attrs = dict(ctx.attrs)
    axis = int(attrs.pop("axis", 1))
    ins = [ctx.input(0), ctx.input(1), ctx.const(np.array(axis, np.int64), "axis")]
    return ctx.emit("DFT", ins, attrs)
