"""ONNX converters for the transformer / state-space ops of :mod:`npuc.ops.attention`.

* CausalConvWithState: the ONNX attribute ``activation`` (none / silu / swish) becomes the
  registry attribute ``act``, because npuc reserves ``activation`` for fused epilogues.
"""
from __future__ import annotations

from .context import ConvertContext, converter


@converter("CausalConvWithState")
def causal_conv_with_state(ctx: ConvertContext):
    attrs = dict(ctx.attrs)
    if "activation" in attrs:
        attrs["act"] = attrs.pop("activation")
    return ctx.emit("CausalConvWithState", ctx.inputs, attrs)
