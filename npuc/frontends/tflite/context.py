"""Converter registration and the context a TFLite converter sees.

A converter turns one TFLite operator into registry ops and returns the values of the
operator's outputs, in order. Converters register per builtin op name with
:func:`converter` (one function may serve several names) and per custom-op code with
:func:`custom_converter`.

Layout: every value that stands for a TFLite tensor keeps the tensor's own layout (NHWC
for images). Ops whose registry form is NCHW (Conv, pools, resizes, depth/space moves)
are wrapped between :meth:`ConvertContext.to_nchw` and :meth:`ConvertContext.to_nhwc`;
a transpose that undoes the one just before it cancels on construction, and npuc's
``push_transposes_down`` / ``merge_transposes`` passes cancel the rest across elementwise
ops, Concat and Pad, so only transposes the model really needs remain.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ...errors import ModelImportError
from ...ir import Graph, Value
from ...ir.dtypes import NUMPY_TO_ONNX
from .reader import OperatorInfo, TensorInfo

log = logging.getLogger(__name__)

ConverterFn = Callable[["ConvertContext"], "list[Value] | Value"]
_CONVERTERS: dict[str, ConverterFn] = {}
_CUSTOM: dict[str, ConverterFn] = {}

#: builtin ops npuc deliberately does not import yet, with the reason shown to the user
NOT_SUPPORTED_REASONS = {
    "IF": "control flow (IF runs one of two subgraphs)",
    "WHILE": "control flow (WHILE loops over a subgraph)",
    "CALL": "control flow (CALL runs another subgraph)",
    "CALL_ONCE": "resource variables (CALL_ONCE runs an initialisation subgraph)",
    "VAR_HANDLE": "resource variables",
    "READ_VARIABLE": "resource variables",
    "ASSIGN_VARIABLE": "resource variables",
    "HASHTABLE": "hash tables (resources)",
    "HASHTABLE_FIND": "hash tables (resources)",
    "HASHTABLE_IMPORT": "hash tables (resources)",
    "HASHTABLE_SIZE": "hash tables (resources)",
    "DELEGATE": "a delegate placeholder (the model was saved after delegation)",
}

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)

# tflite.ActivationFunctionType
_ACT_NONE, _ACT_RELU, _ACT_RELU_N1_TO_1, _ACT_RELU6, _ACT_TANH, _ACT_SIGN_BIT = range(6)


def converter(*opcodes: str):
    """Register ``fn`` as the converter of the builtin ops ``opcodes``."""

    def deco(fn: ConverterFn) -> ConverterFn:
        for op in opcodes:
            if op in _CONVERTERS:
                raise ValueError(f"TFLite converter for {op} registered twice")
            _CONVERTERS[op] = fn
        return fn

    return deco


def custom_converter(code: str):
    """Register ``fn`` as the converter of custom ops with ``custom_code == code``."""

    def deco(fn: ConverterFn) -> ConverterFn:
        _CUSTOM[code] = fn
        return fn

    return deco


def find_converter(op: OperatorInfo) -> ConverterFn | None:
    if op.opcode == "CUSTOM":
        return _CUSTOM.get(op.custom_code or "")
    return _CONVERTERS.get(op.opcode)


def supported_builtin_ops() -> list[str]:
    return sorted(_CONVERTERS)


def supported_custom_ops() -> list[str]:
    return sorted(_CUSTOM)


def compose(p1, p2) -> list[int]:
    """Transpose(p2)(Transpose(p1)(x)) = Transpose(compose(p1, p2))(x)."""
    return [p1[i] for i in p2]


class ConvertContext:
    """What a converter sees: the operator, its input values and tensors, helpers."""

    def __init__(self, importer, op: OperatorInfo, inputs: list[Value | None]):
        self.importer = importer
        self.graph: Graph = importer.graph
        self.op = op
        self.inputs = inputs
        sg = importer.subgraph
        self.in_tensors: list[TensorInfo | None] = [None if i < 0 else sg.tensors[i] for i in op.inputs]
        self.out_tensors: list[TensorInfo | None] = [None if i < 0 else sg.tensors[i] for i in op.outputs]
        first = next((t for t in self.out_tensors if t is not None), None)
        self.name = first.name if first is not None else f"{op.opcode.lower()}_{op.index}"

    # -- reading --------------------------------------------------------------------
    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def tensor(self, i: int) -> TensorInfo | None:
        return self.in_tensors[i] if i < len(self.in_tensors) else None

    def require(self, i: int, what: str) -> Value:
        v = self.input(i)
        if v is None:
            raise self.error(f"input {i} ({what}) is missing")
        return v

    def const_value(self, i: int, what: str) -> np.ndarray:
        """The value of input ``i``, which must be known at import time."""
        v = self.require(i, what)
        if v.const is None:
            raise self.error(f"input {i} ({what}) must be a constant, but {v.name!r} is computed at run time")
        return v.const

    def opt(self, name: str, default: Any = None) -> Any:
        return self.op.opt(name, default)

    @property
    def out_dtype(self) -> np.dtype | None:
        t = self.out_tensors[0] if self.out_tensors else None
        return None if t is None else t.dtype

    # -- building -------------------------------------------------------------------
    def const(self, array, name: str = "c", dtype=None) -> Value:
        return self.graph.add_const(f"{self.name}_{name}", array, dtype)

    def ints(self, values, name: str = "ints") -> Value:
        return self.const(np.asarray(values, np.int64).reshape(-1), name)

    def scalar(self, value, like: Value, name: str = "k") -> Value:
        return self.const(np.asarray(value, like.dtype), name)

    def emit(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
             num_outputs: int | None = None, tag: str | None = None) -> list[Value]:
        """Add a registry op (folded when its inputs are constant); returns its outputs."""
        tag = tag or op.lower()
        return self.importer.add(op, inputs, attrs or {}, f"{self.name}/{tag}", num_outputs)

    def emit1(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
              tag: str | None = None) -> Value:
        return self.emit(op, inputs, attrs, num_outputs=1, tag=tag)[0]

    def transpose(self, v: Value, perm) -> Value:
        perm = [int(p) for p in perm]
        if perm == list(range(len(perm))):
            return v
        prod = v.producer
        if prod is not None and prod.op == "Transpose" and prod.attrs.get("perm") is not None \
                and compose(prod.attrs["perm"], perm) == list(range(len(perm))):
            return prod.inputs[0]  # undoes the transpose just before it
        return self.emit1("Transpose", [v], {"perm": perm})

    def to_nchw(self, v: Value) -> Value:
        self._check_rank4(v)
        return self.transpose(v, NHWC_TO_NCHW)

    def to_nhwc(self, v: Value) -> Value:
        self._check_rank4(v)
        return self.transpose(v, NCHW_TO_NHWC)

    def _check_rank4(self, v: Value) -> None:
        if v.rank != 4:
            raise self.error(f"expects a 4-D NHWC tensor, {v.name!r} has shape {list(v.shape)}")

    def reshape(self, v: Value, shape) -> Value:
        shape = [int(d) for d in shape]
        if tuple(shape) == v.shape:
            return v
        return self.emit1("Reshape", [v, self.ints(shape, "shape")])

    def cast(self, v: Value, dtype) -> Value:
        dtype = np.dtype(dtype)
        if v.dtype == dtype:
            return v
        return self.emit1("Cast", [v], {"to": NUMPY_TO_ONNX[dtype]})

    def activation(self, v: Value, code: int | None = None) -> Value:
        """Apply the operator's ``fused_activation_function`` (option ``code``) to ``v``."""
        if code is None:
            code = self.opt("FusedActivationFunction", 0) or 0
        if code == _ACT_NONE:
            return v
        if code == _ACT_RELU:
            return self.emit1("Relu", [v])
        if code == _ACT_RELU6:
            return self.emit1("Clip", [v, self.scalar(0, v, "min"), self.scalar(6, v, "max")], tag="relu6")
        if code == _ACT_RELU_N1_TO_1:
            return self.emit1("Clip", [v, self.scalar(-1, v, "min"), self.scalar(1, v, "max")], tag="relu_n1_to_1")
        if code == _ACT_TANH:
            # TFLite's kernels clamp to an activation range and have none for TANH: the
            # interpreter ignores it, and so does npuc, to compute what the model computes
            log.warning("%s: operator #%d %s has fused activation TANH, which the TFLite interpreter "
                        "ignores; npuc ignores it too", self.importer.path, self.op.index, self.op.label)
            return v
        if code == _ACT_SIGN_BIT:
            raise self.error("fused activation SIGN_BIT is not supported")
        raise self.error(f"unknown fused activation function {code}")

    def error(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.importer.path}: operator #{self.op.index} {self.op.label} "
                                f"(output {self.name!r}): {msg}")


__all__ = ["ConvertContext", "converter", "custom_converter", "find_converter", "NOT_SUPPORTED_REASONS",
           "NHWC_TO_NCHW", "NCHW_TO_NHWC", "supported_builtin_ops", "supported_custom_ops"]
