"""Residual adds on the KPU (npuc/targets/k210/lower_add.py): a QAdd of two KPU maps is a
1x1 layer over the pair map (a channel-padded operand adds nothing for the padded
channels). Checked against the QAdd reference semantics of the quantized graph (the cpu
target's arithmetic) on random operands: at most one code off, at near-ties of the
rounding. And a max pool of a shared map as an identity KPU layer (lower_pool.py)."""
from __future__ import annotations

import numpy as np
import pytest

import npuc
from npuc.format.reader import read_program
from npuc.format.writer import write_program
from npuc.ir import Graph, QuantParams
from npuc.lowering import lower
from npuc.quant.qparams import add_multipliers, quantize_multiplier
from npuc.targets import get_target
from npuc.targets.k210.lower import K210Lowering
from npuc.targets.k210.lower_add import ratio_weights
from tests.targets.k210.test_target import _run_graph


def _add_graph(rng, *, c=8, h=12, w=12, sub=False, relu=False, scales=(0.04, 0.09), pad=0, pad_first=False):
    """uint8 x → two 1x1 QConvs a, b (scales ``scales``) → QAdd(a, b) (or Sub, or + ReLU);
    with ``pad``, b has ``pad`` channels fewer and a channel Pad (zero point) makes up the
    rest, BlazeFace's shortcut (``pad_first``: the padded operand is the add's first)."""
    g = Graph("add")
    cin = 4
    x = g.add_input("x", np.uint8, (1, cin, h, w))
    sx, zx = 0.05, 120
    x.quant = QuantParams(np.float32(sx), np.int64(zx))
    outs = []
    for name, sy in zip("ab", scales):
        c_out = c - pad if name == "b" else c
        wi = rng.integers(-127, 128, (c_out, cin, 1, 1)).astype(np.int8)
        sw = (rng.uniform(0.5, 2.0, c_out) * 0.01).astype(np.float32)
        wv = g.add_const(f"w{name}", wi)
        wv.quant = QuantParams(sw, np.zeros(c_out, np.int64), 0)
        bv = g.add_const(f"b{name}", rng.integers(-2000, 2000, c_out).astype(np.int32))
        zy = int(rng.integers(60, 200))
        mult, shift = quantize_multiplier(sx * sw.astype(np.float64) / sy)
        attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "group": 1, "dilations": [1, 1],
                 "x_zp": zx, "w_zp": [0] * c_out, "y_zp": zy, "multiplier": mult.tolist(), "shift": shift.tolist(),
                 "act_min": 0, "act_max": 255, "out_dtype": "uint8"}
        y = g.make_node("QConv", [x, wv, bv], name=f"conv_{name}", attrs=attrs, outputs=[name]).outputs[0]
        y.quant = QuantParams(np.float32(sy), np.int64(zy))
        outs.append(y)
    a, b = outs
    if pad:
        pv = g.add_const("pads", np.array([0, 0, 0, 0, 0, pad, 0, 0], np.int64))
        zv = g.add_const("pad_value", np.array(int(b.quant.zero_point), np.uint8))
        bp = g.make_node("Pad", [b, pv, zv], name="channel_pad", outputs=["b_padded"]).outputs[0]
        bp.quant = b.quant
        b = bp
    if pad_first:
        a, b = b, a
        scales = scales[::-1]
    s_out, z_out = 0.11, 100 if not relu else 0
    am, bm, sh = add_multipliers(scales[0] / s_out, scales[1] / s_out, -1 if sub else 1)
    attrs = {"a_zp": int(a.quant.zero_point), "b_zp": int(b.quant.zero_point), "y_zp": z_out, "a_mult": am,
             "b_mult": bm, "shift": sh, "act_min": z_out if relu else 0, "act_max": 255, "out_dtype": "uint8"}
    y = g.make_node("QAdd", [a, b], name="add", attrs=attrs, outputs=["y"]).outputs[0]
    y.quant = QuantParams(np.float32(s_out), np.int64(z_out))
    g.outputs = [y]
    return g, rng.integers(0, 256, (1, cin, h, w)).astype(np.uint8)


def test_ratio_weights():
    assert ratio_weights(1.0) == (127, 127)
    assert ratio_weights(0.5) == (126, 63)
    assert ratio_weights(-2.0) == (63, -126)
    for r in np.random.default_rng(0).uniform(0.02, 50, 200):
        wa, wb = ratio_weights(r)
        assert 1 <= wa <= 127 and 1 <= wb <= 127
        # at least as close as rounding with the largest w_a that keeps w_b in range
        assert abs(wb / wa - r) <= 0.5 / min(127, int(127.5 / r)) + 1e-12
    assert ratio_weights(1e-4) == (127, 1)             # the closest there is (the caller checks the error)
    with pytest.raises(ValueError):
        ratio_weights(0.0)


CASES = [dict(), dict(sub=True), dict(relu=True), dict(c=24, h=20, w=40, scales=(0.2, 0.03)),
         dict(c=64, h=7, w=7), dict(c=6, h=9, w=9), dict(scales=(0.5, 0.0015)),
         dict(c=28, h=16, w=16, pad=4), dict(c=32, h=16, w=16, pad=8, pad_first=True, relu=True)]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_kpu_add_equals_qadd(case, tmp_path):
    rng = np.random.default_rng(case)
    g, x = _add_graph(rng, **CASES[case])
    want = _run_graph(g, {"x": x})["y"]
    kg = K210Lowering(g, use_cost_model=False).run()
    ops = [n.op for n in kg.nodes]
    if CASES[case].get("c") == 6:        # 6 channels on a 9-wide map: 4 share a row group, no pair map
        assert "QAdd" in ops and "4 channels" in kg.metadata["k210"]["reasons"]["add"]
        return
    if CASES[case].get("scales") == (0.5, 0.0015):   # 333x apart: int8 weights cannot hold the ratio
        assert "QAdd" in ops and "scales too far apart" in kg.metadata["k210"]["reasons"]["add"]
        return
    assert "QAdd" not in ops and "Pad" not in ops and ops.count("KpuConv") == 3, ops
    prog = lower(kg, get_target("k210"))
    write_program(prog, tmp_path / "m.npuc")
    pair = next(o for o in read_program(tmp_path / "m.npuc").ops if o.op == "Concat")
    assert pair.kernel == "concat_in_place"                       # the convs write into the pair map
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})["y"]
    d = np.abs(got.astype(int) - want.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 0.02, (d.max(), (d > 0).mean())


def test_max_pool_of_a_shared_map_is_a_kpu_layer(tmp_path):
    """A 2x2/2 MaxPool of a map another layer also reads: an identity depthwise KPU layer
    with the max pool, bit-exact."""
    from tests.targets.k210.test_target import _qconv_graph

    g, x = _qconv_graph(np.random.default_rng(5), c=8, m=16, k=3, h=16, w=16)
    y = g.outputs[0]
    outs = []
    for k in (2, 4):                    # y has two readers: neither pool can be fused into its layer
        p = g.make_node("MaxPool", [y], name=f"pool{k}", attrs={"kernel_shape": [k, k], "strides": [k, k]},
                        outputs=[f"p{k}"]).outputs[0]
        p.quant = y.quant
        outs.append(p)
    g.outputs = outs
    want = _run_graph(g, {"x": x})
    kg = K210Lowering(g, use_cost_model=False).run()
    ops = [n.op for n in kg.nodes]
    assert "MaxPool" not in ops and ops.count("KpuConv") == 3, ops
    write_program(lower(kg, get_target("k210")), tmp_path / "m.npuc")
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})
    for k in (2, 4):
        np.testing.assert_array_equal(got[f"p{k}"], want[f"p{k}"])


def test_resnet_max_pool_is_two_kpu_layers(tmp_path):
    """MaxPool 3x3/2 with padding 1 of a whole map: identity + 2x2/1 max, then a one-pixel
    shift + 2x2/2 max, bit-exact."""
    from tests.targets.k210.test_target import _qconv_graph

    g, x = _qconv_graph(np.random.default_rng(6), c=8, m=16, k=3, h=16, w=20, act=(40, 255))
    y = g.outputs[0]
    p = g.make_node("MaxPool", [y], name="pool", attrs={"kernel_shape": [3, 3], "strides": [2, 2],
                                                         "pads": [1, 1, 1, 1]}, outputs=["p"]).outputs[0]
    p.quant = y.quant
    g.outputs = [p]
    want = _run_graph(g, {"x": x})
    kg = K210Lowering(g, use_cost_model=False).run()
    ops = [n.op for n in kg.nodes]
    assert "MaxPool" not in ops and ops.count("KpuConv") == 3, ops
    write_program(lower(kg, get_target("k210")), tmp_path / "m.npuc")
    got = npuc.load(tmp_path / "m.npuc").run({"x": x})
    np.testing.assert_array_equal(got["p"], want["p"])
