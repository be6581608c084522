"""Empirical bias correction.

Quantizing weights and inputs shifts the mean of a layer's output: E[y_q] ≠ E[y]. For every
integer conv/gemm, the mean error per output channel over the calibration samples (and all
spatial positions), ``δ[c] = E[y − dequant(y_q)]``, is added back to the int32 bias at the
accumulator scale: ``bias[c] += round(δ[c] / (s_x · s_w[c]))``. The errors of all layers are
measured in one run of both models and corrected together; a few rounds let corrections
upstream propagate (each round re-measures).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..ir import Graph

log = logging.getLogger(__name__)


def _layers(qgraph: Graph):
    for n in qgraph.nodes:
        if n.op in ("QConv", "QGemm") and len(n.inputs) > 2 and n.inputs[2] is not None and n.inputs[2].is_const:
            yield n


def correct_biases(float_session, qgraph: Graph, samples: Sequence[dict], *, rounds: int = 2,
                   sequential: bool = False) -> int:
    """Adjust the biases of ``qgraph`` in place; returns the number of layers corrected.

    ``sequential``: one layer at a time in schedule order, each measured after the layers
    before it were corrected (exact, one model run per layer); otherwise all layers at once
    for ``rounds`` rounds."""
    layers = list(_layers(qgraph))
    if not layers or not samples:
        return 0
    if sequential:
        for n in layers:
            _correct(float_session, qgraph, samples, {n.outputs[0].name: n})
        return len(layers)
    out_of = {n.outputs[0].name: n for n in layers}
    for _ in range(rounds):
        if not _correct(float_session, qgraph, samples, out_of):
            break
    return len(layers)


def _correct(float_session, qgraph, samples, out_of) -> int:
    from .calibrate import float_session as session_for

    if True:
        qsess = session_for(qgraph)
        sums: dict[str, np.ndarray] = {}
        for s in samples:
            fvals = {}

            def keep(name, view):
                if name in out_of:
                    fvals[name] = view.astype(np.float64)

            float_session.run_observed(dict(s), keep)

            def diff(name, view):
                n = out_of.get(name)
                if n is None or name not in fvals:
                    return
                q = n.outputs[0].quant
                deq = (view.astype(np.float64) - float(np.asarray(q.zero_point).reshape(-1)[0])) * \
                    float(np.asarray(q.scale).reshape(-1)[0])
                err = fvals[name] - deq
                # only where the output is not clamped by a fused activation: there the
                # float value is outside the representable range and the bias is not at fault
                lo, hi = n.attrs["act_min"], n.attrs["act_max"]
                live = (view > lo) & (view < hi)
                axis = 1
                red = tuple(i for i in range(err.ndim) if i != axis)
                num = np.where(live, err, 0.0).sum(axis=red)
                cnt = live.sum(axis=red)
                acc = sums.setdefault(name, np.zeros((2, err.shape[axis])))
                acc[0] += num
                acc[1] += cnt

            qsess.run_observed(dict(s), diff)
        changed = 0
        for name, (num, cnt) in sums.items():
            n = out_of[name]
            mean = np.where(cnt > 0, num / np.maximum(cnt, 1), 0.0)
            x, w, b = n.inputs[0], n.inputs[1], n.inputs[2]
            sx = float(np.asarray(x.quant.scale).reshape(-1)[0])
            sw = np.broadcast_to(np.asarray(w.quant.scale, np.float64).reshape(-1), mean.shape)
            delta = np.rint(mean / (sx * sw)).astype(np.int64)
            log.debug('%s: mean error %s -> bias delta %s', name, mean[:4], delta[:4])
            if not np.any(delta):
                continue
            newb = np.clip(b.const.astype(np.int64) + delta, -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
            nb = qgraph.add_const(f"{b.name}_bc", newb)
            qgraph.set_input(n, 2, nb)
            changed += 1
        qgraph.prune_values()
        return changed
