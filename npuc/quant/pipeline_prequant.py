"""The pass pipeline of pre-quantized models (ONNX QDQ or QOperator form).

Such a model arrives with its scales chosen: nothing is calibrated. QDQ groups are folded
into integer ops first, before anything folds the integer weights of
``DequantizeLinear(W_q)`` into float constants; then only clean-up passes run, which are
exact on integer graphs. Float ops the model keeps between its DQ and Q nodes stay float.
"""
from __future__ import annotations

from ..ir import Graph
from ..passes.cleanup import dead_code_elimination, eliminate_identity
from ..passes.fold import fold_constants
from ..passes.manager import Fixpoint, Pipeline
from .qdq import fold_qdq

#: ops that mark a graph as pre-quantized (after ONNX import)
QUANT_MARKERS = frozenset({"QuantizeLinear", "DequantizeLinear", "QConv", "QGemm", "QMatMul", "QAdd", "QMul",
                           "QConcat", "QMean", "QAvgPool", "QPRelu", "QLut", "Requantize"})


def is_prequantized(graph: Graph) -> bool:
    """Whether the imported graph already holds quantization (Q/DQ nodes or integer ops)."""
    return any(n.op in QUANT_MARKERS for n in graph.nodes)


def prequantized_pipeline() -> Pipeline:
    """Fold QDQ groups into integer ops, then clean up."""
    return Pipeline("prequantized", [
        Fixpoint("pre-clean", (eliminate_identity, dead_code_elimination)),
        Fixpoint("qdq", (fold_qdq, dead_code_elimination)),
        Fixpoint("cleanup", (fold_constants, eliminate_identity, dead_code_elimination)),
    ])
