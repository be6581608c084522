"""Imports every converter module so that each registers its converters."""
from . import conv_attention, conv_basic, conv_control, conv_nn, conv_reduce, conv_rnn, conv_tensor  # noqa: F401
from . import conv_qoperator  # noqa: F401  (pre-quantized models: QLinear*, *Integer, DQ)
