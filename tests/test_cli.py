"""The command line: every subcommand, JSON output, N-sample inputs, and clean errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npuc.cli import main, parse_input_shape
from npuc.errors import OptionError

DATA = Path(__file__).parent / "data"
DIGITS = DATA / "digits_dwcnn"


@pytest.fixture(scope="module")
def digits_npuc(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "digits.npuc"
    assert main(["compile", str(DIGITS / "model.onnx"), "-o", str(out)]) == 0
    return out


def test_parse_input_shape():
    assert parse_input_shape("input:1,3,224,224") == ("input", [1, 3, 224, 224])
    assert parse_input_shape("ns:x:1,2") == ("ns:x", [1, 2])
    for bad in ("input", "input:", "input:a,b", "input:0,3", ":1,2"):
        with pytest.raises(OptionError):
            parse_input_shape(bad)


def test_inspect_json(digits_npuc, capsys):
    assert main(["inspect", str(digits_npuc), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"] == [{"name": "input", "shape": [1, 1, 16, 16], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
    assert info["target"] == "cpu"
    assert info["ops"]["Conv"] >= 3
    m = info["memory"]
    for k in ("arena_bytes", "lower_bound_bytes", "weights_bytes", "file_bytes"):
        assert isinstance(m[k], int) and m[k] > 0
    assert m["lower_bound_bytes"] <= m["arena_bytes"]
    assert m["file_bytes"] == digits_npuc.stat().st_size


def test_run_with_sample_axis(digits_npuc, tmp_path, capsys):
    out = tmp_path / "out.npz"
    assert main(["run", str(digits_npuc), "--input", str(DIGITS / "test.npz"), "-o", str(out)]) == 0
    got = np.load(out)["logits"]
    ref = np.load(DIGITS / "ref.npz")["logits"]
    assert got.shape == ref.shape == (8, 1, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    # a single sample without the leading axis
    one = tmp_path / "one.npz"
    np.savez(one, input=np.load(DIGITS / "test.npz")["input"][0])
    assert main(["run", str(digits_npuc), "--input", str(one), "-o", str(out)]) == 0
    assert np.load(out)["logits"].shape == (1, 10)


def test_compare_json(digits_npuc, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", str(digits_npuc), "--reference", str(DIGITS / "model.onnx"),
                 "--input", str(DIGITS / "test.npz"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["samples"] == 8
    r = res["outputs"]["logits"]
    assert r["cosine"] > 0.99999 and r["max_abs_error"] < 1e-3


def test_bench(digits_npuc, capsys):
    assert main(["bench", str(digits_npuc), "--runs", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["median_ms"] > 0 and res["min_ms"] <= res["median_ms"]


def test_errors_are_clean(tmp_path, digits_npuc, capsys):
    assert main(["inspect", str(tmp_path / "missing.npuc")]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "missing.npuc" in err and "Traceback" not in err
    bad = tmp_path / "in.npz"
    np.savez(bad, wrong=np.zeros((1, 1, 16, 16), np.float32))
    assert main(["run", str(digits_npuc), "--input", str(bad), "-o", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert "missing input(s) ['input']" in err and "float32[1, 1, 16, 16]" in err
    np.savez(bad, input=np.zeros((1, 1, 8, 8), np.float32))
    assert main(["run", str(digits_npuc), "--input", str(bad), "-o", str(tmp_path / "o.npz")]) == 1
    assert "neither the input's shape" in capsys.readouterr().err
    assert main(["compile", str(DIGITS / "model.onnx"), "-o", str(tmp_path / "x.npuc"),
                 "--input-shape", "bogus:1,2"]) == 1
    assert "unknown input" in capsys.readouterr().err


def test_python_dash_m_entry_point(digits_npuc):
    res = subprocess.run([sys.executable, "-m", "npuc", "inspect", str(digits_npuc)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "target=cpu" in res.stdout
    res = subprocess.run([sys.executable, "-m", "npuc", "inspect", "/nonexistent.npuc"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr


def test_session_input_errors(digits_npuc):
    import npuc
    from npuc.errors import InputError

    sess = npuc.load(digits_npuc)
    assert sess.inputs[0].name == "input" and sess.inputs[0].shape == (1, 1, 16, 16)
    with pytest.raises(InputError, match=r"has shape \[1, 1, 16, 15\], the model expects \[1, 1, 16, 16\]"):
        sess.run({"input": np.zeros((1, 1, 16, 15), np.float32)})
    with pytest.raises(InputError, match="dtype int64"):
        sess.run({"input": np.zeros((1, 1, 16, 16), np.int64)})
    # lossless casts and float64 -> float32 are accepted
    for dt in (np.float64, np.uint8, np.float16):
        assert sess.run({"input": np.zeros((1, 1, 16, 16), dt)})["logits"].shape == (1, 10)
    with pytest.raises(InputError, match="unknown input"):
        sess.run({"input": np.zeros((1, 1, 16, 16), np.float32), "extra": np.zeros(1)})
