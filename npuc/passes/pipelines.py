"""The literal pass pipelines, one per target.

Read top to bottom: that is the order passes run in. A ``Fixpoint`` group repeats until
one whole round changes nothing.
"""
from __future__ import annotations

from .cleanup import dead_code_elimination, eliminate_identity
from .cse import eliminate_common_subexpressions
from .fold import fold_constants
from .fold_affine import fold_batchnorm, fold_mul_add_into_linear
from .fold_pad import fold_pad
from .fuse_activation import fuse_activations, fuse_clamp_activations
from .equalize import equalize_cross_layer
from .layout import collapse_reshapes, merge_transposes, push_transposes_down
from .manager import Fixpoint, Pipeline
from .patterns import recognize_patterns


def basic_cleanup() -> Fixpoint:
    return Fixpoint("cleanup", (fold_constants, eliminate_identity, dead_code_elimination))


def simplify() -> Fixpoint:
    """Target-independent simplification: folding, CSE, layout clean-up, patterns."""
    return Fixpoint("simplify", (
        fold_constants,
        eliminate_identity,
        eliminate_common_subexpressions,
        collapse_reshapes,
        push_transposes_down,
        merge_transposes,
        recognize_patterns,
        dead_code_elimination,
    ))


def fuse(*, clamps_only: bool = False) -> Fixpoint:
    """Fold affine ops and padding into linear ops, then fuse activations into producers
    (only Relu/Clip/PRelu/LeakyRelu when the graph is going to be quantized)."""
    return Fixpoint("fuse", (
        fold_batchnorm,
        fold_mul_add_into_linear,
        fold_pad,
        fold_constants,
        fuse_clamp_activations if clamps_only else fuse_activations,
        dead_code_elimination,
    ))


def cpu_pipeline() -> Pipeline:
    """The float graph optimizations for the ``cpu`` target."""
    return Pipeline("cpu", [simplify(), fuse(), simplify()])


def quant_pipeline(*, equalize: bool = True) -> Pipeline:
    """Float optimizations before calibration and quantization; cross-layer equalization
    evens out per-channel ranges that 8-bit tensors share (two rounds). The k210 target
    leaves it off by default: its 24-bit BN multipliers then stop matching the cpu
    target's results exactly (measured on a ResNet-style net)."""
    steps = [simplify(), fuse(clamps_only=True), simplify()]
    if equalize:
        steps += [equalize_cross_layer, equalize_cross_layer]
    return Pipeline("quant", steps)


def k210_pipeline(*, equalize: bool = False) -> Pipeline:
    """The quantization pipeline with the K210's own step (npuc/targets/k210/prepare.py):
    layers with more than 1024 input channels split into parts the KPU can run, before
    calibration sees the graph."""
    from ..targets.k210.prepare import split_wide_inputs

    steps = [simplify(), fuse(clamps_only=True), split_wide_inputs, simplify()]
    if equalize:
        steps += [equalize_cross_layer, equalize_cross_layer]
    return Pipeline("k210", steps)


def no_fusion_pipeline() -> Pipeline:
    """Only clean-up (used to measure what fusion gains)."""
    return Pipeline("cleanup-only", [basic_cleanup()])


def pipeline_for(target: str, *, optimize: bool = True, quantize: bool = False, equalize: bool = True) -> Pipeline:
    if not optimize:
        return no_fusion_pipeline()
    if target == "k210":
        return k210_pipeline(equalize=equalize)
    if quantize:
        return quant_pipeline(equalize=equalize)
    return cpu_pipeline()
