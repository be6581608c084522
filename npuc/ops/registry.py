"""The op registry: every op is defined once, here or in a sibling module.

An :class:`OpDef` holds

* ``attrs``: every attribute with its default (``REQUIRED`` when it has none);
* ``infer``: shape/dtype inference, ``infer(ctx) -> [(dtype, shape), ...]``; when an op has
  no explicit inference, its reference kernel is run on zero-filled inputs of the right
  types (constant inputs keep their values), which is exact for the cheap
  data-movement ops it is used for;
* ``ref``: the numpy reference kernel ``ref(*inputs, **attrs) -> array | tuple``, the living
  definition of the op's semantics (ONNX semantics, latest opset);
* ``flags``: properties passes ask about (``elementwise``, ``unary``, ``view``, ``inplace``,
  ``activation``, ``commutative``, ``no_fold``);
* ``const_inputs``: input slots that must be constant once the graph is folded (e.g. the
  ``shape`` of Reshape): shape inference reads their values.

Passes never keep op lists of their own: they call :func:`ops_with_flag`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GraphError, NpucError, ShapeError

REQUIRED = object()

#: flag names an op may carry
FLAGS = frozenset({
    "elementwise",   # output[i] depends on input[i] only (after broadcasting)
    "unary",         # exactly one tensor input
    "activation",    # a unary elementwise nonlinearity that can be fused as an epilogue
    "view",          # output is the input's bytes reinterpreted (reshape family): aliasable
    "inplace",       # output may share the input's buffer when the input dies here
    "commutative",   # binary op whose inputs may be swapped
    "no_fold",       # never constant-fold (e.g. random ops)
    "shape_only",    # output depends only on the input's shape (Shape, Size)
    "epilogue",      # accepts a fused activation in attribute ``activation`` (see epilogue.py)
})

TypeList = list[tuple[np.dtype, tuple[int, ...]]]


class InferContext:
    """What an inference function sees: the input values, attributes and node name."""

    def __init__(self, op: str, node_name: str, inputs: Sequence, attrs: dict[str, Any]):
        self.op = op
        self.node_name = node_name
        self.inputs = list(inputs)
        self.attrs = attrs

    def shape(self, i: int) -> tuple[int, ...]:
        return self.inputs[i].shape

    def dtype(self, i: int) -> np.dtype:
        return self.inputs[i].dtype

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def const(self, i: int) -> np.ndarray | None:
        if not self.has(i):
            return None
        return self.inputs[i].const

    def require_const(self, i: int, what: str) -> np.ndarray:
        c = self.const(i)
        if c is None:
            raise ShapeError(
                f"node {self.node_name!r} ({self.op}): input {i} ({what}) must be a constant "
                f"known at compile time, but {self.inputs[i].name!r} is computed at run time; "
                f"fix the dynamic dimensions with --input-shape or simplify the model")
        return c

    def fail(self, msg: str) -> ShapeError:
        return ShapeError(f"node {self.node_name!r} ({self.op}): {msg}")


@dataclass
class OpDef:
    name: str
    ref: Callable[..., Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    infer: Callable[[InferContext], TypeList] | None = None
    flags: frozenset[str] = frozenset()
    inputs: tuple[int, int] = (1, 1)          # min, max number of input slots
    const_inputs: tuple[int, ...] = ()
    doc: str = ""

    def normalize_attrs(self, attrs: dict[str, Any], node_name: str = "?") -> dict[str, Any]:
        allowed = set(self.attrs) | ({"activation"} if "epilogue" in self.flags else set())
        unknown = set(attrs) - allowed
        if unknown:
            raise GraphError(
                f"node {node_name!r} ({self.name}): unknown attribute(s) {sorted(unknown)}; "
                f"{self.name} takes {sorted(self.attrs) or 'no attributes'}")
        out = {}
        for k, default in self.attrs.items():
            if k in attrs and attrs[k] is not None:
                out[k] = attrs[k]
            elif default is REQUIRED:
                raise GraphError(f"node {node_name!r} ({self.name}): attribute {k!r} is required")
            else:
                out[k] = default
        if attrs.get("activation") is not None and "epilogue" in self.flags:
            from .epilogue import check_activation

            out["activation"] = check_activation(attrs["activation"], node_name)
        return out

    def infer_types(self, inputs: Sequence, attrs: dict[str, Any], node_name: str = "?",
                    num_outputs: int | None = None) -> TypeList:
        lo, hi = self.inputs
        n = len(inputs)
        if n < lo or (hi >= 0 and n > hi):
            raise ShapeError(f"node {node_name!r} ({self.name}): takes {lo}..{hi if hi >= 0 else 'N'} "
                             f"inputs, got {n}")
        for i in range(lo):
            if inputs[i] is None:
                raise ShapeError(f"node {node_name!r} ({self.name}): input {i} is required")
        ctx = InferContext(self.name, node_name, inputs, attrs)
        if self.infer is not None:
            types = self.infer(ctx)
        else:
            types = self._infer_by_running(ctx)
        types = [(np.dtype(dt), tuple(int(d) for d in shp)) for dt, shp in types]
        for dt, shp in types:
            if any(d < 0 for d in shp):
                raise ShapeError(f"node {node_name!r} ({self.name}): inferred negative dimension {shp}")
        if num_outputs is not None:
            if num_outputs > len(types):
                raise ShapeError(f"node {node_name!r} ({self.name}): has {num_outputs} outputs, "
                                 f"the op defines {len(types)}")
            types = types[:num_outputs]
        return types

    def _infer_by_running(self, ctx: InferContext) -> TypeList:
        args = []
        for v in ctx.inputs:
            if v is None:
                args.append(None)
            elif v.const is not None:
                args.append(v.const)
            else:
                args.append(np.zeros(v.shape, v.dtype))
        try:
            with np.errstate(all="ignore"):
                res = self.run(args, ctx.attrs)
        except NpucError:
            raise
        except Exception as e:  # the reference kernel rejected these shapes/attributes
            raise ctx.fail(f"invalid inputs or attributes: {e}") from e
        return [(r.dtype, r.shape) for r in res]

    def run(self, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
        """Run the reference kernel (then its fused activation); always returns a list."""
        act = attrs.get("activation") if "epilogue" in self.flags else None
        if act is not None:
            attrs = {k: v for k, v in attrs.items() if k != "activation"}
        res = self.ref(*inputs, **attrs)
        out = [np.asarray(r) for r in res] if isinstance(res, (tuple, list)) else [np.asarray(res)]
        if act is not None:
            from .epilogue import apply_activation

            out[0] = apply_activation(out[0], act)
        return out


_REGISTRY: dict[str, OpDef] = {}


def register(name: str, *, attrs: dict[str, Any] | None = None, infer=None,
             flags: Sequence[str] = (), inputs: tuple[int, int] | int = 1,
             const_inputs: Sequence[int] = ()):
    """Decorator that registers a reference kernel as op ``name``."""
    bad = set(flags) - FLAGS
    if bad:
        raise ValueError(f"unknown flags {bad}")
    if isinstance(inputs, int):
        inputs = (inputs, inputs)

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"op {name} registered twice")
        _REGISTRY[name] = OpDef(name=name, ref=fn, attrs=dict(attrs or {}), infer=infer,
                                flags=frozenset(flags), inputs=inputs,
                                const_inputs=tuple(const_inputs), doc=(fn.__doc__ or "").strip())
        return fn

    return deco


def _ensure_loaded() -> None:
    from . import _all  # noqa: F401  (imports every op module once)


def get_op(name: str) -> OpDef:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphError(f"op {name!r} is not in the registry") from None


def has_op(name: str) -> bool:
    _ensure_loaded()
    return name in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    _ensure_loaded()
    return dict(_REGISTRY)


def ops_with_flag(flag: str) -> frozenset[str]:
    _ensure_loaded()
    if flag not in FLAGS:
        raise ValueError(f"unknown flag {flag}")
    return frozenset(n for n, d in _REGISTRY.items() if flag in d.flags)


def run_node(node) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constant (used by folding and the interpreter)."""
    d = get_op(node.op)
    return d.run([None if v is None else v.const for v in node.inputs], node.attrs)
