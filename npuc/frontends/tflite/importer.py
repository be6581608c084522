"""TFLite → IR import of the main subgraph, with fold-on-construction.

Order of work: read the flatbuffer (:mod:`.reader`), check every operator once and fail
listing all unsupported ones, create the graph inputs (tensor names, NHWC as in the
model), convert the operators in order, bind the outputs, drop what nothing reads.

Constants: fp16 weights behind DEQUANTIZE and int8/uint8 weight-only ("hybrid") tensors
become float32 constants at import; quantization parameters of integer tensors are kept
on ``Value.quant`` so the quantized import can build on them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelImportError, NpucError, ShapeError, UnsupportedOpError
from ...ir import Graph, Node, Value
from ...ir.graph import QuantParams
from ..common import add_op_or_fold
from .context import NOT_SUPPORTED_REASONS, ConvertContext, find_converter
from .reader import ModelInfo, OperatorInfo, QuantInfo, TensorInfo, read_model

log = logging.getLogger(__name__)

#: ops that only move or select elements: exact on quantized integer data as long as the
#: output has the input's quantization parameters
_MOVE_OPS = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "GATHER", "GATHER_ND", "SLICE", "STRIDED_SLICE",
    "SPLIT", "SPLIT_V", "PACK", "UNPACK", "TILE", "BROADCAST_TO", "SHAPE", "REVERSE_V2", "DEPTH_TO_SPACE",
    "SPACE_TO_DEPTH", "CONCATENATION", "MAX_POOL_2D", "REDUCE_MAX", "REDUCE_MIN", "MAXIMUM", "MINIMUM",
    "ARG_MAX", "ARG_MIN", "RESIZE_NEAREST_NEIGHBOR",
})
_QUANT_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def dequantize_array(q: np.ndarray, quant: QuantInfo) -> np.ndarray:
    """real = scale · (q − zero_point), per channel along ``quant.axis`` (float32, as TFLite)."""
    q = np.asarray(q)
    scale, zp = quant.scale, quant.zero_point
    if scale.size > 1 and q.ndim:
        shape = [1] * q.ndim
        shape[quant.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (scale.astype(np.float32) * (q.astype(np.int64) - zp).astype(np.float32)).astype(np.float32)


def _qparams(q: QuantInfo | None) -> QuantParams | None:
    if q is None:
        return None
    if q.per_channel:
        return QuantParams(q.scale.copy(), q.zero_point.copy(), q.axis)
    return QuantParams(float(q.scale[0]), int(q.zero_point[0]), None)


class TfliteImporter:
    def __init__(self, model: ModelInfo, input_shapes: dict[str, list[int]] | None):
        self.path = model.path
        self.model = model
        self.subgraph = model.subgraphs[0]
        self.input_shapes = {k: [int(d) for d in v] for k, v in (input_shapes or {}).items()}
        name = self.subgraph.name or Path(self.path).stem
        self.graph = Graph(name)
        self.env: dict[int, Value] = {}
        self._dequantized: dict[int, Value] = {}
        self.shape_mismatches: list[str] = []
        self._bound: set[int] = set()  # ids of values already standing for a tensor
        self.quantized_ops: dict = {}  # operator index -> integer converter (quantized models)

    def fail(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.path}: {msg}")

    def fresh(self, name: str) -> str:
        return self.graph.unique_name(name)

    # -- nodes ----------------------------------------------------------------------
    def add(self, op: str, inputs: list[Value | None], attrs: dict[str, Any], node_name: str,
            num_outputs: int | None) -> list[Value]:
        """Add registry op ``op``; evaluate it now when all its inputs are constant (see
        :func:`~npuc.frontends.common.add_op_or_fold`). Outputs are named after the node."""
        base = node_name.replace("/", "_")
        return add_op_or_fold(self.graph, op, inputs, attrs, node_name,
                              lambda count: [base] if count == 1 else [f"{base}_{i}" for i in range(count)],
                              num_outputs, unique_node_name=True)

    # -- tensors --------------------------------------------------------------------
    def const_value(self, t: TensorInfo) -> Value:
        if t.index not in self.env:
            v = self.graph.add_const(t.name, t.data)
            if t.quant is not None and v.dtype.kind in "iu":
                v.quant = _qparams(t.quant)
            self.env[t.index] = v
            self._bound.add(id(v))
        return self.env[t.index]

    def value_of(self, ti: int, op: OperatorInfo) -> Value | None:
        if ti < 0:
            return None
        t = self.subgraph.tensors[ti]
        if ti in self.env and not t.is_const:
            return self.env[ti]
        if t.is_const:
            if (t.quant is not None and t.dtype is not None and t.dtype.kind in "iu"
                    and op.opcode not in _QUANT_OPS and op.opcode not in _MOVE_OPS
                    and op.index not in self.quantized_ops):
                return self.dequantized(t, op)
            return self.const_value(t)
        if t.is_variable:
            raise self.fail(f"operator #{op.index} {op.label} reads variable tensor {t.name!r}: stateful "
                            f"models (variable tensors) are not supported yet")
        raise self.fail(f"operator #{op.index} {op.label} reads tensor {t.name!r}, which no earlier operator "
                        f"or graph input defines")

    def dequantized(self, t: TensorInfo, op: OperatorInfo) -> Value:
        """A weight-only quantized constant read by a float op: dequantize it once."""
        if t.index not in self._dequantized:
            log.info("%s: operator #%d %s reads quantized weight %r: dequantized to float32 at import "
                     "(TFLite's hybrid kernels quantize the activations instead; results differ slightly)",
                     self.path, op.index, op.label, t.name)
            self._dequantized[t.index] = self.graph.add_const(f"{t.name}_dequantized",
                                                              dequantize_array(t.data, t.quant))
        return self._dequantized[t.index]

    # -- checks -----------------------------------------------------------------------
    def check_supported(self) -> None:
        missing: dict[str, list[OperatorInfo]] = {}
        for op in self.subgraph.operators:
            if op.opcode in NOT_SUPPORTED_REASONS or find_converter(op) is None:
                missing.setdefault(op.label, []).append(op)
        if missing:
            tensors = self.subgraph.tensors
            lines = []
            for label, ops in sorted(missing.items()):
                reason = NOT_SUPPORTED_REASONS.get(ops[0].opcode)
                reason = f" [{reason}: not supported by npuc yet]" if reason else ""
                where = ", ".join(f"#{o.index} (outputs {[tensors[i].name for i in o.outputs if i >= 0]})"
                                  for o in ops[:6]) + (" ..." if len(ops) > 6 else "")
                lines.append(f"  {label}{reason}: {len(ops)} operator(s): {where}")
            unsupported = [(label, f"#{o.index}", self.model.version) for label, ops in missing.items() for o in ops]
            raise UnsupportedOpError(
                f"{self.path}: {len(missing)} unsupported TFLite op type(s):\n" + "\n".join(lines)
                + "\nnpuc cannot import this model until these ops are supported or removed.", unsupported)
        quantized = []
        for op in self.subgraph.operators:
            if op.opcode in _QUANT_OPS:
                continue
            for ti in op.inputs:
                t = self.subgraph.tensors[ti] if ti >= 0 else None
                if t is None or t.is_const or t.quant is None or t.dtype is None or t.dtype.kind not in "iu":
                    continue
                same = op.opcode in _MOVE_OPS and all(
                    self.subgraph.tensors[o].quant is not None
                    and np.array_equal(self.subgraph.tensors[o].quant.scale, t.quant.scale)
                    and np.array_equal(self.subgraph.tensors[o].quant.zero_point, t.quant.zero_point)
                    for o in op.outputs if o >= 0)
                if not same:
                    quantized.append(op)
                    break
        if quantized:  # a quantized model: these ops get npuc's integer ops (see .quantized)
            from .quantized import plan

            self.quantized_ops = plan(self, quantized)

    def check_tensor(self, t: TensorInfo, v: Value, op: OperatorInfo) -> None:
        if v.dtype != t.dtype and t.dtype is not None:
            raise self.fail(f"operator #{op.index} {op.label}: output {t.name!r} came out {v.dtype}, "
                            f"the model declares {t.type_name}")
        if not self.input_shapes and t.shape and v.shape != t.shape:
            msg = (f"operator #{op.index} {op.label}: output {t.name!r} has shape {list(v.shape)}, "
                   f"the model declares {list(t.shape)}")
            log.warning("%s: %s", self.path, msg)
            self.shape_mismatches.append(msg)

    # -- whole model ----------------------------------------------------------------
    def create_inputs(self) -> None:
        sg = self.subgraph
        names = [sg.tensors[i].name for i in sg.inputs]
        unknown = [n for n in self.input_shapes if n not in names]
        if unknown:
            raise self.fail(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {names}")
        for ti in sg.inputs:
            t = sg.tensors[ti]
            if t.dtype is None:
                raise self.fail(f"input {t.name!r} has type {t.type_name}, which npuc does not support")
            shape = list(t.shape)
            if t.name in self.input_shapes:
                given = self.input_shapes[t.name]
                if len(given) != len(shape):
                    raise self.fail(f"--input-shape {t.name}: gives rank {len(given)}, the model's input has "
                                    f"rank {len(shape)}")
                sig = t.shape_signature or tuple(shape)
                for i, (d, g) in enumerate(zip(sig, given)):
                    if d >= 0 and d != g:
                        raise self.fail(f"--input-shape {t.name}: dimension {i} is {g}, but the model fixes "
                                        f"it to {d}")
                shape = given
            elif t.dynamic_dims:
                log.info("%s: input %r has dynamic dimension(s) %s; using the model's default shape %s "
                         "(override with --input-shape)", self.path, t.name, t.dynamic_dims, shape)
            if any(d <= 0 for d in shape):
                raise self.fail(f"input {t.name!r} shape {shape} must be positive; give it with "
                                f"--input-shape {t.name}:" + ",".join(str(max(d, 1)) for d in shape))
            v = self.graph.add_input(t.name, t.dtype, shape)
            if t.quant is not None and t.dtype.kind in "iu":
                v.quant = _qparams(t.quant)
            self.env[ti] = v
            self._bound.add(id(v))

    def convert(self, op: OperatorInfo) -> None:
        inputs = [self.value_of(ti, op) for ti in op.inputs]
        ctx = ConvertContext(self, op, inputs)
        fn = self.quantized_ops.get(op.index) or find_converter(op)
        try:
            outs = fn(ctx)
        except ModelImportError:
            raise
        except NpucError as e:
            raise ctx.error(str(e)) from e
        if isinstance(outs, Value):
            outs = [outs]
        n = sum(1 for o in op.outputs)
        if len(outs) < n:
            raise ctx.error(f"produced {len(outs)} outputs, the model names {n}")
        bound = self._bound
        for ti, v in zip(op.outputs, outs):
            if ti < 0:
                continue
            t = self.subgraph.tensors[ti]
            if v.quant is None and t.quant is not None and v.dtype.kind in "iu":
                v.quant = _qparams(t.quant)
            self.check_tensor(t, v, op)
            if id(v) not in bound and v.name != t.name and not any(v is x for x in self.graph.inputs):
                if t.name not in self.graph.values:
                    self.graph.rename(v, t.name)
            self.env[ti] = v
            bound.add(id(v))

    def _claim(self, name: str, v: Value | None) -> bool:
        """Make ``name`` free for ``v`` (moving an internal value away); False when a graph
        input or output already has it."""
        cur = self.graph.values.get(name)
        if cur is None or cur is v:
            return True
        if any(x is cur for x in self.graph.inputs) or any(x is cur for x in self.graph.outputs):
            return False
        self.graph.rename(cur, self.fresh(name + "_inner"))
        return True

    def bind_outputs(self) -> None:
        for ti in self.subgraph.outputs:
            t = self.subgraph.tensors[ti]
            if ti not in self.env:
                if not t.is_const:
                    raise self.fail(f"graph output {t.name!r} is not produced by any operator")
                self.const_value(t)
            v = self.env[ti]
            if v.is_const or any(x is v for x in self.graph.inputs) or any(x is v for x in self.graph.outputs):
                # the output is a constant, an input or another output: copy it
                name = t.name if self._claim(t.name, None) else self.fresh(t.name)
                out = Value(name, v.dtype, v.shape)
                self.graph.values[name] = out
                self.graph.add_node(Node("Identity", self.fresh(f"{t.name}/identity"), [v], [out], {}))
                v = out
            elif v.name != t.name and self._claim(t.name, v):
                self.graph.rename(v, t.name)
            self.graph.outputs.append(v)

    def drop_dead(self) -> None:
        live = {id(v) for v in self.graph.outputs}
        keep = []
        for n in reversed(self.graph.nodes):
            if any(id(o) in live for o in n.outputs):
                keep.append(n)
                live.update(id(i) for i in n.inputs if i is not None)
        dead = [n for n in self.graph.nodes if n not in keep]
        for n in dead:
            self.graph.remove_node(n)
        self.graph.prune_values()

    def run(self) -> Graph:
        model = self.model
        if len(model.subgraphs) > 1:
            log.info("%s: the model has %d subgraphs; importing the main one (subgraph 0)", self.path,
                     len(model.subgraphs))
        self.check_supported()
        self.create_inputs()
        for op in self.subgraph.operators:
            self.convert(op)
        self.bind_outputs()
        self.drop_dead()
        self.graph.metadata.update({
            "source": self.path, "source_format": "tflite", "tflite_schema_version": model.version,
            "producer": model.description, "layout": "NHWC",
        })
        if self.shape_mismatches:
            self.graph.metadata["tflite_shape_mismatches"] = list(self.shape_mismatches)
        return self.graph


def import_tflite(path, *, input_shapes: dict[str, list[int]] | None = None, data: bytes | None = None) -> Graph:
    """Import the main subgraph of a .tflite model file (or of its bytes ``data``).

    Inputs and outputs keep the model's tensor names and NHWC layout; ``input_shapes``
    fixes input shapes by tensor name (for dynamic dimensions)."""
    from . import converters  # noqa: F401  (registers the converters)

    model = read_model(path, data)
    try:
        return TfliteImporter(model, input_shapes).run()
    except ShapeError as e:
        raise ModelImportError(f"{path}: {e}") from e
