"""A straightforward interpreter over the IR using the registry's reference kernels.

It is the semantic reference inside npuc (calibration, per-layer error reports, tests);
the fast path is :class:`npuc.runtime.session.Session` on a compiled model.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import InputError, KernelError, NpucError
from ..ir import Graph
from ..ops.registry import get_op


def interpret(graph: Graph, feeds: dict[str, np.ndarray], *, keep: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``feeds``; returns the outputs (and every value named in ``keep``)."""
    env: dict[int, np.ndarray] = {}
    for v in graph.inputs:
        if v.name not in feeds:
            raise InputError(f"missing input {v.name!r}; the graph takes {[i.name for i in graph.inputs]}")
        a = np.asarray(feeds[v.name])
        if a.shape != v.shape:
            raise InputError(f"input {v.name!r} has shape {list(a.shape)}, expected {list(v.shape)}")
        env[id(v)] = a.astype(v.dtype, copy=False)
    keep = set(keep)
    kept: dict[str, np.ndarray] = {}

    def get(v):
        if v is None:
            return None
        if v.is_const:
            return v.const
        return env[id(v)]

    for n in graph.nodes:
        opdef = get_op(n.op)
        try:
            with np.errstate(all="ignore"):
                res = opdef.run([get(v) for v in n.inputs], n.attrs)
        except NpucError:
            raise
        except Exception as e:
            raise KernelError(f"node {n.name!r} ({n.op}) failed in the reference kernel: {e}") from e
        for o, r in zip(n.outputs, res):
            r = np.asarray(r)
            if r.shape != o.shape:
                raise KernelError(f"node {n.name!r} ({n.op}): reference produced {list(r.shape)}, "
                                  f"inference said {list(o.shape)}")
            env[id(o)] = r.astype(o.dtype, copy=False)
            if o.name in keep:
                kept[o.name] = env[id(o)]
    out = {v.name: np.array(get(v)) for v in graph.outputs}
    out.update(kept)
    return out
