"""Imports every kernel module once so that each registers its kernels."""
from . import basic, conv, gemm, pool, qconv, qelementwise, qpool, tensor  # noqa: F401
