"""Every figure a verdict reads, taken against a population of retrained models and given with its noise.

Models that never saw D_f differ among themselves, and a cell measures them on a few dozen test images with
an attacker's few draws of images. A gap therefore has three sources of noise, and each is accounted for
(docs/study.md, "Verdicts"):

- **the test images**: the forgotten class's test images (and the retained classes', and the forget set's for
  the outputs) are resampled with replacement;
- **the attacker's draws**: the draws of the attacker's images are resampled with replacement;
- **the population**: the retrained models themselves differ. Their own spread is read by leaving one out: each
  retrained model's figure against the mean of the others. The largest of these is the figure's **floor**: the
  largest gap (or distance) a model that never saw D_f shows in this cell.

One *replicate* resamples the first two, jointly: the same images and draws for the method and for every
retrained model (they were measured on the same ones), and the same replicates for every method of the cell,
so two methods are compared on the same resamples. A figure's interval is the 2.5th to 97.5th percentile of its
replicates, corrected for the bootstrap's bias (`_interval`; `REPLICATES` replicates, seeded by the study seed).
The retrained models are not resampled: with three to five of them a bootstrap puts the interval's ends at
single models; their spread enters through the floor instead, which `ecnb.verdicts.rules` raises every cut to.
Each retrained model read against the others in the same way is the **null read** of the verdicts.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import ks_distance
from ..outcomes import Outcomes

REPLICATES = 1000
LEVEL = 0.95
KS_CHUNK = 200  # replicates per batch of the output distance: (chunk x images x models) floats at a time

# The figures, each a column of `figures`' table, with " low", " high" and " floor" beside it.
RELEARN_GAP = "relearning gap"
RESISTANCE = "lowest relearn difference"
FEWSHOT_GAP = "few-shot gap"
OUTPUT_DISTANCE = "output distance"
RETAIN_DROP = "retain drop"
FIGURES = (RELEARN_GAP, RESISTANCE, FEWSHOT_GAP, OUTPUT_DISTANCE, RETAIN_DROP)
RELEARN_GAP_STEP = "relearning gap at step"
FEWSHOT_CENTRE = "population's best few-shot"
RELEARN_CENTRE = "population relearn@"  # prefix of the centre's relearning curve, one column per step


def low(figure: str) -> str:
    return f"{figure} low"


def high(figure: str) -> str:
    return f"{figure} high"


def floor(figure: str) -> str:
    return f"{figure} floor"


@dataclass(frozen=True)
class Plan:
    """The replicates' resampling, shared by every model of a cell: how often each image and draw is taken
    in each replicate (counts)."""

    test_forget_weights: np.ndarray  # (B, test_forget images)
    relearn_draw_weights: np.ndarray  # (B, relearning draws)
    probe_draw_weights: np.ndarray  # (B, probe draws)
    forget_weights: np.ndarray  # (B, forget_train images)
    retain_weights: np.ndarray  # (B, test_retain images)

    @classmethod
    def draw(cls, example: Outcomes, replicates: int, seed: int) -> "Plan":
        rng = np.random.default_rng([seed, 33])

        def counts(n: int) -> np.ndarray:
            return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates) if n else np.zeros((replicates, 0))

        return cls(counts(example.relearn.shape[2] if example.has_attacks else 0), counts(example.relearn.shape[0]),
                   counts(example.fewshot.shape[0]), counts(len(example.forget_top)), counts(len(example.retain_correct)))

    @property
    def replicates(self) -> int:
        return len(self.forget_weights)


@dataclass(frozen=True)
class Resampled:
    """One model's figures, at the point (all images and draws) and in every replicate."""

    curve: np.ndarray  # (steps,) relearning accuracy
    curve_reps: np.ndarray  # (B, steps)
    probe: np.ndarray  # (taps,) few-shot recall
    probe_reps: np.ndarray  # (B, taps)
    retain: float  # test_retain accuracy
    retain_reps: np.ndarray  # (B,)
    top: np.ndarray  # (forget_train images,) top-class probability


def resample(o: Outcomes, plan: Plan) -> Resampled:
    """`o`'s figures under every replicate of `plan` (weighted means: a count is how often an image or draw
    is taken)."""
    def weighted(x: np.ndarray, draws: np.ndarray) -> np.ndarray:  # x: (draws, k, images) -> (B, k)
        if not x.size:
            return np.zeros((plan.replicates, x.shape[1]))
        img = plan.test_forget_weights
        total = draws.sum(1)[:, None] * img.sum(1)[:, None]
        return np.einsum("br,bi,rki->bk", draws, img, x.astype(np.float64), optimize=True) / total

    def mean(x: np.ndarray) -> np.ndarray:  # (draws, k, images) -> (k,)
        return x.astype(np.float64).mean(axis=(0, 2)) if x.size else np.zeros(x.shape[1])

    retain = o.retain_correct.astype(np.float64)
    return Resampled(mean(o.relearn), weighted(o.relearn, plan.relearn_draw_weights), mean(o.fewshot),
                     weighted(o.fewshot, plan.probe_draw_weights), float(retain.mean()),
                     plan.retain_weights @ retain / len(retain), o.forget_top.astype(np.float64))


def ks_distance_replicates(top: np.ndarray, pool: np.ndarray, forget_weights: np.ndarray) -> np.ndarray:
    """The Kolmogorov-Smirnov distance between a model's top-class probabilities (`top`, one per image) and the
    population's pooled ones (`pool`, models x images), in every replicate: image i counted `forget_weights[b, i]`
    times, in the model and in every member alike. Every value is sorted once; a replicate only reweighs them,
    so its two distribution functions are cumulative sums in that order, read at the last of each run of equal
    values."""
    k, n = pool.shape
    values = np.concatenate([top, pool.ravel()])
    image = np.concatenate([np.arange(n), np.tile(np.arange(n), k)])
    mine = np.arange(len(values)) < n
    order = np.argsort(values, kind="stable")
    values, image, mine = values[order], image[order], mine[order]
    last_of_ties = np.append(values[1:] != values[:-1], True)
    out = []
    for start in range(0, len(forget_weights), KS_CHUNK):
        w_img = forget_weights[start:start + KS_CHUNK][:, image].astype(np.float64)
        f_mine = np.cumsum(np.where(mine, w_img, 0.0), 1)
        f_pool = np.cumsum(np.where(mine, 0.0, w_img), 1)
        diff = f_mine / f_mine[:, -1:] - f_pool / f_pool[:, -1:]
        out.append(np.abs(diff[:, last_of_ties]).max(1))
    return np.concatenate(out)


def _interval(reps: np.ndarray, point: float, lowest: float = -np.inf) -> tuple[float, float]:
    """The `LEVEL` percentile interval of the replicates, shifted by the bootstrap's estimate of its bias (the
    replicates' mean minus the point): a maximum over steps or taps and a distance between samples both come
    out larger on resampled data, and the shift keeps the interval around what was measured."""
    if not len(reps) or not np.isfinite(reps).all() or not np.isfinite(point):
        return (np.nan, np.nan)
    lo, hi = np.percentile(reps, [50 * (1 - LEVEL), 50 * (1 + LEVEL)]) - (reps.mean() - point)
    return float(max(lo, lowest)), float(hi)


def _point(models: Mapping[str, Resampled], members: Sequence[str], method: str) -> dict[str, float]:
    """`method`'s relearning, few-shot and output figures against the centre of `members`, at the point."""
    r = models[method]
    centre = np.stack([models[m].curve for m in members]).mean(0)
    diff = r.curve - centre if r.curve.size else np.array([np.nan])
    best = np.mean([models[m].probe.max() for m in members]) if r.probe.size else np.nan
    return {RELEARN_GAP: float(diff.max()), RESISTANCE: float(diff.min()),
            FEWSHOT_GAP: float(r.probe.max() - best) if r.probe.size else np.nan,
            OUTPUT_DISTANCE: ks_distance(r.top, np.concatenate([models[m].top for m in members]))}


def floors(models: Mapping[str, Resampled], members: Sequence[str]) -> dict[str, float]:
    """The population's own spread: each member's figure against the centre of the others (at the point), the
    largest over the members (for the lowest relearn difference, the deepest dip, as a positive number; for
    the retain drop, the largest distance of a member's retain accuracy from the others' mean); 0 where fewer
    than two members leave nothing to compare."""
    if len(members) < 2:
        return {floor(f): 0.0 for f in FIGURES}
    loo = [_point(models, [o for o in members if o != m], m) for m in members]
    out = {floor(f): max(0.0, max(r[f] for r in loo)) for f in (RELEARN_GAP, FEWSHOT_GAP, OUTPUT_DISTANCE)}
    out[floor(RESISTANCE)] = max(0.0, max(-r[RESISTANCE] for r in loo))
    retain = {m: models[m].retain for m in members}
    out[floor(RETAIN_DROP)] = max(abs(retain[m] - np.mean([v for k, v in retain.items() if k != m])) for m in members)
    return out


class Reading:
    """Every model of a cell read against one set of retrained models (the population, or the population
    less one model for that model's null read), on one `Plan`."""

    def __init__(self, models: Mapping[str, Resampled], members: Sequence[str], plan: Plan, original: str = "original"):
        self.models, self.members, self.plan, self.original = models, list(members), plan, original
        self.centre = np.stack([models[m].curve for m in self.members]).mean(0)
        self.centre_reps = np.stack([models[m].curve_reps for m in self.members]).mean(0)
        has_probe = models[self.members[0]].probe.size > 0
        self.best_centre = float(np.mean([models[m].probe.max() for m in self.members])) if has_probe else np.nan
        self.best_centre_reps = (np.stack([models[m].probe_reps.max(1) for m in self.members]).mean(0)
                                 if has_probe else np.full(plan.replicates, np.nan))
        self.pool = np.stack([models[m].top for m in self.members])
        self.floors = floors(models, self.members)

    def figures(self, method: str) -> dict[str, float]:
        """`method`'s five figures against this reading's centre, each with its interval and floor."""
        r = self.models[method]
        out: dict[str, float] = {**_point(self.models, self.members, method), **self.floors}
        reps = {}
        if r.curve.size:
            diff_reps = r.curve_reps - self.centre_reps
            reps[RELEARN_GAP], reps[RESISTANCE] = diff_reps.max(1), diff_reps.min(1)
            out[RELEARN_GAP_STEP] = int((r.curve - self.centre).argmax())
        if r.probe.size:
            reps[FEWSHOT_GAP] = r.probe_reps.max(1) - self.best_centre_reps
        reps[OUTPUT_DISTANCE] = ks_distance_replicates(r.top, self.pool, self.plan.forget_weights)
        o = self.models[self.original]
        out[RETAIN_DROP] = o.retain - r.retain
        reps[RETAIN_DROP] = o.retain_reps - r.retain_reps
        for name in FIGURES:
            lowest = 0.0 if name == OUTPUT_DISTANCE else -np.inf
            out[low(name)], out[high(name)] = _interval(reps.get(name, np.array([])), out[name], lowest)
        return out


def figures(outcomes: Mapping[str, Outcomes], members: Sequence[str], seed: int = 0, replicates: int = REPLICATES,
            original: str = "original") -> pd.DataFrame:
    """Per model of `outcomes` (rows): the five figures against the population `members` (each with its
    interval, and its floor: the population's own spread), the step of the relearning gap, and the
    population's centre (its best few-shot probe and its relearning curve). A member of the population is
    read against the others (its null read). `outcomes` must hold `original` and every member."""
    missing = [m for m in (original, *members) if m not in outcomes]
    if missing:
        raise ValueError(f"the verdicts read every method against `{original}` and the retrained models; not measured: "
                         f"{', '.join(missing)}")
    reference = outcomes[original]
    comparable = {m: o for m, o in outcomes.items() if _same_shapes(o, reference)}
    unfit = [m for m in (original, *members) if m not in comparable]
    if unfit:
        raise ValueError(f"the outcomes of {', '.join(unfit)} were measured on other images or settings than "
                         f"`{original}`'s: measure them again")
    plan = Plan.draw(reference, replicates, seed)
    models = {m: resample(o, plan) for m, o in comparable.items()}
    full = Reading(models, members, plan, original)
    readings = {m: Reading(models, [o for o in members if o != m], plan, original) for m in members} \
        if len(members) > 1 else {}
    rows = {}
    for method in comparable:
        reading = readings.get(method, full)
        row = reading.figures(method)
        step = row.get(RELEARN_GAP_STEP)
        row[RELEARN_GAP_STEP] = reference.steps[step] if step is not None else np.nan
        row[FEWSHOT_CENTRE] = reading.best_centre
        row.update({f"{RELEARN_CENTRE}{s}": float(v) for s, v in zip(reference.steps, reading.centre)})
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _same_shapes(a: Outcomes, b: Outcomes) -> bool:
    """Whether two models' outcomes were measured on the same images, draws, steps and taps."""
    return (a.relearn.shape == b.relearn.shape and a.fewshot.shape == b.fewshot.shape and a.steps == b.steps
            and a.taps == b.taps and a.forget_top.shape == b.forget_top.shape
            and a.retain_correct.shape == b.retain_correct.shape)
