"""The figures: what they draw, and the style every figure shares (a colour per method, a hue per family, the
references always in black, verdict markers, intervals)."""
from __future__ import annotations

import colorsys
import math
import subprocess
import sys

import pandas as pd
import pytest

from ecnb import viz
from ecnb.data import make_forget_split
from ecnb.results import read_results, result_row, write_results
from ecnb.verdicts import wilson_interval
from ecnb.methods import builtin_baselines
from ecnb.viz.style import family, line_style, method_color


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


def one_seed_attacks() -> pd.DataFrame:
    rows = [result_row(0, m, "split_size", 40, split="test_forget") for m in ("original", "retrain", "ga")]
    for m, curve in {"original": (1.0, 1.0), "retrain": (0.0, 0.1), "ga": (0.0, 0.8)}.items():
        rows += [result_row(0, m, "relearn_accuracy", v, split="test_forget", layer=f"step{s}") for s, v in zip((0, 10), curve)]
    return pd.DataFrame(rows)


def test_importing_the_figures_does_not_build_jsonschemas_iri_parsers():
    """plotly loads its renderers (and through them nbformat and jsonschema) lazily; ecnb.viz must load them
    while the optional rfc3987-syntax package is hidden, or every notebook kernel pays about 2 s for it."""
    code = "import sys, ecnb.viz, plotly.io; print('rfc3987_syntax' in sys.modules, plotly.io.renderers.default)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "plotly_mimetype"]


def _hue(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return round(colorsys.rgb_to_hls(r, g, b)[0], 2)


def test_a_family_shares_a_hue_and_every_method_has_its_own_colour():
    members = ["ga", "ga+ec", "ga+ec+soft"]
    assert [family(m) for m in members] == [("ga", "base"), ("ga", "ec"), ("ga", "variant")]
    assert len({_hue(method_color(m)) for m in members}) == 1, "one hue per family"
    names = ["ft", "ga", "rl", "scrub", "ga+ec", "rl+ec", "ec", "ec[last]", "ec+soft", "weight_distortion", "original",
             "retrain"]
    assert len({method_color(m) for m in names}) == len(names), "no two methods share a colour"
    assert len({_hue(method_color(b)) for b in ["ft", "ga", "rl", "scrub", "weight_distortion", "ec"]}) == 6


def _lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* of an sRGB colour (D65), to measure how far apart two colours look."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(colour[i:i + 2], 16) / 255) for i in (1, 3, 5))
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_every_two_baselines_and_eacs_neighbours_look_apart():
    """CIE76 difference of at least 20 (about 2.3 is just noticeable): ga and cu were two browns 13 apart."""
    def apart(a: str, b: str) -> float:
        return math.dist(_lab(method_color(a)), _lab(method_color(b)))

    baselines = list(builtin_baselines())
    pairs = [(a, b) for i, a in enumerate(baselines) for b in baselines[i + 1:]]
    assert min(apart(a, b) for a, b in pairs) >= 20
    assert apart("ec", "ec[last]") >= 20 and apart("ec", "ec+soft") >= 20 and apart("ec+soft", "ec+soft[hard]") >= 20
    assert line_style("ec[last]")["dash"] != line_style("ec").get("dash", "solid"), "an ablation's line is dashed"
    assert family("ec+soft[pull]") == ("ec", "variant") and family("original") == ("original", "reference")


def test_accuracy_bars_label_every_value_above_its_error_bar_and_show_the_retain_tolerance(table):
    fig = viz.accuracy_bars(table)
    forget, forget_labels, retain, retain_labels = fig.data
    assert list(forget.x) == ["original", "retrain", "ga"], "references first"
    assert forget.y[2] == pytest.approx(0.55) and forget.error_y.array[2] == pytest.approx(0.0707, abs=1e-3)
    assert list(forget_labels.text) == ["0.55"] * 3, "every bar carries its value, so a zero bar reads 0.00"
    assert forget_labels.y[2] == pytest.approx(0.55 + 0.0707, abs=1e-3), "the label sits on the error bar's top"
    assert forget_labels.textposition == "top center" and forget_labels.xaxis == forget.xaxis
    assert list(forget.marker.color) == [method_color(m) for m in forget.x]
    (floor,) = fig.layout.shapes
    assert floor.y0 == pytest.approx(0.9 - 0.03), "original's retain accuracy minus the tolerance"
    assert fig.layout.yaxis2.range[0] > 0.5, "the retain axis starts where 0.03 shows"
    (label,) = fig.layout.annotations[2:]  # after the two panel titles
    assert (label.xref, label.x, label.xanchor) == ("x2 domain", 1.01, "left"), "beside the panel, where no bar is"
    assert label.y == pytest.approx(0.87) and label.text.startswith("original")


def test_a_zero_bars_label_clears_its_wilson_interval():
    rows = [result_row(0, m, "split_size", 40, split="test_forget") for m in ("original", "retrain", "ga")]
    rows += [result_row(0, m, "accuracy", v, split="test_forget") for m, v in (("original", 1.0), ("retrain", 0.0),
                                                                             ("ga", 0.0))]
    bars, labels = viz.accuracy_bars(pd.DataFrame(rows)).data
    top = wilson_interval(0.0, 40)[1]
    assert top > 0.05 and list(labels.y[1:]) == pytest.approx([top, top]) and list(labels.text[1:]) == ["0.00"] * 2


def test_layer_curves_follow_network_order_and_draw_the_references_in_black(table):
    fig = viz.layer_curves(table, "cka_to_original", "forget_train", ["layer1", "layer2", "pool"])
    assert [t.name for t in fig.data] == ["original", "retrain", "ga"]
    ga = fig.data[2]
    assert list(ga.x) == ["layer1", "layer2", "pool"] and list(ga.y) == pytest.approx([0.95, 0.85, 0.75])
    assert (fig.data[1].line.dash, fig.data[1].line.color) == ("dash", "black")
    assert fig.data[0].line.dash == "dot" and ga.line.color == method_color("ga")
    assert "std over seeds" in fig.layout.title.text


def test_a_legend_of_many_methods_shows_every_entry_without_scrolling():
    methods = ["original", "retrain", *builtin_baselines(), "ec", "ga+ec", "scrub+ec", "ec[last]", "ec+soft"]
    rows = [result_row(0, m, "cka_to_original", 0.5, split="forget_train", layer=layer) for m in methods
            for layer in ("layer1", "pool")]
    fig = viz.layer_curves(pd.DataFrame(rows), "cka_to_original", "forget_train", ["layer1", "pool"])
    entries = [t for t in fig.data if t.showlegend is not False]
    assert len(entries) == len(methods), "every method has its entry, whatever group the menu shows"
    plot_height = fig.layout.height - fig.layout.margin.t - 80  # plotly's default bottom margin
    assert fig.layout.legend.maxheight >= 20 * len(entries), "room for every entry"
    assert plot_height >= fig.layout.legend.maxheight, "a side legend scrolls beyond the plot's height"


def test_one_seeds_relearning_curve_carries_wilson_intervals():
    fig = viz.relearn_curves(one_seed_attacks())
    ga = next(t for t in fig.data if t.name == "ga")
    lo, hi = wilson_interval(0.8, 40)
    assert ga.error_y.array[1] == pytest.approx(hi - 0.8) and ga.error_y.arrayminus[1] == pytest.approx(0.8 - lo)
    assert ga.error_y.array[0] > 0, "0 of 40 has an interval above 0"
    assert "Wilson" in fig.layout.title.text


def test_the_retrained_population_is_a_band_around_retrain_not_more_lines():
    df = one_seed_attacks()
    others = {"retrain#1": (0.0, 0.3), "retrain#2": (0.0, 0.2)}
    df = pd.concat([df, pd.DataFrame([result_row(0, m, "relearn_accuracy", v, split="test_forget", layer=f"step{s}")
                                      for m, curve in others.items() for s, v in zip((0, 10), curve)])])
    fig = viz.relearn_curves(df, ["original", "retrain", "ga"])
    names = [t.name for t in fig.data]
    assert "retrain#1" not in names and "retrain#2" not in names and {"retrain", "ga", "original"} <= set(names)
    band = next(t for t in fig.data if t.name == "retrained models (3): range")
    lower = fig.data[names.index(band.name) - 1]
    assert list(lower.y) == [0.0, 0.1] and list(band.y) == [0.0, 0.3], "lowest and highest of the three at each step"
    assert band.fill == "tonexty"
    without = viz.relearn_curves(df, ["original", "ga"])
    assert not any(str(t.name).startswith("retrained models") for t in without.data), "no retrain, no band"


def test_many_methods_get_a_menu_of_groups_with_the_references_always_shown():
    methods = ["original", "retrain", "ft", "ga", "rl", "scrub", "cu", "salun", "ga+ec", "rl+ec", "ec", "ec[last]",
               "ga+ec+soft"]
    rows = [result_row(0, m, "cka_to_original", 0.5, split="forget_train", layer=layer) for m in methods
            for layer in ("layer1", "pool")]
    fig = viz.layer_curves(pd.DataFrame(rows), "cka_to_original", "forget_train", ["layer1", "pool"])
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["baselines", "Erase at the Core", "plug-ins", "all methods"]
    names = [t.name for t in fig.data]
    plugins = dict(zip(names, menu.buttons[2].args[0]["visible"]))
    assert [n for n, v in plugins.items() if v] == ["original", "retrain", "ga+ec", "rl+ec", "ga+ec+soft"]


def test_eleven_baselines_are_offered_a_kind_at_a_time():
    """Notebook 02's figures draw the eleven baselines alone: one group of eleven lines is too many to read, so the menu
    offers them by how they forget (a method of the user's under its own entry), the first kind shown at first."""
    baselines = ["ft", "ga", "rl", "neggrad_plus", "l1_sparse", "salun", "scrub", "bad_teacher", "cu",
                 "weight_distortion", "weight_dist_reg", "mine"]
    rows = [result_row(0, m, "relearn_accuracy", 0.5, split="test_forget", layer=f"step{t}")
            for m in ["original", "retrain", *baselines] for t in (0, 10)]
    fig = viz.relearn_curves(pd.DataFrame(rows))
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["baselines: fine-tuning and gradients", "baselines: teachers and contrast",
                                               "baselines: tamper-resistant", "baselines: brought", "all methods"]
    shown = [t.name for t in fig.data if t.visible is not False]
    assert {"original", "retrain"} <= set(shown), "the references in every group"
    assert [n for n in shown if n in baselines] == ["ft", "ga", "rl", "neggrad_plus", "l1_sparse", "salun"]


def test_interpolation_curves_draw_both_splits_along_the_line():
    rows = [result_row(0, m, "interpolation_accuracy", v, split=s, layer=f"t{t:.2f}")
            for m, v in (("ga", 0.9), ("retrain", 0.2)) for s in ("test_forget", "test_retain") for t in (0, 0.5, 1)]
    fig = viz.interpolation_curves(pd.DataFrame(rows), ["retrain", "ga"])
    assert [(t.name, t.xaxis) for t in fig.data] == [("retrain", "x"), ("ga", "x"), ("retrain", "x2"), ("ga", "x2")]
    assert list(fig.data[1].x) == [0.0, 0.5, 1.0] and [t.showlegend for t in fig.data] == [True, True, False, False]


def test_evidence_map_shapes_each_depth_and_opens_the_marker_of_a_method_that_hurts_retain():
    table = pd.DataFrame({
        "x": [1.0, 0.8, 0.7, 0.6], "y": [1.0, 0.0, 0.9, 0.1],
        "depth": ["reference", "reference", "superficial", "erased"],
        "cost": ["reference", "reference", "hurts retain (-0.05)", "keeps retain"],
        "verdict": ["reference", "reference", "superficial, hurts retain (-0.05)", "erased, keeps retain"],
    }, index=["original", "retrain", "ga", "ec"])
    fig = viz.evidence_map(table, "x", "y")
    legend = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in legend] == ["reference", "superficial", "erased", viz.verdict_views.OPEN_NOTE]
    assert [t.marker.symbol for t in legend] == ["diamond", "circle", "star", "circle-open"], \
        "a depth's legend marker is filled; only the note on cost is open"
    points = {t.name: t for t in fig.data if t.showlegend is False}
    assert list(points["superficial"].marker.symbol) == ["circle-open"]
    assert list(points["erased"].marker.symbol) == ["star"]
    assert points["superficial"].hovertext[0] == "ga: superficial, hurts retain (-0.05)"
    assert [s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1] == [0.8], "retrain's cross-hair"
    assert sorted(a.text for a in fig.layout.annotations) == ["ec", "ga", "original", "retrain"], "every point named"


def test_scatter_labels_are_placed_apart_even_where_points_pile_up():
    names = ["original", "retrain", "ft", "ga", "rl", "neggrad_plus", "l1_sparse", "salun", "scrub", "bad_teacher",
             "cu", "ec", "ga+ec", "scrub+ec", "ec[last]", "ec+soft"]
    # most points within a few pixels of each other, as the walkthrough's baselines sit near (weights, gap) = (0, 0.9)
    points = {m: (300 + 3 * (i % 5), 200 + 4 * (i // 5)) for i, m in enumerate(names)}
    offsets = viz.verdict_views.place_labels(points)
    boxes = [viz.verdict_views.label_box(points[m], offsets[m], m) for m in names]
    width, height = 900 - 70 - 230, 560 - 80 - 60
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= width and a[3] <= height, f"{names[i]}'s label inside the plot"
        for j, b in enumerate(boxes[:i]):
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"the labels of {names[i]} and {names[j]} overlap"


def test_sample_grid_and_per_class_figure(digits):
    split = make_forget_split(digits.y_train, forget_classes=(3,))
    fig = viz.sample_grid(digits, split, per_class=4)
    image = fig.data[0].z
    assert len(fig.data) == 1 and image.shape[0] > image.shape[1], "ten rows of four tiles"
    bars = viz.per_class_accuracy_figure({"original": [1.0] * 10, "retrain": [1.0] * 10}, digits.classes, (3,))
    assert [t.name for t in bars.data] == ["original", "retrain"] and "forgotten" in bars.data[0].x[3]


def test_plugin_bars_pair_each_baseline_with_its_plugins_in_the_familys_shades():
    table = pd.DataFrame({"cka": [0.9, 0.6, 0.5, 0.8, 0.7, 0.5, 0.65]},
                         index=["ga", "ga+ec", "ga+ec+v", "rl", "rl+ec", "retrain", "ec"])
    fig = viz.plugin_bars(table, ["ga", "rl"], "cka", variants=("ec", "ec+v"))
    assert [list(t.y) for t in fig.data[:2]] == [[0.9, 0.8], [0.6, 0.7]]
    assert fig.data[2].y[1] != fig.data[2].y[1], "a plug-in that did not run leaves its bar out"
    assert list(fig.data[1].marker.color) == [method_color("ga+ec"), method_color("rl+ec")]
    assert [s.y0 for s in fig.layout.shapes] == [0.5, 0.65], "retrain and ec as reference lines"
    assert [a.xanchor for a in fig.layout.annotations] != [fig.layout.annotations[0].xanchor] * 2, "labels on both sides"


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
