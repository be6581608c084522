"""Imports every kernel module once so that each registers its kernels."""
from . import basic, conv, gemm, pool, tensor  # noqa: F401
