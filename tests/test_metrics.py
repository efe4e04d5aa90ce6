"""CKA, membership inference and linear probes (docs/study.md, "Metrics")."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from ecnb import metrics
from ecnb.data import make_forget_split, split_tensors
from ecnb.features import extract_features

RNG = np.random.default_rng(0)


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The published formula, literally: explicit n x n Grams, zeroed diagonals, no centring, no blocks."""
    def hsic(k: np.ndarray, l: np.ndarray) -> float:
        n = len(k)
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(l, 0)
        one = np.ones(n)
        return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def correlated(n: int = 60, d1: int = 9, d2: int = 5) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(size=(n, d1)) + 3.0
    return x, np.tanh(x @ RNG.normal(size=(d1, d2))) + 0.5 * RNG.normal(size=(n, d2))


# --- CKA -------------------------------------------------------------------------------------------


def test_cka_of_identical_inputs_is_one():
    x, _ = correlated()
    assert metrics.cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_isotropic_scaling_and_orthogonal_transforms():
    x, y = correlated()
    q, _ = np.linalg.qr(RNG.normal(size=(x.shape[1], x.shape[1])))
    base = metrics.cka(x, y)
    assert metrics.cka(3.7 * x, y) == pytest.approx(base, abs=1e-12)
    assert metrics.cka(x @ q, 0.01 * y) == pytest.approx(base, abs=1e-12)
    assert metrics.cka(x, x @ q * 5.0) == pytest.approx(1.0, abs=1e-12)


def test_cka_near_zero_for_independent_data():
    x, y = RNG.normal(size=(1500, 40)), RNG.normal(size=(1500, 30))
    assert abs(metrics.cka(x, y)) < 0.1


@pytest.mark.parametrize("block_size", [1, 4, 7, 16, 59, 60, 1000])
def test_block_accumulation_equals_full_batch(block_size):
    x, y = correlated(n=60, d1=90, d2=70)  # more features than samples: the Gram form, in blocks
    assert not metrics._feature_form_is_cheaper(60, 90, [70], block_size)
    assert metrics.cka(x, y, block_size=block_size) == pytest.approx(metrics.cka(x, y, block_size=60), abs=1e-10)


@pytest.fixture(params=["gram", "features"])
def form(request, monkeypatch):
    """Every CKA of the test in one form, whatever the shapes."""
    monkeypatch.setattr(metrics, "_feature_form_is_cheaper", lambda *args: request.param == "features")
    return request.param


@pytest.mark.parametrize("n,d1,d2", [(300, 6, 4), (200, 3, 40), (12, 50, 40), (5, 1, 1)])
def test_both_forms_match_the_published_formula_for_tall_and_wide_features(form, n, d1, d2):
    x, y = correlated(n, d1, d2)
    assert metrics.cka(x, y, block_size=7) == pytest.approx(reference_cka(x - x.mean(0), y - y.mean(0)), abs=1e-10)


def test_both_forms_hand_computed(form):
    # test_cka_hand_computed's case, whose K and L have a single 1 off the diagonal each: CKA = -1/3.
    x = np.array([[1.0], [1], [0], [0], [0]])
    y = np.array([[1.0], [0], [1], [0], [0]])
    assert metrics.cka(x, y, block_size=2) == pytest.approx(-1 / 3, abs=1e-12)


def test_the_cheaper_form_is_taken():
    # n = 2000 in 4 blocks of 512: the Gram blocks cost n²(dx + dy)(4 + 1)/(2 * 4) multiply-adds, the feature
    # form n(dx² + dy² + dx·dy). d = 512: 2.56e9 against 1.57e9; d = 1024: 5.12e9 against 6.29e9.
    assert metrics._feature_form_is_cheaper(2000, 512, [512], 512)
    assert not metrics._feature_form_is_cheaper(2000, 1024, [1024], 512)
    # one block of 2000: n²(dx + dy) = 8.19e9 against 6.29e9
    assert metrics._feature_form_is_cheaper(2000, 1024, [1024], 2048)
    # dx = 900: 4.5e9 against 4.86e9 with dy = 900; with two y of 100 each, 2.75e9 against 2.02e9
    assert not metrics._feature_form_is_cheaper(2000, 900, [900], 512)
    assert metrics._feature_form_is_cheaper(2000, 900, [100, 100], 512)


def test_cka_to_each_equals_cka_pair_by_pair(form):
    x, y = correlated(40, 8, 5)
    z = RNG.normal(size=(40, 3))
    assert metrics.cka_to_each(x, [y, z, x]) == pytest.approx([metrics.cka(x, y), metrics.cka(x, z), 1.0], abs=1e-12)
    with pytest.raises(metrics.DegenerateFeatures, match="features of y"):
        metrics.cka_to_each(x, [y, np.ones((40, 2))])


def test_float32_products_agree_with_float64_within_the_stated_tolerance(form, trained):
    """On real features (ReLU maps, large common offsets) and on features with an offset of 1000."""
    x = trained.splits["test_retain"][0]
    a = extract_features(trained.original, x)
    b = extract_features(trained.retrain, x)
    offset = (1000.0 + RNG.normal(size=(300, 20))).astype(np.float32)
    pairs = [(a[t], b[t]) for t in trained.original.taps] + [(offset, offset[:, :10] ** 2 / 1000.0)]
    for u, v in pairs:
        exact = metrics.cka(u, v)
        assert abs(metrics.cka(u, v, products=torch.float32) - exact) < metrics.CKA_FLOAT32_TOLERANCE
    assert metrics.layer_cka(a, b, trained.original.taps) == pytest.approx(
        {t: metrics.cka(a[t], b[t]) for t in trained.original.taps}, abs=metrics.CKA_FLOAT32_TOLERANCE)


@pytest.mark.parametrize("n,d1,d2", [(4, 1, 1), (5, 3, 2), (12, 2, 7), (40, 30, 3)])
def test_cka_matches_the_published_formula(n, d1, d2):
    x, y = correlated(n, d1, d2)
    assert metrics.cka(x, y, block_size=3) == pytest.approx(reference_cka(x, y), abs=1e-10)


def test_cka_hand_computed():
    # n = 5, one feature each: x = (1,1,0,0,0), y = (1,0,1,0,0). Off the diagonal, K has a 1 only at
    # (1,2),(2,1) and L only at (1,3),(3,1), so tr(K̃L̃) = 0, K̃1 = (1,1,0,0,0), L̃1 = (1,0,1,0,0).
    # HSIC(K,L) = [0 + 2*2/(4*3) - 2/3 * 1] / (5*2) = -1/30; HSIC(K,K) = [2 + 4/12 - 2/3 * 2] / 10 = 1/10,
    # likewise HSIC(L,L); CKA = (-1/30) / (1/10) = -1/3 (the unbiased estimator can go negative).
    x = np.array([[1.0], [1], [0], [0], [0]])
    y = np.array([[1.0], [0], [1], [0], [0]])
    assert metrics.cka(x, y) == pytest.approx(-1 / 3, abs=1e-12)
    assert reference_cka(x, y) == pytest.approx(-1 / 3, abs=1e-12)


def test_cka_torch_numpy_and_float32_agree_in_float64():
    # A large common offset: float32 arithmetic (even centring in float32) would lose about four digits.
    x = (1000.0 + RNG.normal(size=(80, 6))).astype(np.float32)
    y = (x[:, :3] ** 2 / 1000.0 + RNG.normal(size=(80, 3))).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # The estimator is invariant to a common shift of the samples; the literal formula needs the
    # centring to stay exact in float64 with an offset this large (its sums cancel over ~13 digits).
    exact = reference_cka(x64 - x64.mean(0), y64 - y64.mean(0))
    assert metrics.cka(x64, y64) == pytest.approx(exact, abs=1e-10)
    assert metrics.cka(x, y) == pytest.approx(exact, abs=1e-10)
    assert metrics.cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(exact, abs=1e-10)
    assert metrics.cka(torch.from_numpy(x), y64, block_size=9) == pytest.approx(exact, abs=1e-10)


def test_cka_flattens_per_sample():
    x = RNG.normal(size=(10, 2, 3, 3))
    y = RNG.normal(size=(10, 4))
    assert metrics.cka(x, y) == pytest.approx(metrics.cka(x.reshape(10, -1), y), abs=1e-12)


def test_cka_refuses_undefined_cases():
    x, y = correlated(n=10)
    with pytest.raises(ValueError, match="at least 4"):
        metrics.cka(x[:3], y[:3])
    with pytest.raises(ValueError, match="same samples"):
        metrics.cka(x, y[:9])
    with pytest.raises(metrics.DegenerateFeatures, match="constant"):
        metrics.cka(np.full((10, 3), 0.1, dtype=np.float32), y)


def test_layer_cka_follows_the_given_tap_order():
    a = {t: RNG.normal(size=(20, 4)) for t in ("l1", "l2", "pool")}
    b = {t: v @ RNG.normal(size=(4, 4)) for t, v in a.items()}
    out = metrics.layer_cka(a, b, ["l1", "l2", "pool"])
    assert list(out) == ["l1", "l2", "pool"]
    assert out["l1"] == pytest.approx(metrics.cka(a["l1"], b["l1"]))


def test_cka_rows(trained):
    splits = {k: trained.splits[k] for k in ("forget_train", "test_forget")}
    refs = {"original": trained.original, "retrain": trained.retrain}
    rows = metrics.cka_rows(trained.run, trained.retrain, "retrain", 0, refs, splits)
    taps = trained.retrain.taps
    assert [(r["split"], r["metric"], r["layer"]) for r in rows] == [
        (s, f"cka_to_{ref}", t) for s in splits for ref in refs for t in taps
    ]
    assert all(r["value"] == pytest.approx(1.0, abs=1e-9) for r in rows if r["metric"] == "cka_to_retrain")
    to_original = [r["value"] for r in rows if r["metric"] == "cka_to_original" and r["split"] == "forget_train"]
    assert all(-1 <= v < 1 for v in to_original)
    with pytest.raises(ValueError, match="references"):
        metrics.cka_rows(trained.run, trained.retrain, "retrain", 0, {"ga": trained.original}, splits)


def test_cka_sample_is_seeded_stratified_and_capped_only_where_asked(monkeypatch):
    monkeypatch.setattr(metrics, "CKA_MAX_IMAGES", {"test_retain": 10})
    y = torch.tensor([0] * 8 + [1] * 8 + [2] * 2)
    x = torch.arange(18.0).view(18, 1) * 10  # the image is its position, times 10
    name, sample = metrics.cka_sample("test_retain", x, y, seed=0)
    positions = (sample[:, 0] / 10).long()
    assert name == "test_retain@10"
    assert torch.bincount(y[positions]).tolist() == [3, 3, 2]  # 10 // 3 classes = 3 per class, all 2 of class 2
    assert torch.equal(positions, positions.sort().values)
    assert torch.equal(metrics.cka_sample("test_retain", x, y, seed=0)[1], sample)
    assert not torch.equal(metrics.cka_sample("test_retain", x, y, seed=1)[1], sample)
    for split_name, n in (("test_forget", 18), ("test_retain", 10)):
        name, whole = metrics.cka_sample(split_name, x[:n], y[:n], seed=0)
        assert name == split_name and torch.equal(whole, x[:n])


def test_cka_rows_read_the_capped_sample_and_leave_the_whole_splits_features(trained, monkeypatch):
    monkeypatch.setattr(metrics, "CKA_MAX_IMAGES", {"test_retain": 90})
    x, y = trained.splits["test_retain"]
    rows = metrics.cka_rows(trained.run, trained.original, "original", 0, {"retrain": trained.retrain},
                            {"test_retain": (x, y)})
    keep = metrics._cap_per_class(y.numpy(), 10, seed=0)  # 9 retained classes, 90 // 9 each
    a, b = (extract_features(m, x[keep]) for m in (trained.original, trained.retrain))
    assert [(r["split"], r["layer"]) for r in rows] == [("test_retain", t) for t in trained.original.taps]
    assert [r["value"] for r in rows] == pytest.approx([metrics.cka(a[t], b[t]) for t in trained.original.taps],
                                                       abs=metrics.CKA_FLOAT32_TOLERANCE)
    folder = trained.run.seed_dir(0) / "features"
    assert (folder / "original__test_retain@90.npz").exists() and (folder / "retrain__test_retain@90.npz").exists()


# --- membership inference ------------------------------------------------------------------------


def test_true_label_confidence_is_the_softmax_of_the_label(trained):
    x, y = trained.splits["test_retain"]
    conf = metrics.true_label_confidence(metrics.probabilities(trained.original, x), y)
    with torch.no_grad():
        expected = torch.softmax(trained.original(x).double(), 1)[torch.arange(len(y)), y].numpy()
    assert conf.dtype == np.float64
    np.testing.assert_allclose(conf, expected, rtol=1e-5)


def confidences(model: torch.nn.Module, splits: dict) -> dict[str, np.ndarray]:
    return {name: metrics.true_label_confidence(metrics.probabilities(model, splits[name][0]), splits[name][1])
            for name in ("retain_train", "test_retain", "forget_train")}


def test_mia_efficacy_separates_the_original_from_retrain(trained):
    s = trained.splits
    values = {}
    for name, model in (("original", trained.original), ("retrain", trained.retrain)):
        conf = confidences(model, s)
        values[name] = metrics.mia_efficacy(conf["retain_train"], conf["test_retain"], conf["forget_train"], seed=0)
    assert all(0.0 <= v <= 1.0 for v in values.values())
    # The original was trained on D_f, so its confidences there look like members'; retrain never saw
    # class 3, so its confidences there look like test samples'.
    assert values["retrain"] > values["original"] + 0.5
    rows = metrics.mia_rows(metrics.model_outputs(trained.retrain, s), s, "retrain", 0)
    assert [(r["metric"], r["split"], r["layer"]) for r in rows] == [("mia_efficacy", "forget_train", "")]
    assert rows[0]["value"] == values["retrain"]


def test_mia_shadow_sets_are_balanced(trained, monkeypatch):
    fitted = []
    real_svc = metrics.SVC

    def spy(**kwargs):
        svc = real_svc(**kwargs)
        real_fit = svc.fit
        svc.fit = lambda x, y: fitted.append((kwargs, x, y)) or real_fit(x, y)
        return svc

    monkeypatch.setattr(metrics, "SVC", spy)
    conf = confidences(trained.original, trained.splits)
    metrics.mia_efficacy(conf["retain_train"], conf["test_retain"], conf["forget_train"], max_per_side=100)
    (kwargs, x, y), = fitted
    assert kwargs == {"C": 3, "gamma": "auto", "kernel": "rbf"}
    assert x.shape == (200, 1) and int(y.sum()) == 100


def test_mia_draws_its_shadow_sets_as_the_recipe_says(trained):
    """A seeded draw of k members and k non-members from every image's confidence, computed here independently."""
    k, seed = 200, 4
    conf = confidences(trained.original, trained.splits)
    rng = np.random.default_rng(seed)
    shadow = np.concatenate([rng.choice(conf["retain_train"], k, replace=False),
                             rng.choice(conf["test_retain"], k, replace=False)])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(shadow[:, None], np.repeat([1.0, 0.0], k))
    expected = float(np.mean(svc.predict(conf["forget_train"][:, None]) == 0))
    value = metrics.mia_efficacy(conf["retain_train"], conf["test_retain"], conf["forget_train"], seed=seed, max_per_side=k)
    assert value == expected


# --- linear probe ----------------------------------------------------------------------------------


def test_probe_on_the_original_recovers_the_forgotten_class(trained):
    accs = metrics.layer_probe_accuracy(trained.run, trained.original, "original", 0, trained.ds, trained.split)
    assert list(accs) == trained.original.taps
    assert accs["pool"] > 0.8
    rows = metrics.probe_rows(trained.run, trained.original, "original", 0, trained.ds, trained.split)
    assert [(r["metric"], r["split"], r["layer"]) for r in rows] == [
        ("probe_accuracy", "test_forget", t) for t in trained.original.taps
    ]


def test_probe_trains_on_training_images_only(trained, monkeypatch):
    """Whatever reaches the probe's fit comes from the training splits; test images only score it."""
    requested, given = [], []
    real_cached, real_probe = metrics.cached_features, metrics.probe_accuracy

    def cached_spy(run, method, seed, split_name, model, x, *args, **kwargs):
        requested.append((split_name, x))
        return real_cached(run, method, seed, split_name, model, x, *args, **kwargs)

    def probe_spy(train_feats, train_y, test_feats, test_y, seed=0):
        given.append((train_feats, train_y, test_feats, test_y))
        return real_probe(train_feats, train_y, test_feats, test_y, seed)

    monkeypatch.setattr(metrics, "cached_features", cached_spy)
    monkeypatch.setattr(metrics, "probe_accuracy", probe_spy)
    ds, split = trained.ds, trained.split
    metrics.layer_probe_accuracy(trained.run, trained.original, "original", 0, ds, split)

    names = [name for name, _ in requested]
    assert names == ["forget_train", "retain_train", "test_forget"]
    assert torch.equal(requested[0][1], ds.x_train[split.forget_idx])
    assert torch.equal(requested[1][1], ds.x_train[split.retain_idx])
    assert len(given) == len(trained.original.taps)
    pool_test = extract_features(trained.original, trained.splits["test_forget"][0], global_pool=True)["pool"]
    train_feats, train_y, test_feats, _ = given[-1]
    assert len(train_feats) == len(ds.y_train) and set(np.unique(train_y)) == set(range(10))
    np.testing.assert_allclose(test_feats, pool_test, rtol=1e-5, atol=1e-6)
    distances = ((train_feats[:, None, :] - pool_test[None, :, :]) ** 2).sum(-1)
    assert distances.min() > 1e-8  # no test image's features are among the training rows


def test_probe_rows_skip_random_sample_forgetting(trained):
    random_split = make_forget_split(trained.ds.y_train, forget_fraction=0.1, seed=0)
    assert not len(split_tensors(trained.ds, random_split)["test_forget"][1])
    assert metrics.probe_rows(trained.run, trained.original, "original", 0, trained.ds, random_split) == []


def test_probe_caps_each_class():
    y = np.repeat(np.arange(3), [5, 50, 2])
    keep = metrics._cap_per_class(y, 10, seed=0)
    assert np.bincount(y[keep]).tolist() == [5, 10, 2]
    assert np.array_equal(keep, np.sort(keep)) and np.array_equal(keep, metrics._cap_per_class(y, 10, seed=0))


# --- outputs on the forgotten images ------------------------------------------------------------------


def test_output_entropy_by_hand():
    uniform = torch.full((3, 10), 0.1)
    certain = torch.eye(4)
    assert metrics.output_entropy(uniform) == pytest.approx(np.log(10))
    assert metrics.output_entropy(certain) == pytest.approx(0.0)
    half = torch.tensor([[0.5, 0.5, 0.0]])
    assert metrics.output_entropy(half) == pytest.approx(np.log(2))


def test_ks_distance_by_hand():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    assert metrics.ks_distance(a, a) == 0.0
    assert metrics.ks_distance(a, a + 1.0) == 1.0, "no overlap"
    # ECDFs of {0.1, 0.2, 0.3, 0.4} and {0.25, 0.35, 0.45, 0.55}: largest gap 2/4 at 0.2 (and at 0.4)
    assert metrics.ks_distance(a, np.array([0.25, 0.35, 0.45, 0.55])) == pytest.approx(0.5)


def test_near_uniform_answers_are_far_from_retrains_confident_guesses(trained):
    """A model whose answers on D_f are near-uniform sits far from `retrain` in the output KS distance, and
    retrain is at 0 from itself."""
    forget_x = trained.splits["forget_train"][0]

    class Flat(torch.nn.Module):  # logits all but equal: near-uniform answers
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.zeros(len(x), 10) + 1e-3 * torch.arange(10) + self.w

    splits = {"forget_train": (forget_x, trained.splits["forget_train"][1]), "test_forget": trained.splits["test_forget"]}
    retrain = metrics.model_outputs(trained.retrain, splits)
    flat = {(r["metric"], r["split"]): r["value"]
            for r in metrics.output_rows(metrics.model_outputs(Flat(), splits), retrain, "flat", 0)}
    own = {(r["metric"], r["split"]): r["value"] for r in metrics.output_rows(retrain, retrain, "retrain", 0)}
    assert own[("output_ks_to_retrain", "forget_train")] == 0.0
    assert flat[("output_entropy", "forget_train")] == pytest.approx(np.log(10), abs=1e-3)
    assert flat[("output_ks_to_retrain", "forget_train")] > 0.9
    assert own[("output_entropy", "forget_train")] < np.log(10) - 0.5, "retrain guesses with some confidence"
