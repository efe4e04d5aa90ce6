"""scripts/ec_directions.py, the method file of the two directions evaluated beyond `ec+soft`: the similarity-weighted
relabel against hand-computed values and against `ec+soft` itself, LEACE's fold against what it must erase."""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from ecnb.config import ConfigError, file_digest
from ecnb.ec import loss as ec_loss
from ecnb.methods import hparams, run_method
from ecnb.models import build_model
from ecnb.unlearn import UnlearnData
from ecnb.user_methods import load_method_file

pytestmark = pytest.mark.usefixtures("registry_restored")

PATH = (Path(__file__).parents[1] / "scripts" / "ec_directions.py").absolute()


@pytest.fixture
def directions():
    """The method file, loaded as a study loads it; its module, for its helpers."""
    assert load_method_file(PATH) == ["ec_soft_sim", "ec_leace", "ec_soft_leace", "ec_soft_reset"]
    return sys.modules[f"ecnb_method_file_{file_digest(str(PATH))[:16]}"]


@pytest.fixture(scope="module")
def data(trained) -> UnlearnData:
    return UnlearnData.from_splits(trained.splits, trained.ds.num_classes, trained.split.forget_classes, "cpu")


def test_class_distances_are_the_centred_class_means_cosines(directions):
    # class means (1, 0), (0, 1), (-1, 0); centred on their mean (0, 1/3): (1, -1/3), (0, 2/3), (-1, -1/3).
    # cos to class 0's: class 1 -1/sqrt(10), class 2 (-1 + 1/9) / (10/9) = -0.8; distance (1 - cos) / 2.
    z = torch.tensor([[1.0, 0.5], [1.0, -0.5], [0.0, 1.0], [-1.0, 0.2], [-1.0, -0.2]])
    y = torch.tensor([0, 0, 1, 2, 2])
    got = directions.class_distances(z, y, (0,), 3)
    assert got.tolist() == pytest.approx([0.0, (1 + 1 / math.sqrt(10)) / 2, 0.9], abs=1e-6)


def test_similarity_scale_follows_the_targets_distance_and_averages_one(directions):
    distances = torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.2, 0.6]])
    targets = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.5, 0.5]])
    # target-weighted distances: point 0 (0.5, 0.75), point 1 (0.2, 0.4); their mean 0.4625
    got = directions.similarity_scale(distances, targets, 1.0)
    assert got.flatten().tolist() == pytest.approx([0.5 / 0.4625, 0.75 / 0.4625, 0.2 / 0.4625, 0.4 / 0.4625], abs=1e-6)
    squared = [0.25, 0.5625, 0.04, 0.16]  # mean 0.253125
    assert directions.similarity_scale(distances, targets, 2.0).flatten().tolist() == pytest.approx(
        [s / 0.253125 for s in squared], abs=1e-6)
    assert directions.similarity_scale(distances, targets, 0.0).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_the_relabel_is_weighted_per_sample():
    logits = torch.zeros(2, 2)  # p = 1/2 each: every sample's cross-entropy is log 2
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert ec_loss.soft_cross_entropy(logits, targets).item() == pytest.approx(math.log(2))
    assert ec_loss.soft_cross_entropy(logits, targets, torch.tensor([1.0, 3.0])).item() == pytest.approx(2 * math.log(2))


def test_sim_power_zero_is_ec_soft_itself_and_a_sharper_one_is_not(directions, trained, data):
    hp = {"epochs": 1, "retain_fraction": 0.25, "ec_aux_epochs": 1}
    soft, _ = run_method("ec+soft", trained.original, data, hparams("ec+soft", **hp))
    same, _ = run_method("ec_soft_sim", trained.original, data, hparams("ec_soft_sim", sim_power=0.0, **hp))
    sharp, _ = run_method("ec_soft_sim", trained.original, data, hparams("ec_soft_sim", sim_power=4.0, **hp))
    weights = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert torch.equal(weights(soft), weights(same))
    assert not torch.allclose(weights(soft), weights(sharp))


def _class_mean_gaps(model, data: UnlearnData) -> list[float]:
    """Per stage, |mean over D_f - mean over D_r| of the last BatchNorm's output (pre-ReLU, eval mode), per channel
    and position pooled, relative to the channels' spread."""
    outs = []
    hooks = [stage[-2].register_forward_hook(lambda m, i, o: outs.append(o.permute(0, 2, 3, 1).flatten(0, 2).clone()))
             for stage in model.stages.values()]
    model.eval()
    with torch.no_grad():
        model(torch.cat([data.forget_x, data.retain_x]))
    for h in hooks:
        h.remove()
    gaps = []
    for o in outs:
        per_image = o.shape[0] // (len(data.forget_x) + len(data.retain_x))
        forget = o[: len(data.forget_x) * per_image]
        retain = o[len(data.forget_x) * per_image:]
        gaps.append(((forget.mean(0) - retain.mean(0)).norm() / o.std(0).mean()).item())
    return gaps


def test_leace_equalises_the_class_means_at_every_stage_and_keeps_the_architecture(directions, trained, data):
    model = copy.deepcopy(trained.original)
    before = _class_mean_gaps(model, data)
    directions.fold_leace(model, data)
    after = _class_mean_gaps(model, data)
    assert min(before) > 0.1
    assert all(a < b / 100 for a, b in zip(after, before)), (before, after)
    assert list(model.state_dict()) == list(trained.original.state_dict())
    with torch.no_grad():
        retain = (model(data.retain_x).argmax(1) == data.retain_y).float().mean().item()
    assert retain > 0.5  # the fold removes one direction per stage, not the network


def test_leace_refuses_a_model_whose_stages_do_not_end_in_conv_bn_relu(directions, data):
    with pytest.raises(ConfigError, match="stage 'layer1' of TappedNet does not"):
        directions.stage_convs(build_model("resnet18", 1, 10))


def test_ec_leace_forgets_through_the_shared_driver(directions, trained, data):
    model, _ = run_method("ec_leace", trained.original, data,
                          hparams("ec_leace", epochs=1, retain_fraction=0.25, ec_aux_epochs=1))
    with torch.no_grad():
        before, after = ((m.eval()(data.forget_x).argmax(1) == data.forget_y).float().mean().item()
                         for m in (trained.original, model))
    assert before > 0.9 and after < 0.7  # one epoch over a quarter of D_r (measured 0.51)


def test_a_reset_draws_only_its_stage_afresh_and_the_same_way_for_the_same_seed(directions, trained, data):
    hp = hparams("ec_soft_reset", ec_aux_epochs=1, reset_stage="layer3")
    models = [copy.deepcopy(trained.original) for _ in range(2)]
    for model in models:
        directions.reset_setup(model, data, hp)
    before, after, again = (m.state_dict() for m in (trained.original, *models))
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer3"}
    assert all(torch.equal(after[k], again[k]) for k in after)
