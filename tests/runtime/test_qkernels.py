"""The fast integer kernels against the registry's reference kernels, bit for bit.

Each case builds a small IR graph (one integer op, or a whole quantized network), runs the
reference interpreter on it, compiles it with npuc, checks that the expected fast kernel
(not the reference fallback) was chosen, and asserts the Session's output is *exactly* the
interpreter's on random inputs covering the whole code range.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from npuc.api import compile_graph_to_session
from npuc.frontends.onnx import import_onnx
from npuc.ir import Graph
from npuc.quant.qparams import quantize_multiplier
from npuc.quant.quantize import QuantConfig, quantize_graph
from npuc.runtime.interpreter import interpret
from npuc.runtime.kernels.qconv import CL_MAX_PIXELS, QConvDepthwiseVNNI, QConvGemm

RNG = np.random.default_rng(20240611)


def codes(dtype, shape, rng=RNG) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def mults(real) -> tuple[list[int], list[int]]:
    m, n = quantize_multiplier(np.asarray(real, np.float64))
    return np.atleast_1d(m).tolist(), np.atleast_1d(n).tolist()


def check(build, feeds, kernels: dict[str, str] | None = None, *, float_rtol: float = 0.0):
    """Build the graph twice (the compile passes may rewrite it), interpret one, compile the
    other, compare exactly; ``kernels`` maps op type -> the kernel that must run it.
    ``float_rtol``: tolerance for float outputs computed by float ops after the integer part."""
    want = interpret(build(), feeds)
    sess = compile_graph_to_session(build())
    assert sess.fallback_ops == [], sess.fallback_ops
    if kernels:
        chosen = {o.op: o.kernel for o in sess.program.ops}
        for op, k in kernels.items():
            assert chosen.get(op) == k, f"{op}: expected kernel {k}, got {chosen.get(op)}"
    got = sess.run(feeds)
    for name, w in want.items():
        assert got[name].dtype == w.dtype, (name, got[name].dtype, w.dtype)
        if float_rtol and w.dtype.kind == "f":
            np.testing.assert_allclose(got[name], w, rtol=float_rtol, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], w, err_msg=name)
    return sess


def one_node(op, inputs, attrs, consts=None):
    """A builder of a graph with one ``op`` node: ``inputs`` = [(name, dtype, shape) or a
    constant array], output named ``y``."""
    def build():
        g = Graph("q")
        vals = []
        for i, spec in enumerate(inputs):
            if spec is None:
                vals.append(None)
            elif isinstance(spec, np.ndarray):
                vals.append(g.add_const(f"c{i}", spec))
            else:
                vals.append(g.add_input(spec[0], np.dtype(spec[1]), tuple(spec[2])))
        n = g.make_node(op, vals, attrs=dict(attrs), name="node", outputs=["y"])
        g.outputs = [n.outputs[0]]
        return g
    return build


def _qconv_attrs(out_dtype, m_out, *, x_zp, w_zp, scale, lo=None, hi=None, neg=None, **conv):
    info = np.iinfo(out_dtype)
    m, n = mults(scale)
    if len(m) == 1:   # per-tensor: scalars, as the reference expects
        m, n = m[0], n[0]
    a = {"x_zp": x_zp, "w_zp": w_zp, "y_zp": int(RNG.integers(info.min // 2, info.max // 2 + 1)),
         "multiplier": m, "shift": n, "act_min": info.min if lo is None else lo,
         "act_max": info.max if hi is None else hi, "out_dtype": out_dtype, **conv}
    if neg is not None:
        nm, nn = mults(np.abs(neg) * np.asarray(scale))
        a["neg_multiplier"] = (np.asarray(nm) * np.where(np.asarray(neg) < 0, -1, 1)).tolist()
        a["neg_shift"] = nn
    return a


# ---------------------------------------------------------------- QConv
CONV_CASES = [
    # c, m, h, w, k, group, stride, pad, dil
    (8, 16, 9, 11, 3, 1, 1, 1, 1),
    (8, 12, 10, 10, 3, 1, 2, 1, 1),
    (6, 10, 9, 9, 1, 1, 1, 0, 1),       # pointwise: centering copy + GEMM
    (6, 10, 9, 9, 1, 1, 2, 0, 1),       # 1x1 stride 2: im2col
    (8, 8, 12, 12, 3, 4, 1, 1, 1),      # grouped
    (8, 8, 12, 12, 3, 8, 1, 1, 1),      # depthwise
    (8, 8, 13, 12, 3, 8, 2, 1, 1),      # depthwise stride 2, small output: channels-last
    (8, 8, 21, 22, 3, 8, 2, 1, 1),      # depthwise stride 2: de-interleaving window fill
    (6, 6, 8, 8, 3, 6, 1, 1, 1),        # depthwise, 64 output pixels: channels-last
    (6, 6, 12, 12, 5, 6, 1, 2, 2),      # depthwise 5x5 dilated
    (5, 5, 17, 19, 5, 5, 1, 2, 1),      # depthwise 5x5 (two tap quads per row)
    (4, 4, 43, 41, (3, 2), 4, 4, (1, 0, 2, 1), 1),   # depthwise stride 4, asymmetric
    (4, 6, 12, 12, 3, 1, 1, 2, 2),      # dilated
    (3, 5, 11, 13, (2, 3), 1, (2, 1), (1, 0, 0, 2), 1),  # asymmetric everything
]


def _conv_kernel(node, vnni: bool) -> str:
    """The QConv kernel the lowering must choose for ``node`` (``vnni``: the VNNI depthwise
    kernel is enabled)."""
    x, w = node.inputs[0], node.inputs[1]
    c, m, group = x.shape[1], w.shape[0], int(node.attrs.get("group", 1))
    if group != c or c != m:
        return "qconv_gemm"
    a = node.attrs
    wc = w.const.astype(int) - np.asarray(a.get("w_zp", 0)).reshape(-1, 1, 1, 1)
    strides, dil = list(a.get("strides") or [1, 1]), list(a.get("dilations") or [1, 1])
    if int(np.prod(node.outputs[0].shape[2:])) <= CL_MAX_PIXELS:
        return "qconv_depthwise_cl"
    if (vnni and x.dtype.itemsize == 1 and strides[0] == strides[1] and strides[0] in (1, 2, 4) and dil == [1, 1]
            and wc.min() >= -128 and wc.max() <= 127):
        return "qconv_depthwise_vnni"
    return "qconv_depthwise"


@pytest.fixture(params=["quads", "pairs", "blas"])
def strategy(request, monkeypatch):
    """The exact strategies of qconv_gemm: the uint8×int8 quad micro-kernel (VNNI), the int16
    pair micro-kernel, the float BLAS trick."""
    monkeypatch.setattr(QConvGemm, "use_quads", request.param == "quads")
    monkeypatch.setattr(QConvGemm, "use_pairs", request.param != "blas")
    # depthwise: "quads" runs the VNNI kernel (generic code where the host lacks VNNI),
    # "pairs" the float-window / channels-last kernels
    monkeypatch.setattr(QConvDepthwiseVNNI, "enabled", request.param == "quads")
    return request.param


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("xt,wt,per_channel", [("uint8", "int8", True), ("int8", "int8", False),
                                               ("int8", "uint8", True), ("int16", "int8", True)])
def test_qconv(case, xt, wt, per_channel, strategy):
    c, m, h, w, k, group, stride, pad, dil = case
    if strategy == "blas" and group == c == m:
        pytest.skip("depthwise: the BLAS strategy does not apply")
    kh, kw = (k, k) if isinstance(k, int) else k
    strides = [stride] * 2 if isinstance(stride, int) else list(stride)
    pads = [pad] * 4 if isinstance(pad, int) else list(pad)
    wq = codes(wt, (m, c // group, kh, kw))
    winfo = np.iinfo(wt)
    if per_channel:
        w_zp = RNG.integers(winfo.min // 4, winfo.max // 4 + 1, m).tolist() if wt == "uint8" else [0] * m
    else:
        w_zp = int(RNG.integers(winfo.min // 4, winfo.max // 4 + 1))
    xinfo = np.iinfo(xt)
    x_zp = int(RNG.integers(xinfo.min, xinfo.max + 1)) if xt != "int16" else 0
    bias = RNG.integers(-50000, 50000, m).astype(np.int32)
    fan = c // group * kh * kw
    scale = RNG.uniform(0.5, 2.0, m if per_channel else 1) / (fan * 80 * (128 if xt == "int16" else 1))
    attrs = _qconv_attrs("uint8" if xt == "uint8" else xt, m, x_zp=x_zp, w_zp=w_zp, scale=scale,
                         kernel_shape=[kh, kw], group=group, strides=strides, pads=pads, dilations=[dil] * 2)
    x = codes(xt, (2, c, h, w))
    kern = _conv_kernel(one_node("QConv", [("x", xt, x.shape), wq, bias], attrs)().nodes[0], strategy == "quads")
    sess = check(one_node("QConv", [("x", xt, x.shape), wq, bias], attrs), {"x": x}, {"QConv": kern})
    if kern == "qconv_gemm":
        wc = wq.astype(int) - np.asarray(w_zp).reshape(-1, 1, 1, 1)
        fits_quads = xt != "int16" and wc.min() >= -128 and wc.max() <= 127
        want = "pairs" if strategy == "quads" and not fits_quads else strategy
        assert sess.program.ops[0].attrs["qconv_strategy"] == want


@pytest.mark.parametrize("depthwise", [False, True])
def test_qconv_fused_clamp_and_prelu(depthwise, strategy):
    c, m = (8, 8) if depthwise else (6, 10)
    group = c if depthwise else 1
    wq = codes("int8", (m, c // group, 3, 3))
    scale = RNG.uniform(0.5, 2.0, m) / (9 * c // group * 60)
    slope = RNG.uniform(-0.5, 0.5, m)
    kern = "qconv_gemm"
    for extra, size in (({"lo": 20, "hi": 200}, 10), ({"neg": slope}, 10), ({"neg": slope}, 6)):
        x = codes("uint8", (1, c, size, size))
        attrs = _qconv_attrs("uint8", m, x_zp=117, w_zp=[0] * m, scale=scale, group=group, pads=[1] * 4,
                             kernel_shape=[3, 3], **extra)
        build = one_node("QConv", [("x", "uint8", x.shape), wq, None], attrs)
        check(build, {"x": x}, {"QConv": _conv_kernel(build().nodes[0], strategy == "quads")})


def test_qconv_chunked_and_float64_paths(monkeypatch):
    """Large all-±127 weights force several exact float32 chunks, then float64."""
    monkeypatch.setattr(QConvGemm, "use_pairs", False)
    monkeypatch.setattr(QConvGemm, "use_quads", False)
    for c, want_chunks in ((64, 2), (160, None)):
        m = 4
        wq = np.where(RNG.random((m, c, 3, 3)) < 0.5, -127, 127).astype(np.int8)
        x = codes("uint8", (1, c, 6, 6))
        attrs = _qconv_attrs("uint8", m, x_zp=0, w_zp=0, scale=np.full(m, 1 / (c * 9 * 127 * 60.0)),
                             pads=[1] * 4, kernel_shape=[3, 3])
        sess = check(one_node("QConv", [("x", "uint8", x.shape), wq, None], attrs), {"x": x},
                     {"QConv": "qconv_gemm"})
        at = sess.program.ops[0].attrs
        if want_chunks:
            assert at["qconv_precision"] == "float32" and len(at["qconv_chunks"]) - 1 == want_chunks
        else:
            assert at["qconv_precision"] == "float64"


def test_qconv_int32_bound_falls_back_to_blas():
    """int16 activations and large weights: int32 accumulation could overflow -> float64 BLAS."""
    m, c = 3, 64
    wq = np.where(RNG.random((m, c, 3, 3)) < 0.5, -127, 127).astype(np.int8)
    x = codes("int16", (1, c, 5, 5))
    attrs = _qconv_attrs("int16", m, x_zp=0, w_zp=[0] * m, scale=np.full(m, 1 / (c * 9 * 127 * 300.0)),
                         pads=[1] * 4, kernel_shape=[3, 3])
    sess = check(one_node("QConv", [("x", "int16", x.shape), wq, None], attrs), {"x": x}, {"QConv": "qconv_gemm"})
    at = sess.program.ops[0].attrs
    assert at["qconv_strategy"] == "blas" and at["qconv_precision"] == "float64"


def test_qconv_1d(strategy):
    wq = codes("int8", (6, 4, 3))
    x = codes("uint8", (1, 4, 20))
    attrs = _qconv_attrs("uint8", 6, x_zp=9, w_zp=[0] * 6, scale=np.full(6, 1 / 4000.0), pads=[1, 1],
                         kernel_shape=[3], strides=[2])
    check(one_node("QConv", [("x", "uint8", x.shape), wq, None], attrs), {"x": x}, {"QConv": "qconv_gemm"})


# ---------------------------------------------------------------- QGemm / QMatMul
@pytest.mark.parametrize("at,bt,per_col,neg", [("uint8", "int8", True, False), ("int8", "uint8", False, True),
                                               ("int16", "int8", True, False)])
def test_qgemm(at, bt, per_col, neg):
    mrows, k, nout = 3, 70, 11
    a = codes(at, (mrows, k))
    b = codes(bt, (k, nout))
    binfo = np.iinfo(bt)
    b_zp = (RNG.integers(binfo.min // 4, binfo.max // 4 + 1, nout).tolist() if per_col
            else int(RNG.integers(binfo.min // 4, binfo.max // 4 + 1)))
    scale = RNG.uniform(0.5, 2, nout if per_col else 1) / (k * 60 * (128 if at == "int16" else 1))
    m, n = mults(scale)
    if not per_col:
        m, n = m[0], n[0]
    info = np.iinfo(at)
    attrs = {"a_zp": 0 if at == "int16" else int(RNG.integers(info.min, info.max + 1)), "b_zp": b_zp, "y_zp": 5,
             "multiplier": m, "shift": n, "act_min": info.min, "act_max": info.max, "out_dtype": at}
    if neg:
        nm, nn = mults(np.abs(scale) * 0.1)
        nm = [-v for v in nm]
        attrs.update(neg_multiplier=nm if per_col else nm[0], neg_shift=nn if per_col else nn[0])
    bias = RNG.integers(-30000, 30000, nout).astype(np.int32)
    check(one_node("QGemm", [("a", at, a.shape), b, bias], attrs), {"a": a}, {"QGemm": "qgemm"})


@pytest.mark.parametrize("ashape,bshape,dt", [((5, 40), (40, 7), "uint8"), ((2, 5, 300), (2, 300, 6), "uint8"),
                                              ((3, 4, 9), (9, 5), "int8"), ((2, 3, 16), (1, 16, 4), "int16")])
def test_qmatmul(ashape, bshape, dt):
    info = np.iinfo(dt)
    a, b = codes(dt, ashape), codes(dt, bshape)
    k = ashape[-1]
    m, n = mults(1 / (k * 1500.0 * (1 if dt != "int16" else 2 ** 16)))
    zps = (0, 0) if dt == "int16" else (int(RNG.integers(info.min, info.max)), int(RNG.integers(info.min, info.max)))
    attrs = {"a_zp": zps[0], "b_zp": zps[1], "y_zp": 1, "multiplier": m[0], "shift": n[0], "act_min": info.min + 3,
             "act_max": info.max - 3, "out_dtype": dt}
    check(one_node("QMatMul", [("a", dt, ashape), ("b", dt, bshape)], attrs), {"a": a, "b": b},
          {"QMatMul": "qmatmul"})


# ---------------------------------------------------------------- elementwise
BCAST = [((2, 8, 5, 6), (2, 8, 5, 6)), ((2, 8, 5, 6), (1, 8, 1, 1)), ((2, 8, 5, 6), ()), ((2, 8, 5, 6), (6,)),
         ((1, 8, 1, 6), (2, 1, 5, 1)), ((3, 7), (3, 7))]


@pytest.mark.parametrize("ashape,bshape", BCAST)
@pytest.mark.parametrize("dt", ["uint8", "int8", "int16"])
def test_qadd_qmul(ashape, bshape, dt):
    info = np.iinfo(dt)
    a, b = codes(dt, ashape), codes(dt, bshape)
    zps = [int(RNG.integers(info.min, info.max)) for _ in range(3)] if dt != "int16" else [0, 0, 0]
    shift = 20
    add = {"a_zp": zps[0], "b_zp": zps[1], "y_zp": zps[2], "a_mult": int(0.7 * 2 ** shift),
           "b_mult": int(-0.45 * 2 ** shift), "shift": shift, "act_min": info.min + 2, "act_max": info.max - 1,
           "out_dtype": dt}
    m, n = mults(1.0 / (0.3 * (info.max - info.min)))
    mul = {"a_zp": zps[0], "b_zp": zps[1], "y_zp": zps[2], "multiplier": m[0], "shift": n[0],
           "act_min": info.min, "act_max": info.max, "out_dtype": dt}
    const_b = bshape == ()
    for op, attrs in (("QAdd", add), ("QMul", mul)):
        ins = [("a", dt, ashape), b if const_b else ("b", dt, bshape)]
        feeds = {"a": a} if const_b else {"a": a, "b": b}
        check(one_node(op, ins, attrs), feeds, {op: op.lower()})


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_qconcat(axis):
    shapes = [(2, 3, 4, 5), (2, 3, 4, 5), (2, 3, 4, 5)]
    sizes = [3, 1, 2]
    ins, feeds = [], {}
    for i, (s, k) in enumerate(zip(shapes, sizes)):
        s = list(s)
        s[axis] = k
        feeds[f"x{i}"] = codes("uint8", s)
        ins.append((f"x{i}", "uint8", s))
    m0, n0 = mults([0.8, 1.0, 1.3])
    attrs = {"axis": axis, "x_zps": [10, 100, 128], "multipliers": m0, "shifts": n0, "y_zp": 100,
             "out_dtype": "uint8"}
    sess = check(one_node("QConcat", ins, attrs), feeds, {"QConcat": "qconcat"})
    assert m0[1] == 1 << 30 and n0[1] == 30   # the middle input is a plain copy
    assert sess is not None


@pytest.mark.parametrize("shape,axes,keepdims", [((2, 16, 7, 7), [2, 3], 1), ((2, 16, 7, 7), [1], 1),
                                                 ((2, 5, 8), [-1], 0), ((1, 4, 1, 6), [1, 2], 1)])
@pytest.mark.parametrize("dt", ["uint8", "int16"])
def test_qmean(shape, axes, keepdims, dt):
    info = np.iinfo(dt)
    count = int(np.prod([shape[a] for a in axes]))
    m, n = mults(1.3 / count)
    attrs = {"axes": axes, "keepdims": keepdims, "x_zp": 0 if dt == "int16" else 77, "y_zp": 3, "multiplier": m[0],
             "shift": n[0], "act_min": info.min, "act_max": info.max, "out_dtype": dt}
    x = codes(dt, shape)
    check(one_node("QMean", [("x", dt, shape)], attrs), {"x": x}, {"QMean": "qmean"})


@pytest.mark.parametrize("pool", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                  dict(kernel_shape=[2, 2], strides=[2, 2]),
                                  dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)])
@pytest.mark.parametrize("dt", ["uint8", "int8", "int16"])
def test_qavgpool_and_int_maxpool(pool, dt):
    info = np.iinfo(dt)
    k = int(np.prod(pool["kernel_shape"]))
    m, n = mults(1.0 / k)
    x = codes(dt, (2, 5, 11, 12))
    attrs = {**pool, "x_zp": 0 if dt == "int16" else 21, "y_zp": 4, "multiplier": m[0], "shift": n[0],
             "act_min": info.min, "act_max": info.max, "out_dtype": dt}
    check(one_node("QAvgPool", [("x", dt, x.shape)], attrs), {"x": x}, {"QAvgPool": "qavgpool"})
    check(one_node("MaxPool", [("x", dt, x.shape)], pool), {"x": x}, {"MaxPool": "maxpool_int"})


def test_int_global_maxpool_and_resize():
    x = codes("int8", (2, 3, 5, 7))
    check(one_node("GlobalMaxPool", [("x", "int8", x.shape)], {}), {"x": x}, {"GlobalMaxPool": "global_maxpool_int"})
    for scales in (np.array([1, 1, 2, 2], np.float32), np.array([1, 1, 1.5, 0.5], np.float32)):
        check(one_node("Resize", [("x", "int8", x.shape), None, scales], {"mode": "nearest"}), {"x": x},
              {"Resize": "resize_nearest_int"})


@pytest.mark.parametrize("per_channel,axis", [(False, 1), (True, 1), (True, -1)])
@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_qprelu(per_channel, axis, dt):
    info = np.iinfo(dt)
    shape = (2, 6, 4, 6)
    c = shape[axis]
    alpha = RNG.uniform(-0.6, 0.6, c if per_channel else 1)
    pm, pn = mults(0.9)
    nm, nn = mults(np.abs(alpha) * 0.9)
    nm = [v * (-1 if a < 0 else 1) for v, a in zip(nm, alpha)]
    attrs = {"x_zp": int(RNG.integers(info.min, info.max)), "y_zp": 0, "pos_mult": pm[0], "pos_shift": pn[0],
             "neg_mult": nm if per_channel else nm[0], "neg_shift": nn if per_channel else nn[0], "axis": axis,
             "out_dtype": dt}
    x = codes(dt, shape)
    check(one_node("QPRelu", [("x", dt, shape)], attrs), {"x": x}, {"QPRelu": "qprelu"})


@pytest.mark.parametrize("dt", ["uint8", "int8", "int16"])
def test_qlut(dt):
    size = 256 if dt != "int16" else 513
    info = np.iinfo(dt)
    table = RNG.integers(info.min, info.max + 1, size).astype(np.int32)
    x = codes(dt, (3, 4, 50))
    check(one_node("QLut", [("x", dt, x.shape)], {"table": table, "out_dtype": dt}), {"x": x}, {"QLut": "qlut"})


@pytest.mark.parametrize("src,dst", [("uint8", "int8"), ("int16", "uint8"), ("int8", "int16")])
def test_requantize(src, dst):
    info = np.iinfo(dst)
    m, n = mults(0.37 if src != "int16" else 0.004)
    attrs = {"x_zp": 3, "y_zp": -2 if dst != "uint8" else 128, "multiplier": m[0], "shift": n[0],
             "act_min": info.min, "act_max": info.max, "out_dtype": dst}
    x = codes(src, (4, 33))
    check(one_node("Requantize", [("x", src, x.shape)], attrs), {"x": x}, {"Requantize": "requantize"})


@pytest.mark.parametrize("dt", ["uint8", "int8", "int16"])
@pytest.mark.parametrize("axis", [None, 1, 0])
def test_quantize_dequantize_linear(dt, axis):
    shape = (3, 4, 5, 6)
    info = np.iinfo(dt)
    c = 1 if axis is None else shape[axis]
    scale = RNG.uniform(0.01, 0.1, c).astype(np.float32)
    zp = (RNG.integers(info.min // 2, info.max // 2, c) if dt != "int16" else np.zeros(c, int)).astype(dt)
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    attrs = {} if axis is None else {"axis": axis}
    bshape = [1] * 4
    if axis is not None:
        bshape[axis] = c
    x = (RNG.standard_normal(shape) * 8).astype(np.float32)
    # exact ties (round half to even), saturation, infinities
    ties = (RNG.integers(-40, 40, shape) + 0.5).astype(np.float32) * scale.reshape(bshape)
    x = np.where(RNG.random(shape) < 0.3, ties, x).astype(np.float32)
    x.reshape(-1)[:5] = [np.inf, -np.inf, 1e30, -3e9, np.nan]
    check(one_node("QuantizeLinear", [("x", "float32", shape), scale, zp], attrs), {"x": x},
          {"QuantizeLinear": "quantize_linear"})
    q = codes(dt, shape)
    check(one_node("DequantizeLinear", [("q", dt, shape), scale, zp], attrs), {"q": q},
          {"DequantizeLinear": "dequantize_linear"})


# ---------------------------------------------------------------- whole quantized networks
def _ranges(graph, samples):
    names = [o.name for n in graph.nodes for o in n.outputs if o.dtype.kind == "f"]
    names += [v.name for v in graph.inputs]
    lo, hi = {}, {}
    for s in samples:
        vals = interpret(graph, s, keep=names)
        for k in names:
            v = np.asarray(vals[k] if k in vals else s[k])
            lo[k] = min(lo.get(k, np.inf), float(v.min()))
            hi[k] = max(hi.get(k, -np.inf), float(v.max()))
    return {k: (lo[k], hi[k]) for k in names}


def _quantized(model, samples, act_type):
    from npuc.api import _options, optimize

    g = import_onnx("m", model=model)
    optimize(g, _options("cpu", {}, None, {"quant_type": act_type}))
    ranges = _ranges(g, samples)
    return lambda: quantize_graph(g, ranges, QuantConfig(act_type=act_type))


@pytest.fixture(scope="module")
def small_mobilenet():
    from tests.models.zoo import mobilenet_v2, random_inputs

    model = mobilenet_v2(width=0.35, resolution=48, num_classes=10, fold_bn=False)
    d = random_inputs(model, seed=3, n=3)
    samples = [{k: v[i] for k, v in d.items()} for i in range(3)]
    return model, samples


@pytest.mark.parametrize("act_type", ["uint8", "int8"])
def test_quantized_mobilenet_fast_and_exact(small_mobilenet, act_type):
    model, samples = small_mobilenet
    build = _quantized(model, samples[:2], act_type)
    sess = check(build, samples[2])
    kernels = {o.kernel for o in sess.program.ops}
    assert {"qconv_gemm", "qadd", "qmean", "qgemm", "quantize_linear", "dequantize_linear"} <= kernels, kernels
    assert kernels & {"qconv_depthwise_vnni", "qconv_depthwise", "qconv_depthwise_cl"}, kernels
    sess.run(samples[2])
    peak = _peak_bytes(sess._run_steps)
    assert peak < 4096, f"the integer kernels allocated {peak} bytes during one inference"


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def test_quantized_cnn_allocates_nothing():
    from tests.runtime.test_no_alloc import small_cnn

    model = small_cnn()
    x = [{"input": RNG.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    build = _quantized(model, x[:2], "uint8")
    sess = check(build, x[2], float_rtol=1e-6)   # the float Softmax after the last DequantizeLinear
    kernels = {o.kernel for o in sess.program.ops}
    assert {"qconv_gemm", "maxpool_int", "qconcat", "qadd"} <= kernels, kernels
    assert kernels & {"qconv_depthwise_vnni", "qconv_depthwise", "qconv_depthwise_cl"}, kernels
    for _ in range(2):
        sess.run(x[2])
    peak = _peak_bytes(sess._run_steps)
    assert peak < 4096, f"the integer kernels allocated {peak} bytes during one inference"


@pytest.mark.parametrize("vnni", [False, True])
def test_quad_and_pair_microkernels(monkeypatch, vnni):
    """The micro-kernels on their own, including the portable (non-VNNI) code of the quads."""
    import numba

    from npuc.runtime.kernels import qloops

    if vnni and not qloops.host_has_vnni():
        pytest.skip("no AVX-512 VNNI here")
    monkeypatch.setattr(qloops, "host_has_vnni", lambda: vnni)
    mk4, mk2 = qloops._make_mk(4), qloops._make_mk(2)

    @numba.njit
    def call4(w, x, c, k):
        mk4(w, 0, k, x, 0, qloops.NRW, k, c, 0, qloops.NRW)

    @numba.njit
    def call2(w, x, c, k):
        mk2(w, 0, k, x, 0, qloops.NRW, k, c, 0, qloops.NRW)

    k = 5
    w8 = codes("int8", (qloops.MR, 4 * k))
    x8 = codes("uint8", (k, qloops.NRW, 4))
    c = np.zeros((qloops.MR, qloops.NRW), np.int32)
    call4(w8.view(np.int32).copy(), x8.view(np.int32).reshape(k, -1).copy(), c, k)
    want = w8.astype(np.int64) @ x8.transpose(0, 2, 1).reshape(4 * k, -1).astype(np.int64)
    np.testing.assert_array_equal(c, want)
    w16 = codes("int16", (qloops.MR, 2 * k)) // 4
    x16 = codes("int16", (k, qloops.NRW, 2)) // 4
    call2(w16.view(np.int32).copy(), x16.view(np.int32).reshape(k, -1).copy(), c, k)
    want = w16.astype(np.int64) @ x16.transpose(0, 2, 1).reshape(2 * k, -1).astype(np.int64)
    np.testing.assert_array_equal(c, want)
