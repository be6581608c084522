"""Automatic mixed precision: keep the fewest layers in higher precision that bring the
quantized model to a target output cosine against the float model.

1. Quantize everything in the base precision and measure the worst output cosine over the
   evaluation samples; done if it reaches ``min_cosine``.
2. Sensitivity: for each quantized layer alone, promote it (to int16, or float) and measure
   the cosine again; the gain ranks the layers.
3. Promote the top-k layers for the smallest k that reaches the target, found by binary
   search over k (the cosine is not strictly monotone in k, so the search result is checked
   and k grows linearly from there if needed).

Each evaluation is: ranges for the trial precisions (from the same calibration observers,
no new pass over the data), the quantize pass, compile, and a run of the samples on the
fast runtime.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from ..ir import Graph
from .quantize import FLOAT, QuantConfig, quantize_graph

log = logging.getLogger(__name__)


@dataclass
class MixedPrecisionResult:
    overrides: dict[str, str]
    base_cosine: float
    final_cosine: float
    sensitivity: list[tuple[str, float]]     # (layer output, cosine when promoted alone)
    evaluations: int


def _session(graph: Graph):
    from .calibrate import float_session

    return float_session(graph)


def auto_mixed_precision(graph: Graph, calibrator, cfg: QuantConfig, samples: Sequence[dict], *,
                         min_cosine: float, promote_to: str = "int16",
                         progress: Callable[[str], None] | None = None) -> MixedPrecisionResult:
    from .report import output_cosines

    float_sess = calibrator.session
    count = [0]

    def evaluate(overrides: dict[str, str]) -> float:
        c = replace(cfg, overrides={**cfg.overrides, **overrides})
        ranges = calibrator.ranges(lambda n: c.overrides.get(n, c.act_type), int8_symmetric=c.act_symmetric)
        qg = quantize_graph(graph, ranges, c)
        sess = _session(qg)
        count[0] += 1
        cos = output_cosines(float_sess, sess, samples)
        return min(cos.values()) if cos else 1.0

    base = evaluate({})
    if base >= min_cosine:
        return MixedPrecisionResult({}, base, base, [], count[0])
    candidates = _quantized_layers(graph, cfg)
    sens = []
    for i, name in enumerate(candidates):
        c = evaluate({name: promote_to})
        sens.append((name, c))
        if progress:
            progress(f"sensitivity {i + 1}/{len(candidates)}")
    sens.sort(key=lambda t: -t[1])
    order = [n for n, _ in sens]

    def promoted(k):
        return {n: promote_to for n in order[:k]}

    lo, hi = 1, len(order)
    best_k, best_cos = None, base
    if evaluate(promoted(hi)) < min_cosine:
        log.warning("even with every layer in %s the cosine stays below %.5f", promote_to, min_cosine)
        final = evaluate(promoted(hi))
        return MixedPrecisionResult(promoted(hi), base, final, sens, count[0])
    while lo < hi:
        mid = (lo + hi) // 2
        c = evaluate(promoted(mid))
        if c >= min_cosine:
            hi, best_k, best_cos = mid, mid, c
        else:
            lo = mid + 1
    if best_k is None or best_k != lo:
        best_k = lo
        best_cos = evaluate(promoted(lo))
    while best_cos < min_cosine and best_k < len(order):
        best_k += 1
        best_cos = evaluate(promoted(best_k))
    return MixedPrecisionResult(promoted(best_k), base, best_cos, sens, count[0])


def _quantized_layers(graph: Graph, cfg: QuantConfig) -> list[str]:
    """Outputs of the ops that carry weights or rescale (the layers worth promoting)."""
    from .quantize import Quantizer

    names = []
    for n in graph.nodes:
        if hasattr(Quantizer, f"q_{n.op}") and n.outputs[0].dtype.kind == "f" \
                and cfg.overrides.get(n.outputs[0].name) != FLOAT and n.op not in _PASSTHROUGH_OPS():
            names.append(n.outputs[0].name)
    return names


def _PASSTHROUGH_OPS():
    from .quantize import PASSTHROUGH

    return PASSTHROUGH
