"""The representation explorer: per-layer embedding figures, CKA curves, and the widgets that drive them.

Static figures carry their own controls (a slider over layers, dropdowns over which points and which
colouring), so they stay explorable in the HTML report without a kernel. `explorer` is the JupyterLab
version: ipywidgets pick methods, layer, split and colouring, and the figure is redrawn in an Output;
`attack_explorer` does the same for the recovery attacks (the explorer app of `make explore` shows both).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .embeddings import Atlas
from .results import is_reference, method_order
from .viz import FORGET_COLOR, RETAIN_COLOR, layer_curves, relearn_curves
from .viz.style import drop_members, fit_legend, groups

if TYPE_CHECKING:  # imported when a widget is made, so `import ecnb` does not pay for it
    import ipywidgets

SPLIT_VIEWS = ("both", "test_forget", "test_retain")
COLOURINGS = ("class", "split")
CKA_METRICS = ("cka_to_original", "cka_to_retrain")
# Kept classes cycle through D3's palette without its red, which marks the forgotten classes alone.
KEPT_COLORS = [c for c in qualitative.D3 if c.lower() != FORGET_COLOR]
PANELS = 6  # panels of the embedding figure: `original`, `retrain` and four other methods at a time
PANEL_COLUMNS = 3
# Pixels: a row of panels, the space above the panels (the title, the menus, then the layer slider), below.
ROW_HEIGHT, MARGIN_TOP, MARGIN_BOTTOM = 290, 200, 30
PADDING = 0.05  # fraction of a layer's extent added around its points


def pages(methods: list[str]) -> list[tuple[str, list[str]]]:
    """The methods of an embedding figure in pages of at most `PANELS` panels, each (label, methods): one
    page when they fit, otherwise `original` and `retrain` on every page, the others by group (baselines,
    Erase at the Core, plug-ins), so a grid stays a handful of panels."""
    if len(methods) <= PANELS:
        return [("all", list(methods))]
    references = [m for m in methods if m in ("original", "retrain")]
    per_page = PANELS - len(references)
    out = []
    for label, members in groups(methods).items():
        chunks = [members[i:i + per_page] for i in range(0, len(members), per_page)]
        for k, chunk in enumerate(chunks):
            out.append((label if len(chunks) == 1 else f"{label} ({k + 1}/{len(chunks)})", references + chunk))
    return out


def embedding_figure(
    atlas: Atlas,
    methods: list[str] | None = None,
    layers: list[str] | None = None,
    split: str = "both",
    colouring: str = "class",
    menus: bool = True,
) -> go.Figure:
    """One panel per method (in `atlas` order), one trace per class, forgotten classes on top in red.

    Every panel of a layer shares the same fixed axes, so positions compare across methods. With several
    layers the figure has one frame per layer and a slider over them, above the panels. With more methods
    than `PANELS`, a menu shows one page of them at a time (`pages`). `menus` adds dropdowns over
    `SPLIT_VIEWS` and `COLOURINGS`, which start at `split` and `colouring`; they change the points' opacity
    and colour, never which page is shown.
    """
    methods = atlas.methods if methods is None else [m for m in atlas.methods if m in methods]
    layers = atlas.layers if layers is None else [layer for layer in atlas.layers if layer in layers]
    if not methods or not layers:
        raise ValueError("the embedding figure needs at least one method and one layer")
    _check_choice(split, SPLIT_VIEWS, "split")
    _check_choice(colouring, COLOURINGS, "colouring")
    groups_ = _class_groups(atlas)
    book = pages(methods)
    slots = max(len(page) for _, page in book)
    cols = min(PANEL_COLUMNS, slots)
    rows = math.ceil(slots / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=_titles(book[0][1], slots),
                        horizontal_spacing=0.02, vertical_spacing=0.08 / rows)
    owner: list[int] = []  # the page of each trace
    for p, (_, page) in enumerate(book):
        for k, method in enumerate(page):
            for g in groups_:
                xy = _points(atlas, method, layers[0], g)
                name = atlas.classes[g.cls] + (" (forgotten)" if g.forgotten else "")
                fig.add_trace(go.Scatter(
                    x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, legendgroup=str(g.cls),
                    showlegend=k == 0, legendrank=1 if g.forgotten else 1000,  # the forgotten class first
                    visible=p == 0, marker=_marker(g, colouring, split),
                    hoverinfo="text" if _shown(g.forgotten, split) else "skip",
                    hovertext=f"{method}: class {atlas.classes[g.cls]}",
                ), row=k // cols + 1, col=k % cols + 1)
                owner.append(p)
    # Each panel framed on white, so that a slot the page leaves empty (its axes hidden) shows nothing at all.
    frame = dict(showticklabels=False, zeroline=False, autorange=False, showline=True, mirror=True, linecolor="#bbbbbb")
    fig.update_xaxes(frame)
    fig.update_yaxes(frame)
    _match_axes(fig)
    fig.update_layout(_axis_ranges(atlas, methods, layers[0], slots), plot_bgcolor="white")
    fig.update_layout(_slot_axes(len(book[0][1]), slots))
    title = f"UMAP of test images at {layers[0]}" if len(layers) == 1 else "UMAP of test images per layer"
    fig.update_layout(
        title=dict(text=title, y=0.995, yanchor="top"), legend=dict(title="class", tracegroupgap=0),
        height=MARGIN_TOP + MARGIN_BOTTOM + ROW_HEIGHT * rows, margin=dict(t=MARGIN_TOP, b=MARGIN_BOTTOM),
    )
    if len(layers) > 1:
        traces = [(m, g) for _, page in book for m in page for g in groups_]
        fig.frames = [
            go.Frame(name=layer, data=[
                go.Scatter(x=xy[:, 0], y=xy[:, 1]) for xy in (_points(atlas, m, layer, g) for m, g in traces)
            ], layout=_axis_ranges(atlas, methods, layer, slots))
            for layer in layers
        ]
        fig.update_layout(sliders=[_layer_slider(layers, above=55 / (ROW_HEIGHT * rows))])
    menu_y = 1 + 125 / (ROW_HEIGHT * rows)
    if menus:
        fig.update_layout(updatemenus=_menus(groups_, len(owner) // len(groups_), split, colouring, menu_y))
    if len(book) > 1:
        fig.update_layout(updatemenus=[*fig.layout.updatemenus, _page_menu(book, owner, slots, menu_y)])
    return fig


def cka_figure(results: pd.DataFrame, layers: list[str]) -> go.Figure:
    """`cka_to_original` and `cka_to_retrain` across layers, one panel per group of methods (the baselines, Erase
    at the Core, the plug-ins: a dozen lines in one panel tangle), the references and the retrained models' band
    in each, with a dropdown over (metric, split); clicking a legend entry hides a family in every panel."""
    rows = results[results["metric"].isin(CKA_METRICS) & (results["layer"] != "")]
    if rows.empty:
        raise ValueError("no CKA rows in the results: run notebook 02 with this run_dir first")
    present = set(zip(rows["metric"], rows["split"]))
    combos = [(m, s) for m in CKA_METRICS for s in dict.fromkeys(rows["split"]) if (m, s) in present]
    panels = groups(drop_members(method_order(rows["method"]))) or {"methods": []}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), shared_yaxes=True,
                        horizontal_spacing=0.03)
    owner = []  # the (metric, split) view of each trace
    for k, (metric, split) in enumerate(combos):
        for trace in layer_curves(rows, metric, split, layers, group_menu=False).data:
            homes = [c for c, members in enumerate(panels.values(), start=1) if trace.name in members]
            for c in homes or range(1, len(panels) + 1):  # a reference (or the band) in every panel
                shown = trace.showlegend is not False and (bool(homes) or c == 1)
                fig.add_trace(go.Scatter(trace).update(visible=k == 0, showlegend=shown), row=1, col=c)
                owner.append(k)
    buttons = [
        dict(label=f"{metric} · {split}", method="update",
             args=[{"visible": [o == k for o in owner]}, {"title.text": f"{metric} on {split}"}])
        for k, (metric, split) in enumerate(combos)
    ]
    metric, split = combos[0]
    fig.update_xaxes(title_text="layer (input → output)")
    fig.update_yaxes(title_text="CKA", col=1)
    fig.update_layout(title=dict(text=f"{metric} on {split}", y=0.98, yanchor="top"), height=440, margin=dict(t=120),
                      legend_title="method", legend_groupclick="togglegroup",  # the menu on the right, off the title
                      updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.2, yanchor="bottom")])
    return fit_legend(fig)


def explorer(atlas: Atlas) -> ipywidgets.VBox:
    """Widgets over `embedding_figure` for JupyterLab: methods, layer, split and colouring.

    Starts with the first four methods (`original` and `retrain` among them). Returns an ipywidgets box
    whose figure is redrawn whenever a control changes.
    """
    import ipywidgets as widgets

    methods = widgets.SelectMultiple(options=atlas.methods, value=tuple(atlas.methods[:4]),
                                     description="methods", rows=min(8, len(atlas.methods)))
    layer = widgets.SelectionSlider(options=atlas.layers, description="layer")
    split = widgets.ToggleButtons(options=SPLIT_VIEWS, description="split")
    colouring = widgets.ToggleButtons(options=COLOURINGS, description="colour by")
    out = _redrawn(methods, [methods, layer, split, colouring], lambda: embedding_figure(
        atlas, list(methods.value), [layer.value], split.value, colouring.value, menus=False))
    return widgets.VBox([widgets.HBox([methods, widgets.VBox([layer, split, colouring])]), out])


ATTACK_VIEWS = ("relearning", "few-shot probe")


def attack_explorer(results: pd.DataFrame, layers: list[str]) -> ipywidgets.VBox:
    """Widgets over the two recovery attacks of a run: pick methods and the attack, see its figure
    (relearning curves over fine-tuning steps, or the few-shot probe per layer) against `original` and
    `retrain`, which are always drawn as the two ends."""
    import ipywidgets as widgets

    chosen = [m for m in dict.fromkeys(results["method"]) if not is_reference(m)]
    methods = widgets.SelectMultiple(options=chosen, value=tuple(chosen[:2]), description="methods",
                                     rows=min(8, max(len(chosen), 1)))
    view = widgets.ToggleButtons(options=ATTACK_VIEWS, description="attack")

    def figure() -> go.Figure:
        shown = ["original", "retrain", *methods.value]
        if view.value == "relearning":
            return relearn_curves(results, shown)
        return layer_curves(results, "fewshot_probe_accuracy", "test_forget", layers, methods=shown,
                            title="Few-shot probe per layer on the forgotten classes' test images")

    out = _redrawn(methods, [methods, view], figure)
    return widgets.VBox([widgets.HBox([methods, view]), out])


def _redrawn(methods: ipywidgets.SelectMultiple, controls: list, figure: Callable[[], go.Figure]) -> ipywidgets.Output:
    """An Output showing `figure()`, drawn again whenever one of `controls` changes.

    The figure is set as the Output's `outputs` rather than displayed inside `with out:`. Capturing
    makes nbclient (under Voila) mirror each captured output back to the kernel on the shell channel while
    it waits there for the cell's reply, and now and then that reply is never seen: the app's page hung
    in 3 of 6 visits on a busy machine. Setting the outputs sends nothing back."""
    import ipywidgets as widgets

    out = widgets.Output()

    def draw(_change: object = None) -> None:
        if methods.value:
            bundle = figure()._repr_mimebundle_()  # what display() would show, by plotly's renderer (ecnb.viz)
            out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        else:
            out.outputs = ({"output_type": "stream", "name": "stdout", "text": "pick at least one method\n"},)

    for control in controls:
        control.observe(draw, names="value")
    draw()
    return out


def _match_axes(fig: go.Figure) -> None:
    """Every panel's axes follow the first panel's: zooming one zooms them all, so the same region is
    compared across methods. The first axes are left alone (matching an axis to itself is an error that
    plotly.js logs and ignores)."""
    for name in list(fig.layout):
        for letter in ("x", "y"):
            if name.startswith(f"{letter}axis") and name != f"{letter}axis":
                fig.layout[name].matches = letter


def _check_choice(value: str, valid: tuple[str, ...], name: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


class _Group(NamedTuple):
    """One class's points in the sample, drawn as one trace per panel."""

    cls: int
    forgotten: bool
    mask: np.ndarray
    color: str  # when coloured by class


def _class_groups(atlas: Atlas) -> list[_Group]:
    """Every class in the sample: kept classes first, each its own colour, then the forgotten ones in red
    (drawn on top)."""
    present = np.unique(atlas.sample.y).tolist()
    kept = [c for c in present if c not in atlas.forget_classes]
    return [_Group(c, False, atlas.sample.y == c, KEPT_COLORS[k % len(KEPT_COLORS)]) for k, c in enumerate(kept)] + [
        _Group(c, True, atlas.sample.y == c, FORGET_COLOR) for c in present if c in atlas.forget_classes
    ]


def _points(atlas: Atlas, method: str, layer: str, group: _Group) -> np.ndarray:
    """A class's points in one model's embedding of a layer, rounded to what a plot can show (the saved figures
    and the report carry every layer of every model)."""
    return np.round(atlas.coords[method][layer][group.mask].astype(np.float64), 3)


def _shown(forgotten: bool, split: str) -> bool:
    return split == "both" or (split == "test_forget") == forgotten


OPACITY = {True: 0.75, False: 0.0}  # a class's points shown, or hidden by the split menu


def _marker(group: _Group, colouring: str, split: str = "both") -> dict:
    shown = _shown(group.forgotten, split)
    if group.forgotten:
        return dict(color=group.color, size=8, line=dict(color="black", width=1), opacity=1.0 if shown else 0.0)
    return dict(color=group.color if colouring == "class" else RETAIN_COLOR, size=5, opacity=OPACITY[shown])


def _axis_ranges(atlas: Atlas, methods: list[str], layer: str, n_panels: int) -> dict:
    """The same padded x and y ranges for every panel: the extent of all methods' points in `layer`."""
    points = np.concatenate([atlas.coords[m][layer] for m in methods])
    lo, hi = points.min(0), points.max(0)
    pad = PADDING * (hi - lo)
    ranges = {}
    for i in range(1, n_panels + 1):
        suffix = "" if i == 1 else str(i)
        ranges[f"xaxis{suffix}"] = dict(range=[float(lo[0] - pad[0]), float(hi[0] + pad[0])])
        ranges[f"yaxis{suffix}"] = dict(range=[float(lo[1] - pad[1]), float(hi[1] + pad[1])])
    return ranges


def _layer_slider(layers: list[str], above: float) -> dict:
    """The slider over layers, just above the panels (`above`: its height above them, in paper units)."""
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    return dict(
        active=0, currentvalue=dict(prefix="layer: "), pad=dict(t=0, b=0), x=0, len=1.0, y=1 + above, yanchor="bottom",
        steps=[dict(label=layer, method="animate", args=[[layer], step_args]) for layer in layers],
    )


def _titles(page: list[str], slots: int) -> list[str]:
    """A page's panel titles, one per slot; an empty slot's is a space, so that its title exists to be set."""
    return page + [" "] * (slots - len(page))


def _slot_axes(filled: int, slots: int) -> dict:
    """The panels' axes shown for the first `filled` slots and hidden for the rest: a page with fewer methods than
    the grid has slots leaves no empty panel."""
    return {f"{letter}axis{'' if k == 1 else k}.visible": k <= filled for k in range(1, slots + 1) for letter in "xy"}


def _page_menu(book: list[tuple[str, list[str]]], owner: list[int], slots: int, y: float) -> dict:
    """A dropdown over the pages of methods: which traces are visible, the panels' titles and which panels show."""
    buttons = []
    for p, (label, page) in enumerate(book):
        titles = {f"annotations[{k}].text": title for k, title in enumerate(_titles(page, slots))}
        buttons.append(dict(label=label, method="update",
                            args=[{"visible": [o == p for o in owner]}, {**titles, **_slot_axes(len(page), slots)}]))
    return dict(buttons=buttons, active=0, x=1.0, xanchor="right", y=y, yanchor="bottom")


def _menus(groups: list[_Group], n_panels: int, split: str, colouring: str, y: float) -> list[dict]:
    """Dropdowns at height `y` (paper coordinates) that restyle the traces' markers, never their data (which the
    layer frames own) nor their visibility (which the page menu owns)."""
    traces = [g for _ in range(n_panels) for g in groups]
    kept = [i for i, g in enumerate(traces) if not g.forgotten]
    split_buttons = [
        dict(label="both splits" if view == "both" else f"{view} only", method="restyle",
             args=[{"marker.opacity": [_marker(g, colouring, view)["opacity"] for g in traces],
                    "hoverinfo": ["text" if _shown(g.forgotten, view) else "skip" for g in traces]}])
        for view in SPLIT_VIEWS
    ]
    colour_buttons = [
        dict(label=f"colour by {view}", method="restyle",
             args=[{"marker.color": [_marker(traces[i], view)["color"] for i in kept]}, kept])
        for view in COLOURINGS
    ]
    return [
        dict(buttons=split_buttons, active=SPLIT_VIEWS.index(split), x=0, xanchor="left", y=y, yanchor="bottom"),
        dict(buttons=colour_buttons, active=COLOURINGS.index(colouring), x=0.2, xanchor="left", y=y,
             yanchor="bottom"),
    ]
