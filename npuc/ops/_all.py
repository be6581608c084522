"""Imports every op module once so that each registers its ops."""
from . import attention, elementwise, image, k210, loss, nn, quant, reduce, rnn, signal, tensor  # noqa: F401
