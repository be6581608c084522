"""Per-op checks of TFLite data-movement, shape and reduction ops against the TFLite
interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from .tflite_builder import ModelBuilder, check_model, one_op, rand

pytest.importorskip("ai_edge_litert.interpreter")

I32 = np.int32


# ---------------------------------------------------------------- reshape family
@pytest.mark.parametrize("new_shape", [[2, -1], [3, 8], [-1], [1, 2, 3, 4]])
def test_reshape_shape_input(new_shape):
    data = one_op("RESHAPE", [("x", (2, 3, 4)), np.array(new_shape, I32)], None)
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


def test_reshape_options_only():
    data = one_op("RESHAPE", [("x", (2, 3, 4))], [6, 4], {"NewShape": [6, 4]})
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


@pytest.mark.parametrize("dims", [[], [0], [2, -1]])
def test_squeeze(dims):
    data = one_op("SQUEEZE", [("x", (1, 3, 1, 1))], None, {"SqueezeDims": dims})
    check_model(data, {"x": rand((1, 3, 1, 1), 1)}, exact=True)


@pytest.mark.parametrize("axis", [0, 2, -1, -3])
def test_expand_dims(axis):
    data = one_op("EXPAND_DIMS", [("x", (2, 3)), np.array([axis], I32)], None)
    check_model(data, {"x": rand((2, 3), 1)}, exact=True)


@pytest.mark.parametrize("perm", [(0, 3, 1, 2), (3, 2, 1, 0), (0, 1, 2, 3)])
def test_transpose(perm):
    data = one_op("TRANSPOSE", [("x", (2, 3, 4, 5)), np.array(perm, I32)], None)
    check_model(data, {"x": rand((2, 3, 4, 5), 1)}, exact=True)


# ---------------------------------------------------------------- concat / split / pack
@pytest.mark.parametrize("axis", [3, -1, 1, 0])
def test_concatenation(axis):
    shapes = {3: [(1, 4, 4, 2), (1, 4, 4, 3)], -1: [(1, 4, 4, 2), (1, 4, 4, 1)], 1: [(1, 2, 4, 3), (1, 5, 4, 3)],
              0: [(1, 4, 4, 3), (2, 4, 4, 3)]}[axis]
    ins = [("a", shapes[0]), ("b", shapes[1]), rand(shapes[1], 9, 0, 8)]
    data = one_op("CONCATENATION", ins, None, {"Axis": axis})
    check_model(data, {"a": rand(shapes[0], 1, -2, 8), "b": rand(shapes[1], 2, -2, 8)})


@pytest.mark.parametrize("axis,n", [(1, 3), (-1, 2), (0, 1)])
def test_split(axis, n):
    shape = (2, 6, 4)
    data = one_op("SPLIT", [np.array(axis, I32), ("x", shape)], [[]] * n, {"NumSplits": n})
    check_model(data, {"x": rand(shape, 1)}, exact=True)


@pytest.mark.parametrize("sizes,axis", [([1, 2, 3], 1), ([2, -1], 2), ([4, 0], 2)])
def test_split_v(sizes, axis):
    shape = (2, 6, 4)
    data = one_op("SPLIT_V", [("x", shape), np.array(sizes, I32), np.array(axis, I32)], [[]] * len(sizes),
                  {"NumSplits": len(sizes)})
    check_model(data, {"x": rand(shape, 1)}, exact=True)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_pack(axis):
    data = one_op("PACK", [("a", (2, 3)), ("b", (2, 3)), rand((2, 3), 3)], None, {"ValuesCount": 3, "Axis": axis})
    check_model(data, {"a": rand((2, 3), 1), "b": rand((2, 3), 2)}, exact=True)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_unpack(axis):
    shape = (2, 3, 4)
    n = shape[axis]
    data = one_op("UNPACK", [("x", shape)], [[]] * n, {"Num": n, "Axis": axis})
    check_model(data, {"x": rand(shape, 1)}, exact=True)


# ---------------------------------------------------------------- pads
@pytest.mark.parametrize("op", ["PAD", "PADV2"])
@pytest.mark.parametrize("pads", [[[0, 0], [1, 2], [2, 1], [0, 0]], [[0, 0], [0, 0], [0, 0], [3, 5]],
                                  [[1, 0], [0, 0], [0, 0], [0, 0]]])
def test_pad(op, pads):
    ins = [("x", (1, 3, 4, 2)), np.array(pads, I32)]
    if op == "PADV2":
        ins.append(np.array([-2.5], np.float32))
    data = one_op(op, ins, None)
    check_model(data, {"x": rand((1, 3, 4, 2), 1)}, exact=True)


@pytest.mark.parametrize("mode", [0, 1])  # REFLECT, SYMMETRIC
@pytest.mark.parametrize("pads", [[[0, 0], [1, 2], [2, 1], [0, 0]], [[0, 0], [2, 0], [0, 3], [1, 1]]])
def test_mirror_pad(mode, pads):
    data = one_op("MIRROR_PAD", [("x", (1, 4, 5, 3)), np.array(pads, I32)], None, {"Mode": mode})
    check_model(data, {"x": rand((1, 4, 5, 3), 1)}, exact=True)


# ---------------------------------------------------------------- slicing
@pytest.mark.parametrize("begin,size", [([0, 1, 0], [2, 2, -1]), ([1, 0, 2], [1, -1, 2])])
def test_slice(begin, size):
    data = one_op("SLICE", [("x", (2, 3, 4)), np.array(begin, I32), np.array(size, I32)], None)
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


@pytest.mark.parametrize("begin,end,strides,masks", [
    ([0, 1, 0], [2, 3, 4], [1, 1, 2], {}),
    ([0, 1, 0], [0, 0, 0], [1, 1, 1], {"BeginMask": 0b001, "EndMask": 0b111}),
    ([1, 0, 3], [2, 3, 0], [1, 2, -1], {}),
    ([1, -1, -1], [2, 0, -5], [1, -1, -1], {"EndMask": 0b010}),
    ([0, 2, 0], [2, 3, 4], [1, 1, 1], {"ShrinkAxisMask": 0b010}),
    ([0, 0], [1, 2], [1, 1], {"EllipsisMask": 0b01}),
    ([0, 0, 0], [2, 3, 4], [1, 1, 1], {"NewAxisMask": 0b010}),
    ([-1, 0, 1], [0, 3, 3], [1, 1, 1], {"ShrinkAxisMask": 0b001}),
    ([1, 0, 1], [1, 3, 2], [1, 1, 1], {"Offset": True}),
])
def test_strided_slice(begin, end, strides, masks):
    ins = [("x", (2, 3, 4)), np.array(begin, I32), np.array(end, I32), np.array(strides, I32)]
    data = one_op("STRIDED_SLICE", ins, None, masks)
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


@pytest.mark.parametrize("axes", [[1], [1, 2]])
def test_reverse_v2(axes):
    data = one_op("REVERSE_V2", [("x", (2, 3, 4)), np.array(axes, I32)], None)
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


# ---------------------------------------------------------------- gather / tile / broadcast
@pytest.mark.parametrize("axis,indices", [(0, [[1, 0], [2, 2]]), (1, [3, 0, 1]), (-1, [1])])
def test_gather(axis, indices):
    data = one_op("GATHER", [("x", (3, 4, 2)), np.array(indices, I32)], None, {"Axis": axis})
    check_model(data, {"x": rand((3, 4, 2), 1)}, exact=True)


def test_gather_runtime_indices():
    data = one_op("GATHER", [rand((5, 3), 1), ("i", (4,), I32)], None, {"Axis": 0})
    check_model(data, {"i": np.array([4, 0, 2, 2], I32)}, exact=True)


def test_gather_nd():
    data = one_op("GATHER_ND", [("x", (3, 4, 2)), np.array([[0, 1], [2, 3]], I32)], None)
    check_model(data, {"x": rand((3, 4, 2), 1)}, exact=True)


def test_tile():
    data = one_op("TILE", [("x", (2, 3)), np.array([2, 3], I32)], None)
    check_model(data, {"x": rand((2, 3), 1)}, exact=True)


def test_broadcast_to():
    data = one_op("BROADCAST_TO", [("x", (3, 1)), np.array([2, 3, 4], I32)], None, version=2)
    check_model(data, {"x": rand((3, 1), 1)}, exact=True)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_shape(dtype):
    data = one_op("SHAPE", [("x", (2, 3, 4))], None, {"OutType": 2 if dtype == np.int32 else 4},
                  out_dtypes=[dtype])
    check_model(data, {"x": rand((2, 3, 4), 1)})


def test_shape_feeds_reshape():
    """SHAPE → STRIDED_SLICE → PACK → RESHAPE folds into one Reshape with a constant shape."""
    from npuc.frontends.tflite import import_tflite

    b = ModelBuilder()
    x = b.input("x", (2, 3, 4))
    s, n, shp, y = b.tensor("s", (3,), I32), b.tensor("n", (), I32), b.tensor("shp", (2,), I32), b.tensor("y", (2, 12))
    b.op("SHAPE", [x], [s], {"OutType": 2})
    b.op("STRIDED_SLICE", [s, b.const("b", np.array([0], I32)), b.const("e", np.array([1], I32)),
                           b.const("st", np.array([1], I32))], [n], {"ShrinkAxisMask": 1})
    b.op("PACK", [n, b.const("m1", np.array(-1, I32))], [shp], {"ValuesCount": 2, "Axis": 0})
    b.op("RESHAPE", [x, shp], [y])
    data = b.build([x], [y])
    g = import_tflite("shape.tflite", data=data)
    assert g.op_counts() == {"Reshape": 1}
    check_model(data, {"x": rand((2, 3, 4), 1)}, exact=True)


# ---------------------------------------------------------------- reductions
@pytest.mark.parametrize("op", ["MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"])
@pytest.mark.parametrize("axes,keep", [([1, 2], True), ([-1], False), ([0, 1, 2, 3], False)])
def test_reduce(op, axes, keep):
    data = one_op(op, [("x", (2, 3, 4, 2)), np.array(axes, I32)], None, {"KeepDims": keep})
    check_model(data, {"x": rand((2, 3, 4, 2), 1, 0.5, 1.5)})


@pytest.mark.parametrize("op", ["ARG_MAX", "ARG_MIN"])
@pytest.mark.parametrize("axis,dtype", [(1, np.int32), (-1, np.int64)])
def test_arg_max_min(op, axis, dtype):
    opts = {"OutputType": 2 if dtype == np.int32 else 4}
    data = one_op(op, [("x", (2, 5, 3)), np.array([axis], I32)], None, opts, out_dtypes=[dtype])
    check_model(data, {"x": rand((2, 5, 3), 1)})


def test_fill_and_zeros_like():
    b = ModelBuilder()
    x = b.input("x", (2, 3))
    f, z, s = b.tensor("f", (2, 3)), b.tensor("z", (2, 3)), b.tensor("s", (2, 3))
    b.op("FILL", [b.const("dims", np.array([2, 3], I32)), b.const("v", np.array(1.5, np.float32))], [f])
    b.op("ZEROS_LIKE", [x], [z])
    b.op("ADD", [f, z], [s], {"FusedActivationFunction": 0})
    y = b.tensor("y", (2, 3))
    b.op("ADD", [s, x], [y], {"FusedActivationFunction": 0})
    data = b.build([x], [y])
    check_model(data, {"x": rand((2, 3), 1)})


def test_cumsum():
    data = one_op("CUMSUM", [("x", (2, 5)), np.array(1, I32)], None, {"Exclusive": True, "Reverse": False})
    check_model(data, {"x": rand((2, 5), 1)})


def test_topk_v2():
    x = rand((3, 7), 1)
    data = one_op("TOPK_V2", [("x", (3, 7)), np.array(3, I32)], [[], []], out_dtypes=[np.float32, I32])
    check_model(data, {"x": x})


def test_range_and_rank():
    b = ModelBuilder()
    x = b.input("x", (2, 3, 4))
    r, n, y = b.tensor("r", (4,)), b.tensor("n", (), I32), b.tensor("y", (2, 3, 4))
    b.op("RANGE", [b.const("start", np.array(1.0, np.float32)), b.const("limit", np.array(3.0, np.float32)),
                   b.const("delta", np.array(0.5, np.float32))], [r])
    b.op("RANK", [x], [n])
    b.op("ADD", [x, r], [y], {"FusedActivationFunction": 0})
    data = b.build([x], [y, n])
    check_model(data, {"x": rand((2, 3, 4), 1)})


def test_embedding_lookup():
    data = one_op("EMBEDDING_LOOKUP", [("ids", (4,), I32), rand((6, 3), 1)], None)
    check_model(data, {"ids": np.array([5, 0, 2, 2], I32)}, exact=True)
