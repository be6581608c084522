"""Quantized (full-integer int8/uint8) TFLite operators → npuc's integer ops.

The importer (:mod:`.importer`) finds the operators that compute on quantized integer
tensors and converts them here instead of with the float converters; everything keeps the
model's own scales and zero points (``Value.quant``), nothing is recalibrated.

==========================================  ==============================================
TFLite (int8/uint8)                         npuc
==========================================  ==============================================
CONV_2D, DEPTHWISE_CONV_2D                  ``QConv`` (NCHW between transposes, as the
                                            float importer), per-channel ``M[c] =
                                            s_x·s_w[c]/s_y``, int32 bias as is
FULLY_CONNECTED                             ``QGemm`` (weights (O,K) → (K,O))
ADD, SUB / MUL                              ``QAdd`` (SUB: negative ``b_mult``) / ``QMul``
MEAN, SUM                                   ``QMean`` (``M = s_x/(s_y·count)``, SUM: count 1)
AVERAGE_POOL_2D                             ``QAvgPool`` when every window is whole;
                                            otherwise a float island
MAX_POOL_2D                                 integer ``MaxPool`` (+ ``Requantize`` if the
                                            output parameters differ)
CONCATENATION                               ``Concat`` (same parameters) or ``QConcat``
PAD, PADV2                                  integer ``Pad`` with the zero point (PADV2:
                                            its constant)
LOGISTIC, TANH, HARD_SWISH, ELU, RELU,      ``QLut``: ``table[q] = Q(f(DQ(q)))``
RELU6, RELU_N1_TO_1, LEAKY_RELU
SOFTMAX                                     float island: DequantizeLinear → Softmax →
                                            QuantizeLinear
QUANTIZE                                    ``QuantizeLinear`` (float in) / ``Requantize``
DEQUANTIZE                                  ``DequantizeLinear``
moves with other output parameters          the float converter's op + ``Requantize``
==========================================  ==============================================

Multipliers are computed like TFLite computes them (``double`` real multiplier, then a Q31
mantissa and shift), so they are the interpreter's own; fused activations become the
clamp bounds ``act_min``/``act_max`` with TFLite's rule (``zp + round(f/s)``, ties away from
zero). Only the rounding of the requantization differs: TFLite rounds twice
(SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT, ties away from zero), npuc
once, half up (:func:`npuc.quant.qparams.requantize`); results agree within one step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...ir import Value
from ...quant.qdq_params import QP, lut_table, make_qp, qadd_attrs
from ...quant.qparams import quantize_multiplier
from .context import ConvertContext, find_converter
from .conv_nn import SAME, window_pads
from .reader import TensorInfo

_ACT_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))
_QCONVERTERS: dict[str, Callable[[ConvertContext], Value | list[Value]]] = {}

#: element moves (exact on codes); with other output parameters they are followed by Requantize
_MOVES = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "GATHER", "GATHER_ND", "SLICE", "STRIDED_SLICE",
    "SPLIT", "SPLIT_V", "PACK", "UNPACK", "TILE", "BROADCAST_TO", "REVERSE_V2", "DEPTH_TO_SPACE",
    "SPACE_TO_DEPTH", "REDUCE_MAX", "REDUCE_MIN", "MAXIMUM", "MINIMUM", "RESIZE_NEAREST_NEIGHBOR",
})


def qconverter(*opcodes: str):
    def deco(fn):
        for op in opcodes:
            _QCONVERTERS[op] = fn
        return fn
    return deco


def supported_quantized_ops() -> list[str]:
    return sorted(set(_QCONVERTERS) | _MOVES)


# ---------------------------------------------------------------- planning (importer hook)
def _is_act(t: TensorInfo | None) -> bool:
    return t is not None and not t.is_const and t.quant is not None and t.dtype in _ACT_DTYPES


def plan(importer, quantized_ops) -> dict[int, Callable]:
    """The converter of every operator of a quantized model that computes on integer codes
    (``quantized_ops``: the operators the importer found reading quantized activations), plus
    QUANTIZE/DEQUANTIZE of computed tensors. Raises listing the ones npuc cannot convert."""
    sg = importer.subgraph
    chosen: dict[int, Callable] = {}
    missing: dict[str, list[int]] = {}
    wanted = {op.index for op in quantized_ops}
    for op in sg.operators:
        if op.opcode in ("QUANTIZE", "DEQUANTIZE"):
            if any(_is_act(sg.tensors[i]) or (i >= 0 and not sg.tensors[i].is_const and op.opcode == "QUANTIZE")
                   for i in op.inputs if i >= 0):
                chosen[op.index] = _QCONVERTERS[op.opcode]
            continue
        if op.index not in wanted:
            continue
        bad = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs)
               if i >= 0 and not sg.tensors[i].is_const and sg.tensors[i].quant is not None
               and sg.tensors[i].dtype is not None and sg.tensors[i].dtype.kind in "iu"
               and sg.tensors[i].dtype not in _ACT_DTYPES and sg.tensors[i].dtype != np.int32]
        fn = _QCONVERTERS.get(op.opcode)
        if fn is None and op.opcode in _MOVES and find_converter(op) is not None:
            fn = _move
        if fn is None or bad:
            why = f" ({bad[0].type_name} activations)" if bad else ""
            missing.setdefault(op.label + why, []).append(op.index)
        else:
            chosen[op.index] = fn
    if missing:
        lines = "; ".join(f"{k}: operator(s) {', '.join(f'#{i}' for i in v[:6])}" for k, v in sorted(missing.items()))
        raise importer.fail(f"quantized TFLite model: no integer conversion for {lines}. Quantized ops npuc "
                            f"imports: {', '.join(supported_quantized_ops())}")
    return chosen


# ---------------------------------------------------------------- parameters
def tensor_qp(t: TensorInfo | None, what: str, ctx: ConvertContext) -> QP:
    if t is None or t.quant is None or t.dtype is None:
        raise ctx.error(f"{what} has no quantization parameters")
    q = t.quant
    if q.per_channel:
        return make_qp(q.scale, q.zero_point, t.dtype, q.axis, len(t.shape))
    return make_qp(q.scale[:1], q.zero_point[:1], t.dtype)


def in_qp(ctx: ConvertContext, i: int = 0) -> QP:
    return tensor_qp(ctx.tensor(i), f"input {i}", ctx)


def out_qp(ctx: ConvertContext, i: int = 0) -> QP:
    return tensor_qp(ctx.out_tensors[i], f"output {i}", ctx)


def tflite_multiplier(real) -> tuple:
    """(m, n) of ``real`` computed in double, as TFLite's QuantizeMultiplier does."""
    m, n = quantize_multiplier(np.asarray(real, np.float64))
    return m, n


def _scalar_mult(real: float) -> tuple[int, int]:
    m, n = tflite_multiplier(real)
    return int(np.asarray(m).reshape(-1)[0]), int(np.asarray(n).reshape(-1)[0])


def _round_away(v: float) -> int:
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def act_bounds(ctx: ConvertContext, y: QP, code: int | None = None) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized: the fused activation's clamp in codes."""
    if code is None:
        code = ctx.opt("FusedActivationFunction", 0) or 0
    lo, hi = y.qmin, y.qmax

    def q(f):
        return y.z + _round_away(float(np.float32(f) / np.float32(y.s)))

    if code == 1:      # RELU
        lo = max(lo, q(0.0))
    elif code == 3:    # RELU6
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif code == 2:    # RELU_N1_TO_1
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif code not in (0, 4):  # NONE; TANH is ignored by TFLite's kernels
        raise ctx.error(f"fused activation {code} is not supported on quantized operators")
    return lo, hi


def _mark(v: Value, qp: QP) -> Value:
    if v.quant is None and v.dtype.kind in "iu":
        v.quant = qp.ir()
    return v


def _common(y: QP, lo: int, hi: int) -> dict:
    return {"y_zp": y.z, "act_min": lo, "act_max": hi, "out_dtype": str(y.dtype)}


def _bias(ctx: ConvertContext, i: int, channels: int) -> Value:
    b = ctx.input(i)
    if b is None:
        return ctx.const(np.zeros(channels, np.int32), "bias_q")
    if b.const is None or b.dtype != np.int32:
        raise ctx.error(f"the bias must be a constant int32 tensor, got {b.dtype}")
    return ctx.const(np.asarray(b.const, np.int32).reshape(channels), "bias_q")


def _requantize_to(ctx: ConvertContext, v: Value, x: QP, y: QP, tag: str = "requantize") -> Value:
    if x.same(y):
        return v
    m, n = _scalar_mult(float(np.float64(x.s) / np.float64(y.s)))
    out = ctx.emit1("Requantize", [v], {"x_zp": x.z, "multiplier": m, "shift": n,
                                        **_common(y, y.qmin, y.qmax)}, tag=tag)
    return _mark(out, y)


# ---------------------------------------------------------------- convolutions / FC
def _qconv(ctx: ConvertContext, x: Value, w_oihw: np.ndarray, wq: QP, group: int, kh: int, kw: int):
    xq, yq = in_qp(ctx), out_qp(ctx)
    o = w_oihw.shape[0]
    sw = np.broadcast_to(wq.scale.reshape(-1).astype(np.float64), (o,))
    m, n = tflite_multiplier(np.float64(xq.s) * sw / np.float64(yq.s))
    strides = [ctx.opt("StrideH", 1) or 1, ctx.opt("StrideW", 1) or 1]
    dil = [ctx.opt("DilationHFactor", 1) or 1, ctx.opt("DilationWFactor", 1) or 1]
    pads = window_pads(ctx, x.shape[1:3], (kh, kw), strides, dil, ctx.opt("Padding", SAME))
    lo, hi = act_bounds(ctx, yq)
    wz = wq.zero_point.reshape(-1)
    wqp = QP(wq.scale.reshape(-1), wz, wq.dtype, None if wq.per_tensor else 0)
    wv = ctx.const(np.ascontiguousarray(w_oihw), "w_oihw")
    wv.quant = wqp.ir()
    attrs = {"strides": strides, "dilations": dil, "pads": pads, "group": group, "kernel_shape": [kh, kw],
             "x_zp": xq.z, "w_zp": wz.tolist() if wz.size > 1 else int(wz[0]),
             "multiplier": np.atleast_1d(m).astype(np.int64).tolist(),
             "shift": np.atleast_1d(n).astype(np.int64).tolist(), **_common(yq, lo, hi)}
    y = ctx.emit1("QConv", [ctx.to_nchw(x), wv, _bias(ctx, 2, o)], attrs)
    return ctx.to_nhwc(_mark(y, yq))


def _const_weights(ctx: ConvertContext) -> np.ndarray:
    w = ctx.const_value(1, "filter")
    if w.dtype not in _ACT_DTYPES:
        raise ctx.error(f"weights must be int8/uint8 in a quantized operator, got {w.dtype}")
    return np.asarray(w)


@qconverter("CONV_2D")
def q_conv_2d(ctx: ConvertContext):
    x = ctx.require(0, "input")
    w = _const_weights(ctx)
    o, kh, kw, i = w.shape
    c = x.shape[3]
    if i == 0 or c % i:
        raise ctx.error(f"input has {c} channels, not a multiple of the filter's {i}")
    return _qconv(ctx, x, w.transpose(0, 3, 1, 2), in_qp(ctx, 1), c // i, kh, kw)


@qconverter("DEPTHWISE_CONV_2D")
def q_depthwise_conv_2d(ctx: ConvertContext):
    x = ctx.require(0, "input")
    w = _const_weights(ctx)
    _, kh, kw, o = w.shape
    c = x.shape[3]
    if o % c:
        raise ctx.error(f"filter has {o} output channels, not a multiple of the input's {c}")
    return _qconv(ctx, x, w.transpose(3, 0, 1, 2), in_qp(ctx, 1), c, kh, kw)


@qconverter("FULLY_CONNECTED")
def q_fully_connected(ctx: ConvertContext):
    x = ctx.require(0, "input")
    w = _const_weights(ctx)
    if (ctx.opt("WeightsFormat", 0) or 0) != 0 or w.ndim != 2:
        raise ctx.error("weights must be 2-D (out, in) in the default format")
    o, k = w.shape
    xq, wq, yq = in_qp(ctx), in_qp(ctx, 1), out_qp(ctx)
    sw = np.broadcast_to(wq.scale.reshape(-1).astype(np.float64), (o,))
    m, n = tflite_multiplier(np.float64(xq.s) * sw / np.float64(yq.s))
    lo, hi = act_bounds(ctx, yq)
    wz = wq.zero_point.reshape(-1)
    bv = ctx.const(np.ascontiguousarray(w.T), "w_kn")
    bv.quant = QP(wq.scale.reshape(-1), wz, wq.dtype, None if wq.per_tensor else 1).ir()
    x2 = _mark(ctx.reshape(x, [x.size // k, k]), xq)
    attrs = {"a_zp": xq.z, "b_zp": wz.tolist() if wz.size > 1 else int(wz[0]),
             "multiplier": np.atleast_1d(m).astype(np.int64).tolist(),
             "shift": np.atleast_1d(n).astype(np.int64).tolist(), **_common(yq, lo, hi)}
    y = _mark(ctx.emit1("QGemm", [x2, bv, _bias(ctx, 2, o)], attrs), yq)
    t = ctx.out_tensors[0]
    if t is not None and t.shape and tuple(t.shape) != y.shape and int(np.prod(t.shape)) == y.size:
        y = _mark(ctx.reshape(y, list(t.shape)), yq)
    return y


# ---------------------------------------------------------------- elementwise
@qconverter("ADD", "SUB")
def q_add(ctx: ConvertContext):
    a, b = ctx.require(0, "a"), ctx.require(1, "b")
    aq, bq, yq = in_qp(ctx, 0), in_qp(ctx, 1), out_qp(ctx)
    attrs = qadd_attrs(aq, bq, yq, -1 if ctx.op.opcode == "SUB" else 1)
    lo, hi = act_bounds(ctx, yq)
    attrs.update(act_min=lo, act_max=hi, out_dtype=str(yq.dtype))
    return _mark(ctx.emit1("QAdd", [a, b], attrs), yq)


@qconverter("MUL")
def q_mul(ctx: ConvertContext):
    a, b = ctx.require(0, "a"), ctx.require(1, "b")
    aq, bq, yq = in_qp(ctx, 0), in_qp(ctx, 1), out_qp(ctx)
    m, n = _scalar_mult(np.float64(aq.s) * np.float64(bq.s) / np.float64(yq.s))
    lo, hi = act_bounds(ctx, yq)
    return _mark(ctx.emit1("QMul", [a, b], {"a_zp": aq.z, "b_zp": bq.z, "multiplier": m, "shift": n,
                                            **_common(yq, lo, hi)}), yq)


def _lut(fn):
    def convert(ctx: ConvertContext):
        x = ctx.require(0, "input")
        xq, yq = in_qp(ctx), out_qp(ctx)
        table = lut_table(lambda v: fn(ctx, v), xq, yq)
        return _mark(ctx.emit1("QLut", [x], {"table": table.tolist(), "out_dtype": str(yq.dtype)}), yq)
    return convert


def _sigmoid(ctx, v):
    return 1.0 / (1.0 + np.exp(-v.astype(np.float64)))


def _hard_swish(ctx, v):
    v = v.astype(np.float64)
    return v * np.clip(v + 3.0, 0.0, 6.0) / 6.0


def _elu(ctx, v):
    v = v.astype(np.float64)
    return np.where(v > 0, v, np.expm1(np.minimum(v, 0)))


def _leaky(ctx, v):
    alpha = float(np.float32(ctx.opt("Alpha", 0.2)))
    v = v.astype(np.float64)
    return np.where(v >= 0, v, alpha * v)


for _name, _f in {"LOGISTIC": _sigmoid, "TANH": lambda c, v: np.tanh(v.astype(np.float64)),
                  "HARD_SWISH": _hard_swish, "ELU": _elu, "LEAKY_RELU": _leaky,
                  "RELU": lambda c, v: np.maximum(v, 0), "RELU6": lambda c, v: np.clip(v, 0, 6),
                  "RELU_N1_TO_1": lambda c, v: np.clip(v, -1, 1)}.items():
    qconverter(_name)(_lut(_f))


# ---------------------------------------------------------------- reductions / pools
def _axes(ctx: ConvertContext, rank: int) -> list[int]:
    a = np.asarray(ctx.const_value(1, "axes"), np.int64).reshape(-1)
    return sorted({int(v) % rank for v in a})


@qconverter("MEAN", "SUM")
def q_mean(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq, yq = in_qp(ctx), out_qp(ctx)
    axes = _axes(ctx, x.rank)
    count = int(np.prod([x.shape[a] for a in axes])) if ctx.op.opcode == "MEAN" else 1
    m, n = _scalar_mult(np.float64(xq.s) / (np.float64(yq.s) * count))
    y = ctx.emit1("QMean", [x], {"axes": axes, "keepdims": int(bool(ctx.opt("KeepDims", False))), "x_zp": xq.z,
                                 "multiplier": m, "shift": n, **_common(yq, yq.qmin, yq.qmax)})
    return _mark(y, yq)


def _pool_geometry(ctx: ConvertContext, x: Value):
    kh, kw = ctx.opt("FilterHeight", 1) or 1, ctx.opt("FilterWidth", 1) or 1
    strides = [ctx.opt("StrideH", 1) or 1, ctx.opt("StrideW", 1) or 1]
    pads = window_pads(ctx, x.shape[1:3], (kh, kw), strides, (1, 1), ctx.opt("Padding", SAME))
    return {"kernel_shape": [kh, kw], "strides": strides, "pads": pads}


@qconverter("AVERAGE_POOL_2D")
def q_average_pool_2d(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq, yq = in_qp(ctx), out_qp(ctx)
    geo = _pool_geometry(ctx, x)
    lo, hi = act_bounds(ctx, yq)
    if not any(geo["pads"]):
        count = geo["kernel_shape"][0] * geo["kernel_shape"][1]
        m, n = _scalar_mult(np.float64(xq.s) / (np.float64(yq.s) * count))
        y = ctx.emit1("QAvgPool", [ctx.to_nchw(x)], {**geo, "x_zp": xq.z, "multiplier": m, "shift": n,
                                                     **_common(yq, lo, hi)})
        return ctx.to_nhwc(_mark(y, yq))
    # windows cut by the padding average fewer elements: a float island (TFLite counts in-bounds only)
    f = _dequantize(ctx, ctx.to_nchw(x), xq)
    f = ctx.emit1("AveragePool", [f], {**geo, "count_include_pad": 0})
    return ctx.to_nhwc(_clamp(ctx, _quantize(ctx, f, yq), yq, lo, hi))


@qconverter("MAX_POOL_2D")
def q_max_pool_2d(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq, yq = in_qp(ctx), out_qp(ctx)
    y = _mark(ctx.emit1("MaxPool", [ctx.to_nchw(x)], _pool_geometry(ctx, x)), xq)
    y = _requantize_to(ctx, y, xq, yq)
    lo, hi = act_bounds(ctx, yq)
    return ctx.to_nhwc(_clamp(ctx, y, yq, lo, hi))


def _clamp(ctx: ConvertContext, v: Value, qp: QP, lo: int, hi: int) -> Value:
    if lo <= qp.qmin and hi >= qp.qmax:
        return v
    return _mark(ctx.emit1("Clip", [v, ctx.scalar(lo, v, "act_min"), ctx.scalar(hi, v, "act_max")]), qp)


# ---------------------------------------------------------------- movement
@qconverter("CONCATENATION")
def q_concatenation(ctx: ConvertContext):
    xs = [ctx.require(i, f"input {i}") for i in range(len(ctx.inputs))]
    yq = out_qp(ctx)
    qs = [in_qp(ctx, i) for i in range(len(xs))]
    axis = int(ctx.opt("Axis", 0)) % xs[0].rank
    if all(q.same(yq) for q in qs):
        y = ctx.emit1("Concat", xs, {"axis": axis})
    else:
        mults = [_scalar_mult(np.float64(q.s) / np.float64(yq.s)) for q in qs]
        y = ctx.emit1("QConcat", xs, {"axis": axis, "x_zps": [q.z for q in qs], "multipliers": [m for m, _ in mults],
                                      "shifts": [n for _, n in mults], "y_zp": yq.z, "out_dtype": str(yq.dtype)})
    y = _mark(y, yq)
    lo, hi = act_bounds(ctx, yq)
    return _clamp(ctx, y, yq, lo, hi)


@qconverter("PAD", "PADV2")
def q_pad(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq, yq = in_qp(ctx), out_qp(ctx)
    p = np.asarray(ctx.const_value(1, "paddings"), np.int64)
    if p.shape != (x.rank, 2):
        raise ctx.error(f"paddings must be [{x.rank}, 2], got {list(p.shape)}")
    if ctx.op.opcode == "PADV2" and ctx.input(2) is not None:
        value = np.asarray(ctx.const_value(2, "constant_values")).reshape(-1)[0]
    else:
        value = xq.z
    y = ctx.emit1("Pad", [x, ctx.ints(np.concatenate([p[:, 0], p[:, 1]]), "pads"),
                          ctx.const(np.asarray(value, x.dtype), "pad_value")], {"mode": "constant"})
    return _requantize_to(ctx, _mark(y, xq), xq, yq)


def _move(ctx: ConvertContext):
    """An element move whose output has other parameters: the move, then Requantize."""
    outs = find_converter(ctx.op)(ctx)
    outs = [outs] if isinstance(outs, Value) else list(outs)
    xq = in_qp(ctx)
    res = []
    for i, v in enumerate(outs):
        t = ctx.out_tensors[i] if i < len(ctx.out_tensors) else None
        if t is None or t.quant is None or v.dtype.kind not in "iu":
            res.append(v)
            continue
        res.append(_requantize_to(ctx, _mark(v, xq), xq, out_qp(ctx, i), tag=f"requantize{i}"))
    return res


# ---------------------------------------------------------------- float islands, (de)quantize
def _dequantize(ctx: ConvertContext, v: Value, q: QP) -> Value:
    return ctx.emit1("DequantizeLinear", [v, ctx.const(np.float32(q.s), "dq_scale"),
                                          ctx.const(np.asarray(q.z, q.dtype), "dq_zp")], {"axis": 1})


def _quantize(ctx: ConvertContext, v: Value, q: QP) -> Value:
    y = ctx.emit1("QuantizeLinear", [v, ctx.const(np.float32(q.s), "q_scale"),
                                     ctx.const(np.asarray(q.z, q.dtype), "q_zp")], {"axis": 1})
    return _mark(y, q)


@qconverter("SOFTMAX")
def q_softmax(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq, yq = in_qp(ctx), out_qp(ctx)
    f = _dequantize(ctx, x, xq)
    beta = float(ctx.opt("Beta", 1.0) or 1.0)
    if beta != 1.0:
        f = ctx.emit1("Mul", [f, ctx.const(np.float32(beta), "beta")])
    return _quantize(ctx, ctx.emit1("Softmax", [f], {"axis": -1}), yq)


@qconverter("QUANTIZE")
def q_quantize(ctx: ConvertContext):
    x = ctx.require(0, "input")
    yq = out_qp(ctx)
    if not yq.per_tensor:
        raise ctx.error("per-channel quantization of activations is not supported")
    if x.dtype.kind == "f":
        if x.dtype != np.float32:
            x = ctx.cast(x, np.float32)
        return _quantize(ctx, x, yq)
    return _requantize_to(ctx, x, in_qp(ctx), yq)


@qconverter("DEQUANTIZE")
def q_dequantize(ctx: ConvertContext):
    x = ctx.require(0, "input")
    xq = in_qp(ctx)
    if not xq.per_tensor:
        raise ctx.error("per-channel dequantization of a computed tensor is not supported")
    return _dequantize(ctx, x, xq)


__all__ = ["plan", "supported_quantized_ops", "act_bounds", "tflite_multiplier"]
