"""Converter registration and the context a converter sees.

A converter turns one ONNX node into registry ops. Converters register per op type and
opset range with :func:`converter`; an op with no converter whose name is in the registry
is mapped 1:1 (attributes passed through), which is right whenever the registry op has the
latest ONNX semantics and the model's opset agrees.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...errors import ModelImportError
from ...ir import Graph, Value

ConverterFn = Callable[["ConvertContext"], list[Value]]
_CONVERTERS: dict[str, list[tuple[int, int, ConverterFn]]] = {}


def converter(op_type: str, since: int = 1, until: int = 10_000):
    """Register ``fn`` as the converter of ``op_type`` for opsets ``since..until`` inclusive."""

    def deco(fn: ConverterFn) -> ConverterFn:
        _CONVERTERS.setdefault(op_type, []).append((since, until, fn))
        return fn

    return deco


def find_converter(op_type: str, opset: int) -> ConverterFn | None:
    for lo, hi, fn in _CONVERTERS.get(op_type, []):
        if lo <= opset <= hi:
            return fn
    return None


def has_converter(op_type: str) -> bool:
    return op_type in _CONVERTERS


class ConvertContext:
    """What a converter sees: the ONNX node's inputs (as IR values), attributes, opset."""

    def __init__(self, importer, node, inputs: list[Value | None], attrs: dict[str, Any], opset: int):
        self.importer = importer
        self.graph: Graph = importer.graph
        self.onnx_node = node
        self.op_type: str = node.op_type
        self.name: str = node.name
        self.inputs = inputs
        self.attrs = attrs
        self.opset = opset
        self.output_names = list(node.output)
        while self.output_names and not self.output_names[-1]:
            self.output_names.pop()

    # -- helpers for converters ----------------------------------------------------------
    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def const_value(self, i: int, what: str) -> np.ndarray | None:
        """The constant value of input ``i`` (None when the slot is empty)."""
        v = self.input(i)
        if v is None:
            return None
        if v.const is None:
            raise self.error(f"input {i} ({what}) must be a constant, but {v.name!r} is computed at run time")
        return v.const

    def const(self, array, name: str = "c", dtype=None) -> Value:
        return self.graph.add_const(f"{self.name or self.op_type}_{name}", array, dtype)

    def emit(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
             outputs: list[str] | None = None, num_outputs: int | None = None) -> list[Value]:
        """Add a registry op. With ``outputs`` None, it produces the ONNX node's outputs."""
        final = outputs is None
        if final:
            outputs = [self.importer.fresh(n) for n in self.output_names]
            num_outputs = len(outputs)
        node_name = self.graph.unique_name(self.name or self.op_type) if final else \
            self.graph.unique_name(f"{self.name or self.op_type}_{op.lower()}")
        return self.importer.add(op, inputs, attrs or {}, node_name, outputs, num_outputs)

    def error(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.importer.path}: node {self.name!r} ({self.op_type}, opset {self.opset}): {msg}")
