"""Elementwise ops: arithmetic, comparisons, logic, unary math and activations.

Semantics follow the ONNX operator specification (latest opset); binary ops broadcast
numpy-style (multidirectional broadcasting).
"""
from __future__ import annotations

import math

import numpy as np

from .infer import broadcast_bool, broadcast_same_dtype, same_as_input
from .registry import register

_UNARY = ("elementwise", "unary", "inplace")
_ACT = _UNARY + ("activation",)


def _same(x, y):
    return np.asarray(y).astype(np.asarray(x).dtype, copy=False)


# ---------------------------------------------------------------- binary arithmetic
@register("Add", inputs=2, infer=broadcast_same_dtype,
          flags=("elementwise", "commutative", "inplace", "epilogue"))
def add(a, b):
    return _same(a, np.add(a, b))


@register("Sub", inputs=2, infer=broadcast_same_dtype, flags=("elementwise", "inplace", "epilogue"))
def sub(a, b):
    return _same(a, np.subtract(a, b))


@register("Mul", inputs=2, infer=broadcast_same_dtype,
          flags=("elementwise", "commutative", "inplace", "epilogue"))
def mul(a, b):
    return _same(a, np.multiply(a, b))


@register("Div", inputs=2, infer=broadcast_same_dtype, flags=("elementwise", "inplace"))
def div(a, b):
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        # ONNX integer Div truncates toward zero (C semantics)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.trunc(np.true_divide(a, b))
        return q.astype(a.dtype)
    return _same(a, np.divide(a, b))


@register("Pow", inputs=2, infer=broadcast_same_dtype, flags=("elementwise",))
def pow_(a, b):
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return np.power(a.astype(np.float64), np.asarray(b).astype(np.float64)).astype(a.dtype)
    return _same(a, np.power(a, np.asarray(b).astype(a.dtype)))


@register("Mod", inputs=2, attrs={"fmod": 0}, infer=broadcast_same_dtype, flags=("elementwise",))
def mod(a, b, *, fmod):
    if fmod:
        return _same(a, np.fmod(a, b))
    return _same(a, np.mod(a, b))


@register("Min", inputs=(1, -1), infer=broadcast_same_dtype, flags=("elementwise", "commutative"))
def min_(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return _same(xs[0], out)


@register("Max", inputs=(1, -1), infer=broadcast_same_dtype, flags=("elementwise", "commutative"))
def max_(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return _same(xs[0], out)


@register("Sum", inputs=(1, -1), infer=broadcast_same_dtype, flags=("elementwise", "commutative"))
def sum_(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return _same(xs[0], out)


@register("Mean", inputs=(1, -1), infer=broadcast_same_dtype, flags=("elementwise", "commutative"))
def mean_(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return _same(xs[0], out / len(xs))


@register("PRelu", inputs=2, infer=broadcast_same_dtype, flags=("elementwise",))
def prelu(x, slope):
    return _same(x, np.where(x < 0, x * slope, x))


# ---------------------------------------------------------------- comparisons & logic
@register("Equal", inputs=2, infer=broadcast_bool, flags=("elementwise", "commutative"))
def equal(a, b):
    return np.equal(a, b)


@register("Less", inputs=2, infer=broadcast_bool, flags=("elementwise",))
def less(a, b):
    return np.less(a, b)


@register("LessOrEqual", inputs=2, infer=broadcast_bool, flags=("elementwise",))
def less_equal(a, b):
    return np.less_equal(a, b)


@register("Greater", inputs=2, infer=broadcast_bool, flags=("elementwise",))
def greater(a, b):
    return np.greater(a, b)


@register("GreaterOrEqual", inputs=2, infer=broadcast_bool, flags=("elementwise",))
def greater_equal(a, b):
    return np.greater_equal(a, b)


@register("And", inputs=2, infer=broadcast_bool, flags=("elementwise", "commutative"))
def and_(a, b):
    return np.logical_and(a, b)


@register("Or", inputs=2, infer=broadcast_bool, flags=("elementwise", "commutative"))
def or_(a, b):
    return np.logical_or(a, b)


@register("Xor", inputs=2, infer=broadcast_bool, flags=("elementwise", "commutative"))
def xor_(a, b):
    return np.logical_xor(a, b)


@register("Not", infer=same_as_input, flags=_UNARY)
def not_(x):
    return np.logical_not(x)


def _where_infer(ctx):
    from .infer import broadcast_shapes
    return [(ctx.dtype(1), broadcast_shapes(ctx.shape(0), ctx.shape(1), ctx.shape(2), node=ctx.node_name))]


@register("Where", inputs=3, infer=_where_infer, flags=("elementwise",))
def where(c, a, b):
    return np.where(c, a, b).astype(np.asarray(a).dtype, copy=False)


# ---------------------------------------------------------------- unary math
def _unary(name, fn, flags=_UNARY, attrs=None):
    def ref(x, **kw):
        x = np.asarray(x)
        with np.errstate(all="ignore"):
            return _same(x, fn(x, **kw))

    ref.__name__ = name.lower()
    ref.__doc__ = f"{name} (elementwise)."
    register(name, infer=same_as_input, flags=flags, attrs=attrs)(ref)


_unary("Abs", np.abs)
_unary("Neg", np.negative)
_unary("Sqrt", np.sqrt)
_unary("Exp", np.exp)
_unary("Log", np.log)
_unary("Reciprocal", lambda x: np.reciprocal(x.astype(np.float64)) if x.dtype.kind in "iu" else np.reciprocal(x))
_unary("Floor", np.floor)
_unary("Ceil", np.ceil)
_unary("Round", np.round)  # round half to even, as ONNX specifies
_unary("Sign", np.sign)
_unary("Sin", np.sin)
_unary("Cos", np.cos)
_unary("Tan", np.tan)
_unary("Asin", np.arcsin)
_unary("Acos", np.arccos)
_unary("Atan", np.arctan)
_unary("Sinh", np.sinh)
_unary("Cosh", np.cosh)
_unary("Asinh", np.arcsinh)
_unary("Acosh", np.arccosh)
_unary("Atanh", np.arctanh)
_unary("Erf", lambda x: _erf(x))



def _bool_infer(ctx):
    return [(np.dtype(bool), ctx.shape(0))]


@register("IsNaN", infer=_bool_infer, flags=("elementwise", "unary"))
def isnan(x):
    """True where ``x`` is NaN (bool output)."""
    return np.isnan(x)


@register("IsInf", attrs={"detect_negative": 1, "detect_positive": 1}, infer=_bool_infer,
          flags=("elementwise", "unary"))
def isinf(x, *, detect_negative, detect_positive):
    """True where ``x`` is +inf (with ``detect_positive``) or -inf (with ``detect_negative``)."""
    x = np.asarray(x)
    pos = np.isposinf(x) if detect_positive else np.zeros(x.shape, bool)
    neg = np.isneginf(x) if detect_negative else np.zeros(x.shape, bool)
    return pos | neg


@register("Shrink", attrs={"bias": 0.0, "lambd": 0.5}, infer=same_as_input, flags=_UNARY)
def shrink(x, *, bias, lambd):
    """``x + bias`` where ``x < -lambd``, ``x - bias`` where ``x > lambd``, else 0."""
    x = np.asarray(x)
    xf = x.astype(np.float64)
    y = np.where(xf < -lambd, xf + bias, np.where(xf > lambd, xf - bias, 0.0))
    return y.astype(x.dtype)


# ---------------------------------------------------------------- bitwise
def _int_check(ctx, what="inputs"):
    for i, v in enumerate(ctx.inputs):
        if v is not None and v.dtype.kind not in "iu":
            raise ctx.fail(f"{what} must be integers, input {i} is {v.dtype}")


def _bitwise_infer(ctx):
    _int_check(ctx)
    return broadcast_same_dtype(ctx)


@register("BitwiseAnd", inputs=2, infer=_bitwise_infer, flags=("elementwise", "commutative"))
def bitwise_and(a, b):
    return np.bitwise_and(a, b).astype(np.asarray(a).dtype, copy=False)


@register("BitwiseOr", inputs=2, infer=_bitwise_infer, flags=("elementwise", "commutative"))
def bitwise_or(a, b):
    return np.bitwise_or(a, b).astype(np.asarray(a).dtype, copy=False)


@register("BitwiseXor", inputs=2, infer=_bitwise_infer, flags=("elementwise", "commutative"))
def bitwise_xor(a, b):
    return np.bitwise_xor(a, b).astype(np.asarray(a).dtype, copy=False)


def _bitwise_not_infer(ctx):
    _int_check(ctx, "input")
    return same_as_input(ctx)


@register("BitwiseNot", infer=_bitwise_not_infer, flags=_UNARY)
def bitwise_not(x):
    return np.invert(x)


def _bitshift_infer(ctx):
    _int_check(ctx)
    if ctx.attrs["direction"] not in ("LEFT", "RIGHT"):
        raise ctx.fail(f"direction {ctx.attrs['direction']!r} is not LEFT or RIGHT")
    return broadcast_same_dtype(ctx)


@register("BitShift", inputs=2, attrs={"direction": "LEFT"}, infer=_bitshift_infer, flags=("elementwise",))
def bitshift(x, y, *, direction):
    """``x << y`` or ``x >> y`` elementwise. Shifts by ≥ the bit width (or negative amounts)
    give 0, or −1 for a right shift of a negative signed value; a left shift of a signed
    value shifts its two's-complement bits (wrapping)."""
    x, y = np.broadcast_arrays(np.asarray(x), np.asarray(y))
    dt = x.dtype
    bits = dt.itemsize * 8
    y64 = y.astype(np.int64)
    bad = (y64 < 0) | (y64 >= bits)
    ys = np.where(bad, 0, y64).astype(np.dtype(f"u{dt.itemsize}"))
    if direction == "LEFT":
        u = x.view(np.dtype(f"u{dt.itemsize}")) if dt.kind == "i" else x
        r = np.left_shift(u, ys).view(dt) if dt.kind == "i" else np.left_shift(u, ys)
        return np.where(bad, dt.type(0), r).astype(dt)
    r = np.right_shift(x, ys.astype(dt) if dt.kind == "i" else ys)
    fill = np.where(x < 0, -1, 0).astype(dt) if dt.kind == "i" else np.zeros((), dt)
    return np.where(bad, fill, r).astype(dt)


# ---------------------------------------------------------------- activations
_unary("Relu", lambda x: np.maximum(x, 0), _ACT)
_unary("Sigmoid", lambda x: _sigmoid(x), _ACT)
_unary("Tanh", np.tanh, _ACT)
_unary("Softsign", lambda x: x / (1 + np.abs(x)), _ACT)
_unary("Softplus", lambda x: np.logaddexp(0, x), _ACT)
_unary("Mish", lambda x: x * np.tanh(np.logaddexp(0, x)), _ACT)
_unary("HardSwish", lambda x: x * np.clip(x / 6 + 0.5, 0, 1), _ACT)
_unary("LeakyRelu", lambda x, alpha: np.where(x >= 0, x, x * alpha), _ACT, {"alpha": 0.01})
_unary("Elu", lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)), _ACT, {"alpha": 1.0})
_unary("Celu", lambda x, alpha: np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha)), _ACT,
       {"alpha": 1.0})
_unary("Selu", lambda x, alpha, gamma: gamma * np.where(x > 0, x, alpha * np.expm1(x)), _ACT,
       {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
_unary("ThresholdedRelu", lambda x, alpha: np.where(x > alpha, x, 0), _ACT, {"alpha": 1.0})
_unary("HardSigmoid", lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1), _ACT,
       {"alpha": 0.2, "beta": 0.5})
_unary("Gelu", lambda x, approximate: _gelu(x, approximate), _ACT, {"approximate": "none"})
_unary("Swish", lambda x, alpha: x * _sigmoid(alpha * x), _ACT, {"alpha": 1.0})


def _clip_infer(ctx):
    return [(ctx.dtype(0), ctx.shape(0))]


@register("Clip", inputs=(1, 3), infer=_clip_infer, flags=_ACT)
def clip(x, lo=None, hi=None):
    """Clip(x, min, max): bounds are optional scalar inputs (ONNX opset ≥ 11)."""
    out = x
    if lo is not None:
        out = np.maximum(out, lo)
    if hi is not None:
        out = np.minimum(out, hi)
    return _same(x, out)


def _sigmoid(x):
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


def _erf(x):
    vec = np.vectorize(math.erf, otypes=[np.float64])
    return vec(np.asarray(x, dtype=np.float64))


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))
