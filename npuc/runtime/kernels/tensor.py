"""Allocation-free kernels for data movement and the remaining CNN ops.

Every kernel computes its views (slices, transposes, index tables) once in ``build`` and
runs as ``np.copyto`` / ``np.take(..., out=)`` / a numba loop on them:

* ``concat_copy``: one ``copyto`` per input into its slice of the output;
* ``split_copy``: one ``copyto`` per output from its slice of the input;
* ``transpose_copy``: ``copyto(out, x.transpose(perm))``;
* ``slice_copy``: ``copyto(out, x[slices])`` (index rules of :func:`npuc.ops.tensor.normalize_slice`);
* ``gather_const``: ``np.take(x, idx, axis, out=out, mode="clip")`` with constant indices
  normalized at compile time;
* ``pad_copy``: constant, edge, reflect and wrap modes (negative pads crop): the border
  slabs are filled from the already-copied interior, axis by axis, as ``np.pad`` does;
* ``resize_2d_f32``: Resize over H and W of NCHW float32 with the per-axis taps of
  :func:`npuc.ops.tensor.resize_taps` (every coordinate mode but tf_crop_and_resize):
  integer nearest upsampling is a broadcast copy, other nearest resizes an index gather,
  2-tap linear a numba loop, anything else (cubic, antialias) two GEMMs with the dense
  per-axis weight matrices ``out = Wy · x · Wxᵀ``;
* ``softmax_f32`` / ``logsoftmax_f32``: numba, in place allowed;
* ``batchnorm_f32``: BatchNormalization left unfolded, as ``x·a + b`` per channel with
  ``a = scale / sqrt(var + ε)``, ``b = B − mean·a`` packed at compile time, then its fused
  activation if any.
"""
from __future__ import annotations

import numpy as np

from ...ops.tensor import (normalize_slice, pad_widths, resize_output_shape, resize_source_coords, resize_taps,
                           slice_as_index, split_sizes)
from ._numba import ACT_NONE, jit, parse_activation, prelu_slope, ro
from .base import Binding, Kernel, Prepared, register_kernel

F32 = np.dtype(np.float32)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _present(a) -> bool:
    return a is not None and np.size(a) > 0


# ---------------------------------------------------------------- Concat / Split
def copy_pairs(pairs):
    """A closure copying each ``(dst, src)`` view pair (views made once, at load time)."""
    copy = np.copyto

    def run():
        for dst, src in pairs:
            copy(dst, src)
    return run


@register_kernel
class ConcatCopy(Kernel):
    op, name = "Concat", "concat_copy"

    def build(self, b: Binding):
        out = b.outputs[0]
        axis = _axis(int(b.attrs["axis"]), out.ndim)
        pairs, pos = [], 0
        for x in b.inputs:
            if x is None:
                continue
            n = x.shape[axis]
            if n:
                idx = (slice(None),) * axis + (slice(pos, pos + n),)
                pairs.append((out[idx], x))
            pos += n
        return copy_pairs(pairs)


@register_kernel
class SplitCopy(Kernel):
    op, name = "Split", "split_copy"

    def build(self, b: Binding):
        x = b.inputs[0]
        axis = _axis(int(b.attrs["axis"]), x.ndim)
        split = b.inputs[1] if len(b.inputs) > 1 else None
        sizes = split_sizes(x.shape[axis], split if _present(split) else None,
                            b.attrs.get("num_outputs") or (None if _present(split) else len(b.outputs)))
        pairs, pos = [], 0
        for out, n in zip(b.outputs, sizes):
            pairs.append((out, x[(slice(None),) * axis + (slice(pos, pos + n),)]))
            pos += n
        return copy_pairs(pairs)


# ---------------------------------------------------------------- Transpose / Slice / Gather
@register_kernel
class TransposeCopy(Kernel):
    op, name = "Transpose", "transpose_copy"

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        perm = b.attrs.get("perm")
        perm = list(range(x.ndim))[::-1] if perm is None or len(perm) == 0 else [_axis(int(p), x.ndim) for p in perm]
        src = x.transpose(perm)
        copy = np.copyto

        def run():
            copy(out, src)
        return run


@register_kernel
class SliceCopy(Kernel):
    op, name = "Slice", "slice_copy"

    def supports(self, node) -> bool:
        return all(v is None or v.is_const for v in node.inputs[1:])

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        extra = [b.inputs[i] if i < len(b.inputs) else None for i in (3, 4)]
        params = normalize_slice(x.shape, b.inputs[1], b.inputs[2], *extra)
        src = x[slice_as_index(params)]
        copy = np.copyto

        def run():
            copy(out, src)
        return run


@register_kernel
class GatherConst(Kernel):
    op, name = "Gather", "gather_const"

    def supports(self, node) -> bool:
        return node.inputs[1].is_const and not node.inputs[0].is_const

    def prepare(self, node) -> Prepared:
        x = node.inputs[0]
        axis = _axis(int(node.attrs.get("axis", 0)), x.rank)
        idx = np.asarray(node.inputs[1].const).astype(np.int64)
        idx = np.where(idx < 0, idx + x.shape[axis], idx)
        return Prepared(packed={1: np.ascontiguousarray(idx)})

    def build(self, b: Binding):
        x, idx, out = b.inputs[0], b.inputs[1], b.outputs[0]
        axis = _axis(int(b.attrs.get("axis", 0)), x.ndim)
        idx = idx.reshape(out.shape[axis:axis + out.ndim - x.ndim + 1])
        take = np.take

        def run():
            take(x, idx, axis=axis, out=out, mode="clip")
        return run


# ---------------------------------------------------------------- Pad
@register_kernel
class PadCopy(Kernel):
    op, name = "Pad", "pad_copy"

    def supports(self, node) -> bool:
        if not all(v is None or v.is_const for v in node.inputs[1:]):
            return False
        mode = node.attrs.get("mode", "constant")
        if mode == "constant":
            return True
        if mode not in ("edge", "reflect", "wrap"):
            return False
        x = node.inputs[0]
        axes = node.inputs[3].const if len(node.inputs) > 3 and node.inputs[3] is not None else None
        try:
            w = pad_widths(x.shape, node.inputs[1].const, axes)
        except ValueError:
            return False
        for d, (bb, e) in zip(x.shape, w):
            n = d + min(bb, 0) + min(e, 0)
            bb, e = max(bb, 0), max(e, 0)
            if (bb or e) and (n < 1 or (mode == "reflect" and max(bb, e) > n - 1)
                              or (mode == "wrap" and max(bb, e) > n)):
                return False
        return True

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        mode = b.attrs.get("mode", "constant")
        axes = b.inputs[3] if len(b.inputs) > 3 else None
        w = pad_widths(x.shape, b.inputs[1], axes if _present(axes) else None)
        crop = tuple(slice(max(-bb, 0), d - max(-e, 0)) for d, (bb, e) in zip(x.shape, w))
        src = x[crop]
        pos = [(max(bb, 0), max(e, 0)) for bb, e in w]
        interior = out[tuple(slice(bb, bb + n) for (bb, _), n in zip(pos, src.shape))]
        steps: list[tuple[np.ndarray, np.ndarray | None]] = []   # (dst, src or None = fill)
        full = [slice(None)] * out.ndim

        def at(axis, s):
            idx = list(full)
            idx[axis] = s
            return out[tuple(idx)]

        for a, ((bb, e), n) in enumerate(zip(pos, src.shape)):
            if bb:
                dst = at(a, slice(0, bb))
                if mode == "constant":
                    steps.append((dst, None))
                elif mode == "edge":
                    steps.append((dst, at(a, slice(bb, bb + 1))))
                elif mode == "reflect":
                    steps.append((dst, at(a, slice(2 * bb, bb, -1))))
                else:
                    steps.append((dst, at(a, slice(n, n + bb))))
            if e:
                dst = at(a, slice(bb + n, bb + n + e))
                if mode == "constant":
                    steps.append((dst, None))
                elif mode == "edge":
                    steps.append((dst, at(a, slice(bb + n - 1, bb + n))))
                elif mode == "reflect":
                    stop = bb + n - 2 - e
                    steps.append((dst, at(a, slice(bb + n - 2, stop if stop >= 0 else None, -1))))
                else:
                    steps.append((dst, at(a, slice(bb, bb + e))))
        cv = b.inputs[2] if len(b.inputs) > 2 else None
        value = out.dtype.type(np.asarray(cv).reshape(-1)[0]) if _present(cv) else out.dtype.type(0)
        copy = np.copyto

        def run():
            copy(interior, src)
            for dst, s in steps:
                if s is None:
                    dst.fill(value)
                else:
                    copy(dst, s)
        return run


# ---------------------------------------------------------------- Resize
def _resize_plan(x_shape, attrs, scales, sizes):
    """Per spatial axis (H, W): ``(idx, w)`` taps of the resize, or None when unsupported."""
    cmode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if len(x_shape) != 4 or cmode == "tf_crop_and_resize":
        return None
    out_shape, full = resize_output_shape(x_shape, scales if _present(scales) else None,
                                          sizes if _present(sizes) else None, attrs.get("axes"),
                                          attrs.get("keep_aspect_ratio_policy", "stretch"))
    if tuple(out_shape[:2]) != tuple(x_shape[:2]):
        return None
    taps = []
    for a in (2, 3):
        n_in, n_out = x_shape[a], out_shape[a]
        if full[a] == 1 and n_out == n_in:
            taps.append((np.arange(n_in)[:, None], np.ones((n_in, 1))))
            continue
        coords = resize_source_coords(cmode, n_out, n_in, full[a])
        taps.append(resize_taps(attrs.get("mode", "nearest"), coords, n_in, full[a],
                                nearest_mode=attrs.get("nearest_mode", "round_prefer_floor"),
                                cubic_coeff_a=attrs.get("cubic_coeff_a", -0.75),
                                exclude_outside=bool(attrs.get("exclude_outside", 0)),
                                antialias=bool(attrs.get("antialias", 0))))
    return out_shape, taps


def _dense(idx: np.ndarray, w: np.ndarray, n_in: int) -> np.ndarray:
    m = np.zeros((idx.shape[0], n_in), np.float64)
    for k in range(idx.shape[1]):
        np.add.at(m, (np.arange(idx.shape[0]), idx[:, k]), w[:, k])
    return m


def _resize_kind(taps) -> str:
    (iy, wy), (ix, wx) = taps
    if iy.shape[1] == 1 and ix.shape[1] == 1 and np.all(wy == 1) and np.all(wx == 1):
        return "nearest"
    if iy.shape[1] <= 2 and ix.shape[1] <= 2:
        return "linear"
    return "dense"


@register_kernel
class Resize2dF32(Kernel):
    op, name = "Resize", "resize_2d_f32"

    def supports(self, node) -> bool:
        x = node.inputs[0]
        if x.dtype != F32 or x.rank != 4:
            return False
        if not all(v is None or v.is_const for v in node.inputs[1:]):
            return False
        scales = node.inputs[2].const if len(node.inputs) > 2 and node.inputs[2] is not None else None
        sizes = node.inputs[3].const if len(node.inputs) > 3 and node.inputs[3] is not None else None
        try:
            plan = _resize_plan(x.shape, node.attrs, scales, sizes)
        except ValueError:
            return False
        return plan is not None and tuple(plan[0]) == tuple(node.outputs[0].shape)

    def prepare(self, node) -> Prepared:
        x = node.inputs[0]
        scales = node.inputs[2].const if len(node.inputs) > 2 and node.inputs[2] is not None else None
        sizes = node.inputs[3].const if len(node.inputs) > 3 and node.inputs[3] is not None else None
        out_shape, taps = _resize_plan(x.shape, node.attrs, scales, sizes)
        kind = _resize_kind(taps)
        scratch = 0
        if kind == "dense":
            n, c, h, _w = x.shape
            scratch = n * c * h * out_shape[3] * 4
        return Prepared(attrs={"resize_kind": kind}, scratch=scratch)

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        ins = list(b.inputs) + [None] * (4 - len(b.inputs))
        _, taps = _resize_plan(x.shape, b.attrs, ins[2], ins[3])
        (iy, wy), (ix, wx) = taps
        n, c, h, w = x.shape
        oh, ow = out.shape[2:]
        kind = b.attrs.get("resize_kind") or _resize_kind(taps)
        if kind == "nearest":
            iy, ix = iy[:, 0], ix[:, 0]
            fy, fx = oh // h if oh % h == 0 else 0, ow // w if ow % w == 0 else 0
            if (fy and fx and np.array_equal(iy, np.arange(oh) // fy)
                    and np.array_equal(ix, np.arange(ow) // fx)):
                dst = out.reshape(n, c, h, fy, w, fx)
                src = x[:, :, :, None, :, None]
                copy = np.copyto

                def run():
                    copy(dst, src)
                return run
            f = jit("gather2d")
            xf, of = x.reshape(-1), out.reshape(-1)
            iy, ix = np.ascontiguousarray(iy, np.int64), np.ascontiguousarray(ix, np.int64)
            r = n * c

            def run():
                f(xf, of, r, h, w, oh, ow, iy, ix)
            return run
        if kind == "linear":
            def two(idx, wt):
                if idx.shape[1] == 1:
                    return (np.ascontiguousarray(idx[:, 0], np.int64), np.ascontiguousarray(idx[:, 0], np.int64),
                            np.zeros(idx.shape[0], F32))
                return (np.ascontiguousarray(idx[:, 0], np.int64), np.ascontiguousarray(idx[:, 1], np.int64),
                        np.ascontiguousarray(wt[:, 1] / (wt[:, 0] + wt[:, 1]), F32))
            y0, y1, fy = two(iy, wy)
            x0, x1, fx = two(ix, wx)
            f = jit("resize_linear2d")
            xf, of = x.reshape(-1), out.reshape(-1)
            r = n * c

            def run():
                f(xf, of, r, h, w, oh, ow, y0, y1, fy, x0, x1, fx)
            return run
        wy_m = np.ascontiguousarray(_dense(iy, wy, h), F32)                 # (OH, H)
        wxt = np.ascontiguousarray(_dense(ix, wx, w).T, F32)                # (W, OW)
        tmp = b.scratch[:n * c * h * ow * 4].view(F32).reshape(n * c, h, ow)
        x3, o3 = x.reshape(n * c, h, w), out.reshape(n * c, oh, ow)
        mm = np.matmul

        def run():
            mm(x3, wxt, out=tmp)
            mm(wy_m, tmp, out=o3)
        return run


# ---------------------------------------------------------------- Softmax, BatchNormalization
class _SoftmaxBase(Kernel):
    inplace_input = 0
    log = False

    def supports(self, node) -> bool:
        return node.inputs[0].dtype == F32 and node.inputs[0].size > 0

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        axis = _axis(int(b.attrs.get("axis", -1)), x.ndim)
        o = int(np.prod(x.shape[:axis], dtype=np.int64))
        length = x.shape[axis]
        i = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
        log = self.log
        if i == 1:
            f = jit("softmax_last")
            x2, o2 = x.reshape(o, length), out.reshape(o, length)

            def run():
                f(x2, o2, log)
        else:
            f = jit("softmax")
            x3, o3 = x.reshape(o, length, i), out.reshape(o, length, i)

            def run():
                f(x3, o3, log)
        return run


@register_kernel
class SoftmaxF32(_SoftmaxBase):
    op, name = "Softmax", "softmax_f32"


@register_kernel
class LogSoftmaxF32(_SoftmaxBase):
    op, name, log = "LogSoftmax", "logsoftmax_f32", True


@register_kernel
class BatchNormF32(Kernel):
    op, name, inplace_input = "BatchNormalization", "batchnorm_f32", 0
    handles_activation = True

    def supports(self, node) -> bool:
        x = node.inputs[0]
        return (x.dtype == F32 and x.rank >= 2 and len(node.outputs) == 1
                and all(v is not None and v.is_const for v in node.inputs[1:5])
                and parse_activation(node.attrs) is not None
                and prelu_slope(node.attrs, node.outputs[0].shape) is not None)

    def prepare(self, node) -> Prepared:
        scale, bias, mean, var = (np.asarray(v.const, np.float64) for v in node.inputs[1:5])
        a = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
        return Prepared(packed={1: np.ascontiguousarray(a, F32), 2: np.ascontiguousarray(bias - mean * a, F32)})

    def build(self, b: Binding):
        x, out = b.inputs[0], b.outputs[0]
        a, sh = b.inputs[1], b.inputs[2]
        c = x.shape[1]
        p = int(np.prod(x.shape[2:], dtype=np.int64))
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("scale_shift")
        act, a0, a1 = parse_activation(b.attrs)
        if act == ACT_NONE or p == 0:
            def run():
                f(xf, of, a, sh, c, p)
            return run
        ep = jit("epilogue")
        slope = ro(prelu_slope(b.attrs, b.outputs[0].shape))

        def run():
            f(xf, of, a, sh, c, p)
            ep(of, p, a, False, act, a0, a1, slope)
        return run
