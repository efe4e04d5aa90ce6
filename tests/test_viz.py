from __future__ import annotations

import subprocess
import sys

import pytest

from ecnb import viz
from ecnb.data import make_forget_split
from ecnb.results import read_results, result_row, write_results


@pytest.fixture()
def table(tmp_path):
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.1)):
        for method in ("ga", "retrain", "original"):
            rows.append(result_row(seed, method, "accuracy", 0.5 + shift, split="forget_train"))
            rows.append(result_row(seed, method, "accuracy", 0.9, split="test_retain"))
            for i, layer in enumerate(("layer1", "layer2", "pool")):
                rows.append(result_row(seed, method, "cka_to_original", 1 - 0.1 * i - shift, split="forget_train", layer=layer))
    write_results(tmp_path, rows)
    return read_results(tmp_path)


def test_importing_the_figures_does_not_build_jsonschemas_iri_parsers():
    """plotly loads its renderers (and through them nbformat and jsonschema) lazily; ecnb.viz must load them
    while the optional rfc3987-syntax package is hidden, or every notebook kernel pays about 2 s for it."""
    code = "import sys, ecnb.viz, plotly.io; print('rfc3987_syntax' in sys.modules, plotly.io.renderers.default)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "plotly_mimetype"]


def test_split_bars_average_seeds_and_put_references_first(table):
    fig = viz.split_bars(table, "accuracy")
    assert [t.name for t in fig.data] == ["forget_train", "test_retain"]
    assert list(fig.data[0].x) == ["original", "retrain", "ga"]
    assert fig.data[0].y[2] == pytest.approx(0.55)
    assert fig.data[0].error_y.array[2] == pytest.approx(0.0707, abs=1e-3)


def test_layer_curves_follow_network_order_and_mark_retrain(table):
    fig = viz.layer_curves(table, "cka_to_original", "forget_train", ["layer1", "layer2", "pool"])
    assert [t.name for t in fig.data] == ["original", "retrain", "ga"]
    ga = fig.data[2]
    assert list(ga.x) == ["layer1", "layer2", "pool"] and list(ga.y) == pytest.approx([0.95, 0.85, 0.75])
    assert fig.data[1].line.dash == "dash"


def test_sample_grid_and_per_class_figure(digits):
    split = make_forget_split(digits.y_train, forget_classes=(3,))
    fig = viz.sample_grid(digits, split, per_class=4)
    image = fig.data[0].z
    assert len(fig.data) == 1 and image.shape[0] > image.shape[1], "ten rows of four tiles"
    bars = viz.per_class_accuracy_figure({"original": [1.0] * 10, "retrain": [1.0] * 10}, digits.classes, (3,))
    assert [t.name for t in bars.data] == ["original", "retrain"] and "forgotten" in bars.data[0].x[3]


def test_plugin_bars_pair_each_baseline_with_its_plugin():
    import pandas as pd

    table = pd.DataFrame({"cka": [0.9, 0.6, 0.8, 0.7, 0.5]}, index=["ga", "ga+ec", "rl", "rl+ec", "retrain"])
    fig = viz.plugin_bars(table, ["ga", "rl"], "cka")
    assert list(fig.data[0].y) == [0.9, 0.8] and list(fig.data[1].y) == [0.6, 0.7]
    assert [s.y0 for s in fig.layout.shapes] == [0.5], "retrain as the reference line; no ec row here"


def test_plugin_layer_curves_menu_shows_one_baseline_and_its_plugin_with_the_references(tmp_path):
    taps = ["layer1", "layer2", "pool"]
    values = {"retrain": [0.9, 0.5, 0.2], "ec": [0.8, 0.4, 0.1], "ga": [1.0, 0.9, 0.5], "ga+ec": [0.7, 0.6, 0.4],
              "rl": [1.0, 0.95, 0.6]}  # rl+ec missing: failed or not run
    rows = [result_row(0, m, "cka_to_original", v, split="forget_train", layer=layer)
            for m, curve in values.items() for layer, v in zip(taps, curve)]
    rows.append(result_row(0, "ga", "cka_to_original", 0.0, split="test_retain", layer="layer1"))
    write_results(tmp_path, rows)
    fig = viz.plugin_layer_curves(read_results(tmp_path), ["ga", "rl"], "cka_to_original", "forget_train", taps)

    assert [t.name for t in fig.data] == ["retrain", "ec", "ga", "ga+ec", "rl", "rl+ec"]
    assert list(fig.data[3].y) == pytest.approx([0.7, 0.6, 0.4])
    assert fig.data[0].line.dash == "dash" and fig.data[1].line.dash == "dot"
    assert all(y != y for y in fig.data[5].y)  # a missing plug-in is a curve of NaN, not someone else's values
    assert [t.visible is not False for t in fig.data] == [True, True, True, True, False, False]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["ga", "rl"]
    assert buttons[1].args[0]["visible"] == [True, True, False, False, True, True]
