"""The verdicts as pictures: two figures of a `judge` table against each other, a sweep's verdict per method
and cell, and how many cells agree on each depth."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ..results import is_member, is_reference, method_order
from ..verdicts import COST, DEPTH, DEPTHS, FEWSHOT_GAP, KEEPS_RETAIN, REFERENCE, RELEARN_GAP, VERDICT, WEIGHTS
from .style import DEPTH_STYLE

# The scatter's geometry in pixels, fixed so that labels can be placed apart before the browser draws them: the
# figure, its margins (the legend on the right), a label's height and a character's width at LABEL_SIZE.
MAP_WIDTH, MAP_HEIGHT = 900, 560
MAP_MARGIN = dict(l=70, r=230, t=80, b=60)
LABEL_SIZE, LABEL_HEIGHT, CHAR_WIDTH, MARKER_RADIUS = 11, 15, 6.6, 8
MAP_PADDING = 0.1  # of each axis's span, around the points
OPEN_NOTE = "open marker: does not keep retain (hurts, or undecided)"


def evidence_map(table: pd.DataFrame, x: str, y: str, title: str | None = None) -> go.Figure:
    """Each method as a point, `x` against `y` (columns of `ecnb.verdicts.judge`), coloured and shaped by its
    depth (an open marker when it does not keep retain accuracy), `retrain`'s values as dashed cross-hairs. Every
    label is placed apart from the other labels and points (`place_labels`), joined to its point by a thin line;
    hovering gives the whole verdict. The legend shows each depth's filled marker and what an open one means."""
    table = table.dropna(subset=[x, y])
    others = table[[is_member(m) and m != "retrain" for m in table.index]]
    table = table.drop(index=others.index)
    table = table.assign(**{DEPTH: [REFERENCE if is_reference(m) else d for m, d in table[DEPTH].items()]})
    open_ = pd.Series([not is_reference(m) and c != KEEPS_RETAIN for m, c in table[COST].items()], index=table.index)
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
        line = dict(width=2, color=colour)
        # the legend's entry: the depth's filled marker, whatever the cost of its methods
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=depth, legendgroup=depth,
                                 marker=dict(color=colour, size=12, symbol=symbol, line=line)))
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="markers", name=depth, legendgroup=depth, showlegend=False,
            marker=dict(color=colour, size=12, symbol=[f"{symbol}-open" if open_[m] else symbol for m in part.index],
                        line=line),
            hovertext=[f"{m}: {v}" for m, v in part[VERDICT].items()], hoverinfo="text+x+y",
        ))
    if open_.any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=OPEN_NOTE,
                                 marker=dict(color="#7f7f7f", size=12, symbol="circle-open", line=dict(width=2))))
    ranges = {axis: _padded(pd.concat([table[column], others[column]])) for axis, column in (("x", x), ("y", y))}
    points = {m: _pixels(table.loc[m, x], table.loc[m, y], ranges) for m in table.index}
    extra = [_pixels(a, b, ranges) for a, b in zip(others[x], others[y])]
    for method, (dx, dy) in place_labels(points, extra).items():
        fig.add_annotation(x=table.loc[method, x], y=table.loc[method, y], text=method, ax=dx, ay=dy, showarrow=True,
                           arrowhead=0, arrowwidth=1, arrowcolor="#9e9e9e", standoff=MARKER_RADIUS,
                           font=dict(size=LABEL_SIZE), bgcolor="rgba(255, 255, 255, 0.75)")  # legible over a line
    if "retrain" in table.index:
        fig.add_vline(x=table.loc["retrain", x], line_dash="dash", line_color="black")
        fig.add_hline(y=table.loc["retrain", y], line_dash="dash", line_color="black")
    fig.update_xaxes(range=ranges["x"], autorange=False)
    fig.update_yaxes(range=ranges["y"], autorange=False)
    fig.update_layout(title=title or f"{y} against {x}", xaxis_title=x, yaxis_title=y, width=MAP_WIDTH,
                      height=MAP_HEIGHT, margin=MAP_MARGIN, legend_title="depth (dashed: retrain)")
    return fig


def _padded(values: pd.Series) -> list[float]:
    lo, hi = float(values.min()), float(values.max())
    pad = MAP_PADDING * (hi - lo) if hi > lo else 0.5
    return [lo - pad, hi + pad]


def _plot_size() -> tuple[float, float]:
    return (MAP_WIDTH - MAP_MARGIN["l"] - MAP_MARGIN["r"], MAP_HEIGHT - MAP_MARGIN["t"] - MAP_MARGIN["b"])


def _pixels(a: float, b: float, ranges: dict[str, list[float]]) -> tuple[float, float]:
    """A point's position in the plot area, in pixels from its top left corner."""
    w, h = _plot_size()
    (x0, x1), (y0, y1) = ranges["x"], ranges["y"]
    return (a - x0) / (x1 - x0) * w, (y1 - b) / (y1 - y0) * h


def label_box(point: tuple[float, float], offset: tuple[float, float], text: str) -> tuple[float, float, float, float]:
    """The pixels (left, top, right, bottom) a label covers when its centre is `offset` away from `point`."""
    cx, cy = point[0] + offset[0], point[1] + offset[1]
    half_w, half_h = CHAR_WIDTH * len(text) / 2 + 2, LABEL_HEIGHT / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(points: dict[str, tuple[float, float]], others: list[tuple[float, float]] = ()) -> dict[str, tuple[float, float]]:
    """Each label's offset (pixels) from its point, chosen greedily, most crowded points first: the nearest of
    rings of candidate places around the point whose box stays in the plot and covers no placed label and no
    point (`others` are unlabelled points). Where every candidate collides, the least covered one."""
    w, h = _plot_size()
    markers = [(px - MARKER_RADIUS, py - MARKER_RADIUS, px + MARKER_RADIUS, py + MARKER_RADIUS)
               for px, py in [*points.values(), *others]]
    crowd = {m: sum(abs(p[0] - q[0]) + abs(p[1] - q[1]) < 80 for q in points.values()) for m, p in points.items()}
    placed: dict[str, tuple[float, float]] = {}
    boxes: list[tuple[float, ...]] = []
    for method in sorted(points, key=lambda m: -crowd[m]):
        point, best = points[method], None
        for radius in (14, 26, 40, 56, 76, 100, 130):
            for angle in range(0, 360, 30):
                a = math.radians(angle)
                half_w = CHAR_WIDTH * len(method) / 2
                offset = (math.cos(a) * (radius + half_w), -math.sin(a) * (radius + LABEL_HEIGHT / 2))
                box = label_box(point, offset, method)
                outside = box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h
                cost = sum(_overlap(box, b) for b in [*boxes, *markers]) + (1e6 if outside else 0.0)
                if best is None or cost < best[0]:
                    best = (cost, offset, box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        placed[method] = best[1]
        boxes.append(best[2])
    return placed


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
