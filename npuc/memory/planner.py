"""Static memory planner: buffer lifetimes → byte offsets in one arena per memory pool.

The problem
-----------
Every intermediate tensor and every piece of kernel scratch space (im2col, transpose
buffers, ...) of a scheduled model is a :class:`Buffer`: a size ``s`` in bytes, an
alignment ``a`` (a power of two), a lifetime ``[first, last]`` of op indices (both ends
inclusive) and a memory pool.  Scratch space of the op at step ``t`` is simply a buffer
with ``first == last == t`` (see :meth:`Buffer.scratch`); a view (reshape, slice of a
concat output, ...) is not a buffer of its own: the caller extends its source's lifetime
instead.  Planning assigns each buffer an offset ``x`` in its pool's arena such that

* ``x`` is a multiple of ``a``, and the buffer occupies ``[x, x + S)`` with
  ``S = round_up(s, a)`` (sizes are rounded, so consecutive buffers stay aligned);
* two buffers whose lifetimes intersect (``first_i <= last_j`` and ``first_j <= last_i``)
  occupy disjoint byte ranges.  A zero-size buffer gets offset 0 and occupies nothing.

and the arena size ``max(x + S)`` is as small as possible.  This is *dynamic storage
allocation* (rectangles with fixed horizontal position packed as low as possible), which is
NP-hard, so the planner combines cheap greedy heuristics with a bounded local search.

Lower bound
-----------
At any step ``t`` all buffers live at ``t`` must fit side by side, so
``arena >= L = max_t sum_{i live at t} S_i``.  :func:`lower_bound` computes ``L`` with a
sweep over the lifetime end points in ``O(n log n)``; it is attained at some buffer's
``first`` step (the live set only grows at a ``first``), reported as ``peak_step``.  When a
plan reaches ``L`` it is provably optimal.  ``L`` is not always reachable (the optimum of
dynamic storage allocation can exceed the maximum load by a constant factor, though on
networks it rarely does), which is why the plan reports both numbers.

Capacities
----------
If a pool's arena exceeds its capacity, :func:`plan_memory` raises
:class:`MemoryBudgetError` describing the peak step, the largest buffers live there and
how many bytes are missing.  If even the lower bound exceeds the capacity no placement can
fit and the search is skipped.

How: :mod:`.plan_types` (buffers, plans, errors), :mod:`.strategies` (the greedy
placement rules and the per-pool conflict graph), :mod:`.local_search` (the search over
placement orders); this module runs them per pool and checks capacities.

This package is pure: it depends on nothing but the standard library and ``npuc.errors``.
"""
from __future__ import annotations

import random
import time
from numbers import Integral
from typing import Hashable, Iterable, Mapping, Sequence

from npuc.errors import MemoryPlanError, OptionError

from .local_search import improve_placement
from .plan_types import (
    Buffer,
    BudgetViolation,
    InvalidBufferError,
    MemoryBudgetError,
    MemoryPlan,
    PlanOverlapError,
    PoolPlan,
)
from .strategies import _STRATEGY_RULES, DEFAULT_STRATEGIES, Strategy, _parse_strategies, _Pool

__all__ = [
    "Buffer",
    "PoolPlan",
    "MemoryPlan",
    "Strategy",
    "DEFAULT_STRATEGIES",
    "BudgetViolation",
    "InvalidBufferError",
    "PlanOverlapError",
    "MemoryBudgetError",
    "plan_memory",
    "lower_bound",
    "peak",
    "lifetimes",
]


def _plan_pool(pool: _Pool, strategies: list[Strategy], deadline: float | None,
               iterations: int, seed: int, capacity: int | None) -> tuple[list[int], PoolPlan]:
    best: tuple[int, list[int], str] | None = None
    orders: dict[str, list[int]] = {}
    if pool.n:
        for st in strategies:
            kind, best_fit = _STRATEGY_RULES[st]
            if kind not in orders:
                orders[kind] = pool.order(kind)
            bound = best[0] - 1 if best is not None else None  # only strictly better wins
            off, size = pool.place(orders[kind], best_fit, bound=bound)
            if off is not None and (best is None or size < best[0]):
                best = (size, off, st.value)
            if best[0] == pool.lower_bound:
                break
        size, off, strategy = best
        hopeless = capacity is not None and pool.lower_bound > capacity
        if size > pool.lower_bound and iterations > 0 and not hopeless and (
            deadline is None or time.perf_counter() < deadline
        ):
            s_off, s_size, _ = improve_placement(pool, off, size, deadline, iterations, random.Random(seed))
            if s_size < size:
                off, size, strategy = s_off, s_size, strategy + "+local_search"
    else:
        off, size, strategy = [], 0, "trivial"
    plan = PoolPlan(
        name=pool.name,
        size=size,
        lower_bound=pool.lower_bound,
        peak_step=pool.peak_step,
        strategy=strategy,
        live_at_peak=tuple(pool.nz[i].id for i in pool.live_at_peak),
        alignment=pool.alignment,
        num_buffers=len(pool.buffers),
    )
    return off, plan


def _group(buffers: Iterable[Buffer]) -> dict[str, list[Buffer]]:
    pools: dict[str, list[Buffer]] = {}
    seen: set = set()
    for b in buffers:
        if not isinstance(b, Buffer):
            raise InvalidBufferError(f"expected a Buffer, got {type(b).__name__}: {b!r}")
        try:
            dup = b.id in seen
        except TypeError:
            raise InvalidBufferError(f"buffer id {b.id!r} is not hashable", b.id) from None
        if dup:
            raise InvalidBufferError(f"buffer id {b.id!r} appears more than once", b.id)
        seen.add(b.id)
        pools.setdefault(b.pool, []).append(b)
    return pools


# --------------------------------------------------------------------------- API


def lower_bound(buffers: Iterable[Buffer]) -> dict[str, int]:
    """Per pool, the largest sum of aligned sizes of buffers live at one step."""
    return {name: _Pool(name, bufs).lower_bound for name, bufs in _group(buffers).items()}


def peak(buffers: Iterable[Buffer]) -> dict[str, tuple[int, int, tuple]]:
    """Per pool, (lower bound, step where it is attained, ids live there largest first)."""
    out = {}
    for name, bufs in _group(buffers).items():
        p = _Pool(name, bufs)
        out[name] = (p.lower_bound, p.peak_step, tuple(p.nz[i].id for i in p.live_at_peak))
    return out


def plan_memory(
    buffers: Sequence[Buffer],
    *,
    capacities: Mapping[str, int] | None = None,
    strategies: Iterable[str | Strategy] = DEFAULT_STRATEGIES,
    time_limit: float | None = 1.0,
    search_iterations: int = 2000,
    seed: int = 0,
) -> MemoryPlan:
    """Assign every buffer an offset in its pool's arena (see the module docstring).

    ``strategies`` are the greedy heuristics to try (names or :class:`Strategy`); the
    smallest arena wins and is then improved by a local search bounded by
    ``search_iterations`` per pool and ``time_limit`` seconds in total (``0`` disables the
    search, ``None`` removes the time bound so results do not depend on machine speed).
    The search stops as soon as a pool reaches its lower bound.

    ``capacities`` maps pool names to their size in bytes; a pool whose arena exceeds it
    raises :class:`MemoryBudgetError`.
    """
    strats = _parse_strategies(strategies)
    if time_limit is not None and time_limit < 0:
        raise OptionError(f"time_limit must be >= 0 or None, got {time_limit!r}")
    if search_iterations < 0:
        raise OptionError(f"search_iterations must be >= 0, got {search_iterations!r}")
    caps = dict(capacities or {})
    for name, cap in caps.items():
        if isinstance(cap, bool) or not isinstance(cap, Integral) or cap < 0:
            raise OptionError(f"capacity of pool {name!r} must be a non-negative integer, got {cap!r}")
    start = time.perf_counter()
    if time_limit == 0:
        search_iterations = 0
    grouped = _group(buffers)
    pools = {name: _Pool(name, bufs) for name, bufs in sorted(grouped.items())}
    offsets: dict = {}
    plans: dict[str, PoolPlan] = {}
    remaining = len(pools)
    for name, pool in pools.items():
        deadline = None
        if time_limit is not None:
            now = time.perf_counter()
            left = max(0.0, start + time_limit - now)
            deadline = now + left / remaining
        remaining -= 1
        off, plan = _plan_pool(pool, strats, deadline, search_iterations, seed, caps.get(name))
        for b, o in zip(pool.nz, off):
            offsets[b.id] = o
        for b in pool.buffers:
            if b.aligned_size == 0:
                offsets[b.id] = 0
        plans[name] = plan
    # Keep the caller's order in the offsets dict (handy for reports and debugging).
    order = [b.id for bufs in grouped.values() for b in bufs]
    offsets = {k: offsets[k] for k in order}
    plan = MemoryPlan(offsets=offsets, pools=plans)
    violations = []
    for name, pp in plans.items():
        cap = caps.get(name)
        if cap is not None and pp.size > cap:
            pool = pools[name]
            live = tuple(
                (pool.nz[i].id, pool.sizes[i], pool.first[i], pool.last[i]) for i in pool.live_at_peak
            )
            violations.append(BudgetViolation(name, cap, pp.size, pp.lower_bound, pp.size - cap,
                                              pp.peak_step, live))
    if violations:
        raise MemoryBudgetError("\n".join(_budget_message(v) for v in violations), violations, plan)
    return plan


def _budget_message(v: BudgetViolation, shown: int = 5) -> str:
    lines = [
        f"memory pool {v.pool!r} needs {v.size:,} bytes but its capacity is {v.capacity:,} "
        f"bytes ({v.over:,} bytes over); lower bound {v.lower_bound:,} bytes, reached at step "
        f"{v.peak_step} where {len(v.peak_buffers)} buffers are live."
    ]
    if v.peak_buffers:
        items = ", ".join(
            f"{bid!r} {size:,} B (steps {f}..{l})" for bid, size, f, l in v.peak_buffers[:shown]
        )
        more = len(v.peak_buffers) - shown
        lines.append(f"  largest live at step {v.peak_step}: {items}" + (f", and {more} more" if more > 0 else ""))
    if v.lower_bound > v.capacity:
        lines.append(
            f"  no placement can fit: the buffers live at step {v.peak_step} alone need "
            f"{v.lower_bound - v.capacity:,} bytes more than the pool has. Shrink them (lower "
            "input resolution, fewer channels, lower-precision activations), split the op at "
            "that step into tiles, reorder the schedule so fewer tensors are live at once, or "
            "move some buffers to another pool."
        )
    else:
        lines.append(
            "  the lower bound fits, so a better placement may exist: raise time_limit / "
            "search_iterations, or shrink the buffers live at the peak step."
        )
    return "\n".join(lines)


def lifetimes(
    schedule: Sequence[tuple[Iterable[Hashable], Iterable[Hashable]]],
    *,
    inputs: Iterable[Hashable] = (),
    outputs: Iterable[Hashable] = (),
) -> dict[Hashable, tuple[int, int]]:
    """Lifetimes ``(first, last)`` of values from a scheduled op list.

    ``schedule[t] = (values op t reads, values op t writes)``.  A value is live from the
    step that writes it (step 0 for graph ``inputs``) to the last step that reads it (the
    last step for graph ``outputs``); a value written but never read lives only at its own
    step.  Inputs and outputs of one op are live at the same step, so they never share
    memory.  Raises :class:`MemoryPlanError` for a value read before it is written, a value
    written twice, or a value read that is neither written nor a graph input (weights and
    other constants are not planned here: leave them out of the schedule).
    """
    life: dict[Hashable, list[int]] = {k: [0, 0] for k in inputs}
    graph_inputs = set(life)
    for t, (reads, writes) in enumerate(schedule):
        for v in reads:
            if v not in life:
                raise MemoryPlanError(
                    f"step {t} reads {v!r}, which no earlier step writes and is not a graph input"
                )
            if t > life[v][1]:
                life[v][1] = t
        for v in writes:
            if v in life:
                what = "a graph input" if v in graph_inputs else f"written at step {life[v][0]}"
                raise MemoryPlanError(f"step {t} writes {v!r}, which is already {what}")
            life[v] = [t, t]
    end = max(len(schedule) - 1, 0)
    for v in outputs:
        if v not in life:
            raise MemoryPlanError(f"graph output {v!r} is never written")
        life[v][1] = max(life[v][1], end)
    return {k: (f, l) for k, (f, l) in life.items()}
