"""The op registry (see :mod:`npuc.ops.registry`)."""
from .registry import REQUIRED, OpDef, all_ops, get_op, has_op, ops_with_flag, register, run_node

__all__ = ["REQUIRED", "OpDef", "all_ops", "get_op", "has_op", "ops_with_flag", "register", "run_node"]
