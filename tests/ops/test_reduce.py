import numpy as np
import pytest

from npuc.errors import ModelImportError
from npuc.ops import get_op

from .ort_check import check_op, make_model, run_npuc_reference, run_ort

rng = np.random.default_rng(0)

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def _reduce_input(op, shape=(2, 3, 4)):
    x = rng.standard_normal(shape).astype(np.float32)
    if op == "ReduceLogSum":
        x = np.abs(x) + 0.1
    if op == "ReduceProd":
        x = (np.sign(x) * (0.5 + rng.random(shape))).astype(np.float32)
    return x


def _check_reduce(op, x, axes, keepdims, opset, noop=None, **kw):
    """axes: None (absent) or a list; as an attribute before the axes-input opset."""
    input_opset = 13 if op == "ReduceSum" else 18
    attrs = {"keepdims": keepdims}
    inputs = {"x": x}
    if opset >= input_opset:
        if axes is not None:
            inputs["axes"] = np.array(axes, np.int64)
        if noop is not None:
            attrs["noop_with_empty_axes"] = noop
    elif axes is not None:
        attrs["axes"] = axes
    check_op(op, inputs, attrs, opset=opset, const_inputs=("axes",), **kw)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes", [None, [1], [-1], [0, 2], [-3, -2, -1]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_opset18(op, axes, keepdims):
    _check_reduce(op, _reduce_input(op), axes, keepdims, 18)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), (None, 0), (None, 1)])
def test_reduce_old_opsets(op, opset, axes, keepdims):
    _check_reduce(op, _reduce_input(op), axes, keepdims, opset)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2"])
@pytest.mark.parametrize("noop", [0, 1])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_empty_axes(op, noop, keepdims):
    x = _reduce_input(op)
    # an empty constant axes tensor and no axes at all behave the same
    _check_reduce(op, x, [], keepdims, 18, noop=noop)
    _check_reduce(op, x, None, keepdims, 18, noop=noop)


def test_reducesum_opset13_axes_input():
    x = _reduce_input("ReduceSum", (3, 5, 2))
    _check_reduce("ReduceSum", x, [0, -1], 0, 13)
    _check_reduce("ReduceSum", x, [], 1, 13, noop=1)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd"])
def test_reduce_int(op):
    x = rng.integers(-9, 9, (3, 4, 5)).astype(np.int32)
    if op == "ReduceProd":
        x = rng.integers(-3, 4, (3, 4, 5)).astype(np.int32)
    _check_reduce(op, x, [1], 0, 18)
    _check_reduce(op, x, [0, 2], 1, 18)


def test_reduce_large_values_logsumexp():
    x = (rng.standard_normal((2, 8)) * 50 + 100).astype(np.float32)
    _check_reduce("ReduceLogSumExp", x, [1], 0, 18, rtol=1e-6, atol=1e-4)


def test_reduce_rank1_and_rank4():
    _check_reduce("ReduceMean", _reduce_input("ReduceMean", (7,)), None, 0, 18)
    _check_reduce("ReduceMean", _reduce_input("ReduceMean", (2, 3, 4, 5)), [2, 3], 1, 18)


def test_reduce_infer_errors():
    d = get_op("ReduceSum")

    class V:
        def __init__(self, shape, const=None, dtype=np.float32, name="v"):
            self.shape, self.const, self.dtype, self.name = shape, const, np.dtype(dtype), name

    attrs = d.normalize_attrs({})
    with pytest.raises(Exception, match="out of range"):
        d.infer_types([V((2, 3)), V((1,), np.array([2], np.int64), np.int64)], attrs)
    with pytest.raises(Exception, match="twice"):
        d.infer_types([V((2, 3)), V((2,), np.array([1, -1], np.int64), np.int64)], attrs)
    with pytest.raises(Exception, match="constant"):
        d.infer_types([V((2, 3)), V((1,), None, np.int64, "dyn")], attrs)
    assert d.infer_types([V((2, 3)), V((1,), np.array([-1], np.int64), np.int64)], attrs) == \
        [(np.dtype(np.float32), (2, 1))]


# ---------------------------------------------------------------- ArgMax / ArgMin

@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_arg(op, axis, keepdims, last):
    # few distinct values so that ties are frequent
    x = rng.integers(0, 3, (3, 4, 5)).astype(np.float32)
    check_op(op, {"x": x}, {"axis": axis, "keepdims": keepdims, "select_last_index": last}, opset=13)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("opset", [7, 11])
def test_arg_old_opsets(op, opset):
    x = rng.standard_normal((3, 6)).astype(np.float32)
    axis = 1 if opset < 11 else -1
    check_op(op, {"x": x}, {"axis": axis, "keepdims": 0}, opset=opset)


def test_arg_int():
    x = rng.integers(-5, 5, (4, 6)).astype(np.int32)
    check_op("ArgMax", {"x": x}, {"axis": 1, "select_last_index": 1}, opset=13)


# ---------------------------------------------------------------- TopK

@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("k", [1, 3])
def test_topk_opset11(axis, largest, k):
    x = rng.integers(0, 4, (4, 5, 6)).astype(np.float32)  # many ties: lower index first
    check_op("TopK", {"x": x, "k": np.array([k], np.int64)}, {"axis": axis, "largest": largest},
             n_outputs=2, opset=11, const_inputs=("k",))


@pytest.mark.parametrize("opset", [7, 10])
def test_topk_old_opsets(opset):
    x = rng.standard_normal((3, 7)).astype(np.float32)
    if opset < 10:
        check_op("TopK", {"x": x}, {"k": 3, "axis": 1}, n_outputs=2, opset=opset)
    else:
        check_op("TopK", {"x": x, "k": np.array([4], np.int64)}, {"axis": 1}, n_outputs=2, opset=opset,
                 const_inputs=("k",))


def test_topk_int_and_k0_full():
    x = rng.integers(-100, 100, (3, 9)).astype(np.int64)
    x[0, :] = np.iinfo(np.int64).min  # ~x must not overflow
    check_op("TopK", {"x": x, "k": np.array([9], np.int64)}, {}, n_outputs=2, opset=11, const_inputs=("k",))
    check_op("TopK", {"x": x, "k": np.array([2], np.int64)}, {"largest": 0}, n_outputs=2, opset=11,
             const_inputs=("k",))


def test_topk_unsorted_as_set():
    """sorted=0 leaves the order to the implementation: compare as sets of (index, value)."""
    x = rng.standard_normal((3, 10)).astype(np.float32)
    inputs = {"x": x, "k": np.array([4], np.int64)}
    model = make_model("TopK", inputs, {"sorted": 0}, n_outputs=2, opset=11, const_inputs=("k",))
    want_v, want_i = run_ort(model, {"x": x})
    got_v, got_i = run_npuc_reference(model, {"x": x})
    assert got_v.shape == want_v.shape and got_i.shape == want_i.shape
    np.testing.assert_array_equal(np.sort(got_i, -1), np.sort(want_i, -1))
    np.testing.assert_array_equal(np.take_along_axis(x, got_i, -1), got_v)


def test_topk_k_too_large():
    x = rng.standard_normal((3, 4)).astype(np.float32)
    model = make_model("TopK", {"x": x, "k": np.array([5], np.int64)}, {}, n_outputs=2, opset=11,
                       const_inputs=("k",))
    with pytest.raises(ModelImportError, match="K=5"):
        run_npuc_reference(model, {"x": x})


# ---------------------------------------------------------------- CumSum

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum(axis, exclusive, reverse):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    check_op("CumSum", {"x": x, "axis": np.array(axis, np.int64)}, {"exclusive": exclusive, "reverse": reverse},
             opset=14, const_inputs=("axis",))


def test_cumsum_int_opset11():
    x = rng.integers(-10, 10, (4, 6)).astype(np.int32)
    check_op("CumSum", {"x": x, "axis": np.array(1, np.int32)}, {"exclusive": 1}, opset=11,
             const_inputs=("axis",))


# ---------------------------------------------------------------- Einsum

EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij,ij->", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (5,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (1, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ("ij,jk", [(3, 4), (4, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("i...->...", [(3, 2, 4)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM)
def test_einsum(eq, shapes):
    inputs = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    check_op("Einsum", inputs, {"equation": eq}, opset=12)


def test_einsum_bad_equation():
    inputs = {"a": rng.standard_normal((3, 4)).astype(np.float32),
              "b": rng.standard_normal((5, 6)).astype(np.float32)}
    model = make_model("Einsum", inputs, {"equation": "ij,jk->ik"}, opset=12)
    with pytest.raises(ModelImportError, match="label 'j'"):
        run_npuc_reference(model, inputs)


@pytest.mark.parametrize("op", REDUCE_OPS + ["ArgMax", "ArgMin", "TopK", "CumSum", "Einsum"])
def test_explicit_inference(op):
    assert get_op(op).infer is not None
