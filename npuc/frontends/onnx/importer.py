"""ONNX → IR import: initializers, Constant nodes, shape inference of our own, and
fold-on-construction so that exporters' Shape→Gather→Concat→Reshape chains become
constants that shape inference can read.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import ModelImportError, NpucError, ShapeError, UnsupportedOpError
from ...ir import Graph, Value
from ...ir.dtypes import from_onnx
from ...ops.registry import has_op
from ..common import add_op_or_fold
from .context import ConvertContext, find_converter

log = logging.getLogger(__name__)

MIN_OPSET = 1   # opsets < 7 convert where their forms differ (see conv_basic.py)
MAX_OPSET = 23
_ONNX_DOMAINS = ("", "ai.onnx")


def _onnx():
    import onnx  # imported lazily: only this package needs it

    return onnx


def _op_key(node) -> str:
    """Converter key: the op type, prefixed by its domain outside the standard one
    (e.g. ``com.microsoft.QLinearAdd``)."""
    return node.op_type if node.domain in _ONNX_DOMAINS else f"{node.domain}.{node.op_type}"


def parse_attrs(node) -> dict[str, Any]:
    onnx = _onnx()
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise ModelImportError(f"node {node.name!r}: attribute references are only valid in functions")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list):
            v = [x.decode("utf-8") if isinstance(x, bytes) else x for x in v]
            if v and isinstance(v[0], onnx.TensorProto):
                v = [numpy_helper.to_array(t) for t in v]
        elif isinstance(v, onnx.GraphProto):
            v = ("graph", v)
        out[a.name] = v
    return out


class OnnxImporter:
    def __init__(self, path: Path | str, model, input_shapes: dict[str, list[int]] | None):
        self.path = str(path)
        self.model = model
        self.input_shapes = {k: list(v) for k, v in (input_shapes or {}).items()}
        self.graph = Graph(model.graph.name or Path(self.path).stem)
        self.env: dict[str, Value] = {}
        self.opset = self._opset()

    def _opset(self) -> int:
        opset = None
        for imp in self.model.opset_import:
            if imp.domain in _ONNX_DOMAINS:
                opset = int(imp.version)
        if opset is None:
            opset = 1 if not self.model.opset_import else MAX_OPSET
        if opset < MIN_OPSET:
            raise ModelImportError(
                f"{self.path}: opset {opset} is older than npuc supports ({MIN_OPSET}..{MAX_OPSET}); "
                f"upgrade it with onnx.version_converter.convert_version(model, 13)")
        if opset > MAX_OPSET:
            log.warning("%s: opset %d is newer than npuc was tested with (%d)", self.path, opset, MAX_OPSET)
        return opset

    def fresh(self, name: str) -> str:
        return self.graph.unique_name(name)

    # -- nodes ----------------------------------------------------------------------
    def add(self, op: str, inputs: list[Value | None], attrs: dict[str, Any], node_name: str,
            outputs: list[str], num_outputs: int | None) -> list[Value]:
        """Add registry op ``op`` (folded when it can be evaluated now; see
        :func:`~npuc.frontends.common.add_op_or_fold`)."""
        return add_op_or_fold(self.graph, op, inputs, attrs, node_name, outputs, num_outputs)

    def convert_node(self, node) -> None:
        inputs: list[Value | None] = []
        for name in node.input:
            if not name:
                inputs.append(None)
                continue
            if name not in self.env:
                raise ModelImportError(f"{self.path}: node {node.name!r} ({node.op_type}) reads {name!r}, "
                                       f"which no earlier node, input or initializer defines")
            inputs.append(self.env[name])
        attrs = parse_attrs(node)
        ctx = ConvertContext(self, node, inputs, attrs, self.opset)
        fn = find_converter(_op_key(node), self.opset)
        try:
            if fn is not None:
                outs = fn(ctx)
            else:
                outs = ctx.emit(node.op_type, inputs, attrs)
        except ModelImportError:
            raise
        except NpucError as e:
            raise ModelImportError(f"{self.path}: node {node.name!r} ({node.op_type}): {e}") from e
        names = ctx.output_names
        if len(outs) < len(names):
            raise ModelImportError(f"{self.path}: node {node.name!r} ({node.op_type}) produced "
                                   f"{len(outs)} outputs, the model names {len(names)}")
        for name, v in zip(names, outs):
            if name:
                self.env[name] = v

    # -- whole model ---------------------------------------------------------------
    def check_supported(self) -> None:
        missing: list[tuple[str, str, int]] = []
        for node in self.model.graph.node:
            key = _op_key(node)
            if node.domain not in _ONNX_DOMAINS:
                if find_converter(key, self.opset) is None:
                    missing.append((key, node.name, self.opset))
            elif find_converter(key, self.opset) is None and not has_op(node.op_type):
                missing.append((node.op_type, node.name, self.opset))
        if missing:
            by_type: dict[str, list[str]] = {}
            for t, n, _ in missing:
                by_type.setdefault(t, []).append(n or "<unnamed>")
            lines = [f"  {t} (opset {self.opset}): {len(ns)} node(s): {', '.join(ns[:8])}"
                     + (" ..." if len(ns) > 8 else "") for t, ns in sorted(by_type.items())]
            raise UnsupportedOpError(
                f"{self.path}: {len(by_type)} unsupported op type(s):\n" + "\n".join(lines)
                + "\nnpuc cannot import this model until these ops are supported or removed.",
                missing)

    def input_types(self):
        from onnx import numpy_helper

        g = self.model.graph
        inits = {t.name: t for t in g.initializer}
        unknown = [n for n in self.input_shapes if n not in {i.name for i in g.input}]
        if unknown:
            real = [i.name for i in g.input if i.name not in inits]
            raise ModelImportError(f"{self.path}: --input-shape names unknown input(s) {unknown}; "
                                   f"the model's inputs are {real}")
        for t in g.initializer:
            arr = numpy_helper.to_array(t)
            if arr.dtype == object or arr.dtype.kind in "USO":
                raise ModelImportError(f"{self.path}: initializer {t.name!r} has a string type, not supported")
            self.env[t.name] = self.graph.add_const(t.name, arr)
        for inp in g.input:
            if inp.name in inits:
                continue  # an input that is also an initializer is a constant (overridable weight)
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                raise ModelImportError(f"{self.path}: input {inp.name!r} is not a tensor; npuc supports tensors only")
            dtype = from_onnx(tt.elem_type)
            if inp.name in self.input_shapes:
                shape = self.input_shapes[inp.name]
                model_rank = len(tt.shape.dim) if tt.HasField("shape") else None
                if model_rank is not None and model_rank != len(shape):
                    raise ModelImportError(f"{self.path}: --input-shape {inp.name}: gives rank {len(shape)}, "
                                           f"the model's input has rank {model_rank}")
                for i, (d, given) in enumerate(zip(tt.shape.dim if model_rank else [], shape)):
                    if d.HasField("dim_value") and d.dim_value != given and d.dim_value > 0:
                        raise ModelImportError(f"{self.path}: --input-shape {inp.name}: dimension {i} is "
                                               f"{given}, but the model fixes it to {d.dim_value}")
            else:
                if not tt.HasField("shape"):
                    raise ModelImportError(f"{self.path}: input {inp.name!r} has no shape; give it with "
                                           f"--input-shape {inp.name}:D0,D1,...")
                shape = []
                for i, d in enumerate(tt.shape.dim):
                    if d.HasField("dim_value") and d.dim_value >= 0:
                        shape.append(int(d.dim_value))  # 0 is a legal (empty) dimension
                    else:
                        label = f" ({d.dim_param!r})" if d.dim_param else ""
                        raise ModelImportError(
                            f"{self.path}: input {inp.name!r} dimension {i}{label} is not fixed; npuc compiles "
                            f"static shapes: give it with --input-shape {inp.name}:"
                            + ",".join(str(x.dim_value) if x.HasField('dim_value') and x.dim_value > 0 else "N"
                                       for x in tt.shape.dim)
                            + " (replace N by the size you need)")
            if any(int(s) < 0 for s in shape):
                raise ModelImportError(f"{self.path}: input {inp.name!r} shape {shape} has a negative dimension")
            self.env[inp.name] = self.graph.add_input(inp.name, dtype, shape)

    def run(self) -> Graph:
        g = self.model.graph
        self.check_supported()
        self.input_types()
        for node in g.node:
            self.convert_node(node)
        for out in g.output:
            if out.name not in self.env:
                raise ModelImportError(f"{self.path}: graph output {out.name!r} is not produced by any node")
            v = self.env[out.name]
            if (v.name != out.name or any(x is v for x in self.graph.inputs)
                    or any(x is v for x in self.graph.outputs)):
                if v.name != out.name and not any(x is v for x in self.graph.inputs) \
                        and not any(x is v for x in self.graph.outputs) and out.name not in self.graph.values:
                    self.graph.rename(v, out.name)
                else:
                    # the output is another tensor under a second name: copy it
                    name = out.name if out.name not in self.graph.values else self.fresh(out.name)
                    v = self.add("Identity", [v], {}, self.fresh(f"{out.name}_identity"), [name], 1)[0]
            self.graph.outputs.append(v)
        self.graph.prune_values()
        self.graph.metadata.update({"source": self.path, "source_format": "onnx", "opset": self.opset,
                                    "producer": f"{self.model.producer_name} {self.model.producer_version}".strip()})
        return self.graph


def import_onnx(path, *, input_shapes: dict[str, list[int]] | None = None, model=None) -> Graph:
    """Import an ONNX model file (or an in-memory ``ModelProto`` given as ``model``)."""
    onnx = _onnx()
    if model is None:
        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise ModelImportError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    from . import converters  # noqa: F401  (registers the converters)

    try:
        return OnnxImporter(path, model, input_shapes).run()
    except ShapeError as e:
        raise ModelImportError(f"{path}: {e}") from e
