"""A readable text form of a graph (used by --dump-dir and in test failure messages)."""
from __future__ import annotations

import numpy as np

from .graph import Graph, Value


def _type(v: Value) -> str:
    return f"{v.dtype}[{','.join(map(str, v.shape))}]"


def _attr(x) -> str:
    if isinstance(x, np.ndarray):
        return f"array{list(x.shape)}"
    if isinstance(x, float):
        return f"{x:g}"
    return repr(x)


def format_graph(graph: Graph) -> str:
    lines = [f"graph {graph.name} ("]
    for v in graph.inputs:
        lines.append(f"  in  %{v.name}: {_type(v)}")
    lines.append(") {")
    for n in graph.nodes:
        ins = []
        for v in n.inputs:
            if v is None:
                ins.append("_")
            elif v.is_const:
                ins.append(f"${v.name}:{_type(v)}")
            else:
                ins.append(f"%{v.name}")
        outs = ", ".join(f"%{o.name}: {_type(o)}" for o in n.outputs)
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in n.attrs.items())
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {outs} = {n.op}({', '.join(ins)}){attrs}  # {n.name}")
    lines.append("} -> (" + ", ".join(f"%{v.name}: {_type(v)}" for v in graph.outputs) + ")")
    return "\n".join(lines) + "\n"
