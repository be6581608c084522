"""Regression tests for problems found reviewing the k210 residual-add / PReLU / tiles /
space-to-depth / input-split / copy-free Concat changes. Fixed; kept as regression tests."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import npuc
from npuc.targets.k210.lower import K210Lowering, lower_k210
from tests.targets.k210.test_target import _qconv_graph, _run_graph, _session


@pytest.mark.parametrize("leaky", [0.1, np.linspace(-0.5, 0.5, 8)], ids=["leaky", "per_channel_prelu"])
def test_two_slope_conv_followed_by_clip_keeps_the_clamp(leaky, tmp_path):
    # ONNX Conv -> PRelu/LeakyRelu -> Clip(-0.5, 1) quantizes to exactly this (QConv with neg_multiplier, then a
    # Clip on codes). The two-slope table has no clamp: the Clip stays a CPU op (fused, it was dropped: up to 75
    # codes off).
    g, x = _qconv_graph(np.random.default_rng(3), c=8, m=8, leaky=leaky, clip=(60, 180))
    want = _run_graph(g, {"x": x})
    name = g.outputs[0].name
    kg = K210Lowering(g, use_cost_model=False).run()
    sess, _ = _session(kg, tmp_path)
    got = sess.run({"x": x})[name]
    assert got.min() >= 60 and got.max() <= 180
    assert np.abs(got.astype(int) - want[name].astype(int)).max() <= 1


def test_large_7x7_stem_does_not_break_the_compile():
    # a ResNet stem (3 -> 64, 7x7/2, pad 3) at 256x256: its space-to-depth maps need 2.8 MB > 2 MB of AI SRAM
    # (the compile used to fail with KpuMemoryError); it runs as tiles of the space-to-depth tensor
    g, x = _qconv_graph(np.random.default_rng(0), c=3, m=64, k=7, h=256, w=256, stride=2, pads=3)
    want = _run_graph(g, {"x": x})
    kg = lower_k210(g)
    ups = [n for n in kg.nodes if n.op == "KpuUpload"]
    assert len(ups) >= 2 and all(u.attrs["space_to_depth"] is not None for u in ups)
    assert not any(n.op == "QConv" for n in kg.nodes)
    name = g.outputs[0].name
    got = _run_graph(kg, {"x": x})[name]
    d = np.abs(got.astype(int) - want[name].astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-5          # near-ties of the rounding only


def test_copy_free_concat_of_two_views_of_one_tensor(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "cw"], ["r"]), helper.make_node("Flatten", ["r"], ["a"]),
             helper.make_node("Reshape", ["r", "shp"], ["b"]), helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), "cw"),
             numpy_helper.from_array(np.array([1, 32], np.int64), "shp")]
    gr = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    onnx.save(helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    npuc.compile(tmp_path / "m.onnx", tmp_path / "m.npuc", target="cpu")
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})["y"]
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_wide_gemm_with_leaky_relu_compiles(tmp_path):
    rng = np.random.default_rng(0)
    k = 1100
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"]), helper.make_node("LeakyRelu", ["g"], ["y"], alpha=0.1)]
    inits = [numpy_helper.from_array((rng.standard_normal((k, 10)) * 0.05).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal(10) * 0.1).astype(np.float32), "b")]
    gr = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((8, 1, k)).astype(np.float32))
    npuc.compile(tmp_path / "m.onnx", tmp_path / "k.npuc", target="k210", dataset=str(tmp_path / "c.npz"))


@pytest.mark.parametrize("zy, slopes", [(100, [0.3, 0.1]), (100, [-0.2, -0.5])])
def test_prelu_table_segment_zero_covers_every_v(zy, slopes):
    from npuc.targets.k210.prelu_table import prelu_tables
    from npuc.targets.k210.spec import ACT_START_MIN

    m = len(slopes)
    _, _, _, v_lo, _, act, _ = prelu_tables(np.full(m, 1e-3), np.zeros(m), (0.05, zy), np.full(m, 60000), slopes)
    assert act.start[0] == ACT_START_MIN or v_lo > act.start[0]
