"""Lowering: copy-free Concat, in-place elementwise ops, and their effect on the arena."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import npuc
from npuc.cli import inspect_dict

from .ops.ort_check import run_ort

rng = np.random.default_rng(0)


def _branchy_model():
    """x → two conv+relu branches → Concat(C) → conv: the branches can write into the concat."""
    w = lambda o, i: numpy_helper.from_array((rng.standard_normal((o, i, 3, 3)) * 0.2).astype(np.float32),  # noqa
                                             f"w{o}_{i}_{rng.integers(1e9)}")
    w1, w2, w3 = w(8, 4), w(8, 4), w(6, 16)
    nodes = [helper.make_node("Conv", ["x", w1.name], ["a"], pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["x", w2.name], ["b"], pads=[1] * 4),
             helper.make_node("Sigmoid", ["b"], ["bs"]),
             helper.make_node("Concat", ["ar", "bs"], ["c"], axis=1),
             helper.make_node("Conv", ["c", w3.name], ["y"], pads=[1] * 4)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                          [onnx.ValueInfoProto(name="y")], initializer=[w1, w2, w3])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_concat_without_copy(tmp_path):
    m = _branchy_model()
    src = tmp_path / "m.onnx"
    onnx.save(m, src)
    out = tmp_path / "m.npuc"
    npuc.compile(src, out)
    info = inspect_dict(str(out))
    assert info["kernels"].get("concat_in_place") == 1, info["kernels"]
    x = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(npuc.load(out).run({"x": x})["y"], run_ort(m, {"x": x})[0], rtol=1e-4, atol=1e-5)
    # no tensor of the program is a separate copy of a branch output: the concat's inputs
    # lie inside its output's bytes
    from npuc.format.reader import read_program

    prog = read_program(out)
    op = next(o for o in prog.ops if o.kernel == "concat_in_place")
    c = prog.tensors[op.outputs[0]]
    offsets = [prog.tensors[t].offset for t in op.inputs]
    assert offsets == [c.offset, c.offset + c.nbytes // 2]


def test_concat_of_a_graph_input_still_copies(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["x", "r"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                          [onnx.ValueInfoProto(name="y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "c.onnx"
    onnx.save(m, src)
    npuc.compile(src, tmp_path / "c.npuc")
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(npuc.load(tmp_path / "c.npuc").run({"x": x})["y"], run_ort(m, {"x": x})[0])
    assert "concat_in_place" not in inspect_dict(str(tmp_path / "c.npuc"))["kernels"]


def test_view_of_a_concat_input_keeps_its_slice(tmp_path):
    """A value that is both a Concat input and viewed elsewhere: the view must read the
    value's own slice of the concat buffer, not the buffer's start."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"]),
             helper.make_node("Unsqueeze", ["a", "ax"], ["au"]), helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             helper.make_node("Concat", ["au", "bu"], ["c"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["y2"]),
             helper.make_node("Exp", ["x"], ["e"])]   # keeps x alive: nothing runs in place on it
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [onnx.ValueInfoProto(name="c"), onnx.ValueInfoProto(name="y2"),
                           onnx.ValueInfoProto(name="e")],
                          initializer=[numpy_helper.from_array(np.array([0], np.int64), "ax")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp_path / "v.onnx"
    onnx.save(m, src)
    npuc.compile(src, tmp_path / "v.npuc")
    x = rng.standard_normal((2, 3)).astype(np.float32)
    got = npuc.load(tmp_path / "v.npuc").run({"x": x})
    want = run_ort(m, {"x": x})
    assert "concat_in_place" in inspect_dict(str(tmp_path / "v.npuc"))["kernels"]
    np.testing.assert_array_equal(got["c"], want[0])
    np.testing.assert_array_equal(got["y2"], want[1])


def test_a_value_in_two_concats_is_in_place_in_one_only(tmp_path):
    """A tensor read by two Concats (other readers are allowed): it sits in one Concat's
    buffer; the other Concat copies it. Both outputs stay right."""
    w = numpy_helper.from_array((rng.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["r"]), helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Concat", ["r", "a"], ["y1"], axis=1),
             helper.make_node("Concat", ["b", "r"], ["y2"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [onnx.ValueInfoProto(name="y1"), onnx.ValueInfoProto(name="y2")], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    npuc.compile(tmp_path / "m.onnx", tmp_path / "m.npuc")
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})
    for name, ref in zip(("y1", "y2"), run_ort(m, {"x": x})):
        np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-6)
    assert inspect_dict(str(tmp_path / "m.npuc"))["kernels"].get("concat_in_place", 0) <= 1
