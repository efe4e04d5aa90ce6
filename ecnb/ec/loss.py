"""The EC loss of one step: per supervision point a contrastive pull on the forget samples' embeddings,
cross-entropy on the retain samples and, for `ec+proto`, the forget samples relabelled to their targets;
the points summed with their layer weights."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import TappedNet
from ..train import prepare_model
from ..unlearn import Step, UnlearnData, contrastive_unlearning_loss
from .points import build_aux, layer_weights, supervision_points, warm_up

@dataclass
class ECState:
    """What the EC loss needs: the supervision points in network order, their weights, the final tap's
    name and the frozen auxiliary modules of the intermediate points."""

    points: tuple[str, ...]
    weights: tuple[float, ...]
    final: str
    aux: nn.ModuleDict
    targets: torch.Tensor | None = None  # per D_f row: the retain class it is pulled to (`forget_targets`)


# Warmed auxiliary modules of this process, by `_warm_up_key`: `ec`, its plug-ins and the ablations that
# keep its points start from the same original, data and settings, so one warm-up serves them all.
_WARMED: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
_WARMED_MAX = 4


def ec_setup(model: TappedNet, data: UnlearnData, hp: Mapping[str, Any]) -> ECState:
    """Resolve points and weights against the model's taps, build and warm up the auxiliary modules.

    A warm-up is deterministic in the model's weights, the data and the settings, and draws nothing
    from the global random state, so an identical one done earlier in this process is reused."""
    points = supervision_points(hp["ec_points"], model.taps)
    weights = layer_weights(hp["ec_weights"], points, model.taps)
    device = data.device
    aux = build_aux(model, points, data.forget_x[:2], data.num_classes, hp["seed"])
    aux = prepare_model(aux, device)
    key = _warm_up_key(model, points, data, hp)
    if key in _WARMED:
        _WARMED.move_to_end(key)
        aux.load_state_dict(_WARMED[key])
        aux.eval().requires_grad_(False)
    else:
        warm_up(model, aux, data, hp)
        _WARMED[key] = {k: v.detach().clone() for k, v in aux.state_dict().items()}
        if len(_WARMED) > _WARMED_MAX:
            _WARMED.popitem(last=False)
    needs_targets = hp["ec_pull"] == "target" or hp["ec_relabel_weight"] > 0
    targets = forget_targets(model, data) if needs_targets else None
    return ECState(points, weights, model.taps[-1], aux, targets)


def forget_targets(model: TappedNet, data: UnlearnData) -> torch.Tensor:
    """Each forget sample's target: the class the original model ranks first once the forgotten classes
    are ruled out, i.e. where its own read-out would put the image had the class never existed (a model
    retrained without the class puts most of its images in a few such neighbouring classes). For
    random-sample forgetting nothing is ruled out: the target is the original's own prediction."""
    was_training = model.training
    with torch.no_grad():
        logits = torch.cat([model.eval()(x).float() for x in data.forget_x.split(256)])
    model.train(was_training)
    if data.forget_classes:
        logits[:, list(data.forget_classes)] = float("-inf")
    return logits.argmax(1)


def _warm_up_key(model: TappedNet, points: tuple[str, ...], data: UnlearnData, hp: Mapping[str, Any]) -> str:
    """A digest of everything a warm-up depends on: the model's state, D_f and D_r, and the settings."""
    digest = hashlib.sha256()
    for t in (*model.state_dict().values(), data.forget_x, data.forget_y, data.retain_x, data.retain_y):
        digest.update(t.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    settings = [points, data.num_classes, str(data.device), type(model).__name__,
                *(hp[k] for k in ("seed", "batch_size", "ec_aux_epochs", "ec_aux_lr"))]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def negative_learning_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log(1 - p_y), averaged over samples (NLNL, Kim et al. 2019): lowers the true class's probability
    with a gradient that fades as it reaches 0. Computed as logsumexp over the other classes minus
    logsumexp over all, which stays finite when p_y is 1 in floating point."""
    logits = logits.float()
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return (logits.logsumexp(1) - others.logsumexp(1)).mean()


def target_pull_loss(z_forget: torch.Tensor, targets: torch.Tensor, z_retain: torch.Tensor, y_retain: torch.Tensor,
                     tau: float) -> torch.Tensor:
    """Supervised-contrastive pull of each forget anchor onto its target class (normalised embeddings):
        l_i = -(1/|P(i)|) sum_{p in P(i)} s_ip / tau + log sum_{j in retain} exp(s_ij / tau),
    P(i) the retain samples of class targets[i]. Its minimum sits *inside* that class's cluster, where
    CU's pull towards every retain sample of another class has its minimum at one point between the
    clusters, the same for every anchor: a place of its own, which a probe finds (issue 16). The retain
    embeddings are held fixed (detached): the forget sample goes to the class, the class does not come to
    it. Anchors whose target class has no sample in the batch are left out; 0 when none has one."""
    logits = z_forget.float() @ z_retain.detach().float().T / tau
    pos = (targets[:, None] == y_retain[None, :]).float()
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return logits.sum() * 0.0
    loss = logits.logsumexp(1) - (logits * pos).sum(1) / n_pos.clamp(min=1)
    return loss[has].mean()


def point_loss(embedding: torch.Tensor, logits: torch.Tensor, n_forget: int, step: Step,
               targets: torch.Tensor | None = None) -> torch.Tensor:
    """One supervision point's loss on a [forget; retain] batch: `ec_ct_weight` x the contrastive pull on
    the normalised embeddings (CU's, or onto each forget sample's target class, `ec_pull`) plus
    `ec_ce_weight` x cross-entropy on the retain samples plus `ec_relabel_weight` x cross-entropy of the
    forget samples towards their targets, read out at this point."""
    hp, f, r = step.hp, step.forget, step.retain
    z = F.normalize(embedding.float(), dim=1)
    if hp["ec_pull"] == "target":
        contrast = target_pull_loss(z[:n_forget], targets, z[n_forget:], r.y, hp["ec_tau"])
    else:
        contrast = contrastive_unlearning_loss(z[:n_forget], f.y, z[n_forget:], r.y, hp["ec_tau"])
    total = hp["ec_ct_weight"] * contrast + hp["ec_ce_weight"] * F.cross_entropy(logits[n_forget:].float(), r.y)
    if hp["ec_relabel_weight"]:
        total = total + hp["ec_relabel_weight"] * F.cross_entropy(logits[:n_forget].float(), targets)
    return total


def ec_term(model: TappedNet, state: ECState, step: Step) -> torch.Tensor:
    """The EC loss of one step: the layer-weighted sum of `point_loss` over the supervision points plus
    `ec_nl_weight` x negative learning on the forget samples at the model's head, from one forward pass
    over the forget and retain minibatches together (as CU's code does)."""
    f, r = step.forget, step.retain
    logits, taps = model.forward_taps(torch.cat([f.x, r.x]))
    n = len(f.y)
    targets = None if state.targets is None else state.targets[f.idx]
    total = step.hp["ec_nl_weight"] * negative_learning_loss(logits[:n], f.y)
    for point, weight in zip(state.points, state.weights):
        embedding, point_logits = (taps[point], logits) if point == state.final else state.aux[point](taps[point])
        total = total + weight * point_loss(embedding, point_logits, n, step, targets)
    return total
