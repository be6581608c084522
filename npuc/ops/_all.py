"""Imports every op module once so that each registers its ops."""
from . import (  # noqa: F401
    attention, cast, data_movement, elementwise, generators, image, k210, loss, nn, quant, reduce,
    resize, rnn, shape_ops, signal,
)
