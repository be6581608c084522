"""Per-op checks of elementwise TFLite ops against the TFLite interpreter: arithmetic with
fused activations and broadcasting, unary math, activations, comparisons, select, casts,
(de)quantization."""
from __future__ import annotations

import numpy as np
import pytest

from .tflite_builder import ACT, ModelBuilder, check_model, one_op, rand, run_npuc

pytest.importorskip("ai_edge_litert.interpreter")


@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL", "DIV"])
@pytest.mark.parametrize("b_shape,act", [((1, 4, 5, 3), "NONE"), ((3,), "RELU"), ((1, 1, 5, 1), "RELU6"),
                                         ((4, 1, 1), "RELU_N1_TO_1")])
def test_arithmetic(op, b_shape, act):
    a_shape = (1, 4, 5, 3)
    data = one_op(op, [("a", a_shape), ("b", b_shape)], None, {"FusedActivationFunction": ACT[act]})
    b = rand(b_shape, 2, 0.5, 2.0) * np.where(rand(b_shape, 9) > 0, 1, -1).astype(np.float32)
    check_model(data, {"a": rand(a_shape, 1, -3, 3), "b": b})


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM", "POW", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD"])
def test_binary(op):
    shape = (2, 3, 4)
    lo = 0.1 if op == "POW" else -3.0
    a = rand(shape, 1, lo, 3)
    b = rand((4,), 2, 0.5, 2) if op in ("POW", "FLOOR_DIV", "FLOOR_MOD") else rand((4,), 2, -3, 3)
    if op in ("FLOOR_DIV", "FLOOR_MOD"):
        b = b * np.array([1, -1, 1, -1], np.float32)
    data = one_op(op, [("a", shape), b], None)
    check_model(data, {"a": a})


def test_binary_constant_first_operand():
    data = one_op("SUB", [rand((3,), 4), ("b", (2, 3))], None, {"FusedActivationFunction": 0})
    check_model(data, {"b": rand((2, 3), 1)})


@pytest.mark.parametrize("op", ["FLOOR_DIV", "FLOOR_MOD"])
def test_integer_floor_div_mod(op):
    a = np.array([[7, -7, 8, -9, 0, 5]], np.int32)
    data = one_op(op, [("a", (1, 6), np.int32), np.array([2, 2, -3, -3, 4, -5], np.int32)], None,
                  out_dtypes=[np.int32])
    check_model(data, {"a": a})


@pytest.mark.parametrize("op,lo,hi", [
    ("ABS", -3, 3), ("NEG", -3, 3), ("EXP", -3, 3), ("LOG", 0.1, 5), ("SQRT", 0, 5), ("RSQRT", 0.1, 5),
    ("SQUARE", -3, 3), ("SIN", -3, 3), ("COS", -3, 3), ("FLOOR", -3, 3), ("CEIL", -3, 3), ("ROUND", -3, 3),
    ("SIGN", -3, 3), ("LOGISTIC", -6, 6), ("TANH", -3, 3), ("RELU", -3, 3), ("RELU6", -3, 9),
    ("RELU_N1_TO_1", -3, 3), ("RELU_0_TO_1", -2, 2), ("HARD_SWISH", -5, 5), ("ELU", -3, 3),
])
def test_unary(op, lo, hi):
    shape = (1, 3, 4, 5)
    x = rand(shape, 1, lo, hi)
    if op == "ROUND":
        x.flat[:4] = [0.5, 1.5, -2.5, 2.5]  # ties go to even
    data = one_op(op, [("x", shape)], None)
    check_model(data, {"x": x})


@pytest.mark.parametrize("alpha", [0.2, 0.01])
def test_leaky_relu(alpha):
    data = one_op("LEAKY_RELU", [("x", (2, 5, 3))], None, {"Alpha": alpha})
    check_model(data, {"x": rand((2, 5, 3), 1, -3, 3)})


@pytest.mark.parametrize("alpha_shape", [(1, 1, 3), (3,), (4, 5, 3)])
def test_prelu(alpha_shape):
    data = one_op("PRELU", [("x", (1, 4, 5, 3)), rand(alpha_shape, 2, 0, 0.5)], None)
    check_model(data, {"x": rand((1, 4, 5, 3), 1, -3, 3)})


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu(approximate):
    data = one_op("GELU", [("x", (2, 8))], None, {"Approximate": approximate})
    check_model(data, {"x": rand((2, 8), 1, -4, 4)})


@pytest.mark.parametrize("op", ["EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"])
def test_comparison(op):
    a = np.round(rand((2, 3, 4), 1, -2, 2))
    b = np.round(rand((3, 4), 2, -2, 2))
    data = one_op(op, [("a", (2, 3, 4)), ("b", (3, 4))], None, out_dtypes=[np.bool_])
    check_model(data, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["LOGICAL_AND", "LOGICAL_OR"])
def test_logical(op):
    a, b = rand((3, 4), 1) > 0, rand((3, 4), 2) > 0
    data = one_op(op, [("a", (3, 4), np.bool_), ("b", (3, 4), np.bool_)], None, out_dtypes=[np.bool_])
    check_model(data, {"a": a, "b": b})


def test_logical_not():
    data = one_op("LOGICAL_NOT", [("a", (3, 4), np.bool_)], None, out_dtypes=[np.bool_])
    check_model(data, {"a": rand((3, 4), 1) > 0})


@pytest.mark.parametrize("op,c_shape", [("SELECT_V2", (1, 4)), ("SELECT_V2", (3, 4)), ("SELECT", (3, 4)),
                                        ("SELECT", (3,))])
def test_select(op, c_shape):
    data = one_op(op, [("c", c_shape, np.bool_), ("a", (3, 4)), ("b", (3, 4))], None)
    check_model(data, {"c": rand(c_shape, 1) > 0, "a": rand((3, 4), 2), "b": rand((3, 4), 3)})


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float32), (np.float32, np.bool_),
                                     (np.bool_, np.float32), (np.int32, np.int64), (np.float32, np.uint8)])
def test_cast(src, dst):
    if src == np.bool_:
        x = rand((2, 5), 1) > 0
    elif np.dtype(src).kind == "f":
        x = rand((2, 5), 1, 0 if dst == np.uint8 else -9, 9)
        x[0, :3] = [0.0, 2.5, 7.9]
    else:
        x = np.arange(-5, 5, dtype=src).reshape(2, 5)
    data = one_op("CAST", [("x", (2, 5), src)], None, out_dtypes=[dst])
    check_model(data, {"x": x})


def test_add_n():
    data = one_op("ADD_N", [("a", (2, 3)), ("b", (2, 3)), rand((2, 3), 3)], None)
    check_model(data, {"a": rand((2, 3), 1), "b": rand((2, 3), 2)})


# ---------------------------------------------------------------- (de)quantization
def test_dequantize_fp16_weights_fold_to_float32():
    """fp16 weights behind DEQUANTIZE (as in blazeface) become float32 constants."""
    from npuc.frontends.tflite import import_tflite

    b = ModelBuilder()
    x = b.input("x", (1, 6, 6, 3))
    w16 = b.const("w16", rand((4, 3, 3, 3), 1).astype(np.float16))
    b16 = b.const("b16", rand(4, 2).astype(np.float16))
    w, bias, y = b.tensor("w", (4, 3, 3, 3)), b.tensor("b", (4,)), b.tensor("y", (1, 6, 6, 4))
    b.op("DEQUANTIZE", [w16], [w])
    b.op("DEQUANTIZE", [b16], [bias])
    b.op("CONV_2D", [x, w, bias], [y], {"Padding": 0, "StrideH": 1, "StrideW": 1})
    data = b.build([x], [y])
    g = import_tflite("fp16.tflite", data=data)
    assert g.op_counts() == {"Conv": 1, "Transpose": 2}
    conv = next(n for n in g.nodes if n.op == "Conv")
    assert conv.inputs[1].is_const and conv.inputs[1].dtype == np.float32
    check_model(data, {"x": rand((1, 6, 6, 3), 3)})


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantize_int8_weights(per_channel):
    """Weight-only int8 (DEQUANTIZE of a constant) folds to real = scale·(q − zp)."""
    from npuc.frontends.tflite import import_tflite

    q = np.random.default_rng(0).integers(-127, 128, size=(4, 8)).astype(np.int8)
    scale = np.array([0.02, 0.05, 0.01, 0.03], np.float32) if per_channel else np.float32(0.02)
    zp = np.zeros(4, np.int64) if per_channel else np.int64(0)
    b = ModelBuilder()
    x = b.input("x", (2, 8))
    wq = b.const("wq", q, quant=(scale, zp, 0))
    w, y = b.tensor("w", (4, 8)), b.tensor("y", (2, 4))
    b.op("DEQUANTIZE", [wq], [w])
    b.op("FULLY_CONNECTED", [x, w, -1], [y], {"KeepNumDims": False})
    data = b.build([x], [y])
    g = import_tflite("int8w.tflite", data=data)
    assert g.op_counts() == {"Gemm": 1}
    check_model(data, {"x": rand((2, 8), 1)})


@pytest.mark.parametrize("dtype,scale,zp", [(np.int8, 0.05, -3), (np.uint8, 0.02, 128), (np.int8, 0.1, 0)])
def test_quantize_dequantize_activations(dtype, scale, zp):
    """QUANTIZE float → int (rounding ties to even, clamping) and back."""
    b = ModelBuilder()
    x = b.input("x", (2, 16))
    q = b.tensor("q", (2, 16), dtype, quant=(np.float32(scale), np.int64(zp)))
    y = b.tensor("y", (2, 16))
    b.op("QUANTIZE", [x], [q])
    b.op("DEQUANTIZE", [q], [y])
    data = b.build([x], [q, y])
    xv = rand((2, 16), 1, -4, 4)
    xv[0, :6] = [scale * 2.5, -scale * 2.5, scale * 3.5, -scale * 3.5, scale * 1000, -scale * 1000]  # ties, saturation
    got, _ = check_model(data, {"x": xv})
    assert got["q"].dtype == dtype


def test_hybrid_int8_weights_are_dequantized():
    """An int8 filter read directly by a float CONV_2D (hybrid model) is dequantized at
    import; npuc then computes in float (TFLite quantizes activations on the fly)."""
    from npuc.frontends.tflite import import_tflite

    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    scale = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    b = ModelBuilder()
    x = b.input("x", (1, 5, 5, 3))
    w = b.const("w", q, quant=(scale, np.zeros(4, np.int64), 0))
    y = b.tensor("y", (1, 5, 5, 4))
    b.op("CONV_2D", [x, w, b.const("bias", rand(4, 2))], [y], {"Padding": 0, "StrideH": 1, "StrideW": 1})
    data = b.build([x], [y])
    g = import_tflite("hybrid.tflite", data=data)
    conv = next(n for n in g.nodes if n.op == "Conv")
    assert conv.inputs[1].dtype == np.float32
    xv = rand((1, 5, 5, 3), 3)
    wf = (q.astype(np.float32) * scale[:, None, None, None])
    want = _conv_same_nhwc(xv, wf) + rand(4, 2)
    np.testing.assert_allclose(run_npuc(data, {"x": xv})["y"], want, rtol=1e-4, atol=1e-4)


def _conv_same_nhwc(x, w):
    n, h, wd, c = x.shape
    o, kh, kw, _ = w.shape
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((n, h, wd, o), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += xp[:, i:i + h, j:j + wd, :] @ w[:, i, j, :].T
    return out.astype(np.float32)
