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

Placement rules
---------------
All strategies place buffers one at a time.  To place buffer ``i`` the planner collects the
already placed buffers whose lifetimes intersect ``i`` (a precomputed interval-conflict
graph, built by sorting on ``first`` and bisecting, ``O(n log n + E)``), sorts them by
offset and scans the gaps between them (tracking the running maximum end, so nested ranges
are handled):

* **first fit** takes the lowest aligned offset that fits (TensorFlow Lite Micro's
  ``GreedyMemoryPlanner``);
* **best fit** takes the smallest gap that fits, lowest offset on ties, and otherwise puts
  the buffer on top of its conflicting neighbours (Pisarchyk & Lee 2020).

The only degree of freedom left is the *order* in which buffers are placed:

=================================  ================================================  =====
strategy                           order                                             fit
=================================  ================================================  =====
``greedy_by_size``                 size descending (TFLite Micro)                    first
``greedy_by_size_best_fit``        size descending                                   best
``greedy_by_breadth``              steps by total live size descending, then within  best
                                   a step its unplaced buffers by size descending
                                   ("Efficient Memory Management for Deep Neural
                                   Net Inference", Pisarchyk & Lee 2020)
``greedy_by_breadth_first_fit``    same order                                        first
``greedy_by_area``                 size × lifetime length descending                 first
``greedy_by_lifetime``             lifetime length descending, then size descending  first
=================================  ================================================  =====

All requested strategies run (stopping early if one reaches ``L``) and the smallest arena
wins; ``greedy_by_size`` is always among the defaults, so the result is never worse than
TFLite Micro's planner.

Local search
------------
*First fit over orders is complete*: take any valid placement ``y`` and place the buffers
with first fit in increasing order of ``y``.  By induction every buffer lands at
``x_k <= y_k``: its already placed neighbours ``j`` had ``y_j + S_j <= y_k`` (they lie
below it in ``y``) and ``x_j <= y_j``, so the aligned offset ``y_k`` is free and first fit
picks it or something lower.  Hence (1) re-running first fit in offset order never makes a
placement worse ("compaction"), and (2) some order yields an optimal placement, so searching
over orders loses nothing.

The search starts from the compacted best greedy placement.  Each iteration takes a
buffer that touches the top of the arena and moves it to a random earlier position of the
order or swaps it with a conflicting neighbour (or, one time in four, moves any buffer to
any position), then re-places only the suffix of the order that changed; placements
exceeding the current arena are abandoned as soon as they do.  Moves that do not increase
the arena are accepted (sideways moves let it walk across plateaus).  It stops at the
lower bound (proved optimal), after ``search_iterations`` iterations, or at ``time_limit``
seconds, whichever comes first.  The random generator is seeded, so plans are reproducible
unless the time limit cuts the search short; pass ``time_limit=None`` to bound the search
by iterations only (results then do not depend on machine speed).

Cost: building the conflict graph is ``O(n log n + E)``; one greedy placement is
``O(sum_i d_i log d_i)`` for conflict degrees ``d_i`` (a few per buffer on a network, so
about a millisecond per hundred buffers in CPython).

Capacities
----------
If a pool's arena exceeds its capacity, :func:`plan_memory` raises
:class:`MemoryBudgetError` describing the peak step, the largest buffers live there and
how many bytes are missing.  If even the lower bound exceeds the capacity no placement can
fit and the search is skipped.

This module is pure: it depends on nothing but the standard library and ``npuc.errors``.
"""
from __future__ import annotations

import bisect
import random
import time
from dataclasses import dataclass
from enum import Enum
from numbers import Integral
from typing import Any, Hashable, Iterable, Mapping, Sequence

from npuc.errors import MemoryPlanError, OptionError

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


# --------------------------------------------------------------------------- errors


class InvalidBufferError(MemoryPlanError, ValueError):
    """A buffer given to the planner is malformed (negative size, ``first > last``,
    alignment not a power of two, duplicate id, ...). ``buffer_id`` names it."""

    def __init__(self, message: str, buffer_id: Any = None):
        super().__init__(message)
        self.buffer_id = buffer_id


class PlanOverlapError(MemoryPlanError):
    """:meth:`MemoryPlan.check` found the plan invalid: two buffers live at the same step
    overlap in bytes, or an offset is misaligned, missing or outside its pool.
    ``buffers`` holds the ids at fault (two for an overlap, one otherwise)."""

    def __init__(self, message: str, buffers: tuple = ()):
        super().__init__(message)
        self.buffers = tuple(buffers)


@dataclass(frozen=True)
class BudgetViolation:
    """One pool whose arena does not fit its capacity."""

    pool: str
    capacity: int
    size: int  #: arena the planner achieved
    lower_bound: int  #: no placement can use less than this
    over: int  #: size - capacity
    peak_step: int  #: the step where the lower bound is attained
    peak_buffers: tuple  #: ((id, aligned size, first, last), ...) live at peak_step, largest first


class MemoryBudgetError(MemoryPlanError):
    """A pool's arena exceeds its capacity.

    ``violations`` lists every pool that does not fit; the attributes ``pool``,
    ``capacity``, ``size``, ``lower_bound``, ``over``, ``peak_step`` and ``peak_buffers``
    repeat those of the first one, and ``plan`` is the (over-budget) plan itself, so it can
    be drawn with :func:`npuc.memory.report.format_plan`.
    """

    def __init__(self, message: str, violations: Sequence[BudgetViolation], plan: "MemoryPlan"):
        super().__init__(message)
        self.violations = tuple(violations)
        self.plan = plan
        v = self.violations[0]
        self.pool = v.pool
        self.capacity = v.capacity
        self.size = v.size
        self.lower_bound = v.lower_bound
        self.over = v.over
        self.peak_step = v.peak_step
        self.peak_buffers = v.peak_buffers


# --------------------------------------------------------------------------- data


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) & -a


@dataclass(frozen=True)
class Buffer:
    """A block of memory to place: ``size`` bytes, live from step ``first`` to ``last``
    inclusive, at an offset that is a multiple of ``alignment`` in arena ``pool``."""

    id: Hashable  #: the caller's key
    size: int  #: bytes; 0 is allowed (gets an offset, occupies nothing)
    first: int  #: first step (op index) the buffer is live, inclusive
    last: int  #: last step live, inclusive
    pool: str = "main"
    alignment: int = 64  #: the offset must be a multiple of this power of two

    def __post_init__(self) -> None:
        for name in ("size", "first", "last", "alignment"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise InvalidBufferError(
                    f"buffer {self.id!r}: {name} must be an integer, got {v!r}", self.id
                )
            object.__setattr__(self, name, int(v))
        if self.size < 0:
            raise InvalidBufferError(f"buffer {self.id!r}: negative size {self.size}", self.id)
        if self.first > self.last:
            raise InvalidBufferError(
                f"buffer {self.id!r}: lifetime first={self.first} > last={self.last}; "
                "first and last are the inclusive op indices where the buffer is live",
                self.id,
            )
        a = self.alignment
        if a <= 0 or a & (a - 1):
            raise InvalidBufferError(
                f"buffer {self.id!r}: alignment {a} is not a power of two", self.id
            )
        if not isinstance(self.pool, str) or not self.pool:
            raise InvalidBufferError(
                f"buffer {self.id!r}: pool must be a non-empty string, got {self.pool!r}", self.id
            )

    @classmethod
    def scratch(cls, id: Hashable, size: int, step: int, *, pool: str = "main",
                alignment: int = 64) -> "Buffer":
        """Kernel scratch space (e.g. im2col) used only while the op at ``step`` runs."""
        return cls(id, size, step, step, pool, alignment)

    @property
    def aligned_size(self) -> int:
        """Bytes the buffer occupies: ``size`` rounded up to ``alignment``."""
        return _round_up(self.size, self.alignment)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class PoolPlan:
    """The plan of one memory pool (one arena)."""

    name: str
    size: int  #: arena bytes needed = max(offset + aligned size)
    lower_bound: int  #: max over steps of the aligned bytes live at that step
    peak_step: int  #: a step where the lower bound is attained
    strategy: str  #: which heuristic won ("+local_search" if the search improved it)
    live_at_peak: tuple = ()  #: ids live at ``peak_step``, largest first
    alignment: int = 1  #: the arena base must be aligned to this (largest buffer alignment)
    num_buffers: int = 0

    @property
    def ratio(self) -> float:
        """Achieved / lower bound (1.0 means provably optimal)."""
        return self.size / self.lower_bound if self.lower_bound else 1.0

    @property
    def at_lower_bound(self) -> bool:
        """True when the arena equals the lower bound, i.e. the plan is optimal."""
        return self.size == self.lower_bound


@dataclass(frozen=True)
class MemoryPlan:
    """Offsets of every buffer within its pool, and one :class:`PoolPlan` per pool."""

    offsets: dict  #: buffer id -> byte offset within its pool
    pools: dict  #: pool name -> PoolPlan

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.pools.values())

    def check(self, buffers: Iterable[Buffer]) -> None:
        """Verify the plan against ``buffers``; raise :class:`PlanOverlapError` naming the
        buffer(s) at fault if an offset is missing, misaligned or outside its pool, or if
        two buffers live at the same step overlap in bytes."""
        by_pool: dict[str, list[tuple[int, int, int, int, Any]]] = {}
        seen: set = set()
        for b in buffers:
            if b.id in seen:
                raise PlanOverlapError(f"buffer id {b.id!r} appears twice", (b.id,))
            seen.add(b.id)
            if b.id not in self.offsets:
                raise PlanOverlapError(f"buffer {b.id!r} has no offset in this plan", (b.id,))
            if b.pool not in self.pools:
                raise PlanOverlapError(
                    f"buffer {b.id!r} is in pool {b.pool!r}, which this plan does not have",
                    (b.id,),
                )
            off = self.offsets[b.id]
            if not isinstance(off, Integral) or off < 0 or off % b.alignment:
                raise PlanOverlapError(
                    f"buffer {b.id!r}: offset {off!r} is not a non-negative multiple of its "
                    f"alignment {b.alignment}",
                    (b.id,),
                )
            size = b.aligned_size
            if off + size > self.pools[b.pool].size:
                raise PlanOverlapError(
                    f"buffer {b.id!r}: [{off}, {off + size}) lies outside pool {b.pool!r} "
                    f"of {self.pools[b.pool].size} bytes",
                    (b.id,),
                )
            if size:
                by_pool.setdefault(b.pool, []).append((b.first, b.last, off, off + size, b.id))
        for pool, items in by_pool.items():
            items.sort(key=lambda t: t[0])
            firsts = [t[0] for t in items]
            for p, (f, l, o, e, bid) in enumerate(items):
                for q in range(p + 1, bisect.bisect_right(firsts, l, p + 1)):
                    _, l2, o2, e2, bid2 = items[q]
                    if o < e2 and o2 < e:
                        raise PlanOverlapError(
                            f"pool {pool!r}: buffers {bid!r} [{o}, {e}) steps {f}..{l} and "
                            f"{bid2!r} [{o2}, {e2}) steps {items[q][0]}..{l2} are live at the "
                            "same time and overlap in memory",
                            (bid, bid2),
                        )


class Strategy(str, Enum):
    """Greedy placement strategies (see the module docstring)."""

    GREEDY_BY_SIZE = "greedy_by_size"
    GREEDY_BY_SIZE_BEST_FIT = "greedy_by_size_best_fit"
    GREEDY_BY_BREADTH = "greedy_by_breadth"
    GREEDY_BY_BREADTH_FIRST_FIT = "greedy_by_breadth_first_fit"
    GREEDY_BY_AREA = "greedy_by_area"
    GREEDY_BY_LIFETIME = "greedy_by_lifetime"


DEFAULT_STRATEGIES: tuple[Strategy, ...] = tuple(Strategy)

# strategy -> (order name, best_fit)
_STRATEGY_RULES = {
    Strategy.GREEDY_BY_SIZE: ("size", False),
    Strategy.GREEDY_BY_SIZE_BEST_FIT: ("size", True),
    Strategy.GREEDY_BY_BREADTH: ("breadth", True),
    Strategy.GREEDY_BY_BREADTH_FIRST_FIT: ("breadth", False),
    Strategy.GREEDY_BY_AREA: ("area", False),
    Strategy.GREEDY_BY_LIFETIME: ("lifetime", False),
}


def _parse_strategies(strategies: Iterable[str | Strategy]) -> list[Strategy]:
    if isinstance(strategies, (str, Strategy)):
        strategies = [strategies]
    out: list[Strategy] = []
    for s in strategies:
        try:
            st = Strategy(s)
        except ValueError:
            valid = ", ".join(x.value for x in Strategy)
            raise OptionError(f"unknown memory planning strategy {s!r}; valid: {valid}") from None
        if st not in out:
            out.append(st)
    if not out:
        raise OptionError("plan_memory needs at least one strategy")
    return out


# --------------------------------------------------------------------------- one pool


class _Pool:
    """The buffers of one pool in array form, with the conflict graph and step profile.

    Only buffers of non-zero size take part in placement; indices below refer to them.
    """

    def __init__(self, name: str, buffers: list[Buffer]):
        self.name = name
        self.buffers = buffers
        nz = [b for b in buffers if b.aligned_size > 0]
        self.nz = nz
        n = self.n = len(nz)
        self.sizes = [b.aligned_size for b in nz]
        self.aligns = [b.alignment for b in nz]
        self.first = [b.first for b in nz]
        self.last = [b.last for b in nz]
        self.alignment = max((b.alignment for b in buffers), default=1)
        # Compressed steps: the live set only grows at a buffer's first step, so the
        # distinct `first` values are the only steps that matter.
        steps = self.steps = sorted(set(self.first))
        index = {s: k for k, s in enumerate(steps)}
        self.lo = [index[f] for f in self.first]
        self.hi = [bisect.bisect_right(steps, l) - 1 for l in self.last]
        m = len(steps)
        diff = [0] * (m + 1)
        for i in range(n):
            diff[self.lo[i]] += self.sizes[i]
            diff[self.hi[i] + 1] -= self.sizes[i]
        breadth = []
        acc = 0
        for k in range(m):
            acc += diff[k]
            breadth.append(acc)
        self.breadth = breadth
        if m:
            best = max(range(m), key=lambda k: (breadth[k], -k))
            self.lower_bound = breadth[best]
            self.peak_step = steps[best]
            live = [i for i in range(n) if self.lo[i] <= best <= self.hi[i]]
            live.sort(key=lambda i: (-self.sizes[i], self.first[i], i))
            self.live_at_peak = live
        else:
            self.lower_bound = 0
            self.peak_step = min((b.first for b in buffers), default=0)
            self.live_at_peak = []
        # Interval conflict graph: sort by first step; the buffers starting within i's
        # lifetime (and after i in that order) are a contiguous run found by bisection.
        order = sorted(range(n), key=lambda i: self.lo[i])
        los = [self.lo[i] for i in order]
        adj: list[list[int]] = [[] for _ in range(n)]
        for p, i in enumerate(order):
            hi = self.hi[i]
            for q in range(p + 1, bisect.bisect_right(los, hi, p + 1)):
                j = order[q]
                adj[i].append(j)
                adj[j].append(i)
        self.adj = adj

    # -- orders -----------------------------------------------------------------

    def order(self, kind: str) -> list[int]:
        n, sizes, first, last = self.n, self.sizes, self.first, self.last
        if kind == "size":
            return sorted(range(n), key=lambda i: (-sizes[i], i))
        if kind == "area":
            return sorted(range(n), key=lambda i: (-sizes[i] * (last[i] - first[i] + 1), -sizes[i], i))
        if kind == "lifetime":
            return sorted(range(n), key=lambda i: (first[i] - last[i], -sizes[i], i))
        if kind == "breadth":
            # Steps by breadth descending; a buffer is handled at the first step of that
            # sequence that it is live at, i.e. at the minimum rank over its lifetime.
            m = len(self.steps)
            by_breadth = sorted(range(m), key=lambda k: (-self.breadth[k], k))
            rank = [0] * m
            for r, k in enumerate(by_breadth):
                rank[k] = r
            lo, hi = self.lo, self.hi
            key = [min(rank[lo[i]:hi[i] + 1]) for i in range(n)]
            return sorted(range(n), key=lambda i: (key[i], -sizes[i], i))
        raise AssertionError(kind)

    # -- placement --------------------------------------------------------------

    def place(self, order: Sequence[int], best_fit: bool = False,
              base: list[int] | None = None, start: int = 0,
              bound: int | None = None) -> tuple[list[int] | None, int]:
        """Place ``order[start:]`` on top of ``base`` (offsets of ``order[:start]``).

        Returns (offsets, arena size), or (None, size so far) as soon as the arena
        exceeds ``bound``.
        """
        sizes, aligns, adj = self.sizes, self.aligns, self.adj
        n = self.n
        if base is None or start == 0:
            off = [-1] * n
            top = 0
            start = 0
        else:
            off = list(base)
            for k in range(start, n):
                off[order[k]] = -1
            top = 0
            for k in range(start):
                i = order[k]
                e = off[i] + sizes[i]
                if e > top:
                    top = e
        for k in range(start, n):
            i = order[k]
            s = sizes[i]
            mask = -aligns[i]
            am1 = aligns[i] - 1
            nb = [(off[j], off[j] + sizes[j]) for j in adj[i] if off[j] >= 0]
            nb.sort()
            cur = 0  # highest end among the neighbours scanned so far
            pos = -1
            if best_fit:
                best_gap = -1
                for o, e in nb:
                    c = (cur + am1) & mask
                    if c + s <= o:
                        gap = o - cur
                        if best_gap < 0 or gap < best_gap:
                            best_gap = gap
                            pos = c
                    if e > cur:
                        cur = e
            else:
                for o, e in nb:
                    c = (cur + am1) & mask
                    if c + s <= o:
                        pos = c
                        break
                    if e > cur:
                        cur = e
            if pos < 0:
                pos = (cur + am1) & mask
            off[i] = pos
            end = pos + s
            if end > top:
                top = end
                if bound is not None and top > bound:
                    return None, top
        return off, top

    # -- local search -----------------------------------------------------------

    def search(self, off: list[int], size: int, deadline: float | None, iterations: int,
               rng: random.Random) -> tuple[list[int], int, int]:
        """Improve a placement by searching over first-fit orders (module docstring).

        Returns (offsets, size, iterations used)."""
        n, sizes, adj, lb = self.n, self.sizes, self.adj, self.lower_bound
        # Compaction: first fit in increasing offset order is never worse.
        order = sorted(range(n), key=lambda i: (off[i], -sizes[i], i))
        c_off, c_size = self.place(order)
        if c_size > size:  # cannot happen (see the docstring); keep the input to be safe
            return off, size, 0
        off, size = c_off, c_size
        best_off, best_size = off, size
        cur_order, cur_off, cur_size = order, off, size
        it = 0
        while cur_size > lb and it < iterations:
            if deadline is not None and (it & 7) == 0 and time.perf_counter() >= deadline:
                break
            it += 1
            r = rng.random()
            if r < 0.25:  # (n >= 2 here: a single buffer is always at the bound)
                # any buffer to any position: escapes plateaus where the top is not the culprit
                t = rng.randrange(n)
                p = cur_order.index(t)
                q = rng.randrange(n - 1)
                q += q >= p
            else:
                top = [i for i in range(n) if cur_off[i] + sizes[i] == cur_size]
                t = top[rng.randrange(len(top))]
                p = cur_order.index(t)
                if p > 0 and (r < 0.75 or not adj[t]):
                    q = rng.randrange(p)  # a buffer at the top, placed earlier
                elif adj[t]:  # swap it with a conflicting neighbour
                    j = adj[t][rng.randrange(len(adj[t]))]
                    pj = cur_order.index(j)
                    new = list(cur_order)
                    new[p], new[pj] = new[pj], new[p]
                    q = -1
                    start = min(p, pj)
                else:  # an isolated buffer already first: nothing to move
                    continue
            if q >= 0:
                new = list(cur_order)
                del new[p]
                new.insert(q, t)
                start = min(p, q)
            new_off, new_size = self.place(new, False, cur_off, start, bound=cur_size)
            if new_off is not None and new_size <= cur_size:
                cur_order, cur_off, cur_size = new, new_off, new_size
                if new_size < best_size:
                    best_off, best_size = new_off, new_size
        return best_off, best_size, it


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
            s_off, s_size, _ = pool.search(off, size, deadline, iterations, random.Random(seed))
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
