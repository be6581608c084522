"""nn ops (Conv, ConvTranspose, pools, normalizations, Gemm/MatMul, softmax family)
against onnxruntime, plus shape inference / geometry helpers and import errors."""
import numpy as np
import pytest

from npuc.errors import ModelImportError, NpucError
from npuc.frontends.onnx import import_onnx
from npuc.ops.registry import get_op
from npuc.ops.spatial import conv_output_shape, conv_transpose_output_shape, resolve_pads, window_geometry

from .ort_check import check_op, make_model

rng = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- Conv
CONV_CASES = {
    # name: (x shape, w shape, attrs)
    "basic": ((1, 3, 7, 7), (4, 3, 3, 3), {}),
    "pads": ((2, 3, 6, 5), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    "asym_pads": ((1, 2, 6, 7), (3, 2, 3, 2), {"pads": [0, 1, 2, 0]}),
    "strides": ((1, 3, 9, 8), (4, 3, 3, 3), {"strides": [2, 3], "pads": [1, 0, 1, 1]}),
    "dilation": ((1, 2, 9, 9), (3, 2, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 2, 1]}),
    "groups": ((1, 6, 6, 6), (4, 3, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    "depthwise": ((2, 4, 7, 6), (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "depthwise_mult": ((1, 3, 6, 6), (6, 1, 3, 3), {"group": 3}),
    "1x1": ((1, 8, 5, 5), (5, 8, 1, 1), {}),
    "same_upper": ((1, 3, 7, 8), (4, 3, 3, 4), {"auto_pad": "SAME_UPPER", "strides": [2, 3]}),
    "same_lower": ((1, 3, 7, 8), (4, 3, 3, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    "same_upper_s1": ((1, 2, 6, 6), (2, 2, 4, 2), {"auto_pad": "SAME_UPPER"}),
    "same_lower_s1": ((1, 2, 6, 6), (2, 2, 4, 2), {"auto_pad": "SAME_LOWER"}),
    "valid": ((1, 3, 8, 7), (2, 3, 3, 2), {"auto_pad": "VALID", "strides": [2, 2]}),
    "notset_kernel_shape": ((1, 3, 6, 6), (2, 3, 2, 2), {"auto_pad": "NOTSET", "kernel_shape": [2, 2]}),
    "conv1d": ((2, 3, 11), (4, 3, 3), {"pads": [2, 1], "strides": [2], "dilations": [2]}),
    "conv1d_same": ((1, 4, 10), (4, 2, 5), {"auto_pad": "SAME_UPPER", "group": 2}),
    "conv3d": ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 1]}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv(case, bias):
    xs, ws, attrs = CONV_CASES[case]
    inputs = {"x": f32(*xs), "w": f32(*ws)}
    if bias:
        inputs["b"] = f32(ws[0])
    check_op("Conv", inputs, attrs, const_inputs=("w", "b"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 11])
def test_conv_weights_as_graph_inputs(opset):
    inputs = {"x": f32(1, 4, 6, 6), "w": f32(6, 2, 3, 3), "b": f32(6)}
    check_op("Conv", inputs, {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 0]}, opset=opset,
             rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- ConvTranspose
CONVT_CASES = {
    "basic": ((1, 3, 4, 4), (3, 2, 3, 3), {}),
    "strides": ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2]}),
    "pads": ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2]}),
    "output_padding": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 3], "output_padding": [1, 2],
                                                     "pads": [1, 1, 1, 1]}),
    "dilations": ((1, 2, 4, 3), (2, 2, 2, 3), {"dilations": [2, 2], "strides": [1, 2]}),
    "groups": ((1, 4, 3, 3), (4, 3, 3, 3), {"group": 2, "strides": [2, 2]}),
    "depthwise": ((2, 3, 4, 4), (3, 1, 4, 4), {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "output_shape": ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [6, 7]}),
    "output_shape_bigger": ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 10]}),
    "output_shape_over_pads": ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [6, 7],
                                                            "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    "same_upper_output_padding": ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER",
                                                               "output_padding": [1, 1]}),
    "same_lower_dilated": ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [3, 3], "dilations": [2, 1],
                                                        "auto_pad": "SAME_LOWER"}),
    "same_upper": ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "same_lower": ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    "valid": ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
    "convt1d": ((2, 3, 5), (3, 2, 4), {"strides": [3], "pads": [1, 2]}),
    "convt3d": ((1, 2, 2, 3, 2), (2, 2, 2, 2, 3), {"strides": [2, 1, 2]}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", sorted(CONVT_CASES))
def test_conv_transpose(case, bias):
    xs, ws, attrs = CONVT_CASES[case]
    g = attrs.get("group", 1)
    inputs = {"x": f32(*xs), "w": f32(*ws)}
    if bias:
        inputs["b"] = f32(ws[1] * g)
    check_op("ConvTranspose", inputs, attrs, const_inputs=("w", "b"), rtol=1e-4, atol=1e-5)


def test_conv_transpose_weights_as_graph_inputs():
    inputs = {"x": f32(1, 2, 3, 3), "w": f32(2, 4, 3, 3), "b": f32(4)}
    check_op("ConvTranspose", inputs, {"strides": [2, 2], "pads": [1, 1, 0, 0]}, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- pools
POOL_CASES = {
    "basic": ((1, 3, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "overlap": ((2, 2, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 1]}),
    "pads": ((1, 2, 6, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "asym_pads": ((1, 2, 6, 7), {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0]}),
    "ceil": ((1, 2, 7, 8), {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
    "ceil_pads": ((1, 2, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    "ceil_last_window_dropped": ((1, 1, 4, 4), {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1],
                                                "ceil_mode": 1}),
    "same_upper": ((1, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "SAME_UPPER"}),
    "same_lower": ((1, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    "valid": ((1, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "auto_pad": "VALID"}),
    "valid_ceil": ((1, 2, 7, 8), {"kernel_shape": [2, 2], "strides": [2, 3], "auto_pad": "VALID", "ceil_mode": 1}),
    "same_ceil": ((1, 2, 7, 8), {"kernel_shape": [2, 2], "strides": [2, 3], "auto_pad": "SAME_LOWER",
                                 "ceil_mode": 1}),
    "pool1d": ((2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    "pool3d": ((1, 2, 5, 6, 4), {"kernel_shape": [2, 3, 2], "strides": [2, 2, 1], "pads": [0, 1, 0, 1, 1, 1]}),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_max_pool(case):
    xs, attrs = POOL_CASES[case]
    check_op("MaxPool", {"x": f32(*xs)}, attrs, opset=12)


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "dilations": [2, 2]},
    {"kernel_shape": [2, 3], "dilations": [2, 1], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1},
])
def test_max_pool_dilations(attrs):
    check_op("MaxPool", {"x": f32(1, 2, 8, 9)}, attrs, opset=12)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("case", ["pads", "ceil_pads", "asym_pads", "pool1d", "pool3d"])
def test_max_pool_indices(case, storage_order):
    xs, attrs = POOL_CASES[case]
    check_op("MaxPool", {"x": f32(*xs)}, {**attrs, "storage_order": storage_order}, n_outputs=2, opset=12)


def test_max_pool_int8_and_old_opset():
    x = rng.integers(-128, 127, (1, 2, 6, 6)).astype(np.int8)
    check_op("MaxPool", {"x": x}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, opset=12)
    check_op("MaxPool", {"x": f32(1, 2, 6, 6)}, {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=7)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_average_pool(case, count_include_pad):
    xs, attrs = POOL_CASES[case]
    check_op("AveragePool", {"x": f32(*xs)}, {**attrs, "count_include_pad": count_include_pad}, opset=11)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "dilations": [2, 2]},
    {"kernel_shape": [2, 3], "dilations": [2, 1], "strides": [2, 2], "pads": [1, 1, 1, 1]},
])
def test_average_pool_dilations_opset19(attrs, count_include_pad):
    check_op("AveragePool", {"x": f32(1, 2, 8, 9)}, {**attrs, "count_include_pad": count_include_pad}, opset=19)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("case", ["basic", "pads", "same_upper", "pool1d"])
def test_lp_pool(case, p):
    xs, attrs = POOL_CASES[case]
    check_op("LpPool", {"x": f32(*xs)}, {**attrs, "p": p}, opset=11, rtol=1e-4)


def test_lp_pool_ceil_opset18():
    check_op("LpPool", {"x": f32(1, 2, 7, 8)}, {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1},
             opset=18, rtol=1e-4)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 7), (1, 2, 3, 4, 2)])
def test_global_pools(op, shape):
    check_op(op, {"x": f32(*shape)}, rtol=1e-5)


def test_global_lp_pool_p():
    check_op("GlobalLpPool", {"x": f32(1, 3, 4, 4)}, {"p": 3}, rtol=1e-4)


@pytest.mark.parametrize("size", [1, 3, 5])  # onnxruntime only takes odd sizes
def test_lrn(size):
    check_op("LRN", {"x": f32(2, 7, 3, 4)}, {"size": size, "alpha": 1e-2, "beta": 0.6, "bias": 1.5}, rtol=1e-5)


# ---------------------------------------------------------------- normalizations
def _bn_inputs(c, shape, legacy_per_activation=False):
    pshape = (c,) + tuple(shape[2:]) if legacy_per_activation else (c,)
    return {"x": f32(*shape), "scale": f32(*pshape), "b": f32(*pshape), "mean": f32(*pshape),
            "var": (rng.random(pshape) + 0.5).astype(np.float32)}


@pytest.mark.parametrize("opset,attrs", [
    (7, {"spatial": 1, "momentum": 0.9}), (9, {"momentum": 0.8}), (14, {"training_mode": 0}), (15, {}),
])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3), (1, 3, 6)])
def test_batch_norm(opset, attrs, shape):
    check_op("BatchNormalization", _bn_inputs(3, shape), {"epsilon": 1e-3, **attrs}, opset=opset,
             const_inputs=("scale", "b", "mean", "var"), rtol=1e-5, atol=1e-5)


def test_batch_norm_params_as_graph_inputs():
    check_op("BatchNormalization", _bn_inputs(4, (2, 4, 3, 3)), opset=15, rtol=1e-5, atol=1e-5)


def test_batch_norm_opset7_per_activation():
    check_op("BatchNormalization", _bn_inputs(3, (2, 3, 4, 5), legacy_per_activation=True), {"spatial": 0},
             opset=7, const_inputs=("scale", "b", "mean", "var"), rtol=1e-5, atol=1e-5)


def test_batch_norm_training_outputs_rejected():
    model = make_model("BatchNormalization", _bn_inputs(3, (2, 3, 4, 4)), {"training_mode": 1}, n_outputs=3,
                       opset=15, const_inputs=("scale", "b", "mean", "var"))
    with pytest.raises(ModelImportError, match="inference"):
        import_onnx("<test>", model=model)
    model = make_model("BatchNormalization", _bn_inputs(3, (2, 3, 4, 4)), {"training_mode": 1}, n_outputs=1,
                       opset=15, const_inputs=("scale", "b", "mean", "var"))
    with pytest.raises(ModelImportError, match="training_mode"):
        import_onnx("<test>", model=model)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 4, 9), (1, 2, 3, 2, 4)])
def test_instance_norm(shape):
    c = shape[1]
    check_op("InstanceNormalization", {"x": f32(*shape, scale=3.0), "s": f32(c), "b": f32(c)},
             {"epsilon": 1e-4}, const_inputs=("s", "b"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis,shape", [(-1, (2, 3, 8)), (1, (2, 3, 4)), (-2, (2, 5, 3, 4)), (0, (3, 4))])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(axis, shape, bias):
    a = axis % len(shape)
    inputs = {"x": f32(*shape, scale=2.0), "s": f32(*shape[a:])}
    if bias:
        inputs["b"] = f32(*shape[a:])
    check_op("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-3}, n_outputs=3, const_inputs=("s", "b"),
             opset=17, rtol=1e-4, atol=1e-5)


def test_layer_norm_scale_as_graph_input():
    check_op("LayerNormalization", {"x": f32(2, 6), "s": f32(6), "b": f32(6)}, opset=17, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm_opset21(groups):
    check_op("GroupNormalization", {"x": f32(2, 6, 3, 4), "s": f32(6), "b": f32(6)},
             {"num_groups": groups, "epsilon": 1e-3}, opset=21, const_inputs=("s", "b"), rtol=1e-4, atol=1e-5)


def test_group_norm_opset18():
    check_op("GroupNormalization", {"x": f32(2, 6, 3, 4), "s": f32(3), "b": f32(3)},
             {"num_groups": 3}, opset=18, const_inputs=("s", "b"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axes", [None, [1], [0, 1, 2, 3], [2, 3]])
def test_mean_variance_normalization(axes):
    attrs = {} if axes is None else {"axes": axes}
    check_op("MeanVarianceNormalization", {"x": f32(2, 3, 4, 5, scale=2.0)}, attrs, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Gemm, MatMul
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (4, 5), (5,), (1, 5), (4, 1), ()])
def test_gemm(trans_a, trans_b, c_shape):
    a = f32(3, 4) if trans_a else f32(4, 3)
    b = f32(5, 3) if trans_b else f32(3, 5)
    inputs = {"a": a, "b": b}
    if c_shape is not None:
        inputs["c"] = f32(*c_shape)
    check_op("Gemm", inputs, {"transA": trans_a, "transB": trans_b, "alpha": 0.7, "beta": 1.3},
             const_inputs=("b", "c"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 9, 11, 13])
def test_gemm_opsets(opset):
    check_op("Gemm", {"a": f32(2, 6), "b": f32(4, 6), "c": f32(4)}, {"transB": 1}, opset=opset,
             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shapes", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 6)), ((2, 3, 4), (4,)), ((5,), (2, 5, 3)),
])
def test_matmul(shapes):
    check_op("MatMul", {"a": f32(*shapes[0]), "b": f32(*shapes[1])}, rtol=1e-5, atol=1e-5)


def test_matmul_const_weight_and_int():
    check_op("MatMul", {"a": f32(2, 3, 8), "w": f32(8, 4)}, const_inputs=("w",), rtol=1e-5, atol=1e-5)
    a = rng.integers(-5, 5, (2, 3)).astype(np.int32)
    b = rng.integers(-5, 5, (3, 4)).astype(np.int32)
    check_op("MatMul", {"a": a, "b": b})


# ---------------------------------------------------------------- softmax family
SOFTMAX_CASES = [((2, 3, 4), None), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -2), ((2, 3, 4), 2),
                 ((3, 5, 1, 1), 1), ((2, 1, 4, 1), 1), ((6,), 0)]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,shape,axis", [(o, s, a) for o in (7, 11, 13) for s, a in SOFTMAX_CASES
                                              if o >= 11 or a is None or a >= 0])
def test_softmax_family(op, opset, shape, axis):
    x = f32(*shape, scale=3.0)
    attrs = {} if axis is None else {"axis": axis}
    check_op(op, {"x": x}, attrs, opset=opset, rtol=1e-5, atol=1e-6)


def test_hardmax_ties_pick_first():
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)
    check_op("Hardmax", {"x": x}, opset=13)


def test_softmax_old_opset_uses_reshape():
    model = make_model("Softmax", {"x": f32(2, 3, 4)}, {"axis": 1}, opset=11)
    g = import_onnx("<test>", model=model)
    assert [n.op for n in g.nodes] == ["Reshape", "Softmax", "Reshape"]
    model = make_model("Softmax", {"x": f32(2, 3, 1)}, {"axis": 1}, opset=11)
    g = import_onnx("<test>", model=model)
    assert [(n.op, n.attrs["axis"]) for n in g.nodes] == [("Softmax", -2)]


# ---------------------------------------------------------------- float16
def h16(*shape):
    return rng.standard_normal(shape).astype(np.float16)


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Conv", lambda: {"x": h16(1, 3, 6, 6), "w": h16(4, 3, 3, 3), "b": h16(4)}, {"pads": [1, 1, 1, 1]}),
    ("ConvTranspose", lambda: {"x": h16(1, 3, 4, 4), "w": h16(3, 2, 3, 3)}, {"strides": [2, 2]}),
    ("MaxPool", lambda: {"x": h16(1, 3, 6, 6)}, {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("AveragePool", lambda: {"x": h16(1, 3, 6, 6)}, {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}),
    ("GlobalAveragePool", lambda: {"x": h16(1, 3, 6, 6)}, {}),
    ("Softmax", lambda: {"x": h16(3, 7)}, {}),
    ("LogSoftmax", lambda: {"x": h16(3, 7)}, {}),
    ("MatMul", lambda: {"a": h16(2, 3, 6), "b": h16(6, 2)}, {}),
    ("Gemm", lambda: {"a": h16(3, 6), "b": h16(6, 2), "c": h16(2)}, {}),
    ("LayerNormalization", lambda: {"x": h16(3, 6), "s": h16(6)}, {}),
    ("InstanceNormalization", lambda: {"x": h16(2, 3, 5), "s": h16(3), "b": h16(3)}, {}),
])
def test_float16(op, inputs, attrs):
    check_op(op, inputs(), attrs, rtol=2e-3, atol=2e-3)


# ---------------------------------------------------------------- geometry helpers & inference
def test_geometry_helpers():
    assert conv_output_shape([7, 8], [3, 4], [2, 3], None, None, "SAME_UPPER") == (4, 3)
    assert resolve_pads([7, 8], [3, 4], [2, 3], None, None, "SAME_UPPER") == [1, 1, 1, 1]
    assert resolve_pads([7, 7], [4, 3], [1, 1], [1, 2], None, "SAME_UPPER") == [1, 2, 2, 2]
    assert resolve_pads([7, 7], [4, 3], [1, 1], [1, 2], None, "SAME_LOWER") == [2, 2, 1, 2]
    assert resolve_pads([6], [1], [4], None, None, "SAME_UPPER") == [0, 0]   # never negative
    assert conv_output_shape([5], [2], [2], None, [0, 0], ceil_mode=False) == (2,)
    assert conv_output_shape([5], [2], [2], None, [0, 0], ceil_mode=True) == (3,)
    # ceil_mode: a last window that would start in the end padding is dropped
    assert conv_output_shape([4], [2], [2], None, [0, 1], ceil_mode=True) == (2,)
    assert conv_output_shape([5], [2], [2], None, None, "VALID", ceil_mode=True) == (3,)
    # SAME_* ignores ceil_mode and counts the dilation
    assert conv_output_shape([7], [3], [2], [2], None, "SAME_UPPER", ceil_mode=True) == (4,)
    assert resolve_pads([8], [3], [2], [2], None, "SAME_UPPER") == [1, 2]
    geo = window_geometry([7], [2], [2], None, [0, 0], ceil_mode=True)
    assert geo.out_shape == (4,) and geo.extra == (1,)
    assert conv_transpose_output_shape([3, 4], [3, 3], [2, 2]) == (7, 9)
    assert conv_transpose_output_shape([3], [3], [2], None, None, "SAME_UPPER") == (6,)
    assert conv_transpose_output_shape([3], [3], [2], None, [1, 1], output_padding=[1]) == (6,)


def _infer(op, shapes, attrs, dtype=np.float32):
    from npuc.ir import Value

    opdef = get_op(op)
    vals = [None if s is None else Value(f"i{i}", dtype, s) for i, s in enumerate(shapes)]
    return opdef.infer_types(vals, opdef.normalize_attrs(attrs, "n"), "n")


@pytest.mark.parametrize("op,shapes,attrs,msg", [
    ("Conv", [(1, 3, 8, 8), (4, 2, 3, 3)], {}, "channels"),
    ("Conv", [(1, 4, 8, 8), (4, 2, 3, 3)], {"group": 3}, "group"),
    ("Conv", [(1, 3, 8, 8), (4, 3, 3)], {}, "rank"),
    ("Conv", [(1, 3, 2, 2), (4, 3, 3, 3)], {}, "larger than the padded input"),
    ("Conv", [(1, 3, 8, 8), (4, 3, 3, 3), (3,)], {}, "bias"),
    ("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], {"pads": [1, 1]}, "pads"),
    ("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], {"auto_pad": "SAME"}, "auto_pad"),
    ("ConvTranspose", [(1, 3, 4, 4), (2, 3, 3, 3)], {}, "channels"),
    ("ConvTranspose", [(1, 3, 4, 4), (3, 2, 3, 3)], {"strides": [2, 2], "output_padding": [2, 0]},
     "output_padding"),
    ("ConvTranspose", [(1, 3, 4, 4), (3, 2, 3, 3)], {"output_shape": [5]}, "output_shape"),
    ("MaxPool", [(1, 3, 8)], {"kernel_shape": [2, 2]}, "kernel_shape"),
    ("MaxPool", [(3, 8)], {"kernel_shape": [2]}, "rank"),
    ("Gemm", [(3, 4), (5, 6)], {}, "inner"),
    ("Gemm", [(3, 4), (4, 6), (3, 5)], {}, "broadcast"),
    ("MatMul", [(2, 3, 4), (3, 5, 6)], {}, "inner"),
    ("MatMul", [(2, 3, 4), (3, 4, 6)], {}, "broadcast"),
    ("BatchNormalization", [(1, 3, 4), (4,), (3,), (3,), (3,)], {}, "scale"),
    ("LayerNormalization", [(2, 3, 4), (3,)], {}, "Scale"),
    ("Softmax", [(2, 3)], {"axis": 2}, "axis"),
    ("GroupNormalization", [(1, 6, 4), (6,), (6,)], {"num_groups": 4}, "num_groups"),
])
def test_infer_errors(op, shapes, attrs, msg):
    with pytest.raises(NpucError, match=msg):
        _infer(op, shapes, attrs)


def test_infer_shapes():
    assert _infer("Conv", [(2, 6, 9, 9), (8, 3, 3, 3)], {"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}) \
        == [(np.float32, (2, 8, 5, 5))]
    assert _infer("MaxPool", [(1, 2, 7, 7)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1})[0][1] \
        == (1, 2, 4, 4)
    assert _infer("MaxPool", [(1, 2, 7, 7)], {"kernel_shape": [2, 2]})[1] == (np.int64, (1, 2, 6, 6))
    assert _infer("MatMul", [(5,), (2, 5, 3)], {}) == [(np.float32, (2, 3))]
    assert _infer("LayerNormalization", [(2, 3, 4), (3, 4)], {"axis": 1})[1] == (np.float32, (2, 1, 1))


def test_unsupported_auto_pad_import_error():
    model = make_model("Conv", {"x": f32(1, 3, 8, 8), "w": f32(4, 3, 3, 3)}, {"auto_pad": "SAME"},
                       const_inputs=("w",))
    with pytest.raises(ModelImportError, match="auto_pad"):
        import_onnx("<test>", model=model)


@pytest.mark.parametrize("op,shapes,attrs", [
    ("Conv", [(1, 3, 6, 6), (4, 3, 3, 3), (4,)], {"pads": [1, 1, 1, 1]}),
    ("ConvTranspose", [(1, 3, 4, 4), (3, 2, 3, 3)], {"strides": [2, 2]}),
    ("Gemm", [(3, 5), (4, 5)], {"transB": 1}),
    ("MatMul", [(2, 3, 5), (5, 4)], {}),
])
@pytest.mark.parametrize("act", [{"op": "Relu"}, {"op": "Clip", "min": 0.0, "max": 0.5},
                                 {"op": "LeakyRelu", "alpha": 0.2}])
def test_fused_activation_epilogue(op, shapes, attrs, act):
    opdef = get_op(op)
    assert "epilogue" in opdef.flags
    xs = [f32(*s) for s in shapes]
    plain = opdef.run(xs, opdef.normalize_attrs(attrs, "n"))[0]
    fused = opdef.run(xs, opdef.normalize_attrs({**attrs, "activation": act}, "n"))[0]
    act_def = get_op(act["op"])
    if act["op"] == "Clip":
        want = np.clip(plain, act["min"], act["max"])
    else:
        want = act_def.run([plain], act_def.normalize_attrs({k: v for k, v in act.items() if k != "op"}))[0]
    np.testing.assert_allclose(fused, want, rtol=1e-6, atol=1e-6)
    from npuc.ir import Value
    vals = [Value(f"i{i}", np.float32, s) for i, s in enumerate(shapes)]
    assert opdef.infer_types(vals, opdef.normalize_attrs({**attrs, "activation": act}, "n"))[0][1] == plain.shape
