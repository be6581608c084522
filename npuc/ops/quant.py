"""Quantization ops: ONNX QuantizeLinear / DequantizeLinear, and npuc's integer ops.

Integer ops carry everything they need as attributes computed at compile time by the
quantize pass (:mod:`npuc.quant.quantize`) with the math of :mod:`npuc.quant.qparams`:
zero points, fixed-point multipliers ``m`` (Q31) and right shifts ``n``, and the integer
clamp bounds ``act_min``/``act_max`` that implement a fused Relu/Relu6/Clip. Every
requantization uses :func:`npuc.quant.qparams.requantize` (round half up); these numpy
kernels are the definition the fast runtime kernels are tested against, bit for bit.

* ``QConv(x, w, bias?)``: ``acc = Σ (x − x_zp)(w − w_zp[c]) + bias[c]`` (padding holds x_zp,
  i.e. contributes 0), ``y = requantize(acc, m[c], n[c], y_zp, act_min, act_max)``; with a
  fused PRelu/LeakyRelu, negative accumulators use ``neg_multiplier[c]``/``neg_shift[c]``.
* ``QGemm(a, b, bias?)``: ``a (M,K) @ b (K,N)`` likewise, per output column c.
* ``QMatMul(a, b)``: batched, both operands activations, per-tensor.
* ``QAdd(a, b)``: ``y = clamp(y_zp + (((a−a_zp)·a_mult + (b−b_zp)·b_mult + 2^(n−1)) >> n))``
  (Sub is QAdd with a negative ``b_mult``).
* ``QMul(a, b)``: ``y = requantize((a−a_zp)(b−b_zp), m, n, y_zp)``.
* ``QConcat(x...)``: each input requantized to the output's parameters, then concatenated.
* ``QMean(x)``: mean over ``axes``: ``requantize(Σ(x − x_zp), m, n, y_zp)`` with
  ``M = s_x / (s_y · count)`` (GlobalAveragePool, ReduceMean).
* ``QAvgPool(x)``: AveragePool with a constant window count (count_include_pad or no
  padding): like QMean over each window.
* ``QLut(x)``: a table lookup: 8-bit inputs index a 256-entry table directly; 16-bit inputs
  interpolate linearly in a 513-entry table (step 128) with round-half-up.
* ``Requantize(x)``: ``requantize(x − x_zp, m, n, y_zp, act_min, act_max)`` into ``out_dtype``.
"""
from __future__ import annotations

import numpy as np

from ..quant.qparams import requantize
from .nn import _pad_spatial, _window_sum, conv, pool_node_geometry
from .registry import REQUIRED, InferContext, register

_INT_DTYPES = ("int8", "uint8", "int16", "int32")


def _dt(ctx: InferContext) -> np.dtype:
    d = ctx.attrs["out_dtype"]
    if d not in _INT_DTYPES:
        raise ctx.fail(f"out_dtype {d!r} must be one of {_INT_DTYPES}")
    return np.dtype(d)


def _vec(v, c: int | None = None, dtype=np.int64):
    a = np.asarray(v, dtype)
    return a if c is None or a.ndim == 0 else a.reshape(c)


# ---------------------------------------------------------------- ONNX Q/DQ
def _q_infer(ctx: InferContext):
    zp = ctx.inputs[2] if ctx.has(2) else None
    od = int(ctx.attrs.get("output_dtype") or 0)
    if zp is not None:
        dt = zp.dtype
    elif od:
        from ..ir.dtypes import from_onnx
        dt = from_onnx(od)
    else:
        dt = np.dtype(np.uint8)
    return [(dt, ctx.shape(0))]


def _axis_shape(x, s, axis, block_size=0):
    s = np.asarray(s)
    if s.ndim == 0 or s.size == 1 and x.ndim == 0:
        return s.reshape(())
    axis = axis % x.ndim
    if block_size:
        return np.repeat(s, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = s.size
    return s.reshape(shape)


@register("QuantizeLinear", attrs={"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": 0},
          inputs=(2, 3), infer=_q_infer)
def quantize_linear(x, y_scale, y_zero_point=None, *, axis, saturate, block_size, output_dtype):
    """``y = saturate(round_half_even(x / y_scale) + y_zero_point)`` (ONNX)."""
    if y_zero_point is not None:
        dt = np.asarray(y_zero_point).dtype
    elif output_dtype:
        from ..ir.dtypes import from_onnx
        dt = from_onnx(int(output_dtype))
    else:
        dt = np.dtype(np.uint8)
    x = np.asarray(x)
    s = _axis_shape(x, y_scale, axis, block_size).astype(np.float32)
    z = 0 if y_zero_point is None else _axis_shape(x, y_zero_point, axis, block_size).astype(np.int64)
    info = np.iinfo(dt)
    q = np.rint(x.astype(np.float32) / s).astype(np.float64) + z
    return np.clip(q, info.min, info.max).astype(dt)


def _dq_infer(ctx: InferContext):
    return [(ctx.dtype(1), ctx.shape(0))]


@register("DequantizeLinear", attrs={"axis": 1, "block_size": 0}, inputs=(2, 3), infer=_dq_infer)
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis, block_size):
    """``y = (x − x_zero_point) · x_scale`` (ONNX)."""
    x = np.asarray(x)
    s = _axis_shape(x, x_scale, axis, block_size)
    z = 0 if x_zero_point is None else _axis_shape(x, x_zero_point, axis, block_size).astype(np.int64)
    return ((x.astype(np.int64) - z) * s.astype(np.float32)).astype(np.asarray(x_scale).dtype)


# ---------------------------------------------------------------- QConv
_QCOMMON = {"y_zp": 0, "multiplier": REQUIRED, "shift": REQUIRED, "act_min": REQUIRED, "act_max": REQUIRED,
            "out_dtype": REQUIRED}
# QConv/QGemm: a fused PRelu/LeakyRelu requantizes negative accumulators with their own
# (per-channel, possibly negative) multipliers: y = requantize(acc, acc >= 0 ? m : m_neg)
_QNEG = {"neg_multiplier": None, "neg_shift": None}


def _requant_signed(acc, m, n, neg_m, neg_n, y_zp, lo, hi, shape):
    y = requantize(acc, m.reshape(shape) if m.ndim else m, n.reshape(shape) if n.ndim else n, y_zp, lo, hi)
    if neg_m is None:
        return y
    nm, nn_ = np.asarray(neg_m, np.int64), np.asarray(neg_n, np.int64)
    yn = requantize(acc, nm.reshape(shape) if nm.ndim else nm, nn_.reshape(shape) if nn_.ndim else nn_,
                    y_zp, lo, hi)
    return np.where(acc >= 0, y, yn)
_CONV = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None, "strides": None}


def _qconv_infer(ctx: InferContext):
    from .registry import get_op

    types = get_op("Conv").infer(ctx)
    return [(_dt(ctx), types[0][1])]


@register("QConv", attrs={**_CONV, **_QCOMMON, **_QNEG, "x_zp": 0, "w_zp": 0}, inputs=(2, 3), infer=_qconv_infer)
def qconv(x, w, bias=None, *, x_zp, w_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype,
          neg_multiplier, neg_shift, **conv_attrs):
    """Integer convolution with per-output-channel requantization."""
    m_out = w.shape[0]
    xd = np.asarray(x, np.float64) - float(x_zp)
    wz = _vec(w_zp, m_out).astype(np.float64)
    wd = np.asarray(w, np.float64) - (wz.reshape((-1,) + (1,) * (w.ndim - 1)) if wz.ndim else wz)
    acc = np.rint(conv(xd, wd, None, **conv_attrs)).astype(np.int64)
    bshape = (1, m_out) + (1,) * (acc.ndim - 2)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64).reshape(bshape)
    y = _requant_signed(acc, _vec(multiplier, m_out), _vec(shift, m_out), neg_multiplier, neg_shift, y_zp,
                        act_min, act_max, bshape)
    return y.astype(out_dtype)


# ---------------------------------------------------------------- QGemm / QMatMul
def _qgemm_infer(ctx: InferContext):
    a, b = ctx.shape(0), ctx.shape(1)
    if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
        raise ctx.fail(f"QGemm needs A (M,K) and B (K,N), got {list(a)} and {list(b)}")
    return [(_dt(ctx), (a[0], b[1]))]


@register("QGemm", attrs={**_QCOMMON, **_QNEG, "a_zp": 0, "b_zp": 0}, inputs=(2, 3), infer=_qgemm_infer)
def qgemm(a, b, bias=None, *, a_zp, b_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype,
          neg_multiplier, neg_shift):
    """``Y = requantize((A − a_zp) @ (B − b_zp[c]) + bias[c])`` per output column c."""
    nn = b.shape[1]
    ad = np.asarray(a, np.int64) - int(a_zp)
    bz = _vec(b_zp, nn)
    bd = np.asarray(b, np.int64) - (bz.reshape(1, nn) if bz.ndim else bz)
    acc = ad @ bd
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64).reshape(1, nn)
    y = _requant_signed(acc, _vec(multiplier, nn), _vec(shift, nn), neg_multiplier, neg_shift, y_zp,
                        act_min, act_max, (1, nn))
    return y.astype(out_dtype)


def _qmatmul_infer(ctx: InferContext):
    from .nn import matmul_shape

    return [(_dt(ctx), matmul_shape(ctx.shape(0), ctx.shape(1), ctx.node_name))]


@register("QMatMul", attrs={**_QCOMMON, "a_zp": 0, "b_zp": 0}, inputs=2, infer=_qmatmul_infer)
def qmatmul(a, b, *, a_zp, b_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype):
    """Batched integer matmul of two activations, per-tensor requantization."""
    acc = np.matmul(np.asarray(a, np.int64) - int(a_zp), np.asarray(b, np.int64) - int(b_zp))
    return requantize(acc, multiplier, shift, y_zp, act_min, act_max).astype(out_dtype)


# ---------------------------------------------------------------- elementwise
def _bcast_infer(ctx: InferContext):
    from .infer import broadcast_shapes

    return [(_dt(ctx), broadcast_shapes(ctx.shape(0), ctx.shape(1), node=ctx.node_name))]


@register("QAdd", attrs={"a_zp": 0, "b_zp": 0, "y_zp": 0, "a_mult": REQUIRED, "b_mult": REQUIRED,
                         "shift": REQUIRED, "act_min": REQUIRED, "act_max": REQUIRED, "out_dtype": REQUIRED},
          inputs=2, infer=_bcast_infer, flags=("elementwise",))
def qadd(a, b, *, a_zp, b_zp, y_zp, a_mult, b_mult, shift, act_min, act_max, out_dtype):
    """``y = clamp(y_zp + (((a−a_zp)·a_mult + (b−b_zp)·b_mult + 2^(n−1)) >> n))``."""
    s = (np.asarray(a, np.int64) - int(a_zp)) * int(a_mult) + (np.asarray(b, np.int64) - int(b_zp)) * int(b_mult)
    n = int(shift)
    y = np.right_shift(s + ((1 << (n - 1)) if n > 0 else 0), n) + int(y_zp)
    return np.clip(y, act_min, act_max).astype(out_dtype)


@register("QMul", attrs={"a_zp": 0, "b_zp": 0, **_QCOMMON}, inputs=2, infer=_bcast_infer, flags=("elementwise",))
def qmul(a, b, *, a_zp, b_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype):
    """``y = requantize((a − a_zp)(b − b_zp), m, n, y_zp)``."""
    acc = (np.asarray(a, np.int64) - int(a_zp)) * (np.asarray(b, np.int64) - int(b_zp))
    return requantize(acc, multiplier, shift, y_zp, act_min, act_max).astype(out_dtype)


def _qconcat_infer(ctx: InferContext):
    from .registry import get_op

    t = get_op("Concat").infer(InferContext("Concat", ctx.node_name, ctx.inputs, {"axis": ctx.attrs["axis"]}))
    return [(_dt(ctx), t[0][1])]


@register("QConcat", attrs={"axis": REQUIRED, "x_zps": REQUIRED, "multipliers": REQUIRED, "shifts": REQUIRED,
                            "y_zp": 0, "out_dtype": REQUIRED}, inputs=(1, -1), infer=_qconcat_infer)
def qconcat(*xs, axis, x_zps, multipliers, shifts, y_zp, out_dtype):
    """Concatenate after requantizing input i with (x_zps[i], multipliers[i], shifts[i])."""
    info = np.iinfo(np.dtype(out_dtype))
    parts = [requantize(np.asarray(x, np.int64) - int(z), int(m), int(n), y_zp, info.min, info.max)
             for x, z, m, n in zip(xs, x_zps, multipliers, shifts)]
    return np.concatenate(parts, axis=axis).astype(out_dtype)


# ---------------------------------------------------------------- pooling / mean
def _qmean_infer(ctx: InferContext):
    shp = list(ctx.shape(0))
    r = len(shp)
    for a in ctx.attrs["axes"]:
        shp[a % r] = 1
    if not ctx.attrs["keepdims"]:
        shp = [d for i, d in enumerate(shp) if i not in {a % r for a in ctx.attrs["axes"]}]
    return [(_dt(ctx), tuple(shp))]


@register("QMean", attrs={"axes": REQUIRED, "keepdims": 1, "x_zp": 0, **_QCOMMON}, infer=_qmean_infer)
def qmean(x, *, axes, keepdims, x_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype):
    """Mean over ``axes``: ``requantize(Σ (x − x_zp), m, n, y_zp)`` with M = s_x / (s_y·count)."""
    s = np.sum(np.asarray(x, np.int64) - int(x_zp), axis=tuple(axes), keepdims=bool(keepdims))
    return requantize(s, multiplier, shift, y_zp, act_min, act_max).astype(out_dtype)


def _qavgpool_infer(ctx: InferContext):
    from .registry import get_op

    attrs = {k: ctx.attrs[k] for k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")}
    attrs["count_include_pad"] = 1
    t = get_op("AveragePool").infer(InferContext("AveragePool", ctx.node_name, ctx.inputs, attrs))
    return [(_dt(ctx), t[0][1])]


def avgpool_reference_sum(x, *, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides):
    """Window sums of ``x`` (zero padding), exact for integer-valued float64 input."""
    geo = pool_node_geometry(x.shape, kernel_shape=kernel_shape, auto_pad=auto_pad, ceil_mode=ceil_mode,
                             dilations=dilations, pads=pads, strides=strides)
    xp = _pad_spatial(x, geo.pads_begin, [e + x_ for e, x_ in zip(geo.pads_end, geo.extra)], 0)
    return _window_sum(xp, geo)


@register("QAvgPool", attrs={"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": REQUIRED,
                             "pads": None, "strides": None, "x_zp": 0, **_QCOMMON}, infer=_qavgpool_infer)
def qavgpool(x, *, x_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype, **pool):
    """Average pool whose window count is constant (the quantize pass checks it)."""
    sums = avgpool_reference_sum(np.asarray(x, np.float64) - float(x_zp), **pool)
    return requantize(np.rint(sums).astype(np.int64), multiplier, shift, y_zp, act_min, act_max).astype(out_dtype)


def _qprelu_infer(ctx: InferContext):
    return [(_dt(ctx), ctx.shape(0))]


@register("QPRelu", attrs={"x_zp": 0, "y_zp": 0, "pos_mult": REQUIRED, "pos_shift": REQUIRED,
                           "neg_mult": REQUIRED, "neg_shift": REQUIRED, "axis": 1, "out_dtype": REQUIRED},
          infer=_qprelu_infer, flags=("elementwise", "unary"))
def qprelu(x, *, x_zp, y_zp, pos_mult, pos_shift, neg_mult, neg_shift, axis, out_dtype):
    """PRelu/LeakyRelu: ``d = x − x_zp``; ``y = requantize(d, pos)`` for d ≥ 0, else
    ``requantize(d, neg[c])`` with a per-channel (along ``axis``) or scalar multiplier
    ``M_neg = α·s_x/s_y`` (negative when α is)."""
    x = np.asarray(x)
    d = x.astype(np.int64) - int(x_zp)
    nm, ns = np.asarray(neg_mult, np.int64), np.asarray(neg_shift, np.int64)
    if nm.ndim and nm.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = nm.size
        nm, ns = nm.reshape(shape), ns.reshape(shape)
    info = np.iinfo(np.dtype(out_dtype))
    yp = requantize(d, pos_mult, pos_shift, y_zp, info.min, info.max)
    yn = requantize(d, nm, ns, y_zp, info.min, info.max)
    return np.where(d >= 0, yp, yn).astype(out_dtype)


# ---------------------------------------------------------------- LUT / requantize
def _same_shape_out(ctx: InferContext):
    return [(_dt(ctx), ctx.shape(0))]


@register("QLut", attrs={"table": REQUIRED, "out_dtype": REQUIRED}, infer=_same_shape_out,
          flags=("elementwise", "unary"))
def qlut(x, *, table, out_dtype):
    """Table lookup: 8-bit inputs index ``table`` (256) directly; 16-bit inputs interpolate in
    a 513-entry table (entries at x = −32768 + 128·i), rounding half up."""
    x = np.asarray(x)
    t = np.asarray(table, np.int64)
    info = np.iinfo(x.dtype)
    if x.dtype.itemsize == 1:
        return t[x.astype(np.int64) - info.min].astype(out_dtype)
    u = x.astype(np.int64) - info.min
    i = u >> 7
    f = u & 127
    lo = t[i]
    hi = t[np.minimum(i + 1, t.size - 1)]
    return (lo + (((hi - lo) * f + 64) >> 7)).astype(out_dtype)


@register("Requantize", attrs={"x_zp": 0, **_QCOMMON}, infer=_same_shape_out, flags=("elementwise", "unary"))
def requantize_op(x, *, x_zp, y_zp, multiplier, shift, act_min, act_max, out_dtype):
    """``y = requantize(x − x_zp, m, n, y_zp, act_min, act_max)``."""
    return requantize(np.asarray(x, np.int64) - int(x_zp), multiplier, shift, y_zp, act_min,
                      act_max).astype(out_dtype)


