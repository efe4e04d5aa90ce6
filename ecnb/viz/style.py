"""How every figure draws a method: one colour per method, a hue per family (a baseline B, its plug-ins B+ec
and B+variant share B's hue, lighter for each step away from B), the two references always in black
(`original` dotted, `retrain` dashed), and one marker per verdict depth."""
from __future__ import annotations

import colorsys
from functools import cache

import plotly.graph_objects as go

from ..ec import is_ec
from ..methods import builtin_baselines
from ..results import is_member

FORGET_COLOR = "#d62728"  # the forgotten class, in every embedding
RETAIN_COLOR = "#7f7f7f"
REFERENCE_LINES = {"original": dict(color="#555555", dash="dot", width=3), "retrain": dict(color="black", dash="dash", width=3)}
REFERENCE_BARS = {"original": "#9e9e9e", "retrain": "#212121"}
SPLIT_COLORS = {"forget_train": FORGET_COLOR, "test_forget": "#ff9896", "retain_train": "#1f77b4", "test_retain": "#aec7e8"}
# (hue, saturation, lightness) of the baselines in registry order, away from EC's red and the variant's magenta,
# each pair at least 26 apart in CIE76 colour difference (a just-noticeable one is about 2.3; 13 was ga's brown
# against cu's): a hue alone does not separate eleven lines, so lightness and saturation alternate too.
_BASELINE_HSL = (
    (210, 0.70, 0.40), (28, 0.95, 0.52), (120, 0.55, 0.35), (271, 0.40, 0.55), (15, 0.35, 0.33), (186, 0.80, 0.40),
    (60, 0.70, 0.36), (237, 0.45, 0.30), (90, 0.50, 0.55), (43, 0.85, 0.50), (180, 0.25, 0.30),
)
EC_HSL, VARIANT_HSL = (0, 0.80, 0.45), (305, 0.65, 0.38)  # the paper's EC in red, the variant beyond it in magenta
# How far a family's members move from its colour towards white: the baseline (or ec) itself, its EC plug-in (or an
# ablation), its variant plug-in.
_LIGHTER = {"base": 0.0, "ec": 0.45, "variant": 0.75}
ABLATION_DASH = "dashdot"  # an ablation's line, beside its method's solid one in the same hue
MARKERS = {"base": "circle", "ec": "square", "variant": "diamond"}


def family(name: str) -> tuple[str, str]:
    """(the family's root, the member's kind): ('ga', 'base'), ('ga', 'ec') for ga+ec, ('ga', 'variant') for
    ga+ec+soft; ('ec', 'base') for ec, ('ec', 'ec') for its ablations, ('ec', 'variant') for the variants
    and their ablations; references are their own family."""
    if name in REFERENCE_LINES:
        return name, "reference"
    if name == "ec":
        return "ec", "base"
    if name.startswith("ec["):
        return "ec", "ec"
    if name.startswith("ec+"):
        return "ec", "variant"
    if is_ec(name):
        base, _, rest = name.partition("+ec")
        return base, "ec" if rest == "" else "variant"
    return name, "base"


@cache
def method_color(name: str) -> str:
    """The method's colour, the same in every figure."""
    if name in REFERENCE_BARS:
        return REFERENCE_BARS[name]
    root, kind = family(name)
    if root == "ec":  # ec and its ablations in red, the variant and its ablations in magenta, ablations lighter
        hue, saturation, lightness = VARIANT_HSL if kind == "variant" else EC_HSL
        return _hsl(hue, saturation, _lighter(lightness, 0.75 if kind == "ec" or "[" in name else 0.0))
    known = builtin_baselines()  # a method a user brings gets a colour of its own name, the same in every kernel
    index = known.index(root) if root in known else len(known) + sum(map(ord, root))
    hue, saturation, lightness = _BASELINE_HSL[index % len(_BASELINE_HSL)]
    return _hsl(hue, saturation, _lighter(lightness, _LIGHTER[kind]))


def _lighter(lightness: float, step: float) -> float:
    return lightness + (0.88 - lightness) * step


def line_style(name: str) -> dict:
    """A method's line in a curve: the references' black dashes, an ablation's dash-dots (beside the solid line of
    the method it ablates, in the same hue), otherwise its colour, solid."""
    if name in REFERENCE_LINES:
        return dict(REFERENCE_LINES[name])
    return dict(color=method_color(name), width=2, **({"dash": ABLATION_DASH} if "[" in name else {}))


def marker_symbol(name: str) -> str:
    """Marker of a curve's points: a baseline's circles, its EC plug-in's squares, its variant's diamonds."""
    kind = family(name)[1]
    return MARKERS.get(kind, "circle")


def _hsl(hue: float, saturation: float, lightness: float) -> str:
    r, g, b = colorsys.hls_to_rgb(hue / 360.0, lightness, saturation)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))


# What a figure calls a metric and a split: the results' names are for code, a figure's words are for readers.
METRIC_NAMES = {
    "accuracy": "accuracy", "fewshot_probe_accuracy": "few-shot probe accuracy",
    "probe_accuracy": "full-data probe accuracy", "cka_to_original": "CKA to original",
    "cka_to_retrain": "CKA to retrain", "relearn_accuracy": "accuracy after relearning", "mia_efficacy": "MIA efficacy",
    "output_entropy": "output entropy (nats)", "output_ks_to_retrain": "KS distance of the answers to retrain's",
    "weight_distance": "weight distance to original (RMS)",
    "interpolation_accuracy": "accuracy along the line to original", "wall_time": "wall time (s)",
}
# ... and the verdict tables' columns a figure plots (`ecnb.verdicts`' names)
COLUMN_NAMES = {"test_retain acc": "retained classes' test accuracy",
                "mean intermediate CKA to original (forget_train)": "mean intermediate CKA to original (on D_f)"}
SPLIT_NAMES = {"forget_train": "the forgotten training images (D_f)",
               "retain_train": "the retained training images (D_r)",
               "test_forget": "the forgotten class's test images", "test_retain": "the other classes' test images"}


def metric_name(metric: str) -> str:
    """A metric or a verdict table's column as a figure names it (the results' name where it has no other)."""
    return METRIC_NAMES.get(metric, COLUMN_NAMES.get(metric, metric))


def metric_title(metric: str, split: str) -> str:
    """A figure's default title: "CKA to original on the forgotten training images (D_f)"."""
    return f"{metric_name(metric)} on {SPLIT_NAMES.get(split, split)}"


# The verdicts: one colour and one marker per depth; a method that hurts retain accuracy gets the open marker.
DEPTH_STYLE = {
    "reference": ("black", "diamond"), "not forgotten": ("#7f7f7f", "x"), "superficial": ("#d62728", "circle"),
    "undecided": ("#9467bd", "triangle-up"), "partial": ("#ff7f0e", "square"), "erased": ("#2ca02c", "star"),
}
BAND_COLOR = "rgba(0, 0, 0, 0.12)"  # the retrained models' range, behind `retrain`'s line


def drop_members(methods: list[str]) -> list[str]:
    """`methods` without the retrained population's other members: figures draw the run's own `retrain` as a
    line and the population as a band around it."""
    return [m for m in methods if m == "retrain" or not is_member(m)]


# The baselines by how they forget: a figure with more of them than it can show legibly offers them a kind at a time.
BASELINE_KINDS = {**dict.fromkeys(("ft", "ga", "rl", "neggrad_plus", "l1_sparse", "salun"),
                                 "fine-tuning and gradients"),
                  **dict.fromkeys(("scrub", "bad_teacher", "cu"), "teachers and contrast"),
                  **dict.fromkeys(("weight_distortion", "weight_dist_reg"), "tamper-resistant")}


def baseline_kinds(baselines: list[str]) -> dict[str, list[str]]:
    """`baselines` by `BASELINE_KINDS`, in that order, each group named "baselines: <kind>"; a method of the user's
    goes under "baselines: brought"."""
    out: dict[str, list[str]] = {}
    for kind in [*dict.fromkeys(BASELINE_KINDS.values()), "brought"]:
        members = [b for b in baselines if BASELINE_KINDS.get(b, "brought") == kind]
        if members:
            out[f"baselines: {kind}"] = members
    return out


def groups(methods: list[str]) -> dict[str, list[str]]:
    """The methods of a figure by what a reader compares: the baselines, Erase at the Core and its variants,
    and the plug-ins (references belong to every group)."""
    out = {"baselines": [], "Erase at the Core": [], "plug-ins": []}
    for m in methods:
        if m in REFERENCE_LINES:
            continue
        root, kind = family(m)
        key = "Erase at the Core" if root == "ec" else "baselines" if kind == "base" else "plug-ins"
        out[key].append(m)
    return {k: v for k, v in out.items() if v}


# Pixels: a vertical legend's entry, the gap between two families' entries, the legend's title and padding.
LEGEND_ENTRY, LEGEND_GROUP_GAP, LEGEND_TITLE = 20, 4, 30
PLOTLY_MARGINS = {"t": 100, "b": 80}  # plotly's default margins, where a figure sets none


def fit_legend(fig: go.Figure) -> go.Figure:
    """The figure made tall enough for its legend to show every entry without a scrollbar (a legend beside the plot
    scrolls beyond the plot's height: 8 of 18 methods were visible). Entries hidden by a menu count too, since
    another choice in the menu shows them, each name once (a menu over views draws the same methods in each)."""
    entries = {t.name: t.legendgroup or t.name for t in fig.data if t.name and t.showlegend is not False}
    legend = len(entries) * LEGEND_ENTRY + len(set(entries.values())) * LEGEND_GROUP_GAP + LEGEND_TITLE
    margin = {side: getattr(fig.layout.margin, side) or default for side, default in PLOTLY_MARGINS.items()}
    height = max(fig.layout.height or 450, legend + margin["t"] + margin["b"])
    fig.update_layout(height=height, legend=dict(tracegroupgap=LEGEND_GROUP_GAP, maxheight=legend))
    return fig
