"""Imports every kernel module once so that each registers its kernels."""
from . import basic  # noqa: F401
