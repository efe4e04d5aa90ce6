"""Per-layer feature extraction and its cache in the run directory."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ecnb.artifacts import Run
from ecnb.config import StudyConfig
from ecnb.features import cached_features, extract_features, features_path, model_digest, remove_cached
from ecnb.models import smallcnn

SHAPES = {"layer1": (4, 16, 16), "layer2": (8, 8, 8), "layer3": (16, 4, 4), "layer4": (32, 2, 2), "pool": (32,)}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return smallcnn(1, 10, width=4).eval()


@pytest.fixture
def x():
    return torch.randn(20, 1, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def run(tmp_path):
    return Run.open(StudyConfig.from_options(run_dir=str(tmp_path / "run")))


@pytest.fixture
def counted(model, monkeypatch):
    """The model, with its forward passes counted."""
    calls = []
    original = model.forward_taps

    def forward_taps(xb):
        calls.append(len(xb))
        return original(xb)

    monkeypatch.setattr(model, "forward_taps", forward_taps)
    return model, calls


def test_flat_features_are_the_taps_in_network_order(model, x):
    feats = extract_features(model, x, batch_size=7)
    assert list(feats) == [*model.taps, "logits"] == [*SHAPES, "logits"]
    assert {k: v.shape for k, v in feats.items()} == {
        **{k: (20, int(np.prod(s))) for k, s in SHAPES.items()}, "logits": (20, 10)
    }
    assert all(v.dtype == np.float32 for v in feats.values())
    with torch.no_grad():
        logits, taps = model.forward_taps(x)
    for tap, a in taps.items():
        np.testing.assert_allclose(feats[tap], a.reshape(20, -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)


def test_max_spatial_pools_conv_taps_but_never_upsamples(model, x):
    feats = extract_features(model, x, max_spatial=3)
    # layer1 16x16 -> 3x3, layer2 8x8 -> 3x3, layer3 4x4 -> 3x3, layer4 2x2 stays 2x2, pool untouched
    assert {k: v.shape[1] for k, v in feats.items() if k != "logits"} == {
        "layer1": 4 * 9, "layer2": 8 * 9, "layer3": 16 * 9, "layer4": 32 * 4, "pool": 32
    }
    with pytest.raises(ValueError, match="max_spatial"):
        extract_features(model, x, max_spatial=0)


def test_global_pool_is_the_spatial_mean(model, x):
    feats = extract_features(model, x, global_pool=True)
    assert {k: v.shape for k, v in feats.items() if k != "logits"} == {k: (20, s[0]) for k, s in SHAPES.items()}
    with torch.no_grad():
        _, taps = model.forward_taps(x)
    np.testing.assert_allclose(feats["layer2"], taps["layer2"].mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["pool"], taps["pool"].numpy(), rtol=1e-5, atol=1e-6)


def test_extraction_restores_training_mode(model, x):
    model.train()
    before = model.stages["layer1"][1].running_mean.clone()
    extract_features(model, x)
    assert model.training
    assert torch.equal(model.stages["layer1"][1].running_mean, before)  # ran in eval mode


def test_cache_hit_runs_nothing(run, counted, x):
    model, calls = counted
    first = cached_features(run, "original", 0, "forget_train", model, x)
    path = features_path(run, "original", 0, "forget_train")
    assert path == run.seed_dir(0) / "features" / "original__forget_train.npz" and path.exists()
    n_calls = len(calls)
    assert n_calls > 0
    again = cached_features(run, "original", 0, "forget_train", model, x)
    pooled = cached_features(run, "original", 0, "forget_train", model, x, max_spatial=2, pooled=True)
    assert len(calls) == n_calls
    assert list(again) == list(first)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert pooled["layer1"].shape == (20, 4)
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["n"]) == 20 and int(npz["max_spatial"]) == -1


@pytest.mark.parametrize(
    "change", [{"max_spatial": 2}, {"n": 10}, {"force": True}], ids=["max_spatial", "n", "force"]
)
def test_cache_recomputes_when_stale_or_forced(run, counted, x, change):
    model, calls = counted
    cached_features(run, "ga", 0, "retain_train", model, x)
    n_calls = len(calls)
    xs = x[: change.pop("n", len(x))]
    feats = cached_features(run, "ga", 0, "retain_train", model, xs, **change)
    assert len(calls) > n_calls and len(feats["pool"]) == len(xs)
    n_calls = len(calls)
    change.pop("force", None)
    cached_features(run, "ga", 0, "retain_train", model, xs, **change)
    assert len(calls) == n_calls  # the recomputed file is now the cache


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_corrupt_cache_is_recomputed_with_a_warning_naming_the_file(run, model, x, damage, capsys):
    expected = cached_features(run, "rl", 0, "test_forget", model, x)
    path = features_path(run, "rl", 0, "test_forget")
    if damage == "garbage":
        path.write_bytes(b"not a zip archive")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        with open(path, "wb") as f:
            np.savez(f, something=np.zeros(3))
    feats = cached_features(run, "rl", 0, "test_forget", model, x)
    assert str(path) in capsys.readouterr().err
    assert all(np.array_equal(feats[k], expected[k]) for k in expected)
    with np.load(path, allow_pickle=False) as npz:
        assert np.array_equal(npz["flat.pool"], expected["pool"]), "the damaged file was replaced"


def test_empty_split_is_refused(model):
    with pytest.raises(ValueError, match="empty"):
        extract_features(model, torch.zeros(0, 1, 16, 16))


def test_features_of_other_weights_are_never_read_back(run, model, x):
    """The cache is keyed by the weights it came from: whichever path asks, a model whose weights
    changed (a recomputed method, a retrained reference) gets its own features."""
    old = cached_features(run, "ec[last]", 0, "forget_train", model, x)
    with torch.no_grad():
        model.stages["layer1"][0].weight.mul_(-1)
    new = cached_features(run, "ec[last]", 0, "forget_train", model, x)
    assert not np.allclose(new["layer1"], old["layer1"])
    np.testing.assert_allclose(new["layer1"], extract_features(model, x)["layer1"], rtol=1e-5, atol=1e-6)
    assert model_digest(model) != model_digest(smallcnn(1, 10, width=4))
    assert model_digest(model) == model_digest(copy.deepcopy(model)), "a digest of the weights, not of the object"


def test_removing_a_methods_features_matches_its_name_exactly(run, model, x):
    """`ec[last]` read as a glob pattern is "ec" then one of l, a, s, t: it must match itself only."""
    for method in ("ec[last]", "ec", "ecl", "ec[last]+x"):
        cached_features(run, method, 0, "forget_train", model, x)
    remove_cached(run, "ec[last]", 0)
    left = sorted(p.name for p in (run.seed_dir(0) / "features").iterdir())
    assert left == ["ec[last]+x__forget_train.npz", "ec__forget_train.npz", "ecl__forget_train.npz"]


def test_a_reader_of_one_view_reads_only_that_view(run, counted, x, monkeypatch):
    """The pooled view (the probes') is read from the file without its flat view (tens of MB per file on
    Fashion-MNIST's test set), and without running the model."""
    model, calls = counted
    flat = cached_features(run, "original", 0, "test_forget", model, x)
    n_calls = len(calls)
    read = []
    real_getitem = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, k: read.append(k) or real_getitem(self, k))
    pooled = cached_features(run, "original", 0, "test_forget", model, x, pooled=True)
    assert len(calls) == n_calls, "read, not recomputed"
    assert read and not any(k.startswith("flat.") for k in read)
    np.testing.assert_array_equal(pooled["logits"], flat["logits"])
    assert pooled["layer1"].shape == (len(x), model.stages["layer1"][0].out_channels)
