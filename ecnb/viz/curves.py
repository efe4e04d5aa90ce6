"""Curves: a metric across layers, the relearning attack across fine-tuning steps, accuracy along the line
from the original to a method. One seed: accuracies on the forgotten class's test images carry their
Wilson 95% interval; several seeds (or cells): the spread over them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..results import is_member, method_order
from ..verdicts import wilson_interval
from .style import (BAND_COLOR, REFERENCE_LINES, baseline_kinds, drop_members, family, fit_legend, groups, line_style,
                    marker_symbol, metric_name, metric_title)

# Metrics that are accuracies on `test_forget`: their points get a Wilson interval when one seed is shown.
ON_TEST_FORGET = {"fewshot_probe_accuracy", "probe_accuracy", "relearn_accuracy", "interpolation_accuracy", "accuracy"}
GROUP_MENU_ABOVE = 8  # more methods than this in one figure: a menu shows one group of them at a time


def test_forget_size(df: pd.DataFrame) -> float | None:
    """The number of the forgotten class's test images (the n of their intervals), when `df` holds one seed."""
    if df["seed"].nunique() != 1:
        return None
    sizes = df.loc[(df["metric"] == "split_size") & (df["split"] == "test_forget"), "value"]
    return float(sizes.iloc[0]) if len(sizes) else None


def errors(mean: pd.Series, std: pd.Series, n: float | None) -> dict:
    """Error bars for points `mean`: their Wilson 95% interval on n images when n is known (one seed), else
    the std over seeds or cells (where there is more than one)."""
    if n:
        bounds = np.array([wilson_interval(p, n) for p in mean.fillna(0.0)])
        return dict(type="data", symmetric=False, array=list(bounds[:, 1] - mean), arrayminus=list(mean - bounds[:, 0]))
    return dict(type="data", array=list(std.fillna(0.0)), visible=bool(std.notna().any()))


def layer_stats(df: pd.DataFrame, metric: str, split: str) -> pd.DataFrame:
    """Mean and std over seeds of a per-layer metric on one split, indexed by (method, layer)."""
    rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] != "")]
    return rows.groupby(["method", "layer"], sort=False)["value"].agg(["mean", "std"])


def _trace(method: str, x: list, y: pd.Series, error_y: dict) -> go.Scatter:
    """A method's curve, in its family's legend group (a click on an entry hides that method alone)."""
    return go.Scatter(x=x, y=list(y), name=method, mode="lines+markers", error_y=error_y, line=line_style(method),
                      marker=dict(symbol=marker_symbol(method), size=7), legendgroup=family(method)[0],
                      legendrank=1 if method in REFERENCE_LINES else 1000)


def _population_band(means: pd.DataFrame, x: list) -> list[go.Scatter]:
    """The retrained models' range (lowest to highest mean at each x), as a filled band: `means` is a method x
    position table. Nothing when the run has a single retrained model."""
    members = [m for m in means.index if is_member(m)]
    if len(members) < 2:
        return []
    part = means.loc[members].reindex(columns=x)
    lower, upper = part.min(), part.max()
    edge = dict(width=0, color=BAND_COLOR)
    return [go.Scatter(x=x, y=list(lower), mode="lines", line=edge, showlegend=False, hoverinfo="skip",
                       legendgroup="retrain"),
            go.Scatter(x=x, y=list(upper), mode="lines", line=edge, fill="tonexty", fillcolor=BAND_COLOR,
                       name=f"retrained models ({len(members)}): range", legendgroup="retrain", legendrank=1,
                       hovertext=[f"retrained models: {lo:.2f}-{hi:.2f}" for lo, hi in zip(lower, upper)],
                       hoverinfo="text")]


def _with_group_menu(fig: go.Figure, methods: list[str]) -> go.Figure:
    """With many methods, a menu that shows one group of them at a time (the references always)."""
    others = [m for m in methods if m not in REFERENCE_LINES]
    by_group = {}
    for name, members in groups(methods).items():  # a group too large to read is offered a kind at a time
        by_group.update(baseline_kinds(members) if name == "baselines" and len(members) > GROUP_MENU_ABOVE
                        else {name: members})
    if len(others) <= GROUP_MENU_ABOVE or len(by_group) < 2:
        return fig
    names = [t.name for t in fig.data]
    always = lambda n: n is None or n in REFERENCE_LINES or n.startswith("retrained models")  # noqa: E731
    buttons = [dict(label=label, method="restyle", args=[{"visible": [always(n) or n in members for n in names]}])
               for label, members in by_group.items()]
    buttons.append(dict(label="all methods", method="restyle", args=[{"visible": [True] * len(names)}]))
    first = next(iter(by_group.values()))
    for t in fig.data:
        t.visible = always(t.name) or t.name in first
    fig.update_layout(updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.02, yanchor="bottom")],
                      margin=dict(t=110))
    return fig


def layer_curves(df: pd.DataFrame, metric: str, split: str, taps: list[str], title: str | None = None,
                 group_menu: bool = True, methods: list[str] | None = None) -> go.Figure:
    """A per-layer metric across the network (x: layer, input to output), one line per method (`methods`, or
    every method of `df`), the retrained models' range as a band around `retrain`; with many methods (and
    `group_menu`), a menu shows one group of them at a time."""
    stats = layer_stats(df, metric, split)
    n = test_forget_size(df) if metric in ON_TEST_FORGET and split == "test_forget" else None
    fig = go.Figure(_population_band(stats["mean"].unstack("layer"), taps) if len(stats) else [])
    shown = method_order(stats.index.get_level_values("method"))
    methods = drop_members([m for m in shown if methods is None or m in methods])
    for method in methods:
        part = stats.loc[method].reindex(taps)
        fig.add_trace(_trace(method, taps, part["mean"], errors(part["mean"], part["std"], n)))
    bars = "Wilson 95% intervals" if n else "± std over seeds" if df["seed"].nunique() > 1 else ""
    fig.update_layout(title=(title or metric_title(metric, split)) + (f" ({bars})" if bars else ""),
                      xaxis_title="layer (input → output)", yaxis_title=metric_name(metric), height=440,
                      legend_title="method", legend_groupclick="toggleitem")
    return fit_legend(_with_group_menu(fig, methods) if group_menu else fig)


def relearn_curves(df: pd.DataFrame, methods: list[str] | None = None, title: str | None = None) -> go.Figure:
    """The relearning attack: the forgotten classes' test accuracy against fine-tuning steps on the attacker's
    few images, one line per method, `retrain` dashed and `original` dotted in black, the retrained models'
    range as a grey band. A method that hid the class climbs above the band; one that resists far more than
    the retrained models stays far below it."""
    rows = df[(df["metric"] == "relearn_accuracy") & (df["split"] == "test_forget")]
    rows = rows.assign(step=rows["layer"].str.removeprefix("step").astype(int))
    everyone = rows.groupby(["method", "step"], sort=True)["value"].mean()
    means = everyone.unstack("step") if len(everyone) else pd.DataFrame()
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    stats = rows.groupby(["method", "step"], sort=True)["value"].agg(["mean", "std"])
    n = test_forget_size(df[df["method"].isin(rows["method"].unique())] if len(rows) else df)
    shown = drop_members(method_order(rows["method"]))
    fig = go.Figure(_population_band(means, list(means.columns)) if "retrain" in shown else [])
    for method in shown:
        part = stats.loc[method]
        fig.add_trace(_trace(method, list(part.index), part["mean"], errors(part["mean"], part["std"], n)))
    bars = "Wilson 95% intervals" if n else "± std over seeds or cells"
    fig.update_layout(title=(title or "Relearning attack: the forgotten class's test accuracy while fine-tuning on a "
                             "few images") + f" ({bars})",
                      xaxis_title="fine-tuning steps on the attacker's images",
                      yaxis=dict(title="accuracy (test_forget)", range=[-0.05, 1.05]), height=440, legend_title="method",
                      legend_groupclick="toggleitem")
    return fit_legend(_with_group_menu(fig, shown))


def interpolation_curves(df: pd.DataFrame, methods: list[str], title: str | None = None) -> go.Figure:
    """Accuracy along the straight line from `original` (t = 0) to each method (t = 1), on the forgotten
    class's test images (left) and the retained classes' (right): a method that stayed in the original's
    basin keeps the class along the whole line, until the very end."""
    rows = df[(df["metric"] == "interpolation_accuracy") & df["method"].isin(methods)]
    rows = rows.assign(t=rows["layer"].str.removeprefix("t").astype(float))
    n = test_forget_size(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("forgotten class (test_forget)", "retained classes (test_retain)"),
                        horizontal_spacing=0.08)
    for col, split in enumerate(("test_forget", "test_retain"), start=1):
        stats = rows[rows["split"] == split].groupby(["method", "t"], sort=True)["value"].agg(["mean", "std"])
        for method in method_order(rows["method"]):
            if method not in stats.index.get_level_values("method"):
                continue
            part = stats.loc[method]
            trace = _trace(method, list(part.index), part["mean"], errors(part["mean"], part["std"],
                                                                          n if split == "test_forget" else None))
            fig.add_trace(trace.update(showlegend=col == 1, legendgroup=method), row=1, col=col)
    fig.update_xaxes(title_text="t: (1 - t) · original + t · method", tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_yaxes(title_text="accuracy", range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=2)
    fig.update_layout(title=title or "Along the line from the original to each method", height=440,
                      legend_title="method")
    return fit_legend(fig)


def plugin_layer_curves(
    df: pd.DataFrame, baselines: list[str], metric: str, split: str, taps: list[str], title: str | None = None,
    variant: str | None = None,
) -> go.Figure:
    """Per-layer `metric` of one baseline B, of B+ec (and B+`variant`), with `retrain` and `ec` as references; a
    menu picks B. A mean over layers hides where a plug-in acts; this shows it layer by layer, and the menu
    keeps working in the offline report."""
    means = layer_stats(df, metric, split)["mean"].unstack("layer").reindex(columns=taps)

    def curve(method: str, visible: bool = True, dash: str | None = None) -> go.Scatter:
        y = means.loc[method] if method in means.index else [np.nan] * len(taps)
        line = {**line_style(method), **({"dash": dash} if dash else {})}
        return go.Scatter(x=taps, y=list(y), name=method, mode="lines+markers", line=line, visible=visible,
                          marker=dict(symbol=marker_symbol(method), size=7))

    fig = go.Figure()
    references = [m for m in ("retrain", "ec") if m in means.index]
    for method in references:
        fig.add_trace(curve(method, dash="dash" if method == "retrain" else "dot"))
    members = ["", "+ec", *([f"+{variant}"] if variant else [])]
    for i, base in enumerate(baselines):
        for suffix in members:
            fig.add_trace(curve(base + suffix, visible=i == 0))
    n, k = len(references), len(members)
    buttons = [dict(label=base, method="update",
                    args=[{"visible": [True] * n + [j // k == i for j in range(k * len(baselines))]}])
               for i, base in enumerate(baselines)]
    fig.update_layout(
        title=title or f"{metric_title(metric, split)}: baseline vs baseline + EC",
        xaxis_title="layer (input → output)", yaxis_title=metric_name(metric), height=440, legend_title="method",
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.02, yanchor="bottom")] if buttons else [],
        margin=dict(t=110),
    )
    return fit_legend(fig)
