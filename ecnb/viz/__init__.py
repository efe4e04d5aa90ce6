"""Plotly figures for the notebooks, returned rather than shown so tests can inspect them. One style for
every figure (`style`): a colour per method, a hue per family, the references always in black."""
from __future__ import annotations

import sys
from types import ModuleType


def _plotly_io() -> ModuleType:
    """plotly.io, imported without jsonschema's IRI format checks. plotly.io imports nbformat (for its
    notebook renderers), nbformat imports jsonschema, and jsonschema builds some 40 Earley parsers from
    the optional rfc3987-syntax package at import: 2.5 s of the 7 s each notebook kernel spent importing
    ecnb, for format checks nothing in a kernel uses. That package is hidden only while plotly.io imports."""
    hide = "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # `import` of it raises ImportError
    try:
        import plotly.io

        plotly.io.renderers  # plotly loads its submodules lazily: the renderers (and nbformat) import here
    finally:
        if hide:
            del sys.modules["rfc3987_syntax"]
    return plotly.io


pio = _plotly_io()
# JupyterLab renders plotly's own mime type natively, and it keeps executed notebooks small: the
# report builder adds plotly.js once for the whole page.
pio.renderers.default = "plotly_mimetype"

from .bars import accuracy_bars, metric_bars, plugin_bars, spread_bars  # noqa: E402
from .curves import interpolation_curves, layer_curves, layer_stats, plugin_layer_curves, relearn_curves  # noqa: E402
from .data_views import per_class_accuracy_figure, sample_grid, to_image_batch  # noqa: E402
from .style import DEPTH_STYLE, FORGET_COLOR, RETAIN_COLOR, SPLIT_COLORS, method_color  # noqa: E402
from .verdict_views import agreement_figure, distance_scatter, evidence_map, verdict_heatmap  # noqa: E402

__all__ = [
    "DEPTH_STYLE", "FORGET_COLOR", "RETAIN_COLOR", "SPLIT_COLORS", "accuracy_bars", "agreement_figure",
    "distance_scatter", "evidence_map", "interpolation_curves", "layer_curves", "layer_stats", "method_color",
    "metric_bars", "per_class_accuracy_figure", "plugin_bars", "plugin_layer_curves", "relearn_curves",
    "sample_grid", "spread_bars", "to_image_batch", "verdict_heatmap",
]
