"""Greedy placement: the :class:`Strategy` heuristics and :class:`_Pool`, one pool's buffers
in array form with their interval-conflict graph, step profile (hence the lower bound) and
the first-fit / best-fit placement of a buffer order.

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
"""
from __future__ import annotations

import bisect
from enum import Enum
from typing import Iterable, Sequence

from npuc.errors import OptionError

from .plan_types import Buffer


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
