"""Bars: a whole-model figure per method, a baseline next to its plug-ins, a figure's spread over cells.

Every bar is labelled with its value, so a zero is visibly a zero; accuracies on the forgotten class's test
images carry their Wilson 95% interval (one seed) or the spread over seeds; retain accuracy is drawn on an
axis that shows the 0.03 that decides a method's cost."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..results import method_order
from ..verdicts import RETAIN_TOL
from .curves import errors, test_forget_size
from .style import drop_members, method_color, metric_name, metric_title

# A value label's font size, smaller where many bars share a panel (13 bars' "0.00"s ran into each other at 12).
LABEL_SIZE, CROWDED_LABEL_SIZE, CROWDED = 12, 9, 8
SPLIT_TITLES = {"forget_train": "forget set D_f (forget_train)", "test_forget": "forgotten class, test images",
                "test_retain": "retained classes, test images"}


def _bars(methods: list[str], mean: pd.Series, error_y: dict | None = None) -> list[go.BaseTraceType]:
    """The bars, and their values as text just above each bar's error bar: a label at the bar's top sits on the
    error bar (every "0.00" of an all-zero panel did)."""
    tops = np.asarray(mean, dtype=float).copy()
    if error_y is not None and error_y.get("visible", True):
        tops = tops + np.asarray(error_y["array"], dtype=float)
    bar = go.Bar(x=methods, y=list(mean), marker_color=[method_color(m) for m in methods], error_y=error_y,
                 showlegend=False)
    labels = go.Scatter(x=methods, y=list(np.nan_to_num(tops)), mode="text", text=[f"{v:.2f}" for v in mean],
                        textposition="top center", cliponaxis=False, showlegend=False, hoverinfo="skip",
                        textfont=dict(size=LABEL_SIZE if len(methods) <= CROWDED else CROWDED_LABEL_SIZE))
    return [bar, labels]


def accuracy_bars(df: pd.DataFrame, methods: list[str] | None = None, title: str | None = None) -> go.Figure:
    """Accuracy per method on the forget set, the forgotten class's test images and the retained classes' test
    images, one panel each. The retain panel's axis starts near the lowest value, with `original`'s accuracy
    minus 0.03 as a line: a method below it hurts retain accuracy."""
    rows = df[(df["metric"] == "accuracy") & (df["layer"] == "")]
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    splits = [s for s in SPLIT_TITLES if s in set(rows["split"])]
    order = drop_members(method_order(rows["method"]))
    fig = make_subplots(rows=1, cols=len(splits), subplot_titles=[SPLIT_TITLES[s] for s in splits],
                        horizontal_spacing=0.06)
    n = test_forget_size(df)
    for col, split in enumerate(splits, start=1):
        stats = rows[rows["split"] == split].groupby("method")["value"].agg(["mean", "std"]).reindex(order)
        fig.add_traces(_bars(order, stats["mean"], errors(stats["mean"], stats["std"], n if split == "test_forget" else None)),
                       rows=1, cols=col)
        if split == "test_retain" and "original" in stats.index:
            floor = stats.loc["original", "mean"] - RETAIN_TOL
            low = min(stats["mean"].min(), floor)
            fig.update_yaxes(range=[max(0.0, low - 0.05), 1.02], row=1, col=col)
            fig.add_hline(y=floor, line_dash="dash", line_color="black", row=1, col=col)
            # the line's label in the margin beside the panel, where no bar can cover it
            axis = "x" if col == 1 else f"x{col}"
            fig.add_annotation(text=f"original<br>− {RETAIN_TOL}", x=1.01, xref=f"{axis} domain", xanchor="left", y=floor,
                               yref=axis.replace("x", "y"), showarrow=False, align="left")
        else:
            fig.update_yaxes(range=[0, 1.12], row=1, col=col)
    fig.update_xaxes(tickangle=-45)
    fig.update_layout(title=title or "Accuracy per split", yaxis_title="accuracy", height=460, bargap=0.25,
                      margin=dict(r=90))
    return fig


def metric_bars(df: pd.DataFrame, metric: str, split: str, methods: list[str] | None = None, title: str | None = None,
                yaxis_title: str | None = None, line: tuple[float, str] | None = None) -> go.Figure:
    """One whole-model metric per method (mean over seeds, the std as error bars), `line` an optional
    (value, label) reference line."""
    rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] == "")]
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    order = drop_members(method_order(rows["method"]))
    stats = rows.groupby("method")["value"].agg(["mean", "std"]).reindex(order)
    fig = go.Figure(_bars(order, stats["mean"], errors(stats["mean"], stats["std"], None)))
    if line is not None:
        fig.add_hline(y=line[0], line_dash="dot", line_color="black", annotation_text=line[1],
                      annotation_position="top left")
    top = max(stats["mean"].max(), line[0] if line else 0)
    fig.update_layout(title=title or metric_title(metric, split),
                      yaxis=dict(title=yaxis_title or metric_name(metric), range=[0, top * 1.15 + 1e-9]),
                      xaxis_tickangle=-45, height=420)
    return fig


def plugin_bars(table: pd.DataFrame, baselines: list[str], column: str, title: str | None = None,
                variants: tuple[str, ...] = ("ec",), lines: tuple[str, ...] = ("retrain", "ec")) -> go.Figure:
    """`column` of a `judge` table for each baseline B next to its plug-ins B+variant (in the family's shades),
    with `lines` (methods of the table) as reference lines, labelled on alternate sides. A method missing
    from `table` (failed, or not run) leaves its bar out."""
    values = table[column]
    fig = go.Figure()
    for suffix in ("", *(f"+{v}" for v in variants)):
        names = [b + suffix for b in baselines]
        ys = values.reindex(names)
        fig.add_trace(go.Bar(name=f"baseline{suffix}" if suffix else "baseline", x=baselines, y=list(ys),
                             marker_color=[method_color(n) for n in names], text=[f"{v:.2f}" for v in ys],
                             textposition="auto", insidetextanchor="end", cliponaxis=False, hovertext=names))
    # the lines run behind the bars and their value labels; their own labels alternate sides, so close lines keep
    # theirs apart
    for i, method in enumerate(m for m in lines if m in table.index):
        fig.add_hline(y=table.loc[method, column], line_dash="dash" if method == "retrain" else "dot",
                      line_color="black", layer="below", annotation_text=method,
                      annotation_position="top right" if i % 2 == 0 else "top left")
    fig.update_layout(barmode="group", title=title or metric_name(column), yaxis_title=metric_name(column), height=420,
                      legend_title="bars (left to right)")
    return fig


def spread_bars(table: pd.DataFrame, column: str, methods: list[str] | None = None, title: str | None = None) -> go.Figure:
    """`column` of a sweep's verdicts per method: mean over cells with the std as error bars, each cell's
    value as a dot, and `retrain`'s mean as a dashed line."""
    rows = table if methods is None else table[table["method"].isin(methods)]
    stats = rows.groupby("method", sort=False)[column].agg(["mean", "std"])
    order = drop_members(method_order(stats.index))
    rows = rows[rows["method"].isin(order)]
    fig = go.Figure(_bars(order, stats.loc[order, "mean"], dict(type="data", array=list(stats.loc[order, "std"].fillna(0)))))
    fig.add_trace(go.Scatter(x=rows["method"], y=rows[column], mode="markers", name="one cell",
                             marker=dict(color="black", size=5)))
    if "retrain" in stats.index:
        fig.add_hline(y=stats.loc["retrain", "mean"], line_dash="dash", annotation_text="retrain",
                      annotation_position="top right")
    fig.update_layout(title=title or column, yaxis_title=column, height=420, xaxis_tickangle=-45)
    return fig
