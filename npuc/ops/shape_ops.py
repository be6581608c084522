"""Shape and view ops: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (all views of
their input, flag ``view``), and the shape queries Shape and Size (flag ``shape_only``).

Where the registry form differs from some opset's ONNX node (older opsets are normalized
by ``npuc/frontends/onnx/conv_tensor.py``):

* ``Squeeze``/``Unsqueeze`` take ``axes`` as input 1 (opset 13 form).
* ``Dropout`` is inference-only: output 0 is the input, the optional mask is all True.
"""
from __future__ import annotations

import math

import numpy as np

from ._tensor_helpers import _axes, _ints, _wrap
from .infer import same_as_input
from .registry import register

_VIEW = ("view",)


# ====================================================================== views
def _reshape_target(in_shape, shape, allowzero: int) -> tuple[int, ...]:
    shape = _ints(shape)
    out = []
    minus = [i for i, d in enumerate(shape) if d == -1]
    if len(minus) > 1:
        raise ValueError(f"shape {shape} has more than one -1")
    if allowzero and minus and 0 in shape:
        raise ValueError(f"shape {shape} has both 0 and -1 while allowzero=1")
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ValueError(f"shape {shape}: 0 at position {i} copies a dimension the input "
                                 f"{tuple(in_shape)} does not have")
            d = in_shape[i]
        elif d < -1:
            raise ValueError(f"shape {shape} has a negative dimension {d}")
        out.append(d)
    total = math.prod(in_shape)
    if minus:
        rest = math.prod(d for i, d in enumerate(out) if i != minus[0])
        if rest == 0 or total % rest:
            raise ValueError(f"cannot reshape {tuple(in_shape)} ({total} elements) to {shape}")
        out[minus[0]] = total // rest
    if math.prod(out) != total:
        raise ValueError(f"cannot reshape {tuple(in_shape)} ({total} elements) to {shape} "
                         f"({math.prod(out)} elements)")
    return tuple(out)


def _reshape_infer(ctx):
    shape = ctx.require_const(1, "shape")
    return [(ctx.dtype(0), _wrap(ctx, _reshape_target, ctx.shape(0), shape, ctx.attrs["allowzero"]))]


@register("Reshape", inputs=2, attrs={"allowzero": 0}, infer=_reshape_infer, flags=_VIEW,
          const_inputs=(1,))
def reshape(data, shape, *, allowzero):
    """Reshape: 0 copies the input dimension (unless allowzero), -1 is inferred."""
    return np.reshape(data, _reshape_target(np.shape(data), shape, allowzero))


def _flatten_shape(in_shape, axis: int) -> tuple[int, int]:
    r = len(in_shape)
    a = axis + r if axis < 0 else axis
    if not 0 <= a <= r:
        raise ValueError(f"axis {axis} is out of range [-{r}, {r}]")
    return (math.prod(in_shape[:a]), math.prod(in_shape[a:]))


def _flatten_infer(ctx):
    return [(ctx.dtype(0), _wrap(ctx, _flatten_shape, ctx.shape(0), ctx.attrs["axis"]))]


@register("Flatten", attrs={"axis": 1}, infer=_flatten_infer, flags=_VIEW)
def flatten(x, *, axis):
    """Flatten to 2-D: (prod(shape[:axis]), prod(shape[axis:]))."""
    return np.reshape(x, _flatten_shape(np.shape(x), axis))


def _squeeze_shape(in_shape, axes) -> tuple[int, ...]:
    if axes is None or np.size(axes) == 0:
        return tuple(d for d in in_shape if d != 1)
    ax = _axes(axes, len(in_shape))
    for a in ax:
        if in_shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of shape {tuple(in_shape)}: its size is not 1")
    return tuple(d for i, d in enumerate(in_shape) if i not in ax)


def _squeeze_infer(ctx):
    axes = ctx.require_const(1, "axes") if ctx.has(1) else None
    return [(ctx.dtype(0), _wrap(ctx, _squeeze_shape, ctx.shape(0), axes))]


@register("Squeeze", inputs=(1, 2), infer=_squeeze_infer, flags=_VIEW, const_inputs=(1,))
def squeeze(x, axes=None):
    """Remove size-1 axes (all of them when ``axes`` is absent)."""
    return np.reshape(x, _squeeze_shape(np.shape(x), axes))


def _unsqueeze_shape(in_shape, axes) -> tuple[int, ...]:
    r = len(in_shape) + len(_ints(axes))
    ax = _axes(axes, r)
    it = iter(in_shape)
    return tuple(1 if i in ax else next(it) for i in range(r))


def _unsqueeze_infer(ctx):
    axes = ctx.require_const(1, "axes")
    return [(ctx.dtype(0), _wrap(ctx, _unsqueeze_shape, ctx.shape(0), axes))]


@register("Unsqueeze", inputs=2, infer=_unsqueeze_infer, flags=_VIEW, const_inputs=(1,))
def unsqueeze(x, axes):
    """Insert size-1 axes at ``axes`` (positions in the output)."""
    return np.reshape(x, _unsqueeze_shape(np.shape(x), axes))


@register("Identity", infer=same_as_input, flags=_VIEW)
def identity(x):
    """Identity."""
    return x


def _dropout_infer(ctx):
    return [(ctx.dtype(0), ctx.shape(0)), (np.dtype(bool), ctx.shape(0))]


@register("Dropout", inputs=(1, 3), attrs={"seed": None}, infer=_dropout_infer, flags=_VIEW)
def dropout(x, ratio=None, training_mode=None, *, seed):
    """Dropout at inference: output = input; mask (output 1) all True. ``ratio`` and
    ``training_mode`` are ignored (npuc compiles models for inference)."""
    x = np.asarray(x)
    return x, np.ones(x.shape, bool)


# ====================================================================== shape queries
def _shape_infer(ctx):
    return [(np.dtype(np.int64), (len(ctx.shape(0)[ctx.attrs["start"]:ctx.attrs["end"]]),))]


@register("Shape", attrs={"start": 0, "end": None}, infer=_shape_infer, flags=("shape_only",))
def shape(x, *, start, end):
    """The shape as int64; ``start``/``end`` slice it (negative counts from the back, clamped)."""
    return np.array(np.shape(x)[start:end], np.int64)


@register("Size", infer=lambda ctx: [(np.dtype(np.int64), ())], flags=("shape_only",))
def size(x):
    """Number of elements, an int64 scalar."""
    return np.array(np.size(x), np.int64)
