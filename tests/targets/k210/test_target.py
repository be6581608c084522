"""The k210 target end to end: options, KPU lowering (numerics vs the cpu target's integer
ops), map geometry, splits, memory pools and budgets, the placement report, the CLI."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import npuc
from npuc.errors import NpucError, OptionError
from npuc.format.reader import read_program
from npuc.format.writer import write_program
from npuc.ir import Graph, QuantParams
from npuc.lowering import lower
from npuc.ops.registry import get_op
from npuc.quant.qparams import quantize_multiplier
from npuc.targets import get_target
from npuc.targets.k210 import (AI_SRAM_BYTES, MAIN_SRAM_BYTES, KpuLayer, download, from_rows, new_sram, run_layer,
                               upload)
from npuc.targets.k210.lower import Axis, K210Lowering, conv_axis, lower_k210, split_channels, upload_axis

DATA = Path(__file__).resolve().parents[2] / "data"
REAL = {"digits_dwcnn": "model.onnx", "mtcnn_pnet": "model.onnx", "blazeface_short": "model_tf2onnx.onnx"}


# ----------------------------------------------------------------------------- helpers
def _run_graph(g: Graph, feeds: dict) -> dict:
    """The registry's reference semantics of a graph (the independent path)."""
    env = dict(feeds)
    for n in g.nodes:
        ins = [None if v is None else (v.const if v.is_const else env[v.name]) for v in n.inputs]
        for o, r in zip(n.outputs, get_op(n.op).run(ins, n.attrs)):
            env[o.name] = r
    return {v.name: env[v.name] for v in g.outputs}


def _session(g: Graph, tmp_path, name="m"):
    prog = lower(g, get_target("k210"))
    path = tmp_path / f"{name}.npuc"
    write_program(prog, path)
    return npuc.load(path), read_program(path)


def _qconv_graph(rng, *, c=8, m=16, h=12, w=12, k=3, stride=1, pads=None, depthwise=False, act=None,
                 pool=None, leaky=None, clip=None):
    """A quantized graph: uint8 input → QConv (int8 symmetric per-channel weights) → [Clip] → [MaxPool]."""
    g = Graph("t")
    x = g.add_input("x", np.uint8, (1, c, h, w))
    sx, zx = 0.05, int(rng.integers(0, 256))
    x.quant = QuantParams(np.float32(sx), np.int64(zx))
    cg = 1 if depthwise else c
    wi = rng.integers(-127, 128, (m, cg, k, k)).astype(np.int8)
    sw = (rng.uniform(0.5, 2.0, m) * 0.01).astype(np.float32)
    wv = g.add_const("w", wi)
    wv.quant = QuantParams(sw, np.zeros(m, np.int64), 0)
    bias = rng.integers(-3000, 3000, m).astype(np.int32)
    bv = g.add_const("b", bias)
    fan = cg * k * k
    sy = float(sx * sw.mean() * 127 * 128 * np.sqrt(fan) / 255 * 0.5)
    zy = int(rng.integers(0, 256))
    mult, shift = quantize_multiplier(sx * sw.astype(np.float64) / sy)
    lo, hi = act if act else (0, 255)
    p = k // 2 if pads is None else pads
    pads = [p] * 4 if isinstance(p, int) else list(p)
    attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": pads, "group": c if depthwise else 1,
             "dilations": [1, 1], "x_zp": zx, "w_zp": [0] * m, "y_zp": zy, "multiplier": mult.tolist(),
             "shift": shift.tolist(), "act_min": lo, "act_max": hi, "out_dtype": "uint8"}
    if leaky is not None:
        nm, ns = quantize_multiplier(abs(leaky) * sx * sw.astype(np.float64) / sy)
        attrs.update(neg_multiplier=(nm * np.sign(leaky)).astype(np.int64).tolist(), neg_shift=ns.tolist())
    y = g.make_node("QConv", [x, wv, bv], name="conv", attrs=attrs, outputs=["y"]).outputs[0]
    y.quant = QuantParams(np.float32(sy), np.int64(zy))
    out = y
    if clip is not None:
        lo_c = g.add_const("lo", np.array(clip[0], np.uint8))
        hi_c = g.add_const("hi", np.array(clip[1], np.uint8))
        out = g.make_node("Clip", [out, lo_c, hi_c], name="clip", outputs=["yc"]).outputs[0]
        out.quant = y.quant
    if pool is not None:
        out = g.make_node("MaxPool", [out], name="pool", attrs={"kernel_shape": [pool, pool],
                                                                "strides": [pool, pool]}, outputs=["yp"]).outputs[0]
        out.quant = y.quant
    g.outputs = [out]
    return g, rng.integers(0, 256, (1, c, h, w)).astype(np.uint8)


# ----------------------------------------------------------------------------- options
def test_k210_needs_a_dataset_and_uint8(tmp_path):
    model = str(DATA / "digits_dwcnn" / "model.onnx")
    with pytest.raises(OptionError, match="--dataset"):
        npuc.compile(model, tmp_path / "a.npuc", target="k210")
    with pytest.raises(OptionError, match="uint8"):
        npuc.compile(model, tmp_path / "a.npuc", target="k210", dataset=str(DATA / "digits_dwcnn" / "calib.npz"),
                     quant_type="int8")
    from npuc.cli import main

    assert main(["compile", model, "-o", str(tmp_path / "b.npuc"), "-t", "k210"]) == 2


# ----------------------------------------------------------------------------- geometry
def test_axis_geometry_rules():
    full = Axis(16, 0, 16, False, False)
    assert conv_axis(full, 3, 1, 1, 1, 1, False) == (Axis(16, 0, 16, False, False), 0)    # same
    assert conv_axis(full, 3, 1, 0, 0, 1, False) == (Axis(16, 1, 14, False, False), 0)    # valid: inner window
    assert conv_axis(full, 3, 2, 1, 1, 1, False) == (Axis(8, 0, 8, False, False), 0)      # stride 2: select
    assert conv_axis(full, 3, 2, 0, 1, 1, False) is None                                  # TF SAME: odd rows
    assert conv_axis(full, 3, 2, 0, 1, 1, True) == (Axis(8, 0, 8, False, False), 1)       # ... right-top cols
    assert conv_axis(full, 1, 1, 0, 0, 2, False) == (Axis(8, 0, 8, False, False), 0)      # fused 2x2 pool
    junk = Axis(16, 1, 14, False, False)                                                  # after a valid conv
    assert conv_axis(junk, 3, 1, 1, 1, 1, False) is None                                  # junk where pad is read
    assert conv_axis(junk, 1, 1, 0, 0, 1, False) == (Axis(16, 1, 14, False, False), 0)   # 1x1: window kept
    # an uploaded tensor gets the padding a layer needs: TF SAME stride 2 -> one pad row on top
    ax, out, off = upload_axis(16, 3, 2, 0, 1, 1, False)
    assert (ax.start, ax.size, out.start, out.n, off) == (1, 18, 1, 8, 0)
    ax, out, off = upload_axis(1, 1, 1, 0, 0, 1, False)                                   # a vector on a 4x4 map
    assert (ax.size, out.n) == (4, 1)


def test_channel_splits():
    from npuc.targets.k210.lower import ConvSpec

    def spec(c, m, k, dw=False):
        return ConvSpec("s", k, 1, (0,) * 4, dw, c, m, 7, 7, (1.0, 0), (1.0, 0), np.zeros((m, 1 if dw else c, k, k)),
                        np.ones(m), np.zeros(m), 0, 255, None)

    assert split_channels(spec(320, 1280, 1)) == [(0, 640), (640, 1280)]
    parts = split_channels(spec(512, 512, 3))                  # 6 outputs per 30 KiB load, <= 64 loads
    assert len(parts) == 2 and all((b - a) <= 384 for a, b in parts)
    assert split_channels(spec(1100, 1100, 3, dw=True)) == [(0, 552), (552, 1100)]
    assert split_channels(spec(64, 64, 3)) == [(0, 64)]


# ----------------------------------------------------------------------------- one layer vs QConv
LAYERS = [
    dict(c=8, m=16, k=3),
    dict(c=8, m=16, k=1, pads=0),
    dict(c=12, m=12, k=3, depthwise=True),
    dict(c=8, m=16, k=3, stride=2),
    dict(c=12, m=12, k=3, stride=2, depthwise=True, pads=(0, 0, 1, 1)),      # TF SAME
    dict(c=8, m=8, k=3, pads=0),                                               # valid
    dict(c=8, m=16, k=1, pads=0, stride=2, h=14, w=14),
    dict(c=8, m=16, k=3, act=(100, 220)),                                      # clamp (ReLU6-like)
    dict(c=8, m=16, k=3, leaky=0.1),
    dict(c=8, m=16, k=3, pool=2, clip=(60, 255)),                              # fused Clip + MaxPool 2x2
    dict(c=8, m=16, k=1, pool=4, pads=0, h=16, w=40),
    dict(c=3, m=8, k=3, h=5, w=70),                                            # odd height, 2 rows per line
    dict(c=4, m=8, k=3, h=3, w=3),                                             # smaller than 4x4: padded upload
    dict(c=32, m=1100, k=1, pads=0, h=4, w=4),                                 # > 1024 outputs: 2 layers
    dict(c=512, m=400, k=3, h=4, w=4),                                         # > 64 weight loads: 2 layers
    dict(c=3, m=16, k=5, h=32, w=32, stride=2, pads=(1, 1, 2, 2)),             # 5x5/2: space-to-depth 3x3
    dict(c=3, m=16, k=6, h=64, w=40, stride=2, pads=2),                        # 6x6/2 (a YOLOv5 stem)
    dict(c=3, m=8, k=4, h=20, w=20, stride=2, pads=1),
    dict(c=4, m=8, k=5, h=21, w=19, stride=2, pads=0),
    dict(c=3, m=16, k=7, h=32, w=32, stride=2, pads=3),                        # 7x7/2 (ResNet stem): 48 ch
    dict(c=3, m=8, k=7, h=31, w=29, stride=2, pads=(3, 2, 2, 3)),
    dict(c=2, m=8, k=9, h=24, w=26, stride=2, pads=0),
]


@pytest.mark.parametrize("case", range(len(LAYERS)))
def test_kpu_layer_equals_qconv(case, tmp_path):
    """A KPU layer computes what the cpu target's QConv computes: bit-exact here (the BN
    multiplier and the activation slope reproduce the requantization; only near-ties of
    the rounding can differ by one step)."""
    rng = np.random.default_rng(case)
    g, x = _qconv_graph(rng, **LAYERS[case])
    want = _run_graph(g, {"x": x})
    kg = K210Lowering(g, use_cost_model=False).run()
    assert sum(n.op == "KpuConv" for n in kg.nodes) == 1, [n.op for n in kg.nodes]
    assert not any(n.op in ("QConv", "MaxPool", "Clip") for n in kg.nodes)
    ref = _run_graph(kg, {"x": x})
    sess, prog = _session(kg, tmp_path)
    got = sess.run({"x": x})
    name = g.outputs[0].name
    np.testing.assert_array_equal(got[name], ref[name])           # runtime kernels == reference ops
    d = np.abs(got[name].astype(int) - want[name].astype(int))
    if "leaky" in LAYERS[case]:
        # the leaky slope is a 15-bit mantissa anchored where the segment starts (the code 0
        # end): ~0.004 codes off near the kink, so near-ties round the other way
        assert d.max() <= 1 and (d > 0).mean() < 0.01, (d.max(), (d > 0).mean())
    else:
        assert d.max() == 0, (d.max(), (d > 0).mean())


def test_kpu_words_replay_on_one_sram(tmp_path):
    """The planned addresses in the words are right: replaying the program's KPU layers with
    run_layer on one 2 MB AI SRAM image (maps at their planned offsets, every layer reading
    and writing where its words say) reproduces every download of the session."""
    d = DATA / "blazeface_short"
    out = tmp_path / "b.npuc"
    npuc.compile(d / REAL["blazeface_short"], out, target="k210", dataset=str(d / "calib.npz"))
    prog, sess = read_program(out), npuc.load(out)
    from npuc.format.reader import const_view

    obs = {}
    sess.run_observed({"input": np.load(d / "test.npz")["input"][0]}, lambda n, v: obs.__setitem__(n, v.copy()))
    t = prog.tensors
    sram = new_sram()
    checked = pairs = 0
    for op in prog.ops:
        if op.op == "KpuUpload":
            res = get_op("KpuUpload").run([obs[t[op.inputs[0]].name]], op.attrs)[0]
            off = t[op.outputs[0]].offset
            c, h, w_ = op.attrs["chw"]
            upload(sram, off, from_rows(res, (c, *op.attrs["map"])))
        elif op.op == "KpuConv":
            w, bn, act = (const_view(prog, t[i]).reshape(-1) for i in op.inputs[1:])
            for lay in op.attrs["layers"]:
                L = KpuLayer.from_words(np.asarray(lay["words"], np.uint64))
                assert L.src_addr == t[op.inputs[0]].offset + lay["in_offset"]
                assert L.dst_addr == t[op.outputs[0]].offset + lay["out_offset"]
                run_layer(sram, lay["words"], weights=w[lay["w_offset"]:lay["w_offset"] + lay["w_bytes"]],
                          bn=bn[lay["bn_offset"]:lay["bn_offset"] + lay["channels"]],
                          act=act[lay["act_index"] * 18:(lay["act_index"] + 1) * 18])
        elif op.op == "Concat" and t[op.outputs[0]].pool == "kpu":    # a KPU add's pair map
            parts = [sram[t[i].offset:t[i].offset + t[i].nbytes].copy() for i in op.inputs]
            o = t[op.outputs[0]].offset
            sram[o:o + t[op.outputs[0]].nbytes] = np.concatenate(parts)
            pairs += op.kernel == "concat_in_place"
        elif op.op == "KpuDownload":
            c, h, w_ = op.attrs["chw"]
            y0, x0 = op.attrs["window"]
            full = download(sram, t[op.inputs[0]].offset, (c, *op.attrs["map"]))
            got = full[:, y0:y0 + h, x0:x0 + w_].reshape(op.attrs["out_shape"])
            np.testing.assert_array_equal(got, obs[t[op.outputs[0]].name])
            checked += 1
    assert checked >= 10 and pairs >= 10      # BlazeFace's residual adds run on the KPU


# ----------------------------------------------------------------------------- real models
def _same_quantization_on_cpu(model, out, dataset):
    """The cpu target's program of the very graph the k210 compile quantizes (the k210
    preparation, e.g. input-channel splits, and the k210 quantizer's tweaks): what the KPU
    layers must reproduce."""
    from npuc.api import CompileOptions, optimize
    from npuc.frontends import load_model
    from npuc.quant.driver import quantize_model
    from npuc.targets.k210.target import k210_options

    opts = k210_options(CompileOptions(target="k210", dataset=dataset))
    g = load_model(model)
    optimize(g, opts)
    write_program(lower(quantize_model(g, opts), get_target("cpu")), out)


@pytest.mark.parametrize("case", sorted(REAL))
def test_real_models_k210_vs_float_and_cpu(case, tmp_path):
    d = DATA / case
    kw = {"dataset": str(d / "calib.npz")}
    npuc.compile(d / REAL[case], tmp_path / "k.npuc", target="k210", **kw)
    _same_quantization_on_cpu(d / REAL[case], tmp_path / "c.npuc", **kw)
    sk, sc = npuc.load(tmp_path / "k.npuc"), npuc.load(tmp_path / "c.npuc")
    test, ref = dict(np.load(d / "test.npz")), dict(np.load(d / "ref.npz"))
    n = len(next(iter(test.values())))
    runs = [(sk.run(f), sc.run(f)) for f in ({k: v[i] for k, v in test.items()} for i in range(n))]

    def cos(a, b):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    for name, r in ref.items():
        gk = np.stack([k[name] for k, _ in runs])
        gc = np.stack([c[name] for _, c in runs])
        assert cos(gk, r) >= 0.98, (case, name, cos(gk, r))               # all test samples
        assert min(cos(gk[i], r[i]) for i in range(n)) >= 0.96            # worst sample (PTQ limit)
        if case in ("blazeface_short", "mtcnn_pnet"):   # near-ties (the PReLU slopes' 16-bit mantissas) spread
            assert cos(gk, gc) > 0.999, (name, cos(gk, gc))
        else:                              # KPU layers bit-exact with the cpu QConv here
            np.testing.assert_array_equal(gk, gc)
    info = read_program(tmp_path / "k.npuc")
    kpu_ops = [o for o in info.ops if o.op == "KpuConv"]
    assert kpu_ops
    if case == "mtcnn_pnet":   # per-channel PReLU in the KPU layers' tables
        assert not any(o.op in ("QConv", "QPRelu") for o in info.ops)


# ----------------------------------------------------------------------------- report, CLI
def test_inspect_placement_and_pools(tmp_path, capsys):
    from npuc.cli import inspect_dict, main

    d = DATA / "blazeface_short"
    out = tmp_path / "b.npuc"
    assert main(["compile", str(d / REAL["blazeface_short"]), "-o", str(out), "-t", "k210",
                 "--dataset", str(d / "calib.npz")]) == 0
    text = capsys.readouterr().out
    assert "KPU layer(s)" in text and "AI SRAM" in text
    info = inspect_dict(str(out))
    pools = info["memory"]["pools"]
    for p in ("kpu", "main"):
        assert {"bytes", "capacity", "lower_bound_bytes"} <= set(pools[p])
    assert pools["kpu"]["capacity"] == AI_SRAM_BYTES and pools["main"]["capacity"] == MAIN_SRAM_BYTES
    assert 0 < pools["kpu"]["lower_bound_bytes"] <= pools["kpu"]["bytes"] <= AI_SRAM_BYTES
    assert pools["main"]["bytes"] == pools["main"]["arena_bytes"] + pools["main"]["constants_bytes"]
    pl = info["placement"]
    ops = pl["ops"]
    assert len(ops) == info["op_count"] and {o["where"] for o in ops} == {"kpu", "cpu"}
    assert all(o.get("reason") for o in ops if o["where"] == "cpu")
    stem = next(o for o in ops if o["name"] == "conv2d")         # the 5x5/2 stem: 3x3 on space-to-depth
    assert stem["where"] == "kpu" and stem["in_map"][0] == 12
    assert any("space-to-depth" in o.get("reason", "") for o in ops)
    kpu_adds = [o for o in ops if o["op"] == "KpuConv" and o["in_map"][0] > o["out_map"][0]
                and o["kernel"] == 1 and "add" in o["implements"][0]]
    assert len(kpu_adds) >= 12                                    # residual adds as 1x1 layers on pair maps
    # the shortcuts' channel padding is the pair layers' zero weights; their max pools are KPU layers
    assert sum(any("channel_padding" in x for x in o["implements"]) for o in kpu_adds) >= 8
    assert sum(o["op"] == "Pad" for o in ops) <= 2
    pools = [o for o in ops if o["op"] == "KpuConv" and o["implements"][0].startswith("max_pooling2d")]
    assert len(pools) == 3 and all(o["pool"] == "max_2_s2" and o["depthwise"] for o in pools)
    pairs = [o for o in ops if o["op"] == "Concat"]
    assert pairs and all(o["where"] == "kpu" and o["in_place"] and o["est_us"] == 0 for o in pairs)
    assert all(o["reason"] for o in ops if o["op"] == "QAdd")
    tot = pl["totals"]
    assert tot["kpu_layers"] >= tot["kpu_ops"] == sum(o["op"] == "KpuConv" for o in ops) > 10
    assert tot["bytes_moved"] == sum(o.get("bytes", 0) for o in ops) > 0
    assert tot["est_ms"] > 0 and all(o["est_us"] >= 0 for o in ops)
    json.dumps(info)
    assert main(["inspect", str(out)]) == 0
    assert "estimated time" in capsys.readouterr().out


def test_tiny_fc_stays_on_cpu_by_cost(tmp_path):
    d = DATA / "digits_dwcnn"
    npuc.compile(d / "model.onnx", tmp_path / "d.npuc", target="k210", dataset=str(d / "calib.npz"))
    prog = read_program(tmp_path / "d.npuc")
    fc = next(o for o in prog.ops if o.name == "/fc/Gemm")
    assert fc.op == "QGemm" and "faster on the CPU" in prog.meta["k210"]["reasons"][fc.name]
    # without the cost model the classifier becomes a 1x1 KPU layer on a padded 4x4 map
    from npuc.api import _options, optimize
    from npuc.frontends import load_model
    from npuc.quant.driver import quantize_model
    from npuc.targets.k210.target import k210_options

    opts = k210_options(_options("k210", {}, None, {"dataset": str(d / "calib.npz")}))
    g = load_model(d / "model.onnx")
    optimize(g, opts)
    q = quantize_model(g, opts)
    kg = K210Lowering(q, use_cost_model=False).run()
    fcn = next(n for n in kg.nodes if n.name == "/fc/Gemm")
    assert fcn.op == "KpuConv" and fcn.attrs["in_map"] == [64, 4, 4]
    x = np.load(d / "test.npz")["input"][:4]
    want = [_run_graph(q, {"input": xi}) for xi in x]
    got = [_run_graph(kg, {"input": xi}) for xi in x]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a["logits"], b["logits"])


# ----------------------------------------------------------------------------- memory budgets
def _big_fc_model(path, k=2600, n=2600):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
    g = helper.make_graph([node], "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                          initializer=[numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.savez(str(path) + ".npz", x=rng.standard_normal((2, 1, k)).astype(np.float32))


def test_weights_beyond_general_sram_are_refused(tmp_path):
    _big_fc_model(tmp_path / "big.onnx")             # 6.8 MB of int8 weights
    with pytest.raises(NpucError, match=r"general SRAM holds 6,291,456 bytes .* largest: 'fc_B_q' 6.45 MB\. "):
        npuc.compile(tmp_path / "big.onnx", tmp_path / "big.npuc", target="k210",
                     dataset=str(tmp_path / "big.onnx.npz"))
    from npuc.cli import main

    assert main(["compile", str(tmp_path / "big.onnx"), "-o", str(tmp_path / "b.npuc"), "-t", "k210",
                 "--dataset", str(tmp_path / "big.onnx.npz")]) == 1


def test_resnet18_is_refused_for_general_sram(tmp_path):
    from tests.models import zoo

    m = zoo.resnet18(resolution=32, num_classes=1000)
    zoo.save(m, tmp_path / "r.onnx")
    np.savez(tmp_path / "c.npz", **zoo.random_inputs(m, n=2))
    with pytest.raises(NpucError, match=r"weights need 11,\d{3},\d{3} bytes"):
        npuc.compile(tmp_path / "r.onnx", tmp_path / "r.npuc", target="k210", dataset=str(tmp_path / "c.npz"))


def _check_kpu_plan(prog):
    """No two AI SRAM maps live at the same step overlap; all 64-byte aligned, inside 2 MB."""
    t = prog.tensors
    first, last = {}, {}
    for i, op in enumerate(prog.ops):
        for tid in op.inputs:
            if tid >= 0 and t[tid].pool == "kpu":
                last[tid] = i
        for tid in op.outputs:
            if t[tid].pool == "kpu":
                first[tid] = last[tid] = i
    pairs = [op for op in prog.ops if op.op == "Concat" and t[op.outputs[0]].pool == "kpu"]
    for op in pairs:      # the pair map of a KPU add: its two maps, side by side (checked), live on in it
        out = op.outputs[0]
        off = t[out].offset
        for tid in op.inputs:
            if op.kernel == "concat_in_place":
                assert t[tid].offset == off
            off += t[tid].nbytes
            if op.kernel == "concat_in_place":
                last[tid] = max(last[tid], last[out])
        if op.kernel == "concat_in_place":
            first.pop(out)
    items = sorted(first)
    for a in items:
        assert t[a].offset % 64 == 0 and t[a].offset + t[a].nbytes <= AI_SRAM_BYTES
        for b in items:
            if a < b and first[a] <= last[b] and first[b] <= last[a]:
                assert t[a].offset + t[a].nbytes <= t[b].offset or t[b].offset + t[b].nbytes <= t[a].offset
    return len(items)


def _mobilenet_v2(tmp_path, res):
    from tests.models import zoo

    m = zoo.mobilenet_v2(resolution=res)
    zoo.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **zoo.random_inputs(m, seed=1, n=2))
    t0 = time.perf_counter()
    rep = npuc.compile(tmp_path / "m.onnx", tmp_path / "m.npuc", target="k210", dataset=str(tmp_path / "c.npz"))
    prog = read_program(tmp_path / "m.npuc")
    kpu = next(p for p in prog.pools if p.name == "kpu")
    size = (tmp_path / "m.npuc").stat().st_size
    print(f"\nMobileNetV2-1.0 {res}x{res} k210: AI SRAM {kpu.size:,} B (lower bound {kpu.lower_bound:,}), "
          f"file {size:,} B, compile {time.perf_counter() - t0:.1f} s")
    assert kpu.size <= AI_SRAM_BYTES and size < MAIN_SRAM_BYTES
    assert _check_kpu_plan(prog) > 50
    conv1280 = next(o for o in prog.ops if o.op == "KpuConv" and o.attrs["out_map"][0] == 1280)
    assert len(conv1280.attrs["layers"]) == 2                     # split by output channels
    fc = [o for o in prog.ops if o.op == "KpuConv" and o.name.startswith("/classifier/classifier.1/Gemm/in")]
    assert [o.attrs["in_map"][0] for o in fc] == [640, 640]       # split by input channels
    adds = [o for o in prog.ops if o.op == "KpuConv" and o.attrs.get("residual_add")]
    assert len(adds) >= (10 if res == 224 else 8)                 # residual adds on pair maps
    assert not any(o.op in ("QConv", "QGemm") for o in prog.ops)
    assert rep.file_bytes == size
    sess = npuc.load(tmp_path / "m.npuc")
    x = zoo.random_inputs(m, seed=5)["input"]
    assert np.isfinite(sess.run({"input": x})["output"]).all()


def test_mobilenet_v2_224_fits(tmp_path):
    _mobilenet_v2(tmp_path, 224)


def test_mobilenet_v2_160_fits(tmp_path):
    _mobilenet_v2(tmp_path, 160)


# ----------------------------------------------------------------------------- fusion, tiling, errors
def _with_lut(g: Graph, op: str):
    """Append the quantize pass's QLut of activation ``op`` to the graph's output."""
    from npuc.quant.qparams import QParams, QType, choose_qparams, dequantize, quantize

    y = g.outputs[0]
    px = QParams(np.asarray(y.quant.scale, np.float32), np.asarray(y.quant.zero_point, np.int64), QType.UINT8)
    xs = dequantize(np.arange(256).astype(np.uint8), px).astype(np.float32)
    d = get_op(op)
    ys = d.run([xs], d.normalize_attrs({}))[0]
    qy = choose_qparams(float(ys.min()), float(ys.max()), QType.UINT8, symmetric=False)
    z = g.make_node("QLut", [y], name="lut", attrs={"table": quantize(ys, qy).astype(np.int32), "out_dtype": "uint8"},
                    outputs=["z"]).outputs[0]
    z.quant = QuantParams(qy.scale, qy.zero_point)
    g.outputs = [z]
    return qy


@pytest.mark.parametrize("op", ["Sigmoid", "Swish", "HardSwish", "Tanh"])
def test_lookup_table_activation_fuses_into_the_layer(op):
    """conv → QLut (sigmoid, swish...) is one KPU layer whose activation table fits the
    function: within one step of the ideal f(u) of the exact accumulator, where the cpu
    graph's double rounding (u to 8 bits, then the table) can be several steps off."""
    from npuc.ops.nn import conv

    rng = np.random.default_rng(3)
    g, x = _qconv_graph(rng, c=16, m=16, k=3)
    qy = _with_lut(g, op)
    kg = K210Lowering(g, use_cost_model=False).run()
    kc = [n for n in kg.nodes if n.op == "KpuConv"]
    assert len(kc) == 1 and kc[0].attrs["act"] == op and not any(n.op == "QLut" for n in kg.nodes)
    got = _run_graph(kg, {"x": x})["z"].astype(np.int64)
    cn = g.nodes[0]
    xv, wv, bv = cn.inputs
    attrs = {k: cn.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
    acc = np.rint(conv(x - float(xv.quant.zero_point), wv.const.astype(np.float64), None, **attrs))
    u = (acc + bv.const.reshape(1, -1, 1, 1)) * float(xv.quant.scale) * np.asarray(wv.quant.scale,
                                                                                    np.float64).reshape(1, -1, 1, 1)
    f = get_op(op).run([u], get_op(op).normalize_attrs({}))[0]
    ideal = np.clip(np.rint(f / float(qy.scale) + int(qy.zero_point)), 0, 255)
    assert np.abs(got - ideal).max() <= 1 and (got != ideal).mean() < 0.05


@pytest.mark.parametrize("kw", [dict(c=3, m=16, k=3, h=300, w=300, pool=2),
                                dict(c=4, m=8, k=3, h=301, w=64, pads=(0, 0, 1, 1), stride=2),
                                dict(c=16, m=64, k=3, h=200, w=200),
                                dict(c=3, m=8, k=3, h=48, w=640),                       # wider than 512
                                dict(c=3, m=8, k=3, h=40, w=700, stride=2, pads=(0, 0, 1, 1)),
                                dict(c=4, m=8, k=1, h=20, w=1100, pads=0, pool=2),
                                dict(c=3, m=8, k=3, h=300, w=600),                      # rows and columns
                                dict(c=3, m=8, k=5, h=600, w=320, stride=2, pads=2),    # space-to-depth tiles
                                dict(c=3, m=16, k=7, h=180, w=1100, stride=2, pads=3)])
def test_tiles_with_halos(kw, tmp_path):
    """Maps taller than 256 rows or wider than 512 columns, or layers whose maps exceed AI
    SRAM, run as tiles: each uploads its input rows and columns plus the halo, the KPU
    computes it, the tiles join."""
    rng = np.random.default_rng(1)
    g, x = _qconv_graph(rng, **kw)
    want = _run_graph(g, {"x": x})
    kg = K210Lowering(g, use_cost_model=False).run()
    convs = [n for n in kg.nodes if n.op == "KpuConv"]
    assert len(convs) >= 2 and all(n.attrs["in_map"][1] <= 256 and n.attrs["in_map"][2] <= 512 for n in convs)
    ups = [(n.attrs["rows"], n.attrs["cols"]) for n in kg.nodes if n.op == "KpuUpload"]
    if kw.get("stride") != 2 and kw["k"] == 3:      # neighbouring tiles' halos overlap
        rows = sorted({tuple(r) for r, _ in ups})
        cols = sorted({tuple(c) for _, c in ups})
        assert all(b[0] < a[1] for a, b in zip(rows, rows[1:])) and all(b[0] < a[1] for a, b in zip(cols, cols[1:]))
    sess, prog = _session(kg, tmp_path)
    name = g.outputs[0].name
    got = sess.run({"x": x})[name]
    d = np.abs(got.astype(int) - want[name].astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-5
    assert _check_kpu_plan(prog) >= 2


def test_ai_sram_budget_error_names_the_peak():
    from npuc.targets.k210.lower import KpuMemoryError, check_kpu_memory

    rng = np.random.default_rng(0)
    g, _ = _qconv_graph(rng, c=16, m=32, k=3, h=64, w=64)
    kg = K210Lowering(g, use_cost_model=False).run()
    with pytest.raises(KpuMemoryError) as e:
        check_kpu_memory(kg, 100_000)
    msg = str(e.value)
    assert "AI SRAM" in msg and "bytes over" in msg and "'conv'" in msg and "'x@kpu'" in msg and "Lower" in msg


def test_cpu_tensors_beyond_general_sram_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 600, 800])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 600, 800])],
                          initializer=[numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((2, 1, 3, 600, 800)).astype(np.float32))
    with pytest.raises(NpucError, match=r"general SRAM: .* bytes over\)\. The CPU tensors peak at step \d+ "
                                        r"\(DequantizeLinear .* 'z' 15,360,000 B"):
        npuc.compile(tmp_path / "m.onnx", tmp_path / "m.npuc", target="k210", dataset=str(tmp_path / "c.npz"))


@pytest.mark.parametrize("kw, why", [(dict(k=5, stride=1, pads=2), "kernel 5x5"),
                                     (dict(k=3, stride=3, pads=1), "stride [3, 3]"),
                                     (dict(c=8, m=16, k=3, h=8, w=8, leaky=None), None)])
def test_cpu_reasons_for_convolutions(kw, why):
    rng = np.random.default_rng(0)
    g, _ = _qconv_graph(rng, **kw)
    kl = K210Lowering(g, use_cost_model=False)
    kg = kl.run()
    conv = next(n for n in kg.nodes if n.name == "conv")
    if why is None:
        assert conv.op == "KpuConv"
    else:
        assert conv.op == "QConv" and why in kg.metadata["k210"]["reasons"]["conv"]


def _small_resnet(resolution=64, widths=(16, 32, 64, 128), num_classes=10, seed=0):
    """torchvision's ResNet-18 layout (7x7/2 stem, 3x3/2 max pool, 4 stages of 2 basic blocks,
    1x1/2 downsample shortcuts, GAP, fc) with narrow stages, built like tests/models/zoo.py."""
    from tests.models import zoo

    b = zoo._Builder(17, seed, False)
    x = zoo._image_input(b, resolution)
    x = zoo._relu(b, zoo._conv_bn(b, x, widths[0], 7, 2, 3, conv="conv1", bn="bn1"), "relu")
    x = zoo._maxpool(b, x, 3, 2, 1, "maxpool")
    cin = widths[0]
    for li, c in enumerate(widths, start=1):
        for bi in range(2):
            stride = 2 if li > 1 and bi == 0 else 1
            p = f"layer{li}.{bi}"
            h = zoo._relu(b, zoo._conv_bn(b, x, c, 3, stride, 1, conv=f"{p}.conv1", bn=f"{p}.bn1"), f"{p}.relu")
            h = zoo._conv_bn(b, h, c, 3, 1, 1, conv=f"{p}.conv2", bn=f"{p}.bn2")
            idn = x
            if stride != 1 or cin != c:
                idn = zoo._conv_bn(b, x, c, 1, stride, 0, conv=f"{p}.downsample.0", bn=f"{p}.downsample.1")
            x = zoo._relu(b, zoo._add(b, h, idn, zoo._scope(p)), f"{p}.relu_1")
            cin = c
    x = zoo._flatten(b, zoo._gap(b, x, zoo._scope("avgpool")), "")
    b.output(zoo._gemm(b, x, num_classes, module="fc"), "output")
    return b.finish("ResNet-18 layout, narrow")


@pytest.mark.parametrize("name", ["resnet_style", "tiny_cnn"])
def test_zoo_networks_k210_vs_float_and_cpu(name, tmp_path):
    import onnxruntime as ort

    from tests.models import zoo

    m = _small_resnet() if name == "resnet_style" else zoo.tiny_cnn()
    zoo.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **zoo.random_inputs(m, seed=1, n=8))
    npuc.compile(tmp_path / "m.onnx", tmp_path / "k210.npuc", target="k210", dataset=str(tmp_path / "c.npz"))
    _same_quantization_on_cpu(tmp_path / "m.onnx", tmp_path / "cpu.npuc", str(tmp_path / "c.npz"))
    sk, sc = npuc.load(tmp_path / "k210.npuc"), npuc.load(tmp_path / "cpu.npuc")
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = zoo.random_inputs(m, seed=7, n=4)["input"]
    f = np.stack([ref.run(None, {"input": xi})[0] for xi in x]).astype(np.float64).ravel()
    k = np.stack([sk.run({"input": xi})["output"] for xi in x]).astype(np.float64).ravel()
    c = np.stack([sc.run({"input": xi})["output"] for xi in x]).astype(np.float64).ravel()
    assert k @ f / np.linalg.norm(k) / np.linalg.norm(f) >= 0.98
    np.testing.assert_array_equal(k, c)
    prog = read_program(tmp_path / "k210.npuc")
    assert sum(o.op == "KpuConv" for o in prog.ops) >= (20 if name == "resnet_style" else 3)
