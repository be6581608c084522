"""Residual adds on the KPU: ``QAdd(a, b)`` as a 1×1 convolution of the pair map ``[a; b]``.

The KPU has no elementwise add, but a 1×1 layer over a map holding ``a``'s C channels
followed by ``b``'s C channels, with weight ``w_a`` from input channel c and ``w_b`` from
input channel C + c to output channel c (every other weight 0), computes

    acc_c = w_a · (a_c − z_a) + w_b · (b_c − z_a)

(the layer has one input zero point: z_a's). With ``w_b / w_a`` the best ratio of two
integers of at most 127 to ``b_mult / a_mult`` (the ``QAdd``'s own multipliers, so Sub
works too), the bias ``w_b · (z_a − z_b)`` and the batch-norm multiplier
``a_mult / (2^shift · w_a)``, the layer's output code is the ``QAdd``'s up to the last
rounding (with multipliers not snapped by :func:`snap_add_ratios`, the ratio is off by about
1/(127·q) near a simple ratio p/q, up to ~1/127 near 1). The fused clamp (ReLU after a ResNet block)
becomes the layer's activation table.

The pair map is a ``Concat`` of the two map values: a map of C channels whose width packs
g channels in a row group is ``ceil(C/g)`` row groups of bytes, so when g divides C the
bytes of ``b``'s map right after ``a``'s are exactly the 2C-channel map. The generic
lowering then places both maps side by side in AI SRAM and the producers write straight
into the pair (a copy-free Concat); where it cannot (one map in two pairs, or a smaller
arena without), the Concat is a copy inside AI SRAM.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Graph, Node
from . import cost
from .geometry import Axis, KMap, _in_limits
from .layer_specs import ConvSpec, _scalar_q, activation_name, build_layers
from .layout import row_layout
from .spec import MAX_IN_CHANNELS, KpuError, KpuPool

MAX_WEIGHT = 127
#: output codes the weight ratio may move an add's result by, at the extreme operand code
#: (:func:`snap_add_ratios`); an add needing more stays on the CPU
MAX_RATIO_ERROR = 0.5


def ratio_weights(r: float) -> tuple[int, int]:
    """Integers ``(w_a, w_b)``, ``1 ≤ w_a ≤ 127``, ``1 ≤ |w_b| ≤ 127``, with ``w_b / w_a``
    closest to ``r`` (relative error; ties: the larger ``w_a``)."""
    if not np.isfinite(r) or r == 0:
        raise ValueError(f"ratio {r} has no integer weight pair")
    best = None
    for wa in range(1, MAX_WEIGHT + 1):
        wb = int(np.clip(round(wa * r), -MAX_WEIGHT, MAX_WEIGHT)) or (1 if r > 0 else -1)
        err = abs(wb / wa - r) / abs(r)
        if best is None or err <= best[0]:
            best = (err, wa, wb)
    return best[1], best[2]


def snap_add_ratios(graph: Graph, max_error: float = MAX_RATIO_ERROR) -> int:
    """Make every KPU-able ``QAdd``'s ``b_mult / a_mult`` exactly a ratio of two int8
    weights (moving each multiplier by at most ``max_error`` output codes at the extreme
    operand code), so that the KPU layer computes the graph's ``QAdd`` bit for bit and a
    cpu-target run of the k210-quantized graph reproduces the chip. Run on the quantized
    graph before the k210 lowering; returns how many adds changed."""
    changed = 0
    for n in graph.nodes:
        if n.op != "QAdd" or _operands_reason(n) is not None:
            continue
        am, bm, sh = int(n.attrs["a_mult"]), int(n.attrs["b_mult"]), int(n.attrs["shift"])
        if am <= 0 or bm == 0:
            continue
        wa, wb = ratio_weights(bm / am)
        k = max(1, round(am / wa))
        a2, b2 = k * wa, k * wb
        if (a2, b2) == (am, bm) or 255 * (abs(a2 - am) + abs(b2 - bm)) / 2.0 ** sh > max_error:
            continue
        n.attrs = {**n.attrs, "a_mult": a2, "b_mult": b2}
        changed += 1
    return changed


def _operands_reason(n: Node) -> str | None:
    """Why the operands of ``QAdd`` node ``n`` cannot form a KPU pair map, or None."""
    a, b = n.inputs
    y = n.outputs[0]
    if a is b or a.is_const or b.is_const:
        return "an add of a tensor to itself or to a constant (a CPU op)"
    if not (a.dtype == b.dtype == y.dtype == np.dtype(np.uint8)):
        return f"{a.dtype} + {b.dtype} → {y.dtype} (the KPU computes uint8 feature maps)"
    if a.rank != 4 or a.shape[0] != 1:
        return f"add of rank-{a.rank} tensors (the KPU adds 2-D maps of batch 1)"
    if a.shape != b.shape:
        return f"broadcasting add {list(a.shape)} + {list(b.shape)} (the KPU adds two maps of one shape)"
    if 2 * a.shape[1] > MAX_IN_CHANNELS:
        return f"add of {a.shape[1]} channels (the pair map would exceed the KPU's {MAX_IN_CHANNELS} input channels)"
    return None


def add_spec(n: Node, first: int = 0, c_second: int | None = None) -> ConvSpec | str:
    """The 1×1 KPU layer of ``QAdd`` node ``n`` on its pair map ``[operand first; the other]``,
    or why there is none. ``c_second``: the second operand's map holds only its first
    ``c_second`` channels (a channel ``Pad`` with the zero point, as BlazeFace's shortcuts,
    supplies the rest: they add real 0)."""
    why = _operands_reason(n)
    if why:
        return why
    y = n.outputs[0]
    at = n.attrs
    c, h, w = n.inputs[0].shape[1:]
    c2 = c if c_second is None else int(c_second)
    if c + c2 > MAX_IN_CHANNELS:
        return f"add of {c} channels (the pair map would exceed the KPU's {MAX_IN_CHANNELS} input channels)"
    am, bm, sh = int(at["a_mult"]), int(at["b_mult"]), int(at["shift"])
    if am <= 0 or bm == 0:
        return "an add whose first operand does not count (a CPU op)"
    wa, wb = ratio_weights(bm / am)
    worst = 255 * abs(am * wb / wa - bm) / 2.0 ** sh
    if worst > MAX_RATIO_ERROR:
        return (f"operand scales too far apart for the KPU's int8 weights (ratio {bm / am:.4g} as {wb}/{wa}: up "
                f"to {worst:.2f} output codes off)")
    za, zb = int(at["a_zp"]), int(at["b_zp"])
    # (multiplier, zero point, weight) of the pair's first operand; (zero point, weight) of the second
    (m_f, z_f, w_f), (z_s, w_s) = ((am, za, wa), (zb, wb)) if first == 0 else ((bm, zb, wb), (za, wa))
    qf, qy = _scalar_q(n.inputs[first]), _scalar_q(y)
    if qf is None or qy is None:
        return "per-channel activation quantization"
    wts = np.zeros((c, c + c2, 1, 1), np.int8)
    idx = np.arange(c)
    wts[idx, idx] = w_f
    wts[idx[:c2], c + idx[:c2]] = w_s
    scales = np.full(c, (m_f / 2.0 ** sh) * qy[0] / (qf[0] * w_f), np.float64)   # BN multiplier m_f / w_f
    bias = np.where(idx < c2, w_s * (z_f - z_s), 0).astype(np.int64)
    return ConvSpec(n.name, 1, 1, (0, 0, 0, 0), False, c + c2, c, h, w, (qf[0], z_f), qy, wts, scales, bias,
                    int(at["act_min"]), int(at["act_max"]), None)


def _same_window(x: Axis, y: Axis) -> bool:
    return (x.size, x.start, x.n) == (y.size, y.start, y.n)


def try_kpu_add(low, n: Node) -> str | None:
    """Lower ``QAdd`` node ``n`` onto the KPU for :class:`~.lower.K210Lowering` ``low``;
    returns None when done, else the reason it stays on the CPU."""
    a, b = n.inputs
    pads = [low.deferred.get(id(v)) for v in (a, b)]
    if all(pads):
        return "an add of two channel-padded tensors (a CPU op)"
    first = 1 if pads[0] is not None else 0          # the pair map: [full operand; the other's source]
    pad = pads[1 - first]
    a, b = (b, a) if first else (a, b)
    if pad is not None:
        b = pad.inputs[0]
    spec = add_spec(n, first, b.shape[1])
    if isinstance(spec, str):
        return spec
    y = n.outputs[0]
    ka, kb = low.kpu.get(id(a)), low.kpu.get(id(b))
    if ka is None and kb is None:
        return "elementwise add of two CPU tensors (an add runs on the KPU only between maps already in AI SRAM)"
    ref = ka or kb
    if not (_in_limits(ref.rows, False) and _in_limits(ref.cols, True)):
        return "no KPU map geometry for this add"
    c = spec.m
    hm, wm = ref.hw
    if (kb is not None and kb.c != b.shape[1]) or (ka is not None and ka.c != a.shape[1]):
        return "an operand's map does not hold its channels alone"
    if c % row_layout(wm).groups:
        return (f"add of {c} channels on a {wm}-column map (the pair map needs a multiple of "
                f"{row_layout(wm).groups} channels)")
    if kb is not None and not (_same_window(kb.rows, ref.rows) and _same_window(kb.cols, ref.cols)):
        kb = None       # the maps differ (padding windows): the second comes again from its CPU copy
    why = _cost(low, n, spec, ((a, ka), (b, kb)), (hm, wm), pad is not None)
    if why:
        return why
    try:
        built = build_layers(spec, (spec.c, hm, wm), KpuPool.BYPASS, spec.act_min, spec.act_max)
    except KpuError as e:
        return f"KPU parameters out of range: {e}"
    rows, cols = ref.rows, ref.cols
    maps = []
    for v, km in ((a, ka), (b, kb)):
        if km is None:
            km = low.upload(v, v.shape[1], *v.shape[2:], Axis(rows.size, rows.start, rows.n),
                            Axis(cols.size, cols.start, cols.n), _scalar_q(v)[1])
        maps.append(km.value)
    if pad is not None:        # the channel padding is the zero weights of the missing channels
        del low.deferred[id(pad.outputs[0])]
        low.fused_nodes.add(id(pad))
    pair = low.g.make_node("Concat", maps, name=low._name(f"{n.name}/pair"), attrs={"axis": 0},
                           outputs=[f"{n.name}/pair@kpu"])
    pair.outputs[0].quant = a.quant
    low.reasons[pair.name] = ("places the two maps of a KPU add side by side in AI SRAM (their producers write "
                              "there: no copy unless a map has to be in two places)")
    out = low.emit_conv(n.name, pair.outputs[0], built, spec=spec, pool=KpuPool.BYPASS, in_map=(spec.c, hm, wm),
                        out_map=(c, hm, wm), act=activation_name(spec, spec.act_min, spec.act_max),
                        fused=[n.name] + ([pad.name] if pad is not None else []), out_value=y,
                        residual_add=[int(spec.w_int8[0, 0, 0, 0]), int(spec.w_int8[0, c, 0, 0])])
    low.kpu[id(y)] = KMap(out, c, Axis(rows.size, rows.start, rows.n, False, False),
                          Axis(cols.size, cols.start, cols.n, False, False))
    if low._will_be_cpu(y):
        low.cpu_value(y)
    return None


def _cost(low, n: Node, spec: ConvSpec, operands, hw: tuple[int, int], padded: bool) -> str | None:
    """Why the add is cheaper on the CPU (with the copies either way), or None.
    ``operands``: the pair's ``(value, map or None)``; ``padded``: a channel Pad is saved."""
    if not low.use_cost:
        return None
    y = n.outputs[0]
    elems = int(np.prod(y.shape))
    cpu = elems * cost.CPU_INT_ELEMENT + (cost.move_cycles(elems) if padded else 0)
    for v, km in operands:
        if km is not None and id(v) not in low.cpu:
            cpu += cost.move_cycles(int(np.prod(v.shape)))   # download for the CPU
    if low._feeds_kpu(y):
        cpu += cost.move_cycles(elems)                 # upload for a KPU reader
    lay = row_layout(hw[1])
    kpu = (cost.KPU_LAYER_OVERHEAD + spec.m * math.ceil(spec.c / lay.groups) * hw[0] * lay.row_len
           + spec.w_int8.size // cost.KPU_WEIGHT_BYTES_PER_CYCLE)
    for v, km in operands:
        if km is None:   # an upload (after a download if it has no CPU copy yet)
            kpu += cost.move_cycles(int(np.prod(v.shape))) * (1 if id(v) in low.cpu or v.is_const else 2)
    if low._will_be_cpu(y):
        kpu += cost.move_cycles(elems)
    if kpu >= cpu:
        return (f"elementwise add, faster on the CPU: about {cost.us(cpu):.1f} us there vs {cost.us(kpu):.1f} us "
                "as a 1x1 KPU layer on the pair of maps (with the copies)")
    return None
