"""The IR verifier: checks the invariants documented in :mod:`npuc.ir.graph`."""
from __future__ import annotations

import numpy as np

from ..errors import GraphError
from .graph import Graph


def verify(graph: Graph, *, check_types: bool = True) -> None:
    """Raise :class:`GraphError` naming the first broken invariant, else return None."""
    from ..ops.registry import get_op

    produced: dict[int, str] = {}
    available: set[int] = set()
    names: dict[str, int] = {}

    def note_name(v):
        other = names.get(v.name)
        if other is not None and other != id(v):
            raise GraphError(f"graph {graph.name!r}: two values are named {v.name!r}")
        names[v.name] = id(v)

    for v in graph.inputs:
        if v.is_const:
            raise GraphError(f"graph input {v.name!r} is a constant")
        available.add(id(v))
        note_name(v)

    for idx, n in enumerate(graph.nodes):
        where = f"node #{idx} {n.name!r} ({n.op})"
        opdef = get_op(n.op)
        for i, v in enumerate(n.inputs):
            if v is None:
                continue
            note_name(v)
            if v.is_const:
                if v.const.shape != v.shape or v.const.dtype != v.dtype:
                    raise GraphError(f"{where}: constant {v.name!r} data {v.const.dtype}{list(v.const.shape)} "
                                     f"does not match its type {v.dtype}{list(v.shape)}")
                continue
            if id(v) not in available:
                raise GraphError(f"{where}: input {i} {v.name!r} is used before it is produced "
                                 f"(not topologically ordered, or produced by a removed node)")
            if n not in v.users:
                raise GraphError(f"{where}: is not listed as a user of its input {v.name!r}")
        for o in n.outputs:
            note_name(o)
            if id(o) in produced:
                raise GraphError(f"{where}: output {o.name!r} is also produced by {produced[id(o)]!r}")
            if o.is_const:
                raise GraphError(f"{where}: output {o.name!r} is marked constant")
            if o.producer is not n:
                raise GraphError(f"{where}: output {o.name!r} does not name this node as its producer")
            produced[id(o)] = n.name
            available.add(id(o))
        try:
            opdef.normalize_attrs(n.attrs, n.name)
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
        if check_types:
            types = opdef.infer_types(n.inputs, n.attrs, n.name, num_outputs=len(n.outputs))
            for o, (dt, shp) in zip(n.outputs, types):
                if o.dtype != dt or o.shape != tuple(shp):
                    raise GraphError(f"{where}: output {o.name!r} is typed {o.dtype}{list(o.shape)} but "
                                     f"inference gives {dt}{list(shp)}")

    for v in graph.outputs:
        if not v.is_const and id(v) not in available:
            raise GraphError(f"graph output {v.name!r} is never produced")
    for v in list(graph.values.values()):
        for u in v.users:
            if u not in graph.nodes:
                raise GraphError(f"value {v.name!r} lists user {u.name!r} that is not in the graph")
    if len({v.name for v in graph.outputs}) != len(graph.outputs):
        raise GraphError(f"graph {graph.name!r} has duplicate output names")
    _ = np  # numpy is used by callers' constants
