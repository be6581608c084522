"""Collects the outcome of each ONNX backend case and prints the conformance summary."""
from __future__ import annotations

#: case name -> (suite, outcome: pass | fail | xfail | now-passes, needed compile-time inputs)
RESULTS: dict[str, tuple[str, str, bool]] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "onnx_node: ONNX backend node test cases")
    config.addinivalue_line("markers", "onnx_models: ONNX backend model test cases (pytorch-*, simple)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    from .backend import SUITES

    tr = terminalreporter
    tr.section("ONNX conformance")
    total = {"pass": 0, "xfail": 0, "fail": 0, "now-passes": 0}
    frozen = 0
    for suite in SUITES:
        rows = [r for r in RESULTS.values() if r[0] == suite]
        if not rows:
            continue
        counts = {k: sum(1 for r in rows if r[1] == k) for k in total}
        fz = sum(1 for r in rows if r[1] == "pass" and r[2])
        for k in total:
            total[k] += counts[k]
        frozen += fz
        tr.write_line(f"  {suite:18s} {counts['pass']:5d} passed / {counts['xfail']:4d} expected failures / "
                      f"{len(rows):5d} total" + (f"  ({counts['fail']} failed, {counts['now-passes']} now pass)"
                                                 if counts['fail'] or counts['now-passes'] else ""))
    n = sum(total.values())
    tr.write_line(f"ONNX conformance: {total['pass']} passed / {total['xfail']} expected failures / {n} total"
                  + (f" ({total['fail']} unexpected failures, {total['now-passes']} expected failures now pass)"
                     if total['fail'] or total['now-passes'] else "")
                  + f"; {frozen} of the passes bind shape-setting inputs at compile time")
