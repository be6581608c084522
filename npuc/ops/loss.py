"""Loss ops of the ONNX standard domain: NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss (the forward computation; npuc compiles them like any op).

Shapes: ``input (N, C, d1, ..., dk)``, ``target (N, d1, ..., dk)`` integer class indices,
optional ``weight (C,)``. With ``W[n, d] = weight[target[n, d]]`` (1 without weights) and
``W = 0`` where ``target == ignore_index``::

    loss[n, d] = −input[n, target[n, d], d] · W[n, d]
    reduction "none": loss (shape of target); "sum": Σ loss; "mean": Σ loss / Σ W

SoftmaxCrossEntropyLoss is NLL of ``log_softmax(scores, axis=1)``; its optional second
output is that log-probability tensor. Both compute in float64 and round once.
"""
from __future__ import annotations

import numpy as np

from .registry import InferContext, register

_REDUCTIONS = ("none", "sum", "mean")


def _loss_infer(ctx: InferContext, with_log_prob: bool):
    x, t = ctx.shape(0), ctx.shape(1)
    if len(x) < 2:
        raise ctx.fail(f"input must have shape (N, C, ...), got {list(x)}")
    if tuple(t) != tuple(x[:1]) + tuple(x[2:]):
        raise ctx.fail(f"target {list(t)} must have shape {[x[0]] + list(x[2:])} (input without C)")
    if ctx.dtype(1).kind not in "iu":
        raise ctx.fail(f"target must be integer class indices, got {ctx.dtype(1)}")
    if ctx.has(2) and tuple(ctx.shape(2)) != (x[1],):
        raise ctx.fail(f"weight must have shape [{x[1]}], got {list(ctx.shape(2))}")
    red = ctx.attrs["reduction"]
    if red not in _REDUCTIONS:
        raise ctx.fail(f"reduction {red!r} is not one of {', '.join(_REDUCTIONS)}")
    out = [(ctx.dtype(0), tuple(t) if red == "none" else ())]
    if with_log_prob:
        out.append((ctx.dtype(0), tuple(x)))
    return out


def _nll(logp: np.ndarray, target, weight, ignore_index, reduction) -> np.ndarray:
    """NLL in float64 of log-probabilities ``logp (N, C, ...)``."""
    c = logp.shape[1]
    t = np.asarray(target).astype(np.int64)
    ignored = np.zeros(t.shape, bool) if ignore_index is None else (t == int(ignore_index))
    ti = np.clip(t, 0, c - 1)
    w = np.ones(t.shape) if weight is None else np.asarray(weight, np.float64)[ti]
    w = np.where(ignored, 0.0, w)
    picked = np.take_along_axis(logp, ti[:, None], axis=1)[:, 0]
    loss = -picked * w
    if reduction == "sum":
        return np.asarray(loss.sum())
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(loss.sum() / w.sum())
    return loss


@register("NegativeLogLikelihoodLoss", inputs=(2, 3), attrs={"ignore_index": None, "reduction": "mean"},
          infer=lambda ctx: _loss_infer(ctx, False))
def negative_log_likelihood_loss(x, target, weight=None, *, ignore_index, reduction):
    """See the module docstring."""
    return _nll(np.asarray(x, np.float64), target, weight, ignore_index, reduction).astype(x.dtype)


@register("SoftmaxCrossEntropyLoss", inputs=(2, 3), attrs={"ignore_index": None, "reduction": "mean"},
          infer=lambda ctx: _loss_infer(ctx, True))
def softmax_cross_entropy_loss(scores, labels, weight=None, *, ignore_index, reduction):
    """NLL of log_softmax(scores) over axis 1; returns (loss, log_prob)."""
    xd = np.asarray(scores, np.float64)
    s = xd - xd.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    loss = _nll(logp, labels, weight, ignore_index, reduction)
    return loss.astype(scores.dtype), logp.astype(scores.dtype)
