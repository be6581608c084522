"""Argument helpers shared by the tensor-manipulation op modules (:mod:`.shape_ops`,
:mod:`.data_movement`, :mod:`.resize`, :mod:`.generators`, :mod:`.cast`).

They raise ``ValueError``; :func:`_wrap` turns that into a ``ShapeError`` naming the node
when called from shape inference.
"""
from __future__ import annotations

import numpy as np

from .registry import InferContext


def _ints(a) -> list[int]:
    """A constant tensor (or list) as Python ints (no int64 overflow in later math)."""
    if a is None:
        return []
    return [int(v) for v in np.asarray(a).reshape(-1).tolist()]


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return a


def _axes(axes, rank: int, what: str = "axes") -> list[int]:
    out = [_axis(a, rank, what) for a in _ints(axes)]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} {_ints(axes)} repeat an axis")
    return out


def _wrap(ctx: InferContext, fn, *args, **kw):
    """Run a ValueError-raising helper inside inference; turn errors into ShapeErrors."""
    try:
        return fn(*args, **kw)
    except ValueError as e:
        raise ctx.fail(str(e)) from None
