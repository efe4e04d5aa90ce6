"""Per-layer UMAP embeddings of a fixed sample of test images, for every model of a run, made comparable.

What is embedded: the *flat* features (`ecnb.features`, pooled as for CKA, `ecnb.evaluate.max_spatial`),
so a picture and a CKA value describe the same representation; the pooled view would reduce an early
conv layer to a handful of channel means. UMAP runs with Euclidean distances, which, like linear CKA,
do not change under rotations of the feature space or a uniform rescaling of it.

Comparable: UMAP fixes neither where it puts each cluster nor the layout's position, orientation, mirror
image and scale. Every other model's embedding of a layer starts from `original`'s embedding of the same
points (UMAP's `init`), so a cluster whose neighbourhoods are the same in both models stays where `original`
has it and only what the model changed moves (fitted from UMAP's own start, two models put the same
classes in different places, which no rigid fit undoes); then it is aligned onto `original`'s
(`procrustes_align`), each retained class's cluster is moved onto its place in `original`'s, the points between
them with their nearest clusters (`anchor_classes`), and the figures share one set of axes per layer.

Cached: one file per model and layer, `seed<k>/embeddings/<method>__<layer>__<key>.npz`, an array
`embedding` (float32, one row per sample point) written atomically. The key hashes the checkpoint's
bytes, the layer, the sample positions, the feature view, the UMAP settings, umap-learn's version and,
for every model but `original`, the key of the `original` embedding it starts from: any change makes a new file, and an unchanged one is never fitted again. umap is imported only to fit.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.linalg import orthogonal_procrustes
from sklearn.metrics import pairwise_distances

from .artifacts import ArtifactError, Run, atomic_write, load_checkpoint
from .config import resolve_device
from .data import Dataset, ForgetSplit, forget_split, run_dataset, split_tensors
from .evaluate import max_spatial as spatial_cap
from .features import cached_features
from .models import TappedNet
from .progress import text_bar
from .results import method_order, read_results
from .train import model_from_state
from .workers import run_jobs, worker_count
from .workers import shared as shared_objects

SAMPLE_SPLITS = ("test_forget", "test_retain")


@dataclass(frozen=True)
class UmapSettings:
    """UMAP's knobs that change the picture. A fixed `random_state` makes the fit reproducible (and
    single-threaded, which costs little at a few hundred points). `n_epochs` 200 is what umap-learn
    itself uses above 10,000 points; below, it would take 500, which at a few hundred points moves
    nothing a reader sees and takes 0.6 s per fit against 0.35 s (125 fits in the quick study)."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int = 200
    random_state: int = 0


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Sample:
    """Test images to embed: sorted positions into each of `SAMPLE_SPLITS`' tensors, and their labels."""

    positions: dict[str, np.ndarray]
    y: np.ndarray


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Atlas:
    """Aligned 2-D embeddings, `coords[method][layer]` of shape (n, 2), of one sample for every model."""

    sample: Sample
    classes: list[str]
    forget_classes: tuple[int, ...]
    methods: list[str]
    layers: list[str]
    coords: dict[str, dict[str, np.ndarray]]


def draw_sample(ds: Dataset, split: ForgetSplit, n_retain: int, n_forget: int, seed: int) -> Sample:
    """A seeded sample of at most `n_forget` test_forget and `n_retain` test_retain images.

    The same seed gives the same points, so every model (and every later run) embeds the same images.
    """
    splits = split_tensors(ds, split)
    rng = np.random.default_rng(seed)
    positions = {}
    for name, cap in zip(SAMPLE_SPLITS, (n_forget, n_retain)):
        if cap < 0:
            raise ValueError(f"sample size {cap} for {name} must be at least 0")
        n = len(splits[name][1])
        positions[name] = np.sort(rng.choice(n, min(cap, n), replace=False))
    y = np.concatenate([splits[name][1].cpu().numpy()[positions[name]] for name in SAMPLE_SPLITS])
    return Sample(positions, y)


def run_models(run: Run, ds: Dataset, seed: int, device: torch.device | str = "auto",
               methods: list[str] | None = None) -> dict[str, TappedNet]:
    """Every model of `seed` (or of `methods` among them) that `results.csv` names and whose checkpoint is in the
    run directory, `original` and `retrain` first; `original` is required, as the reference the others are
    aligned to."""
    device = resolve_device(device) if isinstance(device, str) else device
    results = read_results(run.root)
    named = method_order(results.loc[results["seed"] == seed, "method"])
    wanted = named if methods is None else [m for m in named if m in methods]
    methods = [m for m in wanted if run.checkpoint_path(m, seed).exists()]
    if "original" not in methods:
        raise ArtifactError(
            f"{run.root} has no checkpoint of 'original' for seed {seed}: run notebook 01 with this run_dir first"
        )
    models = {}
    for method in methods:
        state = load_checkpoint(run.checkpoint_path(method, seed))["state_dict"]
        models[method] = model_from_state(run.config, ds, state, device)
    return models


def embed_layers(
    run: Run,
    ds: Dataset,
    split: ForgetSplit,
    seed: int,
    models: dict[str, TappedNet],
    sample: Sample,
    settings: UmapSettings = UmapSettings(),
) -> Atlas:
    """Every model's embedding of every layer, from the cache or fitted now, aligned onto `original`'s.

    Features are read only for models with a layer not yet cached, from `ecnb.features`' cache of the
    whole test splits (notebook 02 leaves it behind) and indexed down to the sample.
    """
    if len(sample.y) <= settings.n_neighbors:
        raise ValueError(
            f"a sample of {len(sample.y)} test images is too small for n_neighbors={settings.n_neighbors}; "
            "sample more images or lower n_neighbors"
        )
    layers = models["original"].taps
    splits = split_tensors(ds, split)
    max_spatial = spatial_cap(run.config.profile, ds.input_shape)
    original_keys = _keys(run, seed, "original", layers, sample, settings, max_spatial)
    paths = {m: {layer: embedding_path(run, seed, m, layer, key) for layer, key in _keys(
                 run, seed, m, layers, sample, settings, max_spatial, None if m == "original" else original_keys).items()}
             for m in models}
    missing = {m: [(layer, str(p)) for layer, p in ps.items() if not p.exists()] for m, ps in paths.items()}
    missing = {m: todo for m, todo in missing.items() if todo}
    device = next(models["original"].parameters()).device
    bar = text_bar(total=len(models) * len(layers), desc="UMAP", unit="layer")
    bar.update(len(models) * len(layers) - sum(map(len, missing.values())))
    shared = (run, ds, splits, seed, sample, settings, max_spatial, device)
    starts = {layer: str(path) for layer, path in paths["original"].items()}  # the start of every other fit
    # `original` first, a job per layer so that both cores fit it: every other model's fit starts from its embedding
    # of the same layer
    firsts = [("original", [(layer, path, None)]) for layer, path in missing.get("original", [])]
    others = [(m, [(layer, path, starts[layer]) for layer, path in todo])
              for m, todo in missing.items() if m != "original"]
    for args in (firsts, others):
        for i, fitted in run_jobs(_embedding_job, args, worker_count(device, len(args)), shared):
            bar.set_postfix_str(args[i][0], refresh=False)
            bar.update(fitted)
    bar.close()
    raw = {method: {layer: _load(path) for layer, path in ps.items()} for method, ps in paths.items()}
    kept = [c for c in np.unique(sample.y) if c not in split.forget_classes]
    coords = {
        method: {layer: anchor_classes(procrustes_align(raw[method][layer], raw["original"][layer]),
                                       raw["original"][layer], sample.y, kept) for layer in layers}
        for method in models
    }
    return Atlas(sample, ds.classes, split.forget_classes, list(models), layers, coords)


def _embedding_job(method: str, todo: list[tuple[str, str, str | None]]) -> int:
    """One model's missing embeddings ((layer, path, the path of the embedding its fit starts from or None)),
    fitted and saved as a job of `ecnb.workers` on what `embed_layers` shares; the model is its checkpoint, as
    the embeddings' keys say. How many."""
    run, ds, splits, seed, sample, settings, max_spatial, device = shared_objects()
    model = model_from_state(run.config, ds, load_checkpoint(run.checkpoint_path(method, seed))["state_dict"], device)
    feats = _sample_features(run, method, seed, model, splits, sample, max_spatial)
    for layer, path, start in todo:
        _save(Path(path), fit_umap(feats[layer], settings, None if start is None else _load(Path(start))))
    return len(todo)


def run_atlas(run: Run, seed: int, device: torch.device | str, n_retain: int, n_forget: int,
              settings: UmapSettings = UmapSettings(), methods: list[str] | None = None) -> Atlas:
    """Every model of a finished run (or of `methods`) embedded at every layer, in one call: what the explorer
    app needs (notebook 04 takes the same steps one by one, to show them)."""
    device = resolve_device(device) if isinstance(device, str) else device
    ds = run_dataset(run, device)
    split = forget_split(run, ds, seed)
    models = run_models(run, ds, seed, device, methods)
    sample = draw_sample(ds, split, n_retain, n_forget, seed)
    return embed_layers(run, ds, split, seed, models, sample, settings)


NEIGHBOURS = 10  # the neighbourhood that says where a forgotten image sits (UMAP's is 15, over all points)


def forget_places(run: Run, ds: Dataset, split: ForgetSplit, seed: int, models: dict[str, TappedNet], sample: Sample,
                  k: int = NEIGHBOURS) -> pd.DataFrame:
    """Where each model keeps the forgotten classes' sampled test images, layer by layer, in the features UMAP
    embeds (not in the picture, whose distances are UMAP's), against `original`'s features of the same images: one
    row per model and layer with `neighbour_places`' figures and `k`. Read from `ecnb.features`' cache (notebook 02
    leaves it behind)."""
    splits = split_tensors(ds, split)
    max_spatial = spatial_cap(run.config.profile, ds.input_shape)
    original = _sample_features(run, "original", seed, models["original"], splits, sample, max_spatial)
    theirs = {layer: _nearest(original[layer], k) for layer in models["original"].taps}  # once, read by every model
    rows = []
    for method, model in models.items():
        features = None if method == "original" else _sample_features(run, method, seed, model, splits, sample,
                                                                      max_spatial)
        for layer in model.taps:
            mine = theirs[layer] if features is None else _nearest(features[layer], k)
            place = _places(mine, theirs[layer], sample.y, split.forget_classes, k, seed)
            rows.append({"method": method, "layer": layer, "k": k, **place,
                         "beside": ds.classes[place["beside"]] if place["beside"] >= 0 else ""})
    return pd.DataFrame(rows)


def neighbour_places(features: np.ndarray, reference: np.ndarray, y: np.ndarray, forget_classes: tuple[int, ...],
                     k: int, seed: int = 0) -> dict:
    """Where the forgotten images (labels in `forget_classes`) sit among `features` (one row per image, labels `y`),
    and how far their neighbourhoods moved from those in `reference` (`original`'s features of the same images).

    Each forgotten image takes the class most of its k nearest other images (Euclidean) belong to. `together`: the
    share of them whose neighbourhood is mostly forgotten images (the class kept as a group); `beside`: the retained
    class that most of the others take (-1 if none), `beside_share` the share of all forgotten images that take it;
    `n`: how many forgotten images. `stay`: the mean share of a forgotten image's k nearest images that are also
    among its k nearest in `reference`, `retained_stay` the same for the retained images (what any change of the
    layer does to every image), each with a 95% bootstrap interval over the images (`_low`, `_high`)."""
    return _places(_nearest(features, k), _nearest(reference, k), y, forget_classes, k, seed)


def _places(mine: np.ndarray, theirs: np.ndarray, y: np.ndarray, forget_classes: tuple[int, ...], k: int,
            seed: int) -> dict:
    """`neighbour_places` from each image's k nearest images in the model's features (`mine`) and in the
    reference's (`theirs`): `forget_places` finds `original`'s once per layer for every model."""
    forgotten = np.isin(y, forget_classes)
    if not forgotten.any():
        return {"together": np.nan, "beside": -1, "beside_share": np.nan, "n": 0}
    kept = (mine[:, :, None] == theirs[:, None, :]).any(2).sum(1) / k  # each row's neighbours are distinct
    taken = np.array([np.bincount(row, minlength=int(y.max()) + 1).argmax() for row in y[mine[forgotten]]])
    apart = taken[~np.isin(taken, forget_classes)]
    beside = int(np.bincount(apart).argmax()) if len(apart) else -1
    rng = np.random.default_rng(seed)
    stay, retained = _mean_interval(kept[forgotten], rng), _mean_interval(kept[~forgotten], rng)
    return {"together": float(np.isin(taken, forget_classes).mean()), "beside": beside,
            "beside_share": float((taken == beside).mean()), "n": int(forgotten.sum()),
            "stay": stay[0], "stay_low": stay[1], "stay_high": stay[2],
            "retained_stay": retained[0], "retained_stay_low": retained[1], "retained_stay_high": retained[2]}


def _nearest(features: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows (Euclidean), nearest first, ties in index order: a stable argsort's first
    k, found among the k + 1 smallest of each row (the whole row is sorted only where a tie crosses the k-th)."""
    distances = pairwise_distances(np.asarray(features, dtype=np.float32))
    np.fill_diagonal(distances, np.inf)  # an image is not its own neighbour
    k = min(k, distances.shape[1] - 1)
    if k + 1 >= distances.shape[1]:
        return np.argsort(distances, axis=1, kind="stable")[:, :k]
    part = np.argpartition(distances, k, axis=1)[:, : k + 1]
    values = np.take_along_axis(distances, part, 1)
    order = np.lexsort((part, values), axis=1)  # by distance, then by index
    part, values = np.take_along_axis(part, order, 1), np.take_along_axis(values, order, 1)
    nearest = part[:, :k]
    tied = values[:, k - 1] == values[:, k]  # a neighbour as near as the k-th may lie outside the k + 1
    if tied.any():
        nearest[tied] = np.argsort(distances[tied], axis=1, kind="stable")[:, :k]
    return nearest


def _mean_interval(values: np.ndarray, rng: np.random.Generator, replicates: int = 1000) -> tuple[float, float, float]:
    """The mean of `values` and its 95% percentile bootstrap interval over them."""
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    means = values[rng.integers(0, len(values), size=(replicates, len(values)))].mean(1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def embedding_path(run: Run, seed: int, method: str, layer: str, key: str) -> Path:
    """Where `embed_layers` keeps one model's embedding of one layer."""
    return run.seed_dir(seed) / "embeddings" / f"{method}__{layer}__{key}.npz"


def fit_umap(features: np.ndarray, settings: UmapSettings, init: np.ndarray | None = None) -> np.ndarray:
    """A 2-D UMAP embedding of (n, d) features, float32, with Euclidean distances, starting from `init` (n, 2)
    when given (else from UMAP's spectral layout).

    The distances are computed here (scikit-learn, BLAS) and given to UMAP as precomputed: below 4,096
    points umap-learn computes them itself through scikit-learn with its numba metric as a Python
    callable, one call per pair, which took half of each fit (0.5 s against 0.27 s at 397 x 4,096)."""
    umap = _umap()
    distances = pairwise_distances(np.asarray(features, dtype=np.float32), metric="euclidean")
    reducer = umap.UMAP(n_components=2, n_jobs=1, metric="precomputed", init="spectral" if init is None else init,
                        **asdict(settings))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)
        return reducer.fit_transform(distances).astype(np.float32)


@functools.cache
def _umap() -> Any:
    """umap-learn, with numba's on-disk cache turned on for every kernel of umap and pynndescent that its
    authors left uncached and that is not compiled yet. Those kernels otherwise compile again at the
    first fit of every process, 11 s here, which every worker of notebook 04 would pay; cached, the
    first fit takes 0.1 s. The machine code is numba's either way, so the embeddings are the same."""
    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    modules = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("umap", "pynndescent") and m]
    for module in modules:
        for kernel in list(vars(module).values()):
            if isinstance(kernel, Dispatcher) and isinstance(kernel._cache, NullCache) and not kernel.overloads:
                kernel.enable_caching()
    return umap


def compile_umap() -> None:
    """One tiny fit, so that numba compiles umap-learn's and pynndescent's kernels into NUMBA_CACHE_DIR
    (`make setup` calls it, 35 s): every later process then imports umap in about 2 s instead of 18 s
    and fits its first embedding in 0.1 s instead of 11 s."""
    fit_umap(np.random.default_rng(0).normal(size=(60, 8)), UmapSettings(n_neighbors=5, n_epochs=20))


def procrustes_align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`points` moved onto `reference`: centred on it, scaled to its spread, and rotated (or mirrored) to
    fit it best in least squares.

    These are exactly the freedoms UMAP leaves open, so what differs after alignment is a real difference
    between the two embeddings of the same points. The scale matches the spreads rather than minimising
    the squared error, which would shrink an embedding the more it differs from the reference and make it
    look collapsed.
    """
    p = points - points.mean(0)
    r = reference - reference.mean(0)
    p = p * (np.linalg.norm(r) / np.linalg.norm(p))
    rotation, _ = orthogonal_procrustes(p, r)
    return (p @ rotation + reference.mean(0)).astype(np.float32)


def anchor_classes(points: np.ndarray, reference: np.ndarray, y: np.ndarray, kept: list[int]) -> np.ndarray:
    """`points` moved so that each retained class's centre lands on its centre in `reference` (`original`'s
    embedding of the same images), every point with the clusters nearest to it.

    Where a model's features keep a retained class's images together, UMAP may still place that cluster anywhere
    relative to the others; no rotation undoes that (at layer4 and pool, `original` and `retrain` put the classes
    in different places). Each point moves by the centres' displacements weighted by the inverse fourth power of
    its distance to each centre: a cluster moves nearly as one, and a forgotten image sitting at a class moves with
    that class, so where the forgotten class sits among the others is kept. A picture only: the answer of notebook
    04 reads the features themselves (`forget_places`)."""
    if not kept:
        return points
    centres = np.stack([points[y == c].mean(0) for c in kept])
    shift = np.stack([reference[y == c].mean(0) for c in kept]) - centres
    scale = float(np.ptp(reference, axis=0).max()) or 1.0
    squared = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1) + (1e-3 * scale) ** 2
    weights = 1.0 / squared**2
    weights /= weights.sum(1, keepdims=True)
    return (points + weights @ shift).astype(np.float32)


def _sample_features(
    run: Run, method: str, seed: int, model: TappedNet, splits: dict, sample: Sample, max_spatial: int | None
) -> dict[str, np.ndarray]:
    """The sample's flat features per tap: test_forget's points, then test_retain's. A split the sample covers is read
    whole, under its own name (the measurement's CKA caches the same view); of a larger one only the sampled images
    are, under a name of their own: Fashion-MNIST's 9,000 test_retain images would otherwise be passed and kept
    (300 MB a model) for the 500 that are embedded."""
    parts = []  # (features, the sample's rows of them)
    for name in SAMPLE_SPLITS:
        x, y = splits[name]
        pos = sample.positions[name]
        if not len(y):
            continue
        if len(pos) == len(y):
            parts.append((cached_features(run, method, seed, name, model, x, max_spatial), pos))
        elif len(pos):
            sampled = f"{name}@sample{len(pos)}-{hashlib.sha256(pos.tobytes()).hexdigest()[:8]}"
            features = cached_features(run, method, seed, sampled, model, x[torch.as_tensor(pos, device=x.device)],
                                       max_spatial)
            parts.append((features, np.arange(len(pos))))
    return {tap: np.concatenate([f[tap][rows] for f, rows in parts]) for tap in model.taps}


def _keys(run: Run, seed: int, method: str, layers: list[str], sample: Sample, settings: UmapSettings,
          max_spatial: int | None, starts: dict[str, str] | None = None) -> dict[str, str]:
    """The cache key of each layer's embedding of `method`; `starts`: the keys of the embeddings its fits start
    from (`original`'s), None for `original` itself."""
    checkpoint = _file_hash(run.checkpoint_path(method, seed))
    positions = {name: pos.tolist() for name, pos in sample.positions.items()}
    keys = {}
    for layer in layers:
        spec = {
            "checkpoint": checkpoint, "layer": layer, "positions": positions, "umap": asdict(settings),
            "max_spatial": max_spatial, "umap-learn": version("umap-learn"), "start": (starts or {}).get(layer),
        }
        keys[layer] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return keys


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save(path: Path, embedding: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file handle, because np.savez appends .npz to a bare path
            np.savez(f, embedding=embedding)

    atomic_write(path, write)


def _load(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["embedding"]
    except Exception as e:  # zipfile, numpy and OS errors all mean the same here: unreadable
        raise ArtifactError(f"embedding {path} is unreadable ({type(e).__name__}); delete it to recompute it") from e
