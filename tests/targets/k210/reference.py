"""An independent, straightforward integer reference of one KPU layer.

Written directly from the formulas of shared/K210.md and nncase 1.x's simulator
(see docs/k210.md), sharing nothing with ``npuc.targets.k210.emulator`` beyond the
decoding of the layer description (``KpuLayer.from_words``, ``decode_bn``,
``decode_act``). Plain loops over channels, rows, pixels and kernel taps; Python
integers wherever a value could leave int64.
"""
from __future__ import annotations

import numpy as np

from npuc.targets.k210.encode import KpuLayer, decode_act, decode_bn

# pool_type -> (kind, window, stride, (dy, dx) of a select pool)
POOLS = {
    0: ("bypass", 1, 1, None),
    1: ("max", 2, 2, None), 2: ("mean", 2, 2, None),
    3: ("max", 4, 4, None), 4: ("mean", 4, 4, None),
    5: ("select", 2, 2, (0, 0)), 6: ("select", 2, 2, (0, 1)), 7: ("select", 4, 4, (0, 0)),
    8: ("mean", 2, 1, None), 9: ("max", 2, 1, None),
}
LIM36 = 1 << 35


def pixel_address(base, c, y, x, groups, row_len, channel_rows):
    """byte(c, y, x) = base + (c // g)·channel_rows·64 + (c % g)·(64 / g) + y·row_len·64 + x."""
    return base + (c // groups) * channel_rows * 64 + (c % groups) * (64 // groups) + y * row_len * 64 + x


def read_map(sram, base, channels, height, width, groups, row_len, channel_rows):
    out = np.zeros((channels, height, width), np.int64)
    for c in range(channels):
        for y in range(height):
            a = pixel_address(base, c, y, 0, groups, row_len, channel_rows)
            out[c, y, :] = sram[a:a + width]
    return out


def write_map(sram, base, y_map, groups, row_len, channel_rows):
    channels, height, width = y_map.shape
    for c in range(channels):
        for y in range(height):
            a = pixel_address(base, c, y, 0, groups, row_len, channel_rows)
            sram[a:a + width] = y_map[c, y, :]


def round_half_even_shift(p: int, s: int) -> int:
    """p / 2^s rounded to the nearest integer, ties to even (exact, Python ints)."""
    if s == 0:
        return p
    d = 1 << s
    q, rem = divmod(p, d)              # floor division, 0 <= rem < d
    if 2 * rem > d or (2 * rem == d and q % 2 == 1):
        q += 1
    return q


def conv_bn(x, w, L: KpuLayer, bn):
    """Convolution then BN: the 36-bit BN outputs v, shape (M, H, W), as int64."""
    c_in, h, wd = x.shape
    m = L.o_ch_num + 1
    k = 3 if L.kernel_type == 1 else 1
    pad = k // 2
    xp = np.full((c_in, h + 2 * pad, wd + 2 * pad), L.pad_value, np.int64)
    xp[:, pad:pad + h, pad:pad + wd] = x
    depthwise = L.depth_wise_layer == 1
    acc = np.zeros((m, h, wd), np.int64)
    sum_x = np.zeros((m, h, wd), np.int64)
    for ky in range(k):
        for kx in range(k):
            win = xp[:, ky:ky + h, kx:kx + wd]
            if depthwise:
                for ch in range(m):
                    acc[ch] += int(w[ch, 0, ky, kx]) * win[ch]
                    sum_x[ch] += win[ch]
            else:
                acc += np.einsum("mc,chw->mhw", w[:, :, ky, kx].astype(np.int64), win)
                sum_x += win.sum(axis=0)[None]
    n = 1 if depthwise else c_in
    v = np.zeros((m, h, wd), np.int64)
    for ch in range(m):
        sum_w = int(w[ch].astype(np.int64).sum())
        a = acc[ch] + ((L.arg_x * sum_x[ch]) >> L.shr_x) + ((L.arg_w * sum_w) >> L.shr_w) + L.arg_add * n
        assert np.all(np.abs(a) < LIM36), "convolution result leaves 36 bits"
        # |a| < 2^35 and |mul| < 2^23: the product fits int64
        vv = ((a * int(bn.mul[ch])) >> int(bn.shift[ch])) + int(bn.add[ch])
        assert np.all(np.abs(vv) < LIM36), "BN output leaves 36 bits"
        v[ch] = vv
    return v


def activation(v, act):
    """The 16-segment table: pick each value's segment, then round with divmod."""
    seg = np.zeros(v.shape, np.int64)
    for s in range(16):                       # the highest segment whose start is below v
        seg[v > act.start[s]] = s
    out = np.zeros(v.shape, np.int64)
    for s in range(16):
        sel = seg == s
        if not sel.any():
            continue
        start, mul, shift, bias = (int(act.start[s]), int(act.mul[s]), int(act.shift[s]), int(act.bias[s]))
        p = (v[sel] - start) * mul            # |v - start| < 2^37, |mul| <= 2^15: fits int64
        if shift == 0:
            q = p
        elif shift <= 61:
            d = np.int64(1) << np.int64(shift)
            q, rem = np.divmod(p, d)
            up = (2 * rem > d) | ((2 * rem == d) & (q % 2 == 1))
            q = q + up
        else:                                 # beyond int64 shifts: exact Python integers
            q = np.array([round_half_even_shift(int(t), shift) for t in p.tolist()], np.int64)
        out[sel] = np.clip(q + bias, 0, 255)
    return out


def pool(y, pool_type):
    kind, f, s, off = POOLS[pool_type]
    m, h, w = y.shape
    ho, wo = h // s, w // s
    out = np.zeros((m, ho, wo), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            y0, x0 = oy * s, ox * s
            if kind == "bypass":
                out[:, oy, ox] = y[:, y0, x0]
            elif kind == "select":
                out[:, oy, ox] = y[:, y0 + off[0], x0 + off[1]]
            elif kind == "max":
                best = np.zeros(m, np.int64)          # pixels outside the map count as 0
                for dy in range(f):
                    for dx in range(f):
                        if y0 + dy < h and x0 + dx < w:
                            best = np.maximum(best, y[:, y0 + dy, x0 + dx])
                out[:, oy, ox] = best
            else:  # mean: outside pixels replicate the edge; truncating division
                total = np.zeros(m, np.int64)
                for dy in range(f):
                    for dx in range(f):
                        total += y[:, min(y0 + dy, h - 1), min(x0 + dx, w - 1)]
                out[:, oy, ox] = total // (f * f)
    return out


def reference_layer(sram: np.ndarray, words, weights, bn_words, act_words) -> np.ndarray:
    """Run one layer on ``sram`` (modified in place); returns the output map (uint8)."""
    L = KpuLayer.from_words(words)
    c_in, h, wd = L.i_ch_num + 1, L.i_col_high + 1, L.i_row_wid + 1
    m, ho, wo = L.o_ch_num + 1, L.o_col_high + 1, L.o_row_wid + 1
    k = 3 if L.kernel_type == 1 else 1
    depthwise = L.depth_wise_layer == 1
    x = read_map(sram, L.image_src_addr * 64, c_in, h, wd, L.coef_group, L.row_switch_addr, L.channel_switch_addr)
    per = 1 if depthwise else c_in
    w = np.asarray(weights, np.uint8)[:m * per * k * k].reshape(m, per, k, k).astype(np.int64)
    bn = decode_bn(np.asarray(bn_words, np.uint64)[:m])
    act = decode_act(act_words)
    v = conv_bn(x, w, L, bn)
    y = pool(activation(v, act), L.pool_type)
    assert y.shape == (m, ho, wo)
    y = y.astype(np.uint8)
    write_map(sram, L.image_dst_addr * 64, y, L.wb_group, L.wb_row_switch_addr, L.wb_channel_switch_addr)
    return y
