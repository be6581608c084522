"""Compilation targets."""
from .base import PoolSpec, Target, get_target, target_names

__all__ = ["PoolSpec", "Target", "get_target", "target_names"]
