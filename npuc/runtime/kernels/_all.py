"""Imports every kernel module once so that each registers its kernels."""
from . import basic, conv, gemm, pool, qconv, qelementwise, qpool, tensor  # noqa: F401
from ...targets.k210 import kernels as k210_kernels  # noqa: E402,F401  (KPU ops of the k210 target)
