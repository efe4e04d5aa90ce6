"""How every figure draws a method: one colour per method, a hue per family (a baseline B, its plug-ins B+ec
and B+variant share B's hue, lighter for each step away from B), the two references always in black
(`original` dotted, `retrain` dashed), and one marker per verdict depth."""
from __future__ import annotations

import colorsys
from functools import cache

from ..ec import is_ec
from ..methods import builtin_baselines
from ..results import is_member

FORGET_COLOR = "#d62728"  # the forgotten class, in every embedding
RETAIN_COLOR = "#7f7f7f"
REFERENCE_LINES = {"original": dict(color="#555555", dash="dot", width=3), "retrain": dict(color="black", dash="dash", width=3)}
REFERENCE_BARS = {"original": "#9e9e9e", "retrain": "#212121"}
SPLIT_COLORS = {"forget_train": FORGET_COLOR, "test_forget": "#ff9896", "retain_train": "#1f77b4", "test_retain": "#aec7e8"}
EC_HUE, VARIANT_HUE = 0.0, 330.0  # the paper's EC in red, the variants beyond it in crimson
# Hues of the baselines in registry order, spread over the wheel away from EC's reds.
_BASELINE_HUES = (210, 30, 120, 270, 45, 180, 295, 90, 20, 240, 150, 60, 195)
# Lightness of a family's members: the baseline (or ec) itself, its EC plug-in (or ablation), its variant plug-in.
_LIGHTNESS = {"base": 0.38, "ec": 0.55, "variant": 0.70}
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
    if root == "ec":
        hue = EC_HUE if kind != "variant" else VARIANT_HUE
        lightness = {"base": 0.45, "ec": 0.65, "variant": 0.40}[kind]
        if kind == "variant" and "[" in name:
            lightness = 0.62
        return _hsl(hue, 0.75, lightness)
    known = builtin_baselines()  # a method a user brings gets a colour of its own name, the same in every kernel
    index = known.index(root) if root in known else len(known) + sum(map(ord, root))
    return _hsl(_BASELINE_HUES[index % len(_BASELINE_HUES)], 0.65, _LIGHTNESS[kind])


def line_style(name: str) -> dict:
    """A method's line in a curve: the references' black dashes, otherwise its colour, solid."""
    return dict(REFERENCE_LINES.get(name, dict(color=method_color(name), width=2)))


def marker_symbol(name: str) -> str:
    """Marker of a curve's points: a baseline's circles, its EC plug-in's squares, its variant's diamonds."""
    kind = family(name)[1]
    return MARKERS.get(kind, "circle")


def _hsl(hue: float, saturation: float, lightness: float) -> str:
    r, g, b = colorsys.hls_to_rgb(hue / 360.0, lightness, saturation)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b)))


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
