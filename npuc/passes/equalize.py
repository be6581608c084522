"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).

For two convolutions in a row, ``y = W2 · f(W1 · x + b1)`` with ``f`` positively homogeneous
(identity, Relu, LeakyRelu, PRelu: ``f(x/s) = f(x)/s`` for ``s > 0``), scaling output
channel ``c`` of the first by ``1/s_c`` and input channel ``c`` of the second by ``s_c``
leaves the result unchanged:

    W1'[c] = W1[c] / s_c,   b1'[c] = b1[c] / s_c,   W2'[:, c] = W2[:, c] · s_c

Choosing ``s_c = sqrt(r1_c / r2_c)`` with ``r1_c = max|W1[c]|`` and ``r2_c = max|W2[:, c]|``
makes both ranges ``sqrt(r1_c · r2_c)``: channels with tiny and huge weights are evened out,
and with them the channel ranges of the tensor between the two layers, which 8-bit
quantization shares per tensor. Applied before calibration on quantized targets only (in
float it changes nothing but rounding). The second conv may be normal (group 1) or
depthwise; the tensor between them must have no other reader.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from .manager import graph_pass

_HOMOGENEOUS = (None, "Relu", "LeakyRelu", "PRelu")
_MAX_SCALE = 1e2


def _pairs(graph: Graph):
    for n2 in graph.nodes:
        if n2.op != "Conv" or not n2.inputs[1].is_const:
            continue
        x = n2.inputs[0]
        n1 = x.producer
        if n1 is None or n1.op != "Conv" or len(x.users) != 1 or graph.is_output(x):
            continue
        if not n1.inputs[1].is_const or (n1.input(2) is not None and not n1.input(2).is_const):
            continue
        act = n1.attrs.get("activation")
        if (act["op"] if act else None) not in _HOMOGENEOUS:
            continue
        c = n1.outputs[0].shape[1]
        g2 = int(n2.attrs["group"])
        if not (g2 == 1 or (g2 == c and n2.inputs[1].shape[0] == c)):
            continue
        yield n1, n2, c, g2


@graph_pass("equalize_cross_layer")
def equalize_cross_layer(graph: Graph) -> bool:
    changed = False
    for n1, n2, c, g2 in list(_pairs(graph)):
        w1 = n1.inputs[1].const.astype(np.float64)
        w2 = n2.inputs[1].const.astype(np.float64)
        r1 = np.abs(w1).reshape(c, -1).max(axis=1)
        # input channel c of the second conv: column c (group 1) or its own filter (depthwise)
        r2 = np.abs(w2).reshape(c, -1).max(axis=1) if g2 == c else \
            np.abs(np.moveaxis(w2, 1, 0)).reshape(c, -1).max(axis=1)
        ok = (r1 > 0) & (r2 > 0)
        s = np.where(ok, np.sqrt(np.where(ok, r1 / np.where(r2 > 0, r2, 1), 1.0)), 1.0)
        s = np.clip(s, 1 / _MAX_SCALE, _MAX_SCALE)
        if np.allclose(s, 1.0, rtol=1e-3):
            continue
        dt = n1.inputs[1].dtype
        graph.set_input(n1, 1, graph.add_const(f"{n1.inputs[1].name}_eq", (w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))).astype(dt)))
        if n1.input(2) is not None:
            b1 = n1.inputs[2].const.astype(np.float64)
            graph.set_input(n1, 2, graph.add_const(f"{n1.inputs[2].name}_eq", (b1 / s).astype(dt)))
        shape = (-1,) + (1,) * (w2.ndim - 1) if g2 == c else (1, -1) + (1,) * (w2.ndim - 2)
        graph.set_input(n2, 1, graph.add_const(f"{n2.inputs[1].name}_eq", (w2 * s.reshape(shape)).astype(dt)))
        act = n1.attrs.get("activation")
        if act and act["op"] == "PRelu":
            pass  # PRelu's slope is a ratio: unchanged by a positive per-channel scale
        changed = True
    if changed:
        graph.prune_values()
    return changed
