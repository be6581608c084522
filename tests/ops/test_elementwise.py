import numpy as np
import pytest

from .ort_check import check_op

rng = np.random.default_rng(0)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((1, 3, 1), (2, 1, 5))])
def test_binary_float(op, shapes):
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    if op == "Pow":
        a = np.abs(a) + 0.1
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    check_op(op, {"a": a, "b": b}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_int(op):
    a = rng.integers(-50, 50, (3, 4)).astype(np.int32)
    b = rng.integers(1, 7, (4,)).astype(np.int32) * rng.choice([-1, 1], (4,)).astype(np.int32)
    check_op(op, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
def test_compare(op):
    a = rng.integers(-3, 3, (3, 4)).astype(np.float32)
    b = rng.integers(-3, 3, (1, 4)).astype(np.float32)
    check_op(op, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic(op):
    a = rng.integers(0, 2, (3, 4)).astype(bool)
    b = rng.integers(0, 2, (3, 4)).astype(bool)
    check_op(op, {"a": a, "b": b})


def test_not_where():
    c = rng.integers(0, 2, (3, 4)).astype(bool)
    check_op("Not", {"x": c})
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    check_op("Where", {"c": c, "a": a, "b": b})


UNARY = {
    "Abs": {}, "Neg": {}, "Exp": {}, "Floor": {}, "Ceil": {}, "Round": {}, "Sign": {},
    "Relu": {}, "Sigmoid": {}, "Tanh": {}, "Softsign": {}, "Softplus": {}, "Mish": {}, "HardSwish": {},
    "Erf": {}, "Sin": {}, "Cos": {},
    "LeakyRelu": {"alpha": 0.1}, "Elu": {"alpha": 0.7}, "Selu": {}, "Celu": {"alpha": 1.5},
    "HardSigmoid": {"alpha": 0.3, "beta": 0.4}, "ThresholdedRelu": {"alpha": 0.5},
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(op):
    x = (rng.standard_normal((2, 3, 5)) * 3).astype(np.float32)
    x[0, 0, :3] = [0.5, -0.5, 2.5]  # rounding ties
    check_op(op, {"x": x}, UNARY[op], opset=18, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["Sqrt", "Log", "Reciprocal"])
def test_unary_positive(op):
    x = (rng.random((2, 3, 5)) + 0.1).astype(np.float32)
    check_op(op, {"x": x})


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu(approx):
    x = (rng.standard_normal((4, 8)) * 3).astype(np.float32)
    check_op("Gelu", {"x": x}, {"approximate": approx}, opset=20)


def test_prelu_broadcast():
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    s = rng.random((4, 1, 1)).astype(np.float32)
    check_op("PRelu", {"x": x, "s": s}, const_inputs=("s",))


@pytest.mark.parametrize("bounds", [(None, None), (-0.5, None), (None, 0.7), (0.0, 6.0)])
def test_clip(bounds):
    x = (rng.standard_normal((3, 7)) * 4).astype(np.float32)
    inputs = {"x": x,
              "lo": None if bounds[0] is None else np.array(bounds[0], np.float32),
              "hi": None if bounds[1] is None else np.array(bounds[1], np.float32)}
    # trailing absent inputs are dropped; a middle absent one stays as ""
    if inputs["hi"] is None:
        inputs.pop("hi")
        if inputs["lo"] is None:
            inputs.pop("lo")
    check_op("Clip", inputs, const_inputs=("lo", "hi"))


def test_clip_opset6():
    x = (rng.standard_normal((3, 7)) * 4).astype(np.float32)
    check_op("Clip", {"x": x}, {"min": -1.0, "max": 2.0}, opset=7)
