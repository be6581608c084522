"""Reductions and related ops: Reduce*, ArgMax/ArgMin, TopK, CumSum, Einsum.

Semantics follow the ONNX operator specification, latest opset:

* ``Reduce<X>(data, axes?)`` (opset 18 form; ReduceSum since 13): ``axes`` is an optional
  constant int64 input. Absent or empty ``axes`` reduces over every axis, unless
  ``noop_with_empty_axes=1``, which makes the op an identity. Negative axes count from the
  end; ``keepdims=1`` keeps reduced axes with size 1. Older opsets carry ``axes`` as an
  attribute; the ONNX frontend turns it into the constant input.

  ====================  =========================================
  ReduceSum             Σ x
  ReduceMean            Σ x / n   (integers: truncated toward zero)
  ReduceProd            Π x
  ReduceMax / Min       max / min (empty set: −inf / +inf, or the dtype's limits)
  ReduceL1              Σ |x|
  ReduceL2              √(Σ x²)
  ReduceSumSquare       Σ x²
  ReduceLogSum          log(Σ x)
  ReduceLogSumExp       log(Σ eˣ), computed as m + log(Σ e^(x−m)) with m = max x
  ====================  =========================================

* ``ArgMax/ArgMin(data)``: int64 index of the first extreme value along ``axis``
  (the last one with ``select_last_index=1``).
* ``TopK(X, K)``: the ``K`` largest (``largest=1``) or smallest values along ``axis`` and their
  int64 indices; equal values are ordered by lower index first, as ONNX specifies. With
  ``sorted=0`` ONNX leaves the order unspecified; this kernel returns them sorted anyway.
* ``CumSum(x, axis)``: running sum along the constant scalar ``axis``; ``exclusive=1`` leaves
  out the current element (the first output is 0), ``reverse=1`` sums from the end.
* ``Einsum(*inputs)``: ``np.einsum`` on the ``equation`` (explicit ``->`` or implicit form,
  ``...`` broadcasting; size-1 dimensions broadcast against a label's size).

Float reductions accumulate in float64 and round once to the input dtype; integer ones
accumulate in the input dtype (wrapping like C on overflow).
"""
from __future__ import annotations

import numpy as np

from .infer import broadcast_shapes, normalize_axis
from .registry import REQUIRED, InferContext, register

# ---------------------------------------------------------------- Reduce*

_REDUCE_ATTRS = {"keepdims": 1, "noop_with_empty_axes": 0}
_REDUCE_FLAGS = ()


def _reduce_axes(rank: int, axes, noop: int, ctx: InferContext | None = None) -> tuple[int, ...]:
    """Sorted, normalized reduction axes; ``()`` for empty axes with ``noop_with_empty_axes``."""
    if axes is None or np.asarray(axes).size == 0:
        return () if noop else tuple(range(rank))
    raw = [int(a) for a in np.asarray(axes).reshape(-1)]
    out = []
    for a in raw:
        if ctx is not None:
            n = normalize_axis(a, rank, ctx)
        else:
            n = a + rank if a < 0 else a
            if not 0 <= n < max(rank, 1):
                raise ValueError(f"axis {a} is out of range for rank {rank}")
        if n in out:
            if ctx is not None:
                raise ctx.fail(f"axes {raw} name axis {n} twice")
            raise ValueError(f"axes {raw} name axis {n} twice")
        out.append(n)
    return tuple(sorted(out))


def _reduce_infer(ctx: InferContext):
    shape = ctx.shape(0)
    axes = ctx.require_const(1, "axes") if ctx.has(1) else None
    if axes is not None:
        if axes.ndim > 1:
            raise ctx.fail(f"axes must be a 1-D tensor, got shape {list(axes.shape)}")
        if axes.dtype.kind not in "iu":
            raise ctx.fail(f"axes must be int64, got {axes.dtype}")
    ax = _reduce_axes(len(shape), axes, ctx.attrs["noop_with_empty_axes"], ctx)
    if ctx.attrs["keepdims"]:
        out = tuple(1 if i in ax else d for i, d in enumerate(shape))
    else:
        out = tuple(d for i, d in enumerate(shape) if i not in ax)
    return [(ctx.dtype(0), out)]


def _acc_dtype(x: np.ndarray):
    return np.float64 if x.dtype.kind == "f" else x.dtype


def _empty_extreme(dt: np.dtype, largest: bool):
    """The value of max (largest) / min over an empty set for dtype ``dt``."""
    if dt.kind == "f":
        return -np.inf if largest else np.inf
    if dt.kind == "b":
        return not largest
    info = np.iinfo(dt)
    return info.min if largest else info.max


def _reduction(name: str, fn):
    """Register Reduce<name>; ``fn(x, axes) -> array`` reduces with keepdims=True."""

    def ref(data, axes=None, *, keepdims, noop_with_empty_axes):
        x = np.asarray(data)
        ax = _reduce_axes(x.ndim, axes, noop_with_empty_axes)
        with np.errstate(all="ignore"):
            r = np.asarray(fn(x, ax))
        if not keepdims:
            r = r.reshape(tuple(d for i, d in enumerate(x.shape) if i not in ax))
        return r.astype(x.dtype, copy=False)

    ref.__name__ = name.lower()
    ref.__doc__ = f"{name}(data, axes?): see the module docstring."
    register(name, inputs=(1, 2), attrs=dict(_REDUCE_ATTRS), infer=_reduce_infer,
             const_inputs=(1,), flags=_REDUCE_FLAGS)(ref)


def _sum(x, ax):
    return np.sum(x, axis=ax, keepdims=True, dtype=_acc_dtype(x))


def _mean(x, ax):
    n = int(np.prod([x.shape[a] for a in ax], dtype=np.int64))
    if x.dtype.kind in "iu":
        s = np.sum(x, axis=ax, keepdims=True, dtype=np.int64 if x.dtype.kind == "i" else np.uint64)
        if n == 0:
            return np.zeros(s.shape, x.dtype)
        q = np.abs(s) // n  # truncate toward zero, as C integer division
        return np.where(s < 0, -q, q)
    return np.sum(x, axis=ax, keepdims=True, dtype=np.float64) / n


def _prod(x, ax):
    return np.prod(x, axis=ax, keepdims=True, dtype=_acc_dtype(x))


def _max(x, ax):
    return np.max(x, axis=ax, keepdims=True, initial=_empty_extreme(x.dtype, True))


def _min(x, ax):
    return np.min(x, axis=ax, keepdims=True, initial=_empty_extreme(x.dtype, False))


def _l1(x, ax):
    return np.sum(np.abs(x), axis=ax, keepdims=True, dtype=_acc_dtype(x))


def _sum_square(x, ax):
    xa = x.astype(_acc_dtype(x), copy=False)
    return np.sum(xa * xa, axis=ax, keepdims=True)


def _l2(x, ax):
    return np.sqrt(_sum_square(x.astype(np.float64), ax))


def _log_sum(x, ax):
    return np.log(np.sum(x, axis=ax, keepdims=True, dtype=np.float64))


def _log_sum_exp(x, ax):
    xf = x.astype(np.float64)
    if xf.size == 0:
        return np.log(np.sum(np.exp(xf), axis=ax, keepdims=True))
    m = np.max(xf, axis=ax, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.sum(np.exp(xf - m), axis=ax, keepdims=True)) + m


_reduction("ReduceSum", _sum)
_reduction("ReduceMean", _mean)
_reduction("ReduceProd", _prod)
_reduction("ReduceMax", _max)
_reduction("ReduceMin", _min)
_reduction("ReduceL1", _l1)
_reduction("ReduceL2", _l2)
_reduction("ReduceSumSquare", _sum_square)
_reduction("ReduceLogSum", _log_sum)
_reduction("ReduceLogSumExp", _log_sum_exp)


# ---------------------------------------------------------------- ArgMax / ArgMin

def _arg_infer(ctx: InferContext):
    shape = ctx.shape(0)
    if len(shape) == 0:
        raise ctx.fail("input must have rank >= 1")
    a = normalize_axis(int(ctx.attrs["axis"]), len(shape), ctx)
    if shape[a] == 0:
        raise ctx.fail(f"cannot take {ctx.op} over axis {a} of size 0")
    if ctx.attrs["keepdims"]:
        out = shape[:a] + (1,) + shape[a + 1:]
    else:
        out = shape[:a] + shape[a + 1:]
    return [(np.dtype(np.int64), out)]


def _arg(x, axis, keepdims, select_last_index, fn):
    x = np.asarray(x)
    a = axis + x.ndim if axis < 0 else axis
    if select_last_index:
        idx = x.shape[a] - 1 - fn(np.flip(x, axis=a), axis=a)
    else:
        idx = fn(x, axis=a)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, a) if keepdims else idx


_ARG_ATTRS = {"axis": 0, "keepdims": 1, "select_last_index": 0}


@register("ArgMax", attrs=dict(_ARG_ATTRS), infer=_arg_infer)
def argmax(x, *, axis, keepdims, select_last_index):
    """Index (int64) of the largest value along ``axis``: the first one, or the last with
    ``select_last_index``."""
    return _arg(x, axis, keepdims, select_last_index, np.argmax)


@register("ArgMin", attrs=dict(_ARG_ATTRS), infer=_arg_infer)
def argmin(x, *, axis, keepdims, select_last_index):
    """Index (int64) of the smallest value along ``axis``: the first one, or the last with
    ``select_last_index``."""
    return _arg(x, axis, keepdims, select_last_index, np.argmin)


# ---------------------------------------------------------------- TopK

def _k_value(k) -> int:
    k = np.asarray(k)
    if k.size != 1:
        raise ValueError(f"K must hold one value, got shape {list(k.shape)}")
    return int(k.reshape(-1)[0])


def _topk_infer(ctx: InferContext):
    shape = ctx.shape(0)
    if len(shape) == 0:
        raise ctx.fail("X must have rank >= 1")
    k_arr = ctx.require_const(1, "K")
    if k_arr.size != 1 or k_arr.dtype.kind not in "iu":
        raise ctx.fail(f"K must be a single int64 value, got {k_arr.dtype} of shape {list(k_arr.shape)}")
    k = _k_value(k_arr)
    a = normalize_axis(int(ctx.attrs["axis"]), len(shape), ctx)
    if not 0 <= k <= shape[a]:
        raise ctx.fail(f"K={k} must be between 0 and the size {shape[a]} of axis {a}")
    out = shape[:a] + (k,) + shape[a + 1:]
    return [(ctx.dtype(0), out), (np.dtype(np.int64), out)]


def _descending_key(x: np.ndarray) -> np.ndarray:
    """A key whose ascending order is the descending order of ``x`` (no overflow)."""
    if x.dtype.kind in "iu":
        return np.invert(x)  # ~x = -x-1 for signed, max-x for unsigned: order-reversing
    if x.dtype.kind == "b":
        return np.logical_not(x)
    return np.negative(x)


@register("TopK", inputs=2, attrs={"axis": -1, "largest": 1, "sorted": 1}, infer=_topk_infer,
          const_inputs=(1,))
def topk(x, k, *, axis, largest, sorted):
    """The K largest/smallest values along ``axis`` and their int64 indices; ties keep the
    lower index first."""
    x = np.asarray(x)
    k = _k_value(k)
    a = axis + x.ndim if axis < 0 else axis
    xm = np.moveaxis(x, a, -1)
    key = _descending_key(xm) if largest else xm
    idx = np.argsort(key, axis=-1, kind="stable")[..., :k]
    vals = np.take_along_axis(xm, idx, axis=-1)
    return np.moveaxis(vals, -1, a), np.moveaxis(idx.astype(np.int64), -1, a)


# ---------------------------------------------------------------- CumSum

def _cumsum_infer(ctx: InferContext):
    rank = len(ctx.shape(0))
    ax = ctx.require_const(1, "axis")
    if ax.size != 1 or ax.dtype.kind not in "iu":
        raise ctx.fail(f"axis must be a scalar int32/int64, got {ax.dtype} of shape {list(ax.shape)}")
    if rank == 0:
        raise ctx.fail("x must have rank >= 1")
    normalize_axis(int(ax.reshape(-1)[0]), rank, ctx)
    return [(ctx.dtype(0), ctx.shape(0))]


def _cumulative(x, axis, exclusive, reverse, fn, identity):
    x = np.asarray(x)
    a = int(np.asarray(axis).reshape(-1)[0])
    a = a + x.ndim if a < 0 else a
    y = np.flip(x, a) if reverse else x
    c = fn(y, axis=a, dtype=x.dtype)
    if exclusive:
        first = np.full_like(np.take(c, [0], axis=a), identity)
        c = np.concatenate([first, np.take(c, np.arange(c.shape[a] - 1), axis=a)], axis=a)
    return np.flip(c, a) if reverse else c


@register("CumSum", inputs=2, attrs={"exclusive": 0, "reverse": 0}, infer=_cumsum_infer,
          const_inputs=(1,))
def cumsum(x, axis, *, exclusive, reverse):
    """Running sum of ``x`` along the scalar ``axis``."""
    return _cumulative(x, axis, exclusive, reverse, np.cumsum, 0)


@register("CumProd", inputs=2, attrs={"exclusive": 0, "reverse": 0}, infer=_cumsum_infer,
          const_inputs=(1,))
def cumprod(x, axis, *, exclusive, reverse):
    """Running product of ``x`` along the scalar ``axis`` (``exclusive``: the first output is 1)."""
    return _cumulative(x, axis, exclusive, reverse, np.cumprod, 1)


# ---------------------------------------------------------------- Det

def _det_infer(ctx: InferContext):
    s = ctx.shape(0)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ctx.fail(f"input must be (..., M, M), got {list(s)}")
    if ctx.dtype(0).kind != "f":
        raise ctx.fail(f"input must be a float tensor, got {ctx.dtype(0)}")
    return [(ctx.dtype(0), s[:-2])]


@register("Det", infer=_det_infer)
def det(x):
    """Determinant of each square matrix in the last two axes (LU in float64)."""
    x = np.asarray(x)
    return np.asarray(np.linalg.det(x.astype(np.float64))).astype(x.dtype)


# ---------------------------------------------------------------- Einsum

def _parse_einsum(equation: str, n_inputs: int):
    """Split an einsum equation into input terms and the output term (None: implicit)."""
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, rhs = eq.split("->", 1)
    else:
        lhs, rhs = eq, None
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise ValueError(f"equation {equation!r} has {len(terms)} input term(s), the node has {n_inputs} input(s)")
    for t in terms + ([rhs] if rhs is not None else []):
        if t.count("...") > 1 or any(not c.isalpha() for c in t.replace("...", "")):
            raise ValueError(f"equation {equation!r}: term {t!r} is not letters with at most one '...'")
    return terms, rhs


def _einsum_infer(ctx: InferContext):
    eq = ctx.attrs["equation"]
    try:
        terms, rhs = _parse_einsum(eq, len(ctx.inputs))
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    ell_shapes = []
    for i, t in enumerate(terms):
        shape = ctx.shape(i)
        letters = t.replace("...", "")
        if "..." in t:
            n_ell = len(shape) - len(letters)
            if n_ell < 0:
                raise ctx.fail(f"term {t!r} needs rank >= {len(letters)}, input {i} has shape {list(shape)}")
            pre, post = t.split("...")
            dims = list(zip(pre, shape[:len(pre)])) + list(zip(post, shape[len(shape) - len(post):]))
            ell_shapes.append(shape[len(pre):len(shape) - len(post)])
        else:
            if len(shape) != len(letters):
                raise ctx.fail(f"term {t!r} has {len(letters)} labels, input {i} has rank {len(shape)}")
            dims = list(zip(t, shape))
        for c, d in dims:
            counts[c] = counts.get(c, 0) + 1
            old = sizes.get(c)
            if old is None or old == 1:
                sizes[c] = d
            elif d != old and d != 1:
                raise ctx.fail(f"label {c!r} has size {old} in one place and {d} in another")
    ell = broadcast_shapes(*ell_shapes, node=ctx.node_name) if ell_shapes else ()
    if rhs is None:
        out = tuple(ell) + tuple(sizes[c] for c in sorted(c for c, n in counts.items() if n == 1))
    else:
        letters = rhs.replace("...", "")
        if len(set(letters)) != len(letters):
            raise ctx.fail(f"output term {rhs!r} repeats a label")
        missing = [c for c in letters if c not in sizes]
        if missing:
            raise ctx.fail(f"output labels {missing} do not appear in any input term")
        if "..." in rhs:
            pre, post = rhs.split("...")
            out = tuple(sizes[c] for c in pre) + tuple(ell) + tuple(sizes[c] for c in post)
        else:
            if ell:
                raise ctx.fail(f"output term {rhs!r} drops the '...' dimensions {list(ell)}")
            out = tuple(sizes[c] for c in letters)
    return [(ctx.dtype(0), out)]


@register("Einsum", inputs=(1, -1), attrs={"equation": REQUIRED}, infer=_einsum_infer)
def einsum(*inputs, equation):
    """Einstein summation (``np.einsum`` semantics for the ``equation``)."""
    terms, rhs = _parse_einsum(equation, len(inputs))
    eq = ",".join(terms) + ("" if rhs is None else "->" + rhs)
    arrs = [np.asarray(x) for x in inputs]
    acc = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrs]
    r = np.einsum(eq, *acc, optimize=len(acc) > 2)
    return np.asarray(r).astype(arrs[0].dtype, copy=False)
