"""k210 end to end on the trained MobileNetV2- and ResNet-style networks (tests/data):
cosine against the float model, and agreement with the cpu-target quantized model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.cli import inspect_dict

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("case", ["mobilenetv2_digits", "resnet_digits"])
def test_trained_networks_on_k210(case, tmp_path):
    d = DATA / case
    k, c = tmp_path / "k.npuc", tmp_path / "c.npuc"
    npuc.compile(d / "model.onnx", k, target="k210", dataset=str(d / "calib.npz"))
    npuc.compile(d / "model.onnx", c, target="cpu", dataset=str(d / "calib.npz"), quant_type="uint8",
                 equalize=False)   # the k210 target's quantization (no cross-layer equalization)
    sk, sc = npuc.load(k), npuc.load(c)
    test, ref = dict(np.load(d / "test.npz")), dict(np.load(d / "ref.npz"))
    gk = np.stack([sk.run({"input": x})["logits"] for x in test["input"]]).astype(np.float64).ravel()
    gc = np.stack([sc.run({"input": x})["logits"] for x in test["input"]]).astype(np.float64).ravel()
    f = ref["logits"].astype(np.float64).ravel()
    assert gk @ f / np.linalg.norm(gk) / np.linalg.norm(f) >= 0.98
    assert gk @ gc / np.linalg.norm(gk) / np.linalg.norm(gc) >= 0.999   # same quantization, KPU arithmetic
    info = inspect_dict(str(k))
    assert info["placement"]["totals"]["kpu_layers"] >= 20
    pools = info["memory"]["pools"]
    assert pools["kpu"]["bytes"] <= pools["kpu"]["capacity"] and pools["main"]["bytes"] <= pools["main"]["capacity"]
