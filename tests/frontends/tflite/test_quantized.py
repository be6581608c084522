"""Full-integer (int8/uint8) TFLite models: per-op models written with the schema builder and
the committed int8 classifier (tests/data/tflite_int8), npuc against the TFLite interpreter.

TFLite requantizes with gemmlowp's two roundings (ties away from zero), npuc with one (half
up), so codes may differ by one step; every test prints the fraction of exactly equal codes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .tflite_builder import ACT, SAME, VALID, ModelBuilder, run_npuc, run_tflite

pytest.importorskip("ai_edge_litert.interpreter")

DATA = Path(__file__).resolve().parents[2] / "data" / "tflite_int8"
I8 = np.int8


def codes(shape, seed, dtype=I8):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(dtype)


def qweights(shape, seed, axis=0):
    """Per-channel symmetric int8 weights (zero point 0) and their scales along ``axis``."""
    w = np.random.default_rng(seed).integers(-127, 128, size=shape).astype(I8)
    n = shape[axis]
    s = np.random.default_rng(seed + 1).uniform(0.002, 0.02, n).astype(np.float32)
    return w, (s, np.zeros(n, np.int64), axis)


def compare(data: bytes, feeds: dict, *, max_steps: int = 1) -> float:
    ref = run_tflite(data, feeds)
    got = run_npuc(data, feeds)
    assert set(ref) == set(got)
    eq = total = 0
    for k, r in ref.items():
        g = got[k]
        assert g.shape == r.shape and g.dtype == r.dtype, (k, g.shape, r.shape, g.dtype, r.dtype)
        d = np.abs(g.astype(np.int64) - r.astype(np.int64)) if r.dtype.kind in "iu" else np.abs(g - r)
        assert d.max(initial=0) <= max_steps, (k, d.max(), np.argwhere(d > max_steps)[:5])
        eq += int((d == 0).sum())
        total += d.size
    frac = eq / max(total, 1)
    print(f"exact: {eq}/{total} = {frac:.4f}")
    return frac


def _one(opname, ins, out_shape, out_q, options=None, out_dtype=I8, **kw):
    """ins: ("name", shape, quant[, dtype]) graph inputs or (array, quant) constants or None."""
    b = ModelBuilder()
    idx, gin = [], []
    for i, spec in enumerate(ins):
        if spec is None:
            idx.append(-1)
        elif isinstance(spec[0], str):
            name, shape, q, *dt = spec
            t = b.input(name, shape, dt[0] if dt else I8, quant=q)
            idx.append(t)
            gin.append(t)
        else:
            arr, q = spec
            idx.append(b.const(f"c{i}", arr, quant=q))
    out = b.tensor("out", out_shape, out_dtype, quant=out_q)
    b.op(opname, idx, [out], options, **kw)
    return b.build(gin, [out])


XQ = (0.05, 3)
YQ = (0.08, -7)


# ---------------------------------------------------------------- conv / depthwise / fc
@pytest.mark.parametrize("x_shape,o,k,stride,pad,act", [
    ((1, 9, 9, 3), 4, 3, 1, SAME, "RELU6"),
    ((1, 9, 9, 3), 5, 3, 2, SAME, "NONE"),
    ((1, 8, 10, 4), 6, 1, 1, VALID, "RELU"),
    ((2, 7, 7, 2), 3, 3, 2, VALID, "NONE"),
])
def test_conv_2d(x_shape, o, k, stride, pad, act):
    w, wq = qweights((o, k, k, x_shape[3]), 1)
    bias = np.random.default_rng(2).integers(-2000, 2000, o).astype(np.int32)
    bq = (wq[0] * np.float32(XQ[0]), np.zeros(o, np.int64), 0)
    oh = (x_shape[1] + stride - 1) // stride if pad == SAME else (x_shape[1] - k) // stride + 1
    ow = (x_shape[2] + stride - 1) // stride if pad == SAME else (x_shape[2] - k) // stride + 1
    data = _one("CONV_2D", [("x", x_shape, XQ), (w, wq), (bias, bq)], [x_shape[0], oh, ow, o], YQ,
                {"Padding": pad, "StrideH": stride, "StrideW": stride, "FusedActivationFunction": ACT[act]})
    compare(data, {"x": codes(x_shape, 3)})


@pytest.mark.parametrize("x_shape,mult,stride,pad,act", [
    ((1, 9, 9, 4), 1, 1, SAME, "RELU6"),
    ((1, 9, 9, 4), 2, 2, SAME, "NONE"),
    ((1, 8, 8, 3), 1, 2, VALID, "RELU"),
])
def test_depthwise_conv_2d(x_shape, mult, stride, pad, act):
    c = x_shape[3] * mult
    w, wq = qweights((1, 3, 3, c), 4, axis=3)
    bias = np.random.default_rng(5).integers(-500, 500, c).astype(np.int32)
    bq = (wq[0] * np.float32(XQ[0]), np.zeros(c, np.int64), 0)
    oh = (x_shape[1] + stride - 1) // stride if pad == SAME else (x_shape[1] - 3) // stride + 1
    data = _one("DEPTHWISE_CONV_2D", [("x", x_shape, XQ), (w, wq), (bias, bq)], [1, oh, oh, c], YQ,
                {"Padding": pad, "StrideH": stride, "StrideW": stride, "DepthMultiplier": mult,
                 "FusedActivationFunction": ACT[act]})
    compare(data, {"x": codes(x_shape, 6)})


@pytest.mark.parametrize("per_channel,act", [(False, "NONE"), (True, "RELU")])
def test_fully_connected(per_channel, act):
    w, wq = qweights((6, 20), 7)
    if not per_channel:
        wq = (np.float32(0.01), 0)
    bias = np.random.default_rng(8).integers(-3000, 3000, 6).astype(np.int32)
    bq = (np.atleast_1d(np.asarray(wq[0], np.float32)) * np.float32(XQ[0]), np.zeros(np.size(wq[0]), np.int64), 0)
    data = _one("FULLY_CONNECTED", [("x", [3, 20], XQ), (w, wq), (bias, bq)], [3, 6], (0.3, 5),
                {"FusedActivationFunction": ACT[act]})
    compare(data, {"x": codes((3, 20), 9)})


# ---------------------------------------------------------------- elementwise
@pytest.mark.parametrize("op,act", [("ADD", "NONE"), ("ADD", "RELU6"), ("SUB", "NONE"), ("MUL", "NONE")])
def test_binary(op, act):
    shape = [1, 5, 5, 8]
    opts = {"FusedActivationFunction": ACT[act]}
    data = _one(op, [("a", shape, (0.04, -3)), ("b", [1, 1, 1, 8], (0.07, 10))], shape, (0.06, 2), opts)
    compare(data, {"a": codes(shape, 10), "b": codes([1, 1, 1, 8], 11)})


@pytest.mark.parametrize("op,out_q", [("LOGISTIC", (1 / 256, -128)), ("TANH", (1 / 128, 0)),
                                      ("HARD_SWISH", (0.03, -20)), ("SOFTMAX", (1 / 256, -128))])
def test_activation(op, out_q):
    shape = [2, 40]
    opts = {"Beta": 1.0} if op == "SOFTMAX" else None
    data = _one(op, [("x", shape, (0.06, 4))], shape, out_q, opts)
    compare(data, {"x": codes(shape, 12)})


# ---------------------------------------------------------------- pools / mean
@pytest.mark.parametrize("op,k,stride,pad", [("AVERAGE_POOL_2D", 2, 2, VALID), ("AVERAGE_POOL_2D", 3, 1, SAME),
                                             ("MAX_POOL_2D", 3, 2, SAME)])
def test_pool(op, k, stride, pad):
    shape = [1, 8, 8, 4]
    o = (8 + stride - 1) // stride if pad == SAME else (8 - k) // stride + 1
    data = _one(op, [("x", shape, XQ)], [1, o, o, 4], XQ,
                {"Padding": pad, "StrideH": stride, "StrideW": stride, "FilterHeight": k, "FilterWidth": k})
    compare(data, {"x": codes(shape, 13)})


@pytest.mark.parametrize("keep", [False, True])
def test_mean(keep):
    shape = [1, 6, 6, 8]
    data = _one("MEAN", [("x", shape, XQ), (np.array([1, 2], np.int32), None)],
                [1, 1, 1, 8] if keep else [1, 8], (0.02, -5), {"KeepDims": keep})
    compare(data, {"x": codes(shape, 14)})


# ---------------------------------------------------------------- movement, (de)quantize
def test_concat_requantizes():
    """int8 CONCATENATION must keep one scale in TFLite; uint8 may requantize its inputs."""
    u8 = np.uint8
    data = _one("CONCATENATION", [("a", [1, 4, 4, 3], (0.05, 130), u8), ("b", [1, 4, 4, 2], (0.09, 100), u8)],
                [1, 4, 4, 5], (0.07, 128), {"Axis": 3}, out_dtype=u8)
    compare(data, {"a": codes([1, 4, 4, 3], 15, u8), "b": codes([1, 4, 4, 2], 16, u8)})


def test_concat_int8_same_params():
    data = _one("CONCATENATION", [("a", [1, 4, 4, 3], XQ), ("b", [1, 4, 4, 2], XQ)], [1, 4, 4, 5], XQ,
                {"Axis": 3})
    assert compare(data, {"a": codes([1, 4, 4, 3], 15), "b": codes([1, 4, 4, 2], 16)}, max_steps=0) == 1.0


def test_pad_uses_zero_point():
    data = _one("PAD", [("x", [1, 4, 4, 2], XQ), (np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32), None)],
                [1, 7, 7, 2], XQ)
    frac = compare(data, {"x": codes([1, 4, 4, 2], 17)}, max_steps=0)
    assert frac == 1.0


def test_quantize_dequantize_edges():
    b = ModelBuilder()
    x = b.input("x", [2, 16], np.float32)
    q = b.tensor("q", [2, 16], I8, quant=(0.05, -3))
    r = b.tensor("r", [2, 16], I8, quant=(0.11, 7))
    y = b.tensor("y", [2, 16], I8, quant=(1 / 256, -128))
    f = b.tensor("f", [2, 16], np.float32)
    b.op("QUANTIZE", [x], [q])
    b.op("QUANTIZE", [q], [r])          # int8 → int8: requantize
    b.op("LOGISTIC", [r], [y])
    b.op("DEQUANTIZE", [y], [f])
    data = b.build([x], [q, r, f])
    xs = np.random.default_rng(18).uniform(-6, 6, (4, 2, 16)).astype(np.float32).reshape(-1, 16)[:2]
    ref, got = run_tflite(data, {"x": xs}), run_npuc(data, {"x": xs})
    assert np.array_equal(ref["q"], got["q"])                      # QuantizeLinear: exact
    dr = np.abs(ref["r"].astype(int) - got["r"].astype(int))       # Requantize: within one step
    assert dr.max() <= 1
    same = dr == 0                                                 # LOGISTIC + DEQUANTIZE on equal codes
    assert np.all(np.abs(ref["f"] - got["f"])[same] <= 1 / 256 + 1e-7)
    print(f"requantize exact {same.mean():.4f}")


def test_uint8_conv():
    w = np.random.default_rng(19).integers(0, 256, (4, 3, 3, 2)).astype(np.uint8)
    bias = np.random.default_rng(20).integers(-500, 500, 4).astype(np.int32)
    data = _one("CONV_2D", [("x", [1, 6, 6, 2], (0.05, 128), np.uint8), (w, (0.01, 120)), (bias, (0.0005, 0))],
                [1, 6, 6, 4], (0.1, 130), {"Padding": SAME, "StrideH": 1, "StrideW": 1}, out_dtype=np.uint8)
    compare(data, {"x": codes([1, 6, 6, 2], 21, np.uint8)})


def test_unsupported_quantized_op_is_listed():
    from npuc.errors import ModelImportError
    from npuc.frontends.tflite import import_tflite

    data = _one("RESIZE_BILINEAR", [("x", [1, 4, 4, 2], XQ), (np.array([8, 8], np.int32), None)], [1, 8, 8, 2], YQ)
    with pytest.raises(ModelImportError, match="RESIZE_BILINEAR"):
        import_tflite("q.tflite", data=data)


# ---------------------------------------------------------------- the int8 classifier
def _fixture():
    if not (DATA / "model.tflite").exists():
        pytest.skip("tests/data/tflite_int8 is missing")
    return (DATA / "model.tflite").read_bytes(), dict(np.load(DATA / "inputs.npz")), dict(np.load(DATA / "ref.npz"))


def test_int8_classifier_matches_reference():
    data, inputs, ref = _fixture()
    name = next(iter(inputs))
    out = next(iter(ref))
    got = np.stack([run_npuc(data, {name: x})[out] for x in inputs[name]])
    r = ref[out].reshape(got.shape)
    assert got.dtype == r.dtype == np.int8
    d = np.abs(got.astype(np.int64) - r.astype(np.int64))
    print(f"classifier: exact {np.mean(d == 0):.4f} of {d.size} codes, max diff {d.max()}")
    assert d.max() <= 1
    top1 = r.reshape(len(r), -1).argmax(-1)
    assert np.array_equal(got.reshape(len(r), -1).argmax(-1), top1)
    labels = json.loads((DATA.parents[0] / "digits_dwcnn" / "manifest.json").read_text())["extra"]["test_labels"]
    assert np.mean(top1 == np.asarray(labels)[:len(r)]) >= 0.75


def test_int8_classifier_live_interpreter_and_graph():
    from npuc.frontends.tflite import import_tflite

    data, inputs, ref = _fixture()
    name = next(iter(inputs))
    live = run_tflite(data, {name: inputs[name][0]})
    assert np.array_equal(next(iter(live.values())), ref[next(iter(ref))][0])
    g = import_tflite(str(DATA / "model.tflite"))
    ops = g.op_counts()
    assert ops.get("QConv", 0) >= 7 and ops.get("QGemm", 0) == 1 and ops.get("QAdd", 0) == 1, ops
    assert g.inputs[0].dtype == np.int8 and g.inputs[0].quant is not None


def test_int8_classifier_cli_compare(tmp_path):
    from npuc.cli import main

    _fixture()
    out = tmp_path / "model.npuc"
    assert main(["compile", str(DATA / "model.tflite"), "-o", str(out)]) == 0
    assert main(["compare", str(out), "--reference", str(DATA / "model.tflite"),
                 "--input", str(DATA / "inputs.npz")]) == 0


def test_int8_classifier_vs_xnnpack_kernels():
    """The interpreter's default (XNNPACK) int8 kernels requantize with one rounding, like npuc:
    measured bit-exact on the fixture (ai-edge-litert 1.x)."""
    data, inputs, ref = _fixture()
    name = next(iter(inputs))
    got = np.stack([run_npuc(data, {name: x})["logits"] for x in inputs[name]]).astype(np.int64)
    live = np.stack([run_tflite(data, {name: x}, delegates=True)["logits"] for x in inputs[name]]).astype(np.int64)
    d = np.abs(got - live)
    print(f"classifier vs XNNPACK: exact {np.mean(d == 0):.4f}, max diff {d.max()}")
    assert d.max() <= 1 and np.mean(d == 0) >= 0.95
