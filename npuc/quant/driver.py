"""Post-training quantization driver: dataset → calibration → ranges → quantize pass.

Called by :func:`npuc.api.compile` after the float optimizations when any of ``dataset``,
``quant_type`` or ``quant_scheme`` is given.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

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
    if getattr(opts, "target", "cpu") == "k210":   # the KPU's scheme: see npuc/targets/k210/target.py
        from ..targets.k210.target import quant_config as k210_quant_config

        return k210_quant_config(opts, overrides)
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
    """Calibrate (if needed), choose precisions, quantize. Every float run in here uses one
    BLAS thread, so the result does not depend on the machine's core count."""
    from .calibrate import single_blas_thread

    with single_blas_thread():
        return _quantize_model(graph, opts, timings=timings)


def _quantize_model(graph: Graph, opts, *, timings=None) -> Graph:
    overrides, ranges = {}, {}
    if opts.quant_scheme:
        overrides, ranges = read_scheme(opts.quant_scheme)
    cfg = quant_config(opts, overrides)
    missing = [v.name for v in _float_values(graph) if v.name not in ranges
               and cfg.overrides.get(v.name, cfg.act_type) != "float"]
    cal = None
    needs_data = missing or opts.auto_mixed_precision or opts.dump_quant_error or opts.bias_correction
    if needs_data:
        cal = calibrate_graph(graph, opts, timings=timings)
    if opts.auto_mixed_precision:
        from .mixed import auto_mixed_precision

        t0 = time.perf_counter()
        result = auto_mixed_precision(graph, cal, cfg, _eval_samples(opts, graph), min_cosine=opts.min_cosine,
                                      promote_to=opts.mixed_precision_type)
        cfg = replace(cfg, overrides={**cfg.overrides, **result.overrides})
        log.info("mixed precision: %d layer(s) in %s, cosine %.5f -> %.5f (%d evaluations)",
                 len(result.overrides), opts.mixed_precision_type, result.base_cosine, result.final_cosine,
                 result.evaluations)
        if timings is not None:
            timings["mixed_precision"] = time.perf_counter() - t0
    if cal is not None:
        calibrated = cal.ranges(lambda n: cfg.overrides.get(n, cfg.act_type), int8_symmetric=cfg.act_symmetric)
        if opts.target == "k210":   # average pools the KPU layer computes: the layer's own scale
            from ..targets.k210.prepare import share_pool_ranges

            calibrated = share_pool_ranges(graph, calibrated)
        ranges = {**calibrated, **ranges}
    t0 = time.perf_counter()
    qgraph = quantize_graph(graph, ranges, cfg)
    Pipeline("post-quant", [Fixpoint("cleanup", (fold_constants, dead_code_elimination))]).run(qgraph)
    if opts.target == "k210":   # adds the KPU runs as 1x1 layers: multipliers it represents exactly
        from ..targets.k210.lower_add import snap_add_ratios

        snap_add_ratios(qgraph)
    if timings is not None:
        timings["quantize"] = time.perf_counter() - t0
    if opts.bias_correction:
        from .bias_correction import correct_biases

        t0 = time.perf_counter()
        correct_biases(cal.session, qgraph, _eval_samples(opts, graph, limit=16), sequential=True)
        if timings is not None:
            timings["bias_correction"] = time.perf_counter() - t0
    if opts.export_quant_scheme:
        write_scheme(opts.export_quant_scheme, graph, ranges, cfg)
    if opts.dump_quant_error:
        dump_quant_error(graph, qgraph, cal, opts)
    return qgraph


def _eval_samples(opts, graph, limit: int = 8) -> list[dict]:
    ds = Dataset(opts.dataset, graph.inputs, limit=min(limit, opts.calib_samples or limit))
    return list(ds)


def dump_quant_error(graph: Graph, qgraph: Graph, cal, opts) -> None:
    """Per-layer errors on (up to 8) calibration samples: CSV, and a PNG with matplotlib."""
    from pathlib import Path

    from .calibrate import float_session
    from .report import layer_errors, write_csv, write_plot

    rows = layer_errors(cal.session, float_session(qgraph), _eval_samples(opts, graph))
    base = Path(opts.dump_quant_error)
    csv_path = base if base.suffix == ".csv" else base / "quant_error.csv"
    write_csv(rows, csv_path)
    write_plot(rows, csv_path.with_suffix(".png"))


def _float_values(graph: Graph):
    for v in graph.inputs:
        if v.dtype.kind == "f":
            yield v
    for n in graph.nodes:
        for o in n.outputs:
            if o.dtype.kind == "f":
                yield o
