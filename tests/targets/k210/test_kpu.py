"""K210 KPU: register encoding, AI SRAM layout, parameter computation, activation fitting,
and the emulator against an independent integer reference (tests/targets/k210/reference.py)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from npuc.targets.k210 import (AI_SRAM_BYTES, LAYER_FIELDS, ActTable, BnTable, KpuError, KpuLayer, KpuPool,
                               apply_act_table, byte_offset, decode_act, decode_bn, download, emulate_layer,
                               encode_act, encode_bn, fit_activation, float_layer, fmap_bytes, make_kpu_layer,
                               new_sram, parse_pool, quantize_weights, row_layout, run_layer, upload)
from npuc.targets.k210.spec import ACT_START_MAX, ACT_START_MIN, layer_limit_violations

from .reference import reference_layer


# ----------------------------------------------------------------------------- encoding
def _field_range(width, signed):
    return (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)


def test_layer_fields_are_disjoint_and_fit_their_words():
    used = {}
    for name, w, lsb, width, _ in LAYER_FIELDS:
        assert 0 <= w < 12 and lsb + width <= 64, name
        mask = ((1 << width) - 1) << lsb
        assert used.get(w, 0) & mask == 0, f"{name} overlaps another field"
        used[w] = used.get(w, 0) | mask
    assert {f.name for f in __import__("dataclasses").fields(KpuLayer)} == {f[0] for f in LAYER_FIELDS}


def test_layer_round_trip_every_field():
    rng = np.random.default_rng(1)
    for _ in range(200):
        kw = {}
        for name, _, _, width, signed in LAYER_FIELDS:
            lo, hi = _field_range(width, signed)
            kw[name] = int(rng.integers(lo, hi, endpoint=True))
        layer = KpuLayer(**kw)
        words = layer.to_words()
        assert words.dtype == np.uint64 and words.shape == (12,)
        assert KpuLayer.from_words(words) == layer
    # each field alone at its extremes lands exactly on its bits
    for name, w, lsb, width, signed in LAYER_FIELDS:
        lo, hi = _field_range(width, signed)
        for v in (lo, hi, 1):
            words = KpuLayer(**{f[0]: 0 for f in LAYER_FIELDS}, ).replace(**{name: v}).to_words()
            expect = np.zeros(12, np.uint64)
            expect[w] = np.uint64((v & ((1 << width) - 1)) << lsb)
            assert (words == expect).all(), (name, v)
            assert getattr(KpuLayer.from_words(words), name) == v


def test_layer_known_bits_and_range_errors():
    z = {f[0]: 0 for f in LAYER_FIELDS}
    w = KpuLayer(**z).replace(image_src_addr=3, image_dst_addr=0x7FFF).to_words()
    assert int(w[1]) == 3 | (0x7FFF << 32)
    w = KpuLayer(**z).replace(arg_x=-1, arg_w=-2, shr_x=5, shr_w=7).to_words()
    assert int(w[9]) == 7 | (5 << 4) | (((1 << 24) - 2) << 8) | (((1 << 24) - 1) << 32)
    assert int(KpuLayer(**z).replace(arg_add=-1).to_words()[10]) == (1 << 40) - 1
    assert int(KpuLayer(**z).replace(pool_type=9, pad_value=0xAB, kernel_type=1).to_words()[4]) == \
        1 | (9 << 4) | (0xAB << 24)
    with pytest.raises(KpuError, match="i_ch_num"):
        KpuLayer(i_ch_num=1024).to_words()
    with pytest.raises(KpuError, match="arg_x"):
        KpuLayer(arg_x=1 << 23).to_words()
    with pytest.raises(KpuError):
        KpuLayer.from_words(np.zeros(11, np.uint64))


def test_bn_words_round_trip_and_layout():
    rng = np.random.default_rng(2)
    bn = BnTable(mul=rng.integers(-(1 << 23), 1 << 23, 500), shift=rng.integers(0, 16, 500),
                 add=rng.integers(-(1 << 31), 1 << 31, 500))
    words = encode_bn(bn)
    back = decode_bn(words)
    assert (back.mul == bn.mul).all() and (back.shift == bn.shift).all() and (back.add == bn.add).all()
    one = encode_bn(BnTable(mul=[-1], shift=[15], add=[-1]))
    assert int(one[0]) == ((1 << 24) - 1) | (((1 << 32) - 1) << 24) | (15 << 56)
    with pytest.raises(KpuError, match="norm_shift"):
        encode_bn(BnTable(mul=[0], shift=[16], add=[0]))


def test_act_words_round_trip_and_bias_bytes():
    rng = np.random.default_rng(3)
    for _ in range(50):
        act = ActTable(start=rng.integers(ACT_START_MIN, ACT_START_MAX, 16, endpoint=True),
                       mul=rng.integers(-32768, 32767, 16, endpoint=True), shift=rng.integers(0, 255, 16, endpoint=True),
                       bias=rng.integers(0, 255, 16, endpoint=True))
        words = encode_act(act)
        assert words.shape == (18,)
        back = decode_act(words)
        for f in ("start", "mul", "shift", "bias"):
            assert (getattr(back, f) == getattr(act, f)).all()
    act = ActTable(start=[-1] + [0] * 15, mul=[-2] + [0] * 15, shift=[3] + [0] * 15, bias=list(range(1, 17)))
    w = encode_act(act)
    assert int(w[0]) == 3 | (0xFFFE << 8) | (((1 << 36) - 1) << 24)
    assert w[16:].view(np.uint8).tolist() == list(range(1, 17))     # little-endian bias bytes


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("width", [4, 10, 16, 17, 31, 32, 33, 64, 65, 100, 128, 130, 200])
@pytest.mark.parametrize("channels", [1, 2, 3, 5, 7, 70])
def test_layout_round_trip(width, channels):
    rng = np.random.default_rng(width * 100 + channels)
    h = 5
    x = rng.integers(0, 256, (channels, h, width), dtype=np.uint8)
    lay = row_layout(width)
    assert fmap_bytes(channels, h, width) == lay.row_len * h * -(-channels // lay.groups) * 64
    mem = np.zeros(fmap_bytes(channels, h, width) + 256, np.uint8)
    upload(mem, 64, x)
    assert (download(mem, 64, x.shape) == x).all()
    assert not mem[:64].any() and not mem[64 + fmap_bytes(channels, h, width):].any()
    # every pixel sits at the documented address
    for c, y, xx in [(0, 0, 0), (channels - 1, h - 1, width - 1), (channels // 2, 2, width // 2)]:
        assert mem[64 + byte_offset(c, y, xx, h, width)] == x[c, y, xx]


def test_layout_known_offsets_and_batches():
    # W ≤ 16: four channels per row, pitch 16; channel 5 is in group 1, slot 1
    assert byte_offset(5, 0, 0, 7, 10) == 1 * 7 * 64 + 16
    assert byte_offset(3, 2, 1, 7, 30) == 1 * 7 * 64 + 32 + 2 * 64 + 1
    assert byte_offset(1, 1, 70, 3, 100) == 2 * 3 * 64 + 2 * 64 + 70
    assert row_layout(16).groups == 4 and row_layout(17).groups == 2 and row_layout(33).groups == 1
    assert row_layout(129).row_len == 3
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 6, 20), dtype=np.uint8)
    mem = new_sram()
    upload(mem, 128, x)
    assert (download(mem, 128, x.shape) == x).all()
    with pytest.raises(KpuError):
        upload(mem, AI_SRAM_BYTES - 64, x[0])
    with pytest.raises(KpuError):
        upload(mem, 3, x[0])


# ----------------------------------------------------------------------------- random layers
def _random_layer(rng, *, via_params=False):
    """A random but legal KPU layer: words, weights, BN and activation words, input."""
    k = int(rng.choice([1, 3]))
    dw = bool(rng.random() < 0.35)
    c = int(rng.integers(1, 71)) if rng.random() < 0.8 else int(rng.choice([4, 8, 16, 64, 65, 66]))
    m = c if dw else int(rng.integers(1, 71))
    w = int(rng.choice([int(rng.integers(4, 81)), int(rng.choice([4, 15, 16, 17, 32, 33, 63, 64, 65, 80]))]))
    h = int(rng.integers(4, 13))
    pool = KpuPool(int(rng.integers(0, 10)))
    ho, wo = pool.out_size(h), pool.out_size(w)
    src = 64 * int(rng.integers(0, 2000))
    dst = src + fmap_bytes(c, h, w) + 64 * int(rng.integers(0, 50))
    x = rng.integers(0, 256, (c, h, w), dtype=np.uint8)
    per = 1 if dw else c
    n = per
    if via_params:
        acts = [None, {"op": "Relu"}, {"op": "Clip", "min": 0.0, "max": 6.0}, {"op": "LeakyRelu", "alpha": 0.1},
                {"op": "Sigmoid"}, {"op": "HardSwish"}]
        wf = rng.normal(0, 0.5, (m, per, k, k))
        prog = make_kpu_layer((0.02, int(rng.integers(0, 256))), wf, rng.normal(0, 1, m), in_shape=(c, h, w),
                              out_q=(float(rng.uniform(0.01, 0.2)), int(rng.integers(0, 256))), depthwise=dw,
                              activation=acts[int(rng.integers(len(acts)))], pool=pool, src_addr=src, dst_addr=dst,
                              pad_value=int(rng.integers(0, 256)) if rng.random() < 0.3 else None)
        return prog.words, prog.weights, prog.bn_words, prog.act_words, x
    wq = rng.integers(0, 256, (m, per, k, k), dtype=np.uint8)
    # conv arguments kept inside the 36-bit ALU: |terms| < 2^33 each
    sx_max = 255 * k * k * n
    shr_x, shr_w = int(rng.integers(0, 16)), int(rng.integers(0, 16))
    ax = min((1 << 23) - 1, (1 << 33 << shr_x) // sx_max)
    aw = min((1 << 23) - 1, (1 << 33 << shr_w) // sx_max)
    arg_x, arg_w = int(rng.integers(-ax, ax + 1)), int(rng.integers(-aw, aw + 1))
    adm = min((1 << 39) - 1, (1 << 33) // n)
    arg_add = int(rng.integers(-adm, adm + 1)) if rng.random() < 0.7 else int(rng.integers(-70000, 70000))
    acc_max = 255 * 255 * k * k * n + 3 * (1 << 33)
    bsh = rng.integers(0, 16, m)
    mlim = np.minimum((1 << 23) - 1, ((1 << 34) << bsh) // acc_max)
    bmul = np.array([int(rng.integers(-v, v + 1)) for v in mlim])
    if rng.random() < 0.5:   # realistic magnitudes too, not only tiny multipliers
        bmul = np.clip(bmul, -(1 << 23) + 1, (1 << 23) - 1)
    badd = rng.integers(-(1 << 31), 1 << 31, m)
    if rng.random() < 0.5:
        badd = rng.integers(-1000, 1000, m)
    bn = BnTable(mul=bmul, shift=bsh, add=badd)
    lin, lout = row_layout(w), row_layout(wo)
    oc_one = m if dw else min(m, (30 * 1024) // (per * k * k))
    layer = KpuLayer(
        int_en=int(rng.integers(0, 2)), ram_flag=int(rng.integers(0, 2)), depth_wise_layer=int(dw),
        image_src_addr=src // 64, image_dst_addr=dst // 64, i_ch_num=c - 1, o_ch_num=m - 1,
        o_ch_num_coef=oc_one - 1, i_row_wid=w - 1, i_col_high=h - 1, o_row_wid=wo - 1, o_col_high=ho - 1,
        kernel_type=1 if k == 3 else 0, pool_type=int(pool), pad_value=int(rng.integers(0, 256)),
        bwsx_base_addr=int(rng.integers(0, 1 << 20)), load_time=-(-m // oc_one) - 1, para_size=oc_one * per * k * k,
        channel_switch_addr=lin.row_len * h, row_switch_addr=lin.row_len, coef_group=lin.groups,
        wb_channel_switch_addr=lout.row_len * ho, wb_row_switch_addr=lout.row_len, wb_group=lout.groups,
        shr_w=shr_w, shr_x=shr_x, arg_w=arg_w, arg_x=arg_x, arg_add=arg_add,
        channel_byte_num=(wo * ho - 1) & 0xFFFF, dma_total_byte=wo * ho * m - 1)
    # an activation table whose starts fall among the actual BN outputs
    from .reference import conv_bn
    v = conv_bn(x.astype(np.int64), wq.astype(np.int64), layer, bn).reshape(-1)
    qs = np.quantile(v, np.sort(rng.random(16))).astype(np.int64)
    start = np.sort(qs)
    mode = rng.random()
    if mode < 0.5:
        start[0] = ACT_START_MIN
    elif mode < 0.6:
        rng.shuffle(start)             # unsorted: the highest-index match wins
    elif mode < 0.7:
        start[rng.integers(8, 16):] = ACT_START_MAX
    spread = max(int(v.max() - v.min()), 1)
    amul = rng.integers(-32768, 32768, 16)
    ash = np.clip(np.log2(np.abs(amul) * spread / 64 + 1).astype(np.int64) + rng.integers(-3, 4, 16), 0, 255)
    ash[rng.random(16) < 0.1] = int(rng.integers(60, 256))
    ash[rng.random(16) < 0.1] = 0
    act = ActTable(start=start, mul=amul, shift=ash, bias=rng.integers(0, 256, 16))
    return layer.to_words(), wq.reshape(-1), encode_bn(bn), encode_act(act), x


def _compare(words, weights, bn_words, act_words, x):
    L = KpuLayer.from_words(words)
    sram = np.random.default_rng(7).integers(0, 256, AI_SRAM_BYTES, dtype=np.uint8)
    upload(sram, L.src_addr, x)
    s1, s2 = sram.copy(), sram.copy()
    y1 = run_layer(s1, words, weights=weights, bn=bn_words, act=act_words)
    y2 = reference_layer(s2, words, weights, bn_words, act_words)
    assert y1.dtype == np.uint8 and y1.shape == L.out_shape
    assert np.array_equal(y1, y2), f"output differs for {L}"
    assert np.array_equal(s1, s2), "AI SRAM differs after the layer"
    assert np.array_equal(download(s1, L.dst_addr, L.out_shape), y1)
    return L


def test_emulator_matches_reference_random_sweep():
    rng = np.random.default_rng(2024)
    seen = set()
    n = 320
    for i in range(n):
        L = _compare(*_random_layer(rng, via_params=(i % 8 == 0)))
        seen.add((L.kernel, L.depthwise, L.pool_type, row_layout(L.in_shape[2]).groups,
                  row_layout(L.out_shape[2]).groups))
    kernels = {s[0] for s in seen}
    pools = {s[2] for s in seen}
    assert kernels == {1, 3} and pools == set(range(10))
    assert {s[3] for s in seen} == {1, 2, 4} and {s[4] for s in seen} == {1, 2, 4}
    assert {(s[0], s[1]) for s in seen} == {(1, False), (1, True), (3, False), (3, True)}


def test_emulator_edge_layers():
    """Extreme geometries (smallest maps, channel counts past the row groups, maps at the
    top of AI SRAM), built by make_kpu_layer."""
    rng = np.random.default_rng(5)
    for c, h, w, k, dw, pool in [(1, 4, 4, 3, False, 9), (1, 4, 4, 1, True, 8), (70, 5, 65, 3, False, 3),
                                 (66, 4, 16, 3, True, 7), (3, 7, 129, 1, False, 6), (5, 9, 33, 3, False, 2),
                                 (9, 4, 200, 3, True, 1), (2, 6, 17, 1, False, 5)]:
        m = c if dw else c + 3
        prog = make_kpu_layer((0.05, 100), rng.normal(0, 0.3, (m, 1 if dw else c, k, k)), rng.normal(0, 0.2, m),
                              in_shape=(c, h, w), out_q=(0.05, 30), depthwise=dw, activation={"op": "Relu"},
                              pool=KpuPool(pool), src_addr=AI_SRAM_BYTES - fmap_bytes(c, h, w), dst_addr=64)
        _compare(prog.words, prog.weights, prog.bn_words, prog.act_words,
                 rng.integers(0, 256, (c, h, w), dtype=np.uint8))


def test_run_layer_fetches_tables_from_main_memory():
    rng = np.random.default_rng(9)
    prog = make_kpu_layer((0.03, 120), rng.normal(0, 0.2, (12, 6, 3, 3)), rng.normal(0, 0.1, 12),
                          in_shape=(6, 8, 20), out_q=(0.05, 10), activation={"op": "Sigmoid"}, pool="max2x2s2")
    main = np.zeros(4096, np.uint8)
    prog2 = prog.relocate(weights_addr=0, bn_addr=1024, act_addr=2048, src_addr=64 * 10, dst_addr=64 * 100)
    main[:prog.weights.size] = prog.weights
    main[1024:1024 + 8 * 12] = prog.bn_words.view(np.uint8)
    main[2048:2048 + 144] = prog.act_words.view(np.uint8)
    x = rng.integers(0, 256, (6, 8, 20), dtype=np.uint8)
    a, b = new_sram(), new_sram()
    upload(a, 0, x)
    upload(b, 640, x)
    ya = emulate_layer(a, prog)
    yb = run_layer(b, prog2.words, main=main)
    assert np.array_equal(ya, yb)
    with pytest.raises(KpuError, match="aligned"):
        prog.relocate(act_addr=100)


def test_emulator_rejects_inconsistent_words():
    rng = np.random.default_rng(10)
    prog = make_kpu_layer((0.03, 120), rng.normal(0, 0.2, (4, 4, 1, 1)), None, in_shape=(4, 8, 8), out_q=(0.05, 10))
    sram = new_sram()
    for change, msg in [(dict(o_row_wid=6), "output size"), (dict(first_stride=1), "first_stride"),
                        (dict(para_size=3), "weight loads"), (dict(pool_type=12), "pool")]:
        with pytest.raises(KpuError, match=msg):
            run_layer(sram, prog.layer.replace(**change).to_words(), weights=prog.weights, bn=prog.bn_words,
                      act=prog.act_words)
    with pytest.raises(KpuError, match="weight bytes"):
        run_layer(sram, prog.words, weights=prog.weights[:3], bn=prog.bn_words, act=prog.act_words)


# ----------------------------------------------------------------------------- parameters
def test_weight_quantization_shares_one_zero_point():
    rng = np.random.default_rng(11)
    w = rng.normal(0, 1, (8, 3, 3, 3))
    w[2] = np.abs(w[2])          # one all-positive channel
    w[5] = 0                     # one all-zero channel
    q, s, z = quantize_weights(w)
    assert q.dtype == np.uint8 and 1 <= z <= 254 and s.shape == (8,)
    deq = (q.astype(np.float64) - z) * s[:, None, None, None]
    live = np.arange(8) != 5
    assert np.all(np.abs(deq - w)[live] <= s[live, None, None, None] / 2 + 1e-12)
    assert np.all(deq[5] == 0)
    q2, s2, z2 = quantize_weights(w, 128)
    assert z2 == 128 and np.all(np.abs((q2.astype(float) - 128) * s2[:, None, None, None] - w)[live]
                                <= s2[live, None, None, None] / 2 + 1e-12)


@pytest.mark.parametrize("act,exact", [
    (None, True), ({"op": "Relu"}, True), ({"op": "Clip", "min": 0.0, "max": 6.0}, True),
    ({"op": "LeakyRelu", "alpha": 0.1}, True), ({"op": "HardSigmoid"}, True),
    ({"op": "Sigmoid"}, False), ({"op": "HardSwish"}, False), ({"op": "Tanh"}, False), ({"op": "Swish"}, False),
])
def test_activation_fit_error(act, exact):
    for s_y, z_y, e in [(6 / 255, 0, 16), (0.05, 128, 10), (0.013, 37, 20)]:
        s_v = s_y * 2.0 ** -e
        table, rep = fit_activation(act, s_v, (s_y, z_y), -(1 << 33), 1 << 33)
        assert rep.segments <= 16 and rep.points > 1000
        if exact:   # piecewise-linear: exact up to the 16-bit slope rounding at exact ties
            assert rep.max_error <= 1 and rep.mismatch_rate < 2e-3, rep
        else:
            assert rep.max_error <= 1 and rep.mean_error < 0.35, rep
        # the table is what the emulator would compute: check a few points directly
        v = np.array([-(1 << 33), -5, 0, 5, 1 << 33], np.int64)
        assert apply_act_table(v, table).dtype == np.uint8
    tab, rep = fit_activation({"op": "Relu"}, 2.0 ** -12, (1.0, 0), -(1 << 30), 1 << 30)
    assert rep.max_error == 0 and rep.segments == 2


def _e2e(rng, act, pool, depthwise, k, c=24, h=12, w=20):
    m = c if depthwise else 32
    per = 1 if depthwise else c
    wf = rng.normal(0, 1 / np.sqrt(per * k * k), (m, per, k, k))
    b = rng.normal(0, 0.3, m)
    x = rng.normal(0, 1, (c, h, w))
    x_q = (6 / 255, 128)
    from npuc.targets.k210 import QParams
    xq = QParams.of(x_q)
    xd = xq.dequantize(xq.quantize(x))
    ref = float_layer(xd, wf, b, depthwise=depthwise, activation=act, pool=pool)
    full = float_layer(xd, wf, b, depthwise=depthwise, activation=act)   # the range before pooling
    lo, hi = min(full.min(), 0.0), max(full.max(), 0.0)
    s_y = (hi - lo) / 255
    z_y = int(np.clip(round(-lo / s_y), 0, 255))
    prog = make_kpu_layer(x_q, wf, b, in_shape=(c, h, w), out_q=(s_y, z_y), depthwise=depthwise,
                          activation=act, pool=pool)
    sram = new_sram()
    upload(sram, 0, prog.quantize_input(x))
    y = prog.dequantize_output(emulate_layer(sram, prog))
    # against the float layer with the weights the KPU holds: only the KPU arithmetic differs
    wd = (prog.weights_q.astype(np.float64) - prog.w_zero_point) * prog.w_scales[:, None, None, None]
    ref_q = np.clip(float_layer(xd, wd, b, depthwise=depthwise, activation=act, pool=pool),
                    s_y * (0 - z_y), s_y * (255 - z_y))
    ref = np.clip(ref, s_y * (0 - z_y), s_y * (255 - z_y))
    return np.abs(y - ref_q) / s_y, np.abs(y - ref) / s_y, prog


@pytest.mark.parametrize("act", [None, {"op": "Relu"}, {"op": "Clip", "min": 0.0, "max": 6.0},
                                 {"op": "LeakyRelu", "alpha": 0.1}, {"op": "Sigmoid"}, {"op": "HardSwish"}])
def test_end_to_end_accuracy(act):
    rng = np.random.default_rng(12)
    for pool, dw, k in [("none", False, 3), ("max2x2s2", True, 3), ("mean2x2s2", False, 1), ("select_rt2x2", True, 3),
                        ("mean2x2s1", False, 3), ("max4x4s4", False, 1)]:
        err_q, err_f, prog = _e2e(rng, act, pool, dw, k)
        # the mean pools truncate: up to one more step
        tol = 1.0 + (1.0 if "mean" in pool else 0.0) + 0.02
        assert err_q.max() <= tol, (pool, dw, k, err_q.max(), prog.fit)
        assert err_q.mean() < 0.5
        assert err_f.max() <= tol + 1.5 and err_f.mean() < 0.6, (pool, dw, k, err_f.max(), err_f.mean())


def test_make_kpu_layer_words_and_limits():
    rng = np.random.default_rng(13)
    prog = make_kpu_layer((0.1, 3), rng.normal(0, 1, (300, 200, 3, 3)), None, in_shape=(200, 6, 40),
                          out_q=(0.1, 0), pool="select_lt2x2", src_addr=64, dst_addr=64 * 1000)
    L = prog.layer
    assert L.in_shape == (200, 6, 40) and L.out_shape == (300, 3, 20)
    assert L.pad_value == 3 and L.arg_x == -prog.w_zero_point and L.arg_w == -3
    assert L.arg_add == 9 * 3 * prog.w_zero_point
    assert L.para_size == (L.o_ch_num_coef + 1) * 200 * 9 <= 30 * 1024
    assert (L.load_time + 1) * (L.o_ch_num_coef + 1) >= 300
    assert L.coef_group == 1 and L.wb_group == 2 and L.channel_switch_addr == 6 and L.wb_channel_switch_addr == 3
    assert np.array_equal(KpuLayer.from_words(prog.words).to_words(), prog.words)
    assert parse_pool("max2x2s2") is KpuPool.MAX_2_S2 and parse_pool(9) is KpuPool.MAX_2_S1
    with pytest.raises(KpuError, match="unknown KPU pool"):
        parse_pool("avg")
    with pytest.raises(KpuError, match="kernel"):
        make_kpu_layer((0.1, 3), np.ones((4, 4, 5, 5)), None, in_shape=(4, 8, 8), out_q=(0.1, 0))
    with pytest.raises(KpuError, match="input width"):
        make_kpu_layer((0.1, 3), np.ones((4, 4, 1, 1)), None, in_shape=(4, 8, 600), out_q=(0.1, 0))
    assert len(layer_limit_violations(2000, 300, 2, 4, 5)) == 4
    assert not layer_limit_violations(1024, 256, 512, 1024, 1) and not layer_limit_violations(1024, 4, 4, 1024, 3, True)
    assert "load" in layer_limit_violations(512, 8, 8, 512, 3)[0] and not layer_limit_violations(512, 8, 8, 384, 3)
    # already-quantized weights are kept as they are
    wq = rng.integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
    p2 = make_kpu_layer((0.1, 3), np.zeros((5, 4, 3, 3)), None, in_shape=(4, 8, 8), out_q=(0.1, 0),
                        weights_quant=(wq, np.full(5, 0.01), 120))
    assert np.array_equal(p2.weights_q, wq) and p2.layer.arg_x == -120
    # a per-channel PRelu takes one region of the BN output axis per slope (prelu_table.py) ...
    p3 = make_kpu_layer((0.1, 3), np.ones((2, 4, 1, 1)), None, in_shape=(4, 8, 8), out_q=(0.1, 0),
                        activation={"op": "PRelu", "slope": np.array([0.1, 0.2])})
    assert p3.fit.activation == "PRelu" and p3.fit.max_error <= 1
    assert p3.fit.segments == 4          # zero point 0: below each kink is the clamp at 0
    # ... up to 16 segments: more distinct slopes than that is the lowering's to split
    with pytest.raises(KpuError, match="distinct PReLU slopes"):
        make_kpu_layer((0.1, 3), np.ones((8, 4, 1, 1)), None, in_shape=(4, 8, 8), out_q=(0.1, 0),
                       activation={"op": "PRelu", "slope": np.linspace(0.05, 0.4, 8)})


# ----------------------------------------------------------------------------- speed
def _mobilenet_stack(rng):
    """MobileNet-v1-like: 3x3 stem (stride 2 by select), then 13 depthwise/pointwise pairs."""
    cfg = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
           (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2),
           (1024, 1024, 1)]
    layers = []
    addr_a, addr_b = 0, 1 << 20
    c, hw = 3, 224
    q = (0.05, 100)
    layers.append(make_kpu_layer(q, rng.normal(0, 0.3, (32, 3, 3, 3)), rng.normal(0, 0.1, 32),
                                 in_shape=(c, hw, hw), out_q=q, activation={"op": "Clip", "min": 0.0, "max": 6.0},
                                 pool="select_lt2x2", src_addr=addr_a, dst_addr=addr_b))
    c, hw = 32, 112
    addr_a, addr_b = addr_b, addr_a
    for cin, cout, s in cfg:
        layers.append(make_kpu_layer(q, rng.normal(0, 0.3, (cin, 1, 3, 3)), rng.normal(0, 0.1, cin),
                                     in_shape=(cin, hw, hw), out_q=q, depthwise=True,
                                     activation={"op": "Clip", "min": 0.0, "max": 6.0},
                                     pool="select_lt2x2" if s == 2 else "none", src_addr=addr_a, dst_addr=addr_b))
        hw //= s
        addr_a, addr_b = addr_b, addr_a
        layers.append(make_kpu_layer(q, rng.normal(0, 0.05, (cout, cin, 1, 1)), rng.normal(0, 0.1, cout),
                                     in_shape=(cin, hw, hw), out_q=q, activation={"op": "Clip", "min": 0.0, "max": 6.0},
                                     src_addr=addr_a, dst_addr=addr_b))
        addr_a, addr_b = addr_b, addr_a
    return layers


@pytest.mark.slow
def test_emulator_speed_mobilenet_v1_224():
    rng = np.random.default_rng(0)
    layers = _mobilenet_stack(rng)
    sram = new_sram()
    upload(sram, 0, rng.integers(0, 256, (3, 224, 224), dtype=np.uint8))
    emulate_layer(sram.copy(), layers[-1])           # compile / load the numba kernel
    t0 = time.perf_counter()
    for prog in layers:
        emulate_layer(sram, prog)
    dt = time.perf_counter() - t0
    print(f"\nMobileNet-v1 1.0 224x224, {len(layers)} KPU layers: {dt * 1000:.0f} ms")
    assert dt < 3.0
