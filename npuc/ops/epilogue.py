"""Fused activations ("epilogues") carried by an op in its ``activation`` attribute.

An op flagged ``epilogue`` (Conv, Gemm, MatMul, Add, ...) may carry
``activation = {"op": NAME, **params}`` where NAME is a registry activation and the
params are that op's attributes, plus for ``Clip`` the bounds ``min``/``max`` and for
``PRelu`` the ``slope`` array (broadcast against the output). The reference semantics are
exactly "run the op, then run the activation on output 0", so a fusion pass only moves
the activation into the producer; runtime kernels apply it in place in their epilogue.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError


def check_activation(spec: Any, node_name: str = "?") -> dict:
    from .registry import get_op

    if isinstance(spec, str):
        spec = {"op": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise GraphError(f"node {node_name!r}: activation must be {{'op': name, ...}}, got {spec!r}")
    name = spec["op"]
    params = {k: v for k, v in spec.items() if k != "op"}
    if name == "Clip":
        bad = set(params) - {"min", "max"}
    elif name == "PRelu":
        bad = set(params) - {"slope"}
        if "slope" not in params:
            raise GraphError(f"node {node_name!r}: fused PRelu needs a slope")
    else:
        d = get_op(name)
        if "activation" not in d.flags:
            raise GraphError(f"node {node_name!r}: {name} cannot be fused as an activation")
        bad = set(params) - set(d.attrs)
        params = d.normalize_attrs(params, node_name)
    if bad:
        raise GraphError(f"node {node_name!r}: fused {name} has unknown parameters {sorted(bad)}")
    return {"op": name, **params}


def apply_activation(x: np.ndarray, spec: dict) -> np.ndarray:
    """Reference semantics of a fused activation."""
    from .registry import get_op

    name = spec["op"]
    params = {k: v for k, v in spec.items() if k != "op"}
    if name == "Clip":
        lo, hi = params.get("min"), params.get("max")
        return get_op("Clip").run([x, None if lo is None else np.asarray(lo, x.dtype),
                                   None if hi is None else np.asarray(hi, x.dtype)], {})[0]
    if name == "PRelu":
        return get_op("PRelu").run([x, np.asarray(params["slope"], x.dtype)], {})[0]
    return get_op(name).run([x], params)[0]
