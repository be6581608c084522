"""Data-movement ops: Transpose, Expand, Tile, Concat, Split, Slice, Gather, GatherElements,
GatherND, ScatterND, ScatterElements, Pad, DepthToSpace, SpaceToDepth, ReverseSequence and
Compress.

Where the registry form differs from some opset's ONNX node (older opsets are normalized
by ``npuc/frontends/onnx/conv_tensor.py``):

* ``Split`` takes ``split`` as input 1 (opset 13) and the ``num_outputs`` attribute
  (opset 18); when neither is given the converter sets ``num_outputs`` from the node's
  output count. With ``num_outputs`` = n the chunks are ``ceil(d / n)`` long, the last one
  shorter.
* ``Slice`` takes starts/ends/axes/steps as inputs (opset 10 form).
* ``Pad`` takes pads/constant_value/axes as inputs (opset 18 form); mode ``wrap`` (opset 19).

Index math that the runtime kernels reuse lives in plain functions: :func:`split_sizes`
(Split), :func:`normalize_slice` / :func:`slice_as_index` / :func:`slice_output_shape`
(Slice) and :func:`pad_widths` (Pad). Those raise ``ValueError``; inference turns it into a
``ShapeError`` naming the node.
"""
from __future__ import annotations

import math

import numpy as np

from ._tensor_helpers import _axes, _axis, _ints, _wrap
from .registry import REQUIRED, register


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
