"""Max pools of a map already in AI SRAM, as KPU layers of their own.

A 2×2/2 or 4×4/4 ``MaxPool`` right after a convolution is fused into that layer; when the
convolution's output has other readers too (BlazeFace's shortcut pools the block input
that the block's depthwise convolution also reads), the pool would go to the CPU with a
download and an upload around it. Instead it becomes a depthwise 1×1 layer with weight 1,
batch-norm multiplier 1 (the output keeps the input's scale and zero point) and the
identity activation, followed by the KPU's max pool: the codes pass through unchanged
and the pool takes the maximum of each cell, which is the ``MaxPool`` of the codes.

ResNet's 3×3/2 max pool with padding 1 is two such layers:

* ``m = `` identity 1×1 + the KPU's 2×2 stride-1 max pool: ``m[j] = max(x[j], x[j+1])``
  (the pool reads 0 past the last row/column);
* identity 3×3 with its one weight on the top-left tap, padding 0: ``t[j] = m[j − 1]``
  (``t[0] = 0``), + the KPU's 2×2/2 max pool: ``out[i] = max(t[2i], t[2i+1]) =
  max(x[2i−1], x[2i], x[2i+1])``.

Code 0 is the least uint8 code, so the zero padding is the ``−∞`` padding of ``MaxPool``.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Node
from . import cost
from .geometry import Axis, KMap, _in_limits, conv_axis
from .layer_specs import ConvSpec, _scalar_q, build_layers
from .layout import row_layout
from .spec import KpuError, KpuPool


def try_kpu_pool(low, n: Node) -> str | None:
    """Lower ``MaxPool`` node ``n`` for :class:`~.lower.K210Lowering` ``low``; None when done,
    else the reason it stays on the CPU."""
    x, y = n.inputs[0], n.outputs[0]
    km = low.kpu.get(id(x))
    if km is None or id(x) in low.cpu:      # on the CPU already: pool it there
        return _cpu_reason(n)
    qx, qy = _scalar_q(x), _scalar_q(y)
    if x.dtype != np.uint8 or y.dtype != np.uint8 or qx is None or qx != qy or x.shape[0] != 1 or \
            not (_in_limits(km.rows, False) and _in_limits(km.cols, True)):
        return _cpu_reason(n)
    p = low._pool_size(n)
    if p:
        r = conv_axis(km.rows, 1, 1, 0, 0, p, False)
        c = conv_axis(km.cols, 1, 1, 0, 0, p, True)
        if r is None or c is None or r[1] or c[1] or r[0].n != y.shape[2] or c[0].n != y.shape[3]:
            return _cpu_reason(n) + " (its map's window is not aligned to the pool cells)"
        steps = [(1, KpuPool.MAX_2_S2 if p == 2 else KpuPool.MAX_4_S4)]
        out = (r[0], c[0])
    elif _resnet_pool(n):
        if not (km.rows.full and km.cols.full and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0):
            return _cpu_reason(n) + " (as two KPU layers it needs a whole, even-sized map)"
        steps = [(1, KpuPool.MAX_2_S1), (3, KpuPool.MAX_2_S2)]
        out = (Axis(km.rows.size // 2, 0, y.shape[2], False, False), Axis(km.cols.size // 2, 0, y.shape[3], False,
                                                                            False))
    else:
        return _cpu_reason(n)
    ch = x.shape[1]
    hm, wm = km.hw
    if low.use_cost:
        lay = row_layout(wm)
        kpu = len(steps) * (cost.KPU_LAYER_OVERHEAD + math.ceil(ch / lay.groups) * hm * lay.row_len)
        if low._will_be_cpu(y):
            kpu += cost.move_cycles(int(np.prod(y.shape)))
        k = int(np.prod(n.attrs.get("kernel_shape") or [p, p]))
        cpu = cost.move_cycles(int(np.prod(x.shape))) + int(np.prod(y.shape)) * k * 2
        if low._feeds_kpu(y):
            cpu += cost.move_cycles(int(np.prod(y.shape)))
        if kpu >= cpu:
            return (f"max pool, faster on the CPU: about {cost.us(cpu):.1f} us there vs {cost.us(kpu):.1f} us as "
                    "identity KPU layers with the copies")
    value = km.value
    for i, (k, pool) in enumerate(steps):
        w = np.zeros((ch, 1, k, k), np.int8)
        w[:, 0, 0, 0] = 1                       # 1x1: the identity; 3x3: the top-left tap (a shift by one)
        pads = (k // 2,) * 4
        spec = ConvSpec(n.name, k, 1, pads, True, ch, ch, x.shape[2], x.shape[3], qx, qy, w,
                        np.ones(ch, np.float64), np.zeros(ch, np.int64), 0, 255, None)
        try:
            built = build_layers(spec, (ch, hm, wm), pool, 0, 255, pad_value=0)
        except KpuError as e:
            return f"{_cpu_reason(n)}; KPU parameters out of range: {e}"
        oh, ow = (out[0].size, out[1].size) if i == len(steps) - 1 else (hm, wm)
        value = low.emit_conv(n.name, value, built, spec=spec, pool=pool, in_map=(ch, hm, wm), out_map=(ch, oh, ow),
                              act="Identity", fused=[n.name], out_value=y,
                              suffix="" if len(steps) == 1 else f"/step{i}")
    low.kpu[id(y)] = KMap(value, ch, out[0], out[1])
    if low._will_be_cpu(y):
        low.cpu_value(y)
    return None


def _resnet_pool(n: Node) -> bool:
    """MaxPool 3×3, stride 2, padding 1 on every side (ResNet's, after the stem)."""
    a = n.attrs
    return (list(a.get("kernel_shape") or []) == [3, 3] and list(a.get("strides") or []) == [2, 2]
            and list(a.get("pads") or [0] * 4) == [1, 1, 1, 1] and not a.get("ceil_mode")
            and a.get("auto_pad", "NOTSET") == "NOTSET" and list(a.get("dilations") or [1, 1]) == [1, 1])


def _cpu_reason(n: Node) -> str:
    from .lower import cpu_reason

    return cpu_reason(n)
