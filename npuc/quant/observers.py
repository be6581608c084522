r"""Calibration observers for post-training quantization.

An observer watches every value one tensor takes over the calibration set, one batch at a
time (:meth:`Observer.update`), and then proposes the clipping range ``[lo, hi]`` the tensor
should be quantized with (:meth:`Observer.range`). Four methods:

``minmax``      the exact running min and max (no clipping). Never loses an outlier, spends
                the integer levels on the whole observed range.
``percentile``  the p-th percentile (default 99.99) read off a histogram.
``kl``          TensorRT-style entropy calibration: the threshold whose clipped-and-quantized
                distribution diverges least (Kullback-Leibler) from the observed one.
``mse``         the range that minimises the expected squared quantization error (rounding
                plus clipping) over the histogram.

Whatever the method, ``lo <= 0 <= hi`` and ``[lo, hi]`` lies inside
``[min(x_min, 0), max(x_max, 0)]``: the range always contains 0 so that zero (padding, ReLU
outputs) is exactly representable, and no method ever proposes a range wider than the data.
For symmetric targets the consumer uses ``max(|lo|, |hi|)``; the observers still report the
side that is actually occupied (e.g. ``[0, T]`` for a post-ReLU tensor). An observer that
saw only zeros (or nothing) returns ``(0.0, 0.0)``; the qparams code picks a scale for it.

Non-finite values (NaN, ±inf) are ignored and counted in :attr:`Observer.nonfinite`;
:attr:`Observer.count` is the number of finite values used.

Each method lives in its own module; this one gathers them:

==========================  ==================================================================
:mod:`.observer_base`       :class:`Observer`, :class:`MinMaxObserver`, the quantizer model
                            (target integer types, :func:`quantization_mse`)
:mod:`.observer_histogram`  the one-pass exact histogram, :class:`PercentileObserver`
:mod:`.observer_kl`         :class:`KLObserver` (entropy calibration, done right)
:mod:`.observer_mse`        :class:`MSEObserver` (expected squared error over the histogram)
==========================  ==================================================================
"""
from __future__ import annotations

from ..errors import OptionError
from .observer_base import MinMaxObserver, Observer, quantization_mse
from .observer_histogram import HistogramObserver, PercentileObserver
from .observer_kl import KLObserver, _KLTables  # noqa: F401  (_KLTables: tests read its tables)
from .observer_mse import MSEObserver

__all__ = [
    "METHODS",
    "Observer",
    "MinMaxObserver",
    "HistogramObserver",
    "PercentileObserver",
    "KLObserver",
    "MSEObserver",
    "make_observer",
    "quantization_mse",
]

METHODS = ("minmax", "percentile", "kl", "mse")


_CLASSES = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "kl": KLObserver,
    "mse": MSEObserver,
}


def make_observer(method: str, **kw) -> Observer:
    """A new observer for ``method`` (one of :data:`METHODS`), with its keyword options."""
    key = str(getattr(method, "value", method)).strip().lower()
    cls = _CLASSES.get(key)
    if cls is None:
        raise OptionError(f"unknown calibration method {method!r}; choose one of: "
                          f"{', '.join(METHODS)}")
    try:
        return cls(**kw)
    except TypeError as exc:
        import inspect

        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise OptionError(f"invalid option for calibration method {key!r} ({exc}); "
                          f"accepted options: {', '.join(params) or 'none'}") from None
