"""Importing this module registers every TFLite converter."""
from . import conv_elementwise, conv_nn, conv_tensor  # noqa: F401
