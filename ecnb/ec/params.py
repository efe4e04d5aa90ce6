"""EC's hyperparameters beyond the driver's, and the rules that check them (one-line ConfigErrors)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from ..unlearn import NONNEGATIVE, POSITIVE, ChoiceRule, Rule

WEIGHT_SCHEMES = ("uniform", "depth")
# Where the contrastive term pulls a forget sample: towards every retain sample of another class (CU's,
# the paper's) or towards the retain samples of its one `target` class only (`ec+soft`).
PULLS = ("retain", "target")
# What a forget sample is moved to (`ecnb.ec.forget_targets`): the original's best other class ('hard'), the
# original's own distribution over the retained classes at a temperature ('soft'), or the hard class for the
# pull and the soft distribution for the relabel ('soft_relabel': a place inside one retain cluster, answered
# with the original's own doubt).
TARGETS = ("hard", "soft", "soft_relabel")
POINT_KEYWORDS = ("all", "last")


@dataclass(frozen=True)
class PointsRule(Rule):
    """`ec_points`: 'all', 'last', or tap names (a list, or one comma-separated string). Tap names are
    checked against the model in `supervision_points`, where the model is known."""

    kind: type = str

    def describe(self) -> str:
        return "'all', 'last', or tap names (a list, or one string separated by commas)"

    def check(self, method: str, key: str, value: Any) -> None:
        names = _point_names(value)
        if names is None or not names:
            raise ConfigError(f"{method}: hyperparameter {key}={value!r} is invalid; valid: {self.describe()}")


@dataclass(frozen=True)
class WeightsRule(Rule):
    """`ec_weights`: a number >= 0 (every intermediate point's weight, the final point's being 1), a
    scheme name, or one number >= 0 per supervision point."""

    kind: type = str

    def describe(self) -> str:
        return f"a number >= 0, {' or '.join(map(repr, WEIGHT_SCHEMES))}, or one number >= 0 per supervision point"

    def check(self, method: str, key: str, value: Any) -> None:
        if (isinstance(value, str) and value in WEIGHT_SCHEMES) or (_is_number(value) and value >= 0):
            return
        numbers = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
        numbers = numbers and all(_is_number(w) for w in value)
        if not numbers:
            raise ConfigError(f"{method}: hyperparameter {key}={value!r} is invalid; valid: {self.describe()}")
        negative = [w for w in value if w < 0]
        if negative:
            raise ConfigError(
                f"{method}: hyperparameter {key}={value!r} has negative weight(s) {negative}; valid: {self.describe()}"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _point_names(value: Any) -> list[str] | None:
    """The tap names (or keyword) in a points spec; None when it is not a string or list of strings."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


EC_PARAMS: dict[str, Rule] = {
    "ec_points": PointsRule(),
    "ec_weights": WeightsRule(),
    "ec_tau": POSITIVE,
    "ec_ct_weight": NONNEGATIVE,
    "ec_ce_weight": NONNEGATIVE,
    "ec_nl_weight": NONNEGATIVE,
    "ec_aux_epochs": Rule(int, 0),
    "ec_aux_lr": POSITIVE,
    "ec_pull": ChoiceRule(choices=PULLS),
    "ec_relabel_weight": NONNEGATIVE,
    "ec_targets": ChoiceRule(choices=TARGETS),
    "ec_target_temperature": POSITIVE,
    "ec_anchor_weight": NONNEGATIVE,
    "ec_distance_weight": NONNEGATIVE,
}
# A plug-in's own budget for the EC term: after B's epochs, `ec_epochs` more epochs of the EC loss
# alone over D_r at learning rate `ec_lr`. Without it the term gets only B's learning rate x steps, which
# leaves it nearly inert in short baselines (ga+ec: 0.003 x 15 steps = 0.045, ec: 0.01 x 180 = 1.8).
BUDGET_PARAMS: dict[str, Rule] = {"ec_epochs": Rule(int, 0), "ec_lr": POSITIVE}
