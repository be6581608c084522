"""A mean pool after a convolution runs in the KPU layer (MEAN_2_S2 / MEAN_4_S4): the
layer's activation table writes the pool's output scale and the KPU averages those codes,
truncating. Checked against the quantized graph's QConv → QAvgPool reference semantics:
within one code (the KPU truncates the mean where QAvgPool rounds)."""
from __future__ import annotations

import numpy as np
import pytest

import npuc
from npuc.format.writer import write_program
from npuc.ir import QuantParams
from npuc.lowering import lower
from npuc.quant.qparams import quantize_multiplier
from npuc.targets import get_target
from npuc.targets.k210.lower import K210Lowering
from tests.targets.k210.test_target import _qconv_graph, _run_graph


def _with_avgpool(g, k: int, scale_ratio: float):
    """Append QAvgPool k×k/k to the graph output: output scale = input scale × ``scale_ratio``
    and the same range centre (what the k210 quantizer gives it is ratio 1: the same range)."""
    y = g.outputs[0]
    sx, zx = float(y.quant.scale), int(y.quant.zero_point)
    sy = sx * scale_ratio
    zy = int(round(127.5 - (127.5 - zx) * sx / sy))
    mult, shift = quantize_multiplier(np.array([sx / (sy * k * k)]))
    attrs = {"kernel_shape": [k, k], "strides": [k, k], "pads": [0, 0, 0, 0], "x_zp": zx, "y_zp": zy,
             "multiplier": int(mult[0]), "shift": int(shift[0]), "act_min": 0, "act_max": 255, "out_dtype": "uint8"}
    z = g.make_node("QAvgPool", [y], name="avg", attrs=attrs, outputs=["z"]).outputs[0]
    z.quant = QuantParams(np.float32(sy), np.int64(zy))
    g.outputs = [z]


CASES = [dict(k=2, ratio=1.0, conv=dict(c=8, m=16, k=3, h=16, w=16)),
         dict(k=2, ratio=1.0, conv=dict(c=8, m=16, k=3, h=16, w=16, act=(120, 255))),   # fused ReLU
         dict(k=4, ratio=1.2, conv=dict(c=4, m=8, k=1, h=16, w=40, pads=0)),             # a wider output range
         dict(k=2, ratio=1.0, conv=dict(c=8, m=16, k=3, h=16, w=16, depthwise=False, clip=(30, 200)))]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_mean_pool_fuses_into_the_layer(case, tmp_path):
    rng = np.random.default_rng(10 + case)
    cfg = CASES[case]
    g, x = _qconv_graph(rng, **cfg["conv"])
    _with_avgpool(g, cfg["k"], cfg["ratio"])
    want = _run_graph(g, {"x": x})["z"]
    kg = K210Lowering(g, use_cost_model=False).run()
    ops = [n.op for n in kg.nodes]
    assert ops.count("KpuConv") == 1 and "QAvgPool" not in ops, ops
    conv = next(n for n in kg.nodes if n.op == "KpuConv")
    assert conv.attrs["pool"] == f"mean_{cfg['k']}_s{cfg['k']}" and "avg" in conv.attrs["fused"]
    write_program(lower(kg, get_target("k210")), tmp_path / "m.npuc")
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})["z"]
    d = got.astype(int) - want.astype(int)
    assert np.abs(d).max() <= 1, np.abs(d).max()
    assert -0.6 <= d.mean() <= 0.1, d.mean()      # truncation: about -3/8 of a code on average at most


@pytest.mark.parametrize("why", ["leaky", "narrower output range"])
def test_mean_pools_the_layer_cannot_take_stay_on_the_cpu(why):
    g, _ = _qconv_graph(np.random.default_rng(3), c=8, m=16, k=3, h=16, w=16, leaky=0.1 if why == "leaky" else None)
    _with_avgpool(g, 2, 1.0 if why == "leaky" else 0.7)     # a narrower range clamps before the mean
    kg = K210Lowering(g, use_cost_model=False).run()
    assert [n.op for n in kg.nodes].count("QAvgPool") == 1
