"""Converters of the layout-sensitive TFLite ops: convolutions, pools, resizes, matmuls,
softmax and normalizations, depth/space moves.

Weight layouts (TFLite → registry, ONNX semantics):

* CONV_2D filter OHWI → Conv weight OIHW (``transpose(0, 3, 1, 2)``); grouped when the
  input has ``groups × I`` channels.
* DEPTHWISE_CONV_2D filter 1HW(C·M) → Conv weight (C·M)1HW with ``group = C``: output
  channel ``c·M + m`` reads input channel ``c``, exactly ONNX's grouping.
* TRANSPOSE_CONV filter OHWI → ConvTranspose weight IOHW (``transpose(3, 0, 1, 2)``).

Padding: SAME pads ``total = max((ceil(in/s) − 1)·s + (k − 1)·d + 1 − in, 0)`` with
``total // 2`` before and the rest after (TensorFlow's rule); it is written as explicit
pads so later passes can fold Pad ops into them.
"""
from __future__ import annotations

import numpy as np

from ...ops.tensor import resize_nearest_index, resize_source_coords
from .context import ConvertContext, converter, custom_converter

SAME, VALID = 0, 1  # tflite.Padding


def same_pads(in_size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    eff = (k - 1) * d + 1
    out = (in_size + s - 1) // s
    total = max((out - 1) * s + eff - in_size, 0)
    return total // 2, total - total // 2


def window_pads(ctx: ConvertContext, hw, khw, strides, dilations, padding) -> list[int]:
    if padding == VALID:
        return [0, 0, 0, 0]
    if padding != SAME:
        raise ctx.error(f"unknown padding {padding}")
    (t, b), (lft, r) = (same_pads(hw[i], khw[i], strides[i], dilations[i]) for i in range(2))
    return [t, lft, b, r]


def _window_opts(ctx: ConvertContext):
    strides = [ctx.opt("StrideH", 1) or 1, ctx.opt("StrideW", 1) or 1]
    dil = [ctx.opt("DilationHFactor", 1) or 1, ctx.opt("DilationWFactor", 1) or 1]
    return strides, dil, ctx.opt("Padding", SAME)


# ---------------------------------------------------------------- convolutions
@converter("CONV_2D")
def conv_2d(ctx: ConvertContext):
    x, w, b = ctx.require(0, "input"), ctx.require(1, "filter"), ctx.input(2)
    if w.rank != 4 or x.rank != 4:
        raise ctx.error(f"expects a 4-D input and OHWI filter, got {list(x.shape)} and {list(w.shape)}")
    o, kh, kw, i = w.shape
    c = x.shape[3]
    if i == 0 or c % i:
        raise ctx.error(f"input has {c} channels, not a multiple of the filter's {i}")
    strides, dil, padding = _window_opts(ctx)
    pads = window_pads(ctx, x.shape[1:3], (kh, kw), strides, dil, padding)
    y = ctx.emit1("Conv", [ctx.to_nchw(x), ctx.transpose(w, (0, 3, 1, 2)), b],
                  {"strides": strides, "dilations": dil, "pads": pads, "group": c // i,
                   "kernel_shape": [kh, kw]})
    return ctx.to_nhwc(ctx.activation(y))


@converter("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(ctx: ConvertContext):
    x, w, b = ctx.require(0, "input"), ctx.require(1, "filter"), ctx.input(2)
    if w.rank != 4 or x.rank != 4 or w.shape[0] != 1:
        raise ctx.error(f"expects a 4-D input and 1HWO filter, got {list(x.shape)} and {list(w.shape)}")
    _, kh, kw, o = w.shape
    c = x.shape[3]
    if o % c:
        raise ctx.error(f"filter has {o} output channels, not a multiple of the input's {c}")
    m = ctx.opt("DepthMultiplier", 0) or o // c
    if m * c != o:
        raise ctx.error(f"depth_multiplier {m} × {c} input channels ≠ the filter's {o} output channels")
    strides, dil, padding = _window_opts(ctx)
    pads = window_pads(ctx, x.shape[1:3], (kh, kw), strides, dil, padding)
    y = ctx.emit1("Conv", [ctx.to_nchw(x), ctx.transpose(w, (3, 0, 1, 2)), b],
                  {"strides": strides, "dilations": dil, "pads": pads, "group": c, "kernel_shape": [kh, kw]})
    return ctx.to_nhwc(ctx.activation(y))


def _conv_transpose(ctx: ConvertContext, x, w, b, out_hw, strides, pads_begin, act: int | None):
    """ConvTranspose (NCHW) for an OHWI filter, with TFLite's output size ``out_hw``."""
    o, kh, kw, i = w.shape
    if x.shape[3] != i:
        raise ctx.error(f"input has {x.shape[3]} channels, the OHWI filter {list(w.shape)} expects {i}")
    pads_end, opad = [], []
    for n_in, s, k, pb, n_out in zip(x.shape[1:3], strides, (kh, kw), pads_begin, out_hw):
        e = s * (n_in - 1) + k - pb - n_out
        opad.append(-e if -s < e < 0 else 0)
        pads_end.append(e if e >= 0 or e <= -s else 0)
    attrs = {"strides": list(strides), "pads": list(pads_begin) + pads_end, "kernel_shape": [kh, kw]}
    if any(opad):
        attrs["output_padding"] = opad
    y = ctx.emit1("ConvTranspose", [ctx.to_nchw(x), ctx.transpose(w, (3, 0, 1, 2)), b], attrs)
    if y.shape[2:] != tuple(out_hw):
        raise ctx.error(f"transposed convolution gives {list(y.shape[2:])}, the model asks {list(out_hw)}")
    return ctx.to_nhwc(ctx.activation(y, act))


@converter("TRANSPOSE_CONV")
def transpose_conv(ctx: ConvertContext):
    out_shape = [int(d) for d in ctx.const_value(0, "output_shape")]
    w, x, b = ctx.require(1, "filter"), ctx.require(2, "input"), ctx.input(3)
    if len(out_shape) != 4 or w.rank != 4 or x.rank != 4:
        raise ctx.error(f"expects 4-D input, filter and output shape, got {list(x.shape)}, {list(w.shape)}, "
                        f"{out_shape}")
    strides = [ctx.opt("StrideH", 1) or 1, ctx.opt("StrideW", 1) or 1]
    padding = ctx.opt("Padding", SAME)
    pads_begin = []
    for n_out, k, s in zip(out_shape[1:3], w.shape[1:3], strides):
        # TFLite computes the padding as for a forward conv from the output to the input
        n_in = (n_out + s - 1) // s if padding == SAME else (n_out - k + s) // s
        total = max((n_in - 1) * s + k - n_out, 0) if padding == SAME else 0
        pads_begin.append(total // 2)
    if out_shape[3] != w.shape[0] or out_shape[0] != x.shape[0]:
        raise ctx.error(f"output_shape {out_shape} does not match input {list(x.shape)} and filter "
                        f"{list(w.shape)}")
    return _conv_transpose(ctx, x, w, b, out_shape[1:3], strides, pads_begin,
                           ctx.opt("FusedActivationFunction", 0) or 0)


@custom_converter("Convolution2DTransposeBias")
def mediapipe_transpose_conv_bias(ctx: ConvertContext):
    """MediaPipe's transposed convolution with bias: inputs (input, OHWI filter, bias);
    custom options are the raw C struct ``{int32 padding (1 SAME, 2 VALID), stride_w,
    stride_h}``; SAME pads ``max(0, k − (in − 1) mod s − 1)`` in total, half before."""
    x, w, b = ctx.require(0, "input"), ctx.require(1, "filter"), ctx.require(2, "bias")
    raw = ctx.op.custom_options or b""
    if len(raw) < 12:
        raise ctx.error(f"custom options hold {len(raw)} bytes, expected 12 (padding, stride_w, stride_h)")
    padding, sw, sh = (int(v) for v in np.frombuffer(raw[:12], "<i4"))
    if padding not in (1, 2) or sw < 1 or sh < 1:
        raise ctx.error(f"bad custom options: padding {padding}, strides {sw}×{sh}")
    if x.rank != 4 or w.rank != 4:
        raise ctx.error(f"expects 4-D input and OHWI filter, got {list(x.shape)} and {list(w.shape)}")
    strides = [sh, sw]
    pads_begin, out_hw = [], []
    for n_in, k, s in zip(x.shape[1:3], w.shape[1:3], strides):
        total = max(0, k - (n_in - 1) % s - 1) if padding == 1 else 0
        pads_begin.append(total // 2)
        out_hw.append(s * (n_in - 1) + k - total)
    return _conv_transpose(ctx, x, w, b, out_hw, strides, pads_begin, 0)


# ---------------------------------------------------------------- matmuls
@converter("FULLY_CONNECTED")
def fully_connected(ctx: ConvertContext):
    x, w, b = ctx.require(0, "input"), ctx.require(1, "weights"), ctx.input(2)
    if (ctx.opt("WeightsFormat", 0) or 0) != 0:
        raise ctx.error("shuffled weights formats are not supported")
    if w.rank != 2:
        raise ctx.error(f"weights must be 2-D (out, in), got {list(w.shape)}")
    o, k = w.shape
    if x.size % k:
        raise ctx.error(f"input {list(x.shape)} has {x.size} elements, not a multiple of the weights' {k}")
    x2 = ctx.reshape(x, [x.size // k, k])
    y = ctx.emit1("Gemm", [x2, w, b], {"transB": 1})
    y = ctx.activation(y)
    if ctx.opt("KeepNumDims", False):
        y = ctx.reshape(y, list(x.shape[:-1]) + [o])
    return y


@converter("BATCH_MATMUL")
def batch_matmul(ctx: ConvertContext):
    a, b = ctx.require(0, "x"), ctx.require(1, "y")

    def adj(v):
        perm = list(range(v.rank))
        perm[-2:] = perm[-2:][::-1]
        return ctx.transpose(v, perm)

    if ctx.opt("AdjX", False):
        a = adj(a)
    if ctx.opt("AdjY", False):
        b = adj(b)
    return ctx.emit1("MatMul", [a, b])


# ---------------------------------------------------------------- pools
def _pool(ctx: ConvertContext, op: str, extra: dict | None = None, x=None):
    x = ctx.require(0, "input") if x is None else x
    kh, kw = ctx.opt("FilterHeight", 1) or 1, ctx.opt("FilterWidth", 1) or 1
    strides = [ctx.opt("StrideH", 1) or 1, ctx.opt("StrideW", 1) or 1]
    pads = window_pads(ctx, x.shape[1:3], (kh, kw), strides, (1, 1), ctx.opt("Padding", SAME))
    return ctx.emit1(op, [ctx.to_nchw(x)], {"kernel_shape": [kh, kw], "strides": strides, "pads": pads,
                                            **(extra or {})})


@converter("MAX_POOL_2D")
def max_pool_2d(ctx: ConvertContext):
    return ctx.to_nhwc(ctx.activation(_pool(ctx, "MaxPool")))


@converter("AVERAGE_POOL_2D")
def average_pool_2d(ctx: ConvertContext):
    # TFLite averages over the window's in-bounds elements only
    return ctx.to_nhwc(ctx.activation(_pool(ctx, "AveragePool", {"count_include_pad": 0})))


@converter("L2_POOL_2D")
def l2_pool_2d(ctx: ConvertContext):
    """sqrt(mean of x² over the in-bounds window)."""
    x = ctx.require(0, "input")
    sq = ctx.emit1("Mul", [x, x], tag="square")
    y = ctx.emit1("Sqrt", [_pool(ctx, "AveragePool", {"count_include_pad": 0}, x=sq)])
    return ctx.to_nhwc(ctx.activation(y))


# ---------------------------------------------------------------- resize
def _tf_nearest_index(out_len: int, in_len: int, align: bool, half: bool) -> np.ndarray:
    """TFLite's nearest-neighbour source index per output index (float32 math)."""
    f = np.float32
    scale = f(in_len - 1) / f(out_len - 1) if align and out_len > 1 else f(in_len) / f(out_len)
    x = (np.arange(out_len, dtype=np.float32) + (f(0.5) if half else f(0))) * scale
    if align:
        idx = np.sign(x) * np.floor(np.abs(x) + f(0.5))   # std::round: half away from zero
    else:
        idx = np.floor(x)
    idx = np.minimum(idx.astype(np.int64), in_len - 1)
    return np.maximum(idx, 0) if half else idx


def _resize_sizes(ctx: ConvertContext, x):
    size = [int(d) for d in ctx.const_value(1, "size")]
    if x.rank != 4 or len(size) != 2 or min(size) < 1:
        raise ctx.error(f"expects a 4-D input and 2 positive sizes, got {list(x.shape)} and {size}")
    return size


@converter("RESIZE_NEAREST_NEIGHBOR")
def resize_nearest(ctx: ConvertContext):
    x = ctx.require(0, "input")
    size = _resize_sizes(ctx, x)
    align, half = bool(ctx.opt("AlignCorners", False)), bool(ctx.opt("HalfPixelCenters", False))
    want = [_tf_nearest_index(o, i, align, half) for o, i in zip(size, x.shape[1:3])]
    candidates = [("align_corners", "round_prefer_ceil")] if align else []
    candidates += [("tf_half_pixel_for_nn", "floor")] if half else [("asymmetric", "floor")]
    for mode, nearest in candidates:
        got = [resize_nearest_index(resize_source_coords(mode, o, i, np.float32(o) / np.float32(i)), i, nearest)
               for o, i in zip(size, x.shape[1:3])]
        if all(np.array_equal(g, w) for g, w in zip(got, want)):
            sizes = ctx.ints([x.shape[0], x.shape[3]] + size, "sizes")
            y = ctx.emit1("Resize", [ctx.to_nchw(x), None, None, sizes],
                          {"mode": "nearest", "coordinate_transformation_mode": mode, "nearest_mode": nearest})
            return ctx.to_nhwc(y)
    # no ONNX coordinate mode reproduces these indices: gather rows, then columns
    y = ctx.emit1("Gather", [x, ctx.ints(want[0], "rows")], {"axis": 1})
    return ctx.emit1("Gather", [y, ctx.ints(want[1], "cols")], {"axis": 2})


@converter("RESIZE_BILINEAR")
def resize_bilinear(ctx: ConvertContext):
    x = ctx.require(0, "input")
    size = _resize_sizes(ctx, x)
    align, half = bool(ctx.opt("AlignCorners", False)), bool(ctx.opt("HalfPixelCenters", False))
    if align and half:
        raise ctx.error("align_corners and half_pixel_centers cannot both be set")
    mode = "align_corners" if align else "half_pixel" if half else "asymmetric"
    sizes = ctx.ints([x.shape[0], x.shape[3]] + size, "sizes")
    y = ctx.emit1("Resize", [ctx.to_nchw(x), None, None, sizes],
                  {"mode": "linear", "coordinate_transformation_mode": mode})
    return ctx.to_nhwc(y)


# ---------------------------------------------------------------- softmax & normalization
@converter("SOFTMAX")
def softmax(ctx: ConvertContext):
    x = ctx.require(0, "input")
    beta = ctx.opt("Beta", 1.0)
    if beta is not None and beta != 1.0:
        x = ctx.emit1("Mul", [x, ctx.scalar(beta, x, "beta")])
    return ctx.emit1("Softmax", [x], {"axis": -1})


@converter("LOG_SOFTMAX")
def log_softmax(ctx: ConvertContext):
    return ctx.emit1("LogSoftmax", [ctx.require(0, "input")], {"axis": -1})


@converter("L2_NORMALIZATION")
def l2_normalization(ctx: ConvertContext):
    """x / max(sqrt(Σ x²), 1e-6) over the last axis."""
    x = ctx.require(0, "input")
    ss = ctx.emit1("ReduceSumSquare", [x, ctx.ints([-1], "axes")], {"keepdims": 1})
    norm = ctx.emit1("Max", [ctx.emit1("Sqrt", [ss]), ctx.scalar(1e-6, x, "eps")])
    return ctx.activation(ctx.emit1("Div", [x, norm]))


@converter("LOCAL_RESPONSE_NORMALIZATION")
def local_response_normalization(ctx: ConvertContext):
    """TFLite: x / (bias + alpha · Σ_{|c'−c|≤r} x²)^beta = ONNX LRN with size 2r+1 and
    alpha · size (ONNX divides alpha by size)."""
    x = ctx.require(0, "input")
    r = int(ctx.opt("Radius", 5))
    size = 2 * r + 1
    y = ctx.emit1("LRN", [ctx.to_nchw(x)], {"size": size, "alpha": float(ctx.opt("Alpha", 1.0)) * size,
                                              "beta": float(ctx.opt("Beta", 0.5)), "bias": float(ctx.opt("Bias", 1.0))})
    return ctx.to_nhwc(y)


# ---------------------------------------------------------------- depth / space / batch
@converter("DEPTH_TO_SPACE")
def depth_to_space(ctx: ConvertContext):
    y = ctx.emit1("DepthToSpace", [ctx.to_nchw(ctx.require(0, "input"))],
                  {"blocksize": int(ctx.opt("BlockSize", 2)), "mode": "DCR"})
    return ctx.to_nhwc(y)


@converter("SPACE_TO_DEPTH")
def space_to_depth(ctx: ConvertContext):
    y = ctx.emit1("SpaceToDepth", [ctx.to_nchw(ctx.require(0, "input"))], {"blocksize": int(ctx.opt("BlockSize", 2))})
    return ctx.to_nhwc(y)


def _block(ctx: ConvertContext, x):
    block = [int(v) for v in ctx.const_value(1, "block_shape")]
    if x.rank != 4 or len(block) != 2 or min(block) < 1:
        raise ctx.error(f"supports 4-D inputs with 2 block sizes, got {list(x.shape)} and {block}")
    return block


@converter("SPACE_TO_BATCH_ND")
def space_to_batch_nd(ctx: ConvertContext):
    x = ctx.require(0, "input")
    bh, bw = _block(ctx, x)
    p = np.asarray(ctx.const_value(2, "paddings"), np.int64).reshape(2, 2)
    if p.any():
        pads = [0, int(p[0, 0]), int(p[1, 0]), 0, 0, int(p[0, 1]), int(p[1, 1]), 0]
        x = ctx.emit1("Pad", [x, ctx.ints(pads, "pads")], {"mode": "constant"})
    n, h, w, c = x.shape
    if h % bh or w % bw:
        raise ctx.error(f"padded spatial size {h}×{w} is not divisible by the block {bh}×{bw}")
    t = ctx.reshape(x, [n, h // bh, bh, w // bw, bw, c])
    t = ctx.transpose(t, (2, 4, 0, 1, 3, 5))
    return ctx.reshape(t, [bh * bw * n, h // bh, w // bw, c])


@converter("BATCH_TO_SPACE_ND")
def batch_to_space_nd(ctx: ConvertContext):
    x = ctx.require(0, "input")
    bh, bw = _block(ctx, x)
    crops = np.asarray(ctx.const_value(2, "crops"), np.int64).reshape(2, 2)
    b, h, w, c = x.shape
    if b % (bh * bw):
        raise ctx.error(f"batch {b} is not divisible by the block {bh}×{bw}")
    n = b // (bh * bw)
    t = ctx.reshape(x, [bh, bw, n, h, w, c])
    t = ctx.transpose(t, (2, 3, 0, 4, 1, 5))
    y = ctx.reshape(t, [n, h * bh, w * bw, c])
    if crops.any():
        starts = [int(crops[0, 0]), int(crops[1, 0])]
        ends = [h * bh - int(crops[0, 1]), w * bw - int(crops[1, 1])]
        y = ctx.emit1("Slice", [y, ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints([1, 2], "axes")])
    return y


__all__ = ["same_pads", "window_pads"]
