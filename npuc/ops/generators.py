"""Generator ops: ConstantOfShape, Range, EyeLike, OneHot and Trilu.

``EyeLike``'s ``dtype`` is an ONNX element-type code (a numpy dtype name is accepted too).
"""
from __future__ import annotations

import math

import numpy as np

from ._tensor_helpers import _axis, _ints, _wrap
from .cast import onnx_dtype
from .infer import same_as_input
from .registry import register


def _cos_infer(ctx):
    shp = _ints(ctx.require_const(0, "shape"))
    if any(d < 0 for d in shp):
        raise ctx.fail(f"shape {shp} has a negative dimension")
    v = ctx.attrs["value"]
    dt = np.float32 if v is None else np.asarray(v).dtype
    return [(np.dtype(dt), tuple(shp))]


@register("ConstantOfShape", attrs={"value": None}, infer=_cos_infer, const_inputs=(0,))
def constant_of_shape(shape, *, value):
    """A tensor of shape ``shape`` filled with ``value`` (a 1-element tensor; default 0.0f)."""
    v = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(tuple(_ints(shape)), v[0], dtype=v.dtype)


def _range_len(start, limit, delta) -> int:
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if delta == 0:
        raise ValueError("Range delta is 0")
    if start.dtype.kind in "iu":
        s, l, d = int(start), int(limit), int(delta)
        return max(-((s - l) // d), 0)
    return max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)


def _range_infer(ctx):
    vals = [ctx.require_const(i, n) for i, n in enumerate(("start", "limit", "delta"))]
    return [(ctx.dtype(0), (_wrap(ctx, _range_len, *vals),))]


@register("Range", inputs=3, infer=_range_infer, const_inputs=(0, 1, 2))
def range_(start, limit, delta):
    """start + i·delta for i < max(ceil((limit − start) / delta), 0)."""
    start = np.asarray(start).reshape(())
    n = _range_len(start, limit, delta)
    dt = start.dtype
    return (start + np.arange(n, dtype=dt) * np.asarray(delta, dt).reshape(())).astype(dt, copy=False)


def _eyelike_infer(ctx):
    if len(ctx.shape(0)) != 2:
        raise ctx.fail(f"input must be 2-D, got shape {ctx.shape(0)}")
    dt = ctx.dtype(0) if ctx.attrs["dtype"] is None else _wrap(ctx, onnx_dtype, ctx.attrs["dtype"])
    return [(dt, ctx.shape(0))]


@register("EyeLike", attrs={"dtype": None, "k": 0}, infer=_eyelike_infer)
def eye_like(x, *, dtype, k):
    """Ones on diagonal ``k`` of a 2-D tensor shaped like ``x``."""
    dt = np.asarray(x).dtype if dtype is None else onnx_dtype(dtype)
    n, m = np.shape(x)
    return np.eye(n, m, k, dtype=dt)


def _onehot_infer(ctx):
    depth = ctx.require_const(1, "depth")
    d = int(np.asarray(depth).reshape(-1)[0])
    if d < 1:
        raise ctx.fail(f"depth {d} must be positive")
    s = list(ctx.shape(0))
    r = len(s) + 1
    a = _wrap(ctx, _axis, ctx.attrs["axis"], r)
    s.insert(a, d)
    return [(ctx.dtype(2), tuple(s))]


@register("OneHot", inputs=3, attrs={"axis": -1}, infer=_onehot_infer, const_inputs=(1,))
def one_hot(indices, depth, values, *, axis):
    """values[1] where the position along ``axis`` equals the index (negative indices count
    from the back of ``depth``), values[0] elsewhere."""
    d = int(np.asarray(depth).reshape(-1)[0])
    ind = np.asarray(indices).astype(np.int64)
    ind = np.where(ind < 0, ind + d, ind)
    values = np.asarray(values).reshape(-1)
    hot = ind[..., None] == np.arange(d)
    hot = np.moveaxis(hot, -1, _axis(axis, ind.ndim + 1))
    return np.where(hot, values[1], values[0]).astype(values.dtype)


@register("Trilu", inputs=(1, 2), attrs={"upper": 1}, infer=same_as_input)
def trilu(x, k=None, *, upper):
    """Keep the upper (or lower) triangle of the last two axes, from diagonal ``k``."""
    k = 0 if k is None else int(np.asarray(k).reshape(()))
    return np.triu(x, k) if upper else np.tril(x, k)
