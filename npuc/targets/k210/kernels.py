"""Runtime kernels of the k210 target's ops (``KpuConv``, ``KpuUpload``, ``KpuDownload``).

Feature maps live in the Session's ``kpu`` arena, which stands for the AI SRAM: every
KPU tensor is a slice of it at the offset the memory planner gave it (the same offset
the lowering wrote into the layer's ``image_src_addr`` / ``image_dst_addr`` words, in
64-byte rows). The kernels run each layer with the emulator's integer arithmetic
(:mod:`.emulator`: convolution, BN, activation table, pooling) reading the input map and
writing the output map in place through strided views of the arena, addressed relative
to the op's own input and output tensors; the register words give the layout (row
groups, row and channel strides) exactly as the hardware reads them.

The views, weights, BN and activation tables are decoded once at load time; a run
allocates only the emulator's temporaries (the convolution accumulators).
"""
from __future__ import annotations

import numpy as np

from ...runtime.kernels.base import Binding, Kernel, register_kernel
from .emulator import _bn_act, _check_layer, _conv_acc, pool_map
from .encode import KpuLayer, decode_act, decode_bn
from .layout import map_view, row_layout
from .spec import ACT_TABLE_WORDS


class _Part:
    __slots__ = ("L", "xviews", "yviews", "xbuf", "ybuf", "wq", "bn", "act", "g_in", "g_out")


def _prepare_part(lay: dict, x: np.ndarray, y: np.ndarray, w: np.ndarray, bn: np.ndarray, act: np.ndarray) -> _Part:
    p = _Part()
    L = KpuLayer.from_words(np.asarray(lay["words"], np.uint64))
    _check_layer(L)
    c, h, wd = L.in_shape
    m, ho, wo = L.out_shape
    k = L.kernel
    p.L = L
    p.g_in, p.g_out = L.coef_group, L.wb_group
    p.xviews = map_view(x, int(lay["in_offset"]), c, h, wd, groups=L.coef_group, row_len=L.row_switch_addr,
                        channel_rows=L.channel_switch_addr)
    p.yviews = map_view(y, int(lay["out_offset"]), m, ho, wo, groups=L.wb_group, row_len=L.wb_row_switch_addr,
                        channel_rows=L.wb_channel_switch_addr)
    w0, nw = int(lay["w_offset"]), int(lay["w_bytes"])
    if nw != L.weight_bytes:
        raise ValueError(f"layer reads {L.weight_bytes} weight bytes, the op gives {nw}")
    p.wq = np.ascontiguousarray(w[w0:w0 + nw]).reshape(m, 1 if L.depthwise else c, k, k)
    b0 = int(lay["bn_offset"])
    p.bn = decode_bn(np.asarray(bn[b0:b0 + m], np.uint64))
    a0 = int(lay["act_index"]) * ACT_TABLE_WORDS
    p.act = decode_act(np.asarray(act[a0:a0 + ACT_TABLE_WORDS], np.uint64))
    p.xbuf = np.empty((c, h, wd), np.uint8)
    p.ybuf = np.empty((m, h * wd), np.uint8)
    return p


def _run_part(p: _Part, bn_act) -> None:
    g = p.g_in
    for j, v in enumerate(p.xviews):
        p.xbuf[j::g] = v
    acc = _conv_acc(p.xbuf, p.wq, p.L)
    bn_act(acc, p.bn.mul, p.bn.shift, p.bn.add, p.act.start, p.act.mul, p.act.shift, p.act.bias, p.ybuf)
    m = p.ybuf.shape[0]
    c, h, wd = p.xbuf.shape
    out = pool_map(p.ybuf.reshape(m, h, wd), p.L.pool)
    g = p.g_out
    for j, v in enumerate(p.yviews):
        v[...] = out[j::g]


@register_kernel
class KpuConvKernel(Kernel):
    """The KPU layers of one ``KpuConv`` op, emulated bit-exactly on the ``kpu`` arena."""

    op = "KpuConv"
    name = "k210_kpu_conv"

    def build(self, b: Binding):
        x, w, bn, act = b.inputs
        y = b.outputs[0]
        x = x.reshape(-1)
        y = y.reshape(-1)
        w = np.asarray(w).reshape(-1)
        bn = np.asarray(bn).reshape(-1)
        act = np.asarray(act).reshape(-1)
        parts = [_prepare_part(lay, x, y, w, bn, act) for lay in b.attrs["layers"]]
        bn_act = _bn_act()

        def run():
            for p in parts:
                _run_part(p, bn_act)

        return run


@register_kernel
class KpuUploadKernel(Kernel):
    """A CPU tensor into its map in AI SRAM (pad pixels first, then the window)."""

    op = "KpuUpload"
    name = "k210_upload"

    def build(self, b: Binding):
        c, h, w = (int(d) for d in b.attrs["chw"])
        hm, wm = (int(d) for d in b.attrs["map"])
        y0, x0 = (int(d) for d in b.attrs["window"])
        pad = np.uint8(int(b.attrs["pad_value"]))
        r0, r1 = (int(d) for d in b.attrs.get("rows", [0, 0]))
        c0, c1 = (int(d) for d in b.attrs.get("cols") or [0, 0])
        s2d = b.attrs.get("space_to_depth")
        prep = None
        if s2d is not None:   # padded 2x2 space-to-depth, through buffers made once at load time
            x = b.inputs[0]
            cx, hx, wx = x.shape[-3:]
            x = x.reshape(cx, hx, wx)
            if r1 > r0:       # a tile: the space-to-depth of its rows / columns
                x, hx = x[:, r0:r1], r1 - r0
            if c1 > c0:
                x, wx = x[:, :, c0:c1], c1 - c0
            pt, pl, _, _ = (int(p) for p in s2d)
            extra = 3 if int(b.attrs.get("s2d_shifts") or 1) == 2 else 0   # shifted copies (7x7 stems)
            hb, wb = h + extra, w + extra
            padded = np.full((cx, 2 * hb, 2 * wb), pad, np.uint8)
            src = np.empty((c, h, w), np.uint8)
            hk, wk = min(hx, 2 * hb - pt), min(wx, 2 * wb - pl)     # negative end pads drop unread rows
            inner = padded[:, pt:pt + hk, pl:pl + wk]
            x3 = x[:, :hk, :wk]          # a view: read at every run
            blocks = padded.reshape(cx, hb, 2, wb, 2).transpose(0, 2, 4, 1, 3)
            if extra:
                s2d_buf = np.empty((cx, 2, 2, hb, wb), np.uint8)
                copies = [(src[g * 4 * cx:(g + 1) * 4 * cx].reshape(cx, 2, 2, h, w),
                           s2d_buf[:, :, :, 3 * ay:3 * ay + h, 3 * ax:3 * ax + w])
                          for g, (ay, ax) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1)))]

                def prep():
                    inner[...] = x3
                    s2d_buf[...] = blocks
                    for d, s_ in copies:
                        d[...] = s_
            else:
                dst5 = src.reshape(cx, 2, 2, h, w)

                def prep():
                    inner[...] = x3
                    dst5[...] = blocks
        elif r1 > r0 or c1 > c0:     # a row / column tile of an NCHW tensor
            x = b.inputs[0]
            hs, ws = (x.shape[-2], r0) if r1 > r0 else (h, 0), (x.shape[-1], c0) if c1 > c0 else (w, 0)
            src = x.reshape(c, hs[0], ws[0])[:, hs[1]:hs[1] + h, ws[1]:ws[1] + w]
        else:
            src = b.inputs[0].reshape(c, h, w)
        views = map_view(b.outputs[0].reshape(-1), 0, c, hm, wm)
        g = row_layout(wm).groups
        full = (h, w) == (hm, wm)
        pairs = [(v, v[:, y0:y0 + h, x0:x0 + w], src[j::g]) for j, v in enumerate(views)]

        def run():
            if prep is not None:
                prep()
            for v, win, s in pairs:
                if not full:
                    v[...] = pad
                win[...] = s

        return run


@register_kernel
class KpuDownloadKernel(Kernel):
    """The window of a map in AI SRAM into a CPU tensor."""

    op = "KpuDownload"
    name = "k210_download"

    def build(self, b: Binding):
        c, h, w = (int(d) for d in b.attrs["chw"])
        hm, wm = (int(d) for d in b.attrs["map"])
        y0, x0 = (int(d) for d in b.attrs["window"])
        dst = b.outputs[0].reshape(c, h, w)
        views = map_view(b.inputs[0].reshape(-1), 0, c, hm, wm)
        g = row_layout(wm).groups
        pairs = [(dst[j::g], v[:, y0:y0 + h, x0:x0 + w]) for j, v in enumerate(views)]

        def run():
            for d, s in pairs:
                d[...] = s

        return run
