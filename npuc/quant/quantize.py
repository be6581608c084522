"""The quantize pass: a float graph plus calibrated ranges → an integer graph.

Walks the (optimized, calibrated) float graph in order and rebuilds it. Each float value
gets, on demand, a quantized twin (same name, integer dtype, :class:`QuantParams`) or stays
float. An op with an integer implementation for its layer's precision becomes its integer
op (see :mod:`npuc.ops.quant`); any other op runs in float between a DequantizeLinear and a
QuantizeLinear, which the pass inserts only at those edges. Data-movement ops (reshape,
transpose, pooling by max, slicing, padding...) run unchanged on integer tensors and keep
their input's parameters.

Precision per layer comes from :class:`QuantConfig`: activations uint8 / int8 / int16 or
float, weights int8 / uint8, per channel (default) or per tensor; ``overrides`` maps a value
name (the op's output) to another precision ("float", "int16", ...), which is how mixed
precision and user-edited schemes work.

The handlers live by family in :mod:`.quantize_linear` and :mod:`.quantize_elementwise`,
on top of the value bookkeeping of :mod:`.quantize_values`; this module holds the options,
the op lists and the driver.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import OptionError
from ..ir import Graph, Node
from ..ops.registry import get_op
from .quantize_elementwise import ElementwiseHandlers
from .quantize_linear import LinearHandlers, weight_qparams  # noqa: F401  (public here too)
from .quantize_values import _Fallback

log = logging.getLogger(__name__)

FLOAT = "float"
PRECISIONS = ("uint8", "int8", "int16", FLOAT)

#: ops that move or select data: run unchanged on integer tensors, output params = input params
PASSTHROUGH = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout", "MaxPool",
    "GlobalMaxPool", "Slice", "Split", "Gather", "GatherElements", "DepthToSpace", "SpaceToDepth",
    "Expand", "Tile", "ReduceMax", "ReduceMin", "Pad", "Resize",
})


@dataclass(frozen=True)
class QuantConfig:
    act_type: str = "uint8"              # default activation precision
    act_symmetric: bool = False          # int8 activations: symmetric (zp 0) or asymmetric
    weight_type: str = "int8"
    per_channel: bool = True
    overrides: Mapping[str, str] = field(default_factory=dict)   # value name -> precision
    float_outputs: bool = True           # dequantize graph outputs back to float
    weight_range_search: bool = False    # per-channel MSE-optimal clipping of weights (measured: no gain)

    def __post_init__(self):
        if self.act_type not in PRECISIONS:
            raise OptionError(f"unknown activation type {self.act_type!r}; choose one of {', '.join(PRECISIONS)}")
        if self.weight_type not in ("int8", "uint8"):
            raise OptionError(f"unknown weight type {self.weight_type!r}; choose int8 or uint8")
        for k, v in self.overrides.items():
            if v not in PRECISIONS:
                raise OptionError(f"precision of {k!r}: {v!r} is not one of {', '.join(PRECISIONS)}")


class Quantizer(LinearHandlers, ElementwiseHandlers):
    """Rebuilds a calibrated float graph as an integer one: ``q_<op>`` handlers (per family,
    in the base classes) where the layer's precision allows, float elsewhere."""

    # ------------------------------------------------------------------ driver
    def run(self) -> Graph:
        for v in self.src.inputs:
            f = self.g.add_input(v.name, v.dtype, v.shape)
            self.float_of[id(v)] = f
        for n in self.src.nodes:
            handler = getattr(self, f"q_{n.op}", None)
            done = False
            if handler is not None and self.precision(n.outputs[0]) != FLOAT and all(
                    v is None or v.dtype.kind == "f" or v.is_const for v in n.inputs[:1]):
                try:
                    done = handler(n)
                except _Fallback as e:
                    log.debug("%s stays float: %s", n.name, e)
                    done = False
            if not done:
                self.float_node(n)
            else:
                self.int_ops += 1
        outs = []
        for v in self.src.outputs:
            if self.cfg.float_outputs or id(v) not in self.q_of:
                o = self.as_float(v)
            else:
                o = self.q_of[id(v)]
            if o.name != v.name:
                if o.producer is not None and not any(o is x for x in self.g.inputs) and \
                        not any(o is x for x in outs):
                    self.g.rename(o, v.name)
                else:
                    o = self.add("Identity", [o], out_name=v.name)
            outs.append(o)
        self.g.outputs = outs
        self.g.prune_values()
        return self.g

    def float_node(self, n: Node) -> None:
        ins = [None if v is None else self.as_float(v) for v in n.inputs]
        node = self.g.make_node(n.op, ins, attrs=dict(n.attrs), name=self.fresh(n.name),
                                outputs=[self.fresh(o.name) for o in n.outputs])
        for o, no in zip(n.outputs, node.outputs):
            if no.name != o.name and o.name not in self.g.values:
                self.g.rename(no, o.name)
            self.float_of[id(o)] = no
        self.float_ops.append(n.name)


_LUT_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish", "Gelu", "Mish", "Elu", "Selu", "Celu",
            "Softplus", "Softsign", "Exp", "Erf", "Sqrt", "Reciprocal", "Neg", "Abs", "ThresholdedRelu")


def _make_lut_handler(op: str):
    def handler(self: Quantizer, n: Node) -> bool:
        d = get_op(op)
        return self.lut(n, lambda x: d.run([x], n.attrs)[0])

    return handler


for _op in _LUT_OPS:
    setattr(Quantizer, f"q_{_op}", _make_lut_handler(_op))
for _op in PASSTHROUGH:
    setattr(Quantizer, f"q_{_op}", Quantizer.passthrough)


def quantize_graph(graph: Graph, ranges: Mapping[str, tuple[float, float]], config: QuantConfig) -> Graph:
    """Return the integer version of ``graph`` (which is left unchanged)."""
    q = Quantizer(graph, ranges, config)
    out = q.run()
    log.info("quantized %d ops to integer, %d stay float", q.int_ops, len(q.float_ops))
    out.metadata["float_ops"] = len(q.float_ops)
    return out
