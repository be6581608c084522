"""Fusion and simplification passes: before/after structure and numerical equality of the
whole graph against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.api import compile_graph_to_session
from npuc.frontends.onnx import import_onnx
from npuc.ir import verify
from npuc.passes.pipelines import cpu_pipeline
from npuc.runtime.interpreter import interpret

from ..ops.ort_check import run_ort

rng = np.random.default_rng(0)


class B:
    """A tiny ONNX graph builder for pass tests."""

    def __init__(self, x_shape=(1, 4, 8, 8)):
        self.nodes, self.inits, self.n = [], [], 0
        self.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
        self.x_shape = x_shape

    def c(self, arr, name=None):
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op, ins, **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, ins, [out], name=f"{op}_{self.n}", **attrs))
        return out

    def conv(self, x, cin, cout, k=3, group=1, bias=True, **attrs):
        w = self.c((rng.standard_normal((cout, cin // group, k, k)) * 0.3).astype(np.float32))
        ins = [x, w] + ([self.c(rng.standard_normal(cout).astype(np.float32))] if bias else [])
        return self.op("Conv", ins, group=group, pads=[k // 2] * 4, **attrs)

    def bn(self, x, c):
        return self.op("BatchNormalization", [x, self.c((rng.random(c) + 0.5).astype(np.float32)),
                                              self.c(rng.standard_normal(c).astype(np.float32) * 0.1),
                                              self.c(rng.standard_normal(c).astype(np.float32) * 0.1),
                                              self.c((rng.random(c) + 0.5).astype(np.float32))], epsilon=1e-3)

    def model(self, *outs, opset=17):
        g = helper.make_graph(self.nodes, "g", self.inputs, [onnx.ValueInfoProto(name=o) for o in outs],
                              initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def optimize_and_compare(model, feeds=None, rtol=1e-4, atol=1e-5):
    feeds = feeds or {"x": rng.standard_normal(tuple(d.dim_value for d in
                                                      model.graph.input[0].type.tensor_type.shape.dim))
                      .astype(np.float32)}
    want = run_ort(model, feeds)
    g = import_onnx("<test>", model=model)
    cpu_pipeline().run(g, verify_each=True)
    verify(g)
    got = interpret(g, feeds)
    for v, w in zip(g.outputs, want):
        np.testing.assert_allclose(got[v.name], w, rtol=rtol, atol=atol)
    sess = compile_graph_to_session(import_onnx("<test>", model=model))
    res = sess.run(feeds)
    for o, w in zip(sess.outputs, want):
        np.testing.assert_allclose(res[o.name], w, rtol=rtol, atol=atol)
    return g


def ops(g):
    return [n.op for n in g.nodes]


def test_conv_bn_relu_folds_to_one_conv():
    b = B()
    y = b.op("Relu", [b.bn(b.conv("x", 4, 6, bias=False), 6)])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Conv"]
    assert g.nodes[0].attrs["activation"]["op"] == "Relu"


@pytest.mark.parametrize("act,attrs,extra", [
    ("Relu", {}, []), ("LeakyRelu", {"alpha": 0.2}, []), ("Sigmoid", {}, []), ("Tanh", {}, []),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, []), ("HardSwish", {}, []), ("Elu", {"alpha": 0.5}, []),
    ("Clip", {}, ["min", "max"]), ("PRelu", {}, ["slope"]), ("Mish", {}, []),
])
def test_activation_fused_into_conv(act, attrs, extra):
    b = B()
    x = b.conv("x", 4, 6)
    ins = [x]
    if extra == ["min", "max"]:
        ins += [b.c(np.array(0.0, np.float32)), b.c(np.array(6.0, np.float32))]
    elif extra == ["slope"]:
        ins += [b.c(rng.random((6, 1, 1)).astype(np.float32))]
    y = b.op(act, ins, **attrs)
    g = optimize_and_compare(b.model(y, opset=18))
    assert ops(g) == ["Conv"]
    assert g.nodes[0].attrs["activation"]["op"] == act


def test_bn_after_conv_transpose_and_gemm():
    b = B((1, 4, 5, 5))
    w = b.c((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32))
    y = b.op("ConvTranspose", ["x", w], strides=[2, 2])
    y = b.bn(y, 3)
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["ConvTranspose"]
    b = B((2, 8))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])]
    wm = b.c(rng.standard_normal((5, 8)).astype(np.float32))
    y = b.op("Gemm", ["x", wm, b.c(rng.standard_normal(5).astype(np.float32))], transB=1, alpha=0.5)
    y = b.op("Mul", [y, b.c(rng.random(5).astype(np.float32) + 0.5)])
    y = b.op("Add", [y, b.c(rng.random(5).astype(np.float32))])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Gemm"]


def test_standalone_bn_becomes_affine():
    b = B()
    y = b.bn(b.op("Relu", ["x"]), 4)
    g = optimize_and_compare(b.model(y))
    assert "BatchNormalization" not in ops(g)


def test_mul_add_by_channel_constants_fold_into_conv():
    b = B()
    y = b.conv("x", 4, 6)
    y = b.op("Mul", [y, b.c(rng.random((1, 6, 1, 1)).astype(np.float32))])
    y = b.op("Add", [y, b.c(rng.random((6, 1, 1)).astype(np.float32))])
    y = b.op("Mul", [y, b.c(np.array(2.0, np.float32))])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Conv"]


def test_pad_folds_into_conv_and_avgpool():
    b = B()
    p = b.op("Pad", ["x", b.c(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))])
    w = b.c((rng.standard_normal((5, 4, 3, 3)) * 0.3).astype(np.float32))
    y = b.op("Conv", [p, w])
    p2 = b.op("Pad", [y, b.c(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
    z = b.op("AveragePool", [p2], kernel_shape=[3, 3], count_include_pad=1)
    g = optimize_and_compare(b.model(z))
    assert ops(g) == ["Conv", "AveragePool"]
    assert g.nodes[0].attrs["pads"] == [1, 2, 2, 1]


def test_swish_hardswish_gelu_patterns():
    b = B((2, 16))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])]
    s = b.op("Mul", ["x", b.op("Sigmoid", ["x"])])                      # SiLU
    a3 = b.op("Add", [s, b.c(np.array(3.0, np.float32))])
    r6 = b.op("Clip", [a3, b.c(np.array(0.0, np.float32)), b.c(np.array(6.0, np.float32))])
    hs = b.op("Div", [b.op("Mul", [s, r6]), b.c(np.array(6.0, np.float32))])  # HardSwish(s)
    d = b.op("Div", [hs, b.c(np.array(np.sqrt(2), np.float32))])
    e = b.op("Add", [b.op("Erf", [d]), b.c(np.array(1.0, np.float32))])
    gl = b.op("Mul", [b.op("Mul", [hs, b.c(np.array(0.5, np.float32))]), e])  # Gelu(hs)
    g = optimize_and_compare(b.model(gl))
    assert ops(g) == ["Swish", "HardSwish", "Gelu"]


def test_gelu_tanh_pattern():
    b = B((2, 16))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])]
    cube = b.op("Mul", [b.op("Pow", ["x", b.c(np.array(3.0, np.float32))]), b.c(np.array(0.044715, np.float32))])
    inner = b.op("Mul", [b.op("Add", ["x", cube]), b.c(np.array(np.sqrt(2 / np.pi), np.float32))])
    one = b.op("Add", [b.op("Tanh", [inner]), b.c(np.array(1.0, np.float32))])
    y = b.op("Mul", [b.op("Mul", ["x", b.c(np.array(0.5, np.float32))]), one])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Gelu"] and g.nodes[0].attrs["approximate"] == "tanh"


def test_layernorm_pattern():
    b = B((2, 5, 16))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])]
    ax = b.c(np.array([-1], np.int64))
    m = b.op("ReduceMean", ["x", ax])
    d = b.op("Sub", ["x", m])
    v = b.op("ReduceMean", [b.op("Pow", [d, b.c(np.array(2.0, np.float32))]), ax])
    s = b.op("Sqrt", [b.op("Add", [v, b.c(np.array(1e-5, np.float32))])])
    y = b.op("Add", [b.op("Mul", [b.op("Div", [d, s]), b.c(rng.random(16).astype(np.float32))]),
                     b.c(rng.random(16).astype(np.float32))])
    g = optimize_and_compare(b.model(y, opset=18))
    assert ops(g) == ["LayerNormalization"]


def test_matmul_add_becomes_gemm():
    b = B((3, 8))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])]
    y = b.op("Add", [b.op("MatMul", ["x", b.c(rng.standard_normal((8, 4)).astype(np.float32))]),
                     b.c(rng.standard_normal(4).astype(np.float32))])
    y = b.op("Relu", [y])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Gemm"] and g.nodes[0].attrs["activation"]["op"] == "Relu"


def test_transposes_cancel_through_elementwise_and_concat():
    b = B((1, 4, 6, 6))
    t = b.op("Transpose", ["x"], perm=[0, 2, 3, 1])
    r = b.op("Relu", [t])
    a = b.op("Add", [r, b.c(rng.random(4).astype(np.float32))])   # per-channel in NHWC
    t2 = b.op("Transpose", [b.op("Sigmoid", ["x"])], perm=[0, 2, 3, 1])
    cat = b.op("Concat", [a, t2], axis=3)
    back = b.op("Transpose", [cat], perm=[0, 3, 1, 2])
    g = optimize_and_compare(b.model(back))
    assert "Transpose" not in ops(g)


def test_reshape_chains_collapse_and_cse():
    b = B((2, 3, 4))
    b.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])]
    f = b.op("Flatten", ["x"], axis=1)
    u = b.op("Unsqueeze", [f, b.c(np.array([1], np.int64))])
    r = b.op("Reshape", [u, b.c(np.array([4, 6], np.int64))])
    e1 = b.op("Exp", [r])
    e2 = b.op("Exp", [r])
    y = b.op("Add", [e1, e2])
    g = optimize_and_compare(b.model(y))
    assert ops(g) == ["Reshape", "Exp", "Add"]


def test_cross_layer_equalization_keeps_outputs_and_evens_ranges():
    from npuc.passes.equalize import equalize_cross_layer

    b = B()
    # a depthwise conv whose channels have very different weight ranges, then a 1x1 conv
    wd = (rng.standard_normal((4, 1, 3, 3)) * np.array([0.01, 1, 10, 0.1]).reshape(4, 1, 1, 1)).astype(np.float32)
    y = b.op("Conv", ["x", b.c(wd), b.c(rng.standard_normal(4).astype(np.float32))], group=4, pads=[1] * 4)
    y = b.op("Relu", [y])
    w2 = b.c((rng.standard_normal((6, 4, 1, 1)) * 0.3).astype(np.float32))
    y = b.op("Conv", [y, w2])
    model = b.model(y)
    feeds = {"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)}
    want = run_ort(model, feeds)[0]
    g = import_onnx("<test>", model=model)
    cpu_pipeline().run(g)
    before = np.abs(g.nodes[0].inputs[1].const).reshape(4, -1).max(axis=1)
    assert equalize_cross_layer(g)
    verify(g)
    after = np.abs(g.nodes[0].inputs[1].const).reshape(4, -1).max(axis=1)
    assert after.max() / after.min() < before.max() / before.min() / 10
    np.testing.assert_allclose(interpret(g, feeds)[g.outputs[0].name], want, rtol=1e-4, atol=1e-5)
