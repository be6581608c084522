"""The Python API: ``npuc.compile`` and ``npuc.load`` (mirroring the CLI)."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import OptionError
from .format.writer import write_program
from .frontends import load_model
from .ir import Graph
from .lowering import lower
from .runtime.session import Session, load
from .targets import get_target

log = logging.getLogger(__name__)


DEFAULT_CALIBRATE_METHOD = "mse"   # measured best overall: benchmarks/quant_methods.py


@dataclass(frozen=True)
class CompileOptions:
    """Options of :func:`compile`; each has the name of its CLI flag (``--input-shape`` ↔
    ``input_shapes``, ``--quant-type`` ↔ ``quant_type``, ...)."""

    target: str = "cpu"
    input_shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    dump_dir: str | None = None
    verify_passes: bool = False
    optimize: bool = True                     # False: clean-up passes only (no fusion), to measure fusion
    equalize: bool | None = None              # cross-layer equalization before quantizing (default: cpu only)
    # quantization (any of dataset / quant_type / quant_scheme turns it on)
    dataset: str | None = None
    calib_samples: int | None = None
    quant_type: str | None = None             # uint8 | int8 | int16
    w_quant_type: str = "int8"                # int8 | uint8
    symmetric_activations: bool = False       # int8 activations with zero point 0
    calibrate_method: str = DEFAULT_CALIBRATE_METHOD
    percentile: float = 99.99
    per_tensor_weights: bool = False
    quant_scheme: str | None = None           # JSON file: per-tensor precision and ranges
    export_quant_scheme: str | None = None
    auto_mixed_precision: bool = False
    min_cosine: float = 0.99
    mixed_precision_type: str = "int16"       # int16 | float
    dump_quant_error: str | None = None       # folder (or .csv path) for the per-layer report
    bias_correction: bool = False             # empirical per-channel bias correction (one run per layer)
    # preprocessing folded into the model (see npuc/passes/preprocess.py for the order)
    input_type: str = "float32"
    input_layout: str = "NCHW"
    swap_rb: bool = False
    input_range: tuple | None = None
    mean: tuple | None = None
    std: tuple | None = None
    letterbox_value: float = 0.0
    image_size: tuple | None = None

    def preprocess(self):
        from .passes.preprocess import Preprocess

        return Preprocess(self.input_type, self.input_layout, self.swap_rb,
                          None if self.input_range is None else tuple(self.input_range),
                          None if self.mean is None else tuple(self.mean),
                          None if self.std is None else tuple(self.std), float(self.letterbox_value),
                          None if self.image_size is None else tuple(int(d) for d in self.image_size))
    progress: bool = False

    @property
    def quantize(self) -> bool:
        return bool(self.dataset or self.quant_type or self.quant_scheme)


@dataclass
class CompileReport:
    """What :func:`compile` did: sizes, op counts and time per stage."""

    output: str
    target: str
    file_bytes: int
    arena_bytes: int
    lower_bound_bytes: int
    weights_bytes: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    stage_seconds: dict[str, float]

    def summary(self) -> str:
        lines = [f"wrote {self.output} ({self.file_bytes:,} bytes) for target {self.target}",
                 f"  ops: {sum(self.ops_before.values())} imported -> {sum(self.ops_after.values())} after passes",
                 f"  arena: {self.arena_bytes:,} bytes (lower bound {self.lower_bound_bytes:,}), "
                 f"weights: {self.weights_bytes:,} bytes",
                 "  time: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.stage_seconds.items())]
        return "\n".join(lines)


def _options(target, input_shapes, dump_dir, extra) -> CompileOptions:
    known = {f for f in CompileOptions.__dataclass_fields__} - {"target", "input_shapes", "dump_dir"}
    unknown = set(extra) - known
    if unknown:
        raise OptionError(f"unknown compile option(s) {sorted(unknown)}; known: target, input_shapes, dump_dir, "
                          f"{', '.join(sorted(known))}")
    shapes = {}
    for k, v in (input_shapes or {}).items():
        try:
            shapes[str(k)] = [int(d) for d in v]
        except (TypeError, ValueError):
            raise OptionError(f"input_shapes[{k!r}] must be a list of ints, got {v!r}") from None
    get_target(target)
    return CompileOptions(target=target, input_shapes=shapes, dump_dir=dump_dir, **extra)


def optimize(graph: Graph, opts: CompileOptions) -> Graph:
    from .passes.pipelines import pipeline_for

    from .quant.pipeline_prequant import is_prequantized, prequantized_pipeline

    if is_prequantized(graph):
        if opts.quantize:
            raise OptionError("the model is already quantized (QDQ or QOperator form): drop --dataset, "
                              "--quant-type and --quant-scheme; npuc keeps the model's own scales")
        # QDQ groups become integer ops before any folding turns integer weights into float
        prequantized_pipeline().run(graph, dump_dir=opts.dump_dir, verify_each=opts.verify_passes)
    equalize = opts.equalize if opts.equalize is not None else opts.target == "cpu"
    pipeline = pipeline_for(opts.target, quantize=opts.quantize, optimize=opts.optimize, equalize=equalize)
    pipeline.run(graph, dump_dir=opts.dump_dir, verify_each=opts.verify_passes)
    return graph


def compile(model_path: str | os.PathLike, out_path: str | os.PathLike, *, target: str = "cpu",
            input_shapes: Mapping[str, Sequence[int]] | None = None, dump_dir: str | None = None,
            **options: Any) -> CompileReport:
    """Compile a model file (.onnx) into a .npuc file at ``out_path``."""
    opts = _options(target, input_shapes, dump_dir, options)
    if opts.target == "k210":   # uint8 by default, a calibration data set required
        from .targets.k210.target import k210_options

        opts = k210_options(opts)
    t = {}
    t0 = time.perf_counter()
    graph = load_model(model_path, input_shapes=opts.input_shapes)
    from .passes.preprocess import add_preprocessing

    add_preprocessing(graph, opts.preprocess())
    t["import"] = time.perf_counter() - t0
    before = graph.op_counts()
    t0 = time.perf_counter()
    optimize(graph, opts)
    t["optimize"] = time.perf_counter() - t0
    if opts.quantize:
        from .quant.driver import quantize_model

        graph = quantize_model(graph, opts, timings=t)
    if opts.target == "k210":   # KPU layers + CPU fallback + copies (npuc/targets/k210/lower.py)
        from .targets.k210.lower import lower_k210

        graph = lower_k210(graph, timings=t)
    graph.metadata["ops_imported"] = before       # stored in the file: inspect shows before/after
    t0 = time.perf_counter()
    program = lower(graph, get_target(opts.target))
    t["lower+plan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = write_program(program, out_path)
    t["write"] = time.perf_counter() - t0
    weights = sum(a.nbytes for _, a in program.constants)
    return CompileReport(str(out_path), opts.target, size, sum(p.size for p in program.pools),
                         sum(p.lower_bound for p in program.pools), weights, before, graph.op_counts(), t)


def compile_graph(graph: Graph, out_path: str | os.PathLike, *, target: str = "cpu", **options) -> int:
    """Optimize, lower and write an already-imported graph (used by tests and tools)."""
    opts = _options(target, {}, options.pop("dump_dir", None), options)
    optimize(graph, opts)
    return write_program(lower(graph, get_target(opts.target)), out_path)


def compile_graph_to_session(graph: Graph, *, target: str = "cpu", **options) -> Session:
    """Compile a graph through a temporary .npuc file and load it (tests, calibration)."""
    with tempfile.TemporaryDirectory(prefix="npuc-") as d:
        path = Path(d) / "model.npuc"
        compile_graph(graph, path, target=target, **options)
        sess = load(path)
    return sess


__all__ = ["CompileOptions", "CompileReport", "compile", "compile_graph", "compile_graph_to_session", "load"]
