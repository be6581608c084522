"""The ``cpu`` target: host CPU, float32 and integer kernels, one unbounded arena."""
from .base import PoolSpec, Target, register_target

CPU = register_target(Target("cpu", "host CPU (numpy/BLAS + numba kernels)", (PoolSpec("main"),)))
