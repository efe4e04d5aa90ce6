"""The evidence a verdict reads, per model of one seed of one run: the figures of `results.csv` (accuracies,
the attacks' curves, CKA, the outputs), and the figures taken against the population of retrained models,
each with its interval and floor (`ecnb.verdicts.population`, from the per-image outcomes).

"Intermediate" layers are all taps but the last (for CKA); the probes read every tap.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ..artifacts import ArtifactError, Run
from ..outcomes import Outcomes, load_outcomes
from ..results import is_member, method_order, population_names, read_results
from .population import FEWSHOT_GAP, RELEARN_GAP, REPLICATES, figures, floor, low

FORGET = "forget_train acc"
RETAIN = "test_retain acc"
TEST_FORGET = "test_forget acc"
CKA = "mean intermediate CKA to original (forget_train)"
FEWSHOT = "best few-shot probe, any tap (test_forget)"
FULL_PROBE = "best full-data probe, any tap (test_forget)"
OUTPUT_KS = "output KS to retrain (forget_train)"
ENTROPY = "output entropy (forget_train)"
MIA = "MIA efficacy (forget_train)"
WEIGHTS = "weight distance to original"
N_TEST_FORGET = "test_forget images"
RELEARN = "relearn@"  # prefix of one column per step of the attack's grid: relearn@0, relearn@5, ...
POPULATION_FORGET = "population's forget_train acc"
POPULATION_FORGET_MAX = "population's largest forget_train acc"
POPULATION_SIZE = "retrained models"
RESOLUTION = "resolution"


def relearn_columns(table: pd.DataFrame, prefix: str = RELEARN) -> list[str]:
    """The relearning curve's columns of an evidence table (or, with another `prefix`, the population's), in
    step order."""
    return sorted((c for c in table.columns if c.startswith(prefix)), key=lambda c: int(c[len(prefix):]))


def taps_of(results: pd.DataFrame) -> list[str]:
    """The model's taps in network order, as the CKA rows were written (`layer` of `cka_to_original`)."""
    return list(dict.fromkeys(results.loc[results["metric"] == "cka_to_original", "layer"]))


def point_figures(results: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per model (rows, references first): the figures of `results.csv` the verdicts and the summary read,
    for one seed."""
    df = results[results["seed"] == seed]

    def whole(metric: str, split: str) -> pd.Series:
        rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] == "")]
        return rows.groupby("method", sort=False)["value"].mean()

    def per_layer(metric: str, split: str, how: str, layers: list[str] | None = None) -> pd.Series:
        rows = df[(df["metric"] == metric) & (df["split"] == split) & (df["layer"] != "")]
        if layers is not None:
            rows = rows[rows["layer"].isin(layers)]
        return rows.groupby("method", sort=False)["value"].agg(how)

    relearn = df[(df["metric"] == "relearn_accuracy") & (df["split"] == "test_forget")]
    curve = relearn.pivot_table(index="method", columns="layer", values="value", sort=False)
    curve.columns = [RELEARN + c.removeprefix("step") for c in curve.columns]
    table = pd.DataFrame({
        FORGET: whole("accuracy", "forget_train"),
        RETAIN: whole("accuracy", "test_retain"),
        TEST_FORGET: whole("accuracy", "test_forget"),
        CKA: per_layer("cka_to_original", "forget_train", "mean", taps_of(df)[:-1]),
        FEWSHOT: per_layer("fewshot_probe_accuracy", "test_forget", "max"),
        FULL_PROBE: per_layer("probe_accuracy", "test_forget", "max"),
        OUTPUT_KS: whole("output_ks_to_retrain", "forget_train"),
        ENTROPY: whole("output_entropy", "forget_train"),
        MIA: whole("mia_efficacy", "forget_train"),
        WEIGHTS: df[(df["metric"] == "weight_distance") & (df["layer"] == "")].groupby("method", sort=False)["value"].mean(),
        N_TEST_FORGET: whole("split_size", "test_forget"),
    }).join(curve)
    table = table.reindex(method_order(df["method"]))
    return table[[*[c for c in table.columns if not c.startswith(RELEARN)], *relearn_columns(table)]]


def evidence(results: pd.DataFrame, seed: int, outcomes: Mapping[str, Outcomes],
             population: Sequence[str] | None = None, replicates: int = REPLICATES) -> pd.DataFrame:
    """Per model of one seed (rows, references first): the figures of `results.csv` (`point_figures`) and the
    figures against the population of retrained models `population` (default: every retrained model with
    outcomes), each with its interval and floor, with the cell's resolution. Models without outcomes (not
    measured, or measured before outcomes were kept) have no population figures: their depth is undecided."""
    table = point_figures(results, seed)
    members = [m for m in (population or sorted(outcomes, key=_member_order)) if is_member(m) and m in outcomes]
    against = figures(outcomes, members, seed, replicates)
    table = table.join(against, how="left")
    forget = table.loc[members, FORGET]
    table[POPULATION_FORGET], table[POPULATION_FORGET_MAX] = forget.mean(), forget.max()
    table[POPULATION_SIZE] = len(members)
    table[RESOLUTION] = resolution(table, members)
    return table


def _member_order(name: str) -> int:
    return 0 if name == "retrain" else int(name.rpartition("#")[2]) if is_member(name) else -1


def resolution(table: pd.DataFrame, members: Sequence[str]) -> float:
    """The smallest attack gap this cell could have told from the population's own spread: per attack, the
    floor plus the typical lower half-width of a gap's interval (the median over the null reads of the
    retrained models, or over every model when there is only one); the larger of the two attacks."""
    readers = list(members) if len(members) > 1 else list(table.index)
    out = []
    for gap in (RELEARN_GAP, FEWSHOT_GAP):
        if gap not in table:
            continue
        half = (table.loc[readers, gap] - table.loc[readers, low(gap)]).median()
        out.append(table.loc[members[0], floor(gap)] + half if members and not pd.isna(half) else float("nan"))
    return max(out) if out else float("nan")


def read_evidence(run: Run, seed: int, methods: Sequence[str] | None = None, replicates: int = REPLICATES) -> pd.DataFrame:
    """`evidence` for one seed of a run, from its `results.csv` and outcome files: `original`, the run's
    population of retrained models, and `methods` (default: every method measured)."""
    results = read_results(run.root)
    results = results[results["seed"] == seed]
    population = population_names(run.config.population)
    shown = {"original", *population, *(results["method"] if methods is None else methods)}
    results = results[results["method"].isin(shown) & results["method"].map(lambda m: not is_member(m) or m in population)]
    outcomes = {m: o for m in dict.fromkeys(results["method"]) if (o := load_outcomes(run, m, seed)) is not None}
    missing = [m for m in ("original", *population) if m not in outcomes]
    if missing:
        raise ArtifactError(f"{run.root} has no per-image outcomes of {', '.join(missing)} for seed {seed} (not measured "
                            "yet, or by an older ecnb): run the study on it again to measure them")
    return evidence(results, seed, outcomes, population, replicates)
