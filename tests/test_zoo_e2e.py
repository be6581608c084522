"""End to end on MobileNetV2-, ResNet-18-, YOLO-like and a multi-input/multi-output
branching network, exported the way PyTorch exports them (BatchNorm not folded): npuc's
compiled model matches onnxruntime, and the optimized graph has no BatchNormalization and
no standalone activation after a convolution."""
from __future__ import annotations

import numpy as np
import pytest

import npuc
from npuc.cli import compare_outputs, inspect_dict
from npuc.frontends.onnx import import_onnx
from npuc.ops.registry import ops_with_flag
from npuc.passes.pipelines import cpu_pipeline

from .models import zoo
from .ops.ort_check import run_ort

CASES = {
    "mobilenet_v2": lambda: zoo.mobilenet_v2(resolution=96, num_classes=100),
    "resnet18": lambda: zoo.resnet18(resolution=64, num_classes=100),
    "yolo_like": lambda: zoo.yolo_like(resolution=128),
    "multi_io": lambda: zoo.multi_io_branching(),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    model = CASES[request.param]()
    d = tmp_path_factory.mktemp(request.param)
    src = d / "model.onnx"
    zoo.save(model, src)
    out = d / "model.npuc"
    report = npuc.compile(src, out)
    return request.param, model, src, out, report


def test_matches_onnxruntime(built):
    name, model, _, out, _ = built
    sess = npuc.load(out)
    for seed in range(2):
        feeds = zoo.random_inputs(model, seed=seed)
        want = dict(zip([o.name for o in model.graph.output], run_ort(model, feeds)))
        got = sess.run(feeds)
        assert set(got) == set(want)
        for k, r in compare_outputs(got, want).items():
            rng = float(np.ptp(want[k])) or 1.0
            assert r["cosine"] >= 0.99999, (name, k, r)
            assert r["max_abs_error"] <= 1e-4 * max(rng, 1.0), (name, k, r)


def test_no_batchnorm_and_no_standalone_activation_after_conv(built):
    name, model, _, _, _ = built
    g = import_onnx("<zoo>", model=model)
    assert any(n.op == "BatchNormalization" for n in g.nodes)
    cpu_pipeline().run(g, verify_each=True)
    acts = ops_with_flag("activation") | {"PRelu"}
    assert not any(n.op == "BatchNormalization" for n in g.nodes), name
    for n in g.nodes:
        if n.op in acts:
            prod = n.inputs[0].producer
            assert prod is None or prod.op not in ("Conv", "ConvTranspose", "Gemm"), \
                f"{name}: standalone {n.op} after {prod.op} {prod.name}"


def test_planner_and_report(built):
    name, _, _, out, report = built
    info = inspect_dict(str(out))
    m = info["memory"]
    assert m["lower_bound_bytes"] <= m["arena_bytes"] <= 1.10 * m["lower_bound_bytes"], (name, m)
    assert report.ops_after and sum(report.ops_after.values()) < sum(report.ops_before.values())


def test_multi_io_signature(built):
    name, model, _, out, _ = built
    if name != "multi_io":
        pytest.skip("multi-input case only")
    sess = npuc.load(out)
    assert [s.name for s in sess.inputs] == [i.name for i in model.graph.input]
    assert [s.name for s in sess.outputs] == [o.name for o in model.graph.output]
    assert len(sess.inputs) >= 2 and len(sess.outputs) >= 3
