"""Sampling and image-geometry ops: GridSample, AffineGrid, Col2Im, CenterCropPad,
RoiAlign, MaxUnpool and DeformConv (ONNX semantics, latest opset).

GridSample (opset 22: N-D; ``bilinear``/``bicubic`` of opset 16 are ``linear``/``cubic``):
``grid[n, *o, :]`` holds normalized coordinates in [−1, 1] in reverse axis order
(``(x, y[, z])`` index (W, H[, D])). Per spatial axis of length
L a coordinate ``u`` maps to ``(u + 1)/2 · (L − 1)`` (``align_corners``) or
``((u + 1)·L − 1)/2``; nearest mode rounds it half-to-even. Coordinates outside the border
(``[0, L−1]`` with align_corners, else ``[−0.5, L−0.5]``) are clamped (``border``) or
reflected (``reflection``) first. Then taps: nearest 1, linear 2 (``1−t, t``), cubic 4
(Keys, a = −0.75); a tap outside ``[0, L)`` reads 0 (``zeros``), the edge (``border``) or
its reflection. N-D sampling is the tensor product of the per-axis taps.

AffineGrid: the base grid of ``size`` (N, C, [D,] H, W) in normalized coordinates
(``linspace(−1, 1, L)`` with align_corners, else pixel centers ``(2i + 1)/L − 1``), each
point ``(x, y[, z], 1)`` multiplied by ``theta[n]`` (N, 2, 3) / (N, 3, 4).

Col2Im: the inverse of im2col: column ``(c, kernel tap)`` × block position ``l`` is added
into the image at ``l·stride + tap·dilation − pad_begin`` (per spatial axis).

CenterCropPad: per axis, crop (or zero-pad) symmetrically to the target length; the odd
element is taken from (added at) the end.

RoiAlign (onnxruntime's algorithm): each ROI (x1, y1, x2, y2)·spatial_scale (minus 0.5 with
half_pixel) is split into output_height × output_width bins, each sampled on a
``sampling_ratio`` grid (``ceil(roi/bins)`` when 0) by bilinear interpolation; samples
beyond one pixel outside the image read 0. ``avg`` averages the samples; ``max`` takes the
largest weighted corner value of each sample, then the largest sample.

MaxUnpool: zeros of the shape MaxPool's input had (``(in − 1)·stride − pads + kernel``), the
values of X written at the flat positions ``I`` (as MaxPool's Indices output gives them);
with ``output_shape`` that result sits at the origin of a larger zero tensor.

DeformConv: Conv whose taps are displaced per output position by ``offset``
(N, offset_group·2·K, *out) (pairs (Δy, Δx) per tap, tap-major), read by bilinear
interpolation with zeros outside the image, optionally scaled by ``mask``
(N, offset_group·K, *out); then the grouped convolution and bias.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .infer import normalize_axis
from .registry import REQUIRED, InferContext, register
from .tensor import cubic_kernel

# ---------------------------------------------------------------- GridSample

_GS_MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic",
             "bicubic": "cubic"}
_GS_PADDING = ("zeros", "border", "reflection")


def _gridsample_infer(ctx: InferContext):
    x, g = ctx.shape(0), ctx.shape(1)
    if len(x) < 3 or len(g) != len(x) or g[0] != x[0] or g[-1] != len(x) - 2:
        raise ctx.fail(f"X {list(x)} must be (N, C, *S) and grid {list(g)} (N, *out, {len(x) - 2})")
    if ctx.attrs["mode"] not in _GS_MODES:
        raise ctx.fail(f"mode {ctx.attrs['mode']!r} is not one of {', '.join(_GS_MODES)}")
    if ctx.attrs["padding_mode"] not in _GS_PADDING:
        raise ctx.fail(f"padding_mode {ctx.attrs['padding_mode']!r} is not one of {', '.join(_GS_PADDING)}")
    return [(ctx.dtype(0), tuple(x[:2]) + tuple(g[1:-1]))]


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` at the borders ``lo``/``hi`` until it lies in ``[lo, hi]``."""
    rng = hi - lo
    if rng <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dx = np.where(below, lo - x, np.where(above, x - hi, 0.0))
    n = np.floor(dx / rng)
    r = dx - n * rng
    even = (n % 2) == 0
    down = np.where(even, lo + r, hi - r)
    up = np.where(even, hi - r, lo + r)
    return np.where(below, down, np.where(above, up, x))


@register("GridSample", inputs=2, attrs={"align_corners": 0, "mode": "linear", "padding_mode": "zeros"},
          infer=_gridsample_infer)
def grid_sample(x, grid, *, align_corners, mode, padding_mode):
    """Sample X at the grid's normalized coordinates; see the module docstring."""
    mode = _GS_MODES[mode]
    x = np.asarray(x)
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    nd = len(spatial)
    g = np.asarray(grid, np.float64)
    out_sp = g.shape[1:-1]
    g = g.reshape(n, -1, nd)[..., ::-1]                    # (N, P, nd) in axis order
    per_axis = []
    for d, length in enumerate(spatial):
        u = g[..., d]
        if align_corners:
            pos = (u + 1) / 2 * (length - 1)
            lo, hi = 0.0, length - 1.0
        else:
            pos = ((u + 1) * length - 1) / 2
            lo, hi = -0.5, length - 0.5
        if mode == "nearest":
            pos = np.rint(pos)
        out = (pos < lo) | (pos > hi)
        if padding_mode == "border":
            pos = np.where(out, np.clip(pos, 0, length - 1), pos)
        elif padding_mode == "reflection":
            pos = np.where(out, _reflect(pos, lo, hi), pos)
        if mode == "nearest":
            idx = np.trunc(pos)[..., None]
            w = np.ones_like(idx)
        else:
            i0 = np.floor(pos)
            t = pos - i0
            if mode == "linear":
                idx = np.stack([i0, i0 + 1], axis=-1)
                w = np.stack([1 - t, t], axis=-1)
            else:
                idx = i0[..., None] + np.arange(-1, 3)
                w = cubic_kernel(idx - pos[..., None], -0.75)
        if padding_mode == "zeros":
            w = np.where((idx >= 0) & (idx < length), w, 0.0)
            idx = np.clip(idx, 0, length - 1)
        elif padding_mode == "border":
            idx = np.clip(idx, 0, length - 1)
        else:
            idx = np.clip(np.trunc(_reflect(idx, lo, hi)), 0, length - 1)
        per_axis.append((idx.astype(np.int64), w))
    strides = [math.prod(spatial[d + 1:]) for d in range(nd)]
    xf = x.reshape(n, c, -1).astype(np.float64)
    acc = np.zeros((n, c, g.shape[1]))
    for taps in itertools.product(*[range(a[0].shape[-1]) for a in per_axis]):
        flat = sum(per_axis[d][0][..., t] * strides[d] for d, t in enumerate(taps))
        w = np.prod([per_axis[d][1][..., t] for d, t in enumerate(taps)], axis=0)
        vals = np.take_along_axis(xf, np.broadcast_to(flat[:, None, :], (n, c, flat.shape[1])), axis=2)
        acc += vals * w[:, None, :]
    return acc.reshape((n, c) + tuple(out_sp)).astype(x.dtype)


# ---------------------------------------------------------------- AffineGrid

def _affine_grid_infer(ctx: InferContext):
    size = [int(v) for v in ctx.require_const(1, "size").reshape(-1)]
    t = ctx.shape(0)
    nd = len(size) - 2
    if nd not in (2, 3) or tuple(t) != (size[0], nd, nd + 1):
        raise ctx.fail(f"theta {list(t)} must be (N, {nd}, {nd + 1}) for size {size}")
    return [(ctx.dtype(0), (size[0],) + tuple(size[2:]) + (nd,))]


def _base_coords(length: int, align_corners: int) -> np.ndarray:
    if align_corners:
        return np.linspace(-1.0, 1.0, length) if length > 1 else np.zeros(1)
    return (2 * np.arange(length) + 1) / length - 1


@register("AffineGrid", inputs=2, attrs={"align_corners": 0}, infer=_affine_grid_infer, const_inputs=(1,))
def affine_grid(theta, size, *, align_corners):
    """Sampling grid of affine matrices ``theta``; see the module docstring."""
    size = [int(v) for v in np.asarray(size).reshape(-1)]
    spatial = size[2:]
    axes = [_base_coords(s, align_corners) for s in spatial]          # D, H, W order
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m for m in mesh[::-1]] + [np.ones(mesh[0].shape)], axis=-1)   # (x, y[, z], 1)
    th = np.asarray(theta, np.float64)
    out = np.einsum("...k,njk->n...j", pts, th)
    return out.astype(np.asarray(theta).dtype)


# ---------------------------------------------------------------- Col2Im

def _col2im_geometry(in_shape, image_shape, block_shape, dilations, pads, strides):
    nd = len(image_shape)
    dil = list(dilations) if dilations else [1] * nd
    st = list(strides) if strides else [1] * nd
    pd = list(pads) if pads else [0] * (2 * nd)
    blocks = []
    for i in range(nd):
        dk = (block_shape[i] - 1) * dil[i] + 1
        blocks.append((image_shape[i] + pd[i] + pd[nd + i] - dk) // st[i] + 1)
    return dil, st, pd, blocks


def _col2im_infer(ctx: InferContext):
    img = [int(v) for v in ctx.require_const(1, "image_shape").reshape(-1)]
    blk = [int(v) for v in ctx.require_const(2, "block_shape").reshape(-1)]
    x = ctx.shape(0)
    k = math.prod(blk)
    if len(x) != 3 or len(img) != len(blk) or x[1] % k:
        raise ctx.fail(f"input {list(x)} must be (N, C·{k}, L) for block_shape {blk} and image_shape {img}")
    _, _, _, blocks = _col2im_geometry(x, img, blk, ctx.attrs["dilations"], ctx.attrs["pads"],
                                       ctx.attrs["strides"])
    if math.prod(blocks) != x[2]:
        raise ctx.fail(f"input has {x[2]} blocks, the geometry gives {math.prod(blocks)} ({blocks})")
    return [(ctx.dtype(0), (x[0], x[1] // k) + tuple(img))]


@register("Col2Im", inputs=3, attrs={"dilations": None, "pads": None, "strides": None}, infer=_col2im_infer,
          const_inputs=(1, 2))
def col2im(x, image_shape, block_shape, *, dilations, pads, strides):
    """Rearrange columns into an image, summing overlaps; see the module docstring."""
    img = [int(v) for v in np.asarray(image_shape).reshape(-1)]
    blk = [int(v) for v in np.asarray(block_shape).reshape(-1)]
    nd = len(img)
    dil, st, pd, blocks = _col2im_geometry(x.shape, img, blk, dilations, pads, strides)
    n, ck, _ = x.shape
    k = math.prod(blk)
    c = ck // k
    cols = np.asarray(x, np.float64).reshape((n, c) + tuple(blk) + tuple(blocks))
    padded = np.zeros((n, c) + tuple(img[i] + pd[i] + pd[nd + i] for i in range(nd)))
    for tap in itertools.product(*[range(b) for b in blk]):
        sl = tuple(slice(tap[i] * dil[i], tap[i] * dil[i] + (blocks[i] - 1) * st[i] + 1, st[i]) for i in range(nd))
        padded[(slice(None), slice(None)) + sl] += cols[(slice(None), slice(None)) + tap]
    out = padded[(slice(None), slice(None)) + tuple(slice(pd[i], pd[i] + img[i]) for i in range(nd))]
    return np.ascontiguousarray(out).astype(x.dtype)


# ---------------------------------------------------------------- CenterCropPad

def _ccp_axes(rank: int, axes) -> list[int]:
    if axes is None:
        return list(range(rank))
    return [normalize_axis(int(a), rank) for a in axes]


def _ccp_infer(ctx: InferContext):
    shape = [int(v) for v in ctx.require_const(1, "shape").reshape(-1)]
    x = list(ctx.shape(0))
    axes = ctx.attrs["axes"]
    for a in (axes or []):
        normalize_axis(int(a), len(x), ctx)
    ax = _ccp_axes(len(x), axes)
    if len(shape) != len(ax) or any(s < 0 for s in shape):
        raise ctx.fail(f"shape {shape} must give one non-negative length per axis ({len(ax)})")
    for a, s in zip(ax, shape):
        x[a] = s
    return [(ctx.dtype(0), tuple(x))]


@register("CenterCropPad", inputs=2, attrs={"axes": None}, infer=_ccp_infer, const_inputs=(1,))
def center_crop_pad(x, shape, *, axes):
    """Center crop or zero-pad to ``shape`` along ``axes``."""
    x = np.asarray(x)
    shape = [int(v) for v in np.asarray(shape).reshape(-1)]
    ax = _ccp_axes(x.ndim, axes)
    out_shape = list(x.shape)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    for a, s in zip(ax, shape):
        d = x.shape[a]
        out_shape[a] = s
        if s < d:
            b = (d - s) // 2
            src[a] = slice(b, b + s)
        elif s > d:
            b = (s - d) // 2
            dst[a] = slice(b, b + d)
    out = np.zeros(out_shape, x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


# ---------------------------------------------------------------- RoiAlign

def _roialign_infer(ctx: InferContext):
    x, r, b = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if len(x) != 4 or len(r) != 2 or r[1] != 4 or tuple(b) != (r[0],):
        raise ctx.fail(f"X {list(x)} must be (N, C, H, W), rois {list(r)} (R, 4), batch_indices {list(b)} (R,)")
    a = ctx.attrs
    if a["mode"] not in ("avg", "max"):
        raise ctx.fail(f"mode {a['mode']!r} is not avg or max")
    if a["coordinate_transformation_mode"] not in ("half_pixel", "output_half_pixel"):
        raise ctx.fail(f"coordinate_transformation_mode {a['coordinate_transformation_mode']!r} is not "
                       f"half_pixel or output_half_pixel")
    return [(ctx.dtype(0), (r[0], x[1], int(a["output_height"]), int(a["output_width"])))]


def _roi_axis(start, size, bins, grid, length):
    """Sample positions of one ROI axis → (low, high, frac, valid), each (bins·grid,)."""
    bin_size = size / bins
    k = np.arange(bins)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid
    p = (start + k).reshape(-1)
    valid = (p >= -1.0) & (p <= length)
    p = np.maximum(p, 0.0)
    low = np.floor(p).astype(np.int64)
    edge = low >= length - 1
    low = np.where(edge, length - 1, low)
    high = np.where(edge, length - 1, low + 1)
    p = np.where(edge, low, p)
    return low, high, p - low, valid


@register("RoiAlign", inputs=3, attrs={"coordinate_transformation_mode": "half_pixel", "mode": "avg",
                                       "output_height": 1, "output_width": 1, "sampling_ratio": 0,
                                       "spatial_scale": 1.0}, infer=_roialign_infer)
def roi_align(x, rois, batch_indices, *, coordinate_transformation_mode, mode, output_height, output_width,
              sampling_ratio, spatial_scale):
    """Region-of-interest align; see the module docstring."""
    x = np.asarray(x)
    _, c, h, w = x.shape
    oh, ow = int(output_height), int(output_width)
    half = coordinate_transformation_mode == "half_pixel"
    off = 0.5 if half else 0.0
    r = np.asarray(rois, np.float64)
    out = np.zeros((r.shape[0], c, oh, ow))
    xf = x.astype(np.float64)
    for i, (x1, y1, x2, y2) in enumerate(r):
        sw, sh = x1 * spatial_scale - off, y1 * spatial_scale - off
        rw, rh = x2 * spatial_scale - off - sw, y2 * spatial_scale - off - sh
        if not half:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = int(sampling_ratio) if sampling_ratio > 0 else int(math.ceil(rh / oh))
        gw = int(sampling_ratio) if sampling_ratio > 0 else int(math.ceil(rw / ow))
        ylo, yhi, ly, vy = _roi_axis(sh, rh, oh, gh, h)
        xlo, xhi, lx, vx = _roi_axis(sw, rw, ow, gw, w)
        img = xf[int(batch_indices[i])]                         # (C, H, W)
        valid = (vy[:, None] & vx[None, :]).astype(np.float64)  # (oh·gh, ow·gw)
        hy, hx = 1 - ly, 1 - lx
        corners = [(ylo, xlo, hy[:, None] * hx[None, :]), (ylo, xhi, hy[:, None] * lx[None, :]),
                   (yhi, xlo, ly[:, None] * hx[None, :]), (yhi, xhi, ly[:, None] * lx[None, :])]
        terms = [img[:, yy][:, :, xx] * (ww * valid) for yy, xx, ww in corners]   # (C, oh·gh, ow·gw)
        if mode == "avg":
            s = terms[0] + terms[1] + terms[2] + terms[3]
            out[i] = s.reshape(c, oh, gh, ow, gw).sum(axis=(2, 4)) / max(gh * gw, 1)
        else:
            m = np.maximum(np.maximum(terms[0], terms[1]), np.maximum(terms[2], terms[3]))
            out[i] = m.reshape(c, oh, gh, ow, gw).max(axis=(2, 4))
    return out.astype(x.dtype)


# ---------------------------------------------------------------- MaxUnpool

def _unpool_shape(x_shape, kernel_shape, pads, strides):
    nd = len(kernel_shape)
    st = list(strides) if strides else [1] * nd
    pd = list(pads) if pads else [0] * (2 * nd)
    return tuple(x_shape[:2]) + tuple((x_shape[2 + i] - 1) * st[i] - (pd[i] + pd[nd + i]) + kernel_shape[i]
                                      for i in range(nd))


def _maxunpool_infer(ctx: InferContext):
    x = ctx.shape(0)
    if ctx.shape(1) != x:
        raise ctx.fail(f"indices {list(ctx.shape(1))} must have the shape of X {list(x)}")
    inferred = _unpool_shape(x, ctx.attrs["kernel_shape"], ctx.attrs["pads"], ctx.attrs["strides"])
    if ctx.has(2):
        shp = tuple(int(v) for v in ctx.require_const(2, "output_shape").reshape(-1))
        if len(shp) != len(x) or any(a < b for a, b in zip(shp, inferred)):
            raise ctx.fail(f"output_shape {list(shp)} is smaller than the unpooled shape {list(inferred)}")
        return [(ctx.dtype(0), shp)]
    return [(ctx.dtype(0), inferred)]


@register("MaxUnpool", inputs=(2, 3), attrs={"kernel_shape": REQUIRED, "pads": None, "strides": None},
          infer=_maxunpool_infer, const_inputs=(2,))
def max_unpool(x, indices, output_shape=None, *, kernel_shape, pads, strides):
    """Scatter X into zeros at the MaxPool indices; see the module docstring."""
    x = np.asarray(x)
    inferred = _unpool_shape(x.shape, kernel_shape, pads, strides)
    y = np.zeros(math.prod(inferred), x.dtype)
    y[np.asarray(indices).astype(np.int64).reshape(-1)] = x.reshape(-1)
    y = y.reshape(inferred)
    if output_shape is None:
        return y
    out = np.zeros(tuple(int(v) for v in np.asarray(output_shape).reshape(-1)), x.dtype)
    out[tuple(slice(0, s) for s in inferred)] = y
    return out


# ---------------------------------------------------------------- DeformConv

def _deform_geometry(x_shape, w_shape, dilations, kernel_shape, pads, strides):
    nd = len(x_shape) - 2
    k = list(kernel_shape) if kernel_shape else list(w_shape[2:])
    dil = list(dilations) if dilations else [1] * nd
    st = list(strides) if strides else [1] * nd
    pd = list(pads) if pads else [0] * (2 * nd)
    out = [(x_shape[2 + i] + pd[i] + pd[nd + i] - ((k[i] - 1) * dil[i] + 1)) // st[i] + 1 for i in range(nd)]
    return k, dil, st, pd, out


def _deform_infer(ctx: InferContext):
    x, w = ctx.shape(0), ctx.shape(1)
    a = ctx.attrs
    if len(x) != 4 or len(w) != 4:
        raise ctx.fail(f"X {list(x)} and W {list(w)} must be 4-D (2-D deformable convolution)")
    g, og = int(a["group"]), int(a["offset_group"])
    if x[1] % g or w[0] % g or w[1] * g != x[1] or x[1] % og:
        raise ctx.fail(f"group={g} / offset_group={og} do not fit X {list(x)} and W {list(w)}")
    k, _, _, _, out = _deform_geometry(x, w, a["dilations"], a["kernel_shape"], a["pads"], a["strides"])
    kk = math.prod(k)
    if tuple(ctx.shape(2)) != (x[0], og * 2 * kk, *out):
        raise ctx.fail(f"offset {list(ctx.shape(2))} must be {[x[0], og * 2 * kk, *out]}")
    if ctx.has(4) and tuple(ctx.shape(4)) != (x[0], og * kk, *out):
        raise ctx.fail(f"mask {list(ctx.shape(4))} must be {[x[0], og * kk, *out]}")
    return [(ctx.dtype(0), (x[0], w[0], *out))]


@register("DeformConv", inputs=(3, 5), attrs={"dilations": None, "group": 1, "kernel_shape": None,
                                              "offset_group": 1, "pads": None, "strides": None},
          infer=_deform_infer)
def deform_conv(x, w, offset, b=None, mask=None, *, dilations, group, kernel_shape, offset_group, pads, strides):
    """Deformable 2-D convolution; see the module docstring."""
    x = np.asarray(x)
    n, c, h, wd = x.shape
    m = w.shape[0]
    k, dil, st, pd, (oh, ow) = _deform_geometry(x.shape, w.shape, dilations, kernel_shape, pads, strides)
    kk = k[0] * k[1]
    og = int(offset_group)
    cpg = c // og
    off = np.asarray(offset, np.float64).reshape(n, og, kk, 2, oh, ow)
    msk = None if mask is None else np.asarray(mask, np.float64).reshape(n, og, kk, oh, ow)
    xf = np.asarray(x, np.float64).reshape(n, og, cpg, h * wd)
    base_y = (np.arange(oh) * st[0] - pd[0])[:, None]
    base_x = (np.arange(ow) * st[1] - pd[1])[None, :]
    cols = np.zeros((n, og, cpg, kk, oh, ow))
    for t, (i, j) in enumerate(itertools.product(range(k[0]), range(k[1]))):
        py = base_y + i * dil[0] + off[:, :, t, 0]             # (N, og, oh, ow)
        px = base_x + j * dil[1] + off[:, :, t, 1]
        y0, x0 = np.floor(py), np.floor(px)
        ly, lx = py - y0, px - x0
        acc = np.zeros((n, og, cpg, oh * ow))
        for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx), (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < wd)
            flat = (np.clip(yy, 0, h - 1) * wd + np.clip(xx, 0, wd - 1)).astype(np.int64).reshape(n, og, 1, -1)
            v = np.take_along_axis(xf, np.broadcast_to(flat, (n, og, cpg, oh * ow)), axis=3)
            acc += v * np.where(ok, wgt, 0.0).reshape(n, og, 1, -1)
        if msk is not None:
            acc *= msk[:, :, t].reshape(n, og, 1, -1)
        cols[:, :, :, t] = acc.reshape(n, og, cpg, oh, ow)
    g = int(group)
    cols = cols.reshape(n, g, (c // g) * kk, oh * ow)
    wm = np.asarray(w, np.float64).reshape(g, m // g, (c // g) * kk)
    y = np.matmul(wm, cols).reshape(n, m, oh, ow)
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, m, 1, 1)
    return y.astype(x.dtype)
