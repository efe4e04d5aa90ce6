"""Turning models into result rows: unlearning with cached checkpoints, and every metric of docs/study.md
section 5 gathered per method, so notebooks 02 and 03 share one evaluation path. What the rows say
(the verdicts of section 7) is `ecnb.verdicts`' business.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from .artifacts import Run, load_checkpoint, save_checkpoint
from .attacks import attack_rows
from .config import ConfigError, profile_setting, resolve_device
from .data import Dataset, ForgetSplit, split_tensors
from .features import cached_features, extract_features, remove_cached
from .metrics import (OUTPUT_SPLITS, DegenerateFeatures, accuracy, accuracy_rows, capped_sample, cka_rows, mia_rows,
                      model_outputs, output_rows, probe_rows, softmax64)
from .models import TappedNet
from .progress import text_bar
from .outcomes import Outcomes, remove_outcomes, save_outcomes
from .results import REFERENCES, is_reference, read_results, remove_results, result_row, write_results
from .ec import is_ec
from .train import model_from_state
from .methods import for_scenario, get_method, planned_steps, run_method, source_digest, study_hparams
from .unlearn import UnlearnData, UnlearningError
from .user_models import read_model
from .weights import INTERPOLATION_SPLITS, weight_rows
from .workers import one_thread, run_jobs, worker_count
from .workers import shared as shared_objects

CKA_SPLITS = ("forget_train", "test_retain", "test_forget")
# The splits whose features the measurement extracts whole (CKA's, the probes'): their answers come from that pass.
FEATURE_SPLITS = ("forget_train", "retain_train", "test_forget")
METHOD_METRICS = {"accuracy", "split_size", "mia_efficacy", "output_entropy", "output_ks_to_retrain", "cka_to_original",
                  "cka_to_retrain", "weight_distance", "interpolation_accuracy", "wall_time"}
# Metrics that read a forgotten class's test images: none for random-sample forgetting.
CLASS_METRICS = {"probe_accuracy", "fewshot_probe_accuracy", "relearn_accuracy"}


def max_spatial(profile: str, input_shape: tuple[int, ...]) -> int | None:
    """How far conv taps are pooled before CKA and UMAP for a profile and input (None: not at all; the profile's
    `max_spatial` and `whole_maps_up_to`)."""
    spatial = profile_setting(profile, "max_spatial")
    if spatial is None:
        raise ConfigError(f"profile {profile!r} states no max_spatial (how far conv taps are pooled), nor does its base")
    return None if input_shape[-1] <= profile_setting(profile, "whole_maps_up_to", 0) else spatial


def unlearn_data(ds: Dataset, split: ForgetSplit) -> UnlearnData:
    """D_f and D_r of the run as the unlearning methods see them, on the data set's device."""
    s = split_tensors(ds, split)
    return UnlearnData(*s["forget_train"], *s["retain_train"], ds.num_classes, split.forget_classes, ds.x_train.device)


def unlearn_or_load(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, seed: int, original: TappedNet,
    device: torch.device | str = "auto", **overrides: Any,
) -> tuple[TappedNet, float | None]:
    """Unlearn `method` from `original` with the study's hyperparameters (`ecnb.methods.study_hparams`, `overrides`
    on top), or load its checkpoint when one with the same settings exists.

    Returns the model and its wall time in seconds (measured when it was computed; None for a model unlearned
    elsewhere). A recomputed model drops its cached features, which belonged to the previous weights.
    """
    model, wall_time, _ = _unlearn_or_load(run, ds, split, method, seed, original, device, **overrides)
    return model, wall_time


def _unlearn_or_load(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, seed: int, original: TappedNet,
    device: torch.device | str = "auto", **overrides: Any,
) -> tuple[TappedNet, float | None, bool]:
    """`unlearn_or_load`, and whether the model came from its checkpoint. A model unlearned elsewhere
    (`config.checkpoints`) is read from its file instead, keyed by the file's sha256, with no wall time (None)."""
    device = resolve_device(device) if isinstance(device, str) else device
    brought = run.config.checkpoints.get(method)
    if brought is None:
        hp = study_hparams(run.config, method, seed, **overrides)
        code = source_digest(method)  # a method from a method file: its content too (`ecnb.user_methods`)
        revision = get_method(method).revision  # a built-in method whose code changed since (`Method.revision`)
        what = {"hparams": hp, **({"code": code} if code else {}), **({"revision": revision} if revision else {})}
    else:
        what = {"checkpoint": brought["sha256"]}
    key = json.dumps({"config": run.config.cache_key(), **what}, sort_keys=True, default=str)
    path = run.checkpoint_path(method, seed)
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt["meta"].get("key") == key:
            model = model_from_state(run.config, ds, ckpt["state_dict"], device)
            wall_time = ckpt["meta"]["wall_time"]
            return model, None if wall_time is None else float(wall_time), True
    remove_cached(run, method, seed)
    remove_outcomes(run, seed, method)
    if brought is None:
        model, stats = run_method(method, original, unlearn_data(ds, split), hp)
        wall_time = stats.wall_time
    else:
        model, wall_time = read_model(run.config, ds, method, device), None
    save_checkpoint(path, model, {"key": key, "method": method, "seed": seed, "wall_time": wall_time})
    return model, wall_time, False


def measured(run: Run, results: pd.DataFrame, seed: int) -> set[str]:
    """The methods of `seed` that `results` holds every metric of `measure` for (those of a class-wise run
    include the probes and the attacks) and whose per-image outcomes are on disk. Their rows came from the
    same checkpoint and references (a run directory holds one configuration), so a notebook that loads such
    a model again need not measure it again."""
    rows = results[results["seed"] == seed]
    metrics = rows.groupby("method")["metric"].agg(set)
    needed = METHOD_METRICS | (CLASS_METRICS if run.config.scenario == "class" else set())
    unknown_time = {"wall_time"}  # a model unlearned elsewhere has none
    return {m for m, have in metrics.items()
            if needed - (unknown_time if m in run.config.checkpoints else set()) <= have
            and run.outcomes_path(m, seed).exists()}


def reference_rows(
    run: Run, model: TappedNet, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
) -> list[dict]:
    """`accuracy` on every split and the training `wall_time` (seconds, from the checkpoint) of a reference model."""
    meta = load_checkpoint(run.checkpoint_path(method, seed))["meta"]
    rows = accuracy_rows(model_outputs(model, splits), splits, method, seed)
    return rows + [result_row(seed, method, "wall_time", meta["wall_time"])]


def measure(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, model: TappedNet, seed: int,
    references: dict[str, TappedNet], wall_time: float | None = None,
) -> tuple[list[dict], Outcomes]:
    """Every metric of one model, as rows: accuracy per split, MIA efficacy, its outputs on the forgotten
    images against `retrain`'s, per-layer CKA to the original and to the retrained model, its weight distance
    to the original and the line between the two, per-layer full-data and few-shot probe accuracy, the
    relearning curve, and its wall time; and the per-image outcomes behind the figures the verdicts read.
    `references` holds `original` and `retrain` (the rest of the population, if there, is not read)."""
    splits = split_tensors(ds, split)
    spatial = max_spatial(run.config.profile, ds.input_shape)
    cka_splits = {name: splits[name] for name in CKA_SPLITS}
    yardsticks = {name: references[name] for name in REFERENCES}

    def logits(reference: str | None, name: str, x: torch.Tensor) -> np.ndarray:
        """A model's logits from the pass that caches its features of `name` (CKA's flat view, the probes'
        pooled one), which the measurement reads anyway: one pass over those images, not two; a reference's
        come from its own measurement's files."""
        who, net = (method, model) if reference is None else (reference, references[reference])
        pooled = name.partition("@")[0] not in CKA_SPLITS
        return cached_features(run, who, seed, name, net, x, spatial, pooled=pooled)["logits"]

    def whole_split(name: str) -> np.ndarray:
        """The model's logits on a CKA split: those of the images CKA reads from CKA's pass, the rest's (beyond
        `CKA_MAX_IMAGES`) from one more pass over them alone."""
        x, y = splits[name]
        sample, keep = capped_sample(name, y, seed)
        if keep is None:
            return logits(None, name, x)
        out = np.empty((len(y), ds.num_classes), dtype=np.float32)
        out[keep] = logits(None, sample, x[torch.as_tensor(keep, device=x.device)])
        rest = np.setdiff1d(np.arange(len(y)), keep)
        out[rest] = extract_features(model, x[torch.as_tensor(rest, device=x.device)], global_pool=True)["logits"]
        return out

    passed = {n: logits(None, n, splits[n][0]) for n in FEATURE_SPLITS if len(splits[n][1])}
    passed.update({n: whole_split(n) for n in CKA_SPLITS if n not in passed and len(splits[n][1])})
    outputs = model_outputs(model, splits, passed)
    retrain_outputs = {n: softmax64(logits("retrain", n, splits[n][0])) for n in OUTPUT_SPLITS if n in outputs}
    rows = accuracy_rows(outputs, splits, method, seed) + mia_rows(outputs, splits, method, seed)
    rows += output_rows(outputs, retrain_outputs, method, seed)
    # the line from the original: its ends are the two models, read on the images the line is read on
    line, ends = {}, {}
    for n in INTERPOLATION_SPLITS:
        x, y = splits[n]
        name, keep = capped_sample(n, y, seed)
        idx = torch.arange(len(y)) if keep is None else torch.as_tensor(keep)
        line[n] = (x[idx.to(x.device)], y[idx.to(y.device)])
        if len(y):
            ends[n, 0.0] = accuracy(torch.as_tensor(logits("original", name, line[n][0])), line[n][1])
            ends[n, 1.0] = accuracy(outputs[n][idx], line[n][1])
    rows += weight_rows(model, references["original"], line, method, seed, known=ends)
    rows += cka_rows(run, model, method, seed, yardsticks, cka_splits, spatial)
    rows += probe_rows(run, model, method, seed, ds, split, spatial)
    answers = outputs.get("test_forget")
    before = None if answers is None else (answers.argmax(1) == splits["test_forget"][1].cpu()).numpy()
    attack, attack_outcomes = attack_rows(run, model, method, seed, ds, split, spatial, before)
    rows += attack
    if wall_time is not None:
        rows.append(result_row(seed, method, "wall_time", wall_time))
    if attack_outcomes is None:  # random-sample forgetting: no forgotten class to recover
        no_draws = np.zeros((0, 0, 0), dtype=bool)
        relearn, steps, fewshot, taps = no_draws, (), no_draws, ()
    else:
        relearn, steps = attack_outcomes.relearn, tuple(run.config.attacks.relearn_steps)
        fewshot, taps = attack_outcomes.fewshot, tuple(model.taps)
    return rows, Outcomes(relearn, steps, fewshot, taps, forget_top=outputs["forget_train"].max(1).values.numpy(),
                          retain_correct=(outputs["test_retain"].argmax(1) == splits["test_retain"][1].cpu()).numpy())


def measure_and_save(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, model: TappedNet, seed: int,
    references: dict[str, TappedNet], wall_time: float | None = None,
) -> list[dict]:
    """`measure`, with the outcomes written to the run directory; returns the rows for `results.csv`."""
    rows, outcomes = measure(run, ds, split, method, model, seed, references, wall_time)
    save_outcomes(run, method, seed, outcomes)
    return rows


def run_methods(
    run: Run, ds: Dataset, split: ForgetSplit, methods: list[str], seed: int,
    references: dict[str, TappedNet], device: torch.device | str = "auto",
) -> dict[str, TappedNet]:
    """Unlearn (or load) each method from `references['original']`, measure it, and write its rows to
    `results.csv` as soon as it and the methods before it are done, so an interrupted run keeps every
    finished method. The methods run in parallel worker processes (`ecnb.workers`), with the same
    results as one after another.

    Every name is checked before any work. A method that diverges (UnlearningError), or whose representation
    collapses (constant features, where CKA is undefined), gets no metrics:
    one line says so, the seed's `failures.json` records why, rows of an earlier run of it are removed,
    and the other methods go on. A method loaded from its checkpoint whose rows are all there (notebook
    03 loads notebook 02's baselines) is not measured again. The references' own rows (`run_references`)
    are measured with them when missing, as the last jobs. Returns the methods' models that succeeded.
    """
    # an unknown name, or one the forgetting scenario cannot run, stops here, before any work
    settings = {method: study_hparams(run.config, method, seed)
                for method in methods if method not in run.config.checkpoints}
    unrunnable = [m for m in methods if m not in for_scenario(methods, run.config)]
    if unrunnable:
        raise ConfigError(f"{', '.join(unrunnable)} move each forget sample to another class, which needs class-wise "
                          "forgetting; leave them out of a random-sample study")
    device = resolve_device(device) if isinstance(device, str) else device
    done = measured(run, read_results(run.root), seed)
    references_todo = [name for name in references if name not in done]
    args = [(method, method in done) for method in [*methods, *references_todo]]
    shared = (run, ds, split, seed, references, device)
    models = {}
    bar = text_bar(total=len(args), desc="methods", unit="method")
    longest_first = _longest_first(split, settings, args)
    # loading a model whose rows are all there takes a moment: only the jobs with work to do call for workers
    workers = worker_count(device, sum(not is_done for _, is_done in args))
    for i, (rows, error) in run_jobs(_method_job, args, workers, shared, longest_first):
        method = args[i][0]
        bar.set_postfix_str(method)
        if is_reference(method):
            write_results(run.root, rows)
            bar.update()
            continue
        if error is not None:
            run.record_failure(seed, method, error)
            remove_results(run.root, seed, method)
            remove_outcomes(run, seed, method)
            bar.write(f"{method} failed and is left out of the results: {error}")
        else:
            if rows is not None:
                write_results(run.root, rows)
            run.record_failure(seed, method, None)
            models[method] = _load_model(run, ds, method, seed, device)
        bar.update()
    bar.close()
    return models


# An EC-family step costs about twice a baseline's (the read-outs at every supervision point, both batches):
# the quick study's wall time per planned step is 107 ms for `ec` and 82-130 ms for the plug-ins, against
# 42-62 ms for FT, L1-sparse, SCRUB and CU. Only the order of the jobs depends on it.
EC_STEP_COST = 2.0


def _longest_first(split: ForgetSplit, settings: dict[str, dict[str, Any]], args: list[tuple[str, bool]]) -> list[int]:
    """The jobs of `run_methods` by their expected unlearning work, most first (those with rows already
    written, a reference's, a model unlearned elsewhere have none): the order in which workers should take them.
    `settings` holds the hyperparameters of each method to unlearn."""
    def work(method: str, is_done: bool) -> float:
        if is_done or method not in settings:
            return 0.0
        steps = planned_steps(method, len(split.forget_idx), len(split.retain_idx), settings[method])
        return steps * (EC_STEP_COST if is_ec(method) else 1.0)

    costs = [work(*a) for a in args]
    return sorted(range(len(args)), key=lambda i: -costs[i])


def _measure(
    run: Run, ds: Dataset, split: ForgetSplit, method: str, seed: int, references: dict[str, TappedNet],
    device: torch.device, is_done: bool,
) -> tuple[list[dict] | None, str | None]:
    """One method of `run_methods`: its rows (None when loaded with its rows already written) or its
    UnlearningError's message, or why it could not be measured (a network whose representation collapsed
    without a non-finite weight). A reference is measured as it is, with its training time."""
    if is_reference(method):
        wall_time = load_checkpoint(run.checkpoint_path(method, seed))["meta"]["wall_time"]
        return measure_and_save(run, ds, split, method, references[method], seed, references, wall_time), None
    try:
        model, wall_time, loaded = _unlearn_or_load(run, ds, split, method, seed, references["original"], device)
    except UnlearningError as e:
        return None, str(e)
    if loaded and is_done:
        return None, None
    try:
        return measure_and_save(run, ds, split, method, model, seed, references, wall_time), None
    except DegenerateFeatures as e:
        return None, f"its representation collapsed, so it cannot be measured ({e})"


def _method_job(method: str, is_done: bool) -> tuple[list[dict] | None, str | None]:
    """`_measure` as a job of `ecnb.workers`, on the run, data and references `run_methods` shares."""
    run, ds, split, seed, references, device = shared_objects()
    return _measure(run, ds, split, method, seed, references, device, is_done)


def _load_model(run: Run, ds: Dataset, method: str, seed: int, device: torch.device) -> TappedNet:
    return model_from_state(run.config, ds, load_checkpoint(run.checkpoint_path(method, seed))["state_dict"], device)


def run_references(
    run: Run, ds: Dataset, split: ForgetSplit, seed: int, references: dict[str, TappedNet]
) -> None:
    """The same metrics for `original` and the retrained population, the yardsticks every method is read
    against (once: their checkpoints are the run's, so rows that are all there stay). In this process, at
    one thread like every job of `ecnb.workers`: a few evaluations do not repay starting workers."""
    done = measured(run, read_results(run.root), seed)
    with one_thread():
        for method, model in references.items():
            if method not in done:
                device = next(model.parameters()).device
                rows, _ = _measure(run, ds, split, method, seed, references, device, False)
                write_results(run.root, rows)
