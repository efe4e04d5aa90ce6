"""Per-layer features of a `TappedNet`, extracted once and cached in the run directory.

Two views of every tap come out of one forward pass:

- *flat*: the activation flattened per sample, (N, C*H*W), for CKA. At ResNet/CIFAR scale a conv tap
  is first average-pooled to at most `max_spatial` x `max_spatial` positions, or layer1 alone would be
  64k numbers per image; the quick profile keeps everything (`max_spatial=None`).
- *pooled*: the global average over H and W, (N, C), for the linear probe (docs/study.md, "Metrics", asks
  for pooled features there). It does not depend on `max_spatial`.

The `pool` tap is already (N, D) and is the same in both views. The logits come along under "logits".

Cache: `run.seed_dir(seed)/features/<method>__<split>.npz`, one uncompressed npz per (seed, method,
split) holding `pooled.<tap>`, `flat.<tap>` when the flat view was asked for (a split only probed,
such as `retain_train`, never stores its large flat view), `logits` (all float32), `taps` (str), `n`,
`max_spatial` (-1 for None) and `model`, the digest of the weights the features came from
(`model_digest`): a file made by other weights (a recomputed method, a retrained reference) is never
read back, whichever code path asks for it. Tap names never contain a dot (torch forbids it in module
names), so the key separator is unambiguous. A damaged file (truncated, not an archive, arrays missing)
is recomputed with a warning naming it rather than refused: it derives from a checkpoint alone, so recomputing loses
nothing, where `--force` would retrain every model. Files load with `allow_pickle=False`, and only the view asked
for: the probes, which read the pooled view, do not read the flat one (on Fashion-MNIST's test set, tens of MB).
"""
from __future__ import annotations

import hashlib
import sys
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .artifacts import Run, atomic_write
from .models import TappedNet, eval_batch_size

Features = dict[str, np.ndarray]


def extract_features(
    model: TappedNet,
    x: torch.Tensor,
    batch_size: int | None = None,
    max_spatial: int | None = None,
    global_pool: bool = False,
) -> Features:
    """Every tap as (N, d) float32 in network order, then "logits"; `global_pool` gives the pooled view.

    Runs in eval mode without gradients on the model's device and in full precision (no autocast:
    bf16 features would blur CKA); the model's train/eval mode is restored afterwards.
    """
    flat, pooled = _extract(model, x, batch_size, max_spatial, keep_flat=not global_pool)
    return pooled if global_pool else flat


def cached_features(
    run: Run,
    method: str,
    seed: int,
    split_name: str,
    model: TappedNet,
    x: torch.Tensor,
    max_spatial: int | None = None,
    pooled: bool = False,
    force: bool = False,
) -> Features:
    """`extract_features` of `x`, loaded from the run directory when a matching file is there.

    A file is reused when it came from the same weights (`model_digest`), has the model's taps and
    `len(x)` samples and, for the flat view, the same `max_spatial`; otherwise it is recomputed. Pass
    `force=True` to recompute regardless.
    """
    _check_max_spatial(max_spatial)
    path = features_path(run, method, seed, split_name)
    digest = model_digest(model)
    view = "pooled" if pooled else "flat"
    if path.exists() and not force:
        stored = _load(path, view)
        if stored is not None and _matches(stored, digest, model.taps, len(x), max_spatial, pooled):
            return _view(stored, model.taps, view)
    flat, pool = _extract(model, x, None, max_spatial, keep_flat=not pooled)
    arrays = {f"flat.{k}": v for k, v in flat.items() if k != "logits"}
    arrays.update({f"pooled.{k}": v for k, v in pool.items() if k != "logits"})
    arrays.update(
        logits=pool["logits"], taps=np.array(model.taps), n=np.int64(len(x)),
        max_spatial=np.int64(-1 if max_spatial is None else max_spatial), model=np.array(digest),
    )

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file handle, because np.savez appends .npz to a bare path
            np.savez(f, **arrays)

    atomic_write(path, write)
    return pool if pooled else flat


def features_path(run: Run, method: str, seed: int, split_name: str) -> Path:
    """Where `cached_features` keeps one (seed, method, split)."""
    return run.seed_dir(seed) / "features" / f"{method}__{split_name}.npz"


def _cached_files(run: Run, seed: int) -> list[Path]:
    folder = run.seed_dir(seed) / "features"
    return [p for p in folder.iterdir() if p.suffix == ".npz"] if folder.is_dir() else []


def remove_cached(run: Run, method: str, seed: int) -> None:
    """Delete every cached features file of `method` (its weights changed). Names are compared exactly,
    never as a glob pattern: method names such as `ec[last]` hold pattern characters."""
    for path in _cached_files(run, seed):
        if path.stem.rpartition("__")[0] == method:
            path.unlink()


def remove_all_cached(run: Run) -> None:
    """Delete the cached features of every model and seed of a run: a finished sweep cell keeps its checkpoints,
    rows, outcomes and embeddings, while its features, recomputed from a checkpoint whenever asked for, would be
    most of its disk (7.5 of a Fashion-MNIST cell's 7.8 GB)."""
    for seed in run.config.seeds:
        for path in _cached_files(run, seed):
            path.unlink()


# model -> (the version counters of its tensors, their digest): a model measured many times (every split,
# every reference) is hashed once, and any in-place change of a weight bumps its counter.
_DIGESTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, ...], str]]" = weakref.WeakKeyDictionary()


def model_digest(model: torch.nn.Module) -> str:
    """A digest of the model's weights and buffers (names, dtypes, shapes, bytes), whatever its device:
    cached features carry the digest of the model they came from."""
    state = model.state_dict()
    versions = tuple(t._version for t in state.values())
    cached = _DIGESTS.get(model)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    _DIGESTS[model] = (versions, digest.hexdigest()[:32])
    return _DIGESTS[model][1]


@torch.no_grad()
def _extract(
    model: TappedNet, x: torch.Tensor, batch_size: int | None, max_spatial: int | None, keep_flat: bool
) -> tuple[Features, Features]:
    """Both views in one pass (`eval_batch_size` images at a time unless given); the flat one is skipped
    (returned empty) when not wanted."""
    _check_max_spatial(max_spatial)
    if len(x) == 0:
        raise ValueError("cannot extract features of an empty split")
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    was_training = model.training
    model.eval()
    flat: dict[str, list[torch.Tensor]] = {tap: [] for tap in model.taps}
    pooled: dict[str, list[torch.Tensor]] = {tap: [] for tap in model.taps}
    logits: list[torch.Tensor] = []
    try:
        for start in range(0, len(x), batch_size):
            out, feats = model.forward_taps(x[start : start + batch_size].to(device))
            for tap, a in feats.items():
                if keep_flat:
                    flat[tap].append(_flatten(a, max_spatial).float().cpu())
                pooled[tap].append((a.mean(dim=(2, 3)) if a.dim() == 4 else a).float().cpu())
            logits.append(out.float().cpu())
    finally:
        model.train(was_training)
    all_logits = torch.cat(logits).numpy()
    flat_out = {**_concat(flat), "logits": all_logits} if keep_flat else {}
    return flat_out, {**_concat(pooled), "logits": all_logits}


def _check_max_spatial(max_spatial: int | None) -> None:
    positive_int = isinstance(max_spatial, int) and not isinstance(max_spatial, bool) and max_spatial > 0
    if max_spatial is not None and not positive_int:
        raise ValueError(f"max_spatial {max_spatial!r} must be a positive integer or None")


def _flatten(a: torch.Tensor, max_spatial: int | None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*h*w), average-pooled to h, w <= max_spatial first (never upsampled)."""
    if a.dim() == 4 and max_spatial is not None:
        h, w = a.shape[2:]
        a = F.adaptive_avg_pool2d(a, (min(h, max_spatial), min(w, max_spatial)))
    return a.reshape(len(a), -1)


def _concat(parts: dict[str, list[torch.Tensor]]) -> Features:
    return {tap: torch.cat(chunks).numpy() for tap, chunks in parts.items()}


def _load(path: Path, view: str) -> dict[str, np.ndarray] | None:
    """The file's arrays of one view (`flat` or `pooled`) with the logits and what identifies the file, read now
    so that a damaged archive shows here: then None, after a warning naming the file, and the caller recomputes
    it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files if k.startswith(f"{view}.") or "." not in k}
    except Exception as e:  # zipfile, numpy and OS errors all mean the same here: unreadable
        print(f"features file {path} is corrupted or truncated ({type(e).__name__}); recomputing it", file=sys.stderr)
        return None
    taps = stored["taps"].tolist() if "taps" in stored else None
    # a file always holds the pooled view; one whose flat view is missing fails `_matches` and is recomputed
    needed = {"logits", "n", "max_spatial", "model"} | {f"pooled.{t}" for t in taps or [] if view == "pooled"}
    if taps is None or not needed <= stored.keys():
        print(f"{path} is not an ecnb features file; recomputing it", file=sys.stderr)
        return None
    return stored


def _matches(
    stored: dict[str, np.ndarray], digest: str, taps: list[str], n: int, max_spatial: int | None, pooled: bool
) -> bool:
    """The same weights, taps and sample count, and for the flat view a file that holds it, with the same
    `max_spatial` (the pooled view does not depend on it)."""
    if str(stored["model"]) != digest or stored["taps"].tolist() != list(taps) or int(stored["n"]) != n:
        return False
    if pooled:
        return True
    has_flat = all(f"flat.{t}" in stored for t in taps)
    return has_flat and int(stored["max_spatial"]) == (-1 if max_spatial is None else max_spatial)


def _view(stored: dict[str, np.ndarray], taps: list[str], view: str) -> Features:
    return {**{tap: stored[f"{view}.{tap}"] for tap in taps}, "logits": stored["logits"]}
