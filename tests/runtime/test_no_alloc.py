"""The runtime allocates nothing per inference: a small CNN through the full compile
pipeline runs on fast kernels only, and after warm-up its steps allocate (almost) nothing."""
from __future__ import annotations

import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.api import compile_graph_to_session
from npuc.frontends.onnx import import_onnx
from tests.ops.ort_check import assert_close, run_ort


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv+Relu, depthwise Conv+Clip, 1×1 Conv, residual Add, MaxPool, two branches joined by
    Concat, GlobalAveragePool, Flatten, Gemm, Softmax."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def conv(name, x, cin, cout, k, stride=1, pad=0, group=1):
        w = const(f"{name}.w", rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k))
        b = const(f"{name}.b", rng.standard_normal(cout) * 0.1)
        nodes.append(helper.make_node("Conv", [x, w, b], [name], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad] * 4, group=group))
        return name

    def node(op, ins, name, **attrs):
        nodes.append(helper.make_node(op, ins, [name], name=name, **attrs))
        return name

    x = conv("c1", "input", 3, 16, 3, stride=2, pad=1)
    x = node("Relu", [x], "r1")
    y = conv("dw", x, 16, 16, 3, pad=1, group=16)
    y = node("Clip", [y, const("lo", 0.0), const("hi", 6.0)], "clip")
    y = conv("pw", y, 16, 16, 1)
    x = node("Add", [y, x], "add")
    x = node("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    a = conv("ba", x, 16, 8, 1)
    b = conv("bb", x, 16, 8, 3, pad=1)
    x = node("Concat", [a, b], "cat", axis=1)
    x = node("GlobalAveragePool", [x], "gap")
    x = node("Flatten", [x], "flat", axis=1)
    w = const("fc.w", rng.standard_normal((10, 16)) * 0.3)
    c = const("fc.b", rng.standard_normal(10) * 0.1)
    x = node("Gemm", [x, w, c], "fc", transB=1)
    node("Softmax", [x], "prob", axis=-1)
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def model_and_session():
    model = small_cnn()
    sess = compile_graph_to_session(import_onnx("small_cnn", model=model))
    return model, sess


def test_fast_kernels_only_and_correct(model_and_session):
    model, sess = model_and_session
    assert sess.fallback_ops == []
    kernels = {o.kernel for o in sess.program.ops}
    assert {"conv_depthwise", "conv_1x1", "conv_im2col", "maxpool_f32", "global_avgpool_f32", "gemm_f32",
            "softmax_f32"} <= kernels, kernels
    assert kernels & {"concat_copy", "concat_in_place"}, kernels
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = run_ort(model, {"input": x})[0]
    got = sess.run({"input": x})["prob"]
    assert_close(got, want, rtol=1e-4, atol=1e-5, what="small_cnn")


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


def test_steps_allocate_nothing(model_and_session):
    _, sess = model_and_session
    feeds = {"input": np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    for _ in range(2):
        sess.run(feeds)
    peak = _peak_bytes(sess._run_steps)
    assert peak < 4096, f"the kernels allocated {peak} bytes during one inference"


def test_run_allocates_little_beyond_outputs(model_and_session):
    _, sess = model_and_session
    feeds = {"input": np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    for _ in range(2):
        sess.run(feeds)
    out_bytes = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in sess.outputs)
    peak = _peak_bytes(lambda: sess.run(feeds))
    assert peak < out_bytes + 4096, f"Session.run allocated {peak} bytes for {out_bytes} bytes of outputs"
