"""Post-training quantization end to end on the real models and zoo networks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.cli import compare_outputs, inspect_dict
from npuc.errors import NpucError, OptionError

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = {"digits_dwcnn": "model.onnx", "mtcnn_pnet": "model.onnx", "blazeface_short": "model_tf2onnx.onnx"}
# worst per-sample output cosine required. BlazeFace misses the 0.99 goal on its worst test
# image (0.983 with cross-layer equalization, 0.969 without; onnxruntime's quantizer:
# 0.955-0.960 with the same data); its aggregate over the test set is above 0.99.
MIN_COSINE = {"digits_dwcnn": 0.99, "mtcnn_pnet": 0.99, "blazeface_short": 0.98}


def _cosines(path, case):
    d = DATA / case
    sess = npuc.load(path)
    test = dict(np.load(d / "test.npz"))
    ref = dict(np.load(d / "ref.npz"))
    n = next(iter(test.values())).shape[0]
    got = [sess.run({s.name: test[s.name][i] for s in sess.inputs}) for i in range(n)]
    worst = {}
    for i in range(n):
        for k, r in compare_outputs(got[i], {o.name: ref[o.name][i] for o in sess.outputs}).items():
            worst[k] = min(worst.get(k, 1.0), r["cosine"])
    return worst, got, ref


@pytest.mark.parametrize("case", sorted(REAL))
@pytest.mark.parametrize("qt", ["uint8", "int8"])
def test_real_models_quantized_cosine(case, qt, tmp_path):
    out = tmp_path / "q.npuc"
    npuc.compile(DATA / case / REAL[case], out, dataset=str(DATA / case / "calib.npz"), quant_type=qt)
    worst, got, ref = _cosines(out, case)
    for k, c in worst.items():
        assert c >= MIN_COSINE[case], (case, qt, k, c)
    # over the whole test set every model reaches the 0.99 goal
    stacked = {k: np.stack([g[k] for g in got]) for k in got[0]}
    for k, r in compare_outputs(stacked, {k: ref[k][:len(got)] for k in stacked}).items():
        assert r["cosine"] >= 0.99, (case, qt, k, r["cosine"])
    if case == "digits_dwcnn":
        # the top-1 class agrees with the float model on every test sample
        for i, g in enumerate(got):
            assert int(np.argmax(g["logits"])) == int(np.argmax(ref["logits"][i])), i
    info = inspect_dict(str(out))
    # integer-only: every conv/gemm became an integer op running an integer kernel
    assert "Conv" not in info["ops"] and "Gemm" not in info["ops"]
    assert info["ops"].get("QConv", 0) >= 1
    assert all(k != "reference" for k in info["kernels"]), info["kernels"]


def test_scheme_round_trip_and_no_dataset(tmp_path):
    d = DATA / "digits_dwcnn"
    scheme = tmp_path / "scheme.json"
    a = tmp_path / "a.npuc"
    npuc.compile(d / "model.onnx", a, dataset=str(d / "calib.npz"), export_quant_scheme=str(scheme))
    doc = json.loads(scheme.read_text())
    assert doc["activation_type"] == "uint8" and doc["tensors"]
    some = next(k for k, v in doc["tensors"].items() if "min" in v and k != "input")
    # re-use the ranges without a data set: same model bytes
    b = tmp_path / "b.npuc"
    npuc.compile(d / "model.onnx", b, quant_scheme=str(scheme))
    assert a.read_bytes() == b.read_bytes()
    # edit: one layer in float
    doc["tensors"][some]["dtype"] = "float"
    scheme.write_text(json.dumps(doc))
    c = tmp_path / "c.npuc"
    npuc.compile(d / "model.onnx", c, quant_scheme=str(scheme))
    assert inspect_dict(str(c))["ops"].get("Conv", 0) == 1  # that layer runs in float
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tensors": {some: {"dtype": "int4"}}}))
    with pytest.raises(OptionError, match="int4"):
        npuc.compile(d / "model.onnx", tmp_path / "x.npuc", quant_scheme=str(bad))


def test_quantize_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(NpucError, match="--dataset"):
        npuc.compile(DATA / "digits_dwcnn" / "model.onnx", tmp_path / "x.npuc", quant_type="uint8")


def test_dataset_folders(tmp_path):
    d = DATA / "digits_dwcnn"
    calib = np.load(d / "calib.npz")["input"]
    npy = tmp_path / "npy"
    npy.mkdir()
    binf = tmp_path / "bin"
    binf.mkdir()
    for i, x in enumerate(calib[:8]):
        np.save(npy / f"{i:03d}.npy", x)
        x.astype("<f4").tofile(binf / f"{i:03d}.bin")
    outs = []
    for src in (npy, binf):
        p = tmp_path / f"{src.name}.npuc"
        npuc.compile(d / "model.onnx", p, dataset=str(src))
        outs.append(p.read_bytes())
    p = tmp_path / "npz.npuc"
    np.savez(tmp_path / "c8.npz", input=calib[:8])
    npuc.compile(d / "model.onnx", p, dataset=str(tmp_path / "c8.npz"))
    assert outs[0] == outs[1] == p.read_bytes()
    # calib_samples limits the count
    q = tmp_path / "lim.npuc"
    npuc.compile(d / "model.onnx", q, dataset=str(d / "calib.npz"), calib_samples=8)
    assert q.read_bytes() == p.read_bytes()


def test_image_folder_dataset(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    d = DATA / "mtcnn_pnet"
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        PIL.fromarray(rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)).save(imgs / f"{i}.png")
    from npuc.quant.dataset import Dataset
    from npuc.runtime.session import TensorSpec

    ds = Dataset(imgs, [TensorSpec("input", (1, 3, 120, 160), np.dtype("float32"))])
    xs = list(ds)
    assert len(xs) == 4 and xs[0]["input"].shape == (1, 3, 120, 160) and xs[0]["input"].max() <= 255
    npuc.compile(d / "model.onnx", tmp_path / "i.npuc", dataset=str(imgs))


def test_dump_quant_error_and_mixed_precision(tmp_path):
    d = DATA / "digits_dwcnn"
    rep = tmp_path / "rep"
    out = tmp_path / "m.npuc"
    npuc.compile(d / "model.onnx", out, dataset=str(d / "calib.npz"), quant_type="int8",
                 dump_quant_error=str(rep), auto_mixed_precision=True, min_cosine=0.99985,
                 mixed_precision_type="int16")
    rows = (rep / "quant_error.csv").read_text().splitlines()
    assert rows[0].startswith("order,tensor,op,dtype,cosine") and len(rows) > 5
    from npuc.format.reader import read_program

    dtypes = {t.dtype for t in read_program(out).tensors if t.kind == "arena"}
    assert "int16" in dtypes and "int8" in dtypes  # some layers promoted, the rest stay int8


def test_compile_does_not_depend_on_thread_count(tmp_path):
    from threadpoolctl import threadpool_limits

    d = DATA / "mtcnn_pnet"
    outs = []
    for n in (1, 2):
        with threadpool_limits(n):
            p = tmp_path / f"t{n}.npuc"
            npuc.compile(d / "model.onnx", p, dataset=str(d / "calib.npz"))
            outs.append(p.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("qt", ["uint8", "int8"])
def test_blazeface_tflite_ptq(qt, tmp_path):
    """The MediaPipe .tflite imported and quantized after training: cosine ≥ 0.99 against the
    TFLite interpreter's float outputs over the test set."""
    d = DATA / "blazeface_short"
    out = tmp_path / "b.npuc"
    npuc.compile(d / "model.tflite", out, dataset=str(d / "calib.npz"), quant_type=qt)
    sess = npuc.load(out)
    test, ref = dict(np.load(d / "test.npz")), dict(np.load(d / "ref.npz"))
    got = [sess.run({"input": x}) for x in test["input"]]
    stacked = {k: np.stack([g[k] for g in got]) for k in got[0]}
    for k, r in compare_outputs(stacked, ref).items():
        assert r["cosine"] >= 0.99, (qt, k, r["cosine"])
    assert "Conv" not in inspect_dict(str(out))["ops"]
