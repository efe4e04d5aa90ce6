"""Erase at the Core: registry, settings, where its gradient goes, and what each of its terms does."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ecnb import ec
from ecnb.ec import loss as ec_loss
from ecnb.config import ConfigError
from ecnb.methods import HPARAMS, METHODS, hparams, run_method
from ecnb.unlearn import Batch, Step, UnlearnData


@pytest.fixture(scope="module")
def data(trained) -> UnlearnData:
    return UnlearnData.from_splits(trained.splits, trained.ds.num_classes, trained.split.forget_classes, "cpu")


@pytest.fixture(scope="module")
def batches(data) -> tuple[Batch, Batch]:
    """A fixed forget and retain minibatch of 32 each."""
    gen = torch.Generator().manual_seed(0)
    fi = torch.randperm(len(data.forget_y), generator=gen)[:32]
    ri = torch.randperm(len(data.retain_y), generator=gen)[:32]
    return Batch(data.forget_x[fi], data.forget_y[fi], fi), Batch(data.retain_x[ri], data.retain_y[ri], ri)


def _hp(name: str = "ec", **overrides) -> dict:
    """Cheap settings: one warm-up epoch, one epoch over a quarter of D_r."""
    extra = {"msteps": 1} if name.startswith("scrub") else {}
    return hparams(name, **{"epochs": 1, "retain_fraction": 0.25, "ec_aux_epochs": 1, **extra, **overrides})


def _step(hp: dict, forget: Batch, retain: Batch, phase: str = "train", t: int = 0) -> Step:
    return Step(0, phase, t, t, 10, forget, retain, hp)


def _train(model, loss_fn, steps: int, lr: float) -> list[float]:
    """`steps` SGD updates of `model` (train mode) on whatever `loss_fn(model, t)` returns."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    losses = []
    for t in range(steps):
        loss = loss_fn(model, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _relative_change(model, reference, key: str) -> float:
    a, b = model.state_dict()[key], reference.state_dict()[key]
    return ((a - b).norm() / b.norm()).item()


# ----------------------------------------------------------------------------- registry


def test_method_names_cover_every_baseline():
    bases = [n for n in METHODS if not ec.is_ec(n)]
    assert {"ga", "rl", "cu"} <= set(bases)
    assert ec.method_names() == ["ec", *(f"{b}+ec" for b in bases)]
    for name in ec.method_names() + ec.ablation_names():
        assert name in METHODS
        for profile in HPARAMS:
            hparams(name, profile)


def test_plugin_keeps_the_base_and_adds_ec_settings():
    for b in ec.baselines():
        hp = hparams(f"{b}+ec")
        assert {k: hp[k] for k in hparams(b)} == {**hparams(b), "seed": 0}
        assert set(ec.EC_PARAMS) <= set(hp)


def test_register_is_idempotent_and_picks_up_new_baselines():
    methods = dict(METHODS)
    table = copy.deepcopy(HPARAMS)
    methods["toy"] = METHODS["ft"]
    for profile in table:
        table[profile]["toy"] = dict(table[profile]["ft"])
    ec.register(methods, table)
    ec.register(methods, table)
    assert "toy+ec" in methods and "toy+ec+ec" not in methods
    assert all("toy+ec" in t for t in table.values())
    for profile, ec_table in ec.EC_HPARAMS.items():  # a plug-in without a choice of its own takes the term
        assert {k: table[profile]["toy+ec"][k] for k in ec_table["term"]} == ec_table["term"]


def test_variants_their_ablations_and_plugins_are_registered_with_their_terms():
    assert ec.variant_names() == ["ec+soft"]
    for profile in HPARAMS:
        for variant, terms in ec.VARIANT_TERMS.items():
            hp = hparams(variant, profile)
            assert {k: hp[k] for k in terms} == terms
            for b in ec.baselines():  # a variant's plug-in is B+ec with the variant's terms
                assert hparams(ec.plugin_name(b, variant), profile) == {**hparams(f"{b}+ec", profile), **terms}
        for name, (of, over) in ec.VARIANT_ABLATIONS.items():
            assert hparams(name, profile) == {**hparams(of, profile), **over}
    assert hparams("ec+soft")["ec_relabel_weight"] > 0 and hparams("ec+soft")["ec_pull"] == "target"
    assert hparams("ec+soft")["ec_targets"] == "soft_relabel" and hparams("ec+soft[hard]")["ec_targets"] == "hard"
    assert hparams("ec")["ec_pull"] == "retain" and hparams("ec")["ec_relabel_weight"] == 0, "ec stays the paper's"
    assert all(ec.is_ec(n) for n in ["ec+soft", "ec+soft[pull]", "ga+ec+soft", "neggrad_plus+ec"])
    assert not any(ec.is_ec(n) for n in ec.baselines())


def test_a_plugins_own_ec_settings_override_the_term():
    for profile, ec_table in ec.EC_HPARAMS.items():
        for name, own in ec_table.get("plugins", {}).items():
            hp = hparams(name, profile)
            assert {k: hp[k] for k in own} == own
            assert {k: hp[k] for k in ec_table["term"] if k not in own} == {
                k: v for k, v in ec_table["term"].items() if k not in own}


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ec_tau": 0.0}, r"ec_tau=0.0 is invalid; valid: a number > 0"),
        ({"ec_tau": -0.7}, r"ec_tau=-0.7 is invalid"),
        ({"ec_ct_weight": -1.0}, r"ec_ct_weight=-1.0 is invalid; valid: a number >= 0"),
        ({"ec_nl_weight": -1.0}, r"ec_nl_weight=-1.0 is invalid"),
        ({"ec_weights": [1.0, -0.5, 1.0, 1.0, 1.0]}, r"negative weight\(s\) \[-0.5\]"),
        ({"ec_weights": -2.0}, r"ec_weights=-2.0 is invalid"),
        ({"ec_weights": "steep"}, r"ec_weights='steep' is invalid; valid: a number >= 0, 'uniform' or 'depth'"),
        ({"ec_points": ""}, r"ec_points='' is invalid"),
        ({"ec_points": 3}, r"ec_points=3 is invalid"),
        ({"ec_pull": "centre"}, r"ec_pull='centre' is invalid; valid: 'retain' or 'target'"),
        ({"ec_relabel_weight": -1.0}, r"ec_relabel_weight=-1.0 is invalid"),
    ],
)
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        hparams("ec", **overrides)


def test_unknown_tap_names_it_and_the_valid_taps(trained, data):
    with pytest.raises(ConfigError, match=r"unknown supervision point 'layer9' .*valid taps: layer1, layer2, layer3, layer4, pool"):
        run_method("ec", trained.original, data, _hp(ec_points="layer2,layer9"))


def test_points_and_weight_schemes():
    taps = ["layer1", "layer2", "layer3", "layer4", "pool"]
    assert ec.supervision_points("all", taps) == tuple(taps)
    assert ec.supervision_points("last", taps) == ("pool",)
    assert ec.supervision_points("pool, layer2", taps) == ("layer2", "pool")
    assert ec.supervision_points(["layer3"], taps) == ("layer3",)
    points = ("layer2", "pool")
    assert ec.layer_weights("uniform", points, taps) == (1.0, 1.0)
    assert ec.layer_weights("depth", points, taps) == (0.4, 1.0)
    assert ec.layer_weights(0.1, points, taps) == (0.1, 1.0)
    assert ec.layer_weights([0.3, 2], points, taps) == (0.3, 2.0)
    with pytest.raises(ConfigError, match=r"2 supervision point\(s\)"):
        ec.layer_weights([1.0, 1.0, 1.0], points, taps)
    with pytest.raises(ConfigError, match="repeats"):
        ec.supervision_points("layer2,layer2", taps)


def test_aux_plan_reaches_the_last_stage_shape():
    assert ec.aux_plan((16, 16, 16), (128, 2, 2)) == [(16, 3, 2), (16, 3, 2), (128, 3, 2)]
    assert ec.aux_plan((128, 2, 2), (128, 2, 2)) == [(128, 1, 1)]
    assert ec.aux_plan((64, 32, 32), (512, 4, 4)) == [(64, 3, 2), (64, 3, 2), (512, 3, 2)]
    assert ec.aux_plan((512,), (512, 4, 4)) == []


# ----------------------------------------------------------------------------- the model and the loss


@pytest.mark.parametrize("name", ["ec", "ec[last]", "rl+ec"])
def test_aux_modules_are_gone_from_the_returned_model(name, trained, data):
    before = {k: v.clone() for k, v in trained.original.state_dict().items()}
    model, stats = run_method(name, trained.original, data, _hp(name))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[k].shape == before[k].shape for k in before)
    assert sum(1 for _ in model.modules()) == sum(1 for _ in trained.original.modules())
    assert all(torch.equal(v, trained.original.state_dict()[k]) for k, v in before.items()), "input model modified"
    assert stats.steps > 0 and all(torch.isfinite(torch.tensor(stats.losses)))


def test_aux_modules_are_warmed_frozen_and_sized(trained, data):
    model = copy.deepcopy(trained.original)
    state = ec.ec_setup(model, data, _hp(ec_aux_epochs=2))
    assert state.points == tuple(model.taps) and state.final == "pool"
    assert set(state.aux) == set(model.taps[:-1])
    assert not any(p.requires_grad for p in state.aux.parameters())
    assert not state.aux.training
    with torch.no_grad():
        _, taps = model.eval().forward_taps(data.forget_x[:64])
        for point, head in state.aux.items():
            embedding, logits = head(taps[point])
            assert embedding.shape == (64, 128) and logits.shape == (64, data.num_classes)
            # Warmed on the original's features of D: the read-out recognises the forget class.
            assert (logits.argmax(1) == data.forget_y[:64]).float().mean() > 0.5, point


def test_a_warm_up_done_before_is_reused_and_a_changed_model_is_warmed_again(trained, data, monkeypatch):
    hp = _hp(ec_aux_epochs=1, seed=11)
    first = ec.ec_setup(copy.deepcopy(trained.original), data, hp).aux.state_dict()
    warmed = []
    real_warm_up = ec_loss.warm_up
    monkeypatch.setattr(ec_loss, "warm_up", lambda *a: warmed.append(1) or real_warm_up(*a))
    again = ec.ec_setup(copy.deepcopy(trained.original), data, {**hp, "ec_weights": "depth"})
    assert warmed == [] and not again.aux.training and not any(p.requires_grad for p in again.aux.parameters())
    monkeypatch.setattr(ec_loss, "_WARMED", type(ec_loss._WARMED)())
    fresh = ec.ec_setup(copy.deepcopy(trained.original), data, hp).aux.state_dict()
    assert warmed == [1], "an empty store warms up"
    for reused in (again.aux.state_dict(), fresh):  # the warm-up is deterministic: reuse changes nothing
        assert all(torch.equal(v, reused[k]) for k, v in first.items())

    changed = copy.deepcopy(trained.original)
    with torch.no_grad():
        changed.stages["layer1"][0].weight.mul_(1.01)
    ec.ec_setup(changed, data, hp)
    ec.ec_setup(copy.deepcopy(trained.original), data, {**hp, "ec_aux_lr": 2e-3})
    assert warmed == [1, 1, 1]


def test_ec_loss_is_finite_and_falls(trained, data, batches):
    model = copy.deepcopy(trained.original)
    hp = _hp()
    state = ec.ec_setup(model, data, hp)
    losses = _train(model, lambda m, t: ec.ec_term(m, state, _step(hp, *batches, t=t)), steps=8, lr=0.01)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0


def test_gradient_reaches_the_backbone_not_the_aux_modules(trained, data, batches):
    model = copy.deepcopy(trained.original).train()
    hp = _hp(ec_points="layer1", ec_nl_weight=0.0)
    state = ec.ec_setup(model, data, hp)
    ec.ec_term(model, state, _step(hp, *batches)).backward()
    assert all(p.grad is None for p in state.aux.parameters()), "the frozen auxiliary modules must get no gradient"
    assert model.stages["layer1"][0].weight.grad.abs().sum() > 0
    deeper = [*model.stages["layer2"].parameters(), *model.head.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in deeper), "a layer1 point must not reach deeper layers"


def test_ec_moves_early_layers_where_ga_barely_does(trained, data, batches):
    """Same batches, steps and learning rate: GA's update lands mostly in the head, EC's reaches layer1."""
    forget, retain = batches
    hp = _hp()
    ga_model, ec_model = copy.deepcopy(trained.original), copy.deepcopy(trained.original)
    state = ec.ec_setup(ec_model, data, hp)
    _train(ga_model, lambda m, t: -F.cross_entropy(m(forget.x), forget.y), steps=10, lr=0.01)
    _train(ec_model, lambda m, t: ec.ec_term(m, state, _step(hp, forget, retain, t=t)), steps=10, lr=0.01)
    early, head = "stages.layer1.0.weight", "head.weight"
    ga = {k: _relative_change(ga_model, trained.original, k) for k in (early, head)}
    ec_ = {k: _relative_change(ec_model, trained.original, k) for k in (early, head)}
    assert ec_[early] > 2.5 * ga[early], (ec_, ga)
    assert ec_[early] / ec_[head] > 5 * ga[early] / ga[head], (ec_, ga)


def _embeddings(model, point: str, state: ec.ECState, x: torch.Tensor) -> torch.Tensor:
    """The L2-normalised embeddings of `x` at `point`, in eval mode."""
    with torch.no_grad():
        _, taps = model.eval().forward_taps(x)
        z = taps[point] if point == state.final else state.aux[point](taps[point])[0]
    return F.normalize(z, dim=1)


@pytest.mark.parametrize("point", ["layer2", "pool"])
def test_contrastive_term_dissolves_the_forget_class(point, trained, data, batches):
    """Only the contrastive term (no cross-entropy, no negative learning): the anchors' embeddings leave
    their own class's prototype for the other classes'. Prototypes are the original's mean embeddings of
    the forget class and of the retain classes; the margin is how much closer (cosine) an anchor of the
    trained forget minibatch is to its own prototype than to the retain one."""
    model = copy.deepcopy(trained.original)
    hp = _hp(ec_points=point, ec_ce_weight=0.0, ec_nl_weight=0.0)
    state = ec.ec_setup(model, data, hp)
    own, others = (F.normalize(_embeddings(model, point, state, x).mean(0), dim=0) for x in (data.forget_x, data.retain_x))

    def margin() -> float:
        z = _embeddings(model, point, state, batches[0].x)
        return ((z @ own) - (z @ others)).mean().item()

    before = margin()
    _train(model, lambda m, t: ec.ec_term(m, state, _step(hp, *batches, t=t)), steps=10, lr=0.01)
    after = margin()
    assert after < before - 0.1, (before, after)


@pytest.mark.parametrize("base", [b for b in METHODS if not ec.is_ec(b)])
def test_plugin_loss_is_base_loss_plus_ec_loss(base, trained, data, batches):
    name = f"{base}+ec"
    hp = _hp(name)
    composed, plain = METHODS[name], METHODS[base]
    model = copy.deepcopy(trained.original)
    state = composed.setup(model, data, hp)
    model.train()
    step = _step(hp, *batches, phase=composed.phases(0, hp)[0].name)
    # RL and SalUn draw fresh random labels per call: both sides must see the same draw.
    generator = getattr(state.base, "generator", None)
    drawn = generator.get_state() if generator is not None else None
    with torch.no_grad():
        expected = plain.loss(model, state.base, step) + ec.ec_term(model, state.extra, step)
        if generator is not None:
            generator.set_state(drawn)
        got = composed.loss(model, state, step)
    assert torch.isfinite(got)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, extra", [("weight_distortion+ec", {}), ("weight_distortion+ec+soft", {}),
                                         ("weight_distortion+ec", {"ec_anchor_weight": 1.0})])
def test_a_plugins_ec_term_reads_the_original_whatever_the_base_does_to_the_model_first(name, extra, trained, data):
    """Weight distortion's setup adds noise to the model; the EC term's warmed heads, its soft targets and (with
    the anchor on) its teacher must still be the original's, as `ec` alone would set them up."""
    hp = _hp(name, **extra)
    model = copy.deepcopy(trained.original)
    state = METHODS[name].setup(model, data, hp)
    noised = [(a - b).abs().max().item() for a, b in zip(model.parameters(), trained.original.parameters())]
    assert max(noised) > 0, "the base's setup changed the model"
    alone = ec.ec_setup(copy.deepcopy(trained.original), data, hp)
    assert (alone.teacher is None) == (state.extra.teacher is None) == ("ec_anchor_weight" not in extra)
    if alone.teacher is not None:
        for key, value in trained.original.state_dict().items():
            assert torch.equal(state.extra.teacher.state_dict()[key], value), key
    assert (alone.targets is None) == (state.extra.targets is None)
    if alone.targets is not None:
        assert torch.equal(state.extra.targets, alone.targets)
    for key, value in alone.aux.state_dict().items():
        assert torch.equal(state.extra.aux.state_dict()[key], value), key


def test_negative_learning_loss():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    p = logits.softmax(1)[:, 0]
    assert torch.allclose(ec.negative_learning_loss(logits, y), -torch.log1p(-p).mean())
    assert torch.isfinite(ec.negative_learning_loss(torch.tensor([[200.0, 0.0]]), torch.tensor([0])))


def onehot(*classes: int, n: int = 10) -> torch.Tensor:
    return F.one_hot(torch.tensor(classes), n).float()


def test_target_pull_loss_by_hand():
    """Anchor (1, 0) with target class 1; retain (1, 0) of class 0 and (0, 1) of class 1; tau 0.5: the
    similarities are 1 and 0, so the loss is log(e^2 + e^0) - 0/0.5. An anchor whose target classes have
    no retain sample in the batch is left out of the mean; with none left the loss is 0."""
    z_r, y_r = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    got = ec.target_pull_loss(torch.tensor([[1.0, 0.0]]), onehot(1), z_r, y_r, 0.5)
    assert torch.isclose(got, torch.log(torch.exp(torch.tensor(2.0)) + 1.0))
    two = ec.target_pull_loss(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), onehot(1, 7), z_r, y_r, 0.5)
    assert torch.isclose(two, got)
    assert ec.target_pull_loss(torch.tensor([[1.0, 0.0]]), onehot(7), z_r, y_r, 0.5) == 0


def test_a_soft_target_pulls_in_proportion_to_each_classs_share():
    """Soft target 3/4 on class 1 and 1/4 on class 0, same anchor and retain samples as above: the pulled-to
    similarity is 3/4 x 0 + 1/4 x 1, so the loss is log(e^2 + 1) - (1/4) / 0.5."""
    z_r, y_r = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    soft = torch.zeros(1, 10)
    soft[0, 1], soft[0, 0] = 0.75, 0.25
    got = ec.target_pull_loss(torch.tensor([[1.0, 0.0]]), soft, z_r, y_r, 0.5)
    assert torch.isclose(got, torch.log(torch.exp(torch.tensor(2.0)) + 1.0) - 0.5)
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    q = torch.tensor([[0.5, 0.5, 0.0]])
    assert torch.isclose(ec.soft_cross_entropy(logits, q), -0.5 * F.log_softmax(logits, 1)[0, :2].sum())
    assert torch.isclose(ec.soft_cross_entropy(logits, onehot(2, n=3)), F.cross_entropy(logits, torch.tensor([2])))


def test_forget_targets_are_the_originals_best_other_class_or_its_distribution_over_them(trained, data):
    targets = ec.forget_targets(trained.original, data)
    assert targets.shape == (len(data.forget_y), data.num_classes) and torch.equal(targets.sum(1), torch.ones(len(targets)))
    assert not targets[:, list(data.forget_classes)].any()
    with torch.no_grad():
        logits = trained.original.eval()(data.forget_x)
    ranked = logits.argsort(1, descending=True)
    first_other = torch.where(torch.isin(ranked[:, 0], torch.tensor(data.forget_classes)), ranked[:, 1], ranked[:, 0])
    assert torch.equal(targets.argmax(1), first_other) and torch.equal(targets.max(1).values, torch.ones(len(targets)))
    soft = ec.forget_targets(trained.original, data, temperature=2.0)
    masked = logits.clone()
    masked[:, list(data.forget_classes)] = float("-inf")
    assert torch.allclose(soft, torch.softmax(masked / 2.0, 1), atol=1e-6) and not soft[:, list(data.forget_classes)].any()
    assert torch.equal(soft.argmax(1), first_other) and (soft.max(1).values < 1).all(), "the other classes keep a share"


@pytest.mark.parametrize("point", ["layer2", "pool"])
def test_target_pull_moves_each_anchor_onto_its_target_class(point, trained, data, batches):
    """The target pull alone (no cross-entropy, no relabelling): each anchor of the trained minibatch comes
    nearer (cosine) the prototype of its own target class (the mean embedding of that class's retain
    images, as the model stands) than it was, while CU's pull sends every anchor to one shared place."""
    model = copy.deepcopy(trained.original)
    hp = _hp("ec+soft", ec_points=point, ec_ce_weight=0.0, ec_relabel_weight=0.0, ec_targets="hard")
    state = ec.ec_setup(model, data, hp)
    target_of_batch = state.targets[batches[0].idx]

    def nearness() -> float:
        retain_z = _embeddings(model, point, state, data.retain_x)
        prototypes = torch.stack([F.normalize(retain_z[data.retain_y == c].mean(0), dim=0) if (data.retain_y == c).any()
                                  else torch.zeros(retain_z.shape[1]) for c in range(data.num_classes)])
        z = _embeddings(model, point, state, batches[0].x)
        return (z * prototypes[target_of_batch.argmax(1)]).sum(1).mean().item()

    before = nearness()
    _train(model, lambda m, t: ec.ec_term(m, state, _step(hp, *batches, t=t)), steps=10, lr=0.01)
    after = nearness()
    assert after > before + 0.1, (before, after)


def test_the_relabel_term_is_cross_entropy_of_the_forget_samples_towards_their_targets(trained, data, batches):
    model = copy.deepcopy(trained.original).eval()
    hp = _hp("ec+soft", ec_relabel_weight=2.0, ec_targets="hard")
    state = ec.ec_setup(model, data, hp)
    f, r = batches
    targets = state.targets[f.idx]
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.cat([f.x, r.x]))
        step = _step(hp, f, r)
        with_relabel = ec.point_loss(taps["pool"], logits, len(f.y), step, targets)
        without = ec.point_loss(taps["pool"], logits, len(f.y), _step({**hp, "ec_relabel_weight": 0.0}, f, r), targets)
    assert torch.isclose(with_relabel - without, 2.0 * F.cross_entropy(logits[: len(f.y)], targets.argmax(1)), atol=1e-5)


def test_soft_relabel_pulls_onto_the_hard_class_and_relabels_towards_the_soft_distribution(trained, data, batches):
    model = copy.deepcopy(trained.original).eval()
    hp = _hp("ec+soft", ec_targets="soft_relabel", ec_target_temperature=2.0, ec_ct_weight=1.0, ec_relabel_weight=1.0)
    state = ec.ec_setup(model, data, hp)
    hard, soft = state.targets
    assert torch.equal(hard, ec.forget_targets(trained.original, data))
    assert torch.allclose(soft, ec.forget_targets(trained.original, data, temperature=2.0))
    f, r = batches
    with torch.no_grad():
        logits, taps = model.forward_taps(torch.cat([f.x, r.x]))
        got = ec.point_loss(taps["pool"], logits, len(f.y), _step(hp, f, r), state.targets[..., f.idx, :])
    z = F.normalize(taps["pool"].float(), dim=1)
    n = len(f.y)
    want = (ec.target_pull_loss(z[:n], hard[f.idx], z[n:], r.y, hp["ec_tau"])
            + hp["ec_ce_weight"] * F.cross_entropy(logits[n:], r.y) + ec.soft_cross_entropy(logits[:n], soft[f.idx]))
    assert torch.isclose(got, want, atol=1e-5)


def test_the_variant_forgets_at_the_head_into_retained_classes(trained, data):
    model, _ = run_method("ec+soft", trained.original, data, _hp("ec+soft", epochs=3, retain_fraction=1.0))
    with torch.no_grad():
        predicted = model(data.forget_x).argmax(1)
    assert not torch.isin(predicted, torch.tensor(data.forget_classes)).any()


def test_a_plugins_own_budget_runs_the_ec_term_alone_at_its_own_rate_after_the_base(trained, data):
    """ga+ec at a learning rate too small to move anything: without a budget the network stays where it
    was; one epoch of the EC term at ec_lr 0.01 moves it, one step per retain minibatch more."""
    hp = _hp("ga+ec", lr=1e-7, epochs=1, retain_fraction=1.0)
    still, plain = run_method("ga+ec", trained.original, data, {**hp, "ec_epochs": 0})
    moved, budget = run_method("ga+ec", trained.original, data, {**hp, "ec_epochs": 1, "ec_lr": 0.01})
    retain_steps = -(-len(data.retain_y) // hp["batch_size"])
    assert budget.steps == plain.steps + retain_steps and len(budget.losses) == len(plain.losses) + 1
    key = "stages.layer1.0.weight"
    assert _relative_change(still, trained.original, key) < 1e-4
    assert _relative_change(moved, trained.original, key) > 100 * _relative_change(still, trained.original, key)


def test_the_ec_epochs_come_after_the_bases_schedule(trained, data, monkeypatch):
    """A base that records what its loss sees: its steps see a `total` of its own steps only, so a schedule
    such as L1-sparse's decay ends with the base's epochs; the plug-in's EC epochs come after them."""
    from ecnb.unlearn import Method, Phase, every_epoch

    seen = []

    def recording(model, state, step):
        seen.append((step.t, step.total))
        return model(step.retain.x).sum() * 0.0

    base = Method("rec", recording, every_epoch(Phase("train", "retain", "retain")))
    monkeypatch.setitem(METHODS, "rec+ec", ec.ec_method(base, "rec+ec"))
    _, stats = run_method("rec+ec", trained.original, data, {**_hp("ft+ec", epochs=2, retain_fraction=0.25), "ec_epochs": 1})
    base_steps = len(seen)
    assert [t for t, _ in seen] == list(range(base_steps)) and {total for _, total in seen} == {base_steps}
    assert stats.steps == base_steps * 3 // 2, "one more epoch of the same length, for the EC term alone"


def test_a_plugins_ec_epochs_run_on_a_fresh_sgd_of_their_own(trained, data, monkeypatch):
    """Bad Teacher's steps run on Adam; its plug-in's EC epochs on an SGD optimizer made for them when they
    start, at ec_lr, not on the baseline's Adam at a rate chosen for SGD."""
    from ecnb.unlearn import driver

    made = []
    real = driver.make_optimizer
    monkeypatch.setattr(driver, "make_optimizer",
                        lambda kind, model, hp, lr="lr": made.append((kind, lr, len(seen))) or real(kind, model, hp, lr))
    seen = []
    real_term = ec.ec_term
    monkeypatch.setattr(ec, "ec_term", lambda model, state, step: seen.append(step.phase) or real_term(model, state, step))
    hp = {**_hp("bad_teacher+ec", retain_fraction=0.5), "ec_epochs": 1}
    run_method("bad_teacher+ec", trained.original, data, hp)
    base_steps = seen.index(ec.EC_TAIL.name)
    assert made == [("adam", "lr", 0), ("sgd", "ec_lr", base_steps)], "the tail's own SGD, made at its first step"


def test_a_plugins_ec_epochs_start_without_the_baselines_momentum(trained, data, monkeypatch):
    """A base whose steps leave momentum behind, and an EC term with no gradient: the EC epochs, on their own
    fresh optimizer, move no weight (on a shared optimizer the base's momentum would carry them on)."""
    from ecnb.unlearn import Method, Phase, every_epoch

    monkeypatch.setattr(ec, "ec_term", lambda model, state, step: sum(p.sum() for p in model.parameters()) * 0.0)
    push = Method("push", lambda model, state, step: sum(p.sum() for p in model.parameters()),
                  every_epoch(Phase("train", "retain", "retain")))
    monkeypatch.setitem(METHODS, "push+ec", ec.ec_method(push, "push+ec"))
    hp = {**_hp("ft+ec", lr=1e-3, weight_decay=0.0, retain_fraction=0.25), "ec_lr": 1e-3}
    without, _ = run_method("push+ec", trained.original, data, {**hp, "ec_epochs": 0})
    with_tail, stats = run_method("push+ec", trained.original, data, {**hp, "ec_epochs": 1})
    assert len(stats.losses) == 2
    moved = [k for k, v in with_tail.state_dict().items() if not torch.equal(v, without.state_dict()[k])]
    assert moved == [], f"the base's momentum moved {moved[:3]} in the EC epochs"


def test_a_target_class_for_each_forget_sample_needs_class_wise_forgetting(trained, data, tmp_path):
    """Random-sample forgetting has no forgotten class to rule out: ec+soft's targets would be the samples'
    own labels, training D_f towards what it should forget. The variant is refused there, before any work."""
    import ecnb
    from ecnb.config import StudyConfig
    from ecnb.data import make_forget_split

    split = make_forget_split(trained.ds.y_train, forget_fraction=0.1, seed=0)
    random_data = UnlearnData.from_splits(ecnb.split_tensors(trained.ds, split), 10, split.forget_classes, "cpu")
    with pytest.raises(ConfigError, match="needs class-wise forgetting"):
        ec.forget_targets(trained.original, random_data)
    with pytest.raises(ConfigError, match="needs class-wise forgetting"):
        run_method("ec+soft", trained.original, random_data, _hp("ec+soft"))

    names = ["ec", "ec[last]", "ec+soft", "ec+soft[pull]", "ec+soft[relabel]", "ga+ec", "ga+ec+soft", "ga"]
    assert ecnb.methods.for_scenario(names, StudyConfig.from_options()) == names
    random_config = StudyConfig.from_options(forget_fraction=0.1, run_dir=str(tmp_path / "run"))
    assert ecnb.methods.for_scenario(names, random_config) == ["ec", "ec[last]", "ga+ec", "ga"]
    relabelling = StudyConfig.from_options(forget_fraction=0.1, overrides={"ec": {"ec_relabel_weight": 1.0}})
    assert ecnb.methods.for_scenario(["ec", "ga"], relabelling) == ["ga"], "read from the study's own settings"

    run = ecnb.Run.open(random_config)
    with pytest.raises(ConfigError, match="ec\\+soft, ga\\+ec\\+soft move each forget sample to another class"):
        ecnb.evaluate.run_methods(run, trained.ds, split, ["ga", "ec+soft", "ga+ec+soft"], 0, {}, "cpu")
    assert not list(run.root.glob("seed0/models/*.pt")), "refused before any work"


def test_the_retain_anchor_and_the_distance_term_reach_the_model_only_where_asked(trained, data, batches):
    """The retain anchor is KL(original || model) on D_r: 0 for the original itself; the distance term is minus
    the RMS of the weights' distance to the original: 0 for the original, and its gradient pushes away."""
    model = copy.deepcopy(trained.original)
    f, r = batches
    hp = _hp("ec+soft", ec_anchor_weight=1.0, ec_distance_weight=1.0)
    state = ec.ec_setup(model, data, hp)
    assert state.teacher is not None and ec.ec_setup(model, data, _hp("ec+soft")).teacher is None
    with torch.no_grad():
        assert ec.retain_anchor_loss(model.eval()(r.x), state.teacher, r.x).abs() < 1e-6
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert ec.retain_anchor_loss(model.eval()(r.x), state.teacher, r.x).abs() < 1e-6, "a shift of every logit changes nothing"
    with torch.no_grad():
        model.head.weight.mul_(2.0)
    assert ec.retain_anchor_loss(model.eval()(r.x), state.teacher, r.x) > 1e-3
    from ecnb.unlearn import weight_distance_term

    n = sum(p.numel() for p in model.parameters())
    with_bias = weight_distance_term(model, state.teacher)
    assert with_bias > 0
    moved = {k: (v - state.teacher.state_dict()[k]).pow(2).sum() for k, v in model.state_dict().items()
             if k.startswith("head")}
    assert torch.isclose(with_bias, torch.sqrt(sum(moved.values()) / n + 1e-8), rtol=1e-4)
