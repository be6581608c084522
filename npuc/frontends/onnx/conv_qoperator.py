"""ONNX converters for pre-quantized models: the QOperator ops and DequantizeLinear.

Every op becomes an npuc integer op (:mod:`npuc.ops.quant`) whose attributes are computed
here from the model's scales and zero points, which stay exactly as the model has them (the
integer values get them as :class:`~npuc.ir.QuantParams`). The requantization math is that
of :mod:`npuc.quant.qdq` (multipliers from ``float32(s_x·s_w/s_y)``, as onnxruntime).

* ``QLinearConv`` → ``QConv``: zero points of x, w (per output channel allowed) and y, the
  int32 bias as is (its scale is ``s_x·s_w`` by definition), ``M[c] = s_x·s_w[c]/s_y``.
* ``QLinearMatMul`` → ``QGemm`` when B is a 2-D constant (per-column scales allowed; a
  higher-rank A is flattened to 2-D around it), else ``QMatMul`` (per-tensor).
* ``ConvInteger`` / ``MatMulInteger`` → ``QConv`` / ``QGemm`` / ``QMatMul`` with int32
  output, no bias and the multiplier ``M = 1`` (``m = 2^30, n = 30``), which is the
  identity: ``(acc·2^30 + 2^29) >> 30 == acc`` for every int32 ``acc``.
* ``DequantizeLinear`` of an integer constant is kept as a node instead of being folded to
  float at import, so that :func:`npuc.quant.qdq.fold_qdq` sees integer weights and their
  scales (constant folding turns it into a float constant later if nothing claims it).

onnxruntime's contrib ops of domain ``com.microsoft`` register under ``com.microsoft.<op>``
(the importer looks them up under that key): ``QLinearAdd``/``QLinearMul`` → ``QAdd``/``QMul``,
``QLinearGlobalAveragePool`` / ``QLinearAveragePool`` → ``QMean`` / ``QAvgPool``,
``QLinearConcat`` → ``QConcat``, ``QGemm`` → ``QGemm`` (float output when it has no y_scale:
an int32 ``QGemm`` then ``DequantizeLinear`` at ``α·s_a·s_b``), ``QLinearSigmoid`` → ``QLut``,
``QLinearLeakyRelu`` → ``QPRelu``.
"""
from __future__ import annotations

import numpy as np

from ...ir import Value
from ...quant.qdq import (QP, identity_multiplier, lut_table, make_qp, multiplier_attrs,
                          qadd_attrs, real_multiplier)
from .context import ConvertContext, converter

MS = "com.microsoft."
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_I32 = np.iinfo(np.int32)


# ---------------------------------------------------------------------------------- helpers
def _qp(ctx: ConvertContext, data: int, scale: int, zp: int | None, *, axis: int | None = None,
        what: str = "") -> QP:
    """Constant quantization parameters of input ``data`` (scale at ``scale``, zero point at ``zp``)."""
    v = ctx.input(data)
    s = ctx.const_value(scale, f"{what} scale")
    z = ctx.const_value(zp, f"{what} zero point") if zp is not None else None
    if s is None:
        raise ctx.error(f"the {what} scale is missing")
    dt = v.dtype if v is not None else (np.asarray(z).dtype if z is not None else np.dtype(np.uint8))
    return make_qp(s, z, dt, axis, v.rank if v is not None else None)


def _out_qp(ctx: ConvertContext, scale: int, zp: int | None, what: str = "y") -> QP:
    s = ctx.const_value(scale, f"{what} scale")
    z = ctx.const_value(zp, f"{what} zero point") if zp is not None and ctx.input(zp) is not None else None
    return make_qp(s, z, np.asarray(z).dtype if z is not None else np.dtype(np.uint8))


def _per_tensor(ctx: ConvertContext, qp: QP, what: str) -> QP:
    if not qp.per_tensor:
        raise ctx.error(f"{what} must be quantized per tensor (one scale and zero point), "
                        f"got {qp.scale.size} scales")
    return qp


def _tag(v: Value, qp: QP) -> Value:
    if v.quant is None and v.dtype.kind in "iu":
        v.quant = qp.ir()
    return v


def _emit_q(ctx: ConvertContext, op: str, inputs, attrs, y: QP | None) -> list[Value]:
    outs = ctx.emit(op, inputs, attrs)
    if y is not None:
        outs[0].quant = y.ir()
    return outs


def _tmp(ctx: ConvertContext, op: str, inputs, attrs, suffix: str) -> Value:
    return ctx.emit(op, inputs, attrs, outputs=[f"{ctx.name or ctx.op_type}_{suffix}"], num_outputs=1)[0]


def _int32_attrs() -> dict:
    m, n = identity_multiplier()
    return {"y_zp": 0, "multiplier": m, "shift": n, "act_min": int(_I32.min), "act_max": int(_I32.max),
            "out_dtype": "int32"}


def _per_channel_list(z: np.ndarray, per_tensor: bool):
    return int(z.reshape(-1)[0]) if per_tensor else np.asarray(z, np.int64).reshape(-1).tolist()


# ---------------------------------------------------------------------------------- DQ
@converter("DequantizeLinear", since=10)
def dequantize_linear(ctx: ConvertContext):
    """Keep DequantizeLinear of integer constants as a node (see the module docstring)."""
    ins = list(ctx.inputs)
    x = ctx.input(0)
    if x is not None and x.is_const and x.dtype.kind in "iu" and all(v is None or v.is_const for v in ins[1:]):
        while ins and ins[-1] is None:
            ins.pop()
        name = ctx.graph.unique_name(ctx.name or "DequantizeLinear")
        node = ctx.graph.make_node("DequantizeLinear", ins, name=name, attrs=dict(ctx.attrs),
                                   outputs=[ctx.output_names[0]])
        qp = None
        try:
            s, z = ins[1].const, (ins[2].const if len(ins) > 2 else None)
            qp = make_qp(s, z, x.dtype, int(ctx.attrs.get("axis", 1)), x.rank)
        except (ValueError, TypeError):
            pass
        if qp is not None and x.quant is None and not ctx.attrs.get("block_size"):
            x.quant = qp.ir()
        return node.outputs
    return ctx.emit("DequantizeLinear", ins, ctx.attrs)


# ---------------------------------------------------------------------------------- QLinearConv
@converter("QLinearConv", since=10)
def qlinear_conv(ctx: ConvertContext):
    x, w = ctx.input(0), ctx.input(3)
    xq = _per_tensor(ctx, _qp(ctx, 0, 1, 2, what="x"), "x")
    m = w.shape[0]
    wq = _qp(ctx, 3, 4, 5, axis=0, what="w")
    if not wq.per_tensor and wq.scale.size != m:
        raise ctx.error(f"w has {wq.scale.size} scales for {m} output channels")
    yq = _out_qp(ctx, 6, 7)
    sw = np.broadcast_to(wq.scale, (m,))
    real = real_multiplier(xq.s, sw, yq.s)
    mult, shift = multiplier_attrs(real, True)
    b = ctx.input(8)
    if b is None:
        b = ctx.const(np.zeros(m, np.int32), "bias")
    attrs = {k: ctx.attrs[k] for k in _CONV_ATTRS if k in ctx.attrs}
    attrs.update(x_zp=xq.z, w_zp=_per_channel_list(wq.zero_point, wq.per_tensor), y_zp=yq.z, multiplier=mult,
                 shift=shift, act_min=yq.qmin, act_max=yq.qmax, out_dtype=str(yq.dtype))
    _tag(x, xq)
    _tag(w, QP(wq.scale, wq.zero_point, wq.dtype, None if wq.per_tensor else 0))
    return _emit_q(ctx, "QConv", [x, w, b], attrs, yq)


@converter("ConvInteger", since=10)
def conv_integer(ctx: ConvertContext):
    x, w = ctx.input(0), ctx.input(1)
    m = w.shape[0]
    xz = ctx.const_value(2, "x zero point")
    wz = ctx.const_value(3, "w zero point")
    xz = 0 if xz is None else np.asarray(xz).reshape(-1)
    if not np.isscalar(xz) and xz.size != 1:
        raise ctx.error("x_zero_point must be a scalar")
    wz = np.zeros(1, np.int64) if wz is None else np.asarray(wz, np.int64).reshape(-1)
    if wz.size not in (1, m):
        raise ctx.error(f"w_zero_point has {wz.size} values for {m} output channels")
    attrs = {k: ctx.attrs[k] for k in _CONV_ATTRS if k in ctx.attrs}
    attrs.update(x_zp=int(np.asarray(xz).reshape(-1)[0]), w_zp=_per_channel_list(wz, wz.size == 1), **_int32_attrs())
    return ctx.emit("QConv", [x, w], attrs)


# ---------------------------------------------------------------------------------- matmul
def _gemm_or_matmul(ctx: ConvertContext, a: Value, b: Value, az: int, bz: np.ndarray, attrs: dict,
                    bias: Value | None = None, final: bool = True, y: QP | None = None) -> Value:
    """A (…, K) @ B (K, N): QGemm when B is a 2-D constant (A flattened to 2-D if needed),
    else QMatMul (per-tensor zero point of B)."""
    per_tensor_b = bz.size == 1
    if b.is_const and b.rank == 2 and a.rank >= 2:
        nout = b.shape[1]
        a2 = a
        out_shape = tuple(a.shape[:-1]) + (nout,)
        if a.rank != 2:
            a2 = _tmp(ctx, "Reshape", [a, ctx.const(np.array([-1, a.shape[-1]], np.int64), "a2d")], {}, "a2d")
            if a.quant is not None:
                a2.quant = a.quant
        if bias is None:
            bias = ctx.const(np.zeros(nout, np.int32), "bias")
        gattrs = {"a_zp": az, "b_zp": _per_channel_list(bz, per_tensor_b), **attrs}
        if a.rank == 2 and final:
            return _emit_q(ctx, "QGemm", [a2, b, bias], gattrs, y)[0]
        yv = _tmp(ctx, "QGemm", [a2, b, bias], gattrs, "qgemm")
        if y is not None:
            yv.quant = y.ir()
        if a.rank != 2:
            shp = ctx.const(np.array(out_shape, np.int64), "yshape")
            if final:
                return _emit_q(ctx, "Reshape", [yv, shp], {}, y)[0]
            yv = _tmp(ctx, "Reshape", [yv, shp], {}, "y")
        return yv
    if not per_tensor_b:
        raise ctx.error("B with per-column zero points must be a 2-D constant")
    if bias is not None:
        raise ctx.error("a bias needs a 2-D constant B")
    mattrs = {"a_zp": az, "b_zp": int(bz.reshape(-1)[0]), **attrs}
    if final:
        return _emit_q(ctx, "QMatMul", [a, b], mattrs, y)[0]
    return _tmp(ctx, "QMatMul", [a, b], mattrs, "qmatmul")


@converter("MatMulInteger", since=10)
def matmul_integer(ctx: ConvertContext):
    a, b = ctx.input(0), ctx.input(1)
    az = ctx.const_value(2, "a zero point")
    bz = ctx.const_value(3, "b zero point")
    az = np.zeros(1, np.int64) if az is None else np.asarray(az, np.int64).reshape(-1)
    if az.size != 1:
        raise ctx.error("a_zero_point must be a scalar (per-row zero points are not supported)")
    bz = np.zeros(1, np.int64) if bz is None else np.asarray(bz, np.int64).reshape(-1)
    return [_gemm_or_matmul(ctx, a, b, int(az[0]), bz, _int32_attrs())]


@converter("QLinearMatMul", since=10)
def qlinear_matmul(ctx: ConvertContext):
    a, b = ctx.input(0), ctx.input(3)
    aq = _per_tensor(ctx, _qp(ctx, 0, 1, 2, what="a"), "a")
    bq = _qp(ctx, 3, 4, 5, axis=-1, what="b")
    yq = _out_qp(ctx, 6, 7)
    nout = b.shape[-1]
    gemm = b.is_const and b.rank == 2 and a.rank >= 2
    if not bq.per_tensor and not (gemm and bq.scale.size == nout):
        raise ctx.error("per-column scales of b need a 2-D constant b")
    if gemm:
        mult, shift = multiplier_attrs(real_multiplier(aq.s, np.broadcast_to(bq.scale, (nout,)), yq.s), True)
    else:
        mult, shift = multiplier_attrs(real_multiplier(aq.s, bq.s, yq.s), False)
    attrs = {"y_zp": yq.z, "multiplier": mult, "shift": shift, "act_min": yq.qmin, "act_max": yq.qmax,
             "out_dtype": str(yq.dtype)}
    _tag(a, aq)
    _tag(b, QP(bq.scale, bq.zero_point, bq.dtype, None if bq.per_tensor else 1))
    return [_gemm_or_matmul(ctx, a, b, aq.z, bq.zero_point.reshape(-1), attrs, y=yq)]


# ---------------------------------------------------------------------------------- com.microsoft
def _binary(ctx: ConvertContext, op: str):
    a, b = ctx.input(0), ctx.input(3)
    aq = _per_tensor(ctx, _qp(ctx, 0, 1, 2, what="A"), "A")
    bq = _per_tensor(ctx, _qp(ctx, 3, 4, 5, what="B"), "B")
    yq = _out_qp(ctx, 6, 7, "C")
    _tag(a, aq)
    _tag(b, bq)
    if op == "QAdd":
        attrs = qadd_attrs(aq, bq, yq)
    else:
        mult, shift = multiplier_attrs(real_multiplier(aq.s, bq.s, yq.s), False)
        attrs = {"a_zp": aq.z, "b_zp": bq.z, "y_zp": yq.z, "multiplier": mult, "shift": shift}
    attrs.update(act_min=yq.qmin, act_max=yq.qmax, out_dtype=str(yq.dtype))
    return _emit_q(ctx, op, [a, b], attrs, yq)


@converter(MS + "QLinearAdd")
def qlinear_add(ctx: ConvertContext):
    return _binary(ctx, "QAdd")


@converter(MS + "QLinearMul")
def qlinear_mul(ctx: ConvertContext):
    return _binary(ctx, "QMul")


def _unary_params(ctx: ConvertContext):
    x = ctx.input(0)
    xq = _per_tensor(ctx, _qp(ctx, 0, 1, 2, what="X"), "X")
    yq = _out_qp(ctx, 3, 4)
    _tag(x, xq)
    return x, xq, yq


def _mean_attrs(xq: QP, yq: QP, count: int) -> dict:
    mult, shift = multiplier_attrs(np.float32(xq.s) / (np.float32(yq.s) * np.float32(count)), False)
    return {"x_zp": xq.z, "y_zp": yq.z, "multiplier": mult, "shift": shift, "act_min": yq.qmin,
            "act_max": yq.qmax, "out_dtype": str(yq.dtype)}


@converter(MS + "QLinearGlobalAveragePool")
def qlinear_global_average_pool(ctx: ConvertContext):
    x, xq, yq = _unary_params(ctx)
    axes = list(range(1, x.rank - 1)) if int(ctx.attrs.get("channels_last", 0)) else list(range(2, x.rank))
    count = int(np.prod([x.shape[a] for a in axes]))
    return _emit_q(ctx, "QMean", [x], {"axes": axes, "keepdims": 1, **_mean_attrs(xq, yq, count)}, yq)


@converter(MS + "QLinearAveragePool")
def qlinear_average_pool(ctx: ConvertContext):
    from ...ops.nn import pool_node_geometry

    x, xq, yq = _unary_params(ctx)
    if int(ctx.attrs.get("channels_last", 0)):
        raise ctx.error("channels_last=1 is not supported")
    pool = {k: ctx.attrs[k] for k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")
            if k in ctx.attrs}
    full = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "pads": None, "strides": None, **pool}
    geo = pool_node_geometry(x.shape, **full)
    if any(geo.extra) or (not int(ctx.attrs.get("count_include_pad", 0)) and any(geo.pads)):
        raise ctx.error("the window count varies (padding without count_include_pad, or ceil_mode): "
                        "not supported in integer form")
    return _emit_q(ctx, "QAvgPool", [x], {**pool, **_mean_attrs(xq, yq, int(np.prod(geo.kernel)))}, yq)


@converter(MS + "QLinearConcat")
def qlinear_concat(ctx: ConvertContext):
    yq = _out_qp(ctx, 0, 1)
    xs, zps, ms, ss = [], [], [], []
    for i in range(2, len(ctx.inputs), 3):
        xq = _per_tensor(ctx, _qp(ctx, i, i + 1, i + 2, what=f"input {(i - 2) // 3}"), "every input")
        x = _tag(ctx.input(i), xq)
        m, s = multiplier_attrs(np.float32(xq.s) / np.float32(yq.s), False)
        xs.append(x)
        zps.append(xq.z)
        ms.append(m)
        ss.append(s)
    return _emit_q(ctx, "QConcat", xs, {"axis": int(ctx.attrs["axis"]), "x_zps": zps, "multipliers": ms,
                                        "shifts": ss, "y_zp": yq.z, "out_dtype": str(yq.dtype)}, yq)


@converter(MS + "QGemm")
def qgemm_ms(ctx: ConvertContext):
    a, b = ctx.input(0), ctx.input(3)
    if int(ctx.attrs.get("transA", 0)):
        raise ctx.error("transA=1 is not supported")
    if not b.is_const or b.rank != 2:
        raise ctx.error("B must be a 2-D constant")
    aq = _per_tensor(ctx, _qp(ctx, 0, 1, 2, what="A"), "A")
    trans_b = bool(int(ctx.attrs.get("transB", 0)))
    bq = _qp(ctx, 3, 4, 5, axis=0 if trans_b else 1, what="B")
    bmat = b.const.T if trans_b else b.const
    nout = bmat.shape[1]
    alpha = np.float32(ctx.attrs.get("alpha", 1.0))
    sb = np.broadcast_to(bq.scale, (nout,))
    bv = ctx.const(np.ascontiguousarray(bmat), "B_kn") if trans_b else b
    _tag(bv, QP(bq.scale, bq.zero_point, bq.dtype, None if bq.per_tensor else 1))
    _tag(a, aq)
    c = ctx.input(6)
    if c is not None:
        if not c.is_const or c.size not in (1, nout) or c.dtype != np.int32:
            raise ctx.error("C must be an int32 constant of N values")
        c = ctx.const(np.broadcast_to(c.const.reshape(-1), (nout,)).astype(np.int32), "C")
    bz = bq.zero_point.reshape(-1)
    has_y = ctx.input(7) is not None
    if has_y:
        yq = _out_qp(ctx, 7, 8)
        real = (real_multiplier(aq.s, sb, yq.s) * alpha).astype(np.float32)
        mult, shift = multiplier_attrs(real, True)
        attrs = {"y_zp": yq.z, "multiplier": mult, "shift": shift, "act_min": yq.qmin, "act_max": yq.qmax,
                 "out_dtype": str(yq.dtype)}
        return [_gemm_or_matmul(ctx, a, bv, aq.z, bz, attrs, bias=c, y=yq)]
    acc = _gemm_or_matmul(ctx, a, bv, aq.z, bz, _int32_attrs(), bias=c, final=False)
    s = (np.float32(aq.s) * sb.astype(np.float32) * alpha).astype(np.float32)
    per_col = not bq.per_tensor
    scale = ctx.const(s if per_col else s[:1].reshape(()), "y_scale")
    zero = ctx.const(np.zeros(nout if per_col else (), np.int32), "y_zero_point")
    return ctx.emit("DequantizeLinear", [acc, scale, zero], {"axis": 1} if per_col else {})


@converter(MS + "QLinearSigmoid")
def qlinear_sigmoid(ctx: ConvertContext):
    x, xq, yq = _unary_params(ctx)
    table = lut_table(lambda v: 1.0 / (1.0 + np.exp(-v.astype(np.float64))), xq, yq)
    return _emit_q(ctx, "QLut", [x], {"table": table, "out_dtype": str(yq.dtype)}, yq)


@converter(MS + "QLinearLeakyRelu")
def qlinear_leaky_relu(ctx: ConvertContext):
    from ...quant.qparams import quantize_multiplier

    x, xq, yq = _unary_params(ctx)
    alpha = float(ctx.attrs.get("alpha", 0.01))
    r = np.float32(xq.s) / np.float32(yq.s)
    pm, ps = multiplier_attrs(r, False)
    nm, ns = quantize_multiplier(abs(alpha) * np.float64(r))
    nm = -int(nm) if alpha < 0 else int(nm)
    return _emit_q(ctx, "QPRelu", [x], {"x_zp": xq.z, "y_zp": yq.z, "pos_mult": pm, "pos_shift": ps,
                                        "neg_mult": nm, "neg_shift": int(ns), "axis": 1,
                                        "out_dtype": str(yq.dtype)}, yq)



@converter(MS + "QLinearSoftmax")
def qlinear_softmax(ctx: ConvertContext):
    """No integer softmax in npuc: DequantizeLinear → Softmax (float) → QuantizeLinear, with
    the node's parameters (onnxruntime's kernel is a float computation too)."""
    x, xq, yq = _unary_params(ctx)
    axis = int(ctx.attrs.get("axis", -1))
    r = x.rank
    ax = axis % r
    if int(ctx.attrs.get("opset", 13)) < 13 and any(d > 1 for d in x.shape[ax + 1:]):
        raise ctx.error("opset < 13 softmax over several flattened axes is not supported")
    f = _tmp(ctx, "DequantizeLinear", [x, ctx.const(xq.scale, "x_scale"), ctx.const(xq.zero_point.astype(xq.dtype),
                                                                                     "x_zero_point")], {}, "dq")
    sm = _tmp(ctx, "Softmax", [f], {"axis": ax}, "softmax")
    return _emit_q(ctx, "QuantizeLinear", [sm, ctx.const(yq.scale, "y_scale"),
                                           ctx.const(yq.zero_point.astype(yq.dtype), "y_zero_point")], {}, yq)
