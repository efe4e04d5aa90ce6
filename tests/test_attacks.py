"""The recovery attacks: the attacker's images, the few-shot probe and the relearning attack."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ecnb
from ecnb import attacks
from ecnb.cli import main
from ecnb.config import AttackSettings, ConfigError, StudyConfig
from ecnb.features import extract_features


@pytest.fixture(scope="module")
def drawn(trained):
    return attacks.attack_set(trained.run, trained.ds, trained.split, 0)


def test_the_attacker_holds_k_forget_and_m_retain_training_images_per_class(trained, drawn):
    settings = trained.run.config.attacks
    y = trained.ds.y_train.numpy()
    assert len(drawn.forget) == len(drawn.retain) == settings.probe_draws
    for f, r in zip(drawn.forget, drawn.retain):
        assert set(f) <= set(trained.split.forget_idx.tolist()), "forget shots come from D_f"
        assert set(r) <= set(trained.split.retain_idx.tolist()), "retain shots come from D_r"
        assert np.bincount(y[f], minlength=10)[3] == settings.shots and len(f) == settings.shots
        assert (np.bincount(y[r], minlength=10) == [settings.retain_shots] * 3 + [0] + [settings.retain_shots] * 6).all()
    assert not np.array_equal(drawn.forget[0], drawn.forget[1]), "draws differ"
    again = attacks.attack_set(trained.run, trained.ds, trained.split, 0)
    assert all(np.array_equal(a, b) for a, b in zip(again.forget, drawn.forget)), "saved, the same for every model"
    assert (trained.run.seed_dir(0) / "attack_set.json").exists()


def test_the_fewshot_probe_uses_exactly_the_attackers_images_and_never_a_test_image(trained, drawn):
    """The probe's value equals one computed by hand from the attacker's training images alone."""
    settings = trained.run.config.attacks
    got = attacks.fewshot_probe_accuracy(trained.run, trained.original, "original", 0, trained.ds, trained.split,
                                         drawn, settings)
    x_test, y_test = trained.splits["test_forget"]
    test = extract_features(trained.original, x_test, global_pool=True)
    for tap in ("layer2", "pool"):
        scores = []
        for f, r in zip(drawn.forget, drawn.retain):
            idx = np.concatenate([f, r])
            train = extract_features(trained.original, trained.ds.x_train[idx], global_pool=True)
            scores.append(attacks.fewshot_probe(train[tap], trained.ds.y_train[idx].numpy(), test[tap], y_test.numpy(),
                                                settings.probe_c))
        assert got[tap] == pytest.approx(np.mean(scores), abs=1e-9)
    assert list(got) == trained.original.taps


def test_the_relearning_attack_leaves_the_saved_model_bit_identical(trained, drawn):
    path = trained.run.checkpoint_path("original", 0)
    before_bytes = path.read_bytes()
    model = ecnb.train_reference(trained.run, trained.ds, trained.split, "original", 0, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = attacks.relearn_accuracy(model, trained.ds, trained.split, drawn, trained.run.config.attacks)
    assert list(curve) == list(trained.run.config.attacks.relearn_steps)
    assert path.read_bytes() == before_bytes
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.training


def _head_only(original: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """The original's features under a fresh head trained on D_r: the class hidden, never removed."""
    model = copy.deepcopy(original).eval()
    torch.manual_seed(0)
    model.head.reset_parameters()
    with torch.no_grad():
        feats = model.forward_taps(x)[1]["pool"]
    opt = torch.optim.SGD(model.head.parameters(), lr=0.05, momentum=0.9)
    for _ in range(100):
        loss = F.cross_entropy(model.head(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_a_model_that_hid_the_class_relearns_it_faster_than_one_that_never_saw_it(trained, drawn):
    hidden = _head_only(trained.original, *trained.splits["retain_train"])
    x, y = trained.splits["forget_train"]
    assert ecnb.metrics.accuracy(ecnb.predict(hidden, x), y) < 0.05, "the class is hidden at the output"
    settings = trained.run.config.attacks
    curves = {name: attacks.relearn_accuracy(m, trained.ds, trained.split, drawn, settings)
              for name, m in (("hidden", hidden), ("retrain", trained.retrain), ("original", trained.original))}
    gap = max(curves["hidden"][t] - curves["retrain"][t] for t in settings.relearn_steps)
    assert gap >= 0.3, curves
    assert curves["original"][0] > 0.9 and curves["retrain"][0] < 0.1


@pytest.mark.parametrize("change, match", [
    ({"shots": 0}, r"attack shots \(k\) 0 must be an integer >= 1"),
    ({"retain_shots": -2}, r"attack retain shots \(m\) -2 must be an integer >= 1"),
    ({"probe_draws": 0}, r"probe draws \(R\) 0 must be an integer >= 1"),
    ({"relearn_steps": ()}, "the relearn step grid is empty"),
    ({"relearn_steps": (0, 10, 5)}, r"relearn steps \[0, 10, 5\] must be strictly increasing"),
    ({"relearn_steps": (0, -5, 10)}, "relearn step -5 must be an integer >= 0"),
    ({"probe_c": 0.0}, "probe C 0.0 must be a positive number"),
    ({"relearn_momentum": 1.0}, r"relearn momentum 1.0 must be a number in \[0, 1\)"),
])
def test_bad_attack_settings_stop_in_one_line(change, match):
    settings = dataclasses.replace(StudyConfig().attacks, **change)
    with pytest.raises(ConfigError, match=match) as info:
        settings.validate()
    assert "\n" not in str(info.value)


def test_more_shots_than_the_forget_set_holds_is_refused(digits):
    settings = dataclasses.replace(StudyConfig().attacks, shots=500)
    n3 = int((digits.y_train == 3).sum())
    with pytest.raises(ConfigError, match=rf"attack shots \(k\) 500 is more than the {n3} training images of class 3 "
                                          rf"in D_f; valid: 1-{n3}"):
        attacks.check_shots(digits.y_train, (3,), settings)


def test_the_study_command_refuses_bad_attacks_before_any_work(tmp_path, capsys):
    for args, match in ((["--attack-shots", "500"], "attack shots (k) 500 is more than"),
                        (["--relearn-steps", "0", "20", "10"], "must be strictly increasing")):
        run_dir = tmp_path / "run"
        assert main(["study", "--run-dir", str(run_dir), *args]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
        assert not run_dir.exists(), "nothing was written"


def test_changed_attack_settings_keep_the_models_and_measure_the_attacks_again(tmp_path, digits):
    config = StudyConfig.from_options(epochs=1, run_dir=str(tmp_path))
    run = ecnb.Run.open(config)
    split = ecnb.forget_split(run, digits, 0)
    attacks.attack_set(run, digits, split, 0)
    ecnb.write_results(run.root, [ecnb.results.result_row(0, "ga", "relearn_accuracy", 0.5, "test_forget", "step10"),
                                  ecnb.results.result_row(0, "ga", "accuracy", 0.0, "forget_train")])
    changed = StudyConfig.from_options(epochs=1, run_dir=str(tmp_path), shots=2)
    assert changed.cache_key() == config.cache_key(), "the models do not depend on the attacks"
    ecnb.Run.open(changed)
    assert not (run.seed_dir(0) / "attack_set.json").exists()
    assert list(ecnb.read_results(run.root)["metric"]) == ["accuracy"]
    assert ecnb.Run.load(tmp_path).config.attacks.shots == 2


def test_attack_settings_are_a_plain_part_of_the_configuration():
    config = StudyConfig.from_options(shots=3, relearn_steps=[0, 10, 40])
    again = StudyConfig.from_dict(config.to_dict())
    assert again.attacks == config.attacks and isinstance(again.attacks, AttackSettings)
    assert again.attacks.relearn_steps == (0, 10, 40)
    with pytest.raises(ConfigError, match="unknown attack setting 'nope'"):
        StudyConfig.from_options(nope=1)


def test_the_relearning_attack_averages_several_draws_of_the_attackers_images(trained, drawn):
    """Each draw is a fine-tuning of its own on that draw's images (checked by hand for the second draw); the
    study's figure is their mean, and the per-image outcomes behind it are kept."""
    settings = dataclasses.replace(trained.run.config.attacks, relearn_draws=3, relearn_steps=(0, 5, 10))
    outcomes = attacks.relearn_outcomes(trained.retrain, trained.ds, trained.split, drawn, settings)
    x_test, y_test = trained.splits["test_forget"]
    assert outcomes.shape == (3, 3, len(y_test)) and outcomes.dtype == bool
    idx = torch.as_tensor(np.concatenate([drawn.forget[1], drawn.retain[1]]))
    by_hand = attacks.relearn_correct(trained.retrain, trained.ds.x_train[idx], trained.ds.y_train[idx], x_test, y_test,
                                      settings.relearn_lr, settings.relearn_momentum, settings.relearn_steps)
    assert np.array_equal(outcomes[1], by_hand)
    curve = attacks.relearn_accuracy(trained.retrain, trained.ds, trained.split, drawn, settings)
    assert curve == {t: pytest.approx(outcomes[:, i].mean()) for i, t in enumerate(settings.relearn_steps)}


def test_more_relearning_draws_than_the_attacker_has_are_refused():
    settings = dataclasses.replace(StudyConfig().attacks, relearn_draws=9)
    with pytest.raises(ConfigError, match="relearn draws 9 must be at most the 5 draws of the attacker's images"):
        settings.validate()
