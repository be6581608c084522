"""Preprocessing folded into the model, against the same steps done by hand in numpy and
the original model run by onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.errors import OptionError

from ..ops.ort_check import run_ort

DATA = Path(__file__).resolve().parents[1] / "data"


def _ort(path, x):
    import onnx

    return run_ort(onnx.load(str(path)), {"input": x})


def test_uint8_nhwc_swaprb_mean_std(tmp_path):
    src = DATA / "mtcnn_pnet" / "model.onnx"
    out = tmp_path / "p.npuc"
    npuc.compile(src, out, input_type="uint8", input_layout="NHWC", swap_rb=True, mean=(127.5,), std=(128.0,))
    sess = npuc.load(out)
    assert sess.inputs[0].shape == (1, 120, 160, 3) and sess.inputs[0].dtype == np.uint8
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (1, 120, 160, 3)).astype(np.uint8)
    # by hand: BGR->RGB, NHWC->NCHW, (x - 127.5) / 128
    x = ((raw[..., ::-1].astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()
    want = _ort(src, x)
    got = sess.run({"input": raw})
    for w, o in zip(want, sess.outputs):
        np.testing.assert_allclose(got[o.name], w, rtol=1e-4, atol=1e-4)


def test_input_range_and_letterbox(tmp_path):
    src = DATA / "mtcnn_pnet" / "model.onnx"
    out = tmp_path / "p.npuc"
    npuc.compile(src, out, input_type="uint8", input_range=(-1.0, 1.0), image_size=(60, 60), letterbox_value=0.5)
    sess = npuc.load(out)
    assert sess.inputs[0].shape == (1, 3, 60, 60)
    raw = np.random.default_rng(1).integers(0, 256, (1, 3, 60, 60)).astype(np.uint8)
    f = -1.0 + raw.astype(np.float32) * (2.0 / 255)
    # 60x60 into 120x160: scale 2 → 120x120, padded 20 columns each side with 0.5
    import onnx
    from onnx import helper

    resize = helper.make_model(helper.make_graph(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                          coordinate_transformation_mode="half_pixel")], "r",
        [helper.make_tensor_value_info("x", 1, [1, 3, 60, 60])], [onnx.ValueInfoProto(name="y")],
        initializer=[onnx.numpy_helper.from_array(np.array([1, 3, 120, 120], np.int64), "sizes")]),
        opset_imports=[helper.make_opsetid("", 17)])
    resize.ir_version = 8
    r = run_ort(resize, {"x": f})[0]
    x = np.full((1, 3, 120, 160), 0.5, np.float32)
    x[:, :, :, 20:140] = r
    want = _ort(src, x)
    got = sess.run({"input": raw})
    for w, o in zip(want, sess.outputs):
        np.testing.assert_allclose(got[o.name], w, rtol=1e-4, atol=1e-4)


def test_preprocessing_is_quantized_with_the_model(tmp_path):
    d = DATA / "mtcnn_pnet"
    calib = np.load(d / "calib.npz")["input"]
    raw = np.clip(np.rint(calib.transpose(0, 1, 3, 4, 2) * 128 + 127.5), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "raw.npz", input=raw)
    out = tmp_path / "q.npuc"
    npuc.compile(d / "model.onnx", out, input_type="uint8", input_layout="NHWC", mean=(127.5,), std=(128.0,),
                 dataset=str(tmp_path / "raw.npz"))
    sess = npuc.load(out)
    test = np.load(d / "test.npz")["input"]
    ref = np.load(d / "ref.npz")
    x = np.clip(np.rint(test[0].transpose(0, 2, 3, 1) * 128 + 127.5), 0, 255).astype(np.uint8)
    got = sess.run({"input": x})
    g = got["box_reg"].ravel().astype(np.float64)
    w = ref["box_reg"][0].ravel().astype(np.float64)
    assert g @ w / np.linalg.norm(g) / np.linalg.norm(w) > 0.98


def test_bad_options(tmp_path):
    src = DATA / "mtcnn_pnet" / "model.onnx"
    with pytest.raises(OptionError, match="channels"):
        npuc.compile(src, tmp_path / "x.npuc", mean=(1.0, 2.0))
    with pytest.raises(OptionError, match="integer --input-type"):
        npuc.compile(src, tmp_path / "x.npuc", input_range=(0.0, 1.0))
