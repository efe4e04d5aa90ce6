"""The baselines: one loss (and, where needed, a setup, a gradient hook, a schedule of phases) each,
registered in `METHODS`: the nine of the unlearning literature, and the two tamper-resistant methods of
"From Dormant to Deleted"."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import TappedNet, build_model
from ..train import autocast, prepare_model
from .core import (FRACTION, NONNEGATIVE, POSITIVE, Batch, ChoiceRule, Method, Phase, Rule, Step, UnlearnData,
                   every_epoch)

def _ce(model: nn.Module, batch: Batch, labels: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(model(batch.x), batch.y if labels is None else labels)


def _kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, per_class: bool = False
) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened outputs, averaged over samples (SCRUB's DistillKL),
    or with `per_class` over samples x classes (what `F.kl_div`'s default 'mean' does in Bad Teacher's code and
    `nn.KLDivLoss()` in weight_dist_reg's reference safeguard; written out, as that default is deprecated and
    announced to become 'batchmean')."""
    kl = F.kl_div(
        F.log_softmax(student_logits.float() / temperature, dim=1),
        F.log_softmax(teacher_logits.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return kl / student_logits.shape[1] if per_class else kl


def _frozen(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients: a teacher."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def _ft_loss(model: TappedNet, state: Any, step: Step) -> torch.Tensor:
    """FT: cross-entropy on D_r (catastrophic forgetting of D_f by fine-tuning on the rest)."""
    return _ce(model, step.retain)


def _ga_loss(model: TappedNet, state: Any, step: Step) -> torch.Tensor:
    """GA: gradient ascent on D_f, i.e. minimise the negated cross-entropy (SalUn's GA)."""
    return -_ce(model, step.forget)


@dataclass
class RandomLabels:
    """RL's state: the generator of its random labels. As in SalUn's code for CIFAR-10 (its RL and its
    SalUn share it), every forget minibatch gets fresh labels drawn uniformly from all classes, the true
    one included, on the CPU from the run's seed (the same draws on every device)."""

    generator: torch.Generator
    num_classes: int


def random_labels(n: int, num_classes: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`n` labels drawn uniformly from all `num_classes` classes."""
    return torch.randint(0, num_classes, (n,), generator=generator).to(device)


def _rl_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> RandomLabels:
    return RandomLabels(torch.Generator().manual_seed(hp["seed"]), data.num_classes)


def _rl_loss(model: TappedNet, state: RandomLabels, step: Step) -> torch.Tensor:
    """RL: cross-entropy towards freshly drawn random labels in the forget pass, true labels in the retain pass."""
    if step.phase == "forget":
        f = step.forget
        return _ce(model, f, random_labels(len(f.y), state.num_classes, state.generator, f.y.device))
    return _ce(model, step.retain)


def _neggrad_plus_loss(model: TappedNet, state: Any, step: Step) -> torch.Tensor:
    """NegGrad+ (Kurmanji et al. 2023): beta * CE(D_r) - (1 - beta) * CE(D_f)."""
    beta = step.hp["beta"]
    return beta * _ce(model, step.retain) - (1 - beta) * _ce(model, step.forget)


def _l1_sparse_loss(model: TappedNet, state: Any, step: Step) -> torch.Tensor:
    """l1-sparse (Jia et al. 2023): FT plus alpha_t * ||w||_1 over all parameters, alpha_t decaying
    linearly from alpha to 0 over the run's steps (SalUn's FT_l1 decays it per epoch)."""
    alpha_t = step.hp["alpha"] * (1 - step.t / step.total)
    l1 = torch.stack([p.abs().sum() for p in model.parameters()]).sum()
    return _ce(model, step.retain) + alpha_t * l1


@dataclass
class Saliency(RandomLabels):
    """SalUn's state: RL's label generator plus the weight saliency mask (True = may be updated)."""

    mask: dict[str, torch.Tensor]


def saliency_mask(model: TappedNet, data: UnlearnData, fraction: float, batch_size: int) -> dict[str, torch.Tensor]:
    """SalUn's mask: |gradient of the forget cross-entropy| summed over one pass over D_f in eval
    mode (as SalUn's generate_mask), keeping the top `fraction` of all weights by one global threshold.
    """
    model.eval()
    model.zero_grad(set_to_none=True)
    for start in range(0, len(data.forget_y), batch_size):
        rows = slice(start, start + batch_size)
        with autocast(data.device):
            loss = F.cross_entropy(model(data.forget_x[rows]), data.forget_y[rows])
        loss.backward()
    named = list(model.named_parameters())
    scores = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).abs().flatten() for _, p in named])
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[scores.topk(int(fraction * scores.numel())).indices] = True
    model.zero_grad(set_to_none=True)
    return {n: m.view_as(p) for (n, p), m in zip(named, keep.split([p.numel() for _, p in named]))}


def _salun_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> Saliency:
    mask = saliency_mask(model, data, hp["mask_fraction"], hp["forget_batch_size"])
    labels = _rl_setup(model, data, hp)
    return Saliency(labels.generator, labels.num_classes, mask)


def _salun_grad_hook(model: TappedNet, state: Saliency, step: Step) -> None:
    """Only salient weights move: their gradient (weight decay included) is kept, all others zeroed."""
    for name, p in model.named_parameters():
        if p.grad is not None:
            p.grad.mul_(state.mask[name])


@dataclass
class Teachers:
    """Frozen teachers: `good` is the original model; `bad` a randomly initialised one (Bad Teacher)."""

    good: nn.Module
    bad: nn.Module | None = None


def random_teacher(model: TappedNet, seed: int) -> TappedNet:
    """A freshly built model of `model`'s architecture, initialised as `ecnb.models.build_model` does
    (the architecture's own init), with seeded weights drawn on the CPU (the same on every device)
    without touching the global random state: Bad Teacher's incompetent teacher, frozen."""
    if model.arch is None:
        raise ValueError("the random teacher is built like the model: build the model with ecnb.build_model")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        fresh = build_model(*model.arch)
    return _frozen(prepare_model(fresh, device))


def _scrub_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> Teachers:
    return Teachers(_frozen(model))


def _scrub_phases(epoch: int, hp: Mapping[str, Any]) -> tuple[Phase, ...]:
    """SCRUB's schedule: a max pass over D_f then a min pass over D_r for the first msteps epochs, then only min."""
    minimise = Phase("min", "retain", "retain")
    return (Phase("max", "forget", "forget"), minimise) if epoch < hp["msteps"] else (minimise,)


def _scrub_loss(model: TappedNet, state: Teachers, step: Step) -> torch.Tensor:
    """SCRUB (Kurmanji et al. 2023): max steps push the student's forget outputs away from the teacher's
    (maximise KL); min steps keep it close on D_r (alpha * KL + gamma * CE, the paper's names: alpha
    weighs the KL, gamma the CE). KL is scaled by T^2 as in the SCRUB code's DistillKL, and averaged over samples,
    or over samples and classes where the method's `kl_reduction` says 'mean' (weight_dist_reg's safeguard as the
    tamper-resistance reference code runs it: `nn.KLDivLoss()` at its default reduction)."""
    hp, temperature = step.hp, step.hp["kd_t"]
    batch = step.forget if step.phase == "max" else step.retain
    logits = model(batch.x)
    with torch.no_grad():
        target = state.good(batch.x)
    kl = _kl(logits, target, temperature, per_class=hp.get("kl_reduction") == "mean") * temperature**2
    if step.phase == "max":
        return -kl
    return hp["alpha"] * kl + hp["gamma"] * F.cross_entropy(logits, batch.y)


def _bad_teacher_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> Teachers:
    return Teachers(_frozen(model), random_teacher(model, hp["seed"]))


def _bad_teacher_loss(model: TappedNet, state: Teachers, step: Step) -> torch.Tensor:
    """Bad Teacher (Chundawat et al. 2023): distil from the incompetent teacher on D_f and the competent
    one on D_r. Forget and retain samples go through one forward pass and the KL is averaged over all of
    them and over the classes, like the code's shuffled union of D_f and a D_r subset and its
    `F.kl_div(..., reduction='mean')`, optimised with Adam (the method's `optimizer`)."""
    f, r = step.forget, step.retain
    with torch.no_grad():
        target = torch.cat([state.bad(f.x), state.good(r.x)])
    return _kl(model(torch.cat([f.x, r.x])), target, step.hp["kd_t"], per_class=True)


def contrastive_unlearning_loss(
    z_forget: torch.Tensor, y_forget: torch.Tensor, z_retain: torch.Tensor, y_retain: torch.Tensor, tau: float
) -> torch.Tensor:
    """Contrastive unlearning (Lee et al. 2024, arXiv 2401.10458) on L2-normalised embeddings.

    Anchors are forget samples. Positives P(i) are the retain samples of *other* classes, pulled towards
    the anchor; negatives N(i) are retain samples of the anchor's own class, pushed away:
        l_i = -(1/|P(i)|) sum_{p in P(i)} s_ip / tau + (n / |P(i)|) log sum_{n in N(i)} exp(s_in / tau),
    with n the retain samples in the batch: the official code spreads the log over all n retain columns
    before dividing by |P(i)|, hence the weight. The second term is taken as 0 when N(i) is empty, which
    is always the case when whole classes are forgotten (the official code adds 1 inside that log for
    class-wise forgetting, and is undefined for a random-sample anchor without a same-class retain
    sample in the batch); the loss is the mean over anchors.
    """
    logits = z_forget.float() @ z_retain.float().T / tau
    same = y_forget[:, None] == y_retain[None, :]
    pos, neg = (~same).float(), same.float()
    n_pos = pos.sum(1).clamp(min=1)
    pull = (logits * pos).sum(1) / n_pos
    shift = logits.max(1, keepdim=True).values.detach()
    has_neg = neg.sum(1) > 0
    push = torch.log((torch.exp(logits - shift) * neg).sum(1) + (~has_neg).float()) + shift.squeeze(1) * has_neg
    return (len(y_retain) / n_pos * push - pull).mean()


def _cu_loss(model: TappedNet, state: Any, step: Step) -> torch.Tensor:
    """CU at the last feature layer: ct_weight * contrastive loss on the L2-normalised `pool` features
    of forget anchors against retain samples, plus ce_weight * CE on D_r (the paper's objective; the
    retain CE is the only term acting at the head). One forward pass over both, as the official code."""
    f, r = step.forget, step.retain
    logits, taps = model.forward_taps(torch.cat([f.x, r.x]))
    z = F.normalize(taps["pool"].float(), dim=1)
    n = len(f.y)
    contrast = contrastive_unlearning_loss(z[:n], f.y, z[n:], r.y, step.hp["tau"])
    return step.hp["ct_weight"] * contrast + step.hp["ce_weight"] * F.cross_entropy(logits[n:], r.y)


# ----------------------------------------------------------------------------- tamper-resistant baselines
# "From Dormant to Deleted" (Siddiqui et al. 2025, code shoaibahmed/vision_relearning, vision_unlearner.py and
# scripts/train.sh): unlearning that resists relearning by moving the weights away from the original's.


def _weight_distortion_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> None:
    """Weight distortion's first move: i.i.d. Gaussian noise of std `alpha` added to every parameter of the
    model being unlearned (BatchNorm's running statistics are buffers and stay), drawn on the CPU from the
    run's seed (the same noise on every device); fine-tuning on D_r follows (`_ft_loss`)."""
    generator = torch.Generator().manual_seed(hp["seed"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator).to(p.device, p.dtype) * hp["alpha"])


def _dist_phases(epoch: int, hp: Mapping[str, Any]) -> tuple[Phase, ...]:
    """SCRUB's schedule for its `epochs` (the reference code starts from a SCRUB-unlearned model, its "initial
    safeguard"), then `dist_epochs` of fine-tuning with the distance term, on a fresh Adam at `dist_lr` without
    weight decay (the reference builds its optimizer anew after loading the safeguarded model, with no decay)."""
    return _scrub_phases(epoch, hp) if epoch < hp["epochs"] else (DIST_PHASE,)


def weight_distance_term(model: nn.Module, reference: nn.Module, eps: float = 1e-8) -> torch.Tensor:
    """The root mean square of the difference between `model`'s parameters and `reference`'s (differentiable
    in `model`), with `eps` under the root as in the reference code (its gradient at 0 stays finite)."""
    diff = torch.cat([(p - q.detach()).flatten() for p, q in zip(model.parameters(), reference.parameters())])
    return torch.sqrt(diff.float().pow(2).mean() + eps)


def _weight_dist_reg_loss(model: TappedNet, state: Teachers, step: Step) -> torch.Tensor:
    """weight_dist_reg: SCRUB's loss in its own epochs; afterwards cross-entropy on D_r minus `dist_alpha` x the
    RMS distance of the weights to the original's, so the weights are pushed out of the original's basin
    while D_r holds the retained classes."""
    if step.phase != DIST_PHASE.name:
        return _scrub_loss(model, state, step)
    return _ce(model, step.retain) - step.hp["dist_alpha"] * weight_distance_term(model, state.good)


DIST_PHASE = Phase("distance", "retain", "retain", lr="dist_lr", optimizer="adam", weight_decay=0.0)

# The anchors an EC variant beyond the paper is read against.
TAMPER_RESISTANT = ("weight_distortion", "weight_dist_reg")

_FORGET_THEN_RETAIN = every_epoch(Phase("forget", "forget", "forget"), Phase("retain", "retain", "retain"))

METHODS: dict[str, Method] = {
    "ft": Method("ft", _ft_loss, every_epoch(Phase("train", "retain", "retain")),
                 summary="fine-tunes on D_r only, hoping D_f fades (catastrophic forgetting)"),
    "ga": Method("ga", _ga_loss, every_epoch(Phase("train", "forget", "forget")), summary="gradient ascent on D_f"),
    "rl": Method("rl", _rl_loss, _FORGET_THEN_RETAIN, _rl_setup, summary="random labels on D_f, then D_r"),
    "neggrad_plus": Method(
        "neggrad_plus", _neggrad_plus_loss, every_epoch(Phase("train", "retain", "both")),
        params={"beta": Rule(float, 0.0, 1.0)}, summary="descent on D_r and ascent on D_f, weighted",
    ),
    "l1_sparse": Method("l1_sparse", _l1_sparse_loss, every_epoch(Phase("train", "retain", "retain")),
                        params={"alpha": NONNEGATIVE}, summary="fine-tuning on D_r with an L1 penalty decayed to 0"),
    "salun": Method("salun", _rl_loss, _FORGET_THEN_RETAIN, _salun_setup, _salun_grad_hook,
                    params={"mask_fraction": FRACTION},
                    summary="random labels, updating only the weights most salient for the forget loss"),
    "scrub": Method(
        "scrub", _scrub_loss, _scrub_phases, _scrub_setup,
        params={"alpha": NONNEGATIVE, "gamma": NONNEGATIVE, "kd_t": POSITIVE, "msteps": Rule(int, 0)},
        summary="a student that moves away from the original teacher on D_f and stays with it on D_r",
    ),
    "bad_teacher": Method("bad_teacher", _bad_teacher_loss, every_epoch(Phase("train", "retain", "both")),
                          _bad_teacher_setup, params={"kd_t": POSITIVE}, optimizer="adam",
                          summary="distils the original on D_r and a random, incompetent teacher on D_f"),
    "cu": Method(
        "cu", _cu_loss, every_epoch(Phase("train", "forget", "both")),
        params={"tau": POSITIVE, "ct_weight": NONNEGATIVE, "ce_weight": NONNEGATIVE},
        summary="contrastive unlearning at the last feature layer only",
    ),
    "weight_distortion": Method(
        "weight_distortion", _ft_loss, every_epoch(Phase("train", "retain", "retain")), _weight_distortion_setup,
        params={"alpha": NONNEGATIVE}, optimizer="adam",
        summary="Gaussian noise on every weight, then fine-tuning on D_r (tamper-resistant)",
    ),
    "weight_dist_reg": Method(
        # SCRUB's state: its teacher is the original, whose weights the distance term is measured to.
        "weight_dist_reg", _weight_dist_reg_loss, _dist_phases, _scrub_setup,
        params={"alpha": NONNEGATIVE, "gamma": NONNEGATIVE, "kd_t": POSITIVE, "msteps": Rule(int, 0),
                "safeguard_optimizer": ChoiceRule(choices=("sgd", "adam")),
                "kl_reduction": ChoiceRule(choices=("batchmean", "mean")),
                "dist_alpha": NONNEGATIVE, "dist_lr": POSITIVE, "dist_epochs": Rule(int, 0)},
        optimizer=lambda hp: hp["safeguard_optimizer"],  # the SCRUB stage's; the distance stage has its own Adam
        epochs=lambda hp: hp["epochs"] + hp["dist_epochs"],
        summary="SCRUB, then fine-tuning on D_r that pushes the weights away from the original's (tamper-resistant)",
        revision=1,  # its distance stage without weight decay (the paper profile's ran with 5e-4)
    ),
}
