"""Tensor-manipulation ops: shape ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Expand, Tile, Shape, Size), data movement (Concat, Split, Slice, Gather*, Scatter*, Pad,
DepthToSpace, SpaceToDepth, ReverseSequence, Compress), resampling (Resize), generators
(ConstantOfShape, Range, EyeLike, OneHot, Trilu) and type ops (Cast, CastLike, Identity,
Dropout).

Semantics follow the latest ONNX opset. Older opsets are normalized into these forms by
``npuc/frontends/onnx/conv_tensor.py``. Where the registry form differs from some opset's
ONNX node:

* ``Squeeze``/``Unsqueeze`` take ``axes`` as input 1 (opset 13 form).
* ``Split`` takes ``split`` as input 1 (opset 13) and the ``num_outputs`` attribute
  (opset 18); when neither is given the converter sets ``num_outputs`` from the node's
  output count. With ``num_outputs`` = n the chunks are ``ceil(d / n)`` long, the last one
  shorter.
* ``Slice`` takes starts/ends/axes/steps as inputs (opset 10 form).
* ``Pad`` takes pads/constant_value/axes as inputs (opset 18 form); mode ``wrap`` (opset 19).
* ``Resize`` is the opset 19 form (``X, roi, scales, sizes``); empty ``roi``/``scales``
  tensors are treated as absent. ``coordinate_transformation_mode`` also accepts the
  opset 11 ``tf_half_pixel_for_nn``. Upsample and Resize-10 become Resize with
  ``asymmetric`` coordinates.
* ``Dropout`` is inference-only: output 0 is the input, the optional mask is all True.
* ``Cast``/``EyeLike`` ``to``/``dtype`` are ONNX element-type codes (a numpy dtype name
  is accepted too).

Index math that the runtime kernels reuse lives in plain functions:
:func:`normalize_slice` / :func:`slice_as_index` / :func:`slice_output_shape` (Slice) and
:func:`resize_output_shape`, :func:`resize_source_coords`, :func:`resize_nearest_index`,
:func:`resize_taps` (Resize). Those raise ``ValueError``; inference turns it into a
``ShapeError`` naming the node.

Resize math (one axis; Resize is separable, so an N-D resize is one 1-D pass per axis):
``x_out`` ↦ ``x_in`` by the coordinate transformation (computed in float32 like
onnxruntime), e.g. half_pixel ``x_in = (x_out + 0.5) / scale − 0.5``; then

* nearest: ``round(x_in)`` by ``nearest_mode``, clamped to ``[0, len−1]``;
* linear: ``x_in`` clamped to ``[0, len−1]``, weights ``1−t, t`` on ``⌊x_in⌋, ⌊x_in⌋+1``;
* cubic: taps ``⌊x_in⌋−1 .. ⌊x_in⌋+2`` with Keys' kernel (``a = cubic_coeff_a``),
  out-of-range taps clamped to the edge, or dropped and renormalized with
  ``exclude_outside``;
* antialias (linear/cubic when downscaling, scale s < 1): the kernel is stretched by 1/s,
  weight(i) = k((i − x_in)·s) over the support, out-of-range taps clamped to the edge (or
  dropped with ``exclude_outside``), normalized to sum 1.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.dtypes import ONNX_TO_NUMPY
from .infer import same_as_input
from .registry import REQUIRED, InferContext, register

_VIEW = ("view",)


# ====================================================================== small helpers
def _ints(a) -> list[int]:
    """A constant tensor (or list) as Python ints (no int64 overflow in later math)."""
    if a is None:
        return []
    return [int(v) for v in np.asarray(a).reshape(-1).tolist()]


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return a


def _axes(axes, rank: int, what: str = "axes") -> list[int]:
    out = [_axis(a, rank, what) for a in _ints(axes)]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} {_ints(axes)} repeat an axis")
    return out


def _wrap(ctx: InferContext, fn, *args, **kw):
    """Run a ValueError-raising helper inside inference; turn errors into ShapeErrors."""
    try:
        return fn(*args, **kw)
    except ValueError as e:
        raise ctx.fail(str(e)) from None


def onnx_dtype(code) -> np.dtype:
    """An ONNX element-type code (or a numpy dtype-like) as a numpy dtype."""
    if isinstance(code, (int, np.integer)):
        try:
            return ONNX_TO_NUMPY[int(code)]
        except KeyError:
            raise ValueError(f"ONNX element type {int(code)} is not supported (supported codes: "
                             f"{sorted(ONNX_TO_NUMPY)})") from None
    return np.dtype(code)


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


# ====================================================================== Transpose, Expand, Tile
def _perm(perm, rank: int) -> list[int]:
    if perm is None:
        return list(range(rank))[::-1]
    p = _ints(perm)
    if sorted(p) != list(range(rank)):
        raise ValueError(f"perm {p} is not a permutation of 0..{rank - 1}")
    return p


def _transpose_infer(ctx):
    s = ctx.shape(0)
    p = _wrap(ctx, _perm, ctx.attrs["perm"], len(s))
    return [(ctx.dtype(0), tuple(s[i] for i in p))]


@register("Transpose", attrs={"perm": None}, infer=_transpose_infer)
def transpose(x, *, perm):
    """Permute axes; the default ``perm`` reverses them."""
    return np.transpose(x, _perm(perm, np.ndim(x)))


def _expand_infer(ctx):
    shp = _ints(ctx.require_const(1, "shape"))
    if any(d < 0 for d in shp):
        raise ctx.fail(f"shape {shp} has a negative dimension")
    try:
        out = tuple(np.broadcast_shapes(ctx.shape(0), tuple(shp)))
    except ValueError:
        raise ctx.fail(f"input shape {ctx.shape(0)} cannot be expanded to {tuple(shp)}") from None
    return [(ctx.dtype(0), out)]


@register("Expand", inputs=2, infer=_expand_infer, const_inputs=(1,))
def expand(x, shape):
    """Broadcast ``x`` against ``shape`` (bidirectional, numpy rules)."""
    x = np.asarray(x)
    out = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return np.array(np.broadcast_to(x, out))


def _tile_infer(ctx):
    reps = _ints(ctx.require_const(1, "repeats"))
    s = ctx.shape(0)
    if len(reps) != len(s):
        raise ctx.fail(f"repeats {reps} must have one entry per input dimension ({len(s)})")
    if any(r < 0 for r in reps):
        raise ctx.fail(f"repeats {reps} must be non-negative")
    return [(ctx.dtype(0), tuple(d * r for d, r in zip(s, reps)))]


@register("Tile", inputs=2, infer=_tile_infer, const_inputs=(1,))
def tile(x, repeats):
    """Repeat the tensor ``repeats[i]`` times along each axis i."""
    return np.tile(x, _ints(repeats))


# ====================================================================== Concat, Split
def _concat_infer(ctx):
    ins = [v for v in ctx.inputs if v is not None]
    r = len(ins[0].shape)
    axis = _wrap(ctx, _axis, ctx.attrs["axis"], r)
    out = list(ins[0].shape)
    for v in ins[1:]:
        if v.dtype != ins[0].dtype:
            raise ctx.fail(f"inputs have different dtypes {ins[0].dtype} and {v.dtype}")
        if len(v.shape) != r or any(a != b for i, (a, b) in enumerate(zip(v.shape, ins[0].shape)) if i != axis):
            raise ctx.fail(f"input shapes {[tuple(u.shape) for u in ins]} differ outside axis {axis}")
        out[axis] += v.shape[axis]
    return [(ins[0].dtype, tuple(out))]


@register("Concat", inputs=(1, -1), attrs={"axis": REQUIRED}, infer=_concat_infer)
def concat(*xs, axis):
    """Concatenate along ``axis``."""
    xs = [np.asarray(x) for x in xs if x is not None]
    return np.concatenate(xs, axis=_axis(axis, xs[0].ndim))


def split_sizes(dim: int, split=None, num_outputs: int | None = None) -> list[int]:
    """The chunk lengths of Split along a dimension of length ``dim``."""
    if split is not None and np.size(split) and num_outputs is not None:
        raise ValueError("give either the split input or num_outputs, not both")
    if split is not None and np.size(split):
        sizes = _ints(split)
        if any(s < 0 for s in sizes) or sum(sizes) != dim:
            raise ValueError(f"split {sizes} must be non-negative and sum to the axis length {dim}")
        return sizes
    if not num_outputs or num_outputs < 1:
        raise ValueError("Split needs the split input or num_outputs >= 1")
    chunk = -(-dim // num_outputs)
    sizes = [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
    if sizes[-1] < 0:
        raise ValueError(f"cannot split length {dim} into {num_outputs} chunks of {chunk}")
    return sizes


def _split_infer(ctx):
    s = ctx.shape(0)
    axis = _wrap(ctx, _axis, ctx.attrs["axis"], len(s))
    split = ctx.require_const(1, "split") if ctx.has(1) else None
    sizes = _wrap(ctx, split_sizes, s[axis], split, ctx.attrs["num_outputs"])
    return [(ctx.dtype(0), s[:axis] + (n,) + s[axis + 1:]) for n in sizes]


@register("Split", inputs=(1, 2), attrs={"axis": 0, "num_outputs": None}, infer=_split_infer,
          const_inputs=(1,))
def split(x, split=None, *, axis, num_outputs):
    """Split along ``axis`` into the lengths of ``split`` or into ``num_outputs`` chunks."""
    x = np.asarray(x)
    axis = _axis(axis, x.ndim)
    sizes = split_sizes(x.shape[axis], split, num_outputs)
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


# ====================================================================== Slice
def normalize_slice(shape, starts, ends, axes=None, steps=None) -> list[tuple[int, int, int]]:
    """ONNX Slice index normalization: one ``(start, end, step)`` per dimension of ``shape``.

    Negative starts/ends count from the back; then for step > 0 start and end are clamped to
    ``[0, dim]``, for step < 0 start to ``[0, dim−1]`` and end to ``[−1, dim−1]`` (−1 meaning
    "past index 0"). Huge values (INT64_MAX, INT64_MIN) are fine. Untouched dimensions get
    ``(0, dim, 1)``. The output length of a dimension is ``len(range(start, end, step))``.
    """
    starts, ends = _ints(starts), _ints(ends)
    rank = len(shape)
    if len(starts) != len(ends):
        raise ValueError(f"starts {starts} and ends {ends} have different lengths")
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise ValueError(f"starts, ends, axes, steps have different lengths "
                         f"({len(starts)}, {len(ends)}, {len(axes)}, {len(steps)})")
    axes = _axes(axes, rank)
    out = [(0, d, 1) for d in shape]
    for a, s, e, st in zip(axes, starts, ends, steps):
        d = shape[a]
        if st == 0:
            raise ValueError(f"slice step on axis {a} is 0")
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s = min(max(s, 0), d)
            e = min(max(e, 0), d)
        else:
            s = min(max(s, 0), d - 1)
            e = min(max(e, -1), d - 1)
        out[a] = (s, e, st)
    return out


def slice_output_shape(params: list[tuple[int, int, int]]) -> tuple[int, ...]:
    """Output shape of normalized slice ``params`` (from :func:`normalize_slice`)."""
    return tuple(len(range(s, e, st)) for s, e, st in params)


def slice_as_index(params: list[tuple[int, int, int]]) -> tuple[slice, ...]:
    """Normalized slice ``params`` as a numpy basic index (a view)."""
    return tuple(slice(s, e if e >= 0 else None, st) for s, e, st in params)


def _slice_inputs(ctx):
    return (ctx.require_const(1, "starts"), ctx.require_const(2, "ends"),
            ctx.require_const(3, "axes") if ctx.has(3) else None,
            ctx.require_const(4, "steps") if ctx.has(4) else None)


def _slice_infer(ctx):
    params = _wrap(ctx, normalize_slice, ctx.shape(0), *_slice_inputs(ctx))
    return [(ctx.dtype(0), slice_output_shape(params))]


@register("Slice", inputs=(3, 5), infer=_slice_infer, const_inputs=(1, 2, 3, 4))
def slice_(data, starts, ends, axes=None, steps=None):
    """Strided slice; see :func:`normalize_slice` for the index rules."""
    data = np.asarray(data)
    return data[slice_as_index(normalize_slice(data.shape, starts, ends, axes, steps))]


# ====================================================================== Gather / Scatter
def _check_indices(ind, dim: int, what: str) -> np.ndarray:
    ind = np.asarray(ind).astype(np.int64, copy=False)
    if ind.size and (ind.min() < -dim or ind.max() >= dim):
        raise ValueError(f"{what} index out of range [-{dim}, {dim - 1}]: "
                         f"min {ind.min()}, max {ind.max()}")
    return np.where(ind < 0, ind + dim, ind)


def _gather_infer(ctx):
    s = ctx.shape(0)
    a = _wrap(ctx, _axis, ctx.attrs["axis"], len(s))
    return [(ctx.dtype(0), s[:a] + tuple(ctx.shape(1)) + s[a + 1:])]


@register("Gather", inputs=2, attrs={"axis": 0}, infer=_gather_infer)
def gather(data, indices, *, axis):
    """Take ``indices`` (negative counts from the back) along ``axis``."""
    data = np.asarray(data)
    axis = _axis(axis, data.ndim)
    return np.take(data, _check_indices(indices, data.shape[axis], "Gather"), axis=axis)


def _gather_elements_infer(ctx):
    s, si = ctx.shape(0), ctx.shape(1)
    if len(s) != len(si):
        raise ctx.fail(f"data {s} and indices {si} must have the same rank")
    _wrap(ctx, _axis, ctx.attrs["axis"], len(s))
    return [(ctx.dtype(0), tuple(si))]


@register("GatherElements", inputs=2, attrs={"axis": 0}, infer=_gather_elements_infer)
def gather_elements(data, indices, *, axis):
    """out[i][j][k] = data[index[i][j][k]][j][k] (for axis 0), like take_along_axis."""
    data = np.asarray(data)
    axis = _axis(axis, data.ndim)
    ind = _check_indices(indices, data.shape[axis], "GatherElements")
    idx = list(np.indices(ind.shape, sparse=True))
    idx[axis] = ind
    return data[tuple(idx)]


def _gather_nd_infer(ctx):
    s, si = ctx.shape(0), ctx.shape(1)
    b = ctx.attrs["batch_dims"]
    if not si or s[:b] != si[:b] or si[-1] > len(s) - b:
        raise ctx.fail(f"indices {si} do not fit data {s} with batch_dims={b}")
    return [(ctx.dtype(0), tuple(si[:-1]) + tuple(s[b + si[-1]:]))]


@register("GatherND", inputs=2, attrs={"batch_dims": 0}, infer=_gather_nd_infer)
def gather_nd(data, indices, *, batch_dims):
    """Gather slices of ``data`` addressed by the last axis of ``indices``."""
    data = np.asarray(data)
    ind = np.asarray(indices).astype(np.int64)
    b = batch_dims
    k = ind.shape[-1]
    bshape = data.shape[:b]
    nb = math.prod(bshape)
    d = data.reshape((nb,) + data.shape[b:])
    i = ind.reshape((nb, -1, k))
    cols = [np.broadcast_to(np.arange(nb)[:, None], i.shape[:2])]
    for j in range(k):
        cols.append(_check_indices(i[..., j], d.shape[1 + j], "GatherND"))
    out = d[tuple(cols)]
    return out.reshape(ind.shape[:-1] + data.shape[b + k:])


_SCATTER_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(out: np.ndarray, idx: tuple, updates: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        out[idx] = updates
    elif reduction in _SCATTER_UFUNC:
        _SCATTER_UFUNC[reduction].at(out, idx, updates)
    else:
        raise ValueError(f"reduction {reduction!r} is not one of none, {', '.join(_SCATTER_UFUNC)}")
    return out


def _scatter_nd_infer(ctx):
    s, si, su = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if not si or si[-1] > len(s) or tuple(su) != tuple(si[:-1]) + tuple(s[si[-1]:]):
        raise ctx.fail(f"indices {si} and updates {su} do not fit data {s}")
    return [(ctx.dtype(0), s)]


@register("ScatterND", inputs=3, attrs={"reduction": "none"}, infer=_scatter_nd_infer)
def scatter_nd(data, indices, updates, *, reduction):
    """Copy of ``data`` with slices addressed by ``indices`` replaced by (or reduced with)
    ``updates``."""
    out = np.array(data, copy=True)
    ind = np.asarray(indices).astype(np.int64)
    idx = tuple(_check_indices(ind[..., j], out.shape[j], "ScatterND") for j in range(ind.shape[-1]))
    return _scatter(out, idx, np.asarray(updates, out.dtype), reduction)


def _scatter_elements_infer(ctx):
    s, si, su = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if len(si) != len(s) or tuple(si) != tuple(su):
        raise ctx.fail(f"indices {si} and updates {su} must have equal shapes of data's rank ({len(s)})")
    _wrap(ctx, _axis, ctx.attrs["axis"], len(s))
    return [(ctx.dtype(0), s)]


@register("ScatterElements", inputs=3, attrs={"axis": 0, "reduction": "none"},
          infer=_scatter_elements_infer)
def scatter_elements(data, indices, updates, *, axis, reduction):
    """out[index[i][j]][j] = updates[i][j] (axis 0), or reduced with ``reduction``."""
    out = np.array(data, copy=True)
    axis = _axis(axis, out.ndim)
    ind = _check_indices(indices, out.shape[axis], "ScatterElements")
    idx = list(np.indices(ind.shape, sparse=True))
    idx[axis] = ind
    idx = tuple(np.broadcast_to(i, ind.shape) for i in idx)
    return _scatter(out, idx, np.asarray(updates, out.dtype), reduction)


# ====================================================================== Pad
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def pad_widths(shape, pads, axes=None) -> list[tuple[int, int]]:
    """Per-dimension (before, after) pads; negative values crop."""
    rank = len(shape)
    pads = _ints(pads)
    ax = list(range(rank)) if axes is None or np.size(axes) == 0 else _axes(axes, rank)
    if len(pads) != 2 * len(ax):
        raise ValueError(f"pads {pads} must have 2 × {len(ax)} entries (begins then ends of axes {ax})")
    out = [(0, 0)] * rank
    for i, a in enumerate(ax):
        out[a] = (pads[i], pads[i + len(ax)])
    for a, (b, e) in enumerate(out):
        if shape[a] + b + e < 0:
            raise ValueError(f"pads {pads} crop more than the {shape[a]} elements of axis {a}")
    return out


def _pad_infer(ctx):
    axes = ctx.require_const(3, "axes") if ctx.has(3) else None
    w = _wrap(ctx, pad_widths, ctx.shape(0), ctx.require_const(1, "pads"), axes)
    if ctx.attrs["mode"] not in PAD_MODES:
        raise ctx.fail(f"mode {ctx.attrs['mode']!r} is not one of {', '.join(PAD_MODES)}")
    return [(ctx.dtype(0), tuple(d + b + e for d, (b, e) in zip(ctx.shape(0), w)))]


@register("Pad", inputs=(2, 4), attrs={"mode": "constant"}, infer=_pad_infer, const_inputs=(1, 3))
def pad(data, pads, constant_value=None, axes=None, *, mode):
    """Pad (negative pads crop first, as onnxruntime does); modes constant, reflect, edge, wrap."""
    data = np.asarray(data)
    w = pad_widths(data.shape, pads, axes)
    crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for d, (b, e) in zip(data.shape, w))
    data = data[crop]
    pos = [(max(b, 0), max(e, 0)) for b, e in w]
    if mode == "constant":
        cv = 0 if constant_value is None or np.size(constant_value) == 0 else \
            np.asarray(constant_value).reshape(-1)[0]
        return np.pad(data, pos, mode="constant", constant_values=cv).astype(data.dtype, copy=False)
    if mode not in PAD_MODES:
        raise ValueError(f"Pad mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    return np.pad(data, pos, mode=mode)


# ====================================================================== Resize
RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _present(a):
    return a is not None and np.size(a) > 0


def resize_output_shape(in_shape, scales=None, sizes=None, axes=None,
                        keep_aspect_ratio_policy: str = "stretch"):
    """Resize's output shape and the per-dimension float32 scale used by the coordinate
    transformation. With ``scales``: ``out = floor(in · scale)``. With ``sizes``:
    ``scale = out / in``; ``not_larger``/``not_smaller`` use one scale (min/max of
    sizes/in over ``axes``) and ``out = round(scale · in)``."""
    rank = len(in_shape)
    ax = list(range(rank)) if axes is None else _axes(axes, rank)
    if _present(scales) == _present(sizes):
        raise ValueError("Resize needs exactly one of scales and sizes")
    out = list(in_shape)
    full = np.ones(rank, np.float32)
    if _present(scales):
        sc = np.asarray(scales, np.float32).reshape(-1)
        if len(sc) != len(ax):
            raise ValueError(f"scales has {len(sc)} entries, expected {len(ax)} (one per axis {ax})")
        if (sc <= 0).any() or not np.isfinite(sc).all():
            raise ValueError(f"scales {sc.tolist()} must be positive")
        for a, s in zip(ax, sc):
            full[a] = s
            out[a] = int(np.floor(s * np.float32(in_shape[a])))
        return tuple(out), full
    sz = _ints(sizes)
    if len(sz) != len(ax):
        raise ValueError(f"sizes has {len(sz)} entries, expected {len(ax)} (one per axis {ax})")
    if any(s < 0 for s in sz):
        raise ValueError(f"sizes {sz} must be non-negative")
    if keep_aspect_ratio_policy not in ASPECT_POLICIES:
        raise ValueError(f"keep_aspect_ratio_policy {keep_aspect_ratio_policy!r} is not one of "
                         f"{', '.join(ASPECT_POLICIES)}")
    if keep_aspect_ratio_policy != "stretch":
        ratios = [np.float32(s) / np.float32(in_shape[a]) for a, s in zip(ax, sz)]
        s = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
        for a in ax:
            out[a] = int(np.floor(np.float32(s) * np.float32(in_shape[a]) + np.float32(0.5)))
            full[a] = s
        return tuple(out), full
    for a, s in zip(ax, sz):
        out[a] = s
        full[a] = np.float32(s) / np.float32(in_shape[a])
    return tuple(out), full


def resize_source_coords(mode: str, out_len: int, in_len: int, scale: float,
                         roi_start: float = 0.0, roi_end: float = 1.0) -> np.ndarray:
    """For each output index along one axis, the (fractional) input coordinate it samples,
    by ``coordinate_transformation_mode`` ``mode``. Computed in float32 with the operation
    order onnxruntime uses, so nearest-rounding ties agree; returns float64."""
    f = np.float32
    x = np.arange(out_len, dtype=np.float32)
    s, l0, l1 = f(scale), f(in_len), f(out_len)
    half = f(0.5)
    if mode == "half_pixel":
        r = (x + half) / s - half
    elif mode == "half_pixel_symmetric":
        adjustment = l1 / (s * l0)
        offset = (l0 / f(2)) * (f(1) - adjustment)
        r = offset + (x + half) / s - half
    elif mode == "pytorch_half_pixel":
        r = (x + half) / s - half if out_len > 1 else np.zeros(out_len, np.float32)
    elif mode == "align_corners":
        r = x * (l0 - f(1)) / (l1 - f(1)) if out_len > 1 else np.zeros(out_len, np.float32)
    elif mode == "asymmetric":
        r = x / s
    elif mode == "tf_half_pixel_for_nn":
        r = (x + half) / s
    elif mode == "tf_crop_and_resize":
        a, b = f(roi_start), f(roi_end)
        if out_len > 1:
            r = a * (l0 - f(1)) + (x * (b - a) * (l0 - f(1))) / (l1 - f(1))
        else:
            r = np.full(out_len, half * (a + b) * (l0 - f(1)), np.float32)
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r} is not one of {', '.join(COORDINATE_MODES)}")
    return np.asarray(r, np.float32).astype(np.float64)


def resize_nearest_index(x: np.ndarray, in_len: int, nearest_mode: str) -> np.ndarray:
    """Input index for each source coordinate ``x`` in nearest mode, clamped to the input."""
    x = np.asarray(x, np.float64)
    if nearest_mode == "round_prefer_floor":
        i = np.ceil(x - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    elif nearest_mode == "floor":
        i = np.floor(x)
    elif nearest_mode == "ceil":
        i = np.ceil(x)
    else:
        raise ValueError(f"nearest_mode {nearest_mode!r} is not one of {', '.join(NEAREST_MODES)}")
    return np.clip(i, 0, in_len - 1).astype(np.int64)


def cubic_kernel(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel at distances ``d``."""
    d = np.abs(d)
    d2, d3 = d * d, d * d * d
    near = (a + 2) * d3 - (a + 3) * d2 + 1
    far = a * d3 - 5 * a * d2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def linear_kernel(d: np.ndarray) -> np.ndarray:
    """The triangle (linear interpolation) kernel at distances ``d``."""
    return np.clip(1 - np.abs(d), 0, None)


def resize_taps(mode: str, x: np.ndarray, in_len: int, scale: float, *,
                nearest_mode: str = "round_prefer_floor", cubic_coeff_a: float = -0.75,
                exclude_outside: bool = False, antialias: bool = False):
    """Along one axis, the input indices and weights that make each output element:
    returns ``(idx, w)`` of shape ``(len(x), taps)``; ``idx`` lies in ``[0, in_len)`` and
    ``output[j] = Σ_k w[j, k] · input[idx[j, k]]``."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if mode == "nearest":
        return resize_nearest_index(x, in_len, nearest_mode)[:, None], np.ones((n, 1))
    if mode not in ("linear", "cubic"):
        raise ValueError(f"mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    if antialias and scale < 1:
        radius = 1 if mode == "linear" else 2
        s = float(scale)
        start = int(math.floor(-radius / s)) + 1
        offs = np.arange(start, 2 - start)
        base = np.ceil(x) - 1                      # ratio = x − base in (0, 1]
        idx = base[:, None] + offs[None, :]
        d = (idx - x[:, None]) * s
        w = linear_kernel(d) if mode == "linear" else cubic_kernel(d, cubic_coeff_a)
        if exclude_outside:
            w = np.where((idx >= 0) & (idx < in_len), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
        return np.clip(idx, 0, in_len - 1).astype(np.int64), w
    if mode == "linear":
        xc = np.clip(x, 0, in_len - 1)
        i0 = np.floor(xc)
        t = xc - i0
        idx = np.stack([i0, np.minimum(i0 + 1, in_len - 1)], axis=1).astype(np.int64)
        return idx, np.stack([1 - t, t], axis=1)
    i0 = np.floor(x)
    t = x - i0
    idx = i0[:, None] + np.arange(-1, 3)[None, :]
    w = cubic_kernel(idx - x[:, None], cubic_coeff_a)
    if exclude_outside:
        w = np.where((idx >= 0) & (idx < in_len), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, in_len - 1).astype(np.int64), w


def _resize_inputs(ctx):
    scales = ctx.require_const(2, "scales") if ctx.has(2) else None
    sizes = ctx.require_const(3, "sizes") if ctx.has(3) else None
    return scales, sizes


def _resize_infer(ctx):
    a = ctx.attrs
    if a["mode"] not in RESIZE_MODES:
        raise ctx.fail(f"mode {a['mode']!r} is not one of {', '.join(RESIZE_MODES)}")
    if a["coordinate_transformation_mode"] not in COORDINATE_MODES:
        raise ctx.fail(f"coordinate_transformation_mode {a['coordinate_transformation_mode']!r} is not one "
                       f"of {', '.join(COORDINATE_MODES)}")
    if a["mode"] == "nearest" and a["nearest_mode"] not in NEAREST_MODES:
        raise ctx.fail(f"nearest_mode {a['nearest_mode']!r} is not one of {', '.join(NEAREST_MODES)}")
    scales, sizes = _resize_inputs(ctx)
    out, _ = _wrap(ctx, resize_output_shape, ctx.shape(0), scales, sizes, a["axes"],
                   a["keep_aspect_ratio_policy"])
    return [(ctx.dtype(0), out)]


@register("Resize", inputs=(1, 4), infer=_resize_infer, const_inputs=(2, 3), attrs={
    "mode": "nearest", "coordinate_transformation_mode": "half_pixel",
    "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75, "exclude_outside": 0,
    "extrapolation_value": 0.0, "antialias": 0, "axes": None, "keep_aspect_ratio_policy": "stretch"})
def resize(x, roi=None, scales=None, sizes=None, *, mode, coordinate_transformation_mode, nearest_mode,
           cubic_coeff_a, exclude_outside, extrapolation_value, antialias, axes, keep_aspect_ratio_policy):
    """Resize (ONNX opset 19): nearest / (n-)linear / cubic, separable per axis; see the
    module docstring for the math."""
    x = np.asarray(x)
    rank = x.ndim
    out_shape, full_scales = resize_output_shape(x.shape, scales, sizes, axes, keep_aspect_ratio_policy)
    ax = list(range(rank)) if axes is None else _axes(axes, rank)
    cmode = coordinate_transformation_mode
    roi_full = [(0.0, 1.0)] * rank
    if cmode == "tf_crop_and_resize":
        if not _present(roi):
            raise ValueError("coordinate_transformation_mode tf_crop_and_resize needs the roi input")
        r = np.asarray(roi, np.float32).reshape(-1)
        if len(r) != 2 * len(ax):
            raise ValueError(f"roi has {len(r)} entries, expected {2 * len(ax)}")
        for i, a in enumerate(ax):
            roi_full[a] = (r[i], r[i + len(ax)])
    work = x.astype(np.float64) if mode != "nearest" else x
    outside = None
    for a in range(rank):
        if (full_scales[a] == 1 and out_shape[a] == x.shape[a] and cmode != "tf_crop_and_resize"):
            continue
        coords = resize_source_coords(cmode, out_shape[a], x.shape[a], full_scales[a], *roi_full[a])
        idx, w = resize_taps(mode, coords, x.shape[a], full_scales[a], nearest_mode=nearest_mode,
                             cubic_coeff_a=cubic_coeff_a, exclude_outside=bool(exclude_outside),
                             antialias=bool(antialias))
        bshape = [1] * rank
        bshape[a] = out_shape[a]
        if mode == "nearest":
            work = np.take(work, idx[:, 0], axis=a)
        else:
            acc = None
            for k in range(idx.shape[1]):
                term = np.take(work, idx[:, k], axis=a) * w[:, k].reshape(bshape)
                acc = term if acc is None else acc + term
            work = acc if acc is not None else np.take(work, idx[:, 0], axis=a)
        if cmode == "tf_crop_and_resize":
            m = ((coords < 0) | (coords > x.shape[a] - 1)).reshape(bshape)
            outside = m if outside is None else outside | m
    if outside is not None:
        work = np.where(outside, extrapolation_value, work)
    if x.dtype.kind in "iu" and mode != "nearest":
        # truncated like the ONNX reference (astype) and onnxruntime (static_cast)
        info = np.iinfo(x.dtype)
        work = np.clip(np.trunc(work), info.min, info.max)
    elif x.dtype == bool:
        work = work != 0
    return np.asarray(work).astype(x.dtype, copy=False)


# ====================================================================== generators
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


# ====================================================================== Cast
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


# ====================================================================== block rearrangement
def _d2s_infer(ctx):
    s = ctx.shape(0)
    b = ctx.attrs["blocksize"]
    if len(s) != 4 or b < 1 or s[1] % (b * b):
        raise ctx.fail(f"input {s} must be 4-D with channels divisible by blocksize² ({b}²)")
    if ctx.attrs["mode"] not in ("DCR", "CRD"):
        raise ctx.fail(f"mode {ctx.attrs['mode']!r} is not DCR or CRD")
    return [(ctx.dtype(0), (s[0], s[1] // (b * b), s[2] * b, s[3] * b))]


@register("DepthToSpace", attrs={"blocksize": REQUIRED, "mode": "DCR"}, infer=_d2s_infer)
def depth_to_space(x, *, blocksize, mode):
    """NCHW → N, C/b², H·b, W·b; DCR takes depth as (b, b, C/b²), CRD as (C/b², b, b)."""
    n, c, h, w = np.shape(x)
    b = blocksize
    if mode == "DCR":
        t = np.reshape(x, (n, b, b, c // (b * b), h, w)).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = np.reshape(x, (n, c // (b * b), b, b, h, w)).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


def _s2d_infer(ctx):
    s = ctx.shape(0)
    b = ctx.attrs["blocksize"]
    if len(s) != 4 or b < 1 or s[2] % b or s[3] % b:
        raise ctx.fail(f"input {s} must be 4-D with H and W divisible by blocksize {b}")
    if ctx.attrs["mode"] not in ("DCR", "CRD"):
        raise ctx.fail(f"mode {ctx.attrs['mode']!r} is not DCR or CRD")
    return [(ctx.dtype(0), (s[0], s[1] * b * b, s[2] // b, s[3] // b))]


@register("SpaceToDepth", attrs={"blocksize": REQUIRED, "mode": "DCR"}, infer=_s2d_infer)
def space_to_depth(x, *, blocksize, mode):
    """NCHW → N, C·b², H/b, W/b: the inverse of DepthToSpace in the same ``mode`` (DCR puts
    the block offsets before the channel in the output depth, CRD after it)."""
    n, c, h, w = np.shape(x)
    b = blocksize
    t = np.reshape(x, (n, c, h // b, b, w // b, b))
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * b * b, h // b, w // b)


def _revseq_infer(ctx):
    s = ctx.shape(0)
    ba, ta = ctx.attrs["batch_axis"], ctx.attrs["time_axis"]
    if len(s) < 2 or {ba, ta} - {0, 1} or ba == ta:
        raise ctx.fail(f"batch_axis {ba} and time_axis {ta} must be 0 and 1 (either order), rank >= 2")
    if ctx.shape(1) != (s[ba],):
        raise ctx.fail(f"sequence_lens {ctx.shape(1)} must have one entry per batch ({s[ba]})")
    return [(ctx.dtype(0), s)]


@register("ReverseSequence", inputs=2, attrs={"batch_axis": 1, "time_axis": 0}, infer=_revseq_infer)
def reverse_sequence(x, sequence_lens, *, batch_axis, time_axis):
    """Reverse the first sequence_lens[b] steps along ``time_axis`` of each batch b."""
    x = np.asarray(x)
    out = x.copy()
    xt = np.moveaxis(x, (batch_axis, time_axis), (0, 1))
    ot = np.moveaxis(out, (batch_axis, time_axis), (0, 1))
    for b, n in enumerate(_ints(sequence_lens)):
        n = min(max(n, 0), xt.shape[1])
        ot[b, :n] = xt[b, :n][::-1]
    return out


def _compress_infer(ctx):
    cond = np.asarray(ctx.require_const(1, "condition")).reshape(-1).astype(bool)
    s = ctx.shape(0)
    axis = ctx.attrs["axis"]
    if axis is None:
        return [(ctx.dtype(0), (int(cond[:math.prod(s)].sum()),))]
    a = _wrap(ctx, _axis, axis, len(s))
    if len(cond) > s[a]:
        raise ctx.fail(f"condition has {len(cond)} entries, more than axis {a} ({s[a]})")
    return [(ctx.dtype(0), s[:a] + (int(cond.sum()),) + s[a + 1:])]


@register("Compress", inputs=2, attrs={"axis": None}, infer=_compress_infer, const_inputs=(1,))
def compress(x, condition, *, axis):
    """Keep the slices along ``axis`` (of the flattened input when None) where condition is
    true; the condition may be shorter than the axis."""
    cond = np.asarray(condition).reshape(-1).astype(bool)
    x = np.asarray(x)
    if axis is None:
        return np.compress(cond, x.reshape(-1))
    return np.compress(cond, x, axis=_axis(axis, x.ndim))
