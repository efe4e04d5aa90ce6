"""Training: one routine for `original` (on D) and `retrain` (on D_r), plus helpers the unlearning
methods share (batching on the device, mixed precision, prediction).
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .artifacts import Run, load_checkpoint, save_checkpoint
from .config import StudyConfig, TrainRecipe, resolve_device
from .data import Dataset, ForgetSplit
from .features import remove_cached
from .models import TappedNet, build_model, eval_batch_size
from .progress import epoch_bar
from .results import MEMBER_PREFIX, is_member, population_names
from .workers import run_jobs, shared, worker_count

# A retrained model of the population other than the run's own: seeded by the study seed and its number.
MEMBER_SEED_STRIDE = 1000


def seed_everything(seed: int) -> None:
    """Same seed, same model: weights, shuffling and augmentation all draw from seeded generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores); full precision on the CPU, where bf16 is slower."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to `device` in channels-last memory, where cuDNN's and oneDNN's convolutions are fastest: on
    CUDA, and on the CPU too (the embedded model at one thread: a training step 21 ms against 26 ms, an
    EC step 60 ms against 78 ms, docs/benchmarks.md)."""
    model = model.to(device)
    if device.type in ("cuda", "cpu"):
        model = model.to(memory_format=torch.channels_last)
    return model


def batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Shuffled index batches drawn on `device`, so data already resident there is never copied."""
    order = torch.randperm(n, generator=generator, device="cpu").to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero-padded by `pad`) and horizontal flip, batched on the tensor's device."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, :]
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


def fit(
    model: TappedNet,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: TrainRecipe,
    seed: int,
    device: torch.device | str = "auto",
    desc: str = "train",
) -> list[float]:
    """Train with SGD + momentum and a cosine schedule; returns the mean training loss per epoch.

    The loss is accumulated on the device and read once per epoch, so the step never waits on the host.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    model = prepare_model(model, device)
    x, y = x.to(device), y.to(device)
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.15, anneal_strategy="cos"
    )
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    model.train()
    bar = epoch_bar(recipe.epochs, desc)
    for _ in bar:
        total = torch.zeros((), device=device)
        for idx in batches(len(x), recipe.batch_size, gen, device):
            xb = x[idx]
            if recipe.augment:
                xb = augment(xb, gen)
            with autocast(device):
                loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(idx)
        history.append(total.item() / len(x))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


def model_from_state(
    config: StudyConfig, ds: Dataset, state_dict: dict[str, torch.Tensor], device: torch.device
) -> TappedNet:
    """The run's architecture with saved weights, on `device` and in eval mode: every checkpoint loads so."""
    model = build_model(config.model, ds.input_shape[0], ds.num_classes)
    model.load_state_dict(state_dict)
    return prepare_model(model, device).eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits for `x` in eval mode, batched (`eval_batch_size` unless given), on the model's device; returned as
    float32 on the CPU."""
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        with autocast(device):
            out.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def train_reference(
    run: Run,
    ds: Dataset,
    split: ForgetSplit,
    method: str,
    seed: int,
    device: torch.device | str = "auto",
) -> TappedNet:
    """Train `original` (on D) or a retrained model (`retrain` or `retrain#j`, on D_r) with the same recipe,
    or load its checkpoint. `retrain#j` differs from `retrain` only in its seed (`member_seed`): another
    initialisation and minibatch order on the same D_r.

    The checkpoint records the configuration's cache key; one made by another configuration is
    retrained, never silently reused.
    """
    if method != "original" and not is_member(method):
        raise ValueError(f"reference method must be 'original', 'retrain' or 'retrain#<j>', not {method!r}")
    device = resolve_device(device) if isinstance(device, str) else device
    config = run.config
    path = run.checkpoint_path(method, seed)
    key = config.cache_key()
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt["meta"].get("cache_key") == key:
            return model_from_state(config, ds, ckpt["state_dict"], device)
        print(f"{path} was made by another configuration; retraining {method}")
    remove_cached(run, method, seed)  # features of the previous weights (the cache refuses them anyway)
    idx = np.arange(len(ds.y_train)) if method == "original" else split.retain_idx
    idx_t = torch.as_tensor(idx, device=ds.y_train.device)
    trained_seed = member_seed(method, seed)
    seed_everything(trained_seed)
    model = build_model(config.model, ds.input_shape[0], ds.num_classes)
    start = time.perf_counter()
    history = fit(model, ds.x_train[idx_t], ds.y_train[idx_t], config.train, trained_seed, device,
                  desc=f"{method} (seed {seed})")
    meta = {"cache_key": key, "method": method, "seed": seed, "final_loss": history[-1],
            "wall_time": time.perf_counter() - start}
    save_checkpoint(path, model, meta)
    return model.eval()


def member_seed(method: str, seed: int) -> int:
    """The seed a reference is trained with: the study seed for `original` and `retrain`, and for `retrain#j`
    the study seed plus j x `MEMBER_SEED_STRIDE` (another initialisation and minibatch order)."""
    return seed + (int(method[len(MEMBER_PREFIX):]) * MEMBER_SEED_STRIDE if method.startswith(MEMBER_PREFIX) else 0)


def train_references(
    run: Run, ds: Dataset, split: ForgetSplit, seed: int, device: torch.device | str = "auto"
) -> dict[str, TappedNet]:
    """`original` and the population of retrained models (`retrain`, `retrain#1` ... as many as the run's
    `population`), trained side by side in worker processes (`ecnb.workers`: the same weights as one after
    another), or loaded from their checkpoints."""
    device = resolve_device(device) if isinstance(device, str) else device
    names = ["original", *population_names(run.config.population)]
    todo = [(name,) for name in names if not _has_checkpoint(run, name, seed)]
    for _ in run_jobs(_reference_job, todo, worker_count(device, len(todo)), (run, ds, split, seed, device)):
        pass
    return {name: train_reference(run, ds, split, name, seed, device) for name in names}


def _has_checkpoint(run: Run, method: str, seed: int) -> bool:
    path = run.checkpoint_path(method, seed)
    return path.exists() and load_checkpoint(path)["meta"].get("cache_key") == run.config.cache_key()


def _reference_job(method: str) -> None:
    """`train_reference` as a job of `ecnb.workers`, on the run and data `train_references` shares."""
    run, ds, split, seed, device = shared()
    train_reference(run, ds, split, method, seed, device)
