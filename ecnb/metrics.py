"""The study's metrics (docs/study.md, "Metrics"), each defined here once; the attacks are `ecnb.attacks`."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import ThreadpoolController

from .artifacts import Run
from .data import Dataset, ForgetSplit, split_tensors
from .features import cached_features
from .models import TappedNet, eval_batch_size
from .results import REFERENCES, result_row


class DegenerateFeatures(ValueError):
    """A layer's features are (nearly) constant across samples: the network's representation collapsed, and
    measures of it such as CKA mean nothing."""


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose arg-max prediction is the true label (we report accuracy, not 1 - accuracy)."""
    if len(y) == 0:
        raise ValueError("accuracy of an empty split is undefined")
    return (logits.argmax(1).cpu() == y.cpu()).float().mean().item()


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy on each class's samples (NaN for a class with none)."""
    pred, y = logits.argmax(1).cpu(), y.cpu()
    return [
        (pred[y == c] == c).float().mean().item() if (y == c).any() else float("nan") for c in range(num_classes)
    ]


Outputs = dict[str, torch.Tensor]  # split name -> the model's softmax probabilities on its images, float64


def model_outputs(model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  logits: Mapping[str, np.ndarray] | None = None) -> Outputs:
    """The model's answers on every non-empty split (`probabilities`): one pass over each split, read by the
    accuracies, the membership attack, the outputs' figures and the verdicts' per-image outcomes alike. `logits`:
    splits whose logits the caller already has (the pass that extracted their features), turned into the same
    probabilities without another pass."""
    logits = logits or {}
    return {name: softmax64(logits[name]) if name in logits else probabilities(model, x)
            for name, (x, y) in splits.items() if len(y)}


def softmax64(logits: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Softmax in float64 on the CPU, as `probabilities` computes it from a model's float32 logits."""
    return torch.softmax(torch.as_tensor(logits).double().cpu(), 1)


def accuracy_rows(outputs: Outputs, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
                  ) -> list[dict]:
    """`accuracy` and `split_size` (its number of images: the n of the accuracy's Wilson interval) for every split
    of `outputs` (`model_outputs`: random-sample forgetting has no `test_forget`)."""
    return [
        row
        for name, probs in outputs.items()
        for row in (result_row(seed, method, "accuracy", accuracy(probs, splits[name][1]), split=name),
                    result_row(seed, method, "split_size", len(probs), split=name))
    ]


# --- CKA -------------------------------------------------------------------------------------------

Array = np.ndarray | torch.Tensor

# The dtype of the study's CKA matrix products (`layer_cka`, `cka_rows`). Centring, the diagonals and the
# sums over products are float64 whatever it is (within a block, float32 sums go by cascades); float32
# products take half the time of float64 ones and move the value by less than `CKA_FLOAT32_TOLERANCE` on
# the study's features (docs/benchmarks.md, "CKA at scale"), where figures and verdicts read two decimals.
CKA_PRODUCTS = torch.float32
CKA_FLOAT32_TOLERANCE = 1e-4
CKA_BLOCK = 512  # samples per Gram block: small enough that the blocks below the diagonal, skipped, save work


def cka(x: Array, y: Array, block_size: int = CKA_BLOCK, products: torch.dtype = torch.float64) -> float:
    """Linear CKA of two representations of the same n samples, with the unbiased HSIC estimator.

    CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)) for K = X Xᵀ, L = Y Yᵀ (Kornblith et al.
    2019; the unbiased HSIC of Song et al. 2012, as in Nguyen et al. 2021, so the value does not drift
    with n). Arrays are (n, d) or (n, ...) and flattened per sample; numpy or torch, on any device.

    Every term of HSIC_u is a sum over the Gram matrices with two exact forms, and the cheaper one for
    the shapes is taken (`_feature_form_is_cheaper`): Gram blocks of `block_size` samples, those on and
    above the diagonal (O(n²(dx + dy)) work, O(block_size² + n) memory beyond the inputs), or the d x d
    products XᵀX, YᵀY and XᵀY (O(n(dx + dy)²) work), cheaper once n outgrows the features. Both give
    the same value up to float rounding. Matrix products are in `products` (float64 by default; the
    study's float32 is `CKA_PRODUCTS`), everything else in float64. Raises ValueError for n < 4 and
    DegenerateFeatures for a representation that is constant across samples (its self-HSIC is 0, so
    CKA is undefined).
    """
    return cka_to_each(x, [y], block_size, products)[0]


def cka_to_each(
    x: Array, ys: Sequence[Array], block_size: int = CKA_BLOCK, products: torch.dtype = torch.float64
) -> list[float]:
    """`cka(x, y)` for each y of `ys`, with x's share of the work (its Gram blocks or XᵀX) done once: a
    model against both references costs three Grams instead of four."""
    xt = _as_2d_tensor(x)
    yts = [_as_2d_tensor(y).to(xt.device) for y in ys]
    n = len(xt)
    if any(len(yt) != n for yt in yts):
        raise ValueError(f"CKA compares representations of the same samples: got {n} and {[len(t) for t in yts]} rows")
    if n < 4:
        raise ValueError(f"unbiased CKA needs at least 4 samples, got {n}")
    if block_size < 1:
        raise ValueError(f"block_size {block_size} must be positive")
    xc, ycs = _centred(xt, products), [_centred(yt, products) for yt in yts]
    if _feature_form_is_cheaper(n, xc.shape[1], [yc.shape[1] for yc in ycs], block_size):
        terms = _feature_terms(xc, ycs)
    else:
        terms = _gram_terms(xc, ycs, block_size)
    h_xx = _checked_self_hsic("x", terms.kk, terms.rk, n)
    return [float(_hsic_u(kl, terms.rk, rl, n) / torch.sqrt(h_xx * _checked_self_hsic("y", ll, rl, n)))
            for kl, ll, rl in zip(terms.kl, terms.ll, terms.rl, strict=True)]


def layer_cka(
    feats_a: dict[str, np.ndarray], feats_b: dict[str, np.ndarray], taps: list[str], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """CKA between two models' features of the same samples, per tap, in the order of `taps`, computed on
    `device` (on a GPU the products take a fraction of the CPU's time) with `CKA_PRODUCTS`."""
    return {tap: values[0] for tap, values in _layer_cka_to_each(feats_a, [feats_b], taps, device).items()}


def _layer_cka_to_each(
    feats: dict[str, np.ndarray], others: list[dict[str, np.ndarray]], taps: list[str], device: torch.device | str
) -> dict[str, list[float]]:
    """Per tap, `cka_to_each` of `feats` with each of `others` (`CKA_PRODUCTS`, on `device`)."""
    on = torch.device(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=on)

    return {tap: cka_to_each(tensor(feats[tap]), [tensor(f[tap]) for f in others], products=CKA_PRODUCTS) for tap in taps}


# CKA reads a seeded sample of at most this many images of a split, the same number of each class. Only
# `test_retain` is capped: it grows with the test set (9,000 images on Fashion-MNIST's full test set, where
# `test_forget` holds 1,000 and `forget_train` a few hundred) and CKA's cost with n² (or n·d²), while its
# CKA is only drawn (notebook 04, the explorer), never read by a verdict. On the validation task
# (Fashion-MNIST, forget class 5; docs/benchmarks.md) the sample's value is within 0.011 of the whole
# split's for every tap, model, reference and sample seed (root mean square 0.0025).
CKA_MAX_IMAGES = {"test_retain": 2000}


def cka_rows(
    run: Run,
    model: TappedNet,
    method: str,
    seed: int,
    references: dict[str, TappedNet],
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
    max_spatial: int | None = None,
) -> list[dict]:
    """`cka_to_original` / `cka_to_retrain` per split and layer, on cached flat features of the split's
    images or, beyond `CKA_MAX_IMAGES`, of `cka_sample`'s.

    `references` maps "original" and/or "retrain" to those models. Rows come split by split, then
    reference by reference, each in network (tap) order; empty splits are skipped.
    """
    unknown = set(references) - set(REFERENCES)
    if unknown:
        raise ValueError(f"CKA references must be among {REFERENCES}, not {sorted(unknown)}")
    device = next(model.parameters()).device
    rows = []
    for split_name, (x, y) in splits.items():
        if not len(x):
            continue
        cache_name, x = cka_sample(split_name, x, y, seed)
        feats = cached_features(run, method, seed, cache_name, model, x, max_spatial)
        ref_feats = [cached_features(run, ref, seed, cache_name, ref_model, x, max_spatial)
                     for ref, ref_model in references.items()]
        values = _layer_cka_to_each(feats, ref_feats, model.taps, device)
        rows += [result_row(seed, method, f"cka_to_{ref}", values[tap][i], split=split_name, layer=tap)
                 for i, ref in enumerate(references) for tap in model.taps]
    return rows


def cka_sample(split_name: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[str, torch.Tensor]:
    """The images CKA reads of a split, and the name their features are cached under: the whole split, or
    beyond its `CKA_MAX_IMAGES` a sample drawn with `seed` (`capped_sample`), cached as `<split>@<cap>` beside the
    whole split's features (notebook 04 embeds some of those)."""
    name, keep = capped_sample(split_name, y, seed)
    return name, x if keep is None else x[torch.as_tensor(keep, device=x.device)]


def capped_sample(split_name: str, y: torch.Tensor, seed: int) -> tuple[str, np.ndarray | None]:
    """The images read of a split where the whole split would add nothing a figure or a verdict reads (CKA, and
    the line from the original to a model), and the name their features are cached under: beyond the split's
    `CKA_MAX_IMAGES`, the sorted positions of a sample drawn with `seed`, at most cap // classes images of each
    class, named `<split>@<cap>`; (the split's name, None) where the whole split is read."""
    cap = CKA_MAX_IMAGES.get(split_name)
    if cap is None or len(y) <= cap:
        return split_name, None
    labels = y.cpu().numpy()
    return f"{split_name}@{cap}", _cap_per_class(labels, cap // len(np.unique(labels)), seed)


def _as_2d_tensor(a: Array) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.reshape(len(t), -1)


def _centred(a: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`a` minus its mean sample, in `dtype`; the mean and the subtraction in float64, a chunk of rows at a time.

    HSIC_u is invariant to shifting every sample by one vector (the shift adds terms of the form
    a_i + a_j + c to the Gram matrix, which the estimator cancels), and centring removes the large common
    offsets (e.g. of ReLU features) that would otherwise cancel in the sums only after losing digits:
    most of float32's seven.
    """
    mean = a.sum(0, dtype=torch.float64) / len(a)
    out = torch.empty(a.shape, dtype=dtype, device=a.device)
    rows = max(1, 2**22 // max(a.shape[1], 1))  # float64 chunks of 32 MiB
    for start in range(0, len(a), rows):
        out[start : start + rows] = a[start : start + rows].double() - mean
    return out


def _feature_form_is_cheaper(n: int, dx: int, dys: list[int], block_size: int) -> bool:
    """Whether XᵀX and, per y, YᵀY and XᵀY (n(dx² + Σ dy² + dx·dy) multiply-adds) cost less than the Gram
    blocks (n²(dx + Σ dy) for one block, towards half that with many: only those on and above the
    diagonal are formed)."""
    blocks = -(-n // block_size)
    gram = n * n * (dx + sum(dys)) * (blocks + 1) / (2 * blocks)
    return n * (dx * dx + sum(dy * dy + dx * dy for dy in dys)) < gram


@dataclass
class _Terms:
    """What HSIC_u needs of K = XXᵀ and each L = YYᵀ, with K̃, L̃ their zero-diagonal copies: sums over
    i != j of K·K (`kk`) and, per y, of K·L (`kl`) and L·L (`ll`), and the row sums K̃1 (`rk`), L̃1 (`rl`)."""

    kk: torch.Tensor
    rk: torch.Tensor
    kl: list[torch.Tensor]
    ll: list[torch.Tensor]
    rl: list[torch.Tensor]


def _sum64(a: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """A sum in `a`'s dtype, returned in float64: torch sums float32 by cascades (pairwise), whose error grows
    with the log of the count, at a tenth of the time of a float64 sum of a float32 tensor; the callers add
    block sums up in float64."""
    return (a.sum() if dim is None else a.sum(dim)).double()


def _feature_terms(x: torch.Tensor, ys: list[torch.Tensor]) -> _Terms:
    """`_Terms` from d x d products, for centred x (n, dx) and ys (n, dy).

    With k_i = |x_i|² the diagonal of K: sum over i != j of K_ij L_ij = |XᵀY|²_F - k·l, and the row
    sums of K̃ are X(Xᵀ1) - k (Xᵀ1 is all but 0 once centred).
    """
    def diagonal_and_row_sums(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = _sum64(a * a, 1)
        return d, (a @ a.sum(0)).double() - d

    k, rk = diagonal_and_row_sums(x)
    terms = _Terms(_frobenius2(x.T @ x) - k @ k, rk, [], [], [])
    for y in ys:
        l, rl = diagonal_and_row_sums(y)
        terms.kl.append(_frobenius2(x.T @ y) - k @ l)
        terms.ll.append(_frobenius2(y.T @ y) - l @ l)
        terms.rl.append(rl)
    return terms


def _frobenius2(m: torch.Tensor) -> torch.Tensor:
    return _sum64(m * m)


def _gram_terms(x: torch.Tensor, ys: list[torch.Tensor], block_size: int) -> _Terms:
    """`_Terms` from blocks of the Gram matrices, for centred x and ys: the blocks on and above the
    diagonal, each off-diagonal one standing for its transpose too."""
    n = len(x)

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float64, device=x.device)

    terms = _Terms(zeros(), zeros(n), [zeros() for _ in ys], [zeros() for _ in ys], [zeros(n) for _ in ys])
    starts = list(range(0, n, block_size))
    for i, b in enumerate(starts):
        rows = slice(b, b + block_size)
        for c in starts[i:]:
            cols = slice(c, c + block_size)
            weight = 1.0 if c == b else 2.0
            k = _gram_block(x, rows, cols)
            terms.kk = terms.kk + weight * _sum64(k * k)
            _add_row_sums(terms.rk, k, rows, cols)
            for j, y in enumerate(ys):
                l = _gram_block(y, rows, cols)
                terms.kl[j] = terms.kl[j] + weight * _sum64(k * l)
                terms.ll[j] = terms.ll[j] + weight * _sum64(l * l)
                _add_row_sums(terms.rl[j], l, rows, cols)
    return terms


def _gram_block(a: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """Rows x cols of the zero-diagonal Gram matrix of `a`."""
    g = a[rows] @ a[cols].T
    if rows == cols:
        g.fill_diagonal_(0)
    return g


def _add_row_sums(sums: torch.Tensor, block: torch.Tensor, rows: slice, cols: slice) -> None:
    """Add a block's share of the row sums: its own rows' and, for a block above the diagonal, its transpose's."""
    sums[rows] += _sum64(block, 1)
    if rows != cols:
        sums[cols] += _sum64(block, 0)


def _checked_self_hsic(name: str, s: torch.Tensor, r: torch.Tensor, n: int) -> torch.Tensor:
    """HSIC_u(K, K), refused for features that are (nearly) constant across samples: for real features it
    is about the mean squared off-diagonal kernel entry, s / (n(n-1)); for constant ones 0 up to rounding."""
    h = _hsic_u(s, r, r, n)
    if not h > 1e-10 * s / (n * (n - 1)):
        raise DegenerateFeatures(f"CKA is undefined: the features of {name} are (nearly) constant across samples")
    return h


def _hsic_u(s_ab: torch.Tensor, ra: torch.Tensor, rb: torch.Tensor, n: int) -> torch.Tensor:
    """HSIC_u = [tr(ÃB̃) + (1ᵀÃ1)(1ᵀB̃1)/((n-1)(n-2)) - 2/(n-2) 1ᵀÃB̃1] / (n(n-3)), from accumulated terms.

    tr(ÃB̃) = sum over i != j of A_ij B_ij (both symmetric); 1ᵀÃ1 = sum(Ã1); 1ᵀÃB̃1 = (Ã1)·(B̃1).
    """
    return (s_ab + ra.sum() * rb.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ra @ rb)) / (n * (n - 3))


# --- membership inference ------------------------------------------------------------------------


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Softmax outputs per sample, float64 on the CPU, in eval mode on the raw images.

    No augmentation and no autocast: confidences crowd just below 1 (members, in the membership attack)
    or near 1/C, where the differences read here would drown in bf16 logits (about three significant digits).
    """
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    was_training = model.training
    model.eval()
    try:
        chunks = [model(x[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return softmax64(torch.cat(chunks))


def true_label_confidence(probs: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Softmax probability of the true label per sample, float64 (`probabilities`' answers)."""
    return probs.gather(1, y.cpu().long().view(-1, 1)).squeeze(1).numpy()


def mia_efficacy(members: np.ndarray, non_members: np.ndarray, target: np.ndarray, seed: int = 0,
                 max_per_side: int = 5000) -> float:
    """Fraction of the forget set that a confidence-based membership attack calls non-members, from the true-label
    confidences of retain-train samples (`members`), test samples (`non_members`) and D_f (`target`).

    As SalUn's SVC_MIA: an RBF SVC (C=3, gamma='auto') on one feature, the true-label confidence, learns
    retain-train samples (members, 1) against test samples (non-members, 0), then labels D_f. Higher
    means more forgotten; `retrain` is the yardstick. Where published code goes wrong, this does instead:
    - the members are D_r only, never D_f (the callers pass `retain_train`, disjoint from D_f by
      the forget split's check), so the attack is not trained on the very samples it judges;
    - members and non-members are balanced: the larger side is subsampled with a seeded RNG (both capped
      at `max_per_side` to keep the SVC fast), so the attack cannot win by predicting the majority;
    - confidences come from the model in eval mode on un-augmented images (`probabilities`).
    For class-wise forgetting the non-members should be `test_retain`, so both shadow sets hold the same
    classes and the attack learns membership, not class.
    """
    if not len(target):
        raise ValueError("MIA efficacy of an empty forget set is undefined")
    rng = np.random.default_rng(seed)
    k = min(len(members), len(non_members), max_per_side)
    if k == 0:
        raise ValueError("MIA needs non-empty member (retain) and non-member (test) sets")
    shadow = np.concatenate([members[rng.choice(len(members), k, replace=False)],
                             non_members[rng.choice(len(non_members), k, replace=False)]])
    labels = np.concatenate([np.ones(k), np.zeros(k)])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(shadow[:, None], labels)
    return float(np.mean(attack.predict(target[:, None]) == 0))


def mia_rows(outputs: Outputs, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], method: str, seed: int
             ) -> list[dict]:
    """The `mia_efficacy` row on `forget_train`: members `retain_train`, non-members `test_retain`.

    `test_retain` holds the kept classes' test images for class-wise forgetting and the whole test set
    for random-sample forgetting: in both cases the same classes as `retain_train`.
    """
    conf = {name: true_label_confidence(outputs[name], splits[name][1])
            for name in ("retain_train", "test_retain", "forget_train")}
    value = mia_efficacy(conf["retain_train"], conf["test_retain"], conf["forget_train"], seed=seed)
    return [result_row(seed, method, "mia_efficacy", value, split="forget_train")]


# --- outputs on the forgotten images -------------------------------------------------------------

# What the outputs on the forgotten images look like, against `retrain`'s on the same images.
OUTPUT_SPLITS = ("forget_train", "test_forget")


def output_entropy(probs: torch.Tensor | np.ndarray) -> float:
    """Mean prediction entropy in nats: 0 for certain answers, ln C for uniform ones over C classes."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return float(-(p * torch.log(p.clamp_min(1e-300))).sum(1).mean())


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical distribution functions
    of `a` and `b` (0: the same distribution of values; 1: no overlap at all)."""
    return float(ks_2samp(np.asarray(a, np.float64), np.asarray(b, np.float64)).statistic)


def output_rows(outputs: Outputs, retrain_outputs: Outputs, method: str, seed: int) -> list[dict]:
    """`output_entropy` and `output_ks_to_retrain` on the splits of `OUTPUT_SPLITS` that hold images: the
    model's mean prediction entropy, and the KS distance between its top-class probabilities and
    `retrain`'s on the same images (`retrain_outputs`). A model that never saw the class answers a forgotten
    image with a fairly confident guess at a similar class; near-uniform answers (the most common way an
    unlearned model "forgets") or certain ones give it away to anyone who can query it."""
    rows = []
    for name in (n for n in OUTPUT_SPLITS if n in outputs):
        probs, reference = outputs[name], retrain_outputs[name]
        top, reference_top = probs.max(1).values.numpy(), reference.max(1).values.numpy()
        rows += [result_row(seed, method, "output_entropy", output_entropy(probs), split=name),
                 result_row(seed, method, "output_ks_to_retrain", ks_distance(top, reference_top), split=name)]
    return rows


# --- linear probe ----------------------------------------------------------------------------------

PROBE_TRAIN_SPLITS = ("forget_train", "retain_train")  # the whole training set, forgotten classes included


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once: finding them scans the loaded libraries (~0.1 s)."""
    return ThreadpoolController()


def single_blas_thread() -> contextlib.AbstractContextManager:
    """One BLAS thread for the small fits of the linear probes: their matrices are small (at most 1,000
    samples per class by a few hundred features), so more threads only add synchronisation, and on a
    busy machine their spinning made each fit about 30x slower (docs/benchmarks.md)."""
    return _thread_pools().limit(limits=1, user_api="blas")


def probe_accuracy(
    train_feats: np.ndarray, train_y: np.ndarray, test_feats: np.ndarray, test_y: np.ndarray, seed: int = 0
) -> float:
    """Accuracy of a linear probe (standardised features, multinomial logistic regression) on the test set.

    The linear-probing attack: how much of a class a linear read-out of frozen features recovers.
    """
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    with single_blas_thread():
        probe.fit(np.asarray(train_feats, dtype=np.float64), np.asarray(train_y))
        predicted = probe.predict(np.asarray(test_feats, dtype=np.float64))
    return float(np.mean(predicted == np.asarray(test_y)))


def layer_probe_accuracy(
    run: Run,
    model: TappedNet,
    method: str,
    seed: int,
    ds: Dataset,
    split: ForgetSplit,
    max_spatial: int | None = None,
    max_per_class: int | None = 1000,
) -> dict[str, float]:
    """`probe_accuracy` per tap (network order): trained on the run's training images, scored on `test_forget`.

    Takes the data set and the forget split rather than arrays, so the probe's training images are, by
    construction, the training splits (`PROBE_TRAIN_SPLITS`, all classes) and never test images. Each
    class is capped at `max_per_class` samples (seeded) to keep the fit fast at CIFAR scale. Features
    are the cached, globally average-pooled ones.
    """
    splits = split_tensors(ds, split)
    x_test, y_test = splits["test_forget"]
    if not len(y_test):
        raise ValueError("the probe is scored on test_forget, which is empty for random-sample forgetting")
    train = [cached_features(run, method, seed, name, model, splits[name][0], max_spatial, pooled=True)
             for name in PROBE_TRAIN_SPLITS]
    train_y = np.concatenate([splits[name][1].cpu().numpy() for name in PROBE_TRAIN_SPLITS])
    keep = _cap_per_class(train_y, max_per_class, seed)
    test = cached_features(run, method, seed, "test_forget", model, x_test, max_spatial, pooled=True)
    return {
        tap: probe_accuracy(np.concatenate([f[tap] for f in train])[keep], train_y[keep], test[tap],
                            y_test.cpu().numpy(), seed)
        for tap in model.taps
    }


def probe_rows(
    run: Run, model: TappedNet, method: str, seed: int, ds: Dataset, split: ForgetSplit, max_spatial: int | None = None
) -> list[dict]:
    """`probe_accuracy` rows per layer on `test_forget`; none for random-sample forgetting (no forgotten class)."""
    if split.forget_fraction is not None:
        return []
    accs = layer_probe_accuracy(run, model, method, seed, ds, split, max_spatial)
    return [result_row(seed, method, "probe_accuracy", v, split="test_forget", layer=tap) for tap, v in accs.items()]


def _cap_per_class(y: np.ndarray, max_per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices keeping at most `max_per_class` samples of each class, drawn with a seeded RNG."""
    if max_per_class is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:max_per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))

