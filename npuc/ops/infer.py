"""Shared shape/dtype inference helpers used by op definitions."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .registry import InferContext


def broadcast_shapes(*shapes, node: str = "?") -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"node {node!r}: shapes {', '.join(map(str, shapes))} do not broadcast") from None


def same_as_input(ctx: InferContext):
    """Output 0 has the dtype and shape of input 0."""
    return [(ctx.dtype(0), ctx.shape(0))]


def broadcast_same_dtype(ctx: InferContext):
    """Numpy-style broadcast of every present input; dtype of input 0."""
    shapes = [v.shape for v in ctx.inputs if v is not None]
    return [(ctx.dtype(0), broadcast_shapes(*shapes, node=ctx.node_name))]


def broadcast_bool(ctx: InferContext):
    shapes = [v.shape for v in ctx.inputs if v is not None]
    return [(np.dtype(bool), broadcast_shapes(*shapes, node=ctx.node_name))]


def normalize_axis(axis: int, rank: int, ctx: InferContext | None = None) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        where = f"node {ctx.node_name!r} ({ctx.op}): " if ctx else ""
        raise ShapeError(f"{where}axis {axis} is out of range for rank {rank}")
    return a
