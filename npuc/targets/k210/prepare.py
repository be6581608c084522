"""Float-graph passes for the k210 target, run before calibration so that the quantizer
gives every tensor the KPU layers need its own calibrated scale.

* :func:`split_wide_inputs` splits a convolution or fully-connected layer with more
  input channels than a KPU layer takes (1024) into input-channel parts whose partial
  sums are added on the CPU: ``conv(x, W) = Σ_p conv(x_p, W_p)`` with ``x_p`` the p-th
  channel slice and the bias (and the fused activation) on the sum. Each part is a KPU
  layer; its partial result is a calibrated uint8 tensor and the sum an integer ``QAdd``
  (MobileNetV2's 1280→1000 classifier, ResNet-50's 2048-channel layers).
* :func:`share_pool_ranges` (on the calibrated ranges) gives a 2x2/2 or 4x4/4 average pool
  right after a convolution its input's range, so the KPU layer can average its own output
  codes (the KPU's mean pool) with no requantization in between.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Graph, Node, Value
from ...passes.manager import graph_pass
from .spec import KERNEL_SIZES, MAX_IN_CHANNELS


def _kpu_kernel(n: Node) -> bool:
    """Whether float ``Conv`` node ``n`` has a kernel the KPU runs as such (1x1 or 3x3,
    stride 1 or 2, no dilation): the geometry its input-channel parts need. (Larger
    stride-2 kernels go through space-to-depth, which quadruples the input channels: no
    part of a layer this wide would fit.)"""
    a = n.attrs
    ks = list(a.get("kernel_shape") or n.inputs[1].shape[2:])
    st = list(a.get("strides") or [1] * len(ks))
    dl = list(a.get("dilations") or [1] * len(ks))
    return (len(ks) == 2 and ks[0] == ks[1] and ks[0] in KERNEL_SIZES and st[0] == st[1] and st[0] in (1, 2)
            and all(d == 1 for d in dl))


# ----------------------------------------------------------------------------- input splits
def _parts(c: int) -> list[tuple[int, int]]:
    """Balanced input-channel ranges of at most MAX_IN_CHANNELS, multiples of 4 but the last."""
    n = math.ceil(c / MAX_IN_CHANNELS)
    step = math.ceil(c / n / 4) * 4
    return [(c0, min(c, c0 + step)) for c0 in range(0, c, step)]


def _wide(n: Node) -> int:
    """The input-channel count of ``n`` when it is a layer to split, else 0."""
    if n.op == "Conv":
        x, w = n.inputs[0], n.inputs[1]
        if x.rank == 4 and x.shape[0] == 1 and w.is_const and int(n.attrs.get("group", 1)) == 1 \
                and x.shape[1] > MAX_IN_CHANNELS \
                and _kpu_kernel(n) and (n.input(2) is None or n.input(2).is_const):
            return x.shape[1]
    elif n.op == "Gemm":
        a, b, c = n.inputs[0], n.inputs[1], n.input(2)
        if a.rank == 2 and a.shape[0] == 1 and not n.attrs.get("transA") and b.is_const \
                and (c is None or c.is_const) and a.shape[1] > MAX_IN_CHANNELS:   # the KPU runs one row
            return a.shape[1]
    return 0


def _activation_after(graph: Graph, v: Value, act: dict | None, index: int, name: str) -> tuple[Value, int]:
    """Apply a fused activation ``act`` taken off a split layer: clamps stay fused on the
    sum (``QAdd`` clamps), anything else becomes its own node after it."""
    if act is None:
        return v, index
    op = act["op"]
    attrs = {k: x for k, x in act.items() if k != "op"}
    ins = [v]
    if op == "Clip":
        lo, hi = attrs.pop("min", None), attrs.pop("max", None)
        ins += [None if lo is None else graph.add_const(f"{name}/min", np.array(lo, v.dtype)),
                None if hi is None else graph.add_const(f"{name}/max", np.array(hi, v.dtype))]
    elif op == "PRelu":
        ins.append(graph.add_const(f"{name}/slope", np.asarray(attrs.pop("slope"), v.dtype)))
    node = graph.make_node(op, ins, name=graph.unique_name(f"{name}/{op.lower()}"), attrs=attrs, index=index)
    return node.outputs[0], index + 1


@graph_pass("split_wide_inputs")
def split_wide_inputs(graph: Graph) -> bool:
    """Split Conv / Gemm layers with more than MAX_IN_CHANNELS inputs (see the module doc)."""
    changed = False
    for n in list(graph.nodes):
        c = _wide(n)
        if not c:
            continue
        parts = _parts(c)
        at = graph.nodes.index(n)
        x = n.inputs[0]
        sizes = graph.add_const(f"{n.name}/split_sizes", np.array([c1 - c0 for c0, c1 in parts], np.int64))
        split = graph.make_node("Split", [x, sizes], name=graph.unique_name(f"{n.name}/split_inputs"),
                                attrs={"axis": 1}, index=at, num_outputs=len(parts))
        at += 1
        w, bias = n.inputs[1].const, n.input(2)
        attrs = {k: v for k, v in n.attrs.items() if k != "activation"}
        total = None
        for i, ((c0, c1), xp) in enumerate(zip(parts, split.outputs)):
            if n.op == "Conv":
                wp = w[:, c0:c1]
            else:
                wp = w[:, c0:c1] if attrs.get("transB") else w[c0:c1]
            ins = [xp, graph.add_const(f"{n.name}/w_in{c0}", np.ascontiguousarray(wp))]
            if i == 0 and bias is not None:
                ins.append(bias)
            part = graph.make_node(n.op, ins, name=graph.unique_name(f"{n.name}/in{c0}_{c1}"), attrs=attrs,
                                   index=at).outputs[0]
            at += 1
            if total is None:
                total = part
                continue
            last = i == len(parts) - 1
            act = n.attrs.get("activation") if last else None
            clamp = act is not None and act["op"] in ("Relu", "Clip")
            add = graph.make_node("Add", [total, part], name=graph.unique_name(f"{n.name}/sum{i}"),
                                  attrs={"activation": act} if clamp else {}, index=at)
            at += 1
            total = add.outputs[0]
            if last and act is not None and not clamp:
                total, at = _activation_after(graph, total, act, at, n.name)
        y = n.outputs[0]
        graph.remove_node(n)
        graph.replace_all_uses(y, total)
        changed = True
    if changed:
        graph.prune_values()
    return changed


# ----------------------------------------------------------------------------- mean pools
def _kpu_mean_pool(n: Node) -> bool:
    a = n.attrs
    ks = list(a.get("kernel_shape") or [])
    st = list(a.get("strides") or [1] * len(ks))
    return (len(ks) == 2 and ks[0] == ks[1] in (2, 4) and st == ks and not any(a.get("pads") or [])
            and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and not a.get("ceil_mode"))


def share_pool_ranges(graph: Graph, ranges: dict) -> dict:
    """Calibrated ranges with each KPU-fusable average pool (2x2/2, 4x4/4, after a ``Conv``
    that has no other reader) given its input's range: the pool's output is then the mean
    of the layer's own output codes, which the KPU computes in the layer."""
    out = dict(ranges)
    for n in graph.nodes:
        x = n.inputs[0] if n.inputs else None
        if n.op != "AveragePool" or x is None or x.producer is None or x.producer.op != "Conv" \
                or len(x.users) != 1 or x.name not in out or not _kpu_mean_pool(n):
            continue
        out[n.outputs[0].name] = out[x.name]
    return out
