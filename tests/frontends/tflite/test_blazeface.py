"""BlazeFace short-range (MediaPipe, fp16 weights): import, compile, run test.npz and
compare with ref.npz (TFLite interpreter outputs), live with ai-edge-litert when it is
installed, and through ``npuc compare``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite")

from npuc.api import compile_graph_to_session  # noqa: E402
from npuc.frontends.tflite import import_tflite  # noqa: E402
from npuc.ir.verify import verify  # noqa: E402

CASE = Path(__file__).parents[2] / "data" / "blazeface_short"
MODEL = CASE / "model.tflite"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def blazeface():
    graph = import_tflite(MODEL)
    verify(graph)
    imported = graph.op_counts()
    sess = compile_graph_to_session(graph)
    test = dict(np.load(CASE / "test.npz"))
    outs = [sess.run({"input": x}) for x in test["input"]]
    got = {k: np.stack([o[k] for o in outs]) for k in ("regressors", "classificators")}
    return graph, imported, sess, test, got


def test_import_signature_and_ops(blazeface):
    graph, imported, sess, _, _ = blazeface
    assert [(i.name, i.shape) for i in sess.inputs] == [("input", (1, 128, 128, 3))]
    assert [(o.name, o.shape) for o in sess.outputs] == [("regressors", (1, 896, 16)),
                                                         ("classificators", (1, 896, 1))]
    # fp16 weights folded: no Cast/DEQUANTIZE left, every conv weight is a float32 constant
    assert imported["Conv"] == 37 and "Cast" not in imported
    assert not graph.metadata.get("tflite_shape_mismatches")


def test_transposes_cancel(blazeface):
    """After the cpu pipeline only the input transpose and the four before the NHWC
    reshapes of the detector heads remain (from 48 at import)."""
    graph, imported, _, _, _ = blazeface
    assert imported["Transpose"] > 40
    assert graph.op_counts()["Transpose"] == 5
    assert "Relu" not in graph.op_counts()  # fused into the convolutions and adds


def test_matches_reference_outputs(blazeface):
    _, _, _, _, got = blazeface
    ref = dict(np.load(CASE / "ref.npz"))
    for k in ("regressors", "classificators"):
        assert got[k].shape == ref[k].shape
        assert cosine(got[k], ref[k]) >= 0.99999, k
        assert np.abs(got[k] - ref[k]).max() < 1e-3, k


def test_matches_live_tflite_interpreter(blazeface):
    mod = pytest.importorskip("ai_edge_litert.interpreter")
    _, _, _, test, got = blazeface
    it = mod.Interpreter(model_path=str(MODEL), num_threads=1)
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0], {d["name"]: d["index"] for d in it.get_output_details()}
    for i, x in enumerate(test["input"]):
        it.set_tensor(inp["index"], x)
        it.invoke()
        for k in ("regressors", "classificators"):
            r = it.get_tensor(outs[k])
            assert cosine(got[k][i], r) >= 0.99999
            assert np.abs(got[k][i] - r).max() < 1e-3


def test_cli_compile_and_compare(tmp_path, capsys):
    pytest.importorskip("ai_edge_litert.interpreter")
    from npuc.cli import main

    out = tmp_path / "blazeface.npuc"
    assert main(["compile", str(MODEL), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), "--reference", str(MODEL), "--input", str(CASE / "test.npz"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["samples"] == 8
    for k in ("regressors", "classificators"):
        assert rows["outputs"][k]["cosine"] >= 0.99999
        assert rows["outputs"][k]["max_abs_error"] < 1e-3
