"""The fashion profile end to end on a small slice of the real Fashion-MNIST (Debian's package; .ci/run installs it):
its recipe, its attacks and a method at its settings, measured as a study measures every model."""
from __future__ import annotations

import os

import pandas as pd
import pytest

import ecnb
from ecnb import data
from ecnb.attacks import attack_set
from ecnb.config import StudyConfig
from ecnb.evaluate import measure, unlearn_data
from ecnb.methods import run_method, study_hparams

pytestmark = pytest.mark.skipif(data.offline_copy("fashion_mnist") is None and os.environ.get("CI") != "true",
                                reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """A fashion-profile run on 30 training and 20 test images per class (the profile's 15 epochs: fewer leave 300
    images unlearned), two retrained models."""
    config = StudyConfig.from_options(dataset="fashion_mnist", train_per_class=30, test_per_class=20,
                                      population=2, device="cpu", run_dir=str(tmp_path_factory.mktemp("fashion")))
    run = ecnb.Run.open(config)
    ds = ecnb.run_dataset(run)
    split = ecnb.forget_split(run, ds, 0)
    references = ecnb.train_references(run, ds, split, 0, "cpu")
    return config, run, ds, split, references


def test_the_fashion_profile_reads_its_own_slice_with_its_own_attacks(fashion):
    config, run, ds, split, references = fashion
    assert config.profile == "fashion" and config.forget_classes == (0,), "T-shirt/top, its first reported class"
    assert ds.input_shape == (1, 28, 28) and (ds.y_train.bincount() == 30).all() and (ds.y_test.bincount() == 20).all()
    assert set(references) == {"original", "retrain", "retrain#1"}
    drawn = attack_set(run, ds, split, 0)
    assert len(drawn.forget) == config.attacks.probe_draws == 5
    assert all(len(f) == 10 and set(ds.y_train[f].tolist()) == {0} for f in drawn.forget), "10 shots of the class"
    assert all(len(r) == 5 * 9 for r in drawn.retain), "5 of each of the other nine classes"


def test_a_method_at_the_fashion_profiles_settings_forgets_and_is_measured(fashion):
    config, run, ds, split, references = fashion
    model, _ = run_method("l1_sparse", references["original"], unlearn_data(ds, split),
                          study_hparams(config, "l1_sparse", 0))
    rows, outcomes = measure(run, ds, split, "l1_sparse", model, 0, references)
    table = pd.DataFrame(rows)
    accuracy = table[table["metric"] == "accuracy"].set_index("split")["value"]
    original, _ = measure(run, ds, split, "original", references["original"], 0, references)
    before = pd.DataFrame(original).query("metric == 'accuracy'").set_index("split")["value"]
    assert accuracy["forget_train"] < before["forget_train"] - 0.3, (accuracy["forget_train"], before["forget_train"])
    relearn = table[table["metric"] == "relearn_accuracy"]
    assert relearn["layer"].tolist() == [f"step{t}" for t in config.attacks.relearn_steps]
    assert outcomes.relearn.shape == (config.attacks.relearn_draws, len(config.attacks.relearn_steps), 20), \
        "every test image of the forgotten class answered after every step of every draw"
    assert outcomes.fewshot.shape[0] == config.attacks.probe_draws
