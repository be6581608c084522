"""Per-channel PReLU on the KPU (npuc/targets/k210/prelu_table.py): one region of the BN
output axis per slope, the output channels split into parts of at most 5 slopes. Checked
against the cpu QConv's two-multiplier requantization (the quantized graph's reference
semantics): within one code, at near-ties."""
from __future__ import annotations

import numpy as np
import pytest

import npuc
from npuc.format.writer import write_program
from npuc.lowering import lower
from npuc.targets import get_target
from npuc.targets.k210.lower import K210Lowering
from npuc.targets.k210.prelu_table import segments_needed
from tests.targets.k210.test_target import _qconv_graph, _run_graph


def test_segments_needed():
    assert segments_needed([0.25]) == 3          # segment 0: a flat clamp from the lowest v
    assert segments_needed([0.25, 0.1, -0.3]) == 3 + 3 + 2
    assert segments_needed(np.linspace(0.05, 0.5, 5)) == 15
    assert segments_needed(np.linspace(0.05, 0.5, 6)) == 18


CASES = [
    dict(c=8, m=10, k=3, h=12, w=12, slopes=np.linspace(-0.5, 0.7, 10)),       # P-Net conv1-like: 3 parts
    dict(c=10, m=16, k=3, h=10, w=10, slopes=np.tile([0.1, 0.25, -0.2, 0.0], 4)),  # 4 slopes: one part
    dict(c=16, m=32, k=1, h=8, w=8, pads=0, slopes=np.linspace(0.01, 1.3, 32)),
    dict(c=8, m=8, k=3, h=12, w=12, slopes=np.linspace(0.05, 0.6, 8), pool=2),   # + fused max pool
    dict(c=8, m=12, k=3, h=16, w=16, depthwise=False, stride=2, slopes=np.linspace(-1.2, 1.0, 12)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_per_channel_prelu_layer_equals_qconv(case, tmp_path):
    cfg = dict(CASES[case])
    slopes = cfg.pop("slopes")
    g, x = _qconv_graph(np.random.default_rng(40 + case), leaky=slopes, **cfg)
    want = _run_graph(g, {"x": x})
    kg = K210Lowering(g, use_cost_model=False).run()
    ops = [n.op for n in kg.nodes]
    assert ops.count("KpuConv") == 1 and "QConv" not in ops and "MaxPool" not in ops, ops
    conv = next(n for n in kg.nodes if n.op == "KpuConv")
    assert conv.attrs["act"] == "PRelu"
    for lay in conv.attrs["layers"]:
        assert lay["fit_max_error"] <= 1
    write_program(lower(kg, get_target("k210")), tmp_path / "m.npuc")
    name = g.outputs[0].name
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})[name]
    d = np.abs(got.astype(int) - want[name].astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 0.01, (d.max(), (d > 0).mean())


@pytest.mark.parametrize("zy, slopes", [(0, [0.1, 0.3, -0.5, 0.0, 0.7]), (255, [-0.2, 0.4, 0.0]),
                                        (128, [1.5, -1.0, 0.25, 0.0, -0.05]), (17, [0.2] * 3 + [0.6] * 3),
                                        (200, [-3.0, 2.0])])
def test_prelu_tables_reproduce_prelu_on_every_channel(zy, slopes):
    """BN + table of prelu_tables vs the float PReLU of the accumulator, per channel, over
    the accumulator's whole range (independent of the table's own error report)."""
    from npuc.targets.k210.encode import apply_act_table
    from npuc.targets.k210.prelu_table import prelu_tables

    rng = np.random.default_rng(zy)
    m = len(slopes)
    r0 = rng.uniform(2e-4, 2e-3, m)
    b = rng.uniform(-0.3, 0.3, m)
    max_acc = np.full(m, 60000, np.int64)
    s_y = 0.05
    bn, e, s_v, v_lo, v_hi, act, rep = prelu_tables(r0, b, (s_y, zy), max_acc, slopes)
    assert rep.segments <= 16
    acc = np.arange(-60000, 60001, 7, dtype=np.int64)
    for c in range(m):
        v = ((acc * bn.mul[c]) >> bn.shift[c]) + bn.add[c]
        assert v_lo <= v.min() and v.max() <= v_hi
        got = apply_act_table(v, act).astype(int)
        u = r0[c] * acc + b[c]
        ideal = np.clip(np.floor(np.where(u >= 0, u, slopes[c] * u) / s_y + 0.5) + zy, 0, 255).astype(int)
        d = np.abs(got - ideal)
        assert d.max() <= 1 and (d > 0).mean() < 0.002, (c, d.max(), (d > 0).mean())
