"""Notebooks 01 to 03 executed one by one by papermill on tiny parameters, as a person runs them in JupyterLab."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import TINY_DATA_OPTIONS, plotly_figures

import ecnb
import ecnb.methods
import ecnb.scopes
from ecnb.config import StudyConfig
from ecnb.study import NOTEBOOKS_DIR, execute_notebook, notebook_parameters


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Notebook 01 executed once on tiny parameters (class 5 forgotten, seed 1, 3 epochs, 40 training and
    20 test images per class, relearning scored up to the reference step, four retrained models where the scope
    has three, one epoch per stage of every method: these tests read what the notebooks write, not how well a
    method forgets); the kernel's private socket folder goes to a temporary folder of the test's own:
    (config, executed, that folder)."""
    root = tmp_path_factory.mktemp("tiny")
    config = StudyConfig.from_options(epochs=3, run_dir=str(root / "run"), forget_classes=[5], **TINY_DATA_OPTIONS,
                                      population=4,
                                      overrides=ecnb.methods.one_epoch_each(ecnb.scopes.selection("walkthrough").methods))
    executed = root / "01.ipynb"
    sockets = root / "tmp"
    sockets.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(sockets))
        execute_notebook(NOTEBOOKS_DIR / "01_train_original.ipynb", executed, notebook_parameters(config, seed=1))
    return config, executed, sockets


def test_the_kernel_leaves_no_socket_folder_behind(tiny_run):
    assert list(tiny_run[2].iterdir()) == []


def markdown_outputs(path) -> str:
    """Every Markdown output of an executed notebook (the answers written from the run's numbers)."""
    nb = json.loads(path.read_text())
    return "\n".join("".join(o["data"]["text/markdown"]) for c in nb["cells"] for o in c.get("outputs", [])
                     if "text/markdown" in o.get("data", {}))


def test_notebook_01_runs_and_writes_its_rows(tiny_run):
    config, executed, _ = tiny_run
    df = ecnb.read_results(config.run_dir)
    acc = df[df["metric"] == "accuracy"]
    population = {"retrain", "retrain#1", "retrain#2", "retrain#3"}  # the population asked for, not the scope's
    assert set(acc["method"]) == {"original", *population} and set(df["seed"]) == {1}
    assert set(acc["split"]) == {"forget_train", "retain_train", "test_retain", "test_forget"}
    assert set(df[df["metric"] == "wall_time"]["method"]) == {"original", *population}
    assert all((Path(config.run_dir) / "seed1" / "models" / f"{m}.pt").exists() for m in population)
    assert len(plotly_figures(executed)) == 2, "the sample grid and the per-class accuracy figure"
    retrain_forget = acc[(acc["method"] == "retrain") & (acc["split"] == "forget_train")]["value"].item()
    assert retrain_forget < 0.2, "retrain never saw class 5"


def test_notebook_02_runs_every_baseline_and_writes_its_rows(tiny_run, tmp_path):
    config, _, _ = tiny_run
    executed = tmp_path / "02.ipynb"
    params = {**notebook_parameters(config, seed=1), "methods": ecnb.ec.baselines()}
    execute_notebook(NOTEBOOKS_DIR / "02_superficial_forgetting.ipynb", executed, params)
    df = ecnb.read_results(config.run_dir)
    taps = ecnb.build_model(config.model, 1, 10).taps
    for method in ["original", "retrain", *ecnb.ec.baselines()]:
        rows = df[df["method"] == method]
        assert set(rows[rows["metric"] == "accuracy"]["split"]) == {"forget_train", "retain_train", "test_retain", "test_forget"}, method
        assert len(rows[rows["metric"] == "mia_efficacy"]) == 1, method
        for metric in ("cka_to_original", "cka_to_retrain"):
            cka = rows[(rows["metric"] == metric) & (rows["split"] == "forget_train")]
            assert list(cka["layer"]) == taps, f"{method} {metric} in network order"
        assert list(rows[rows["metric"] == "probe_accuracy"]["layer"]) == taps, method
        assert list(rows[rows["metric"] == "fewshot_probe_accuracy"]["layer"]) == taps, method
        steps = [f"step{n}" for n in config.attacks.relearn_steps]
        assert list(rows[rows["metric"] == "relearn_accuracy"]["layer"]) == steps, f"{method}: every step of the grid"
        assert len(rows[rows["metric"] == "wall_time"]) == 1, method
        for metric, split in (("output_entropy", "forget_train"), ("output_ks_to_retrain", "test_forget")):
            assert len(rows[(rows["metric"] == metric) & (rows["split"] == split)]) == 1, (method, metric)
        assert list(rows[rows["metric"] == "weight_distance"]["layer"]) == ["", *taps[:-1], "head"], method
        interpolation = rows[(rows["metric"] == "interpolation_accuracy") & (rows["split"] == "test_forget")]
        assert list(interpolation["layer"]) == ["t0.00", "t0.25", "t0.50", "t0.75", "t1.00"], method
        forget_acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test_forget")]["value"].item()
        assert interpolation["value"].iloc[-1] == forget_acc, f"{method}: t = 1 is the method itself"
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    own = df[(df["metric"] == "cka_to_original") & (df["method"] == "original")]["value"]
    assert own.min() > 0.999, "a model is identical to itself"
    # accuracy, entropy, KS, MIA; relearning, few-shot probe; interpolation, distance scatter; two CKA curves,
    # the full-data probe; the evidence map
    figures = plotly_figures(executed)
    assert len(figures) == 12
    bands = [f for f in figures if any(str(t.get("name", "")).startswith("retrained models (4): range") for t in f["data"])]
    assert len(bands) == 5, "relearning, few-shot and the three per-layer curves draw the population as a band"
    for member in ("retrain#1", "retrain#2", "retrain#3"):
        metrics = set(df.loc[df["method"] == member, "metric"])
        assert {"relearn_accuracy", "fewshot_probe_accuracy", "cka_to_original", "mia_efficacy"} <= metrics, member
        assert (Path(config.run_dir) / "seed1" / "outcomes" / f"{member}.npz").exists()
    text = markdown_outputs(executed)
    assert "The claim \"at least two baselines are superficial\" **" in text and "moved the weights by **" in text
    assert "Read against each other, **" in text and "come out *erased, keeps retain, no tell* (the null test" in text
    assert (Path(config.run_dir) / "seed1" / "models" / "ga.pt").exists()


def test_notebook_03_runs_ec_its_plugins_and_the_ablation(tiny_run, tmp_path):
    config, _, _ = tiny_run
    executed = tmp_path / "03.ipynb"
    params = {**notebook_parameters(config, seed=1, methods=["ga", "scrub"], ablations=["ec[last]"])}
    execute_notebook(NOTEBOOKS_DIR / "03_erase_at_the_core.ipynb", executed, params)
    df = ecnb.read_results(config.run_dir)
    taps = ecnb.build_model(config.model, 1, 10).taps
    for method in ["ec", "ga+ec", "scrub+ec", "ec[last]", "ec+soft"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        cka = rows[(rows["metric"] == "cka_to_original") & (rows["split"] == "forget_train")]
        assert list(cka["layer"]) == taps, method
        assert len(rows[rows["metric"] == "accuracy"]) == 4 and len(rows[rows["metric"] == "wall_time"]) == 1, method
    assert not df.duplicated(["seed", "method", "metric", "layer", "split"]).any()
    assert (Path(config.run_dir) / "seed1" / "models" / "scrub+ec.pt").exists()
    assert not set(df["method"]) & {"ga+ec+soft", "scrub+ec+soft"}, "the variant's plug-ins are the full scope's"
    for method in ["ec", "ga+ec", "ec[last]"]:
        rows = df[(df["method"] == method) & (df["seed"] == 1)]
        assert {"fewshot_probe_accuracy", "relearn_accuracy"} <= set(rows["metric"]), method
    text = executed.read_text()
    assert "claims hold in this run" in text, "the verdict cell ran and printed its count"
    assert "claims beyond the paper hold in this run" in text
    answers = markdown_outputs(executed)
    assert "**Does depth matter?**" in answers and "plug-ins `B+ec`" in answers and "`ec+soft` is **" in answers
    # accuracy, output KS, relearning, few-shot, CKA; depth: CKA and relearning; three plug-in bars, per layer;
    # the evidence map; beyond the paper: relearning, few-shot (the variant's plug-in bars are the full scope's)
    assert len(plotly_figures(executed)) == 14
