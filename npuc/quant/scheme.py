"""Quantization schemes: per-tensor precision and ranges as JSON (mixed precision).

``--export-quant-scheme FILE`` writes, for every float tensor of the optimized graph::

    {"version": 1, "activation_type": "uint8", "weight_type": "int8", "per_channel": true,
     "tensors": {"conv1_out": {"dtype": "uint8", "min": -0.5, "max": 6.0}, ...}}

``--quant-scheme FILE`` reads it back (edited by the user): ``dtype`` ("uint8", "int8",
"int16" or "float") overrides the precision of the op producing that tensor, and
``min``/``max`` replace calibration for it; when every quantized tensor has a range, no
data set is needed.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import OptionError
from .quantize import PRECISIONS


def write_scheme(path, graph, ranges, cfg) -> None:
    tensors = {}
    for v in list(graph.inputs) + [o for n in graph.nodes for o in n.outputs]:
        if v.dtype.kind != "f":
            continue
        entry = {"dtype": cfg.overrides.get(v.name, cfg.act_type)}
        if v.name in ranges:
            entry["min"], entry["max"] = (float(x) for x in ranges[v.name])
        tensors[v.name] = entry
    doc = {"version": 1, "activation_type": cfg.act_type, "weight_type": cfg.weight_type,
           "per_channel": cfg.per_channel, "tensors": tensors}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent))
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, p)


def read_scheme(path) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise OptionError(f"--quant-scheme {p}: no such file") from None
    except (OSError, ValueError) as e:
        raise OptionError(f"--quant-scheme {p}: not a readable JSON scheme ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), dict):
        raise OptionError(f"--quant-scheme {p}: expected an object with a 'tensors' map")
    overrides, ranges = {}, {}
    for name, e in doc["tensors"].items():
        if not isinstance(e, dict):
            raise OptionError(f"--quant-scheme {p}: entry {name!r} must be an object")
        dt = e.get("dtype")
        if dt is not None:
            if dt not in PRECISIONS:
                raise OptionError(f"--quant-scheme {p}: tensor {name!r} dtype {dt!r} is not one of "
                                  f"{', '.join(PRECISIONS)}")
            overrides[name] = dt
        if "min" in e or "max" in e:
            try:
                lo, hi = float(e["min"]), float(e["max"])
            except (KeyError, TypeError, ValueError):
                raise OptionError(f"--quant-scheme {p}: tensor {name!r} needs numeric min and max") from None
            if not lo <= hi:
                raise OptionError(f"--quant-scheme {p}: tensor {name!r} has min {lo} > max {hi}")
            ranges[name] = (lo, hi)
    return overrides, ranges
