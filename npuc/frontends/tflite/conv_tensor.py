"""Converters of TFLite data-movement, shape and reduction ops.

These work on the tensors in the model's own layout (no transposes). Index inputs that
TFLite reads at run time (shapes, axes, paddings, begins/ends) must be constants once
the graph is folded, which they are in converted models with static shapes.
"""
from __future__ import annotations

import numpy as np

from .context import ConvertContext, converter

_BIG = 2 ** 62  # "past the end" for Slice ends


def _ints(a) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axis(ctx: ConvertContext, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    return a


# ---------------------------------------------------------------- reshape family
@converter("RESHAPE")
def reshape(ctx: ConvertContext):
    x = ctx.require(0, "input")
    if ctx.input(1) is not None:
        shape = _ints(ctx.const_value(1, "shape"))
    else:
        shape = list(ctx.opt("NewShape", []) or [])
        if not shape and ctx.out_tensors[0] is not None and ctx.out_tensors[0].shape:
            shape = list(ctx.out_tensors[0].shape)
    if shape.count(-1) > 1:
        raise ctx.error(f"new shape {shape} has more than one -1")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if known == 0 or x.size % known:
            raise ctx.error(f"cannot reshape {list(x.shape)} to {shape}")
        shape = [x.size // known if d == -1 else d for d in shape]
    return ctx.emit1("Reshape", [x, ctx.ints(shape, "shape")], {"allowzero": 1})


@converter("SQUEEZE")
def squeeze(ctx: ConvertContext):
    x = ctx.require(0, "input")
    dims = [_axis(ctx, d, x.rank) for d in (ctx.opt("SqueezeDims", []) or [])]
    if not dims:
        dims = [i for i, d in enumerate(x.shape) if d == 1]
    return ctx.emit1("Reshape", [x, ctx.ints([d for i, d in enumerate(x.shape) if i not in dims], "shape")])


@converter("EXPAND_DIMS")
def expand_dims(ctx: ConvertContext):
    x = ctx.require(0, "input")
    axis = _ints(ctx.const_value(1, "axis"))
    if len(axis) != 1:
        raise ctx.error(f"axis must hold one value, got {axis}")
    a = axis[0] + x.rank + 1 if axis[0] < 0 else axis[0]
    if not 0 <= a <= x.rank:
        raise ctx.error(f"axis {axis[0]} is out of range for rank {x.rank}")
    shape = list(x.shape)
    shape.insert(a, 1)
    return ctx.emit1("Reshape", [x, ctx.ints(shape, "shape")])


@converter("TRANSPOSE")
def transpose(ctx: ConvertContext):
    x = ctx.require(0, "input")
    perm = [_axis(ctx, p, x.rank) for p in _ints(ctx.const_value(1, "perm"))]
    if sorted(perm) != list(range(x.rank)):
        raise ctx.error(f"perm {perm} is not a permutation of {x.rank} axes")
    return ctx.emit1("Transpose", [x], {"perm": perm})


# ---------------------------------------------------------------- concat / split / pack
@converter("CONCATENATION")
def concatenation(ctx: ConvertContext):
    xs = [ctx.require(i, f"input {i}") for i in range(len(ctx.inputs))]
    axis = _axis(ctx, int(ctx.opt("Axis", 0)), xs[0].rank)
    return ctx.activation(ctx.emit1("Concat", xs, {"axis": axis}))


def _split(ctx: ConvertContext, x, sizes: list[int], axis: int):
    if len(sizes) == 1:
        return [ctx.emit1("Identity", [x])]
    return ctx.emit("Split", [x, ctx.ints(sizes, "split")], {"axis": axis}, num_outputs=len(sizes))


@converter("SPLIT")
def split(ctx: ConvertContext):
    x = ctx.require(1, "input")
    axis = _axis(ctx, _ints(ctx.const_value(0, "axis"))[0], x.rank)
    n = int(ctx.opt("NumSplits", len(ctx.op.outputs)) or len(ctx.op.outputs))
    if x.shape[axis] % n:
        raise ctx.error(f"dimension {axis} of {list(x.shape)} does not split into {n} equal parts")
    return _split(ctx, x, [x.shape[axis] // n] * n, axis)


@converter("SPLIT_V")
def split_v(ctx: ConvertContext):
    x = ctx.require(0, "input")
    sizes = _ints(ctx.const_value(1, "size_splits"))
    axis = _axis(ctx, _ints(ctx.const_value(2, "axis"))[0], x.rank)
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x.shape[axis] - sum(s for s in sizes if s != -1)
    if sum(sizes) != x.shape[axis] or min(sizes) < 0:
        raise ctx.error(f"size_splits {sizes} do not add up to dimension {axis} of {list(x.shape)}")
    return _split(ctx, x, sizes, axis)


@converter("PACK")
def pack(ctx: ConvertContext):
    xs = [ctx.require(i, f"input {i}") for i in range(len(ctx.inputs))]
    r = xs[0].rank
    axis = int(ctx.opt("Axis", 0))
    axis = axis + r + 1 if axis < 0 else axis
    if not 0 <= axis <= r:
        raise ctx.error(f"axis {ctx.opt('Axis', 0)} is out of range for packing rank-{r} tensors")
    shape = list(xs[0].shape)
    shape.insert(axis, 1)
    parts = [ctx.emit1("Reshape", [x, ctx.ints(shape, "shape")]) for x in xs]
    return ctx.emit1("Concat", parts, {"axis": axis}) if len(parts) > 1 else parts[0]


@converter("UNPACK")
def unpack(ctx: ConvertContext):
    x = ctx.require(0, "input")
    axis = _axis(ctx, int(ctx.opt("Axis", 0)), x.rank)
    n = x.shape[axis]
    shape = [d for i, d in enumerate(x.shape) if i != axis]
    parts = _split(ctx, x, [1] * n, axis)
    return [ctx.emit1("Reshape", [p, ctx.ints(shape, "shape")]) for p in parts]


# ---------------------------------------------------------------- pads
def _paddings(ctx: ConvertContext, x) -> np.ndarray:
    p = np.asarray(ctx.const_value(1, "paddings"), np.int64)
    if p.shape != (x.rank, 2):
        raise ctx.error(f"paddings must be [{x.rank}, 2], got {list(p.shape)}")
    return p


@converter("PAD", "PADV2")
def pad(ctx: ConvertContext):
    x = ctx.require(0, "input")
    p = _paddings(ctx, x)
    if not p.any():
        return ctx.emit1("Identity", [x])
    value = ctx.input(2)
    if value is not None:
        value = ctx.reshape(value, [])
    return ctx.emit1("Pad", [x, ctx.ints(np.concatenate([p[:, 0], p[:, 1]]), "pads"), value], {"mode": "constant"})


@converter("MIRROR_PAD")
def mirror_pad(ctx: ConvertContext):
    x = ctx.require(0, "input")
    p = _paddings(ctx, x)
    if ctx.opt("Mode", 0) == 0:  # REFLECT: the edge is not repeated
        return ctx.emit1("Pad", [x, ctx.ints(np.concatenate([p[:, 0], p[:, 1]]), "pads")], {"mode": "reflect"})
    # SYMMETRIC: the edge is repeated; pad one axis at a time with reversed slices
    y = x
    for axis, (before, after) in enumerate(p.tolist()):
        d = y.shape[axis]
        if before > d or after > d:
            raise ctx.error(f"symmetric padding {before}+{after} exceeds dimension {axis} ({d})")
        parts = []
        if before:
            parts.append(_slice(ctx, y, [before - 1], [-_BIG], [axis], [-1]))
        parts.append(y)
        if after:
            parts.append(_slice(ctx, y, [d - 1], [d - 1 - after], [axis], [-1]))
        if len(parts) > 1:
            y = ctx.emit1("Concat", parts, {"axis": axis})
    return y


# ---------------------------------------------------------------- slicing
def _slice(ctx: ConvertContext, x, starts, ends, axes, steps=None):
    ins = [x, ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes")]
    if steps is not None:
        ins.append(ctx.ints(steps, "steps"))
    return ctx.emit1("Slice", ins)


@converter("SLICE")
def slice_(ctx: ConvertContext):
    x = ctx.require(0, "input")
    begin, size = _ints(ctx.const_value(1, "begin")), _ints(ctx.const_value(2, "size"))
    if len(begin) != x.rank or len(size) != x.rank:
        raise ctx.error(f"begin {begin} and size {size} must have {x.rank} entries")
    ends = [x.shape[i] if s == -1 else b + s for i, (b, s) in enumerate(zip(begin, size))]
    return _slice(ctx, x, begin, ends, list(range(x.rank)))


@converter("STRIDED_SLICE")
def strided_slice(ctx: ConvertContext):
    """TF strided-slice semantics: masks select whole ranges (begin/end), insert axes
    (new_axis), take one index and drop the axis (shrink), or stand for all remaining axes
    (ellipsis); with ``offset`` the ends are relative to the begins."""
    x = ctx.require(0, "input")
    begin, end = _ints(ctx.const_value(1, "begin")), _ints(ctx.const_value(2, "end"))
    strides = _ints(ctx.const_value(3, "strides")) if ctx.input(3) is not None else [1] * len(begin)
    n = len(begin)
    if len(end) != n or len(strides) != n:
        raise ctx.error(f"begin {begin}, end {end} and strides {strides} differ in length")
    bm, em = int(ctx.opt("BeginMask", 0)), int(ctx.opt("EndMask", 0))
    elm, nam, sam = int(ctx.opt("EllipsisMask", 0)), int(ctx.opt("NewAxisMask", 0)), int(ctx.opt("ShrinkAxisMask", 0))
    offset = bool(ctx.opt("Offset", False))
    bit = lambda m, i: bool(m >> i & 1)  # noqa: E731
    consumed = sum(1 for i in range(n) if not bit(elm, i) and not bit(nam, i))
    starts, ends, steps, axes, out_shape = [], [], [], [], []
    dim = 0
    seen_ellipsis = False
    for i in range(n):
        if bit(elm, i) and not seen_ellipsis:
            seen_ellipsis = True
            k = x.rank - consumed
            out_shape += list(x.shape[dim:dim + k])
            dim += k
            continue
        if bit(nam, i):
            out_shape.append(1)
            continue
        if dim >= x.rank:
            raise ctx.error(f"the slice spec addresses more axes than the input's {x.rank}")
        d = x.shape[dim]
        st = strides[i]
        if st == 0:
            raise ctx.error("a stride is 0")
        if bit(sam, i):
            idx = begin[i] + d if begin[i] < 0 else begin[i]
            if not 0 <= idx < d:
                raise ctx.error(f"shrink index {begin[i]} is out of range for axis {dim} of size {d}")
            starts.append(idx), ends.append(idx + 1), steps.append(1), axes.append(dim)
        else:
            b = None if bit(bm, i) else begin[i]
            e = None if bit(em, i) else (begin[i] + end[i] if offset else end[i])
            s, e2, st2 = slice(b, e, st).indices(d)
            if st2 < 0 and e2 < 0:
                e2 = -_BIG
            starts.append(s), ends.append(e2), steps.append(st2), axes.append(dim)
            out_shape.append(len(range(*slice(b, e, st).indices(d))))
        dim += 1
    out_shape += list(x.shape[dim:])
    y = _slice(ctx, x, starts, ends, axes, steps) if axes else ctx.emit1("Identity", [x])
    if y.shape != tuple(out_shape):
        y = ctx.emit1("Reshape", [y, ctx.ints(out_shape, "shape")], {"allowzero": 1})
    return y


@converter("REVERSE_V2")
def reverse_v2(ctx: ConvertContext):
    x = ctx.require(0, "input")
    axes = [_axis(ctx, a, x.rank) for a in _ints(ctx.const_value(1, "axis"))]
    if not axes:
        return ctx.emit1("Identity", [x])
    return _slice(ctx, x, [-1] * len(axes), [-_BIG] * len(axes), axes, [-1] * len(axes))


# ---------------------------------------------------------------- gather / tile / broadcast
@converter("GATHER")
def gather(ctx: ConvertContext):
    x, idx = ctx.require(0, "params"), ctx.require(1, "indices")
    if int(ctx.opt("BatchDims", 0) or 0) != 0:
        raise ctx.error("batch_dims ≠ 0 is not supported")
    return ctx.emit1("Gather", [x, idx], {"axis": _axis(ctx, int(ctx.opt("Axis", 0)), x.rank)})


@converter("EMBEDDING_LOOKUP")
def embedding_lookup(ctx: ConvertContext):
    return ctx.emit1("Gather", [ctx.require(1, "params"), ctx.require(0, "ids")], {"axis": 0})


@converter("GATHER_ND")
def gather_nd(ctx: ConvertContext):
    idx = ctx.require(1, "indices")
    return ctx.emit1("GatherND", [ctx.require(0, "params"), ctx.cast(idx, np.int64)])


@converter("TILE")
def tile(ctx: ConvertContext):
    return ctx.emit1("Tile", [ctx.require(0, "input"), ctx.ints(_ints(ctx.const_value(1, "multiples")), "reps")])


@converter("BROADCAST_TO")
def broadcast_to(ctx: ConvertContext):
    return ctx.emit1("Expand", [ctx.require(0, "input"), ctx.ints(_ints(ctx.const_value(1, "shape")), "shape")])


# ---------------------------------------------------------------- shapes and constants
def _int_out(ctx: ConvertContext, v):
    dt = ctx.out_dtype
    return ctx.cast(v, dt if dt is not None and dt.kind in "iu" else np.int32)


@converter("SHAPE")
def shape(ctx: ConvertContext):
    return _int_out(ctx, ctx.emit1("Shape", [ctx.require(0, "input")]))


@converter("RANK")
def rank(ctx: ConvertContext):
    return ctx.const(np.asarray(ctx.require(0, "input").rank, ctx.out_dtype or np.int32), "rank")


@converter("FILL")
def fill(ctx: ConvertContext):
    dims = _ints(ctx.const_value(0, "dims"))
    return ctx.emit1("Expand", [ctx.reshape(ctx.require(1, "value"), []), ctx.ints(dims, "dims")])


@converter("ZEROS_LIKE")
def zeros_like(ctx: ConvertContext):
    x = ctx.require(0, "input")
    return ctx.const(np.zeros(x.shape, x.dtype), "zeros")


@converter("RANGE")
def range_(ctx: ConvertContext):
    return ctx.emit1("Range", [ctx.require(0, "start"), ctx.require(1, "limit"), ctx.require(2, "delta")])


# ---------------------------------------------------------------- reductions
_REDUCE = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "REDUCE_MIN": "ReduceMin",
           "REDUCE_PROD": "ReduceProd"}


@converter(*_REDUCE)
def reduce(ctx: ConvertContext):
    x = ctx.require(0, "input")
    axes = sorted({_axis(ctx, a, x.rank) for a in _ints(ctx.const_value(1, "axes"))})
    keep = 1 if ctx.opt("KeepDims", False) else 0
    if not axes:
        return ctx.emit1("Identity", [x])
    return ctx.emit1(_REDUCE[ctx.op.opcode], [x, ctx.ints(axes, "axes")], {"keepdims": keep})


@converter("ARG_MAX", "ARG_MIN")
def arg_max(ctx: ConvertContext):
    x = ctx.require(0, "input")
    axis = _ints(ctx.const_value(1, "axis"))
    if len(axis) != 1:
        raise ctx.error(f"axis must hold one value, got {axis}")
    op = "ArgMax" if ctx.op.opcode == "ARG_MAX" else "ArgMin"
    return _int_out(ctx, ctx.emit1(op, [x], {"axis": _axis(ctx, axis[0], x.rank), "keepdims": 0}))


@converter("CUMSUM")
def cumsum(ctx: ConvertContext):
    x = ctx.require(0, "input")
    attrs = {"exclusive": int(bool(ctx.opt("Exclusive", False))), "reverse": int(bool(ctx.opt("Reverse", False)))}
    return ctx.emit1("CumSum", [x, ctx.cast(ctx.require(1, "axis"), np.int64)], attrs)


@converter("TOPK_V2")
def topk_v2(ctx: ConvertContext):
    x = ctx.require(0, "input")
    k = _ints(ctx.const_value(1, "k"))
    vals, idx = ctx.emit("TopK", [x, ctx.ints(k, "k")], {"axis": -1, "largest": 1, "sorted": 1}, num_outputs=2)
    dt = ctx.out_tensors[1].dtype if len(ctx.out_tensors) > 1 and ctx.out_tensors[1] is not None else np.int32
    return [vals, ctx.cast(idx, dt)]
