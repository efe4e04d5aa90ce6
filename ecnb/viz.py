"""Plotly figures for the notebooks. Figures are returned, not shown, so tests can inspect them."""
from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from .data import Dataset, ForgetSplit
from .results import method_order


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

FORGET_COLOR = "#d62728"
RETAIN_COLOR = "#7f7f7f"
METHOD_COLORS = {"original": "#1f77b4", "retrain": "#2ca02c"}
SPLIT_COLORS = {"forget_train": FORGET_COLOR, "test_forget": "#ff9896", "retain_train": "#1f77b4", "test_retain": "#aec7e8"}


def sample_grid(ds: Dataset, split: ForgetSplit, per_class: int = 8, seed: int = 0) -> go.Figure:
    """One row of training images per class, tiled into a single image; forget-set images framed in red."""
    rng = np.random.default_rng(seed)
    y = ds.y_train.cpu().numpy()
    forget = np.zeros(len(y), dtype=bool)
    forget[split.forget_idx] = True
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(ds.num_classes)])
    images = to_image_batch(ds.x_train[torch.as_tensor(idx, device=ds.x_train.device)])
    h, w = images.shape[1:3]
    b = max(1, h // 12)  # frame width
    tiles = np.full((len(idx), h + 2 * b, w + 2 * b, 3), 255, dtype=np.uint8)
    tiles[forget[idx]] = np.array([214, 39, 40], dtype=np.uint8)
    tiles[:, b : b + h, b : b + w] = images
    th, tw = tiles.shape[1:3]
    grid = tiles.reshape(ds.num_classes, per_class, th, tw, 3).transpose(0, 2, 1, 3, 4)
    fig = go.Figure(go.Image(z=grid.reshape(ds.num_classes * th, per_class * tw, 3), hoverinfo="skip"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(
        tickvals=[(c + 0.5) * th for c in range(ds.num_classes)], ticktext=ds.classes, title="class", showgrid=False
    )
    fig.update_layout(
        title="Training samples, one row per class (forget set framed in red)",
        height=min(900, 48 * ds.num_classes + 90), width=520, margin=dict(l=60, r=10, t=50, b=10),
    )
    return fig


def per_class_accuracy_figure(
    accuracies: dict[str, list[float]], classes: list[str], forget_classes: tuple[int, ...]
) -> go.Figure:
    """Grouped bars of test accuracy per class for each model; forgotten classes' labels in red."""
    labels = [f"<b style='color:{FORGET_COLOR}'>{c} (forgotten)</b>" if i in forget_classes else c
              for i, c in enumerate(classes)]
    fig = go.Figure([
        go.Bar(name=method, x=labels, y=acc, marker_color=METHOD_COLORS.get(method))
        for method, acc in accuracies.items()
    ])
    fig.update_layout(
        barmode="group", title="Test accuracy per class", yaxis=dict(title="accuracy", range=[0, 1.05]),
        xaxis_title="class", legend_title="model", height=380,
    )
    return fig


def to_image_batch(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) normalised tensors as (N, H, W, 3) uint8 images, each scaled to its own range."""
    x = x.detach().cpu().float()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo + 1e-8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def split_bars(df: pd.DataFrame, metric: str = "accuracy", title: str | None = None) -> go.Figure:
    """Whole-model `metric` per method (x) and split (colour), mean over seeds with the std as error bars."""
    rows = df[(df["metric"] == metric) & (df["layer"] == "")]
    stats = rows.groupby(["method", "split"], sort=False)["value"].agg(["mean", "std"]).reset_index()
    methods = method_order(rows["method"])
    fig = go.Figure()
    for split in dict.fromkeys(rows["split"]):
        part = stats[stats["split"] == split].set_index("method").reindex(methods)
        fig.add_trace(go.Bar(
            name=split or metric, x=methods, y=part["mean"], error_y=dict(type="data", array=part["std"].fillna(0)),
            marker_color=SPLIT_COLORS.get(split),
        ))
    fig.update_layout(barmode="group", title=title or f"{metric} per method", yaxis_title=metric, height=400,
                      legend_title="split")
    return fig


def layer_stats(df: pd.DataFrame, metric: str, split: str) -> pd.DataFrame:
    """Mean and std over seeds of a per-layer metric on one split, indexed by (method, layer)."""
    rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] != "")]
    return rows.groupby(["method", "layer"], sort=False)["value"].agg(["mean", "std"])


def layer_curves(df: pd.DataFrame, metric: str, split: str, taps: list[str], title: str | None = None) -> go.Figure:
    """A per-layer metric across the network (x: layer, input to output), one line per method.

    `retrain` is drawn as a dashed black reference curve.
    """
    stats = layer_stats(df, metric, split)
    fig = go.Figure()
    for method in method_order(stats.index.get_level_values("method")):
        part = stats.loc[method].reindex(taps)
        reference = method == "retrain"
        fig.add_trace(go.Scatter(
            x=taps, y=part["mean"], name=method, mode="lines+markers",
            error_y=dict(type="data", array=part["std"].fillna(0), visible=bool(part["std"].notna().any())),
            line=dict(dash="dash", color="black", width=3) if reference else dict(color=METHOD_COLORS.get(method)),
        ))
    fig.update_layout(title=title or f"{metric} on {split}", xaxis_title="layer (input → output)",
                      yaxis_title=metric, height=420, legend_title="method")
    return fig


def plugin_bars(table: pd.DataFrame, baselines: list[str], column: str, title: str | None = None,
                variant: str = "ec") -> go.Figure:
    """`column` of a `judge` table for each baseline B next to its plug-in B+`variant`, with `variant`
    alone (dotted) and `retrain` (dashed) as lines. A method missing from `table` (failed, or not run)
    leaves its bar out."""
    values = table[column]
    fig = go.Figure([
        go.Bar(name="baseline", x=baselines, y=list(values.reindex(baselines)), marker_color=RETAIN_COLOR),
        go.Bar(name=f"baseline + {variant}", x=baselines, y=list(values.reindex([f"{b}+{variant}" for b in baselines])),
               marker_color=FORGET_COLOR),
    ])
    for method, dash in (("retrain", "dash"), (variant, "dot")):
        if method in table.index:
            fig.add_hline(y=table.loc[method, column], line_dash=dash, annotation_text=method)
    fig.update_layout(barmode="group", title=title or column, yaxis_title=column, height=400)
    return fig


def plugin_layer_curves(
    df: pd.DataFrame, baselines: list[str], metric: str, split: str, taps: list[str], title: str | None = None
) -> go.Figure:
    """Per-layer `metric` of one baseline B and of B+ec, with `retrain` (dashed) and `ec` (dotted) as
    references; a menu picks B. A mean over layers hides where a plug-in acts, this shows it layer by layer,
    and the menu keeps working in the offline report."""
    means = layer_stats(df, metric, split)["mean"].unstack("layer").reindex(columns=taps)

    def curve(method: str, **style) -> go.Scatter:
        y = means.loc[method] if method in means.index else [np.nan] * len(taps)
        return go.Scatter(x=taps, y=list(y), name=method, mode="lines+markers", **style)

    fig = go.Figure()
    references = [m for m in ("retrain", "ec") if m in means.index]
    for method in references:
        fig.add_trace(curve(method, line=dict(color="black", dash="dash" if method == "retrain" else "dot", width=3)))
    for i, base in enumerate(baselines):
        fig.add_trace(curve(base, line=dict(color=RETAIN_COLOR), visible=i == 0))
        fig.add_trace(curve(f"{base}+ec", line=dict(color=FORGET_COLOR), visible=i == 0))
    n = len(references)
    buttons = [
        dict(label=base, method="update",
             args=[{"visible": [True] * n + [j // 2 == i for j in range(2 * len(baselines))]}])
        for i, base in enumerate(baselines)
    ]
    fig.update_layout(
        title=title or f"{metric} on {split}: baseline vs baseline + EC", xaxis_title="layer (input → output)",
        yaxis_title=metric, height=420, legend_title="method",
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.15, yanchor="top")] if buttons else [],
    )
    return fig


def relearn_curves(df: pd.DataFrame, methods: list[str] | None = None, title: str | None = None) -> go.Figure:
    """The relearning attack: the forgotten classes' test accuracy against fine-tuning steps on the
    attacker's few images, one line per method (mean over seeds, std as error bars), `retrain` dashed and
    `original` dotted in black. A method that hid the class climbs within a few steps; `retrain` stays low."""
    rows = df[(df["metric"] == "relearn_accuracy") & (df["split"] == "test_forget")]
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    rows = rows.assign(step=rows["layer"].str.removeprefix("step").astype(int))
    stats = rows.groupby(["method", "step"], sort=True)["value"].agg(["mean", "std"])
    fig = go.Figure()
    for method in method_order(rows["method"]):
        part = stats.loc[method]
        style = {"retrain": dict(dash="dash", color="black", width=3), "original": dict(dash="dot", color="black", width=3)}
        fig.add_trace(go.Scatter(
            x=list(part.index), y=part["mean"], name=method, mode="lines+markers",
            error_y=dict(type="data", array=part["std"].fillna(0), visible=bool(part["std"].notna().any())),
            line=style.get(method, dict(color=METHOD_COLORS.get(method))),
        ))
    fig.update_layout(title=title or "Relearning attack: forgotten classes' test accuracy while fine-tuning on a few images",
                      xaxis_title="fine-tuning steps on the attacker's images", yaxis=dict(title="accuracy (test_forget)",
                      range=[-0.03, 1.03]), height=420, legend_title="method")
    return fig


VERDICT_STYLE = {
    "reference": ("black", "diamond"), "keeps the class": ("#7f7f7f", "x"), "hurts retain": ("#8c564b", "x"),
    "superficial": (FORGET_COLOR, "circle"), "forgets at the output": ("#ff7f0e", "square"), "erased": ("#2ca02c", "star"),
}


def evidence_map(table: pd.DataFrame, x: str, y: str, title: str | None = None) -> go.Figure:
    """Each method as a point, `x` against `y` (columns of `ecnb.verdicts.judge`), coloured by its verdict,
    with `retrain`'s values as dashed cross-hairs: where CKA (x) and an attack (y) disagree, it shows."""
    fig = go.Figure()
    for verdict, part in table.groupby("verdict", sort=False):
        colour, symbol = VERDICT_STYLE.get(verdict, ("#1f77b4", "circle"))
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="markers+text", text=list(part.index), textposition="top center",
            name=verdict, marker=dict(color=colour, symbol=symbol, size=11),
        ))
    if "retrain" in table.index:
        fig.add_vline(x=table.loc["retrain", x], line_dash="dash", line_color="black")
        fig.add_hline(y=table.loc["retrain", y], line_dash="dash", line_color="black", annotation_text="retrain")
    fig.update_layout(title=title or f"{y} against {x}", xaxis_title=x, yaxis_title=y, height=480,
                      legend_title="verdict")
    return fig


def verdict_heatmap(verdicts: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Methods (rows, references first) x cells (columns): each method's verdict in each cell of a sweep,
    coloured as in `evidence_map`; hovering shows the relearn and few-shot figures behind it.
    `verdicts` is a sweep's `verdicts.csv` (one row per cell and method)."""
    from .verdicts import FEWSHOT, RELEARN

    order = list(VERDICT_STYLE)
    cells = verdicts.assign(cell=verdicts["dataset"] + " · forget " + verdicts["forget_set"].astype(str)
                            + " · seed " + verdicts["seed"].astype(str))
    columns = list(dict.fromkeys(cells["cell"]))
    methods = method_order(cells["method"])
    grid = cells.set_index(["method", "cell"])
    z, text, hover = [], [], []
    for m in methods:
        row = [grid.loc[(m, c)] if (m, c) in grid.index else None for c in columns]
        z.append([order.index(r["verdict"]) if r is not None else None for r in row])
        text.append([r["verdict"] if r is not None else "" for r in row])
        hover.append([f"{m} in {c}: {r['verdict']}<br>relearn {r[RELEARN]:.2f}, few-shot {r[FEWSHOT]:.2f}"
                      if r is not None else f"{m} in {c}: not measured" for r, c in zip(row, columns)])
    n = len(order)
    scale = [[edge, VERDICT_STYLE[v][0]] for i, v in enumerate(order) for edge in (i / n, (i + 1) / n)]
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=methods, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text",
        colorscale=scale, zmin=-0.5, zmax=n - 0.5, showscale=False, xgap=2, ygap=2,
    ))
    fig.update_layout(title=title or "Verdict of each method in each cell", yaxis=dict(autorange="reversed"),
                      height=max(320, 28 * len(methods) + 140), xaxis_title="cell (data set · forget set · seed)")
    return fig


def spread_bars(table: pd.DataFrame, column: str, methods: list[str] | None = None, title: str | None = None) -> go.Figure:
    """`column` of a sweep's verdicts per method: mean over cells with the std as error bars, each cell's
    value as a dot, and `retrain`'s mean as a dashed line."""
    rows = table if methods is None else table[table["method"].isin(methods)]
    stats = rows.groupby("method", sort=False)[column].agg(["mean", "std"])
    order = method_order(stats.index)
    fig = go.Figure(go.Bar(x=order, y=stats.loc[order, "mean"], name="mean over cells", marker_color=RETAIN_COLOR,
                           error_y=dict(type="data", array=stats.loc[order, "std"].fillna(0))))
    fig.add_trace(go.Scatter(x=rows["method"], y=rows[column], mode="markers", name="one cell",
                             marker=dict(color="black", size=5)))
    if "retrain" in stats.index:
        fig.add_hline(y=stats.loc["retrain", "mean"], line_dash="dash", annotation_text="retrain")
    fig.update_layout(title=title or column, yaxis_title=column, height=420)
    return fig
