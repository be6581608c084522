"""Quantization math against numpy and exact rational arithmetic."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from npuc.errors import OptionError
from npuc.quant.qparams import (QType, activation_bounds, choose_qparams, dequantize, quantize, quantize_bias,
                                quantize_multiplier, requantize)

rng = np.random.default_rng(0)


def test_uint8_asymmetric_covers_range_and_zero():
    qp = choose_qparams(-1.0, 3.0, "uint8", symmetric=False)
    s, z = float(qp.scale), int(qp.zero_point)
    assert s == pytest.approx(4.0 / 255) and z == round(1.0 / s)
    assert quantize(np.float32(0.0), qp) == z            # 0.0 exactly representable
    assert dequantize(np.uint8(z), qp) == 0.0
    # a range not containing 0 is widened to contain it
    qp = choose_qparams(0.5, 2.0, "uint8", symmetric=False)
    assert int(qp.zero_point) == 0 and float(qp.scale) == pytest.approx(2.0 / 255)


def test_int8_symmetric_and_narrow():
    qp = choose_qparams(-0.5, 2.0, "int8", symmetric=True)
    assert int(qp.zero_point) == 0 and float(qp.scale) == pytest.approx(2.0 / 127)
    q = quantize(np.array([-10.0, 10.0], np.float32), qp, narrow=True)
    assert q.tolist() == [-127, 127]
    q = quantize(np.array([-10.0], np.float32), qp)
    assert q.tolist() == [-128]


def test_quantize_matches_numpy_formula():
    x = (rng.standard_normal(1000) * 3).astype(np.float32)
    for qt, sym in (("uint8", False), ("int8", True), ("int8", False), ("int16", True)):
        qp = choose_qparams(float(x.min()), float(x.max()), qt, symmetric=sym)
        info = np.iinfo(np.dtype(qt))
        want = np.clip(np.rint(x / np.float32(qp.scale)) + int(qp.zero_point), info.min, info.max)
        np.testing.assert_array_equal(quantize(x, qp), want.astype(qt))
        err = np.abs(dequantize(quantize(x, qp), qp) - x)
        assert err.max() <= float(qp.scale) / 2 + 1e-6


def test_round_half_to_even_in_quantize():
    qp = choose_qparams(-1.0, 1.0, "int8", symmetric=True)
    s = float(qp.scale)
    x = np.array([0.5 * s, 1.5 * s, 2.5 * s, -0.5 * s], np.float32)
    assert quantize(x, qp).tolist() == [0, 2, 2, 0]


def test_per_channel():
    w = rng.standard_normal((4, 3, 3, 3)) * np.array([0.1, 1, 10, 100]).reshape(4, 1, 1, 1)
    red = (1, 2, 3)
    qp = choose_qparams(w.min(axis=red), w.max(axis=red), "int8", symmetric=True, narrow=True, axis=0)
    assert qp.scale.shape == (4,)
    np.testing.assert_allclose(qp.scale, np.abs(w).max(axis=red) / 127, rtol=1e-6)
    q = quantize(w, qp, narrow=True)
    for c in range(4):
        np.testing.assert_array_equal(q[c], np.clip(np.rint(w[c].astype(np.float32) / np.float32(qp.scale[c])),
                                                    -127, 127))
    assert np.abs(dequantize(q, qp) - w).max(axis=red).tolist() <= (qp.scale / 2 + 1e-6).tolist()


@pytest.mark.parametrize("real", [0.5, 0.999999, 1e-3, 0.0123456789, 1.0, 1.5, 37.25, 2.0 ** -20])
def test_quantize_multiplier_precision(real):
    m, n = quantize_multiplier(real)
    m, n = int(m), int(n)
    assert (1 << 30) <= m < (1 << 31)
    assert abs(m / 2 ** n - real) <= real * 2 ** -30


def test_quantize_multiplier_edges():
    m, n = quantize_multiplier([0.0, 1e-15])
    assert m.tolist() == [0, 0]
    with pytest.raises(ValueError):
        quantize_multiplier(-0.5)


def _exact_round_half_up(acc: int, m: int, n: int) -> int:
    v = Fraction(acc * m, 2 ** n)
    fl = v.numerator // v.denominator
    return fl + (1 if v - fl >= Fraction(1, 2) else 0)


def test_requantize_rounding_rule_is_round_half_up():
    for real in (0.3, 0.0071, 1.0, 0.5, 0.25, 2.5):
        m, n = quantize_multiplier(real)
        accs = np.concatenate([rng.integers(-2 ** 24, 2 ** 24, 400), np.arange(-40, 40)])
        got = requantize(accs, m, n, 0, -(2 ** 40), 2 ** 40)
        want = [_exact_round_half_up(int(a), int(m), int(n)) for a in accs]
        assert got.tolist() == want
    # ties go up: 2.5 → 3 and −2.5 → −2 with M = 0.5
    m, n = quantize_multiplier(0.5)
    assert requantize([5, -5, 3, -3], m, n, 0, -100, 100).tolist() == [3, -2, 2, -1]


def test_requantize_clamps_and_adds_zero_point():
    m, n = quantize_multiplier(1.0)
    assert requantize([-300, 0, 300], m, n, 10, 0, 255).tolist() == [0, 10, 255]


def test_bias_and_activation_bounds():
    b = quantize_bias(np.array([0.5, -0.25]), 0.01, np.array([0.1, 0.5]))
    assert b.dtype == np.int32 and b.tolist() == [500, -50]
    qp = choose_qparams(-2.0, 8.0, "uint8", symmetric=False)
    lo, hi = activation_bounds({"op": "Clip", "min": 0.0, "max": 6.0}, qp)
    z, s = int(qp.zero_point), float(qp.scale)
    assert lo == z and abs((hi - z) * s - 6.0) <= s
    assert activation_bounds({"op": "Relu"}, qp) == (z, 255)
    assert activation_bounds(None, qp) == (0, 255)


def test_qtype_parse():
    assert QType.parse("INT8") is QType.INT8
    with pytest.raises(OptionError, match="uint8, int8, int16"):
        QType.parse("int4")


def test_requantize_exact_for_accumulators_beyond_int32():
    # int16 activations × int8 weights over long reductions: acc·m would overflow int64
    accs = np.array([2 ** 34 + 12345, -(2 ** 35) - 7, 2 ** 40 + 1, -(2 ** 44), 3], np.int64)
    for real in (1e-6, 3.3e-9, 0.0123):
        m, n = quantize_multiplier(real)
        got = requantize(accs, m, n, 0, -(2 ** 62), 2 ** 62)
        want = [_exact_round_half_up(int(a), int(m), int(n)) for a in accs]
        assert got.tolist() == want
