"""A max pool of a map already in AI SRAM, as a KPU layer of its own.

A 2×2/2 or 4×4/4 ``MaxPool`` right after a convolution is fused into that layer; when the
convolution's output has other readers too (BlazeFace's shortcut pools the block input
that the block's depthwise convolution also reads), the pool would go to the CPU with a
download and an upload around it. Instead it becomes a depthwise 1×1 layer with weight 1,
batch-norm multiplier 1 (the output keeps the input's scale and zero point) and the
identity activation, followed by the KPU's max pool: the codes pass through unchanged
and the pool takes the maximum of each cell, which is the ``MaxPool`` of the codes.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Node
from . import cost
from .geometry import KMap, _in_limits, conv_axis
from .layer_specs import ConvSpec, _scalar_q, build_layers
from .layout import row_layout
from .spec import KpuError


def try_kpu_pool(low, n: Node) -> str | None:
    """Lower ``MaxPool`` node ``n`` for :class:`~.lower.K210Lowering` ``low``; None when done,
    else the reason it stays on the CPU."""
    x, y = n.inputs[0], n.outputs[0]
    km = low.kpu.get(id(x))
    if km is None or id(x) in low.cpu:      # on the CPU already: pool it there
        return _cpu_reason(n)
    p = low._pool_size(n)
    qx, qy = _scalar_q(x), _scalar_q(y)
    if p == 0 or x.dtype != np.uint8 or y.dtype != np.uint8 or qx is None or qx != qy or x.shape[0] != 1:
        return _cpu_reason(n)
    if not (_in_limits(km.rows, False) and _in_limits(km.cols, True)):
        return _cpu_reason(n)
    r = conv_axis(km.rows, 1, 1, 0, 0, p, False)
    c = conv_axis(km.cols, 1, 1, 0, 0, p, True)
    if r is None or c is None or r[1] or c[1] or r[0].n != y.shape[2] or c[0].n != y.shape[3]:
        return _cpu_reason(n) + " (its map's window is not aligned to the pool cells)"
    ch = x.shape[1]
    spec = ConvSpec(n.name, 1, 1, (0, 0, 0, 0), True, ch, ch, x.shape[2], x.shape[3], qx, qy,
                    np.ones((ch, 1, 1, 1), np.int8), np.ones(ch, np.float64), np.zeros(ch, np.int64), 0, 255, None)
    hm, wm = km.hw
    if low.use_cost:
        lay = row_layout(wm)
        kpu = cost.KPU_LAYER_OVERHEAD + math.ceil(ch / lay.groups) * hm * lay.row_len
        if low._will_be_cpu(y):
            kpu += cost.move_cycles(int(np.prod(y.shape)))
        cpu = cost.move_cycles(int(np.prod(x.shape))) + int(np.prod(y.shape)) * p * p * 2
        if any(u.op in ("QConv", "QGemm", "QAdd", "MaxPool") for u in y.users):
            cpu += cost.move_cycles(int(np.prod(y.shape)))
        if kpu >= cpu:
            return (f"max pool, faster on the CPU: about {cost.us(cpu):.1f} us there vs {cost.us(kpu):.1f} us as "
                    "an identity KPU layer with the copies")
    from .spec import KpuPool

    pool = KpuPool.MAX_2_S2 if p == 2 else KpuPool.MAX_4_S4
    try:
        layers, wts, bn, act, fits = build_layers(spec, (ch, hm, wm), pool, 0, 255)
    except KpuError as e:
        return f"{_cpu_reason(n)}; KPU parameters out of range: {e}"
    wv = low.g.add_const(f"{n.name}/kpu_weights", wts)
    bv = low.g.add_const(f"{n.name}/kpu_bn", bn)
    av = low.g.add_const(f"{n.name}/kpu_act", act)
    node = low.g.make_node(
        "KpuConv", [km.value, wv, bv, av], name=low._name(n.name),
        attrs={"layers": layers, "in_map": [ch, hm, wm], "out_map": [ch, r[0].size, c[0].size], "kernel": 1,
               "stride": 1, "depthwise": 1, "pool": pool.name.lower(), "act": "Identity", "fused": [n.name]},
        outputs=[f"{y.name}@kpu"])
    node.outputs[0].quant = y.quant
    low.sources[node.name] = [n.name]
    low.fit_errors[node.name] = max(f.max_error for f in fits)
    low.kpu[id(y)] = KMap(node.outputs[0], ch, r[0], c[0])
    if low._will_be_cpu(y):
        low.cpu_value(y)
    return None


def _cpu_reason(n: Node) -> str:
    from .lower import cpu_reason

    return cpu_reason(n)
