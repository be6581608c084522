"""Per-op checking against onnxruntime: build a one-node ONNX model, run it with
onnxruntime and with npuc (import → reference interpreter, and import → compile → Session
once the runtime exists), and compare.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxruntime as ort

from npuc.frontends.onnx import import_onnx
from npuc.ir.dtypes import NUMPY_TO_ONNX
from npuc.runtime.interpreter import interpret


def make_model(op_type: str, inputs: dict[str, np.ndarray], attrs: dict | None = None, *,
               n_outputs: int = 1, opset: int = 17, const_inputs: tuple[str, ...] = (),
               input_order: list[str] | None = None, domain: str = "") -> onnx.ModelProto:
    """A one-node model. ``inputs`` maps names to arrays (in order; None = absent slot);
    names in ``const_inputs`` become initializers."""
    names = input_order or list(inputs)
    graph_inputs, inits, node_inputs = [], [], []
    for n in names:
        a = inputs[n]
        if a is None:
            node_inputs.append("")
            continue
        node_inputs.append(n)
        a = np.asarray(a)
        if n in const_inputs:
            inits.append(numpy_helper.from_array(a, n))
        else:
            graph_inputs.append(helper.make_tensor_value_info(n, NUMPY_TO_ONNX[a.dtype], a.shape))
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, node_inputs, outs, name=f"{op_type.lower()}_node", domain=domain,
                            **(attrs or {}))
    graph = helper.make_graph([node], f"{op_type}_test", graph_inputs,
                              [onnx.ValueInfoProto(name=o) for o in outs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {k: feeds[k] for k in names})


def run_npuc_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    g = import_onnx("<test>", model=model)
    res = interpret(g, {v.name: feeds[v.name] for v in g.inputs})
    return [res[v.name] for v in g.outputs]


def assert_close(got, want, *, rtol=1e-5, atol=1e-5, what=""):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != onnxruntime {want.shape}"
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=what)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                                   err_msg=what)


def check_op(op_type: str, inputs: dict[str, np.ndarray], attrs: dict | None = None, *,
             n_outputs: int = 1, opset: int = 17, const_inputs: tuple[str, ...] = (),
             rtol=1e-5, atol=1e-5, runtime: bool = True):
    """Compare npuc against onnxruntime on one node: the reference interpreter always,
    and the compiled runtime (Session) when ``runtime`` is true and it is available."""
    model = make_model(op_type, inputs, attrs, n_outputs=n_outputs, opset=opset, const_inputs=const_inputs)
    feeds = {k: np.asarray(v) for k, v in inputs.items() if v is not None and k not in const_inputs}
    want = run_ort(model, feeds)
    got = run_npuc_reference(model, feeds)
    assert len(got) == len(want), f"{op_type}: npuc gives {len(got)} outputs, onnxruntime {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, rtol=rtol, atol=atol, what=f"{op_type} output {i} (reference kernel)")
    if runtime:
        got_rt = run_npuc_compiled(model, feeds)
        assert len(got_rt) == len(want)
        for i, (g, w) in enumerate(zip(got_rt, want)):
            assert_close(g, w, rtol=rtol, atol=atol, what=f"{op_type} output {i} (compiled runtime)")
    return want


def run_npuc_compiled(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """Compile the model with npuc and run it with the Session."""
    from npuc.api import compile_graph_to_session

    g = import_onnx("<test>", model=model)
    sess = compile_graph_to_session(g)
    res = sess.run({v.name: feeds[v.name] for v in sess.inputs})
    return [res[v.name] for v in sess.outputs]
