"""Tensor-manipulation ops, by family (each op is registered in one of these modules):

=========================  ============================================================
module                     ops
=========================  ============================================================
:mod:`.shape_ops`          views and shape queries: Reshape, Flatten, Squeeze, Unsqueeze,
                           Identity, Dropout, Shape, Size
:mod:`.data_movement`      Transpose, Expand, Tile, Concat, Split, Slice, Gather*,
                           Scatter*, Pad, DepthToSpace, SpaceToDepth, ReverseSequence,
                           Compress
:mod:`.resize`             Resize and its coordinate / interpolation helpers
:mod:`.generators`         ConstantOfShape, Range, EyeLike, OneHot, Trilu
:mod:`.cast`               Cast, CastLike, BitCast; :func:`onnx_dtype`
=========================  ============================================================

Semantics follow the latest ONNX opset. Older opsets are normalized into these forms by
``npuc/frontends/onnx/conv_tensor.py``; each module's docstring says where the registry
form differs from some opset's ONNX node.

This module registers nothing itself: it re-exports the public names of those modules
under their historical home, ``npuc.ops.tensor`` (the runtime kernels, the TFLite frontend
and the tests import the index math from here).
"""
from __future__ import annotations

from .cast import bitcast, cast, cast_like, onnx_dtype  # noqa: F401
from .data_movement import (  # noqa: F401
    PAD_MODES,
    compress,
    concat,
    depth_to_space,
    expand,
    gather,
    gather_elements,
    gather_nd,
    normalize_slice,
    pad,
    pad_widths,
    reverse_sequence,
    scatter_elements,
    scatter_nd,
    slice_,
    slice_as_index,
    slice_output_shape,
    space_to_depth,
    split,
    split_sizes,
    tile,
    transpose,
)
from .generators import constant_of_shape, eye_like, one_hot, range_, trilu  # noqa: F401
from .resize import (  # noqa: F401
    ASPECT_POLICIES,
    COORDINATE_MODES,
    NEAREST_MODES,
    RESIZE_MODES,
    cubic_kernel,
    linear_kernel,
    resize,
    resize_nearest_index,
    resize_output_shape,
    resize_source_coords,
    resize_taps,
)
from .shape_ops import dropout, flatten, identity, reshape, shape, size, squeeze, unsqueeze  # noqa: F401
