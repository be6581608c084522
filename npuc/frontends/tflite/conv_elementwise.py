"""Converters of elementwise TFLite ops: arithmetic with fused activations, unary math,
activations, comparisons and logic, select, casts and (de)quantization.

TFLite broadcasts binary ops numpy-style, like the registry ops, and every tensor keeps
its NHWC layout here, so none of these needs a transpose.
"""
from __future__ import annotations

import numpy as np

from ...ir.dtypes import NUMPY_TO_ONNX
from .context import ConvertContext, converter
from .importer import dequantize_array

_BINARY = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min",
           "POW": "Pow", "EQUAL": "Equal", "LESS": "Less", "LESS_EQUAL": "LessOrEqual", "GREATER": "Greater",
           "GREATER_EQUAL": "GreaterOrEqual", "LOGICAL_AND": "And", "LOGICAL_OR": "Or", "FLOOR_MOD": "Mod"}
_UNARY = {"ABS": "Abs", "NEG": "Neg", "EXP": "Exp", "LOG": "Log", "SQRT": "Sqrt", "SIN": "Sin", "COS": "Cos",
          "FLOOR": "Floor", "CEIL": "Ceil", "ROUND": "Round", "SIGN": "Sign", "LOGISTIC": "Sigmoid",
          "TANH": "Tanh", "RELU": "Relu", "HARD_SWISH": "HardSwish", "ELU": "Elu", "LOGICAL_NOT": "Not"}


@converter(*_BINARY)
def binary(ctx: ConvertContext):
    a, b = ctx.require(0, "x"), ctx.require(1, "y")
    y = ctx.emit1(_BINARY[ctx.op.opcode], [a, b])
    return ctx.activation(y)


@converter(*_UNARY)
def unary(ctx: ConvertContext):
    return ctx.emit1(_UNARY[ctx.op.opcode], [ctx.require(0, "x")])


@converter("NOT_EQUAL")
def not_equal(ctx: ConvertContext):
    return ctx.emit1("Not", [ctx.emit1("Equal", [ctx.require(0, "x"), ctx.require(1, "y")])])


@converter("SQUARED_DIFFERENCE")
def squared_difference(ctx: ConvertContext):
    d = ctx.emit1("Sub", [ctx.require(0, "x"), ctx.require(1, "y")])
    return ctx.emit1("Mul", [d, d])


@converter("FLOOR_DIV")
def floor_div(ctx: ConvertContext):
    a, b = ctx.require(0, "x"), ctx.require(1, "y")
    if a.dtype.kind == "f":
        return ctx.emit1("Floor", [ctx.emit1("Div", [a, b])])
    # integers: a // b = (a − mod(a, b)) / b exactly, mod taking the divisor's sign
    r = ctx.emit1("Mod", [a, b], {"fmod": 0})
    return ctx.emit1("Div", [ctx.emit1("Sub", [a, r]), b])


@converter("ADD_N")
def add_n(ctx: ConvertContext):
    return ctx.emit1("Sum", [ctx.require(i, f"input {i}") for i in range(len(ctx.inputs))])


@converter("SQUARE")
def square(ctx: ConvertContext):
    x = ctx.require(0, "x")
    return ctx.emit1("Mul", [x, x], tag="square")


@converter("RSQRT")
def rsqrt(ctx: ConvertContext):
    return ctx.emit1("Reciprocal", [ctx.emit1("Sqrt", [ctx.require(0, "x")])])


@converter("RELU6", "RELU_N1_TO_1", "RELU_0_TO_1")
def relu_clip(ctx: ConvertContext):
    x = ctx.require(0, "x")
    lo, hi = {"RELU6": (0, 6), "RELU_N1_TO_1": (-1, 1), "RELU_0_TO_1": (0, 1)}[ctx.op.opcode]
    return ctx.emit1("Clip", [x, ctx.scalar(lo, x, "min"), ctx.scalar(hi, x, "max")], tag=ctx.op.opcode.lower())


@converter("LEAKY_RELU")
def leaky_relu(ctx: ConvertContext):
    return ctx.emit1("LeakyRelu", [ctx.require(0, "x")], {"alpha": float(ctx.opt("Alpha", 0.0))})


@converter("PRELU")
def prelu(ctx: ConvertContext):
    return ctx.emit1("PRelu", [ctx.require(0, "x"), ctx.require(1, "alpha")])


@converter("GELU")
def gelu(ctx: ConvertContext):
    return ctx.emit1("Gelu", [ctx.require(0, "x")], {"approximate": "tanh" if ctx.opt("Approximate") else "none"})


@converter("SELECT", "SELECT_V2")
def select(ctx: ConvertContext):
    c, a, b = ctx.require(0, "condition"), ctx.require(1, "x"), ctx.require(2, "y")
    if ctx.op.opcode == "SELECT" and c.rank == 1 and a.rank > 1 and c.shape[0] == a.shape[0]:
        c = ctx.reshape(c, [c.shape[0]] + [1] * (a.rank - 1))  # v1: a vector selects whole rows
    return ctx.emit1("Where", [c, a, b])


@converter("CAST")
def cast(ctx: ConvertContext):
    x = ctx.require(0, "x")
    dt = ctx.out_dtype
    if dt is None:
        raise ctx.error(f"casts to {ctx.op.outputs and ctx.out_tensors[0].type_name}, which npuc does not support")
    if x.dtype == dt:
        return ctx.emit1("Identity", [x])
    return ctx.emit1("Cast", [x], {"to": NUMPY_TO_ONNX[dt]})


# ---------------------------------------------------------------- (de)quantization
@converter("DEQUANTIZE")
def dequantize(ctx: ConvertContext):
    """fp16 → float32 by a cast; integers: real = scale · (q − zero_point). Constants
    (fp16 or int8 weight-only models) fold into float32 constants here."""
    x = ctx.require(0, "input")
    t = ctx.tensor(0)
    if x.dtype.kind == "f":
        return ctx.cast(x, np.float32)
    q = t.quant if t is not None else None
    if q is None:
        raise ctx.error(f"integer input {x.name!r} has no quantization parameters")
    if x.is_const:
        return ctx.const(dequantize_array(x.const, q), "dequantized")
    if q.per_channel:
        raise ctx.error("per-channel dequantization of a computed tensor is not supported")
    centered = ctx.emit1("Sub", [ctx.cast(x, np.int32), ctx.const(np.asarray(q.zero_point[0], np.int32), "zp")])
    return ctx.emit1("Mul", [ctx.cast(centered, np.float32), ctx.const(np.asarray(q.scale[0], np.float32), "scale")])


@converter("QUANTIZE")
def quantize(ctx: ConvertContext):
    """q = clamp(round(x / scale) + zero_point, qmin, qmax), rounding half to even as the
    TFLite interpreter's vectorized kernel does; integer inputs are requantized through
    float."""
    x = ctx.require(0, "input")
    tin, tout = ctx.tensor(0), ctx.out_tensors[0]
    q = tout.quant if tout is not None else None
    dt = ctx.out_dtype
    if q is None or dt is None or dt.kind not in "iu":
        raise ctx.error("output must be an integer tensor with quantization parameters")
    if q.per_channel:
        raise ctx.error("per-channel quantization of activations is not supported")
    if x.dtype.kind in "iu":
        qi = tin.quant if tin is not None else None
        if qi is None:
            raise ctx.error(f"integer input {x.name!r} has no quantization parameters")
        x = ctx.const(dequantize_array(x.const, qi), "dequantized") if x.is_const else \
            ctx.emit1("Mul", [ctx.cast(ctx.emit1("Sub", [ctx.cast(x, np.int32),
                                                           ctx.const(np.asarray(qi.zero_point[0], np.int32), "in_zp")]),
                                       np.float32), ctx.const(np.asarray(qi.scale[0], np.float32), "in_scale")])
    elif x.dtype != np.float32:
        x = ctx.cast(x, np.float32)
    t = ctx.emit1("Div", [x, ctx.const(np.asarray(q.scale[0], np.float32), "scale")])
    r = ctx.emit1("Add", [ctx.emit1("Round", [t]), ctx.const(np.float32(q.zero_point[0]), "zp")])
    info = np.iinfo(dt)
    r = ctx.emit1("Clip", [r, ctx.const(np.float32(info.min), "qmin"), ctx.const(np.float32(info.max), "qmax")])
    return ctx.cast(r, dt)
