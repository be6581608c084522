"""The fast float32 kernels against onnxruntime, one ONNX node at a time.

Each case builds a one-node model, runs it in onnxruntime, compiles it with npuc, checks
that the expected fast kernel (not the reference fallback) was chosen, runs the Session
and compares. The registry's reference kernels are checked against onnxruntime in
tests/ops; here the compiled runtime path is what is under test.
"""
from __future__ import annotations

import numpy as np
import pytest

from npuc.format.writer import write_program
from npuc.frontends.onnx import import_onnx
from npuc.lowering import lower
from npuc.runtime.session import load
from npuc.targets import get_target
from tests.ops.ort_check import assert_close, make_model, run_ort

RNG = np.random.default_rng(1234)
_TMP = [None]


@pytest.fixture(autouse=True)
def _tmp(tmp_path):
    _TMP[0] = tmp_path
    yield
    _TMP[0] = None


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def compiled(model, tmp_path, *, activation=None):
    """Lower the imported node as it is (no graph passes: the kernel, not the passes, is under
    test), write it and load it."""
    g = import_onnx("<test>", model=model)
    if activation is not None:
        g.nodes[0].attrs["activation"] = activation
    path = tmp_path / "model.npuc"
    write_program(lower(g, get_target("cpu")), path)
    return load(path)


def run_case(op, inputs, attrs=None, *, kernel, const=(), opset=17, rtol=1e-4, atol=1e-4, activation=None,
             post=None, n_outputs=1):
    """Compare npuc's compiled runtime with onnxruntime on one node; assert ``kernel`` ran it."""
    model = make_model(op, inputs, attrs, opset=opset, const_inputs=tuple(const), n_outputs=n_outputs)
    feeds = {k: v for k, v in inputs.items() if v is not None and k not in const}
    want = run_ort(model, feeds)
    if post is not None:
        want = [post(w) for w in want]
    sess = compiled(model, _TMP[0], activation=activation)
    kernels = [o.kernel for o in sess.program.ops if o.op == op]
    assert kernels == [kernel], f"{op}: expected kernel {kernel}, the program has {kernels}"
    assert sess.fallback_ops == []
    got = sess.run({s.name: feeds[s.name] for s in sess.inputs})
    for s, w in zip(sess.outputs, want):
        assert_close(got[s.name], w, rtol=rtol, atol=atol, what=f"{op} ({kernel})")
    # a second run on the same arena gives the same answer (no state leaks between runs)
    again = sess.run({s.name: feeds[s.name] for s in sess.inputs})
    for s in sess.outputs:
        np.testing.assert_array_equal(again[s.name], got[s.name])
    return sess


# ---------------------------------------------------------------- Conv
CONV_CASES = [
    # (x shape, w shape, attrs, bias, kernel)
    ((1, 8, 13, 11), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}, True, "conv_depthwise"),
    ((2, 6, 15, 14), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 0, 3]},
     True, "conv_depthwise_cl"),
    ((2, 6, 25, 24), (6, 1, 3, 3), {"group": 6, "strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 0, 3]},
     True, "conv_depthwise"),
    ((1, 40, 7, 7), (40, 1, 3, 3), {"group": 40, "pads": [1, 1, 1, 1]}, True, "conv_depthwise_cl"),
    ((2, 24, 13, 14), (24, 1, 5, 5), {"group": 24, "strides": [2, 2], "pads": [2, 2, 1, 1]}, False,
     "conv_depthwise_cl"),
    ((1, 5, 17, 16), (5, 1, 5, 5), {"group": 5, "strides": [2, 2], "pads": [2, 2, 2, 2]}, False, "conv_depthwise"),
    ((1, 4, 19, 20), (4, 1, 3, 2), {"group": 4, "strides": [1, 3], "auto_pad": "SAME_UPPER"}, True,
     "conv_depthwise"),
    ((1, 3, 20), (3, 1, 3), {"group": 3, "pads": [1, 1]}, True, "conv_depthwise"),
    ((1, 16, 7, 9), (24, 16, 1, 1), {}, True, "conv_1x1"),
    ((2, 16, 5, 6), (8, 16, 1, 1), {}, False, "conv_1x1"),
    ((1, 16, 13, 15), (16, 16, 3, 3), {"pads": [1, 1, 1, 1]}, True, "conv_winograd"),
    ((2, 20, 14, 13), (24, 20, 3, 3), {"pads": [0, 1, 2, 0]}, False, "conv_winograd"),
    ((1, 16, 16, 16), (32, 16, 3, 3), {"auto_pad": "SAME_UPPER"}, True, "conv_winograd"),
    ((1, 16, 7, 9), (24, 16, 1, 1), {"strides": [2, 2]}, True, "conv_im2col"),
    ((2, 3, 12, 13), (8, 3, 3, 3), {"pads": [1, 0, 2, 1]}, True, "conv_im2col"),
    ((1, 3, 23, 23), (4, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}, True, "conv_im2col"),
    ((1, 8, 10, 9), (6, 4, 3, 3), {"group": 2, "dilations": [2, 1], "pads": [2, 1, 2, 0]}, True,
     "conv_im2col"),
    ((1, 8, 10, 9), (6, 8, 4, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, True, "conv_im2col"),
    ((2, 6, 9, 9), (6, 2, 3, 3), {"group": 3, "strides": [2, 1], "pads": [0, 1, 1, 0]}, False, "conv_im2col"),
    ((1, 4, 18), (6, 4, 5), {"strides": [2], "pads": [2, 1]}, True, "conv_im2col"),
]


@pytest.mark.parametrize("xs,ws,attrs,bias,kernel", CONV_CASES)
def test_conv(xs, ws, attrs, bias, kernel):
    inputs = {"x": rand(*xs), "w": rand(*ws, scale=0.3)}
    if bias:
        inputs["b"] = rand(ws[0])
    run_case("Conv", inputs, attrs, kernel=kernel, const=("w", "b"))


@pytest.mark.parametrize("activation,fn", [
    ({"op": "Relu"}, lambda y: np.maximum(y, 0)),
    ({"op": "Clip", "min": 0.0, "max": 0.5}, lambda y: np.clip(y, 0, 0.5)),
    ({"op": "LeakyRelu", "alpha": 0.1}, lambda y: np.where(y >= 0, y, 0.1 * y)),
    ({"op": "Sigmoid"}, lambda y: 1 / (1 + np.exp(-y))),
    ({"op": "HardSwish"}, lambda y: y * np.clip(y / 6 + 0.5, 0, 1)),
    ({"op": "PRelu", "slope": np.linspace(-0.5, 0.5, 8, dtype=np.float32)[:6].reshape(6, 1, 1)},
     lambda y: np.where(y >= 0, y, y * np.linspace(-0.5, 0.5, 8, dtype=np.float32)[:6].reshape(6, 1, 1))),
])
@pytest.mark.parametrize("ws,attrs,kernel", [
    ((6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}, "conv_depthwise"),
    ((6, 1, 3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}, "conv_depthwise_cl"),
    ((6, 6, 1, 1), {}, "conv_1x1"),
    ((6, 6, 3, 3), {"strides": [2, 2]}, "conv_im2col"),
    ((16, 6, 3, 3), {"pads": [1, 1, 1, 1]}, "conv_winograd"),
])
def test_conv_fused_activation(activation, fn, ws, attrs, kernel):
    c = 16 if kernel == "conv_winograd" else 6
    ws = (ws[0], c) + ws[2:] if not kernel.startswith("conv_depthwise") else ws
    if kernel == "conv_winograd" and activation["op"] == "PRelu":
        activation = {"op": "PRelu", "slope": np.linspace(-0.5, 0.5, 16, dtype=np.float32).reshape(16, 1, 1)}
        fn = lambda y: np.where(y >= 0, y, y * np.linspace(-0.5, 0.5, 16, dtype=np.float32).reshape(16, 1, 1))  # noqa
    inputs = {"x": rand(1, c, 13, 12), "w": rand(*ws, scale=0.3), "b": rand(ws[0])}
    run_case("Conv", inputs, attrs, kernel=kernel, const=("w", "b"), activation=activation, post=fn)


# ---------------------------------------------------------------- Gemm, MatMul
@pytest.mark.parametrize("attrs,cshape,const_b", [
    ({}, (9,), True),
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (5, 9), True),
    ({"transA": 1}, (1, 9), True),
    ({"transA": 1, "transB": 1, "alpha": 1.5}, None, True),
    ({"beta": 0.5}, (), True),
    ({"transB": 1, "alpha": 2.0}, (9,), False),
])
def test_gemm(attrs, cshape, const_b):
    a = rand(7, 5) if attrs.get("transA") else rand(5, 7)
    b = rand(9, 7) if attrs.get("transB") else rand(7, 9)
    inputs = {"a": a, "b": b}
    if cshape is not None:
        inputs["c"] = rand(*cshape)
    const = ("b", "c") if const_b else ("c",)
    run_case("Gemm", inputs, attrs, kernel="gemm_f32", const=const)


def test_gemm_fused_activation():
    inputs = {"a": rand(3, 16), "b": rand(16, 10), "c": rand(10)}
    run_case("Gemm", inputs, {}, kernel="gemm_f32", const=("b", "c"), activation={"op": "Swish", "alpha": 1.0},
             post=lambda y: y / (1 + np.exp(-y)))


def test_matmul_fused_activation():
    run_case("MatMul", {"a": rand(2, 3, 8), "b": rand(8, 4)}, kernel="matmul_f32", const=("b",),
             activation={"op": "LeakyRelu", "alpha": 0.2}, post=lambda y: np.where(y >= 0, y, 0.2 * y))


@pytest.mark.parametrize("ashape,bshape,const_b", [((2, 3, 4, 5), (5, 6), True), ((3, 4, 5), (3, 5, 2), False),
                                                   ((4, 5), (5,), True)])
def test_matmul(ashape, bshape, const_b):
    run_case("MatMul", {"a": rand(*ashape), "b": rand(*bshape)}, kernel="matmul_f32",
             const=("b",) if const_b else ())


# ---------------------------------------------------------------- pools
POOL_CASES = [
    ("MaxPool", (1, 4, 12, 12), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", (2, 3, 11, 10), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", (1, 3, 13, 12), {"kernel_shape": [2, 3], "strides": [2, 1], "dilations": [2, 2],
                                 "pads": [0, 1, 1, 0]}),
    ("MaxPool", (1, 5, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", (1, 2, 15), {"kernel_shape": [4], "strides": [3], "pads": [1, 2], "ceil_mode": 1}),
    ("MaxPool", (1, 3, 9, 9), {"kernel_shape": [5, 5], "strides": [1, 1], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", (1, 4, 12, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", (1, 4, 12, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                     "count_include_pad": 1}),
    ("AveragePool", (2, 3, 11, 10), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [0, 1, 1, 0],
                                     "ceil_mode": 1, "count_include_pad": 1}),
    ("AveragePool", (2, 3, 11, 10), {"kernel_shape": [3, 3], "strides": [2, 3], "ceil_mode": 1}),
    ("AveragePool", (1, 2, 9, 9), {"kernel_shape": [2, 2], "strides": [1, 1], "dilations": [2, 2],
                                   "pads": [1, 1, 1, 1], "count_include_pad": 1}),
]


@pytest.mark.parametrize("op,xs,attrs", POOL_CASES)
def test_pool(op, xs, attrs):
    opset = 19 if "dilations" in attrs and op == "AveragePool" else 17
    run_case(op, {"x": rand(*xs)}, attrs, kernel={"MaxPool": "maxpool_f32", "AveragePool": "avgpool_f32"}[op],
             opset=opset)


@pytest.mark.parametrize("op,kernel", [("GlobalAveragePool", "global_avgpool_f32"),
                                       ("GlobalMaxPool", "global_maxpool_f32")])
@pytest.mark.parametrize("xs", [(1, 8, 7, 7), (2, 3, 5, 4), (1, 4, 9)])
def test_global_pool(op, kernel, xs):
    run_case(op, {"x": rand(*xs)}, kernel=kernel)


# ---------------------------------------------------------------- tensor ops
def test_concat():
    run_case("Concat", {"a": rand(1, 3, 4, 5), "b": rand(1, 2, 4, 5), "c": rand(1, 4, 4, 5)}, {"axis": 1},
             kernel="concat_copy")
    run_case("Concat", {"a": rand(2, 3), "b": rand(2, 5)}, {"axis": -1}, kernel="concat_copy")


def test_split():
    run_case("Split", {"x": rand(1, 7, 4), "s": np.array([2, 5], np.int64)}, {"axis": 1}, kernel="split_copy",
             const=("s",), n_outputs=2)
    run_case("Split", {"x": rand(2, 3, 8)}, {"axis": -1, "num_outputs": 3}, kernel="split_copy", n_outputs=3,
             opset=18)


def test_transpose():
    run_case("Transpose", {"x": rand(2, 3, 4, 5)}, {"perm": [0, 2, 3, 1]}, kernel="transpose_copy")
    run_case("Transpose", {"x": rand(3, 4, 5)}, {}, kernel="transpose_copy")


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1, 0], [3, 10], [1, 3], [1, 2]),
    ([-1], [-100], [2], [-2]),
    ([0, 2], [9223372036854775807, -1], [0, 1], None),
])
def test_slice(starts, ends, axes, steps):
    inputs = {"x": rand(2, 4, 6, 8), "starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64),
              "axes": np.array(axes, np.int64)}
    const = ["starts", "ends", "axes"]
    if steps is not None:
        inputs["steps"] = np.array(steps, np.int64)
        const.append("steps")
    run_case("Slice", inputs, kernel="slice_copy", const=const)


@pytest.mark.parametrize("idx,axis", [(np.array([0, 2, -1], np.int64), 1), (np.array(1, np.int64), 0),
                                      (np.array([[3, 0], [1, 1]], np.int64), 2)])
def test_gather(idx, axis):
    run_case("Gather", {"x": rand(3, 4, 5), "i": idx}, {"axis": axis}, kernel="gather_const", const=("i",))


@pytest.mark.parametrize("mode,pads,opset", [
    ("constant", [0, 0, 1, 2, 0, 0, 3, 0], 18),
    ("constant", [0, 1, -1, 2, 0, 0, 1, -2], 18),
    ("edge", [0, 0, 2, 1, 0, 0, 1, 3], 18),
    ("reflect", [0, 0, 2, 1, 0, 0, 3, 2], 18),
    ("wrap", [0, 0, 2, 1, 0, 0, 3, 2], 19),
])
def test_pad(mode, pads, opset):
    inputs = {"x": rand(1, 2, 5, 6), "pads": np.array(pads, np.int64)}
    const = ["pads"]
    if mode == "constant":
        inputs["cv"] = np.array(1.5, np.float32)
        const.append("cv")
    run_case("Pad", inputs, {"mode": mode}, kernel="pad_copy", const=const, opset=opset)


@pytest.mark.parametrize("attrs,scales,sizes", [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 2, 2], None),
    ({"mode": "nearest"}, None, [1, 3, 7, 11]),
    ({"mode": "linear"}, [1, 1, 2, 2], None),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [1, 3, 9, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 1, 0.5, 1.5], None),
    ({"mode": "cubic"}, [1, 1, 1.5, 2], None),
    ({"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.6], None),
])
def test_resize(attrs, scales, sizes):
    inputs = {"x": rand(1, 3, 6, 8), "roi": None,
              "scales": None if scales is None else np.array(scales, np.float32),
              "sizes": None if sizes is None else np.array(sizes, np.int64)}
    const = [k for k in ("scales", "sizes") if inputs[k] is not None]
    run_case("Resize", inputs, attrs, kernel="resize_2d_f32", const=const, opset=19)


@pytest.mark.parametrize("op,kernel", [("Softmax", "softmax_f32"), ("LogSoftmax", "logsoftmax_f32")])
@pytest.mark.parametrize("shape,axis", [((2, 10), -1), ((2, 5, 3, 4), 1), ((3, 4, 6), 2)])
def test_softmax(op, kernel, shape, axis):
    run_case(op, {"x": rand(*shape, scale=3.0)}, {"axis": axis}, kernel=kernel, rtol=1e-5, atol=1e-6)


def test_batchnorm():
    c = 5
    inputs = {"x": rand(2, c, 4, 3), "s": rand(c), "b": rand(c), "m": rand(c), "v": np.abs(rand(c)) + 0.1}
    run_case("BatchNormalization", inputs, {"epsilon": 1e-3}, kernel="batchnorm_f32", const=("s", "b", "m", "v"))
    run_case("BatchNormalization", inputs, {"epsilon": 1e-3}, kernel="batchnorm_f32", const=("s", "b", "m", "v"),
             activation={"op": "Sigmoid"}, post=lambda y: 1 / (1 + np.exp(-y)))
