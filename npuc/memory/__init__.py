"""Static memory planning: buffer lifetimes → offsets in one arena per memory pool.

A pure package: it imports nothing from the rest of npuc but :mod:`npuc.errors`.
See :mod:`npuc.memory.planner` for the math and the strategies.
"""
from .planner import (
    DEFAULT_STRATEGIES,
    Buffer,
    BudgetViolation,
    InvalidBufferError,
    MemoryBudgetError,
    MemoryPlan,
    PlanOverlapError,
    PoolPlan,
    Strategy,
    lifetimes,
    lower_bound,
    peak,
    plan_memory,
)
from .report import draw_pool, format_plan

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
    "format_plan",
    "draw_pool",
]
