"""Runtime kernels (fast float and integer implementations of registry ops)."""
from .base import Binding, Kernel, Prepared, kernel_by_name, register_kernel, select_kernel

__all__ = ["Binding", "Kernel", "Prepared", "kernel_by_name", "register_kernel", "select_kernel"]
