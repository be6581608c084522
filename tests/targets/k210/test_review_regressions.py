"""Regression tests for problems found reviewing the k210 residual-add / PReLU / tiles /
space-to-depth / input-split / copy-free Concat changes. Each is xfail(strict) until fixed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import npuc
from npuc.targets.k210.lower import K210Lowering, lower_k210
from tests.targets.k210.test_target import _qconv_graph, _run_graph, _session


@pytest.mark.xfail(strict=True, reason="a Clip node after a conv with a fused LeakyRelu/PReLU is fused into the KPU "
                                       "layer but layer_specs._activation ignores its bounds (clamp dropped)")
@pytest.mark.parametrize("leaky", [0.1, np.linspace(-0.5, 0.5, 8)], ids=["leaky", "per_channel_prelu"])
def test_two_slope_conv_followed_by_clip_keeps_the_clamp(leaky, tmp_path):
    # ONNX Conv -> PRelu/LeakyRelu -> Clip(-0.5, 1) quantizes to exactly this (QConv with neg_multiplier, then a
    # Clip on codes); the k210 result came out up to 75 codes off, outside the Clip's range.
    g, x = _qconv_graph(np.random.default_rng(3), c=8, m=8, leaky=leaky, clip=(60, 180))
    want = _run_graph(g, {"x": x})
    name = g.outputs[0].name
    kg = K210Lowering(g, use_cost_model=False).run()
    sess, _ = _session(kg, tmp_path)
    got = sess.run({"x": x})[name]
    assert got.min() >= 60 and got.max() <= 180
    assert np.abs(got.astype(int) - want[name].astype(int)).max() <= 1


@pytest.mark.xfail(strict=True, reason="7x7 stride-2 stems go through space-to-depth without the AI SRAM size check "
                                       "(try_kpu skips tiling and TILE_ABOVE_BYTES for s2d): the compile fails")
def test_large_7x7_stem_does_not_break_the_compile():
    # a ResNet stem (3 -> 64, 7x7/2, pad 3) at 256x256: maps 2.8 MB > 2 MB AI SRAM; before the 7x7 change the
    # layer ran on the CPU, now lower_k210 raises KpuMemoryError
    g, _ = _qconv_graph(np.random.default_rng(0), c=3, m=64, k=7, h=256, w=256, stride=2, pads=3)
    lower_k210(g)


@pytest.mark.xfail(strict=True, reason="lowering.concat_in_place accepts two inputs of one buffer group (two views "
                                       "of one tensor): both land at the same offset, the second slice is never written")
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


@pytest.mark.xfail(strict=True, reason="split_wide_inputs moves a fused LeakyRelu off the split layer into its own "
                                       "node; the quantizer's standalone LeakyRelu (_prelu: int() of a 1-element "
                                       "array) raises TypeError, so the k210 compile crashes")
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


@pytest.mark.xfail(strict=True, reason="prelu_tables starts segment 0 at the first region's negative line, not at "
                                       "ACT_START_MIN: BN outputs below it have no segment (the emulator falls back "
                                       "to segment 0; the hardware's behaviour there is undocumented)")
@pytest.mark.parametrize("zy, slopes", [(100, [0.3, 0.1]), (100, [-0.2, -0.5])])
def test_prelu_table_segment_zero_covers_every_v(zy, slopes):
    from npuc.targets.k210.prelu_table import prelu_tables
    from npuc.targets.k210.spec import ACT_START_MIN

    m = len(slopes)
    _, _, _, v_lo, _, act, _ = prelu_tables(np.full(m, 1e-3), np.zeros(m), (0.05, zy), np.full(m, 60000), slopes)
    assert act.start[0] == ACT_START_MIN or v_lo > act.start[0]
