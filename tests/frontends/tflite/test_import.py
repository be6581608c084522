"""TFLite import: signature, input shapes, constants as views, quantization parameters,
several subgraphs, and the errors (unsupported ops listed once, control flow, quantized
models, truncated and corrupt files)."""
from __future__ import annotations

import numpy as np
import pytest

from npuc.errors import ModelImportError, UnsupportedOpError
from npuc.ir.verify import verify

from .tflite_builder import ModelBuilder, rand

import_tflite = pytest.importorskip("npuc.frontends.tflite").import_tflite
BLAZEFACE = __import__("pathlib").Path(__file__).parents[2] / "data" / "blazeface_short" / "model.tflite"


def _relu_model(shape=(1, 4, 4, 3), sig=None) -> bytes:
    b = ModelBuilder()
    x = b.input("images", shape, shape_signature=sig)
    y = b.tensor("scores", shape)
    b.op("RELU", [x], [y])
    return b.build([x], [y])


def test_signature_keeps_names_and_nhwc_layout():
    g = import_tflite("m.tflite", data=_relu_model())
    assert [(v.name, v.shape) for v in g.inputs] == [("images", (1, 4, 4, 3))]
    assert [(v.name, v.shape) for v in g.outputs] == [("scores", (1, 4, 4, 3))]
    assert g.metadata["source_format"] == "tflite" and g.metadata["layout"] == "NHWC"
    verify(g)


def test_dynamic_batch_uses_default_shape_or_input_shapes():
    data = _relu_model((1, 4, 4, 3), sig=(-1, 4, 4, 3))
    assert import_tflite("m.tflite", data=data).inputs[0].shape == (1, 4, 4, 3)
    g = import_tflite("m.tflite", data=data, input_shapes={"images": [5, 4, 4, 3]})
    assert g.inputs[0].shape == (5, 4, 4, 3) and g.outputs[0].shape == (5, 4, 4, 3)
    with pytest.raises(ModelImportError, match=r"dimension 1 is 8, but the model fixes it to 4"):
        import_tflite("m.tflite", data=data, input_shapes={"images": [5, 8, 4, 3]})
    with pytest.raises(ModelImportError, match=r"rank 2"):
        import_tflite("m.tflite", data=data, input_shapes={"images": [5, 4]})
    with pytest.raises(ModelImportError, match=r"unknown input\(s\) \['x'\].*\['images'\]"):
        import_tflite("m.tflite", data=data, input_shapes={"x": [1, 4, 4, 3]})


def test_output_that_is_an_input_gets_an_identity():
    b = ModelBuilder()
    x = b.input("x", (2, 3))
    y = b.tensor("y", (2, 3))
    b.op("RELU", [x], [y])
    g = import_tflite("m.tflite", data=b.build([x], [y, x]))
    assert [v.name for v in g.outputs][0] == "y"
    assert g.outputs[1] is not g.inputs[0] and g.outputs[1].producer.op == "Identity"
    verify(g)


def test_unchanged_weights_are_views_of_the_file():
    """A constant used as it is stored (here FC weights) is a view of the model bytes."""
    b = ModelBuilder()
    x = b.input("x", (2, 64))
    w = b.const("w", rand((32, 64), 1))
    y = b.tensor("y", (2, 32))
    b.op("FULLY_CONNECTED", [x, w, -1], [y], {"KeepNumDims": False})
    data = b.build([x], [y])
    g = import_tflite("m.tflite", data=data)
    wv = next(n for n in g.nodes if n.op == "Gemm").inputs[1]
    assert not wv.const.flags.owndata and not wv.const.flags.writeable
    assert np.shares_memory(wv.const, np.frombuffer(data, np.uint8))


def test_quantization_parameters_are_kept_on_integer_values():
    b = ModelBuilder()
    x = b.input("x", (1, 8))
    q = b.tensor("q", (1, 8), np.int8, quant=(np.float32(0.25), np.int64(-4)))
    b.op("QUANTIZE", [x], [q])
    g = import_tflite("m.tflite", data=b.build([x], [q]))
    qp = g.outputs[0].quant
    assert qp is not None and qp.scale == pytest.approx(0.25) and qp.zero_point == -4 and qp.axis is None


def test_several_subgraphs_import_the_main_one():
    b = ModelBuilder()
    x = b.input("x", (2, 3))
    y = b.tensor("y", (2, 3))
    b.op("TANH", [x], [y])
    b.finish_subgraph([x], [y])
    a = b.input("a", (4,))
    c = b.tensor("c", (4,))
    b.op("RELU", [a], [c])
    g = import_tflite("m.tflite", data=b.build([a], [c]))
    assert [v.name for v in g.inputs] == ["x"] and g.op_counts() == {"Tanh": 1}


def test_unsupported_ops_are_listed_once():
    b = ModelBuilder()
    x = b.input("x", (1, 4))
    t = [b.tensor(f"t{i}", (1, 4)) for i in range(5)]
    b.op("CUSTOM", [x], [t[0]], custom_code="FancyOp")
    b.op("RELU", [t[0]], [t[1]])
    b.op("CUSTOM", [t[1]], [t[2]], custom_code="FancyOp")
    b.op("WHILE", [t[2]], [t[3]])
    b.op("VAR_HANDLE", [], [t[4]])
    with pytest.raises(UnsupportedOpError) as ei:
        import_tflite("m.tflite", data=b.build([x], [t[3]]))
    msg = str(ei.value)
    assert "3 unsupported TFLite op type(s)" in msg
    assert "CUSTOM(FancyOp): 2 operator(s): #0 (outputs ['t0']), #2 (outputs ['t2'])" in msg
    assert "WHILE [control flow" in msg and "#3 (outputs ['t3'])" in msg
    assert "VAR_HANDLE [resource variables" in msg and "m.tflite" in msg
    assert {t for t, _, _ in ei.value.unsupported} == {"CUSTOM(FancyOp)", "WHILE", "VAR_HANDLE"}


def test_quantized_model_is_refused_clearly():
    b = ModelBuilder()
    qp = (np.float32(0.1), np.int64(0))
    x = b.input("x", (1, 4), np.int8, quant=qp)
    y = b.tensor("y", (1, 4), np.int8, quant=qp)
    b.op("SQUARE", [x], [y])  # int8 ops npuc has no integer form for (see test_quantized.py for the rest)
    with pytest.raises(ModelImportError, match=r"quantized TFLite model: no integer conversion for SQUARE.*#0"):
        import_tflite("q.tflite", data=b.build([x], [y]))


def test_bad_option_values_name_the_operator():
    b = ModelBuilder()
    x = b.input("x", (1, 4, 4, 3))
    y = b.tensor("y", (1, 4, 4, 3))
    b.op("CONV_2D", [x, b.const("w", rand((3, 1, 1, 2), 1)), b.const("b", rand(3, 2))], [y],
         {"Padding": 0, "StrideH": 1, "StrideW": 1})
    with pytest.raises(ModelImportError, match=r"m.tflite: operator #0 CONV_2D \(output 'y'\): input has 3 "
                                               r"channels, not a multiple of the filter's 2"):
        import_tflite("m.tflite", data=b.build([x], [y]))


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.02])
def test_truncated_file_names_the_file(tmp_path, cut):
    data = BLAZEFACE.read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ModelImportError, match="cut.tflite"):
        import_tflite(p)


@pytest.mark.parametrize("content", [b"", b"TFL3", b"\x00" * 64, bytes(range(256)) * 8])
def test_garbage_file_names_the_file(tmp_path, content):
    p = tmp_path / "junk.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelImportError, match="junk.tflite"):
        import_tflite(p)


def test_corrupted_bytes_never_crash(tmp_path):
    """Flipping bytes anywhere gives a clean import, a ModelImportError or another NpucError."""
    from npuc.errors import NpucError

    data = bytearray(_relu_model())
    rng = np.random.default_rng(0)
    for i in range(60):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), size=4):
            bad[pos] = int(rng.integers(0, 256))
        try:
            import_tflite(f"bad{i}.tflite", data=bytes(bad))
        except NpucError:
            pass


def test_missing_file_via_load_model(tmp_path):
    from npuc.frontends import load_model

    with pytest.raises(ModelImportError, match="no such file"):
        load_model(tmp_path / "none.tflite")
    g = load_model(BLAZEFACE)
    assert [v.name for v in g.outputs] == ["regressors", "classificators"]
