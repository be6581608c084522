import numpy as np
import onnx
import pytest

from npuc.errors import ModelImportError
from npuc.ops import get_op

from .ort_check import assert_close, check_op, make_model, run_npuc_reference, run_ort

rng = np.random.default_rng(0)

T, N, I, H = 4, 3, 5, 6
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
N_OUT = {"LSTM": 3, "GRU": 2, "RNN": 2}
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _f32(shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _inputs(op, direction="forward", *, bias=True, init=False, lens=None, peep=False, layout=0):
    nd = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    state = (N, nd, H) if layout else (nd, N, H)
    ins = {
        "X": _f32((N, T, I) if layout else (T, N, I), 1.0),
        "W": _f32((nd, g * H, I)),
        "R": _f32((nd, g * H, H)),
        "B": _f32((nd, 2 * g * H)) if bias else None,
        "sequence_lens": None if lens is None else np.array(lens, np.int32),
        "initial_h": _f32(state) if init else None,
    }
    if op == "LSTM":
        ins["initial_c"] = _f32(state) if init else None
        ins["P"] = _f32((nd, 3 * H)) if peep else None
    # trailing absent inputs are left out
    for k in reversed(list(ins)):
        if ins[k] is None:
            del ins[k]
        else:
            break
    return ins


def _check(op, ins, attrs, opset=14, **kw):
    attrs = {"hidden_size": H, **attrs}
    check_op(op, ins, attrs, n_outputs=N_OUT[op], opset=opset,
             const_inputs=("W", "R", "B", "sequence_lens", "P"), **{**TOL, **kw})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("bias,init", [(True, False), (False, False), (True, True), (False, True)])
def test_directions_bias_init(op, direction, bias, init):
    _check(op, _inputs(op, direction, bias=bias, init=init), {"direction": direction})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_sequence_lens(op, direction):
    _check(op, _inputs(op, direction, init=True, lens=[T, 2, 1]), {"direction": direction})


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_sequence_lens_zero(op):
    # onnxruntime's LSTM and GRU give zero Y_h/Y_c for an empty sequence
    _check(op, _inputs(op, "bidirectional", init=True, lens=[3, 0, T]), {"direction": "bidirectional"})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_full_sequence_lens_dropped(op):
    _check(op, _inputs(op, "reverse", lens=[T] * N), {"direction": "reverse"})


def _feeds(ins):
    return {k: v for k, v in ins.items() if k in ("X", "initial_h", "initial_c") and v is not None}


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_layout1(op, direction):
    """onnxruntime's CPU kernels reject layout=1, so the batch-major model run by npuc is
    compared with onnxruntime on the same data in the seq-major (layout=0) form."""
    ins0 = _inputs(op, direction, init=True, lens=[T, 3, 2])
    ins1 = dict(ins0)
    for k in ("X", "initial_h", "initial_c"):
        if k in ins1:
            ins1[k] = np.ascontiguousarray(ins0[k].transpose(1, 0, 2))
    consts = ("W", "R", "B", "sequence_lens", "P")
    attrs = {"hidden_size": H, "direction": direction}
    m0 = make_model(op, ins0, attrs, n_outputs=N_OUT[op], opset=14, const_inputs=consts)
    m1 = make_model(op, ins1, {**attrs, "layout": 1}, n_outputs=N_OUT[op], opset=14, const_inputs=consts)
    want = run_ort(m0, _feeds(ins0))
    got = run_npuc_reference(m1, _feeds(ins1))
    assert_close(got[0], want[0].transpose(2, 0, 1, 3), **TOL, what=f"{op} Y (layout=1)")
    for i in range(1, N_OUT[op]):
        assert_close(got[i], want[i].transpose(1, 0, 2), **TOL, what=f"{op} output {i} (layout=1)")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("opset", [7, 22])
def test_opsets(op, opset):
    direction = "bidirectional" if opset == 7 else "reverse"
    _check(op, _inputs(op, direction, init=True), {"direction": direction}, opset=opset)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("input_forget", [0, 1])
def test_lstm_peepholes(direction, input_forget):
    _check("LSTM", _inputs("LSTM", direction, init=True, peep=True),
           {"direction": direction, "input_forget": input_forget})


def test_lstm_peepholes_without_bias_and_lens():
    _check("LSTM", _inputs("LSTM", "bidirectional", bias=False, peep=True, lens=[2, T, 1]),
           {"direction": "bidirectional"})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip(op):
    ins = _inputs(op, "bidirectional", init=True)
    ins["X"] = ins["X"] * 4
    _check(op, ins, {"direction": "bidirectional", "clip": 0.7})


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_linear_before_reset(direction, lbr):
    _check("GRU", _inputs("GRU", direction, init=True, lens=[T, 1, 3]),
           {"direction": direction, "linear_before_reset": lbr})


ACTIVATIONS = [
    ("LSTM", "forward", {"activations": ["HardSigmoid", "LeakyRelu", "Tanh"],
                         "activation_alpha": [0.3, 0.2], "activation_beta": [0.4]}),
    ("LSTM", "forward", {"activations": ["Sigmoid", "Affine", "Relu"],
                         "activation_alpha": [0.7], "activation_beta": [0.1]}),
    ("LSTM", "bidirectional", {"activations": ["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Softsign", "Elu"],
                               "activation_alpha": [0.25, 0.8], "activation_beta": [0.45]}),
    ("LSTM", "forward", {"activations": ["HardSigmoid", "LeakyRelu", "Elu"]}),  # default alphas/betas
    ("GRU", "forward", {"activations": ["Sigmoid", "Relu"]}),
    ("GRU", "reverse", {"activations": ["HardSigmoid", "ScaledTanh"],
                        "activation_alpha": [0.3, 0.9], "activation_beta": [0.5, 1.1]}),
    ("GRU", "bidirectional", {"activations": ["Sigmoid", "Softplus", "HardSigmoid", "ThresholdedRelu"],
                              "activation_alpha": [0.2, 0.1], "activation_beta": [0.5]}),
    ("RNN", "forward", {"activations": ["Relu"]}),
    ("RNN", "forward", {"activations": ["LeakyRelu"], "activation_alpha": [0.2]}),
    ("RNN", "bidirectional", {"activations": ["Affine", "Sigmoid"], "activation_alpha": [0.6],
                              "activation_beta": [-0.2]}),
    ("RNN", "reverse", {"activations": ["Softsign"]}),
    ("LSTM", "reverse", {"activations": ["sigmoid", "softsign", "TANH"]}),  # names are case-insensitive
]


@pytest.mark.parametrize("op,direction,attrs", ACTIVATIONS)
def test_activations(op, direction, attrs):
    _check(op, _inputs(op, direction, init=True), {"direction": direction, **attrs})


@pytest.mark.parametrize("op,keep", [("LSTM", (1,)), ("LSTM", (0, 1)), ("LSTM", (2,)), ("LSTM", (1, 2)),
                                     ("LSTM", (0, 2)), ("GRU", (1,)), ("GRU", (0,)), ("RNN", (1,))])
def test_optional_outputs(op, keep):
    """Only some outputs named (e.g. Y absent, only Y_h)."""
    ins = _inputs(op, "bidirectional", init=True)
    model = make_model(op, ins, {"hidden_size": H, "direction": "bidirectional"}, n_outputs=N_OUT[op], opset=14,
                       const_inputs=("W", "R", "B", "P"))
    node = model.graph.node[0]
    names = [o if i in keep else "" for i, o in enumerate(node.output)]
    while names and not names[-1]:
        names.pop()
    del node.output[:]
    node.output.extend(names)
    del model.graph.output[:]
    model.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n])
    feeds = {k: v for k, v in ins.items() if k not in ("W", "R", "B", "P") and v is not None}
    want = run_ort(model, feeds)
    got = run_npuc_reference(model, feeds)
    assert len(got) == len(want) == len(keep)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, **TOL, what=f"{op} output {keep[i]}")


def test_hidden_size_inferred_from_R():
    """hidden_size is optional in ONNX (onnxruntime insists on it): npuc reads it from R."""
    ins = _inputs("GRU", "forward")
    m_ort = make_model("GRU", ins, {"hidden_size": H}, n_outputs=2, opset=14, const_inputs=("W", "R", "B"))
    m_npuc = make_model("GRU", ins, {}, n_outputs=2, opset=14, const_inputs=("W", "R", "B"))
    for g, w in zip(run_npuc_reference(m_npuc, _feeds(ins)), run_ort(m_ort, _feeds(ins))):
        assert_close(g, w, **TOL, what="GRU without hidden_size")


def test_shape_errors():
    ins = _inputs("LSTM", "forward", init=True)
    ins["initial_h"] = _f32((1, N + 1, H))
    model = make_model("LSTM", ins, {"hidden_size": H}, n_outputs=3, opset=14, const_inputs=("W", "R", "B"))
    with pytest.raises(ModelImportError, match="initial_h must have shape"):
        run_npuc_reference(model, {k: v for k, v in ins.items() if k in ("X", "initial_h", "initial_c")})
    ins = _inputs("RNN", "forward")
    model = make_model("RNN", ins, {"activations": ["Swish"]}, n_outputs=2, opset=14, const_inputs=("W", "R", "B"))
    with pytest.raises(ModelImportError, match="activation 'Swish'"):
        run_npuc_reference(model, {"X": ins["X"]})


def test_dynamic_sequence_lens_rejected():
    ins = _inputs("GRU", "forward", lens=[T, 2, 1])
    model = make_model("GRU", ins, {}, n_outputs=2, opset=14, const_inputs=("W", "R", "B"))
    with pytest.raises(ModelImportError, match="sequence_lens"):
        run_npuc_reference(model, {"X": ins["X"], "sequence_lens": ins["sequence_lens"]})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_registry_entry(op):
    d = get_op(op)
    assert d.infer is not None and d.const_inputs == (4,)
