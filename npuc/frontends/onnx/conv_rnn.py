"""ONNX converters for LSTM, GRU and RNN (opsets 7 and later).

Opsets 7..13 differ from the registry form (opset 14/22, see :mod:`npuc.ops.rnn`) only by
the missing ``layout`` attribute, whose default (0) is their behaviour, so every opset
goes through one converter. It

* requires ``sequence_lens`` to be a constant (npuc compiles static shapes), with an
  error that says so; and
* drops ``sequence_lens`` when every entry equals the sequence length, which leaves the
  plain, faster form for later stages.
"""
from __future__ import annotations

import numpy as np

from .context import ConvertContext, converter

_SEQ_LENS = 4


def _recurrent(ctx: ConvertContext):
    inputs = list(ctx.inputs)
    lens_v = ctx.input(_SEQ_LENS)
    if lens_v is not None:
        if lens_v.const is None:
            raise ctx.error(f"sequence_lens ({lens_v.name!r}) is computed at run time; npuc needs it constant "
                            f"(fold it, or remove it when every sequence has the full length)")
        x = ctx.input(0)
        if x is not None and x.rank == 3:
            seq = x.shape[1] if ctx.attrs.get("layout", 0) else x.shape[0]
            lens = np.asarray(lens_v.const)
            if lens.size and np.all(lens == seq):
                inputs[_SEQ_LENS] = None
    return ctx.emit(ctx.op_type, inputs, ctx.attrs)


for _op in ("LSTM", "GRU", "RNN"):
    converter(_op, since=7)(_recurrent)
