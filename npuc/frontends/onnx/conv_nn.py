"""ONNX converters for nn ops whose older-opset forms differ from the registry ops.

Everything else in the nn family (Conv, ConvTranspose, pools, LRN, Gemm, MatMul, the
normalizations of opset ≥ 9, Softmax family of opset ≥ 13) maps 1:1 onto the registry.

* BatchNormalization, every opset: inference form only. ``momentum``, ``spatial``,
  ``is_test``, ``consumed_inputs`` and ``training_mode=0`` are dropped; training outputs
  (running/saved mean and var) or ``training_mode=1`` are rejected. Opset < 9 with
  ``spatial=0`` (per-activation statistics of shape ``(C, D1, ...)``) is lowered to
  ``X · a + b`` with ``a = scale / sqrt(var + ε)``, ``b = B - mean · a`` (folded when the
  statistics are constants, as they are in exported models).
* Softmax, LogSoftmax, Hardmax, opset < 13: the input is coerced to 2-D at ``axis``
  (default 1) and the op runs over the flattened trailing dims. When at most one of the
  dims ``axis..rank-1`` is larger than 1 that is the op along that single axis; otherwise
  it becomes ``Reshape(shape[:axis] + [-1]) → op(axis=-1) → Reshape(shape)``.
* GroupNormalization, opset 18..20: scale and bias are per group; they are repeated to the
  per-channel form of opset 21 (they must be constants).
"""
from __future__ import annotations

import numpy as np

from .context import ConvertContext, converter

_BN_DROP = ("momentum", "spatial", "is_test", "consumed_inputs", "training_mode")


@converter("BatchNormalization")
def batch_normalization(ctx: ConvertContext):
    if len(ctx.output_names) > 1:
        raise ctx.error(f"only the inference form (one output Y) is supported; this node has "
                        f"{len(ctx.output_names)} outputs ({', '.join(ctx.output_names)}), which means "
                        f"training mode. Export the model in eval/inference mode")
    if int(ctx.attrs.get("training_mode", 0)) != 0:
        raise ctx.error("training_mode=1 (batch statistics) is not supported; export the model "
                        "in eval/inference mode")
    attrs = {k: v for k, v in ctx.attrs.items() if k not in _BN_DROP}
    x, scale, b, mean, var = (ctx.input(i) for i in range(5))
    if any(v is None for v in (x, scale, b, mean, var)):
        raise ctx.error("BatchNormalization needs its five inputs X, scale, B, mean, var")
    if int(ctx.attrs.get("spatial", 1)) == 0 and ctx.opset < 9 and len(scale.shape) > 1:
        eps = ctx.const(np.array(attrs.get("epsilon", 1e-5), var.dtype), "epsilon")
        tmp = f"{ctx.name or 'bn'}"

        def op(name, ins):
            return ctx.emit(name, ins, outputs=[f"{tmp}_{name.lower()}"], num_outputs=1)[0]

        a = op("Div", [scale, op("Sqrt", [op("Add", [var, eps])])])
        shift = op("Sub", [b, op("Mul", [mean, a])])
        return ctx.emit("Add", [op("Mul", [x, a]), shift])
    return ctx.emit("BatchNormalization", [x, scale, b, mean, var], attrs)


def _softmax_v1(ctx: ConvertContext):
    """Opset < 13: softmax over the input flattened to 2-D at ``axis``."""
    x = ctx.input(0)
    rank = len(x.shape)
    axis = int(ctx.attrs.get("axis", 1))
    if not -rank <= axis <= max(rank - 1, 0):
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    axis = axis + rank if axis < 0 else axis
    tail = list(x.shape[axis:])
    big = [i for i, d in enumerate(tail) if d > 1]
    if len(big) <= 1:
        along = axis + big[0] if big else rank - 1
        return ctx.emit(ctx.op_type, [x], {"axis": along - rank})
    flat_shape = list(x.shape[:axis]) + [int(np.prod(tail))]
    flat = ctx.emit("Reshape", [x, ctx.const(np.array(flat_shape, np.int64), "flat_shape")],
                    outputs=[f"{ctx.name or ctx.op_type}_flat"], num_outputs=1)[0]
    y = ctx.emit(ctx.op_type, [flat], {"axis": -1},
                 outputs=[f"{ctx.name or ctx.op_type}_{ctx.op_type.lower()}"], num_outputs=1)[0]
    return ctx.emit("Reshape", [y, ctx.const(np.array(x.shape, np.int64), "shape")])


for _op in ("Softmax", "LogSoftmax", "Hardmax"):
    converter(_op, until=12)(_softmax_v1)


@converter("GroupNormalization", since=18, until=20)
def group_normalization_v18(ctx: ConvertContext):
    x, scale, bias = (ctx.input(i) for i in range(3))
    g = int(ctx.attrs.get("num_groups", 0))
    c = x.shape[1] if len(x.shape) > 1 else 0
    if g < 1 or c % g:
        raise ctx.error(f"num_groups={g} must divide the number of channels ({c})")
    s = ctx.const_value(1, "scale")
    b = ctx.const_value(2, "bias")
    if s.shape != (g,) or b.shape != (g,):
        raise ctx.error(f"scale {list(s.shape)} and bias {list(b.shape)} must have shape [{g}] "
                        f"(one value per group) in opset {ctx.opset}")
    s = ctx.const(np.repeat(s, c // g), "scale")
    b = ctx.const(np.repeat(b, c // g), "bias")
    return ctx.emit("GroupNormalization", [x, s, b], ctx.attrs)
