"""ONNX backend conformance: every case of the backend test suites shipped in the ``onnx``
package (``node``, ``pytorch-converted``, ``pytorch-operator``, ``simple``) compiled and run
through npuc (see :mod:`tests.conformance.backend` for how a case runs and is compared).

``expected_failures.txt`` lists the cases that do not pass yet, each with a reason. A listed
case must fail (if it passes, this test fails with "now passes: remove it from
expected_failures.txt"), and every other case must pass, so the list only shrinks.

Static shapes: inputs that npuc needs at compile time (the registry's ``const_inputs``, such
as Reshape's shape, Reduce axes, Resize scales, TopK's K) are bound to the data set's values
before compiling; the summary line counts how many passing cases needed that.

Run: ``python -m pytest tests/conformance``; one suite: ``-m onnx_node`` or ``-m onnx_models``
(pytorch-converted, pytorch-operator, simple); one op: ``-k test_resize``.
"""
from __future__ import annotations

import pytest

from .backend import SUITES, load_expected_failures, load_suite, quiet_logs, run_case
from .conftest import RESULTS

EXPECTED = load_expected_failures()


def _cases():
    out = []
    for suite in SUITES:
        for c in load_suite(suite):
            mark = pytest.mark.onnx_node if suite == "node" else pytest.mark.onnx_models
            out.append(pytest.param(c, id=c.name, marks=mark))
    return out


CASES = _cases()


@pytest.mark.parametrize("case", CASES)
def test_onnx_backend(case):
    quiet_logs()
    reason = EXPECTED.get(case.name)
    try:
        frozen = run_case(case)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        if reason is not None:
            RESULTS[case.name] = (case.suite, "xfail", False)
            pytest.xfail(f"{reason} [{type(e).__name__}: {first}]")
        RESULTS[case.name] = (case.suite, "fail", False)
        raise
    if reason is not None:
        RESULTS[case.name] = (case.suite, "now-passes", bool(frozen))
        pytest.fail(f"{case.name} now passes: remove it from expected_failures.txt "
                    f"(it was listed as: {reason})", pytrace=False)
    RESULTS[case.name] = (case.suite, "pass", bool(frozen))


def test_expected_failures_name_real_cases():
    """Every name in expected_failures.txt is a case of one of the suites."""
    names = {c.values[0].name for c in CASES}
    unknown = sorted(set(EXPECTED) - names)
    assert not unknown, f"expected_failures.txt lists cases that do not exist: {unknown}"
