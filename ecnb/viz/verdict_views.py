"""The verdicts as pictures: two figures of a `judge` table against each other, a sweep's verdict per method
and cell, and how many cells agree on each depth."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..results import is_member, is_reference, method_order
from ..verdicts import COST, DEPTH, DEPTHS, FEWSHOT_GAP, KEEPS_RETAIN, REFERENCE, RELEARN_GAP, VERDICT, WEIGHTS
from .style import DEPTH_STYLE

_LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left")


def evidence_map(table: pd.DataFrame, x: str, y: str, title: str | None = None) -> go.Figure:
    """Each method as a point, `x` against `y` (columns of `ecnb.verdicts.judge`), coloured and shaped by its
    depth (an open marker when it hurts retain accuracy), `retrain`'s values as dashed cross-hairs. Labels
    alternate around neighbouring points so they do not pile up; hovering gives the whole verdict."""
    table = table.dropna(subset=[x, y])
    others = table[[is_member(m) and m != "retrain" for m in table.index]]
    table = table.drop(index=others.index).assign(
        **{DEPTH: [REFERENCE if is_reference(m) else d for m, d in table.drop(index=others.index)[DEPTH].items()]})
    positions = {m: _LABEL_POSITIONS[i % len(_LABEL_POSITIONS)] for i, m in enumerate(table.sort_values(x).index)}
    fig = go.Figure()
    if len(others):
        fig.add_trace(go.Scatter(x=others[x], y=others[y], mode="markers", name="other retrained models",
                                 marker=dict(color="black", size=7, symbol="diamond-open"),
                                 hovertext=list(others.index), hoverinfo="text+x+y"))
    for depth in (REFERENCE, *DEPTHS):
        part = table[table[DEPTH] == depth]
        if part.empty:
            continue
        colour, symbol = DEPTH_STYLE[depth]
        open_ = [depth != REFERENCE and c != KEEPS_RETAIN for c in part[COST]]
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="markers+text", text=list(part.index), name=depth,
            textposition=[positions[m] for m in part.index], textfont=dict(size=11),
            marker=dict(color=colour, size=12, symbol=[f"{symbol}-open" if o else symbol for o in open_],
                        line=dict(width=2, color=colour)),
            hovertext=[f"{m}: {v}" for m, v in part[VERDICT].items()], hoverinfo="text+x+y",
        ))
    if "retrain" in table.index:
        fig.add_vline(x=table.loc["retrain", x], line_dash="dash", line_color="black")
        fig.add_hline(y=table.loc["retrain", y], line_dash="dash", line_color="black", annotation_text="retrain",
                      annotation_position="bottom right")
    fig.update_layout(title=title or f"{y} against {x}", xaxis_title=x, yaxis_title=y, height=520,
                      legend_title="depth (open: hurts retain)")
    return fig


def distance_scatter(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Weight distance to the original against the relearning gap, over the methods of a `judge` table:
    does how far a method moved the weights say how fast the class comes back?"""
    return evidence_map(table, WEIGHTS, RELEARN_GAP, title=title or
                        "Weight distance to the original against the relearning gap, one point per method")


def verdict_heatmap(verdicts: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Methods (rows, references first) x cells (columns): each method's depth in each cell of a sweep, its
    colour as in `evidence_map`; the text and hover give the whole verdict and its two gaps. `verdicts` is a
    sweep's `verdicts.csv` (one row per cell and method)."""
    order = [REFERENCE, *DEPTHS]
    cells = verdicts.assign(cell=verdicts["dataset"] + " · forget " + verdicts["forget_set"].astype(str)
                            + " · seed " + verdicts["seed"].astype(str))
    columns = list(dict.fromkeys(cells["cell"]))
    methods = method_order(cells["method"])
    grid = cells.set_index(["method", "cell"])
    z, text, hover = [], [], []
    for m in methods:
        row = [grid.loc[(m, c)] if (m, c) in grid.index else None for c in columns]
        z.append([order.index(REFERENCE if is_reference(m) else r[DEPTH]) if r is not None else None for r in row])
        text.append([_short(m, r) if r is not None else "" for r in row])
        hover.append([f"{m} in {c}: {r[VERDICT]}<br>relearning gap {r[RELEARN_GAP]:+.2f}, few-shot gap "
                      f"{r[FEWSHOT_GAP]:+.2f}" if r is not None else f"{m} in {c}: not measured"
                      for r, c in zip(row, columns)])
    n = len(order)
    scale = [[edge, DEPTH_STYLE[v][0]] for i, v in enumerate(order) for edge in (i / n, (i + 1) / n)]
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=methods, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text",
        colorscale=scale, zmin=-0.5, zmax=n - 0.5, showscale=False, xgap=2, ygap=2, textfont=dict(size=10),
    ))
    fig.update_layout(title=title or "Verdict of each method in each cell (colour: depth)",
                      yaxis=dict(autorange="reversed"), height=max(320, 26 * len(methods) + 160),
                      xaxis_title="cell (data set · forget set · seed)")
    return fig


def _short(method: str, row: pd.Series) -> str:
    """A cell's text: the depth, `−` when it hurts retain (`−?` undecided), `T` for each tell (`T?` undecided);
    a retrained model's null read passed (`null ok`) or not."""
    if method == "original":
        return "reference"
    if is_member(method):
        return "null ok" if row[DEPTH] == "erased" and row[COST] == KEEPS_RETAIN and not row["tells"] else "null fails"
    cost = "" if row[COST] == KEEPS_RETAIN else " −?" if "undecided" in row[COST] else " −"
    tells = [t.strip() for t in row["tells"].split(",")] if isinstance(row["tells"], str) and row["tells"] else []
    return row[DEPTH] + cost + "".join(" T?" if t.endswith("?") else " T" for t in tells)


def agreement_figure(agreement: pd.DataFrame, title: str | None = None) -> go.Figure:
    """How many cells give each depth, per method (stacked bars, from `ecnb.sweep.agreement`): a bar of one
    colour is a verdict that holds over forget classes and seeds; a mixed one flips."""
    rows = agreement[agreement["method"].map(lambda m: not is_reference(m))]
    fig = go.Figure([go.Bar(y=rows["method"], x=rows[d], name=d, orientation="h", marker_color=DEPTH_STYLE[d][0],
                            text=[str(v) if v else "" for v in rows[d]], textposition="inside")
                     for d in DEPTHS])
    fig.update_layout(barmode="stack", title=title or "How many cells give each depth, per method",
                      xaxis_title="cells", yaxis=dict(autorange="reversed"), height=max(320, 24 * len(rows) + 160),
                      legend_title="depth")
    return fig
