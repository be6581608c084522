"""Neural-network ops: convolutions, pooling, normalizations, Gemm/MatMul, softmax family.

Semantics follow the ONNX operator specification (latest opset). Window geometry (pads,
``auto_pad``, ``ceil_mode``, output sizes) comes from :mod:`npuc.ops.spatial`, shared with
the passes and fast kernels.

Reference kernels are vectorized numpy: a Python loop runs over kernel taps (or LRN's
channel window), never over pixels. Float16 inputs are computed in float32; statistics of
the normalizations are accumulated in float64. Every kernel returns its input's dtype.

Conventions (ONNX):

* Conv: ``X (N, C, *S)``, ``W (M, C/group, *k)``, ``B (M,)``;
  ``Y[n, m, o] = B[m] + Σ_{c in group(m), j} X_pad[n, c, o·s + j·d] · W[m, c, j]``.
* ConvTranspose: ``W (C, M/group, *k)``;
  ``Y[n, m, i·s + j·d - pads_begin] += X[n, c, i] · W[c, m, j]``.
* BatchNormalization (inference): ``Y = (X - mean) / sqrt(var + ε) · scale + B`` per channel.
* InstanceNormalization: statistics over the spatial dims of each (n, c).
* LayerNormalization: statistics over dims ``axis..rank-1``; outputs Y, Mean, InvStdDev.
* GroupNormalization (opset 21): statistics over (C/groups, *S) per group; scale/bias per channel.
* Softmax, LogSoftmax, Hardmax: along one ``axis`` (opset ≥ 13; the ONNX frontend lowers the
  older flatten-at-axis form with Reshapes).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .infer import broadcast_shapes, normalize_axis
from .registry import REQUIRED, InferContext, register
from .spatial import (TransposeGeometry, WindowGeometry, conv_transpose_geometry,
                      window_geometry)


# ---------------------------------------------------------------- helpers
def _compute_dtype(dt) -> np.dtype:
    """float16 (and anything narrower than float32) is computed in float32."""
    dt = np.dtype(dt)
    if dt.kind == "f" and dt.itemsize < 4:
        return np.dtype(np.float32)
    if dt.kind != "f":
        return np.dtype(np.float64)
    return dt


def _pad_spatial(x: np.ndarray, before, after, value) -> np.ndarray:
    if not any(before) and not any(after):
        return x
    width = [(0, 0)] * (x.ndim - len(before)) + list(zip(before, after))
    return np.pad(x, width, mode="constant", constant_values=value)


def _taps(geo: WindowGeometry):
    """For each kernel tap (row-major), the slices of the padded input it reads for every
    output position: ``x_pad[..., *slices]`` has shape ``(..., *geo.out_shape)``."""
    for j in np.ndindex(*geo.kernel):
        yield tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                    for t, d, o, s in zip(j, geo.dilations, geo.out_shape, geo.strides))


def _geo(ctx: InferContext, fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except ShapeError as e:
        raise ctx.fail(str(e)) from None


def _check_rank(ctx: InferContext, i: int, min_rank: int, what: str) -> tuple[int, ...]:
    s = ctx.shape(i)
    if len(s) < min_rank:
        raise ctx.fail(f"{what} must have rank ≥ {min_rank} (N, C, spatial...), got shape {list(s)}")
    return s


def _channel_param(ctx: InferContext, i: int, c: int, what: str) -> None:
    if ctx.has(i) and tuple(ctx.shape(i)) != (c,):
        raise ctx.fail(f"{what} must have shape [{c}] (one value per channel), got {list(ctx.shape(i))}")


# ---------------------------------------------------------------- Conv
_CONV_ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None,
               "pads": None, "strides": None}


def conv_node_geometry(x_shape, w_shape, *, auto_pad="NOTSET", dilations=None, kernel_shape=None, pads=None,
                  strides=None, **_) -> WindowGeometry:
    """Geometry of a Conv node with input/weight shapes and (normalized) attributes."""
    return window_geometry(x_shape[2:], kernel_shape or w_shape[2:], strides, dilations, pads, auto_pad)


def _conv_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 3, "input X")
    w = ctx.shape(1)
    a = ctx.attrs
    g = int(a["group"])
    if len(w) != len(x):
        raise ctx.fail(f"weight W has shape {list(w)}, rank {len(w)}; expected rank {len(x)} like X {list(x)}")
    if g < 1 or x[1] % g or w[0] % g:
        raise ctx.fail(f"group={g} must divide the input channels ({x[1]}) and the output channels ({w[0]})")
    if w[1] * g != x[1]:
        raise ctx.fail(f"X has {x[1]} channels, but W {list(w)} with group={g} expects {w[1] * g}")
    if a["kernel_shape"] and tuple(a["kernel_shape"]) != tuple(w[2:]):
        raise ctx.fail(f"kernel_shape {list(a['kernel_shape'])} does not match W's spatial dims {list(w[2:])}")
    _channel_param(ctx, 2, w[0], "bias B")
    geo = _geo(ctx, conv_node_geometry, x, w, **a)
    return [(ctx.dtype(0), (x[0], w[0]) + geo.out_shape)]


@register("Conv", attrs=_CONV_ATTRS, infer=_conv_infer, inputs=(2, 3), flags=("epilogue",))
def conv(x, w, b=None, *, auto_pad, dilations, group, kernel_shape, pads, strides):
    """N-D convolution with groups, dilations, strides and padding (im2col + batched matmul)."""
    geo = conv_node_geometry(x.shape, w.shape, auto_pad=auto_pad, dilations=dilations,
                        kernel_shape=kernel_shape, pads=pads, strides=strides)
    ct = _compute_dtype(x.dtype)
    n, c = x.shape[:2]
    m = w.shape[0]
    g = int(group)
    k = int(np.prod(geo.kernel))
    p = int(np.prod(geo.out_shape))
    xp = _pad_spatial(np.asarray(x, ct), geo.pads_begin, geo.pads_end, 0)
    cols = np.empty((n, c, k) + geo.out_shape, ct)
    for t, sl in enumerate(_taps(geo)):
        cols[:, :, t] = xp[(slice(None), slice(None)) + sl]
    cols = cols.reshape(n, g, (c // g) * k, p)
    wm = np.asarray(w, ct).reshape(g, m // g, (c // g) * k)
    y = np.matmul(wm, cols).reshape((n, m) + geo.out_shape)
    if b is not None:
        y += np.asarray(b, ct).reshape((m,) + (1,) * geo.ndim)
    return y.astype(x.dtype, copy=False)


# ---------------------------------------------------------------- ConvTranspose
def conv_transpose_node_geometry(x_shape, w_shape, *, auto_pad="NOTSET", dilations=None, kernel_shape=None,
                               pads=None, strides=None, output_padding=None, output_shape=None,
                               **_) -> TransposeGeometry:
    """Geometry of a ConvTranspose node with input/weight shapes and (normalized) attributes."""
    return conv_transpose_geometry(x_shape[2:], kernel_shape or w_shape[2:], strides, dilations, pads,
                                   auto_pad, output_padding, output_shape)


def _conv_transpose_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 3, "input X")
    w = ctx.shape(1)
    a = ctx.attrs
    g = int(a["group"])
    if len(w) != len(x):
        raise ctx.fail(f"weight W has shape {list(w)}, rank {len(w)}; expected rank {len(x)} like X {list(x)}")
    if g < 1 or x[1] % g:
        raise ctx.fail(f"group={g} must divide the input channels ({x[1]})")
    if w[0] != x[1]:
        raise ctx.fail(f"X has {x[1]} channels, but W {list(w)} (C, M/group, k...) expects {w[0]}")
    if a["kernel_shape"] and tuple(a["kernel_shape"]) != tuple(w[2:]):
        raise ctx.fail(f"kernel_shape {list(a['kernel_shape'])} does not match W's spatial dims {list(w[2:])}")
    m = w[1] * g
    _channel_param(ctx, 2, m, "bias B")
    geo = _geo(ctx, conv_transpose_node_geometry, x, w, **a)
    return [(ctx.dtype(0), (x[0], m) + geo.out_shape)]


@register("ConvTranspose", attrs={**_CONV_ATTRS, "output_padding": None, "output_shape": None},
          infer=_conv_transpose_infer, inputs=(2, 3), flags=("epilogue",))
def conv_transpose(x, w, b=None, *, auto_pad, dilations, group, kernel_shape, output_padding, output_shape,
                   pads, strides):
    """N-D transposed convolution: a batched matmul to per-tap columns, then one strided
    scatter-add per kernel tap (col2im)."""
    geo = conv_transpose_node_geometry(x.shape, w.shape, auto_pad=auto_pad, dilations=dilations,
                                     kernel_shape=kernel_shape, pads=pads, strides=strides,
                                     output_padding=output_padding, output_shape=output_shape)
    ct = _compute_dtype(x.dtype)
    n, c = x.shape[:2]
    g = int(group)
    mg = w.shape[1]
    m = mg * g
    k = int(np.prod(geo.kernel))
    ins = geo.in_shape
    xm = np.asarray(x, ct).reshape(n, g, c // g, int(np.prod(ins)))
    wm = np.asarray(w, ct).reshape(g, c // g, mg * k).transpose(0, 2, 1)      # (G, Mg·K, Cg)
    cols = np.matmul(wm, xm).reshape((n, m, k) + ins)                       # (N, M, K, *in)
    shift = [max(0, -b) for b in geo.pads_begin]
    full = [max((i - 1) * s + (kk - 1) * d + 1, b + o) + sh for i, s, kk, d, b, o, sh in
            zip(ins, geo.strides, geo.kernel, geo.dilations, geo.pads_begin, geo.out_shape, shift)]
    buf = np.zeros((n, m) + tuple(full), ct)
    for t, j in enumerate(np.ndindex(*geo.kernel)):
        sl = tuple(slice(sh + jj * d, sh + jj * d + (i - 1) * s + 1, s)
                   for sh, jj, d, i, s in zip(shift, j, geo.dilations, ins, geo.strides))
        buf[(slice(None), slice(None)) + sl] += cols[:, :, t]
    y = buf[(slice(None), slice(None)) + tuple(slice(sh + b, sh + b + o) for sh, b, o in
                                                zip(shift, geo.pads_begin, geo.out_shape))]
    if b is not None:
        y = y + np.asarray(b, ct).reshape((m,) + (1,) * len(ins))
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- pools
_POOL_ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": REQUIRED,
               "pads": None, "strides": None}


def pool_node_geometry(x_shape, *, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None,
                  strides=None, **_) -> WindowGeometry:
    """Geometry of a MaxPool / AveragePool / LpPool node with input shape and attributes."""
    return window_geometry(x_shape[2:], kernel_shape, strides, dilations, pads, auto_pad,
                           ceil_mode=bool(ceil_mode))


def _pool_shape(ctx: InferContext) -> tuple[int, ...]:
    x = _check_rank(ctx, 0, 3, "input X")
    if len(ctx.attrs["kernel_shape"]) != len(x) - 2:
        raise ctx.fail(f"kernel_shape {list(ctx.attrs['kernel_shape'])} has {len(ctx.attrs['kernel_shape'])} "
                       f"values, X {list(x)} has {len(x) - 2} spatial dims")
    geo = _geo(ctx, pool_node_geometry, x, **ctx.attrs)
    return tuple(x[:2]) + geo.out_shape


def _pool_infer(ctx: InferContext):
    return [(ctx.dtype(0), _pool_shape(ctx))]


def _maxpool_infer(ctx: InferContext):
    shp = _pool_shape(ctx)
    return [(ctx.dtype(0), shp), (np.dtype(np.int64), shp)]


def _lowest(dt):
    dt = np.dtype(dt)
    if dt.kind == "f":
        return -np.inf
    return np.iinfo(dt).min


@register("MaxPool", attrs={**_POOL_ATTRS, "storage_order": 0}, infer=_maxpool_infer)
def max_pool(x, *, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides):
    """Max over each window (padding never wins); Indices = flat index of the first maximum
    in the whole input tensor, spatial dims row-major (storage_order 0) or column-major (1)."""
    geo = pool_node_geometry(x.shape, kernel_shape=kernel_shape, auto_pad=auto_pad, ceil_mode=ceil_mode,
                        dilations=dilations, pads=pads, strides=strides)
    xp = _pad_spatial(x, geo.pads_begin, [e + x_ for e, x_ in zip(geo.pads_end, geo.extra)], _lowest(x.dtype))
    best = idx = None
    for t, sl in enumerate(_taps(geo)):
        v = xp[(Ellipsis,) + sl]
        if best is None:
            best = np.array(v)
            idx = np.zeros(best.shape, np.int64)
            better = np.empty(best.shape, bool)
        else:
            np.greater(v, best, out=better)
            np.copyto(best, v, where=better)
            np.copyto(idx, t, where=better)
    # tap index → input coordinates → flat index
    taps = np.unravel_index(idx, geo.kernel)
    d = geo.ndim
    coords = []
    for i in range(d):
        o = np.arange(geo.out_shape[i]).reshape((-1,) + (1,) * (d - 1 - i))
        coords.append(o * geo.strides[i] + taps[i] * geo.dilations[i] - geo.pads_begin[i])
    order = range(d) if not storage_order else reversed(range(d))
    flat = np.zeros(idx.shape, np.int64)
    for i in order:
        flat = flat * geo.in_shape[i] + coords[i]
    nc = np.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2] + (1,) * d)
    flat += nc * int(np.prod(geo.in_shape))
    return best, flat


def _window_counts(geo: WindowGeometry, include_pad: bool) -> np.ndarray:
    """Number of window taps on counted elements, per output position (a separable product)."""
    total = np.ones((), np.float64)
    for i in range(geo.ndim):
        o = np.arange(geo.out_shape[i])[:, None] * geo.strides[i]
        pos = o + np.arange(geo.kernel[i])[None, :] * geo.dilations[i]      # in padded coordinates
        lo, hi = geo.pads_begin[i], geo.pads_begin[i] + geo.in_shape[i]
        if include_pad:
            lo, hi = 0, hi + geo.pads_end[i]
        cnt = ((pos >= lo) & (pos < hi)).sum(axis=1).astype(np.float64)
        total = np.multiply.outer(total, cnt)
    return total


def _window_sum(xp, geo: WindowGeometry):
    acc = None
    for sl in _taps(geo):
        v = xp[(Ellipsis,) + sl]
        acc = np.array(v) if acc is None else acc + v
    return acc


@register("AveragePool", attrs={**_POOL_ATTRS, "count_include_pad": 0}, infer=_pool_infer)
def average_pool(x, *, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads, strides):
    """Mean over each window; explicit padding is counted only with count_include_pad, the
    ceil_mode overflow never."""
    geo = pool_node_geometry(x.shape, kernel_shape=kernel_shape, auto_pad=auto_pad, ceil_mode=ceil_mode,
                        dilations=dilations, pads=pads, strides=strides)
    ct = _compute_dtype(x.dtype)
    xp = _pad_spatial(np.asarray(x, ct), geo.pads_begin, [e + x_ for e, x_ in zip(geo.pads_end, geo.extra)], 0)
    acc = _window_sum(xp, geo)
    cnt = _window_counts(geo, bool(count_include_pad))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = acc / cnt.astype(ct)
    return y.astype(x.dtype, copy=False)


@register("LpPool", attrs={**_POOL_ATTRS, "p": 2}, infer=_pool_infer)
def lp_pool(x, *, auto_pad, ceil_mode, dilations, kernel_shape, p, pads, strides):
    """``(Σ_window |x|^p)^(1/p)``; padding contributes zeros."""
    geo = pool_node_geometry(x.shape, kernel_shape=kernel_shape, auto_pad=auto_pad, ceil_mode=ceil_mode,
                        dilations=dilations, pads=pads, strides=strides)
    ct = _compute_dtype(x.dtype)
    ap = np.abs(np.asarray(x, ct)) ** ct.type(p)
    xp = _pad_spatial(ap, geo.pads_begin, [e + x_ for e, x_ in zip(geo.pads_end, geo.extra)], 0)
    y = _window_sum(xp, geo) ** ct.type(1.0 / p)
    return y.astype(x.dtype, copy=False)


def _global_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 3, "input X")
    return [(ctx.dtype(0), tuple(x[:2]) + (1,) * (len(x) - 2))]


@register("GlobalAveragePool", infer=_global_infer)
def global_average_pool(x):
    ct = _compute_dtype(x.dtype)
    return np.asarray(x, ct).mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False)


@register("GlobalMaxPool", infer=_global_infer)
def global_max_pool(x):
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@register("GlobalLpPool", attrs={"p": 2}, infer=_global_infer)
def global_lp_pool(x, *, p):
    ct = _compute_dtype(x.dtype)
    s = (np.abs(np.asarray(x, ct)) ** ct.type(p)).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return (s ** ct.type(1.0 / p)).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- LRN
def _lrn_infer(ctx: InferContext):
    _check_rank(ctx, 0, 2, "input X")
    if int(ctx.attrs["size"]) < 1:
        raise ctx.fail(f"size {ctx.attrs['size']} must be positive")
    return [(ctx.dtype(0), ctx.shape(0))]


@register("LRN", attrs={"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": REQUIRED}, infer=_lrn_infer)
def lrn(x, *, alpha, beta, bias, size):
    """``Y = X / (bias + alpha/size · Σ_{c'} X[c']²)^beta`` over channels
    ``c - floor((size-1)/2) .. c + ceil((size-1)/2)``."""
    ct = _compute_dtype(x.dtype)
    xc = np.asarray(x, ct)
    c = x.shape[1]
    lo = (size - 1) // 2
    hi = size - 1 - lo
    sq = np.pad(xc * xc, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    s = sq[:, 0:c].copy()
    for t in range(1, size):
        s += sq[:, t:t + c]
    y = xc / (ct.type(bias) + ct.type(alpha / size) * s) ** ct.type(beta)
    return y.astype(x.dtype, copy=False)


# ---------------------------------------------------------------- normalizations
def _batchnorm_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 2, "input X")
    for i, what in ((1, "scale"), (2, "bias B"), (3, "mean"), (4, "var")):
        _channel_param(ctx, i, x[1], what)
    return [(ctx.dtype(0), x)]


@register("BatchNormalization", attrs={"epsilon": 1e-5}, infer=_batchnorm_infer, inputs=5,
          flags=("inplace", "epilogue"))
def batch_normalization(x, scale, b, mean, var, *, epsilon):
    """Inference form: ``Y = (X - mean) / sqrt(var + epsilon) · scale + B`` per channel (axis 1)."""
    ct = _compute_dtype(x.dtype)
    shp = (x.shape[1],) + (1,) * (x.ndim - 2)

    def p(a):
        return np.asarray(a, ct).reshape(shp)

    y = (np.asarray(x, ct) - p(mean)) * (p(scale) / np.sqrt(p(var) + ct.type(epsilon))) + p(b)
    return y.astype(x.dtype, copy=False)


def _instancenorm_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 3, "input X")
    _channel_param(ctx, 1, x[1], "scale")
    _channel_param(ctx, 2, x[1], "bias B")
    return [(ctx.dtype(0), x)]


def _normalize(xd: np.ndarray, axes, epsilon):
    mean = xd.mean(axis=axes, keepdims=True)
    cen = xd - mean
    var = (cen * cen).mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + epsilon)
    return cen * inv, mean, inv


@register("InstanceNormalization", attrs={"epsilon": 1e-5}, infer=_instancenorm_infer, inputs=3)
def instance_normalization(x, scale, b, *, epsilon):
    """Normalize each (n, c) over its spatial dims, then ``· scale[c] + B[c]``."""
    shp = (x.shape[1],) + (1,) * (x.ndim - 2)
    y, _, _ = _normalize(np.asarray(x, np.float64), tuple(range(2, x.ndim)), epsilon)
    y = y * np.asarray(scale, np.float64).reshape(shp) + np.asarray(b, np.float64).reshape(shp)
    return y.astype(x.dtype)


def _stash_dtype(x_dtype, stash_type) -> np.dtype:
    return np.dtype(np.float32) if int(stash_type) == 1 else np.dtype(x_dtype)


def _layernorm_infer(ctx: InferContext):
    x = ctx.shape(0)
    a = normalize_axis(int(ctx.attrs["axis"]), len(x), ctx)
    for i, what in ((1, "Scale"), (2, "B")):
        if ctx.has(i):
            try:
                ok = broadcast_shapes(ctx.shape(i), x, node=ctx.node_name) == tuple(x)
            except ShapeError:
                ok = False
            if not ok or len(ctx.shape(i)) > len(x) - a:
                raise ctx.fail(f"{what} {list(ctx.shape(i))} must broadcast to the normalized shape "
                               f"{list(x[a:])}")
    stat = tuple(x[:a]) + (1,) * (len(x) - a)
    u = _stash_dtype(ctx.dtype(0), ctx.attrs["stash_type"])
    return [(ctx.dtype(0), x), (u, stat), (u, stat)]


@register("LayerNormalization", attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
          infer=_layernorm_infer, inputs=(2, 3))
def layer_normalization(x, scale, b=None, *, axis, epsilon, stash_type):
    """Normalize over dims ``axis..rank-1``; returns (Y, Mean, InvStdDev), the statistics of
    shape ``X.shape[:axis] + [1, ...]`` in the stash type."""
    a = normalize_axis(int(axis), x.ndim)
    y, mean, inv = _normalize(np.asarray(x, np.float64), tuple(range(a, x.ndim)), epsilon)
    y = y * np.asarray(scale, np.float64)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    u = _stash_dtype(x.dtype, stash_type)
    return y.astype(x.dtype), mean.astype(u), inv.astype(u)


def _groupnorm_infer(ctx: InferContext):
    x = _check_rank(ctx, 0, 3, "input X")
    g = int(ctx.attrs["num_groups"])
    if g < 1 or x[1] % g:
        raise ctx.fail(f"num_groups={g} must divide the number of channels ({x[1]})")
    _channel_param(ctx, 1, x[1], "scale")
    _channel_param(ctx, 2, x[1], "bias")
    return [(ctx.dtype(0), x)]


@register("GroupNormalization", attrs={"epsilon": 1e-5, "num_groups": REQUIRED, "stash_type": 1},
          infer=_groupnorm_infer, inputs=3)
def group_normalization(x, scale, b, *, epsilon, num_groups, stash_type):
    """Normalize each group of ``C/num_groups`` channels (with its spatial dims), then
    ``· scale[c] + bias[c]`` per channel (opset 21 semantics)."""
    n, c = x.shape[:2]
    g = int(num_groups)
    xd = np.asarray(x, np.float64).reshape(n, g, -1)
    y, _, _ = _normalize(xd, (2,), epsilon)
    shp = (c,) + (1,) * (x.ndim - 2)
    y = y.reshape(x.shape) * np.asarray(scale, np.float64).reshape(shp) + np.asarray(b, np.float64).reshape(shp)
    return y.astype(x.dtype)


def _mvn_infer(ctx: InferContext):
    x = ctx.shape(0)
    for ax in ctx.attrs["axes"]:
        normalize_axis(int(ax), len(x), ctx)
    return [(ctx.dtype(0), x)]


@register("MeanVarianceNormalization", attrs={"axes": [0, 2, 3]}, infer=_mvn_infer)
def mean_variance_normalization(x, *, axes):
    """``Y = (X - E[X]) / (sqrt(E[X²] - E[X]²) + 1e-9)`` over ``axes`` (ONNX function body)."""
    axes = tuple(sorted({normalize_axis(int(a), x.ndim) for a in axes}))
    xd = np.asarray(x, np.float64)
    mean = xd.mean(axis=axes, keepdims=True)
    cen = xd - mean
    std = np.sqrt((cen * cen).mean(axis=axes, keepdims=True))
    return (cen / (std + 1e-9)).astype(x.dtype)


# ---------------------------------------------------------------- Gemm, MatMul
def _gemm_infer(ctx: InferContext):
    a, b = ctx.shape(0), ctx.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"A {list(a)} and B {list(b)} must be 2-D matrices")
    m, ka = (a[1], a[0]) if ctx.attrs["transA"] else (a[0], a[1])
    kb, n = (b[1], b[0]) if ctx.attrs["transB"] else (b[0], b[1])
    if ka != kb:
        raise ctx.fail(f"inner dimensions differ: A {list(a)} (transA={ctx.attrs['transA']}) has K={ka}, "
                       f"B {list(b)} (transB={ctx.attrs['transB']}) has K={kb}")
    if ctx.has(2):
        cs = ctx.shape(2)
        try:
            ok = len(cs) <= 2 and broadcast_shapes(cs, (m, n), node=ctx.node_name) == (m, n)
        except ShapeError:
            ok = False
        if not ok:
            raise ctx.fail(f"C {list(cs)} does not broadcast to the output shape {[m, n]}")
    return [(ctx.dtype(0), (m, n))]


@register("Gemm", attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}, infer=_gemm_infer,
          inputs=(2, 3), flags=("epilogue",))
def gemm(a, b, c=None, *, alpha, beta, transA, transB):
    """``Y = alpha · A' · B' + beta · C`` with A' = Aᵀ if transA, B' = Bᵀ if transB; C broadcasts."""
    ct = _compute_dtype(a.dtype) if a.dtype.kind == "f" else a.dtype
    am = np.asarray(a, ct)
    bm = np.asarray(b, ct)
    y = (am.T if transA else am) @ (bm.T if transB else bm)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        y = y + (np.asarray(c, ct) * beta if beta != 1.0 else np.asarray(c, ct))
    return np.asarray(y).astype(a.dtype, copy=False)


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...], node: str = "?") -> tuple[int, ...]:
    """Output shape of numpy/ONNX MatMul (1-D operands promoted then removed; batch dims broadcast)."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeError(f"node {node!r} (MatMul): operands must have rank ≥ 1, got {list(a)} and {list(b)}")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise ShapeError(f"node {node!r} (MatMul): inner dimensions differ: {list(a)} @ {list(b)}")
    batch = broadcast_shapes(a2[:-2], b2[:-2], node=node)
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return tuple(out)


def _matmul_infer(ctx: InferContext):
    return [(ctx.dtype(0), matmul_shape(ctx.shape(0), ctx.shape(1), ctx.node_name))]


@register("MatMul", infer=_matmul_infer, inputs=2, flags=("epilogue",))
def matmul(a, b):
    """numpy ``matmul`` semantics (batched, broadcasting, 1-D operands)."""
    a = np.asarray(a)
    ct = _compute_dtype(a.dtype) if a.dtype.kind == "f" else a.dtype
    return np.matmul(np.asarray(a, ct), np.asarray(b, ct)).astype(a.dtype, copy=False)


# ---------------------------------------------------------------- softmax family
def _axis_infer(ctx: InferContext):
    normalize_axis(int(ctx.attrs["axis"]), len(ctx.shape(0)), ctx)
    return [(ctx.dtype(0), ctx.shape(0))]


@register("Softmax", attrs={"axis": -1}, infer=_axis_infer)
def softmax(x, *, axis):
    """``exp(x - max) / Σ exp(x - max)`` along ``axis``."""
    ct = _compute_dtype(x.dtype)
    xc = np.asarray(x, ct)
    e = np.exp(xc - xc.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


@register("LogSoftmax", attrs={"axis": -1}, infer=_axis_infer)
def log_softmax(x, *, axis):
    """``(x - max) - log Σ exp(x - max)`` along ``axis``."""
    ct = _compute_dtype(x.dtype)
    xc = np.asarray(x, ct)
    s = xc - xc.max(axis=axis, keepdims=True)
    return (s - np.log(np.exp(s).sum(axis=axis, keepdims=True))).astype(x.dtype, copy=False)


@register("Hardmax", attrs={"axis": -1}, infer=_axis_infer)
def hardmax(x, *, axis):
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    a = normalize_axis(int(axis), x.ndim)
    idx = np.expand_dims(np.argmax(x, axis=a), a)
    y = np.zeros(x.shape, x.dtype)
    np.put_along_axis(y, idx, 1, axis=a)
    return y


# ---------------------------------------------------------------- RMS and Lp normalization
def _rmsnorm_infer(ctx: InferContext):
    x = ctx.shape(0)
    a = normalize_axis(int(ctx.attrs["axis"]), len(x), ctx)
    try:
        ok = broadcast_shapes(ctx.shape(1), x, node=ctx.node_name) == tuple(x)
    except ShapeError:
        ok = False
    if not ok or len(ctx.shape(1)) > len(x) - a:
        raise ctx.fail(f"scale {list(ctx.shape(1))} must broadcast to the normalized shape {list(x[a:])}")
    return [(ctx.dtype(0), x)]


@register("RMSNormalization", attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
          infer=_rmsnorm_infer, inputs=2)
def rms_normalization(x, scale, *, axis, epsilon, stash_type):
    """``Y = X / sqrt(mean(X², over dims axis..rank-1) + epsilon) · scale`` (opset 23)."""
    a = normalize_axis(int(axis), x.ndim)
    xd = np.asarray(x, np.float64)
    ms = (xd * xd).mean(axis=tuple(range(a, x.ndim)), keepdims=True)
    y = xd / np.sqrt(ms + epsilon) * np.asarray(scale, np.float64)
    return y.astype(x.dtype)


def _lpnorm_infer(ctx: InferContext):
    normalize_axis(int(ctx.attrs["axis"]), len(ctx.shape(0)), ctx)
    if int(ctx.attrs["p"]) not in (1, 2):
        raise ctx.fail(f"p={ctx.attrs['p']} must be 1 or 2")
    return [(ctx.dtype(0), ctx.shape(0))]


@register("LpNormalization", attrs={"axis": -1, "p": 2}, infer=_lpnorm_infer)
def lp_normalization(x, *, axis, p):
    """``x / ||x||_p`` along ``axis`` (p = 1 or 2); a zero norm gives 0."""
    a = normalize_axis(int(axis), x.ndim)
    xd = np.asarray(x, np.float64)
    if int(p) == 1:
        norm = np.abs(xd).sum(axis=a, keepdims=True)
    else:
        norm = np.sqrt((xd * xd).sum(axis=a, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(norm == 0, 0.0, xd / norm)
    return y.astype(x.dtype)
