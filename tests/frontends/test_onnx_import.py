"""ONNX import: signature handling, dynamic dimensions, unsupported ops, constants."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.errors import ModelImportError, UnsupportedOpError
from npuc.frontends.onnx import import_onnx
from npuc.runtime.interpreter import interpret


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_unsupported_ops_listed_once():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], name="f1"),
             helper.make_node("FancyOp", ["a"], ["b"], name="f2"),
             helper.make_node("OtherOp", ["b"], ["c"], name="o1"),
             helper.make_node("Relu", ["c"], ["y"], name="r")]
    with pytest.raises(UnsupportedOpError) as ei:
        import_onnx("m.onnx", model=_model(nodes, [x], [y]))
    msg = str(ei.value)
    assert "FancyOp" in msg and "OtherOp" in msg and "f1" in msg and "f2" in msg and "o1" in msg
    assert "opset 17" in msg and "2 unsupported op type" in msg
    assert {t for t, _, _ in ei.value.unsupported} == {"FancyOp", "OtherOp"}


def test_custom_domain_is_unsupported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")]
    m = _model(nodes, [x], [y])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError, match="com.example.Relu"):
        import_onnx("m.onnx", model=m)


def test_dynamic_dimension_needs_input_shape():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    with pytest.raises(ModelImportError) as ei:
        import_onnx("m.onnx", model=m)
    msg = str(ei.value)
    assert "'x'" in msg and "dimension 0" in msg and "'batch'" in msg and "--input-shape x:N,3,8,8" in msg
    g = import_onnx("m.onnx", model=m, input_shapes={"x": [2, 3, 8, 8]})
    assert g.inputs[0].shape == (2, 3, 8, 8) and g.outputs[0].shape == (2, 3, 8, 8)


def test_input_shape_errors():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    with pytest.raises(ModelImportError, match="unknown input"):
        import_onnx("m.onnx", model=m, input_shapes={"nope": [1, 3]})
    with pytest.raises(ModelImportError, match="rank"):
        import_onnx("m.onnx", model=m, input_shapes={"x": [1, 3, 1]})
    with pytest.raises(ModelImportError, match="fixes it to 3"):
        import_onnx("m.onnx", model=m, input_shapes={"x": [1, 4]})


def test_input_that_is_also_initializer_is_constant():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [x, w], [y],
               [numpy_helper.from_array(np.array([1, 2], np.float32), "w")])
    g = import_onnx("m.onnx", model=m)
    assert [v.name for v in g.inputs] == ["x"]
    out = interpret(g, {"x": np.array([1, 1], np.float32)})
    np.testing.assert_array_equal(out["y"], [2, 3])


def test_constant_node_and_fold_on_import():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["d0"], axis=0),
        helper.make_node("Unsqueeze", ["d0", "ax"], ["d0u"]),
        helper.make_node("Constant", [], ["m1"], value_ints=[-1]),
        helper.make_node("Concat", ["d0u", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    m = _model(nodes, [x], [y], [numpy_helper.from_array(np.array([0], np.int64), "ax")])
    g = import_onnx("m.onnx", model=m)
    assert [n.op for n in g.nodes] == ["Reshape"]
    assert g.outputs[0].shape == (2, 12)


def test_output_names_kept_when_output_is_an_input():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    m = _model([helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
               [x], [y, z])
    g = import_onnx("m.onnx", model=m)
    assert [v.name for v in g.outputs] == ["y", "z"]
    out = interpret(g, {"x": np.array([-1, 2], np.float32)})
    np.testing.assert_array_equal(out["y"], [-1, 2])


def test_unreadable_file(tmp_path):
    from npuc.frontends import load_model

    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelImportError, match="bad.onnx"):
        load_model(p)
    with pytest.raises(ModelImportError, match="no such file"):
        load_model(tmp_path / "none.onnx")
    (tmp_path / "x.pb").write_bytes(b"")
    with pytest.raises(ModelImportError, match="unknown model format"):
        load_model(tmp_path / "x.pb")


def test_old_opset_imports():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=5)
    g = import_onnx("m.onnx", model=m)
    np.testing.assert_array_equal(interpret(g, {"x": np.array([-1, 2], np.float32)})["y"], [0, 2])
