"""The representation explorer: sample, checkpoints, embedding cache, alignment, figures and widgets."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from scipy.stats import ortho_group

import ecnb
from ecnb import embeddings, explorer
from ecnb.artifacts import ArtifactError, save_checkpoint
from ecnb.study import PLOTLY_MIME
from ecnb.config import StudyConfig
from ecnb.embeddings import Atlas, Sample, UmapSettings
from ecnb.results import result_row
from ecnb.viz import FORGET_COLOR, RETAIN_COLOR

METHODS = ["original", "retrain", "ga"]


def save_model(run: ecnb.Run, method: str, init_seed: int) -> torch.nn.Module:
    """An untrained model as `method`'s seed-0 checkpoint, its weights drawn from `init_seed`."""
    torch.manual_seed(init_seed)
    model = ecnb.build_model(run.config.model, 1, 10)
    save_checkpoint(run.checkpoint_path(method, 0), model, {"method": method})
    return model


@pytest.fixture
def fake_run(tmp_path, digits):
    """A run with untrained checkpoints for METHODS and results rows for them and for `scrub`, which has
    no checkpoint; `ga`'s rows come first, so the order of the models is method_order's, not the file's."""
    run = ecnb.Run.open(StudyConfig.from_options(run_dir=str(tmp_path / "run")))
    split = ecnb.forget_split(run, digits, 0)
    weights = {m: save_model(run, m, i).state_dict() for i, m in enumerate(METHODS)}
    ecnb.write_results(run.root, [result_row(0, m, "accuracy", 0.5, split="test_retain")
                                  for m in ["ga", "scrub", "original", "retrain"]])
    return run, split, weights


@pytest.fixture
def fits(monkeypatch):
    """UMAP replaced by a fixed random projection, with every fit and every feature read recorded."""
    calls = {"fit": [], "features": [], "init": []}
    read = embeddings.cached_features

    def fake_fit(features, settings, init=None):
        calls["fit"].append(features.shape)
        calls["init"].append(init)
        projection = np.random.default_rng(settings.n_neighbors).normal(size=(features.shape[1], 2))
        return (features @ projection).astype(np.float32) + (0 if init is None else init)

    def counted_features(run, method, seed, split_name, *args):
        calls["features"].append((method, split_name))
        return read(run, method, seed, split_name, *args)

    monkeypatch.setattr(embeddings, "fit_umap", fake_fit)
    monkeypatch.setattr(embeddings, "cached_features", counted_features)
    return calls


def test_run_models_loads_every_checkpointed_method_in_method_order(fake_run, digits):
    run, _, weights = fake_run
    models = embeddings.run_models(run, digits, 0, "cpu")
    assert list(models) == METHODS, "scrub has rows but no checkpoint"
    for method, model in models.items():
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, weights[method][name]), (method, name)


def test_a_run_without_checkpoints_is_refused_in_one_line(tmp_path, digits):
    run = ecnb.Run.open(StudyConfig.from_options(run_dir=str(tmp_path / "empty")))
    with pytest.raises(ArtifactError, match="no checkpoint of 'original' for seed 0: run notebook 01") as e:
        embeddings.run_models(run, digits, 0, "cpu")
    assert "\n" not in str(e.value)


def test_sample_is_seeded_capped_and_labelled(digits, fake_run):
    _, split, _ = fake_run
    splits = ecnb.split_tensors(digits, split)
    sample = embeddings.draw_sample(digits, split, n_retain=50, n_forget=1000, seed=3)
    assert len(sample.positions["test_forget"]) == len(splits["test_forget"][1]), "the cap exceeds the split: all of it"
    assert len(sample.positions["test_retain"]) == 50
    expected = np.concatenate([splits[s][1].numpy()[sample.positions[s]] for s in ("test_forget", "test_retain")])
    np.testing.assert_array_equal(sample.y, expected)
    assert set(sample.y[: len(sample.positions["test_forget"])]) == set(split.forget_classes)
    again = embeddings.draw_sample(digits, split, n_retain=50, n_forget=1000, seed=3)
    other = embeddings.draw_sample(digits, split, n_retain=50, n_forget=1000, seed=4)
    np.testing.assert_array_equal(again.positions["test_retain"], sample.positions["test_retain"])
    assert not np.array_equal(other.positions["test_retain"], sample.positions["test_retain"])


def test_embeddings_are_fitted_once_and_refitted_when_their_key_changes(fake_run, digits, fits, capsys):
    run, split, _ = fake_run
    sample = embeddings.draw_sample(digits, split, n_retain=40, n_forget=10, seed=0)
    models = embeddings.run_models(run, digits, 0, "cpu")
    taps = models["original"].taps
    atlas = embeddings.embed_layers(run, digits, split, 0, models, sample)
    out, err = capsys.readouterr()
    assert "UMAP" in out and "UMAP" not in err, "the bar is plain output: a notebook shows stderr as an error"
    assert len(fits["fit"]) == len(METHODS) * len(taps)
    assert {n for n, _ in fits["fit"]} == {len(sample.y)}, "one row per sample point"
    files = sorted((run.seed_dir(0) / "embeddings").iterdir())
    assert len(files) == len(METHODS) * len(taps)
    assert all(re.fullmatch(rf"({'|'.join(METHODS)})__({'|'.join(taps)})__[0-9a-f]{{16}}\.npz", f.name) for f in files)
    with np.load(files[0], allow_pickle=False) as npz:
        assert npz["embedding"].shape == (len(sample.y), 2)

    fits["fit"].clear()
    fits["features"].clear()
    again = embeddings.embed_layers(run, digits, split, 0, models, sample)
    assert fits["fit"] == fits["features"] == [], "a second call computes nothing, not even features"
    for method in METHODS:
        for tap in taps:
            np.testing.assert_array_equal(again.coords[method][tap], atlas.coords[method][tap])

    embeddings.embed_layers(run, digits, split, 0, models, sample, UmapSettings(n_neighbors=5))
    assert len(fits["fit"]) == len(METHODS) * len(taps), "other UMAP settings: every embedding again"
    fits["fit"].clear()
    fits["features"].clear()
    save_model(run, "ga", init_seed=99)
    models = embeddings.run_models(run, digits, 0, "cpu")
    embeddings.embed_layers(run, digits, split, 0, models, sample)
    assert len(fits["fit"]) == len(taps) and {m for m, _ in fits["features"]} == {"ga"}, "only the changed model"
    fits["fit"].clear()
    embeddings.embed_layers(run, digits, split, 0, models, embeddings.draw_sample(digits, split, 40, 10, seed=1))
    assert len(fits["fit"]) == len(METHODS) * len(taps), "another sample: every embedding again"
    fits["fit"].clear()
    save_model(run, "original", init_seed=98)
    embeddings.embed_layers(run, digits, split, 0, embeddings.run_models(run, digits, 0, "cpu"), sample)
    assert len(fits["fit"]) == len(METHODS) * len(taps), "another original: every fit starts from elsewhere"


def test_a_sample_of_part_of_a_split_passes_only_its_images_and_reads_what_the_whole_split_would(fake_run, digits):
    """Of a split larger than the sample only the sampled images go through the model and are kept (their own
    features file), and their features are the whole split's rows; a split the sample covers is read whole."""
    run, split, _ = fake_run
    splits = ecnb.split_tensors(digits, split)
    models = embeddings.run_models(run, digits, 0, "cpu")
    sample = embeddings.draw_sample(digits, split, n_retain=40, n_forget=1000, seed=0)
    sampled = embeddings._sample_features(run, "ga", 0, models["ga"], splits, sample, None)
    kept = sorted(p.name for p in (run.seed_dir(0) / "features").iterdir())
    assert kept[0] == "ga__test_forget.npz" and re.fullmatch(r"ga__test_retain@sample40-[0-9a-f]{8}\.npz", kept[1])
    assert len(kept) == 2, "the whole test_retain split is not passed"
    whole = {name: ecnb.features.cached_features(run, "ga", 0, name, models["ga"], splits[name][0]) for name in
             embeddings.SAMPLE_SPLITS}
    for tap in models["ga"].taps:
        expected = np.concatenate([whole[name][tap][sample.positions[name]] for name in embeddings.SAMPLE_SPLITS])
        np.testing.assert_allclose(sampled[tap], expected, rtol=1e-5, atol=1e-6)


def test_every_other_models_fit_starts_from_the_originals_embedding_of_the_layer(fake_run, digits, fits):
    run, split, _ = fake_run
    sample = embeddings.draw_sample(digits, split, n_retain=40, n_forget=10, seed=0)
    embeddings.embed_layers(run, digits, split, 0, embeddings.run_models(run, digits, 0, "cpu"), sample)
    taps = embeddings.run_models(run, digits, 0, "cpu")["original"].taps
    assert fits["init"][:len(taps)] == [None] * len(taps), "original first, from UMAP's own start"
    starts = fits["init"][len(taps):]
    assert len(starts) == (len(METHODS) - 1) * len(taps)
    for k, start in enumerate(starts):
        layer = taps[k % len(taps)]
        own = np.load(next((run.seed_dir(0) / "embeddings").glob(f"original__{layer}__*.npz")))["embedding"]
        np.testing.assert_array_equal(start, own)


def test_a_sample_smaller_than_the_neighbourhood_is_refused_before_any_fit(fake_run, digits, fits):
    run, split, _ = fake_run
    sample = embeddings.draw_sample(digits, split, n_retain=10, n_forget=5, seed=0)
    models = embeddings.run_models(run, digits, 0, "cpu")
    with pytest.raises(ValueError, match="a sample of 15 test images is too small for n_neighbors=15"):
        embeddings.embed_layers(run, digits, split, 0, models, sample, UmapSettings(n_neighbors=15))
    assert fits["fit"] == []


def test_embeddings_are_aligned_onto_the_original(fake_run, digits, fits):
    run, split, _ = fake_run
    sample = embeddings.draw_sample(digits, split, n_retain=40, n_forget=10, seed=0)
    atlas = embeddings.embed_layers(run, digits, split, 0, embeddings.run_models(run, digits, 0, "cpu"), sample)
    layer = atlas.layers[0]
    raw = {m: np.load(next((run.seed_dir(0) / "embeddings").glob(f"{m}__{layer}__*.npz")))["embedding"]
           for m in METHODS}
    np.testing.assert_allclose(atlas.coords["original"][layer], raw["original"], atol=1e-5)
    kept = [c for c in np.unique(atlas.sample.y) if c not in split.forget_classes]
    for method in ("retrain", "ga"):
        aligned = embeddings.procrustes_align(raw[method], raw["original"])
        anchored = embeddings.anchor_classes(aligned, raw["original"], atlas.sample.y, kept)
        np.testing.assert_allclose(atlas.coords[method][layer], anchored)


def test_anchoring_puts_every_retained_class_where_original_has_it_and_a_forgotten_image_moves_with_its_class():
    rng = np.random.default_rng(0)
    reference_centres = {0: (0.0, 0.0), 1: (10.0, 0.0), 2: (0.0, 10.0)}
    swapped = {0: (0.0, 10.0), 1: (10.0, 10.0), 2: (0.0, 0.0)}  # UMAP placed the clusters elsewhere
    y = np.repeat([0, 1, 2, 3], [30, 30, 30, 5])
    cloud = rng.normal(0, 0.3, size=(95, 2))
    reference = cloud + np.array([reference_centres.get(c, (5.0, 5.0)) for c in y])
    points = cloud + np.array([swapped[c] if c in swapped else swapped[1] for c in y])  # class 3 sits at class 1
    anchored = embeddings.anchor_classes(points, reference, y, [0, 1, 2])
    for c, centre in reference_centres.items():
        np.testing.assert_allclose(anchored[y == c].mean(0), centre, atol=0.1)
    np.testing.assert_allclose(anchored[y == 3].mean(0), reference_centres[1], atol=0.5), "it stays with class 1"
    np.testing.assert_allclose(embeddings.anchor_classes(reference, reference, y, [0, 1, 2]), reference, atol=1e-5)


def test_a_corrupted_embedding_file_is_named(fake_run, digits, fits):
    run, split, _ = fake_run
    sample = embeddings.draw_sample(digits, split, n_retain=40, n_forget=10, seed=0)
    models = embeddings.run_models(run, digits, 0, "cpu")
    embeddings.embed_layers(run, digits, split, 0, models, sample)
    broken = next((run.seed_dir(0) / "embeddings").glob("ga__*.npz"))
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(ArtifactError, match=f"embedding {re.escape(str(broken))} is unreadable .*delete it"):
        embeddings.embed_layers(run, digits, split, 0, models, sample)


def test_random_sample_forgetting_embeds_test_retain_only(tmp_path, digits, fits):
    run = ecnb.Run.open(StudyConfig.from_options(forget_fraction=0.1, run_dir=str(tmp_path / "run")))
    split = ecnb.forget_split(run, digits, 0)
    save_model(run, "original", init_seed=0)
    ecnb.write_results(run.root, [result_row(0, "original", "accuracy", 0.5, split="test_retain")])
    sample = embeddings.draw_sample(digits, split, n_retain=30, n_forget=10, seed=0)
    assert len(sample.positions["test_forget"]) == 0 and len(sample.y) == 30
    atlas = embeddings.embed_layers(run, digits, split, 0, embeddings.run_models(run, digits, 0, "cpu"), sample)
    fig = explorer.embedding_figure(atlas)
    assert sum(len(t.x) for t in fig.data) == 30 and not any(t.name.endswith("(forgotten)") for t in fig.data)


@pytest.mark.parametrize("mirror", [False, True])
def test_procrustes_undoes_translation_rotation_mirroring_and_scale(mirror):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(60, 2))
    rotation = ortho_group.rvs(2, random_state=1)
    if (np.linalg.det(rotation) < 0) != mirror:
        rotation[:, 0] *= -1
    moved = 3.7 * reference @ rotation + np.array([5.0, -2.0])
    np.testing.assert_allclose(embeddings.procrustes_align(moved, reference), reference, atol=1e-5)


def test_procrustes_keeps_the_spread_and_finds_the_best_rotation_of_a_noisy_copy():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(60, 2))
    noisy = 0.5 * reference[:, ::-1] + rng.normal(scale=0.3, size=reference.shape)
    aligned = embeddings.procrustes_align(noisy, reference)
    np.testing.assert_allclose(aligned.mean(0), reference.mean(0), atol=1e-6)
    spread = np.linalg.norm(reference - reference.mean(0))
    assert np.linalg.norm(aligned - aligned.mean(0)) == pytest.approx(spread, rel=1e-5), "not shrunk by the noise"
    centre = aligned.mean(0)
    error = np.sum((aligned - reference) ** 2)
    for angle in (-0.05, 0.05):
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        assert np.sum(((aligned - centre) @ turn + centre - reference) ** 2) > error


# --- figures ---------------------------------------------------------------------------------------

LAYERS = ["l1", "l2", "l3"]


@pytest.fixture
def atlas():
    """Three methods, three layers of different extents, classes 0-3 with class 3 forgotten."""
    rng = np.random.default_rng(0)
    y = np.array([3] * 5 + [0, 1, 2] * 5)
    sample = Sample({"test_forget": np.arange(5), "test_retain": np.arange(15)}, y)
    coords = {m: {layer: (rng.normal(size=(len(y), 2)) * (k + 1) + k).astype(np.float32)
                  for k, layer in enumerate(LAYERS)} for m in METHODS}
    return Atlas(sample, ["zero", "one", "two", "three"], (3,), METHODS, LAYERS, coords)


def test_embedding_figure_has_a_panel_per_method_and_the_forgotten_class_on_top(atlas):
    fig = explorer.embedding_figure(atlas)
    assert [a.text for a in fig.layout.annotations] == METHODS
    for i, method in enumerate(METHODS):
        traces = fig.data[4 * i:4 * (i + 1)]
        assert [t.name for t in traces] == ["zero", "one", "two", "three (forgotten)"]
        assert traces[-1].marker.color == FORGET_COLOR
        assert FORGET_COLOR not in {t.marker.color for t in traces[:-1]}
        forgotten = atlas.coords[method]["l1"][atlas.sample.y == 3]
        np.testing.assert_allclose(traces[-1].x, forgotten[:, 0], atol=5e-4)  # rounded to what a plot shows
        assert {t.xaxis for t in traces} == {f"x{i + 1 if i else ''}"}, "a panel's traces share its axes"
    assert [t.showlegend for t in fig.data] == [i < 4 for i in range(len(fig.data))], "one legend entry per class"


def test_ten_classes_with_one_forgotten_get_ten_colours():
    y = np.repeat(np.arange(10), 2)
    coords = {"original": {"l1": np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)}}
    atlas = Atlas(Sample({"test_forget": np.arange(2), "test_retain": np.arange(18)}, y), [str(c) for c in range(10)],
                  (3,), ["original"], ["l1"], coords)
    colours = [t.marker.color for t in explorer.embedding_figure(atlas).data]
    assert len(set(colours)) == 10 and colours[-1] == FORGET_COLOR


def trace_points(atlas: Atlas, fig) -> list[tuple[str, np.ndarray]]:
    """(method, point mask) of every trace, read from the panel titles and the trace names."""
    per_panel = len(fig.data) // len(fig.layout.annotations)
    return [(fig.layout.annotations[i // per_panel].text,
             atlas.sample.y == atlas.classes.index(trace.name.removesuffix(" (forgotten)")))
            for i, trace in enumerate(fig.data)]


def test_embedding_figure_has_a_frame_and_fixed_axes_per_layer(atlas):
    fig = explorer.embedding_figure(atlas)
    assert [f.name for f in fig.frames] == LAYERS
    assert [(s.label, list(s.args[0])) for s in fig.layout.sliders[0].steps] == [(layer, [layer]) for layer in LAYERS]
    axes = [f"{xy}axis{i if i > 1 else ''}" for xy in "xy" for i in range(1, len(METHODS) + 1)]
    for frame, layer in zip(fig.frames, LAYERS):
        for (method, mask), trace in zip(trace_points(atlas, fig), frame.data):
            np.testing.assert_allclose(trace.x, atlas.coords[method][layer][mask][:, 0], atol=5e-4)
            np.testing.assert_allclose(trace.y, atlas.coords[method][layer][mask][:, 1], atol=5e-4)
        points = np.concatenate([atlas.coords[m][layer] for m in METHODS])
        for k, xy in enumerate("xy"):
            ranges = {tuple(frame.layout[a].range) for a in axes if a.startswith(xy)}
            assert len(ranges) == 1, f"one {xy} range for every panel"
            lo, hi = ranges.pop()
            assert lo < points[:, k].min() and points[:, k].max() < hi
    for a in axes:
        assert fig.layout[a].range == fig.frames[0].layout[a].range and fig.layout[a].autorange is False
    assert fig.frames[2].layout.xaxis.range != fig.frames[0].layout.xaxis.range, "each layer has its own axes"


def test_panels_zoom_together_without_matching_an_axis_to_itself(atlas):
    fig = explorer.embedding_figure(atlas)
    assert fig.layout.xaxis.matches is None and fig.layout.yaxis.matches is None
    for i in range(2, len(METHODS) + 1):
        assert (fig.layout[f"xaxis{i}"].matches, fig.layout[f"yaxis{i}"].matches) == ("x", "y")


def test_embedding_figure_keeps_atlas_order_and_one_layer_has_no_slider(atlas):
    fig = explorer.embedding_figure(atlas, methods=["ga", "original"], layers=["l2"], menus=False)
    assert fig.layout.title.text == "UMAP of test images at l2"
    assert [a.text for a in fig.layout.annotations] == ["original", "ga"]
    assert not fig.frames and not fig.layout.sliders and not fig.layout.updatemenus
    np.testing.assert_allclose(fig.data[0].x, atlas.coords["original"]["l2"][atlas.sample.y == 0][:, 0], atol=5e-4)
    with pytest.raises(ValueError, match="at least one method"):
        explorer.embedding_figure(atlas, methods=["unknown"])
    with pytest.raises(ValueError, match="unknown split 'train'; valid: both, test_forget, test_retain"):
        explorer.embedding_figure(atlas, split="train")


def test_embedding_menus_show_one_split_and_grey_the_kept_classes(atlas):
    """The split menu hides a split's points by their opacity (and their hover), never by `visible`, which the
    page menu owns."""
    fig = explorer.embedding_figure(atlas, split="test_forget", colouring="split")
    forgotten = [t.name.endswith("(forgotten)") for t in fig.data]
    assert [t.marker.opacity > 0 for t in fig.data] == forgotten and all(t.visible for t in fig.data)
    assert {t.marker.color for t, f in zip(fig.data, forgotten) if not f} == {RETAIN_COLOR}
    split_menu, colour_menu = fig.layout.updatemenus
    views = {b.label: [o > 0 for o in b.args[0]["marker.opacity"]] for b in split_menu.buttons}
    assert views == {"both splits": [True] * len(forgotten), "test_forget only": forgotten,
                     "test_retain only": [not f for f in forgotten]}
    assert split_menu.buttons[1].args[0]["hoverinfo"] == ["text" if f else "skip" for f in forgotten]
    assert split_menu.active == 1 and colour_menu.active == 1
    by_class, by_split = colour_menu.buttons
    kept = [i for i, f in enumerate(forgotten) if not f]
    assert list(by_class.args[1]) == list(by_split.args[1]) == kept
    assert set(by_split.args[0]["marker.color"]) == {RETAIN_COLOR}
    assert len(set(by_class.args[0]["marker.color"])) == 3, "three kept classes, three colours"
    assert by_class.args[0]["marker.color"] == [explorer.embedding_figure(atlas).data[i].marker.color for i in kept]


def cka_results() -> pd.DataFrame:
    rows = [result_row(0, m, metric, 1.0 - 0.1 * k * i, split=split, layer=layer)
            for split in ("forget_train", "test_forget") for i, m in enumerate(["ga", "original", "retrain"])
            for metric in ("cka_to_retrain", "cka_to_original") for k, layer in enumerate(LAYERS)]
    rows.append(result_row(0, "ga", "accuracy", 0.1, split="forget_train"))
    return pd.DataFrame(rows)


def test_cka_figure_has_one_view_per_metric_and_split():
    df = cka_results()
    fig = explorer.cka_figure(df, LAYERS)
    menu = fig.layout.updatemenus[0]
    combos = [("cka_to_original", "forget_train"), ("cka_to_original", "test_forget"),
              ("cka_to_retrain", "forget_train"), ("cka_to_retrain", "test_forget")]
    assert [b.label for b in menu.buttons] == [f"{m} · {s}" for m, s in combos]
    assert len(fig.data) == 3 * len(combos)
    for k, (button, (metric, split)) in enumerate(zip(menu.buttons, combos)):
        shown = [t for t, v in zip(fig.data, button.args[0]["visible"]) if v]
        assert [t.name for t in shown] == ["original", "retrain", "ga"]
        assert shown[1].line.dash == "dash", "retrain is the reference curve"
        for t in shown:
            assert list(t.x) == LAYERS
            rows = df[(df["method"] == t.name) & (df["metric"] == metric) & (df["split"] == split)]
            assert list(t.y) == list(rows.set_index("layer").loc[LAYERS, "value"])
    assert [t.visible for t in fig.data] == menu.buttons[0].args[0]["visible"]
    with pytest.raises(ValueError, match="no CKA rows"):
        explorer.cka_figure(df[df["metric"] == "accuracy"], LAYERS)


def test_cka_figure_puts_each_group_of_methods_in_a_panel_of_its_own_with_the_references():
    methods = ["original", "retrain", "retrain#1", "ga", "scrub", "ec", "ec[last]", "ga+ec"]
    df = pd.DataFrame([result_row(0, m, metric, 0.5, split=split, layer=layer) for m in methods for layer in LAYERS
                       for metric in explorer.CKA_METRICS for split in ("forget_train", "test_forget")])
    fig = explorer.cka_figure(df, LAYERS)
    assert [a.text for a in fig.layout.annotations] == ["baselines", "Erase at the Core", "plug-ins"]
    by_panel = {}
    for t in fig.data[:len(fig.data) // 4]:  # the first of the menu's four views
        by_panel.setdefault(t.xaxis, []).append(t.name)
    lines = {axis: [n for n in names if n and not n.startswith("retrained")] for axis, names in by_panel.items()}
    assert lines == {"x": ["original", "retrain", "ga", "scrub"], "x2": ["original", "retrain", "ec", "ec[last]"],
                     "x3": ["original", "retrain", "ga+ec"]}
    assert all(any(str(n).startswith("retrained models") for n in names) for names in by_panel.values()), "the band"
    legend = [t.name for t in fig.data[:len(fig.data) // 4] if t.showlegend is not False]
    assert sorted(legend) == sorted(["original", "retrain", "retrained models (2): range", "ga", "scrub", "ec",
                                     "ec[last]", "ga+ec"]), "every line once in the legend"
    assert fig.layout.height < 600, "the legend's entries are counted once, not once per view of the menu"


def test_explorer_widgets_redraw_with_the_chosen_view(atlas, monkeypatch):
    drawn = []
    monkeypatch.setattr(explorer, "embedding_figure", lambda *args, **kw: drawn.append((args, kw)) or go.Figure())
    box = explorer.explorer(atlas)
    methods, (layer, split, colouring) = box.children[0].children[0], box.children[0].children[1].children
    assert list(methods.options) == METHODS and list(layer.options) == LAYERS
    assert drawn[-1][0][0] is atlas
    assert drawn[-1][0][1:] == (METHODS, ["l1"], "both", "class") and drawn[-1][1] == {"menus": False}
    layer.value, split.value, colouring.value, methods.value = "l3", "test_forget", "split", ("ga",)
    assert drawn[-1][0][1:] == (["ga"], ["l3"], "test_forget", "split")
    count = len(drawn)
    methods.value = ()
    assert len(drawn) == count, "nothing to draw without a method"


def attack_results() -> pd.DataFrame:
    rows = [result_row(0, m, "relearn_accuracy", 0.1 * i * step / 10, split="test_forget", layer=f"step{step}")
            for i, m in enumerate(["original", "retrain", "ga", "scrub", "ec"]) for step in (0, 5, 10)]
    rows += [result_row(0, m, "fewshot_probe_accuracy", 0.5, split="test_forget", layer=layer)
             for m in ["original", "retrain", "ga", "scrub", "ec"] for layer in LAYERS]
    return pd.DataFrame(rows)


def test_attack_explorer_draws_the_chosen_attack_with_both_references(monkeypatch):
    df = attack_results()
    drawn = []
    monkeypatch.setattr(explorer, "relearn_curves", lambda rows, methods: drawn.append(("relearn", methods)) or go.Figure())
    monkeypatch.setattr(explorer, "layer_curves", lambda rows, metric, split, layers, title, methods: drawn.append(
        ("probe", sorted(methods), metric, split, layers)) or go.Figure())
    box = explorer.attack_explorer(df, LAYERS)
    methods, view = box.children[0].children
    assert list(methods.options) == ["ga", "scrub", "ec"] and methods.value == ("ga", "scrub")
    assert drawn == [("relearn", ["original", "retrain", "ga", "scrub"])]
    view.value = "few-shot probe"
    assert drawn[-1] == ("probe", ["ga", "original", "retrain", "scrub"], "fewshot_probe_accuracy", "test_forget", LAYERS)
    methods.value = ("ec",)
    assert drawn[-1][1] == ["ec", "original", "retrain"]
    count = len(drawn)
    methods.value = ()
    assert len(drawn) == count, "nothing to draw without a method"


def test_the_widgets_figure_is_the_outputs_state_not_captured_output(atlas):
    """The Output holds exactly one figure, replaced on each redraw (never appended), set as its state:
    nothing is captured, so nbclient never mirrors outputs back to the kernel (the Voila hang)."""
    box = explorer.explorer(atlas)
    methods, (layer, _, _) = box.children[0].children[0], box.children[0].children[1].children
    out = box.children[1]
    assert out.msg_id == ""
    (shown,) = out.outputs
    assert shown["output_type"] == "display_data" and PLOTLY_MIME in shown["data"]
    assert shown["data"][PLOTLY_MIME]["layout"]["title"]["text"].endswith("l1")
    layer.value = "l2"
    (shown,) = out.outputs
    assert shown["data"][PLOTLY_MIME]["layout"]["title"]["text"].endswith("l2")
    methods.value = ()
    assert out.outputs == ({"output_type": "stream", "name": "stdout", "text": "pick at least one method\n"},)


def test_many_methods_are_paged_with_the_references_on_every_page_and_the_slider_above(atlas):
    methods = ["original", "retrain", "ft", "ga", "rl", "scrub", "cu", "ga+ec", "ec"]
    rng = np.random.default_rng(1)
    coords = {m: {layer: rng.normal(size=(len(atlas.sample.y), 2)).astype(np.float32) for layer in LAYERS} for m in methods}
    big = Atlas(atlas.sample, atlas.classes, atlas.forget_classes, methods, LAYERS, coords)
    assert explorer.pages(methods) == [("baselines (1/2)", ["original", "retrain", "ft", "ga", "rl", "scrub"]),
                                       ("baselines (2/2)", ["original", "retrain", "cu"]),
                                       ("Erase at the Core", ["original", "retrain", "ec"]),
                                       ("plug-ins", ["original", "retrain", "ga+ec"])]
    fig = explorer.embedding_figure(big)
    assert len(fig.layout.annotations) == explorer.PANELS, "six panels, whatever the number of methods"
    page_menu = fig.layout.updatemenus[-1]
    assert [b.label for b in page_menu.buttons] == ["baselines (1/2)", "baselines (2/2)", "Erase at the Core", "plug-ins"]
    per_method = len(fig.data) // (6 + 3 + 3 + 3)
    shown = page_menu.buttons[2].args[0]["visible"]
    assert sum(shown) == 3 * per_method and page_menu.buttons[2].args[1]["annotations[2].text"] == "ec"
    assert page_menu.buttons[2].args[1]["annotations[3].text"] == " "
    layout = page_menu.buttons[2].args[1]
    assert [layout[f"xaxis{'' if k == 1 else k}.visible"] for k in range(1, 7)] == [True] * 3 + [False] * 3, \
        "a page of three methods hides the other three panels' axes: no empty frame"
    assert all(layout[f"yaxis{k}.visible"] is False for k in (4, 5, 6))
    assert all(page_menu.buttons[0].args[1][f"xaxis{k}.visible"] for k in range(2, 7)), "a full page shows all six"
    assert fig.layout.plot_bgcolor == "white" and fig.layout.xaxis.showline and fig.layout.xaxis.mirror, \
        "a hidden panel leaves white, not a coloured background"
    assert [t.visible for t in fig.data] == page_menu.buttons[0].args[0]["visible"], "the first page shows first"
    assert len(fig.frames[0].data) == len(fig.data), "every page's points move with the slider"
    assert fig.layout.sliders[0].y > 1 and fig.layout.sliders[0].yanchor == "bottom", "the slider sits above the panels"


def test_neighbour_places_say_where_the_forgotten_images_sit_and_whether_their_neighbourhoods_moved():
    rng = np.random.default_rng(0)
    centres = {0: (0.0, 0.0), 5: (10.0, 0.0), 3: (0.0, 10.0)}
    y = np.repeat([0, 5, 3], 20)
    apart = np.concatenate([rng.normal(centres[c], 0.5, size=(20, 2)) for c in (0, 5, 3)])
    together = embeddings.neighbour_places(apart, apart, y, (3,), k=5)
    assert (together["together"], together["beside"], together["n"]) == (1.0, -1, 20)
    assert together["stay"] == together["retained_stay"] == 1.0, "original against itself: nothing moved"
    # ten forgotten images drawn like class 5's sixty: mostly class 5 around each of them
    y = np.repeat([0, 5, 3], [20, 60, 10])
    inside = np.concatenate([rng.normal(centres[0], 0.5, size=(20, 2)), rng.normal(centres[5], 0.5, size=(70, 2))])
    reference = inside.copy()
    reference[y == 3] = rng.normal(centres[3], 0.5, size=(10, 2))  # where original kept them: a group of their own
    mixed = embeddings.neighbour_places(inside, reference, y, (3,), k=5)
    assert mixed["beside"] == 5 and mixed["together"] < 0.5 and mixed["n"] == 10
    assert mixed["beside_share"] == pytest.approx(1 - mixed["together"]), "the others all sit with class 5"
    assert mixed["stay_high"] < mixed["retained_stay_low"], "their neighbourhoods changed, the retained ones' hardly"
    assert mixed["stay_low"] <= mixed["stay"] <= mixed["stay_high"]


def test_nearest_neighbours_are_the_k_nearest_with_ties_in_index_order():
    """Points on a line at 0, 1, 1, 2, 3 (a tie: images 1 and 2), and on a grid where ties cross the k-th
    neighbour: each row's k nearest others, nearest first, the lower index first among equals."""
    line = np.array([[0.0], [1.0], [1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(embeddings._nearest(line, 2), [[1, 2], [2, 0], [1, 0], [1, 2], [3, 1]])
    grid = np.array([[x, y] for x in range(3) for y in range(3)], dtype=float)  # the centre, 4, has 4 at distance 1
    np.testing.assert_array_equal(embeddings._nearest(grid, 3)[4], [1, 3, 5])
    np.testing.assert_array_equal(embeddings._nearest(grid, 2)[0], [1, 3])
