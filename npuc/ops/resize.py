"""Resize (ONNX opset 19 form) and the coordinate and interpolation helpers the runtime
kernels and the TFLite frontend reuse.

``Resize`` takes ``X, roi, scales, sizes``; empty ``roi``/``scales`` tensors are treated as
absent. ``coordinate_transformation_mode`` also accepts the opset 11
``tf_half_pixel_for_nn``. Upsample and Resize-10 become Resize with ``asymmetric``
coordinates (in ``npuc/frontends/onnx/conv_tensor.py``).

The index math lives in plain functions: :func:`resize_output_shape`,
:func:`resize_source_coords`, :func:`resize_nearest_index`, :func:`resize_taps`. Those raise
``ValueError``; inference turns it into a ``ShapeError`` naming the node.

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

from ._tensor_helpers import _axes, _ints, _wrap
from .registry import register

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
