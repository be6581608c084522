"""Post-training quantization driver: dataset → calibration → ranges → quantize pass.

Called by :func:`npuc.api.compile` after the float optimizations when any of ``dataset``,
``quant_type`` or ``quant_scheme`` is given.
"""
from __future__ import annotations

import logging
import time

from ..errors import OptionError
from ..ir import Graph
from ..passes.cleanup import dead_code_elimination
from ..passes.fold import fold_constants
from ..passes.manager import Fixpoint, Pipeline
from .calibrate import Calibrator
from .dataset import Dataset
from .quantize import QuantConfig, quantize_graph
from .scheme import read_scheme, write_scheme

log = logging.getLogger(__name__)


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        import sys

        def step(i):
            print(f"\\rcalibrating {i}/{total}", end="", file=sys.stderr, flush=True)

        return step, lambda: print(file=__import__("sys").stderr)
    bar = tqdm(total=total, desc="calibrating", unit="sample", leave=False)
    return (lambda i: bar.update(1)), bar.close


def quant_config(opts, overrides=None) -> QuantConfig:
    act = opts.quant_type or "uint8"
    return QuantConfig(act_type=act, act_symmetric=opts.symmetric_activations, weight_type=opts.w_quant_type,
                       per_channel=not opts.per_tensor_weights, overrides=dict(overrides or {}))


def calibrate_graph(graph: Graph, opts, *, timings=None) -> Calibrator:
    if not opts.dataset:
        raise OptionError("calibration needs a data set: give --dataset PATH (or a complete --quant-scheme)")
    t0 = time.perf_counter()
    ds = Dataset(opts.dataset, graph.inputs, limit=opts.calib_samples)
    kw = {"percentile": opts.percentile} if opts.calibrate_method == "percentile" else {}
    cal = Calibrator(graph, opts.calibrate_method, **kw)
    step, close = _progress_bar(len(ds), opts.progress)
    try:
        cal.run(ds, step)
    finally:
        close()
    if timings is not None:
        timings["calibrate"] = time.perf_counter() - t0
    return cal


def quantize_model(graph: Graph, opts, *, timings=None) -> Graph:
    overrides, ranges = {}, {}
    if opts.quant_scheme:
        overrides, ranges = read_scheme(opts.quant_scheme)
    cfg = quant_config(opts, overrides)
    missing = [v.name for v in _float_values(graph) if v.name not in ranges
               and cfg.overrides.get(v.name, cfg.act_type) != "float"]
    cal = None
    if missing:
        cal = calibrate_graph(graph, opts, timings=timings)
        calibrated = cal.ranges(lambda n: cfg.overrides.get(n, cfg.act_type), int8_symmetric=cfg.act_symmetric)
        ranges = {**calibrated, **ranges}
    t0 = time.perf_counter()
    qgraph = quantize_graph(graph, ranges, cfg)
    Pipeline("post-quant", [Fixpoint("cleanup", (fold_constants, dead_code_elimination))]).run(qgraph)
    if timings is not None:
        timings["quantize"] = time.perf_counter() - t0
    if opts.export_quant_scheme:
        write_scheme(opts.export_quant_scheme, graph, ranges, cfg)
    return qgraph


def _float_values(graph: Graph):
    for v in graph.inputs:
        if v.dtype.kind == "f":
            yield v
    for n in graph.nodes:
        for o in n.outputs:
            if o.dtype.kind == "f":
                yield o
