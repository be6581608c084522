"""Per-op checks of the layout-sensitive TFLite ops against the TFLite interpreter:
convolutions, pools, resizes, matmuls, softmax and normalization, depth/space moves."""
from __future__ import annotations

import numpy as np
import pytest

from .tflite_builder import ACT, SAME, VALID, ModelBuilder, check_model, one_op, rand, run_npuc, run_tflite

pytest.importorskip("ai_edge_litert.interpreter")


# ---------------------------------------------------------------- CONV_2D
@pytest.mark.parametrize("x_shape,w_shape,stride,dil,pad,act,bias", [
    ((1, 9, 9, 3), (4, 3, 3, 3), (1, 1), (1, 1), SAME, "RELU", True),
    ((1, 9, 9, 3), (4, 3, 3, 3), (2, 2), (1, 1), SAME, "NONE", True),
    ((1, 10, 8, 3), (5, 3, 3, 3), (2, 2), (1, 1), VALID, "RELU6", True),
    ((1, 9, 11, 2), (3, 3, 3, 2), (1, 1), (2, 2), SAME, "NONE", True),
    ((2, 6, 6, 4), (8, 1, 1, 4), (1, 1), (1, 1), VALID, "NONE", True),
    ((1, 8, 9, 3), (4, 3, 2, 3), (1, 2), (1, 1), SAME, "TANH", True),
    ((1, 7, 7, 3), (2, 4, 4, 3), (3, 3), (1, 1), SAME, "RELU_N1_TO_1", True),
    ((1, 8, 8, 6), (4, 3, 3, 3), (1, 1), (1, 1), SAME, "NONE", True),   # 2 groups
])
def test_conv_2d(x_shape, w_shape, stride, dil, pad, act, bias):
    ins = [("x", x_shape), rand(w_shape, 1), rand(w_shape[0], 2) if bias else None]
    data = one_op("CONV_2D", ins, None, {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1],
                                         "DilationHFactor": dil[0], "DilationWFactor": dil[1],
                                         "FusedActivationFunction": ACT[act]})
    check_model(data, {"x": rand(x_shape, 3)})


# ---------------------------------------------------------------- DEPTHWISE_CONV_2D
@pytest.mark.parametrize("x_shape,k,mult,stride,dil,pad,act", [
    ((1, 9, 9, 4), (3, 3), 1, (1, 1), (1, 1), SAME, "RELU"),
    ((1, 9, 9, 4), (3, 3), 2, (2, 2), (1, 1), SAME, "NONE"),
    ((1, 10, 7, 3), (5, 3), 1, (2, 1), (1, 1), VALID, "RELU6"),
    ((1, 11, 11, 2), (3, 3), 3, (1, 1), (2, 2), SAME, "NONE"),
])
def test_depthwise_conv_2d(x_shape, k, mult, stride, dil, pad, act):
    c = x_shape[3]
    ins = [("x", x_shape), rand((1, k[0], k[1], c * mult), 1), rand(c * mult, 2)]
    data = one_op("DEPTHWISE_CONV_2D", ins, None, {
        "Padding": pad, "StrideH": stride[0], "StrideW": stride[1], "DepthMultiplier": mult,
        "DilationHFactor": dil[0], "DilationWFactor": dil[1], "FusedActivationFunction": ACT[act]})
    check_model(data, {"x": rand(x_shape, 3)})


# ---------------------------------------------------------------- TRANSPOSE_CONV
@pytest.mark.parametrize("x_shape,w_shape,stride,pad,out_hw,bias,act", [
    ((1, 5, 5, 3), (4, 3, 3, 3), (2, 2), SAME, (10, 10), True, "NONE"),
    ((1, 5, 5, 3), (4, 3, 3, 3), (2, 2), SAME, (9, 9), False, "NONE"),
    ((1, 5, 6, 3), (2, 3, 3, 3), (2, 2), VALID, (11, 13), True, "RELU"),
    ((1, 4, 4, 2), (3, 4, 4, 2), (2, 2), SAME, (8, 8), True, "NONE"),
    ((1, 6, 6, 2), (3, 3, 3, 2), (1, 1), SAME, (6, 6), True, "NONE"),
])
def test_transpose_conv(x_shape, w_shape, stride, pad, out_hw, bias, act):
    out_shape = np.array([x_shape[0], *out_hw, w_shape[0]], np.int32)
    ins = [out_shape, rand(w_shape, 1), ("x", x_shape), rand(w_shape[0], 2) if bias else None]
    opts = {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1]}
    if act != "NONE":
        opts["FusedActivationFunction"] = ACT[act]
    data = one_op("TRANSPOSE_CONV", ins, list(out_shape), opts)
    check_model(data, {"x": rand(x_shape, 3)})


def _mediapipe_tconv_reference(x, w, b, stride, same):
    """MediaPipe's Convolution2DTransposeBias reference loop (numpy)."""
    n, h, wd, _ = x.shape
    o, kh, kw, _ = w.shape
    ph = max(0, kh - (h - 1) % stride - 1) if same else 0
    pw = max(0, kw - (wd - 1) % stride - 1) if same else 0
    oh, ow = stride * (h - 1) + kh - ph, stride * (wd - 1) + kw - pw
    out = np.broadcast_to(b, (n, oh, ow, o)).astype(np.float64).copy()
    for iy in range(h):
        for ix in range(wd):
            for fy in range(kh):
                for fx in range(kw):
                    y, xx = iy * stride - ph // 2 + fy, ix * stride - pw // 2 + fx
                    if 0 <= y < oh and 0 <= xx < ow:
                        out[:, y, xx, :] += x[:, iy, ix, :] @ w[:, fy, fx, :].T
    return out.astype(np.float32)


@pytest.mark.parametrize("k,stride,same,hw", [(4, 2, True, (6, 5)), (3, 2, True, (5, 5)), (2, 2, False, (4, 3)),
                                              (3, 1, True, (4, 4))])
def test_mediapipe_convolution2d_transpose_bias(k, stride, same, hw):
    """The custom op against MediaPipe's loop and, where the interpreter has it, TRANSPOSE_CONV."""
    x_shape = (1, *hw, 3)
    w, b = rand((4, k, k, 3), 1), rand(4, 2)
    opts = np.array([1 if same else 2, stride, stride], "<i4").tobytes()
    data = one_op("CUSTOM", [("x", x_shape), w, b], None, custom_code="Convolution2DTransposeBias",
                  custom_options=opts)
    x = rand(x_shape, 3)
    want = _mediapipe_tconv_reference(x, w, b, stride, same)
    got = run_npuc(data, {"x": x})["out"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the same computation as a builtin TRANSPOSE_CONV, run by the interpreter
    out_shape = np.array(want.shape, np.int32)
    builtin = one_op("TRANSPOSE_CONV", [out_shape, w, ("x", x_shape), b], list(out_shape),
                     {"Padding": SAME if same else VALID, "StrideH": stride, "StrideW": stride})
    np.testing.assert_allclose(got, run_tflite(builtin, {"x": x})["out"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- FULLY_CONNECTED / BATCH_MATMUL
@pytest.mark.parametrize("x_shape,units,keep,bias,act", [
    ((2, 8), 5, False, True, "NONE"),
    ((2, 3, 8), 5, True, True, "RELU"),
    ((1, 2, 2, 4), 6, False, False, "NONE"),
    ((3, 8), 4, False, True, "RELU6"),
])
def test_fully_connected(x_shape, units, keep, bias, act):
    k = x_shape[-1]
    ins = [("x", x_shape), rand((units, k), 1), rand(units, 2) if bias else None]
    data = one_op("FULLY_CONNECTED", ins, None, {"KeepNumDims": keep, "FusedActivationFunction": ACT[act]})
    check_model(data, {"x": rand(x_shape, 3, hi=2)})


@pytest.mark.parametrize("a_shape,b_shape,adj_x,adj_y", [
    ((2, 3, 4), (2, 4, 5), False, False),
    ((2, 4, 3), (2, 4, 5), True, False),
    ((1, 3, 4), (2, 5, 4), False, True),
    ((3, 4), (4, 2), False, False),
])
def test_batch_matmul(a_shape, b_shape, adj_x, adj_y):
    data = one_op("BATCH_MATMUL", [("a", a_shape), ("b", b_shape)], None, {"AdjX": adj_x, "AdjY": adj_y})
    check_model(data, {"a": rand(a_shape, 1), "b": rand(b_shape, 2)})


def test_batch_matmul_constant_rhs():
    data = one_op("BATCH_MATMUL", [("a", (2, 3, 4)), rand((4, 6), 5)], None, {"AdjX": False, "AdjY": False})
    check_model(data, {"a": rand((2, 3, 4), 1)})


# ---------------------------------------------------------------- pools
@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"])
@pytest.mark.parametrize("k,stride,pad,act", [((2, 2), (2, 2), VALID, "NONE"), ((3, 3), (2, 2), SAME, "RELU"),
                                              ((3, 2), (1, 2), SAME, "NONE"), ((3, 3), (1, 1), VALID, "RELU6")])
def test_pool_2d(op, k, stride, pad, act):
    x_shape = (1, 9, 8, 3)
    data = one_op(op, [("x", x_shape)], None, {"Padding": pad, "StrideH": stride[0], "StrideW": stride[1],
                                               "FilterHeight": k[0], "FilterWidth": k[1],
                                               "FusedActivationFunction": ACT[act]})
    lo = 0.0 if op == "L2_POOL_2D" else -1.0
    check_model(data, {"x": rand(x_shape, 3, lo=lo, hi=7)})


# ---------------------------------------------------------------- resizes
@pytest.mark.parametrize("op", ["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"])
@pytest.mark.parametrize("align,half", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("size", [(10, 14), (3, 5), (7, 9)])
def test_resize(op, align, half, size):
    x_shape = (1, 5, 7, 2)
    data = one_op(op, [("x", x_shape), np.array(size, np.int32)], None,
                  {"AlignCorners": align, "HalfPixelCenters": half})
    check_model(data, {"x": rand(x_shape, 3)})


def test_resize_nearest_align_and_half_pixel_uses_gather():
    x_shape = (1, 5, 7, 2)
    data = one_op("RESIZE_NEAREST_NEIGHBOR", [("x", x_shape), np.array((9, 4), np.int32)], None,
                  {"AlignCorners": True, "HalfPixelCenters": True})
    check_model(data, {"x": rand(x_shape, 3)})


# ---------------------------------------------------------------- softmax and normalization
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_softmax(beta):
    data = one_op("SOFTMAX", [("x", (2, 3, 10))], None, {"Beta": beta})
    check_model(data, {"x": rand((2, 3, 10), 1, -4, 4)})


def test_log_softmax():
    data = one_op("LOG_SOFTMAX", [("x", (3, 10))], None)
    check_model(data, {"x": rand((3, 10), 1, -4, 4)})


def test_l2_normalization():
    data = one_op("L2_NORMALIZATION", [("x", (1, 4, 4, 6))], None, {})
    x = rand((1, 4, 4, 6), 1)
    x[0, 0, 0] = 0.0  # an all-zero vector hits the epsilon
    check_model(data, {"x": x})


def test_local_response_normalization():
    data = one_op("LOCAL_RESPONSE_NORMALIZATION", [("x", (1, 3, 3, 9))], None,
                  {"Radius": 2, "Bias": 1.5, "Alpha": 0.3, "Beta": 0.75})
    check_model(data, {"x": rand((1, 3, 3, 9), 1)})


# ---------------------------------------------------------------- depth / space / batch
def test_depth_to_space():
    data = one_op("DEPTH_TO_SPACE", [("x", (1, 3, 4, 12))], None, {"BlockSize": 2})
    check_model(data, {"x": rand((1, 3, 4, 12), 1)}, exact=True)


def test_space_to_depth():
    data = one_op("SPACE_TO_DEPTH", [("x", (1, 4, 6, 3))], None, {"BlockSize": 2})
    check_model(data, {"x": rand((1, 4, 6, 3), 1)}, exact=True)


def test_space_to_batch_and_back():
    b = ModelBuilder()
    x = b.input("x", (1, 5, 6, 2))
    block = b.const("block", np.array([2, 2], np.int32))
    mid = b.tensor("mid", (4, 4, 3, 2))
    y = b.tensor("y", (1, 5, 6, 2))
    b.op("SPACE_TO_BATCH_ND", [x, block, b.const("pads", np.array([[1, 2], [0, 0]], np.int32))], [mid])
    b.op("BATCH_TO_SPACE_ND", [mid, block, b.const("crops", np.array([[1, 2], [0, 0]], np.int32))], [y])
    data = b.build([x], [mid, y])
    check_model(data, {"x": rand((1, 5, 6, 2), 1)}, exact=True)


# ---------------------------------------------------------------- layout: transposes cancel
def test_conv_chain_keeps_only_boundary_transposes():
    """Conv → pool → depthwise → add: after the cpu pipeline only the transposes at the
    NHWC input and output remain."""
    from npuc.api import compile_graph_to_session
    from npuc.frontends.tflite import import_tflite

    b = ModelBuilder()
    x = b.input("x", (1, 8, 8, 3))
    c1, p1, d1, s1 = (b.tensor(n, s) for n, s in (("c1", (1, 8, 8, 8)), ("p1", (1, 4, 4, 8)),
                                                 ("d1", (1, 4, 4, 8)), ("s1", (1, 4, 4, 8))))
    b.op("CONV_2D", [x, b.const("w1", rand((8, 3, 3, 3), 1)), b.const("b1", rand(8, 2))], [c1],
         {"Padding": SAME, "StrideH": 1, "StrideW": 1, "FusedActivationFunction": ACT["RELU"]})
    b.op("MAX_POOL_2D", [c1], [p1], {"Padding": VALID, "StrideH": 2, "StrideW": 2, "FilterHeight": 2,
                                     "FilterWidth": 2})
    b.op("DEPTHWISE_CONV_2D", [p1, b.const("w2", rand((1, 3, 3, 8), 3)), b.const("b2", rand(8, 4))], [d1],
         {"Padding": SAME, "StrideH": 1, "StrideW": 1, "DepthMultiplier": 1})
    b.op("ADD", [d1, p1], [s1], {"FusedActivationFunction": ACT["RELU6"]})
    data = b.build([x], [s1])
    graph = import_tflite("chain.tflite", data=data)
    sess = compile_graph_to_session(graph)
    assert graph.op_counts().get("Transpose", 0) == 2, graph.op_counts()
    feeds = {"x": rand((1, 8, 8, 3), 5)}
    np.testing.assert_allclose(sess.run(feeds)["s1"], run_tflite(data, feeds)["s1"], rtol=1e-5, atol=1e-5)
