"""Integer ops of the registry against independent references: onnxruntime's
ConvInteger/MatMulInteger for the accumulators, exact rational math for requantization,
and float math (within one step) for elementwise ops and tables."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from npuc.ops.registry import get_op
from npuc.quant.qparams import QType, choose_qparams, dequantize, quantize, quantize_multiplier, requantize

from ..ops.ort_check import make_model, run_ort

rng = np.random.default_rng(0)


def _ort(op, inputs, attrs=None, const=(), opset=13):
    model = make_model(op, inputs, attrs or {}, const_inputs=tuple(const), opset=opset)
    feeds = {k: v for k, v in inputs.items() if k not in const}
    return run_ort(model, feeds)[0]


@pytest.mark.parametrize("group,stride,pads,dil", [(1, 1, 1, 1), (1, 2, 0, 1), (4, 1, 1, 1), (8, 2, 1, 1),
                                                   (1, 1, 2, 2)])
@pytest.mark.parametrize("xt", ["uint8", "int8"])
def test_qconv_accumulator_matches_convinteger(group, stride, pads, dil, xt):
    c, m = 8, 8
    info = np.iinfo(xt)
    x = rng.integers(info.min, info.max + 1, (1, c, 9, 9)).astype(xt)
    w = rng.integers(-127, 128, (m, c // group, 3, 3)).astype(np.int8)
    xz = np.array(rng.integers(info.min, info.max + 1), xt)
    attrs = {"group": group, "strides": [stride] * 2, "pads": [pads] * 4, "dilations": [dil] * 2}
    acc = _ort("ConvInteger", {"x": x, "w": w, "xz": xz}, attrs, const=("w", "xz"), opset=10).astype(np.int64)
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    real = rng.uniform(0.001, 0.05, m)
    mult, shift = quantize_multiplier(real)
    got = get_op("QConv").run([x, w, bias], get_op("QConv").normalize_attrs(
        {**attrs, "x_zp": int(xz), "w_zp": 0, "y_zp": 3, "multiplier": mult.tolist(), "shift": shift.tolist(),
         "act_min": -128, "act_max": 127, "out_dtype": "int8"}))[0]
    want = requantize(acc + bias.reshape(1, m, 1, 1), mult.reshape(1, m, 1, 1), shift.reshape(1, m, 1, 1), 3,
                      -128, 127)
    np.testing.assert_array_equal(got, want)


def test_qconv_prelu_negative_multipliers():
    x = rng.integers(0, 256, (1, 4, 6, 6)).astype(np.uint8)
    w = rng.integers(-127, 128, (4, 4, 1, 1)).astype(np.int8)
    acc = _ort("ConvInteger", {"x": x, "w": w, "xz": np.array(128, np.uint8)}, {}, const=("w", "xz"),
               opset=10).astype(np.int64)
    m, n = quantize_multiplier(np.full(4, 0.01))
    nm, nn = quantize_multiplier(np.full(4, 0.0025))
    nm = nm * np.array([1, -1, 1, 1])
    got = get_op("QConv").run([x, w], get_op("QConv").normalize_attrs(
        {"x_zp": 128, "y_zp": 0, "multiplier": m.tolist(), "shift": n.tolist(), "neg_multiplier": nm.tolist(),
         "neg_shift": nn.tolist(), "act_min": -128, "act_max": 127, "out_dtype": "int8"}))[0]
    sh = (1, 4, 1, 1)
    want = np.where(acc >= 0, requantize(acc, m.reshape(sh), n.reshape(sh), 0, -128, 127),
                    requantize(acc, nm.reshape(sh), nn.reshape(sh), 0, -128, 127))
    np.testing.assert_array_equal(got, want)


def test_qgemm_matches_matmulinteger():
    a = rng.integers(0, 256, (5, 12)).astype(np.uint8)
    b = rng.integers(-127, 128, (12, 7)).astype(np.int8)
    acc = _ort("MatMulInteger", {"a": a, "b": b, "az": np.array(100, np.uint8)}, {}, const=("b", "az"),
               opset=10).astype(np.int64)
    m, n = quantize_multiplier(rng.uniform(0.001, 0.01, 7))
    bias = rng.integers(-100, 100, 7).astype(np.int32)
    got = get_op("QGemm").run([a, b, bias], get_op("QGemm").normalize_attrs(
        {"a_zp": 100, "b_zp": 0, "y_zp": 128, "multiplier": m.tolist(), "shift": n.tolist(), "act_min": 0,
         "act_max": 255, "out_dtype": "uint8"}))[0]
    np.testing.assert_array_equal(got, requantize(acc + bias, m, n, 128, 0, 255))


def _float_check(op, qa, qb, qy, fa, fb, fy, attrs, f):
    got = get_op(op).run([qa, qb], get_op(op).normalize_attrs(attrs))[0]
    want = f(dequantize(qa, fa), dequantize(qb, fb))
    wq = quantize(want, fy)
    assert np.abs(got.astype(int) - wq.astype(int)).max() <= 1


def test_qadd_and_qmul_within_one_step():
    fa = choose_qparams(-2, 3, "uint8", symmetric=False)
    fb = choose_qparams(-1, 1, "uint8", symmetric=False)
    fy = choose_qparams(-3, 4, "uint8", symmetric=False)
    qa = rng.integers(0, 256, (3, 20)).astype(np.uint8)
    qb = rng.integers(0, 256, (20,)).astype(np.uint8)
    sa, sb, sy = float(fa.scale), float(fb.scale), float(fy.scale)
    shift = 28
    attrs = {"a_zp": int(fa.zero_point), "b_zp": int(fb.zero_point), "y_zp": int(fy.zero_point),
             "a_mult": round(sa / sy * 2 ** shift), "b_mult": round(sb / sy * 2 ** shift), "shift": shift,
             "act_min": 0, "act_max": 255, "out_dtype": "uint8"}
    _float_check("QAdd", qa, qb, None, fa, fb, fy, attrs, np.add)
    m, n = quantize_multiplier(sa * sb / sy)
    attrs = {"a_zp": int(fa.zero_point), "b_zp": int(fb.zero_point), "y_zp": int(fy.zero_point),
             "multiplier": int(m), "shift": int(n), "act_min": 0, "act_max": 255, "out_dtype": "uint8"}
    _float_check("QMul", qa, qb, None, fa, fb, fy, attrs, np.multiply)


def test_qlut_int8_and_int16():
    x8 = np.arange(-128, 128).astype(np.int8)
    table = (np.arange(256) // 2 - 64).astype(np.int32)
    got = get_op("QLut").run([x8], {"table": table, "out_dtype": "int8"})[0]
    np.testing.assert_array_equal(got, table[np.arange(256)].astype(np.int8))
    # int16: linear interpolation between knots every 128 codes, round half up
    knots = (np.arange(513) * 3 - 700).astype(np.int64)
    x16 = rng.integers(-32768, 32768, 500).astype(np.int16)
    got = get_op("QLut").run([x16], {"table": knots, "out_dtype": "int16"})[0]
    u = x16.astype(np.int64) + 32768
    exact = knots[u >> 7] + (knots[np.minimum((u >> 7) + 1, 512)] - knots[u >> 7]) * (u & 127) / 128
    assert np.abs(got - exact).max() <= 0.5


def test_qmean_and_requantize():
    fx = choose_qparams(0, 6, "uint8", symmetric=False)
    fy = choose_qparams(0, 3, "uint8", symmetric=False)
    x = rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8)
    m, n = quantize_multiplier(float(fx.scale) / (float(fy.scale) * 25))
    got = get_op("QMean").run([x], get_op("QMean").normalize_attrs(
        {"axes": [2, 3], "x_zp": 0, "y_zp": 0, "multiplier": int(m), "shift": int(n), "act_min": 0, "act_max": 255,
         "out_dtype": "uint8"}))[0]
    want = quantize(dequantize(x, fx).mean(axis=(2, 3), keepdims=True), fy)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_quantize_dequantize_linear_match_onnxruntime():
    x = (rng.standard_normal((2, 3, 4)) * 4).astype(np.float32)
    s = np.array([0.05, 0.1, 0.2], np.float32)
    z = np.array([0, 3, -5], np.int8)
    want = _ort("QuantizeLinear", {"x": x, "s": s, "z": z}, {"axis": 1}, const=("s", "z"))
    got = get_op("QuantizeLinear").run([x, s, z], get_op("QuantizeLinear").normalize_attrs({"axis": 1}))[0]
    np.testing.assert_array_equal(got, want)
    back = _ort("DequantizeLinear", {"q": want, "s": s, "z": z}, {"axis": 1}, const=("s", "z"))
    got = get_op("DequantizeLinear").run([want, s, z], get_op("DequantizeLinear").normalize_attrs({"axis": 1}))[0]
    np.testing.assert_allclose(got, back, rtol=1e-6)
    _ = numpy_helper
