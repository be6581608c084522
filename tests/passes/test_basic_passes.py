"""Basic passes: folding, DCE, identity elimination, and the pass manager."""
from __future__ import annotations

import numpy as np
import pytest

from npuc.ir import Graph, verify
from npuc.passes.cleanup import dead_code_elimination, eliminate_identity
from npuc.passes.fold import fold_constants
from npuc.passes.manager import Fixpoint, Pipeline
from npuc.runtime.interpreter import interpret


def _shape_chain_graph():
    """x → Shape → Gather(0) → Unsqueeze → Concat(-1) → Reshape(x): a PyTorch-style flatten."""
    g = Graph("g")
    x = g.add_input("x", "float32", (2, 3, 4))
    s = g.make_node("Shape", [x]).outputs[0]
    idx = g.add_const("idx", np.array(0, np.int64))
    d0 = g.make_node("Gather", [s, idx], attrs={"axis": 0}).outputs[0]
    ax = g.add_const("ax", np.array([0], np.int64))
    d0u = g.make_node("Unsqueeze", [d0, ax]).outputs[0]
    m1 = g.add_const("m1", np.array([-1], np.int64))
    shp = g.make_node("Concat", [d0u, m1], attrs={"axis": 0}).outputs[0]
    # Reshape needs its shape at inference time: give the folded value to build the node,
    # then rewire to the computed chain so the fold pass has work to do
    tmp = g.add_const("tmp_shape", np.array([2, -1], np.int64))
    r = g.make_node("Reshape", [x, tmp])
    g.set_input(r, 1, shp)
    y = g.make_node("Relu", [r.outputs[0]])
    g.outputs.append(y.outputs[0])
    return g


def test_fold_shape_chain():
    g = _shape_chain_graph()
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    want = interpret(g, {"x": x})
    changed = Pipeline("t", [Fixpoint("f", (fold_constants, dead_code_elimination))]).run(g, verify_each=True)
    assert [n.op for n in g.nodes] == ["Reshape", "Relu"]
    got = interpret(g, {"x": x})
    np.testing.assert_array_equal(got[g.outputs[0].name], want[g.outputs[0].name])
    assert changed is g


def test_dce_removes_unused_branch():
    g = Graph("g")
    x = g.add_input("x", "float32", (4,))
    a = g.make_node("Relu", [x]).outputs[0]
    g.make_node("Exp", [a])  # dead
    b = g.make_node("Neg", [a]).outputs[0]
    g.outputs.append(b)
    assert dead_code_elimination(g)
    assert [n.op for n in g.nodes] == ["Relu", "Neg"]
    verify(g)
    assert not dead_code_elimination(g)


def test_identity_elimination_keeps_output_names():
    g = Graph("g")
    x = g.add_input("x", "float32", (4,))
    a = g.make_node("Relu", [x], outputs=["a"]).outputs[0]
    i1 = g.make_node("Identity", [a], outputs=["i1"]).outputs[0]
    d = g.make_node("Dropout", [i1], outputs=["d"]).outputs[0]
    out = g.make_node("Identity", [d], outputs=["result"]).outputs[0]
    passthrough = g.make_node("Identity", [x], outputs=["x_copy"]).outputs[0]
    g.outputs += [out, passthrough]
    assert eliminate_identity(g)
    verify(g)
    assert [n.op for n in g.nodes] == ["Relu", "Identity"]  # the input→output copy must stay
    assert [v.name for v in g.outputs] == ["result", "x_copy"]
    res = interpret(g, {"x": np.array([-1, 0, 1, 2], np.float32)})
    np.testing.assert_array_equal(res["result"], [0, 0, 1, 2])


def test_dump_dir_writes_each_changing_pass(tmp_path):
    g = _shape_chain_graph()
    Pipeline("t", [Fixpoint("f", (fold_constants, eliminate_identity, dead_code_elimination))]).run(
        g, dump_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "000_input.txt"
    assert any("fold_constants" in n for n in names)
    assert "Reshape" in (tmp_path / names[-1]).read_text()


def test_verifier_catches_broken_graphs():
    from npuc.errors import GraphError

    g = Graph("g")
    x = g.add_input("x", "float32", (4,))
    a = g.make_node("Relu", [x]).outputs[0]
    b = g.make_node("Neg", [a]).outputs[0]
    g.outputs.append(b)
    verify(g)
    g.nodes.reverse()  # no longer topological
    with pytest.raises(GraphError, match="before it is produced"):
        verify(g)
    g.nodes.reverse()
    a.shape = (5,)  # wrong type
    with pytest.raises(GraphError, match="inference gives"):
        verify(g)
