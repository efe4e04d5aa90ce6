"""The unlearning baselines: registry, validation, the shared driver, and what each method must do."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ecnb.config import ConfigError
from ecnb.metrics import accuracy
from ecnb.models import build_model
from ecnb.train import predict
from ecnb.methods import HPARAMS, METHODS, hparams, one_epoch_each, planned_steps, run_method, unlearn
from ecnb.unlearn import (
    Batch,
    ComposedState,
    Method,
    Phase,
    Step,
    UnlearnData,
    UnlearningError,
    compose,
    contrastive_unlearning_loss,
    every_epoch,
    make_optimizer,
    random_labels,
    random_teacher,
    saliency_mask,
    weight_distance_term,
)

# The baselines; Erase at the Core (ecnb.ec) registers its family in the same registry.
BASELINES = ("ft", "ga", "rl", "neggrad_plus", "l1_sparse", "salun", "scrub", "bad_teacher", "cu", "weight_distortion",
             "weight_dist_reg")


@pytest.fixture(scope="module")
def data(trained) -> UnlearnData:
    return UnlearnData.from_splits(trained.splits, trained.ds.num_classes, trained.split.forget_classes, "cpu")


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _short(name: str, **overrides) -> dict:
    """One cheap epoch: enough to exercise a method, not to tune it."""
    extra = {"msteps": 1} if name in ("scrub", "weight_dist_reg") else {}
    extra.update({"dist_epochs": 1} if name == "weight_dist_reg" else {})
    return hparams(name, **{"epochs": 1, "retain_fraction": 0.25, **extra, **overrides})


def _forget_ce(model: torch.nn.Module, data: UnlearnData) -> float:
    return F.cross_entropy(predict(model, data.forget_x), data.forget_y.cpu()).item()


def _forget_kl(model: torch.nn.Module, teacher: torch.nn.Module, data: UnlearnData, temperature: float = 1.0) -> float:
    """KL(teacher || model) on D_f, averaged over samples."""
    s, t = predict(model, data.forget_x) / temperature, predict(teacher, data.forget_x) / temperature
    return F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True).item()


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_keeps_the_architecture_and_leaves_the_original_alone(name, trained, data):
    before = _state(trained.original)
    model, stats = run_method(name, trained.original, data, _short(name))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(after[k].shape == before[k].shape for k in before)
    assert not any(m.training for m in model.modules()), "the unlearned model must be in eval mode"
    assert all(torch.equal(v, trained.original.state_dict()[k]) for k, v in before.items()), "input model modified"
    assert stats.method == name and stats.steps > 0 and stats.wall_time > 0
    assert len(stats.losses) == 1 + (name == "weight_dist_reg"), "one epoch (and weight_dist_reg's distance epoch)"


@pytest.mark.parametrize("name, overrides", [
    ("rl", {}),  # a pass over D_f, then one over D_r
    ("scrub", {"msteps": 2}),  # max and min phases, then min only
    ("bad_teacher", {"retain_fraction": 0.3}),  # a seeded share of D_r
    ("ga+ec", {"ec_epochs": 1}),  # the base's epochs, then the EC term's own
    ("weight_dist_reg", {"msteps": 1, "dist_epochs": 2}),  # SCRUB's schedule, then the distance stage's own
    ("weight_dist_reg+ec", {"msteps": 1, "dist_epochs": 2, "ec_epochs": 1}),  # the EC epochs after the whole base
])
def test_planned_steps_are_the_steps_a_run_takes(trained, data, name, overrides):
    hp = {**_short(name), "epochs": 3, **overrides}
    _, stats = run_method(name, trained.original, data, hp)
    assert planned_steps(name, len(data.forget_y), len(data.retain_y), hp) == stats.steps


def test_every_registered_method_has_valid_defaults_in_every_profile():
    assert set(BASELINES) <= set(METHODS)
    for profile in HPARAMS:
        for name in METHODS:
            hparams(name, profile)


def test_same_seed_same_model(trained, data):
    a = unlearn("rl", trained.original, data, _short("rl", seed=3))
    b = unlearn("rl", trained.original, data, _short("rl", seed=3))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_ga_raises_the_forget_loss_and_lowers_forget_accuracy(trained, data):
    model = unlearn("ga", trained.original, data, hparams("ga"))
    assert _forget_ce(model, data) > _forget_ce(trained.original, data) + 1.0
    assert accuracy(predict(model, data.forget_x), data.forget_y) <= 0.2


def test_rl_lowers_forget_accuracy(trained, data):
    model = unlearn("rl", trained.original, data, hparams("rl"))
    assert accuracy(predict(model, data.forget_x), data.forget_y) <= 0.2


def test_random_labels_are_redrawn_every_batch_from_every_class_as_salun(trained, data):
    labels = random_labels(5000, 10, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert set(labels.tolist()) == set(range(10)), "every class, the true one included, can be drawn"
    counts = torch.bincount(labels, minlength=10).float()
    assert (counts / 5000 - 0.1).abs().max() < 0.02, "uniform"
    state = METHODS["rl"].setup(trained.original, data, hparams("rl"))
    idx = torch.arange(32)
    step = Step(0, "forget", 0, 0, 1, Batch(data.forget_x[idx], data.forget_y[idx], idx), None, hparams("rl"))
    model = copy.deepcopy(trained.original).eval()
    first, second = (METHODS["rl"].loss(model, state, step).item() for _ in range(2))
    assert first != second, "the same minibatch gets fresh labels on its next visit"


def test_salun_updates_only_salient_weights_and_decays_every_weight(trained, data):
    """SalUn's code masks the loss gradient, then its optimiser decays every weight: a weight outside the
    mask moves exactly as weight decay alone (with momentum) would move it, and not at all without decay."""
    config = _short("salun", mask_fraction=0.3, weight_decay=0.0)
    mask = saliency_mask(copy.deepcopy(trained.original), data, 0.3, config["forget_batch_size"])
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == int(0.3 * total)
    before = {k: v.detach().clone() for k, v in trained.original.named_parameters()}
    model = unlearn("salun", trained.original, data, config)
    after = dict(model.named_parameters())
    changed = 0
    for name, keep in mask.items():
        assert torch.equal(after[name][~keep], before[name][~keep]), f"unmasked weights of {name} moved"
        changed += int((after[name][keep] != before[name][keep]).sum())
    assert changed > 0

    decay = {**config, "weight_decay": 0.05}
    model, stats = run_method("salun", trained.original, data, decay)
    after = dict(model.named_parameters())
    for name, keep in mask.items():
        w, buf = before[name][~keep].clone(), torch.zeros_like(before[name][~keep])
        for _ in range(stats.steps):
            buf = decay["momentum"] * buf + decay["weight_decay"] * w
            w = w - decay["lr"] * buf
        torch.testing.assert_close(after[name][~keep].detach(), w, rtol=1e-5, atol=1e-7)


def test_bad_teachers_random_teacher_is_built_like_the_model():
    """A fresh torchvision ResNet-18 draws its convolutions from Kaiming-normal: the incompetent teacher is
    the architecture's own fresh model, not PyTorch's default re-initialisation of the trained one."""
    trained_net = build_model("resnet18", 1, 10)
    teacher = random_teacher(trained_net, seed=7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        fresh = build_model("resnet18", 1, 10)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_bad_teacher_averages_its_kl_over_samples_and_classes_and_uses_adam(trained, data):
    config = hparams("bad_teacher")
    state = METHODS["bad_teacher"].setup(copy.deepcopy(trained.original), data, config)
    idx = torch.arange(6)
    f, r = Batch(data.forget_x[idx], data.forget_y[idx], idx), Batch(data.retain_x[idx], data.retain_y[idx], idx)
    model = copy.deepcopy(trained.original).eval()
    loss = METHODS["bad_teacher"].loss(model, state, Step(0, "train", 0, 0, 1, f, r, config))
    with torch.no_grad():
        s = F.log_softmax(model(torch.cat([f.x, r.x])) / config["kd_t"], 1)
        t = F.softmax(torch.cat([state.bad(f.x), state.good(r.x)]) / config["kd_t"], 1)
    by_hand = (t * (t.log() - s)).sum() / (12 * 10)  # 12 samples x 10 classes
    torch.testing.assert_close(loss.detach(), by_hand, rtol=1e-5, atol=1e-7)
    assert METHODS["bad_teacher"].optimizer == METHODS["bad_teacher+ec"].optimizer == "adam"
    assert METHODS["rl"].optimizer == "sgd"
    assert isinstance(make_optimizer("adam", model, config), torch.optim.Adam)
    assert isinstance(make_optimizer("sgd", model, hparams("rl")), torch.optim.SGD)


def test_l1_sparse_shrinks_the_l1_norm_more_than_ft(trained, data):
    budget = {"epochs": 1, "lr": 0.05, "retain_fraction": 0.5}
    models = {name: unlearn(name, trained.original, data, hparams(name, **budget)) for name in ("ft", "l1_sparse")}
    l1 = {name: sum(p.abs().sum().item() for p in model.parameters()) for name, model in models.items()}
    assert l1["l1_sparse"] < 0.98 * l1["ft"]


def test_ft_keeps_retain_accuracy(trained, data):
    model = unlearn("ft", trained.original, data, hparams("ft"))
    for split in ("retain_train", "test_retain"):
        x, y = trained.splits[split]
        assert accuracy(predict(model, x), y) >= accuracy(predict(trained.original, x), y) - 0.03


def test_scrub_pushes_forget_outputs_away_from_the_teacher(trained, data):
    config = hparams("scrub")
    model = unlearn("scrub", trained.original, data, config)
    assert _forget_kl(model, trained.original, data, config["kd_t"]) > 0.1
    assert METHODS["scrub"].phases(0, {"msteps": 1}) != METHODS["scrub"].phases(1, {"msteps": 1})
    assert [p.name for p in METHODS["scrub"].phases(0, {"msteps": 1})] == ["max", "min"]
    assert [p.name for p in METHODS["scrub"].phases(1, {"msteps": 1})] == ["min"]


def test_bad_teacher_pulls_forget_outputs_towards_the_incompetent_teacher(trained, data):
    config = hparams("bad_teacher")
    incompetent = METHODS["bad_teacher"].setup(copy.deepcopy(trained.original), data, config).bad
    model = unlearn("bad_teacher", trained.original, data, config)
    assert _forget_kl(model, incompetent, data) < 0.5 * _forget_kl(trained.original, incompetent, data)


def _pool(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return F.normalize(model.forward_taps(x)[1]["pool"], dim=1)


def test_cu_lowers_forget_similarity_to_the_class_prototype(trained, data):
    prototype = F.normalize(_pool(trained.original, data.forget_x).mean(0), dim=0)
    model = unlearn("cu", trained.original, data, hparams("cu"))
    before = (_pool(trained.original, data.forget_x) @ prototype).mean().item()
    after = (_pool(model, data.forget_x) @ prototype).mean().item()
    assert after < before - 0.1


def test_contrastive_loss_pulls_other_classes_and_pushes_own_class():
    anchor = torch.tensor([[1.0, 0.0]])
    near, far = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    other, same = torch.tensor([1]), torch.tensor([0])
    y = torch.tensor([0])
    def loss(z_retain, y_retain):
        return contrastive_unlearning_loss(anchor, y, z_retain, y_retain, 0.7)

    assert loss(near, other) < loss(far, other), "retain samples of other classes are pulled"
    assert loss(near, same) > loss(far, same), "retain samples of the anchor's class are pushed"


def test_contrastive_push_is_spread_over_all_retain_samples_as_the_official_loss():
    """CU's code divides the log term, summed over all n retain columns, by |other-class retain|: with
    n = 4 retain samples of which 1 is of another class the push weighs 4, not 1 (random-sample
    forgetting, where an anchor's class is also retained)."""
    tau = 0.5
    anchor, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    y_retain = torch.tensor([1, 0, 0, 0])
    s = (anchor @ z.T / tau).squeeze(0)
    pull = s[0]  # the one other-class sample
    push = torch.logsumexp(s[1:], 0)  # the three same-class samples
    expected = 4 / 1 * push - pull
    torch.testing.assert_close(contrastive_unlearning_loss(anchor, y, z, y_retain, tau), expected)


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("nope", {}, "unknown unlearning method 'nope'; valid: ft, ga"),
        ("ga", {"lr": -0.1}, "lr=-0.1 is invalid; valid: a number > 0"),
        ("ga", {"epochs": 0}, "epochs=0 is invalid; valid: an integer >= 1"),
        ("ga", {"epochs": True}, "epochs=True"),
        ("ga", {"weight_decay": float("nan")}, "weight_decay=nan"),
        ("neggrad_plus", {"beta": 1.5}, r"beta=1.5 is invalid; valid: a number in \[0, 1\]"),
        ("salun", {"mask_fraction": 0.0}, r"mask_fraction=0.0 is invalid; valid: a number in \(0, 1\]"),
        ("ga", {"alpha": 0.1}, "unknown hyperparameter 'alpha'; valid: epochs, lr"),
        ("weight_dist_reg", {"safeguard_optimizer": "rmsprop"},
         "safeguard_optimizer='rmsprop' is invalid; valid: 'sgd' or 'adam'"),
        ("weight_dist_reg", {"kl_reduction": 1.0}, "kl_reduction=1.0 is invalid; valid: 'batchmean' or 'mean'"),
    ],
)
def test_bad_names_and_hyperparameters_raise(name, overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        hparams(name, **overrides)
    assert "\n" not in str(info.value)


def test_incomplete_config_and_unknown_profile_raise(trained, data):
    config = hparams("ga")
    del config["lr"]
    with pytest.raises(ConfigError, match="missing hyperparameter"):
        unlearn("ga", trained.original, data, config)
    with pytest.raises(ConfigError, match="unknown profile 'huge'; valid: quick, paper"):
        hparams("ga", "huge")


def test_divergence_names_method_epoch_and_step(trained, data):
    with pytest.raises(UnlearningError, match=r"'ga' diverged: .* at epoch 1/1, step \d+ of phase 'train'"):
        unlearn("ga", trained.original, data, _short("ga", lr=1e20))


def test_injected_nan_is_located(trained, data, monkeypatch):
    def nan_at_third_step(model, state, step):
        loss = F.cross_entropy(model(step.retain.x), step.retain.y)
        return loss * float("nan") if step.t == 2 else loss

    method = Method("nan", nan_at_third_step, every_epoch(Phase("train", "retain", "retain")))
    monkeypatch.setitem(METHODS, "nan", method)
    expected = r"'nan' diverged: the loss became non-finite at epoch 1/1, step 3 of phase 'train'"
    with pytest.raises(UnlearningError, match=expected):
        unlearn("nan", trained.original, data, {**hparams("ft"), "epochs": 1})


def test_a_composed_method_adds_its_term_through_the_same_driver(trained, data, monkeypatch):
    calls = []

    def term(model, extra, step):
        calls.append((extra, step.forget is not None, step.retain is not None))
        return 0.25 * model(step.forget.x).pow(2).mean()

    base = METHODS["rl"]
    composed = compose(base, "rl+probe", term, setup=lambda model, data, hp: "probe-state")
    monkeypatch.setitem(METHODS, "rl+probe", composed)

    model = copy.deepcopy(trained.original).eval()
    config = _short("rl")
    idx = torch.arange(8)
    step = Step(0, "forget", 0, 0, 1, Batch(data.forget_x[idx], data.forget_y[idx], idx),
                Batch(data.retain_x[idx], data.retain_y[idx], idx), config)
    expected = base.loss(model, base.setup(model, data, config), step) + term(model, "probe-state", step)
    fresh = ComposedState(base.setup(model, data, config), "probe-state")  # the same seed draws the same labels
    assert torch.allclose(composed.loss(model, fresh, step), expected)

    calls.clear()
    _, stats = run_method("rl+probe", trained.original, data, config)
    _, base_stats = run_method("rl", trained.original, data, config)
    assert stats.steps == base_stats.steps == len(calls)
    assert all(c == ("probe-state", True, True) for c in calls)
    assert composed.params == base.params and composed.setup is not base.setup


def test_a_phase_of_its_own_weight_decay_decays_by_that_and_no_other(trained, data, monkeypatch):
    """With a loss whose gradient is zero, only weight decay moves the weights: a phase that sets its own decay of
    0 (weight_dist_reg's distance stage, as in the reference) leaves them as they were, whatever the method's
    `weight_decay`; a phase without one decays them by the method's."""
    def still(model, state, step):
        return 0.0 * sum(p.sum() for p in model.parameters())

    config = {**hparams("ft"), "epochs": 1, "weight_decay": 0.1, "momentum": 0.0, "lr": 0.5, "retain_fraction": 0.1}
    for phase, moves in ((Phase("train", "retain", "retain", weight_decay=0.0), False),
                         (Phase("train", "retain", "retain"), True)):
        monkeypatch.setitem(METHODS, "still", Method("still", still, every_epoch(phase)))
        model, stats = run_method("still", trained.original, data, config)
        w, w0 = model.head.weight.detach(), trained.original.head.weight.detach()
        if moves:
            torch.testing.assert_close(w, w0 * (1 - 0.5 * 0.1) ** stats.steps)
        else:
            assert torch.equal(w, w0)
    dist = hparams("weight_dist_reg")
    assert METHODS["weight_dist_reg"].phases(dist["epochs"], dist)[0].weight_decay == 0.0, "its distance stage"


def test_unlearn_data_needs_both_sets(data):
    with pytest.raises(ConfigError, match="non-empty forget set"):
        UnlearnData(data.forget_x[:0], data.forget_y[:0], data.retain_x, data.retain_y, 10, (3,), "cpu")


def test_the_baselines_know_nothing_of_ec_and_the_registry_has_it_all():
    """ecnb.unlearn never imports ecnb.ec (EC registers itself into the same table); ecnb.methods is the whole
    registry."""
    import subprocess
    import sys

    code = ("import sys, ecnb.unlearn as u; print('ecnb.ec' in sys.modules, 'ec' in u.METHODS); "
            "import ecnb.methods as m; print('ec' in m.METHODS, 'ga+ec' in m.HPARAMS['quick'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "False", "True", "True"]


def test_weight_distortion_starts_from_seeded_noise_of_std_alpha(trained, data):
    """No update at all (lr tiny): what is left is the noise, of std alpha on every parameter, the same for a
    seed and other for another."""
    hp = _short("weight_distortion", lr=1e-12, alpha=0.05)
    a, b = unlearn("weight_distortion", trained.original, data, hp), unlearn("weight_distortion", trained.original, data, hp)
    c = unlearn("weight_distortion", trained.original, data, {**hp, "seed": 1})
    noise = torch.cat([(p - q).flatten() for p, q in zip(a.parameters(), trained.original.parameters())])
    assert noise.std().item() == pytest.approx(0.05, rel=0.05) and noise.mean().abs() < 0.005
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_weight_dist_reg_safeguard_runs_on_the_optimizer_its_settings_name(trained, data):
    """One step of the SCRUB stage alone (a min step on one retain batch, no distance stage): on Adam every weight
    whose gradient is not zero moves by the learning rate (Adam's first step is lr x g / |g|); on SGD without
    momentum by lr x its gradient, which differs from weight to weight."""
    hp = _short("weight_dist_reg", msteps=0, dist_epochs=0, retain_fraction=0.05, momentum=0.0, lr=1e-3)
    moved = {}
    for kind in ("adam", "sgd"):
        model = unlearn("weight_dist_reg", trained.original, data, {**hp, "safeguard_optimizer": kind})
        moved[kind] = (model.head.weight - trained.original.head.weight).detach().abs().flatten()
    clear = moved["sgd"] > 1e-3 * 1e-4  # a gradient far above Adam's epsilon (1e-8): the same batch in both runs
    assert clear.float().mean() > 0.5
    torch.testing.assert_close(moved["adam"][clear], torch.full_like(moved["adam"][clear], 1e-3), rtol=1e-3, atol=0)
    assert moved["sgd"].std() > 0.1 * moved["sgd"].mean()


def test_weight_dist_reg_safeguard_kl_averages_over_classes_where_its_settings_say_mean(trained, data):
    """The max step's loss is minus KL(teacher || student) at temperature 1, computed here by hand: averaged over
    the samples ('batchmean', SCRUB's code), or over samples and classes ('mean', `nn.KLDivLoss()` in the
    tamper-resistance reference code)."""
    student = copy.deepcopy(trained.original)
    with torch.no_grad():
        student.head.bias.add_(torch.linspace(-1.0, 1.0, student.head.bias.numel()))
    idx = torch.arange(16)
    batch = Batch(data.forget_x[idx], data.forget_y[idx], idx)
    p = F.softmax(predict(trained.original, batch.x), dim=1)
    log_q = F.log_softmax(predict(student, batch.x), dim=1)
    by_hand = (p * (p.log() - log_q)).sum(1).mean().item()
    method = METHODS["weight_dist_reg"]
    for reduction, per in (("batchmean", 1), ("mean", data.num_classes)):
        hp = {**hparams("weight_dist_reg"), "kd_t": 1.0, "kl_reduction": reduction}
        state = method.setup(copy.deepcopy(trained.original), data, hp)
        loss = method.loss(student.eval(), state, Step(0, "max", 0, 0, 1, batch, None, hp))
        assert loss.item() == pytest.approx(-by_hand / per, rel=1e-4)


def test_the_paper_profiles_weight_dist_reg_is_the_reference_codes():
    """shoaibahmed/vision_relearning's scripts/train.sh: the default safeguard `alt_scrub_lr_1e-05_a_1.0_g_1.0`
    (alternating SCRUB: a max pass in every one of 100 epochs, alpha = gamma = 1, temperature 1, `nn.KLDivLoss()`,
    Adam at 1e-5, no decay), then the distance stage (alpha 1, Adam at 1e-5, no decay, 100 epochs), batches of 128."""
    hp = hparams("weight_dist_reg", "paper")
    assert {k: hp[k] for k in ("epochs", "msteps", "alpha", "gamma", "kd_t", "kl_reduction", "safeguard_optimizer", "lr",
                               "weight_decay", "batch_size", "forget_batch_size", "dist_alpha", "dist_lr", "dist_epochs")} == {
        "epochs": 100, "msteps": 100, "alpha": 1.0, "gamma": 1.0, "kd_t": 1.0, "kl_reduction": "mean",
        "safeguard_optimizer": "adam", "lr": 1e-5, "weight_decay": 0.0, "batch_size": 128, "forget_batch_size": 128,
        "dist_alpha": 1.0, "dist_lr": 1e-5, "dist_epochs": 100}
    method = METHODS["weight_dist_reg"]
    assert all([p.name for p in method.phases(e, hp)] == ["max", "min"] for e in range(hp["epochs"]))
    assert method.optimizer_for(hp) == "adam" and METHODS["weight_dist_reg+ec"].optimizer_for(hp) == "adam"


def test_weight_dist_reg_pushes_the_weights_away_from_the_original(trained, data):
    """The same SCRUB stage and distance epochs with and without the distance term: with it the weights end
    further from the original's. (Its gradient is spread over every parameter, so at a few steps only a large
    weight shows it; the reference runs it for 100 epochs, where it drifts the weights once D_r is learnt.)"""
    hp = _short("weight_dist_reg", dist_epochs=2, dist_lr=1e-3, dist_alpha=1000.0)
    pushed = unlearn("weight_dist_reg", trained.original, data, hp)
    plain = unlearn("weight_dist_reg", trained.original, data, {**hp, "dist_alpha": 0.0})
    d_pushed, d_plain = (weight_distance_term(m, trained.original).item() for m in (pushed, plain))
    assert d_pushed > 1.5 * d_plain, (d_pushed, d_plain)


def test_one_epoch_each_gives_every_stage_of_a_method_one_epoch(trained, data):
    """The tests' studies and the GPU check's tiny run: one epoch of each stage, whatever the stages are called."""
    overrides = one_epoch_each(["ga", "weight_dist_reg+ec", "ec+soft"])
    assert overrides == {"ga": {"epochs": 1}, "weight_dist_reg+ec": {"epochs": 1, "dist_epochs": 1, "ec_aux_epochs": 1,
                                                                      "ec_epochs": 1},
                         "ec+soft": {"epochs": 1, "ec_aux_epochs": 1}}
    _, stats = run_method("weight_dist_reg+ec", trained.original, data,
                          hparams("weight_dist_reg+ec", **overrides["weight_dist_reg+ec"]))
    assert len(stats.losses) == 3, "SCRUB's epoch, the distance stage's, EC's"
