"""Recovery attacks (docs/study.md, "Metrics"): does a model that forgot at the output give the class back?

Both attacks hold what a real attacker might: a few training images of each forgotten class (`shots`,
k, from D_f) and of each retained class (`retain_shots`, m, from D_r), never a test image.

- `fewshot_probe_accuracy` (per layer, on `test_forget`): a logistic regression on the layer's frozen,
  globally pooled features of those images, scored on the forgotten classes' test images (their
  recall), averaged over `probe_draws` (R) seeded draws. Classes are weighted equally in the fit: the
  k-versus-m imbalance is a property of the attacker's data, not of the task, and unweighted it would
  only teach the probe to say "retained". The full-data probe (`ecnb.metrics.probe_accuracy`) reads
  the class out of every model at this scale, `retrain` included; a few shots separate a
  representation that holds the class from one that merely generalises to it.
- `relearn_accuracy` (on `test_forget`, `layer` = `step<N>`): every weight of a *copy* of the model is
  fine-tuned on one draw's images, full-batch SGD with momentum (no weight decay, BatchNorm in training
  mode as in any fine-tuning), and the forgotten classes' test accuracy is read after each step of the
  grid, averaged over the first `relearn_draws` draws. A model that hid the class recovers it within a
  handful of steps; one that never had it needs far longer (Golatkar et al. 2020's "relearn time"; the
  relearning attacks of "From Dormant to Deleted").

Each attack also returns its per-image outcomes (which test image each draw's probe or fine-tuned copy
gets right), so the verdicts can resample test images and draws (`ecnb.outcomes`).

The images are an artifact, `seed<k>/attack_set.json` (training-set indices, like `split.json`), drawn
once from the study seed, so every model of a run, `original` and `retrain` included, meets the same
attacker. The settings (`ecnb.config.AttackSettings`) were chosen on validation tasks, see
scripts/tune_attacks.py.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .artifacts import Run, load_json, save_json
from .config import AttackSettings, ConfigError
from .data import Dataset, ForgetSplit, split_tensors
from .features import cached_features
from .metrics import single_blas_thread
from .models import TappedNet
from .results import result_row
from .train import autocast, predict


@dataclass(frozen=True)
class AttackSet:
    """The attacker's images: per draw, training-set indices from D_f (`forget[r]`) and from D_r (`retain[r]`).
    Draw 0 is also the relearning attack's fine-tuning set."""

    forget: list[np.ndarray]
    retain: list[np.ndarray]

    def to_dict(self) -> dict:
        return {"forget": [f.tolist() for f in self.forget], "retain": [r.tolist() for r in self.retain]}

    @classmethod
    def from_dict(cls, d: dict) -> "AttackSet":
        return cls([np.asarray(f, dtype=np.int64) for f in d["forget"]],
                   [np.asarray(r, dtype=np.int64) for r in d["retain"]])


def check_shots(y_train: torch.Tensor | np.ndarray, forget_classes: Sequence[int], settings: AttackSettings) -> None:
    """Refuse, in one line, more shots than D_f or D_r holds of some class (class-wise forgetting only)."""
    y = np.asarray(y_train.cpu() if isinstance(y_train, torch.Tensor) else y_train)
    counts = np.bincount(y, minlength=int(y.max()) + 1)
    for c in range(len(counts)):
        need, name = (settings.shots, "attack shots (k)") if c in forget_classes else (
            settings.retain_shots, "attack retain shots (m)")
        if need > counts[c]:
            where = "D_f" if c in forget_classes else "D_r"
            raise ConfigError(f"{name} {need} is more than the {counts[c]} training images of class {c} in {where}; "
                              f"valid: 1-{counts[c]}")


def draw_attack_set(y_train: torch.Tensor | np.ndarray, split: ForgetSplit, settings: AttackSettings, seed: int) -> AttackSet:
    """`probe_draws` seeded draws of k D_f images per forgotten class and m D_r images per retained class."""
    y = np.asarray(y_train.cpu() if isinstance(y_train, torch.Tensor) else y_train)
    check_shots(y, split.forget_classes, settings)
    kept = [c for c in np.unique(y) if c not in split.forget_classes]
    forget, retain = [], []
    for r in range(settings.probe_draws):
        rng = np.random.default_rng([seed, r])
        pick = lambda pool, c, n: rng.choice(pool[y[pool] == c], n, replace=False)  # noqa: E731
        forget.append(np.sort(np.concatenate([pick(split.forget_idx, c, settings.shots) for c in split.forget_classes])))
        retain.append(np.sort(np.concatenate([pick(split.retain_idx, c, settings.retain_shots) for c in kept])))
    return AttackSet(forget, retain)


def attack_set(run: Run, ds: Dataset, split: ForgetSplit, seed: int) -> AttackSet | None:
    """The run's attack images for `seed`: loaded from `attack_set.json`, or drawn and saved there. None for
    random-sample forgetting, which has no forgotten class to recover."""
    if split.forget_fraction is not None:
        return None
    path = run.seed_dir(seed) / "attack_set.json"
    if path.exists():
        return AttackSet.from_dict(load_json(path))
    drawn = draw_attack_set(ds.y_train, split, run.config.attacks, seed)
    save_json(path, drawn.to_dict())
    return drawn


def _positions(indices: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Where training-set `indices` sit in the sorted `pool` (D_f or D_r), i.e. rows of its split tensors."""
    pos = np.searchsorted(pool, indices)
    if (pos >= len(pool)).any() or not np.array_equal(pool[np.minimum(pos, len(pool) - 1)], indices):
        raise ValueError("the attack images are not all in the set they were drawn from")
    return pos


# --- the few-shot probe ---------------------------------------------------------------------------


def fewshot_probe_correct(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                          c: float) -> np.ndarray:
    """Per test image (all of the forgotten classes), whether a class-balanced, standardised logistic
    regression fitted on the attacker's images answers it correctly: its mean is the recall."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000))
    with single_blas_thread():
        probe.fit(np.asarray(train_x, dtype=np.float64), train_y)
        return probe.predict(np.asarray(test_x, dtype=np.float64)) == test_y


def fewshot_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, c: float) -> float:
    """Recall of `fewshot_probe_correct`'s probe on the forgotten classes' test images."""
    return float(np.mean(fewshot_probe_correct(train_x, train_y, test_x, test_y, c)))


def fewshot_probe_outcomes(
    run: Run, model: TappedNet, method: str, seed: int, ds: Dataset, split: ForgetSplit, attacks: AttackSet,
    settings: AttackSettings, max_spatial: int | None = None,
) -> np.ndarray:
    """`fewshot_probe_correct` for every draw of the attacker's images and every tap (network order), on
    the cached pooled features: (draws, taps, test_forget images)."""
    splits = split_tensors(ds, split)
    feats = {name: cached_features(run, method, seed, name, model, splits[name][0], max_spatial, pooled=True)
             for name in ("forget_train", "retain_train", "test_forget")}
    labels = {name: splits[name][1].cpu().numpy() for name in ("forget_train", "retain_train", "test_forget")}
    rows = [(_positions(f, split.forget_idx), _positions(r, split.retain_idx)) for f, r in zip(attacks.forget, attacks.retain)]
    out = np.zeros((len(rows), len(model.taps), len(labels["test_forget"])), dtype=bool)
    for t, tap in enumerate(model.taps):
        for d, (fpos, rpos) in enumerate(rows):
            x = np.concatenate([feats["forget_train"][tap][fpos], feats["retain_train"][tap][rpos]])
            y = np.concatenate([labels["forget_train"][fpos], labels["retain_train"][rpos]])
            out[d, t] = fewshot_probe_correct(x, y, feats["test_forget"][tap], labels["test_forget"], settings.probe_c)
    return out


def fewshot_probe_accuracy(
    run: Run, model: TappedNet, method: str, seed: int, ds: Dataset, split: ForgetSplit, attacks: AttackSet,
    settings: AttackSettings, max_spatial: int | None = None,
) -> dict[str, float]:
    """The few-shot probe's recall per tap (network order), averaged over the draws."""
    outcomes = fewshot_probe_outcomes(run, model, method, seed, ds, split, attacks, settings, max_spatial)
    return {tap: float(outcomes[:, t].mean()) for t, tap in enumerate(model.taps)}


# --- the relearning attack ------------------------------------------------------------------------


def relearn_correct(
    model: TappedNet, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    lr: float, momentum: float, steps: Sequence[int], before: np.ndarray | None = None,
) -> np.ndarray:
    """Fine-tune every weight of a deep copy of `model` on (x, y), full batch, and return, after each step
    count in `steps` (0: before any update), whether each test image is classified correctly:
    (len(steps), test images). `before`: `model`'s own answers (step 0), when the caller has them. `model`
    itself is never touched."""
    device = next(model.parameters()).device
    student = copy.deepcopy(model)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum)
    out = np.zeros((len(steps), len(test_y)), dtype=bool)
    for t in range(max(steps) + 1):
        if t in steps:
            known = before is not None and t == 0
            out[list(steps).index(t)] = (before if known else
                                         (predict(student, test_x).argmax(1) == test_y.cpu()).numpy())
        if t == max(steps):
            break
        student.train()
        with autocast(device):
            loss = F.cross_entropy(student(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return out


def relearn_curve(
    model: TappedNet, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    lr: float, momentum: float, steps: Sequence[int],
) -> dict[int, float]:
    """`relearn_correct` as the test accuracy after each step count in `steps`."""
    correct = relearn_correct(model, x, y, test_x, test_y, lr, momentum, steps)
    return {t: float(row.mean()) for t, row in zip(steps, correct)}


def relearn_outcomes(
    model: TappedNet, ds: Dataset, split: ForgetSplit, attacks: AttackSet, settings: AttackSettings,
    before: np.ndarray | None = None,
) -> np.ndarray:
    """`relearn_correct` on each of the first `relearn_draws` draws' images, scored on `test_forget`:
    (draws, steps, test_forget images). Every draw starts from the model itself, whose answers (`before`, per
    test image whether it is right, when the caller has them) are read once."""
    test_x, test_y = split_tensors(ds, split)["test_forget"]
    if before is None:
        before = (predict(model, test_x).argmax(1) == test_y.cpu()).numpy()
    out = []
    for f, r in list(zip(attacks.forget, attacks.retain))[: settings.relearn_draws]:
        idx = torch.as_tensor(np.concatenate([f, r]), device=ds.x_train.device)
        out.append(relearn_correct(model, ds.x_train[idx], ds.y_train[idx], test_x, test_y, settings.relearn_lr,
                                   settings.relearn_momentum, settings.relearn_steps, before))
    return np.stack(out)


def relearn_accuracy(
    model: TappedNet, ds: Dataset, split: ForgetSplit, attacks: AttackSet, settings: AttackSettings
) -> dict[int, float]:
    """The relearning attack's accuracy on `test_forget` after each step of the grid, averaged over the draws."""
    outcomes = relearn_outcomes(model, ds, split, attacks, settings)
    return {t: float(outcomes[:, i].mean()) for i, t in enumerate(settings.relearn_steps)}


@dataclass(frozen=True)
class AttackOutcomes:
    """Both attacks' per-image outcomes (`ecnb.outcomes.Outcomes` keeps them with the model's outputs)."""

    relearn: np.ndarray  # (relearning draws, steps, test_forget images)
    fewshot: np.ndarray  # (probe draws, taps, test_forget images)


def attack_rows(
    run: Run, model: TappedNet, method: str, seed: int, ds: Dataset, split: ForgetSplit, max_spatial: int | None = None,
    before: np.ndarray | None = None,
) -> tuple[list[dict], AttackOutcomes | None]:
    """`fewshot_probe_accuracy` per layer and `relearn_accuracy` per step, on `test_forget`, with the per-image
    outcomes behind them; no rows and None for random-sample forgetting. `before`: whether the model answers
    each `test_forget` image right, when the caller has it (`relearn_outcomes`)."""
    attacks = attack_set(run, ds, split, seed)
    if attacks is None:
        return [], None
    settings = run.config.attacks
    probe = fewshot_probe_outcomes(run, model, method, seed, ds, split, attacks, settings, max_spatial)
    relearn = relearn_outcomes(model, ds, split, attacks, settings, before)
    rows = [result_row(seed, method, "fewshot_probe_accuracy", probe[:, t].mean(), split="test_forget", layer=tap)
            for t, tap in enumerate(model.taps)]
    rows += [result_row(seed, method, "relearn_accuracy", relearn[:, i].mean(), split="test_forget", layer=f"step{t}")
             for i, t in enumerate(settings.relearn_steps)]
    return rows, AttackOutcomes(relearn, probe)
