"""Type ops: Cast, CastLike and BitCast, and :func:`onnx_dtype`, the ONNX element-type code
→ numpy dtype conversion (``to``/``dtype`` attributes are ONNX codes; a numpy dtype name is
accepted too).
"""
from __future__ import annotations

import numpy as np

from ..ir.dtypes import ONNX_TO_NUMPY
from ._tensor_helpers import _wrap
from .registry import REQUIRED, register


def onnx_dtype(code) -> np.dtype:
    """An ONNX element-type code (or a numpy dtype-like) as a numpy dtype."""
    if isinstance(code, (int, np.integer)):
        try:
            return ONNX_TO_NUMPY[int(code)]
        except KeyError:
            raise ValueError(f"ONNX element type {int(code)} is not supported (supported codes: "
                             f"{sorted(ONNX_TO_NUMPY)})") from None
    return np.dtype(code)


def _cast_infer(ctx):
    return [(_wrap(ctx, onnx_dtype, ctx.attrs["to"]), ctx.shape(0))]


def _cast(x, dt: np.dtype) -> np.ndarray:
    x = np.asarray(x)
    if dt == np.bool_:
        return x != 0
    if dt.kind in "iu" and x.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            return np.trunc(x).astype(dt)
    return x.astype(dt)


@register("Cast", attrs={"to": REQUIRED, "saturate": 1}, infer=_cast_infer)
def cast(x, *, to, saturate):
    """Convert to the element type ``to`` (float → int truncates toward zero); ``saturate``
    only matters for float8 types, which npuc does not support."""
    return _cast(x, onnx_dtype(to))


@register("CastLike", inputs=2, attrs={"saturate": 1}, infer=lambda ctx: [(ctx.dtype(1), ctx.shape(0))])
def cast_like(x, target, *, saturate):
    """Cast ``x`` to the element type of ``target``."""
    return _cast(x, np.asarray(target).dtype)


def _bitcast_infer(ctx):
    dt = _wrap(ctx, onnx_dtype, ctx.attrs["to"])
    if dt.itemsize != ctx.dtype(0).itemsize:
        raise ctx.fail(f"cannot bit-cast {ctx.dtype(0)} ({ctx.dtype(0).itemsize * 8} bits) to {dt} "
                       f"({dt.itemsize * 8} bits): the widths differ")
    return [(dt, ctx.shape(0))]


@register("BitCast", attrs={"to": REQUIRED}, infer=_bitcast_infer)
def bitcast(x, *, to):
    """Reinterpret the bits of each element as type ``to`` (same width)."""
    return np.ascontiguousarray(x).view(onnx_dtype(to))
