"""The test-model zoo builds valid, realistic ONNX models that onnxruntime runs."""

import functools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from . import zoo

ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]

# name -> (builder, kwargs at a small resolution)
SMALL = {
    "mobilenet_v2": (zoo.mobilenet_v2, {"resolution": 96}),
    "resnet18": (zoo.resnet18, {"resolution": 64}),
    "yolo_like": (zoo.yolo_like, {"resolution": 128}),
    "multi_io": (zoo.multi_io_branching, {}),
    "tiny_cnn": (zoo.tiny_cnn, {}),
}
BN_MODELS = ["mobilenet_v2", "resnet18", "yolo_like", "multi_io"]


@functools.lru_cache(maxsize=None)
def build(name, fold_bn=False, **kw):
    fn, small = SMALL[name]
    args = {**small, **kw}
    if name != "tiny_cnn":
        args["fold_bn"] = fold_bn
    return fn(**args)


@functools.lru_cache(maxsize=None)
def session(name, fold_bn=False):
    return ort.InferenceSession(build(name, fold_bn).SerializeToString(), providers=["CPUExecutionProvider"])


def run(name, fold_bn=False, seed=0):
    sess = session(name, fold_bn)
    feeds = zoo.random_inputs(build(name, fold_bn), seed=seed)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def op_counts(model):
    return Counter(n.op_type for n in model.graph.node)


def attrs_of(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def check_structure(model):
    onnx.checker.check_model(model, full_check=True)
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names), "node names must be unique and non-empty"
    produced = [o for n in model.graph.node for o in n.output]
    assert len(set(produced)) == len(produced)


def check_outputs(outs):
    for name, y in outs.items():
        assert y.dtype == np.float32, name
        assert np.isfinite(y).all(), name
        assert y.std() > 1e-2, f"{name} is (nearly) constant"
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        assert 0.05 < rms < 20, f"{name}: rms {rms} is not O(1)"


def test_registry():
    assert set(zoo.MODELS) == set(SMALL)
    assert zoo.MODELS["multi_io"] is zoo.multi_io_branching


@pytest.mark.parametrize("fold_bn", [False, True])
@pytest.mark.parametrize("name", list(SMALL))
def test_valid_and_runs(name, fold_bn):
    if fold_bn and name == "tiny_cnn":
        pytest.skip("tiny_cnn has no BN")
    model = build(name, fold_bn)
    check_structure(model)
    check_outputs(run(name, fold_bn))
    ops = op_counts(model)
    if name in BN_MODELS:
        assert ("BatchNormalization" in ops) != fold_bn
    if fold_bn:
        for n in model.graph.node:  # folded convs carry a bias
            if n.op_type == "Conv":
                assert len(n.input) == 3


@pytest.mark.parametrize("name", BN_MODELS)
def test_folding_preserves_function(name):
    a, b = run(name, False), run(name, True)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-3 * float(np.abs(a[k]).max()))


@pytest.mark.parametrize("name", list(SMALL))
def test_outputs_depend_on_input(name):
    a, b = run(name, seed=1), run(name, seed=2)
    for k in a:
        c = np.corrcoef(a[k].ravel(), b[k].ravel())[0, 1]
        assert c < 0.9, f"{k}: outputs barely depend on the input (corr {c:.3f})"


def test_deterministic():
    assert zoo.tiny_cnn(seed=3).SerializeToString() == zoo.tiny_cnn(seed=3).SerializeToString()
    assert zoo.tiny_cnn(seed=3).SerializeToString() != zoo.tiny_cnn(seed=4).SerializeToString()


def _params(model):
    """Trainable parameter count as torch reports it (no BN running statistics)."""
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if "running_" not in t.name)


def test_mobilenet_v2_architecture():
    m = build("mobilenet_v2")
    assert _params(m) == 3_504_872  # torchvision mobilenet_v2
    ops = op_counts(m)
    assert ops["Conv"] == 52 and ops["BatchNormalization"] == 52 and ops["Clip"] == 35 and ops["Add"] == 10
    assert "Relu" not in ops and ops["GlobalAveragePool"] == 1 and ops["Flatten"] == 1 and ops["Gemm"] == 1
    dw = [n for n in m.graph.node if n.op_type == "Conv" and attrs_of(n)["group"] > 1]
    assert len(dw) == 17
    clip = next(n for n in m.graph.node if n.op_type == "Clip")
    assert len(clip.input) == 3
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    assert attrs_of(gemm)["transB"] == 1
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 1000]
    names = {n.name for n in m.graph.node}
    assert "/features/features.1/conv/conv.0/conv.0.0/Conv" in names
    half = zoo.mobilenet_v2(width=0.5, resolution=64, num_classes=10)
    assert [d.dim_value for d in half.graph.output[0].type.tensor_type.shape.dim] == [1, 10]


def test_resnet18_architecture():
    m = build("resnet18")
    assert _params(m) == 11_689_512  # torchvision resnet18
    ops = op_counts(m)
    assert ops["Conv"] == 20 and ops["BatchNormalization"] == 20 and ops["Add"] == 8 and ops["Relu"] == 17
    assert ops["MaxPool"] == 1 and ops["Gemm"] == 1
    stem = m.graph.node[0]
    attrs = attrs_of(stem)
    assert attrs["kernel_shape"] == [7, 7] and attrs["strides"] == [2, 2] and attrs["pads"] == [3] * 4
    assert "/layer2/layer2.0/downsample/downsample.0/Conv" in {n.name for n in m.graph.node}


def test_yolo_like_structure():
    m = build("yolo_like")
    ops = op_counts(m)
    assert ops["Sigmoid"] == ops["Mul"] == ops["BatchNormalization"] == 57
    assert ops["Resize"] == 2 and ops["MaxPool"] == 3 and ops["Concat"] >= 10 and ops["Add"] >= 6
    assert ops["Shape"] and ops["Gather"] and ops["Reshape"] == 3 and ops["Transpose"] == 3
    shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output]
    assert shapes == [[1, 3, 16, 16, 25], [1, 3, 8, 8, 25], [1, 3, 4, 4, 25]]  # strides 8/16/32
    resize = next(n for n in m.graph.node if n.op_type == "Resize")
    assert attrs_of(resize)["mode"] == b"nearest"
    with pytest.raises(ValueError):
        zoo.yolo_like(resolution=100)


def test_multi_io_structure():
    m = build("multi_io")
    assert [i.name for i in m.graph.input] == ["image", "vector"]
    assert len(m.graph.output) >= 3
    ops = op_counts(m)
    for op in ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Transpose", "Flatten", "Gemm", "Softmax",
               "Add", "Split"]:
        assert ops[op] >= 1, op
    probs = run("multi_io")["probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("opset", [11, 12, 13, 18, 21])
def test_other_opsets(opset):
    for model in (
        zoo.multi_io_branching(opset=opset, fold_bn=opset % 2 == 1),
        zoo.yolo_like(resolution=64, opset=opset, fold_bn=opset % 2 == 0),
        zoo.mobilenet_v2(width=0.35, resolution=32, num_classes=8, opset=opset),
    ):
        assert model.opset_import[0].version == opset
        check_structure(model)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, zoo.random_inputs(model))
        assert all(np.isfinite(o).all() for o in outs)
    with pytest.raises(ValueError):
        zoo.tiny_cnn(opset=9)


def test_random_inputs():
    m = build("multi_io")
    a = zoo.random_inputs(m, seed=5)
    assert {k: v.shape for k, v in a.items()} == {"image": (1, 3, 64, 64), "vector": (1, 16)}
    assert all(v.dtype == np.float32 for v in a.values())
    b = zoo.random_inputs(m, seed=5, n=4)
    assert {k: v.shape for k, v in b.items()} == {"image": (4, 1, 3, 64, 64), "vector": (4, 1, 16)}
    np.testing.assert_array_equal(zoo.random_inputs(m, seed=5)["image"], a["image"])


def test_save_and_make_zoo_script(tmp_path):
    m = build("tiny_cnn")
    zoo.save(m, tmp_path / "t.onnx")
    assert onnx.load(str(tmp_path / "t.onnx")).graph == m.graph
    out = tmp_path / "zoo"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_zoo.py"), str(out), "--names", "tiny_cnn", "multi_io"],
        check=True, capture_output=True, text=True,
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "multi_io.inputs.npz", "multi_io.onnx", "tiny_cnn.inputs.npz", "tiny_cnn.onnx"
    ]
    data = np.load(out / "multi_io.inputs.npz")
    assert data["image"].shape == (4, 1, 3, 64, 64)
    onnx.checker.check_model(str(out / "multi_io.onnx"), full_check=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "yolo_like"])
def test_full_resolution(name):
    results = []
    for fold_bn in (False, True):
        model = zoo.MODELS[name](fold_bn=fold_bn)  # 224 / 224 / 320
        check_structure(model)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, zoo.random_inputs(model))))
        check_outputs(outs)
        results.append(outs)
    for k, a in results[0].items():
        np.testing.assert_allclose(results[1][k], a, rtol=1e-3, atol=1e-3 * float(np.abs(a).max()))
