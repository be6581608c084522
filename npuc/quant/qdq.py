"""Pre-quantized models: fold ONNX QDQ patterns into npuc's integer ops.

A QDQ model (onnxruntime's ``quantize_static(quant_format=QDQ)``, tf2onnx, TensorRT-style
exporters) keeps its float ops and wraps each of them in DequantizeLinear (DQ) on the
inputs and QuantizeLinear (Q) on the output. :func:`fold_qdq` rewrites every such group
into the integer op that computes the same thing, keeping the model's scales and zero
points exactly (they become the new values' :class:`~npuc.ir.QuantParams`):

=========================================  ===============================================
pattern                                    becomes
=========================================  ===============================================
DQ(x) DQ(W const) [DQ(b int32 const)]      ``QConv``/``QGemm``: ``acc = Σ(x−z_x)(W−z_w[c])
→ Conv/Gemm/MatMul → [Relu|Clip] → Q(y)    + b[c]``, ``y = requantize(acc, M[c]) + z_y``
                                           with ``M[c] = s_x·s_w[c]/s_y``; the clamp and
                                           the Q's integer range give act_min/act_max
DQ(a) DQ(b) → MatMul → Q                   ``QMatMul`` (per-tensor)
DQ(a) DQ(b) → Add/Sub/Mul → [clamp] → Q    ``QAdd`` (one shift, two multipliers) / ``QMul``
DQ(x_i) → Concat → Q                       ``QConcat`` (each input requantized to y)
DQ → GlobalAveragePool/ReduceMean → Q      ``QMean`` with ``M = s_x/(s_y·count)``
DQ → AveragePool → Q                       ``QAvgPool`` (constant window count only)
DQ → Sigmoid/Tanh/... → Q                  ``QLut``: ``table[q] = Q(f(DQ(q)))``
DQ → PRelu/LeakyRelu → Q                   ``QPRelu``
DQ → Relu/Clip → Q                         integer ``Clip`` (same params) or ``Requantize``
DQ → MaxPool/Reshape/Transpose/... → Q     the same op on the integer tensor (plus a
                                           ``Requantize`` when the Q's params differ)
DQ(x) → Q(y)                               nothing (same params) or ``Requantize``
DQ(W_q const) → Transpose/Reshape/...      DQ(T(W_q)) (weights stored in another layout,
                                           tf2onnx); per-channel axes follow a Transpose
=========================================  ===============================================

Anything else stays as it is: a float op between its DQs and Qs runs in float, and the
QuantizeLinear of a float graph input and the DequantizeLinear of a graph output stay.

The fold only fires when the float op's output is read by Q nodes alone (all with the same
parameters), so no float reader loses precision. A Relu/Clip between the op and its Q becomes
the clamp ``[Q(a), Q(b)]``: Q is monotonic, so ``Q(clip(x, a, b)) = clip(Q(x), Q(a), Q(b))``
exactly (with ONNX's own rounding of the bounds). Biases: the int32 bias of a DQ whose scale
equals ``s_x·s_w`` (what quantizers write) is used as is; any other bias (another scale, a
float constant, ``beta ≠ 1``) is re-quantized to the accumulator scale.

The pass has to see the integer weights: the ONNX importer keeps DequantizeLinear of an
integer constant unfolded (see :mod:`npuc.frontends.onnx.conv_qoperator`), and
:func:`fold_qdq` must run before constant folding (see
:func:`npuc.quant.pipeline_prequant.prequantized_pipeline`).

The pass is split by concern: :mod:`.qdq_params` (the parameter math, shared with the
QOperator converters), :mod:`.qdq_match` (pattern matching), :mod:`.qdq_editor` (graph
editing) and the per-op rewrites in :mod:`.qdq_rewrite_linear`,
:mod:`.qdq_rewrite_elementwise` and :mod:`.qdq_rewrite_movement`; this module drives them.
"""
from __future__ import annotations

import logging

from ..errors import NpucError
from ..ir import Graph
from ..passes.manager import graph_pass
from .qdq_match import annotate_quant, clamp_codes, dq_params, q_params  # noqa: F401
from .qdq_params import (  # noqa: F401  (the QOperator converters import these from here)
    ACT_DTYPES,
    QP,
    bias_at_scale,
    identity_multiplier,
    lut_table,
    make_qp,
    multiplier_attrs,
    qadd_attrs,
    real_multiplier,
)
from .qdq_rewrite_elementwise import ElementwiseRewrites
from .qdq_rewrite_linear import LinearRewrites
from .qdq_rewrite_movement import MovementRewrites
from .quantize import PASSTHROUGH, _LUT_OPS

log = logging.getLogger(__name__)


class _Rewriter(LinearRewrites, ElementwiseRewrites, MovementRewrites):
    """Every QDQ rewrite of one graph; :meth:`run` applies them in graph order."""

    # -------------------------------------------------------------------- driver
    def run(self) -> bool:
        annotate_quant(self.g)
        self.sink_weight_layout_ops()
        for n in list(self.g.nodes):
            if id(n) in self.removed or n not in self.g.nodes:
                continue
            fn = getattr(self, f"rw_{n.op}", None)
            if fn is None and n.op in PASSTHROUGH:
                fn = self.passthrough
            elif fn is None and n.op in _LUT_OPS:
                fn = self.lut
            if fn is None:
                continue
            try:
                done = fn(n)
            except (ValueError, TypeError, NpucError) as e:  # parameters the integer op cannot express
                log.debug("QDQ group at %s stays float: %s", n.name, e)
                done = False
            if not done and any(v is not None and v.producer is not None and v.producer.op == "DequantizeLinear"
                                for v in n.inputs):
                log.debug("QDQ: %s (%s) stays as it is", n.name, n.op)
        if self.folded:
            self.drop_dead_dq()
            self.g.prune_values()
        return self.folded > 0


@graph_pass("fold_qdq")
def fold_qdq(graph: Graph) -> bool:
    """Rewrite DequantizeLinear → op → QuantizeLinear groups into integer ops (see the module
    docstring). Returns whether anything changed."""
    rw = _Rewriter(graph)
    changed = rw.run()
    if changed:
        log.info("fold_qdq: %d QDQ groups folded into integer ops", rw.folded)
    return changed
