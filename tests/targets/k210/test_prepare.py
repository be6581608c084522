"""The k210 float-graph preparation (npuc/targets/k210/prepare.py): layers with more than
1024 input channels split onto the KPU with the partial sums added on the CPU, average
pools sharing their convolution's range; and P-Net end to end. Checked against
onnxruntime's float results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import npuc
from npuc.format.reader import read_program
from npuc.frontends import load_model
from npuc.ops.registry import get_op
from npuc.passes.pipelines import pipeline_for
from npuc.targets.k210.prepare import _parts

DATA = Path(__file__).resolve().parents[2] / "data"


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _wide_net(seed=0):
    """32x32 image → 3x3/2 conv(16) → 1x1 conv(1100) → 3x3 conv(32) on 1100 inputs → 1x1
    conv(1280) → GAP → fc 1280→10: one convolution and one fully-connected layer past the
    KPU's 1024 input channels."""
    from tests.models import zoo

    b = zoo._Builder(17, seed, False)
    x = zoo._image_input(b, 32)
    x = zoo._relu6(b, zoo._conv_bn(b, x, 16, 3, 2, 1, conv="stem", bn="stem_bn"), "stem_act")
    x = zoo._relu6(b, zoo._conv_bn(b, x, 1100, 1, 1, 0, conv="expand", bn="expand_bn"), "expand_act")
    x = zoo._relu(b, zoo._conv_bn(b, x, 32, 3, 1, 1, conv="wide", bn="wide_bn"), "wide_act")
    x = zoo._relu6(b, zoo._conv_bn(b, x, 1280, 1, 1, 0, conv="last", bn="last_bn"), "last_act")
    x = zoo._flatten(b, zoo._gap(b, x, zoo._scope("pool")), "")
    b.output(zoo._gemm(b, x, 10, module="fc"), "output")
    return b.finish("wide inputs")


def test_parts_are_balanced_and_within_the_limit():
    assert _parts(1100) == [(0, 552), (552, 1100)]
    assert _parts(1280) == [(0, 640), (640, 1280)]
    assert _parts(2048) == [(0, 1024), (1024, 2048)]
    assert _parts(3000) == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert _parts(1024) == [(0, 1024)]


def _run(g, feeds):
    env = dict(feeds)
    for n in g.nodes:
        ins = [None if v is None else (v.const if v.is_const else env[v.name]) for v in n.inputs]
        for o, r in zip(n.outputs, get_op(n.op).run(ins, n.attrs)):
            env[o.name] = r
    return [env[v.name] for v in g.outputs]


def test_split_keeps_the_float_semantics(tmp_path):
    """The split graph computes what the model computes (registry semantics vs onnxruntime)."""
    import onnxruntime as ort

    from tests.models import zoo

    m = _wide_net()
    zoo.save(m, tmp_path / "m.onnx")
    g = load_model(tmp_path / "m.onnx")
    pipeline_for("k210", quantize=True, equalize=False).run(g, verify_each=True)
    ops = g.op_counts()
    assert ops.get("Split") == 2 and ops.get("Conv") == 5 and ops.get("Gemm") == 2
    assert all(n.inputs[0].shape[1] <= 1024 for n in g.nodes if n.op in ("Conv", "Gemm"))
    x = zoo.random_inputs(m, seed=3)["input"]
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run(g, {"input": x})[0], ref.run(None, {"input": x})[0], rtol=1e-4, atol=1e-4)


def test_wide_layers_run_on_the_kpu(tmp_path):
    import onnxruntime as ort

    from tests.models import zoo

    m = _wide_net()
    zoo.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **zoo.random_inputs(m, seed=1, n=8))
    npuc.compile(tmp_path / "m.onnx", tmp_path / "k.npuc", target="k210", dataset=str(tmp_path / "c.npz"))
    prog = read_program(tmp_path / "k.npuc")
    kpu = [o for o in prog.ops if o.op == "KpuConv"]
    names = [o.name for o in kpu]
    for layer in ("/wide/Conv", "/fc/Gemm"):       # both parts of both wide layers on the KPU
        assert sum(n.startswith(layer + "/in") for n in names) == 2, (layer, names)
    assert not any(o.op in ("QConv", "QGemm") for o in prog.ops)
    reasons = prog.meta["k210"]["reasons"]
    assert any("partial sums" in r for r in reasons.values())
    sk = npuc.load(tmp_path / "k.npuc")
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    xs = zoo.random_inputs(m, seed=7, n=6)["input"]
    f = np.stack([ref.run(None, {"input": x})[0] for x in xs])
    k = np.stack([sk.run({"input": x})["output"] for x in xs])
    # the cpu target, unsplit, for comparison: the partial sums' extra rounding costs < 0.005
    npuc.compile(tmp_path / "m.onnx", tmp_path / "c.npuc", target="cpu", dataset=str(tmp_path / "c.npz"),
                 equalize=False)
    sc = npuc.load(tmp_path / "c.npuc")
    c = np.stack([sc.run({"input": x})["output"] for x in xs])
    assert _cos(k, f) >= 0.98 and _cos(k, f) >= _cos(c, f) - 0.005, (_cos(k, f), _cos(c, f))
    assert min(_cos(k[i], f[i]) for i in range(len(xs))) >= 0.975


def test_pnet_runs_on_the_kpu(tmp_path):
    """MTCNN's P-Net: per-channel PReLU after every convolution, and a max pool after the
    first. Everything but the input quantize, the softmax and the output dequantizes runs on
    the KPU (the PReLUs in the layers' activation tables, one region per slope); the
    estimated time on the chip is a few ms (311 ms with the convolutions on the CPU) and the
    outputs stay as close to float as the cpu target's."""
    d = DATA / "mtcnn_pnet"
    npuc.compile(d / "model.onnx", tmp_path / "k.npuc", target="k210", dataset=str(d / "calib.npz"))
    prog = read_program(tmp_path / "k.npuc")
    assert {o.op for o in prog.ops} - {"KpuConv", "KpuUpload", "KpuDownload"} == {
        "QuantizeLinear", "Softmax", "DequantizeLinear"}
    assert [o.attrs["act"] for o in prog.ops if o.op == "KpuConv"].count("PRelu") == 3
    from npuc.cli import inspect_dict

    assert inspect_dict(str(tmp_path / "k.npuc"))["placement"]["totals"]["est_ms"] < 10
    sk = npuc.load(tmp_path / "k.npuc")
    test, ref = dict(np.load(d / "test.npz")), dict(np.load(d / "ref.npz"))
    n = len(next(iter(test.values())))
    runs = [sk.run({k: v[i] for k, v in test.items()}) for i in range(n)]
    for name, r in ref.items():
        got = np.stack([o[name] for o in runs])
        assert _cos(got, r) >= 0.995, (name, _cos(got, r))
        assert min(_cos(got[i], r[i]) for i in range(n)) >= 0.99


def test_average_pool_runs_in_the_kpu_layer(tmp_path):
    """Conv → Relu → AveragePool 2x2/2 → Conv: the k210 quantizer gives the pool its input's
    range, the lowering fuses it as the layer's mean pool; the result stays close to float."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.2).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["y"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((8, 1, 3, 32, 32)).astype(np.float32))
    npuc.compile(tmp_path / "m.onnx", tmp_path / "k.npuc", target="k210", dataset=str(tmp_path / "c.npz"))
    prog = read_program(tmp_path / "k.npuc")
    assert not any(o.op == "QAvgPool" for o in prog.ops)
    assert [o.attrs["pool"] for o in prog.ops if o.op == "KpuConv"] == ["mean_2_s2", "bypass"]
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    sk = npuc.load(tmp_path / "k.npuc")
    for seed in range(3):
        x = np.random.default_rng(100 + seed).standard_normal((1, 3, 32, 32)).astype(np.float32)
        assert _cos(sk.run({"x": x})["y"], ref.run(None, {"x": x})[0]) >= 0.995
