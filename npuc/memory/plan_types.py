"""The planner's data types and errors: :class:`Buffer` (what to place), :class:`PoolPlan`
and :class:`MemoryPlan` (what the planner answers, with :meth:`MemoryPlan.check`), and the
errors it raises. See :mod:`npuc.memory.planner` for the problem they describe.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Hashable, Iterable, Sequence

from npuc.errors import MemoryPlanError


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
