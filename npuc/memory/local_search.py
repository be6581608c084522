"""Local search over placement orders: improves the best greedy placement of a pool.

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
"""
from __future__ import annotations

import random
import time

from .strategies import _Pool


def improve_placement(pool: _Pool, off: list[int], size: int, deadline: float | None, iterations: int,
                      rng: random.Random) -> tuple[list[int], int, int]:
    """Improve the placement ``off`` (arena ``size``) of ``pool`` by searching over
    first-fit orders (module docstring).

    Returns (offsets, size, iterations used)."""
    n, sizes, adj, lb = pool.n, pool.sizes, pool.adj, pool.lower_bound
    # Compaction: first fit in increasing offset order is never worse.
    order = sorted(range(n), key=lambda i: (off[i], -sizes[i], i))
    c_off, c_size = pool.place(order)
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
        new_off, new_size = pool.place(new, False, cur_off, start, bound=cur_size)
        if new_off is not None and new_size <= cur_size:
            cur_order, cur_off, cur_size = new, new_off, new_size
            if new_size < best_size:
                best_off, best_size = new_off, new_size
    return best_off, best_size, it
